//! Every configuration variable, said once: its name, its default (as
//! `docs/interface.md` writes it), its range or values, whether it is a
//! secret, and who reads it. Parsing ([`super::Config::from_lookup`]),
//! [`VARIABLES`], the scrubber's secrets and the docs test all come from
//! these rows.

use std::str::FromStr;

use super::ConfigError;

/// Who reads a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// The gateway on every target: native, Worker, Lambda.
    Every,
    /// The native server's client connections (`serve` and `dev` only; the
    /// Workers and Lambda front ends apply their own limits).
    NativeServer,
    /// The `agent-edge serve` command, not the gateway's configuration.
    Command,
}

impl Readers {
    /// As the docs' `read by` column writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Readers::Every => "all",
            Readers::NativeServer => "native",
            Readers::Command => "serve",
        }
    }
}

/// What values a variable takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text its parser checks (a URL, an ARN, a list); `default` is the
    /// docs' wording (`—` for none, or how it is derived).
    Text { default: &'static str },
    /// One of `values`.
    Choice {
        values: &'static [&'static str],
        default: &'static str,
    },
    /// A whole number from `min` to `max`.
    Number { default: u64, min: u64, max: u64 },
    /// A whole number from `min` to `max`, or unset (`unset` says what that means).
    OptionalNumber {
        min: u64,
        max: u64,
        unset: &'static str,
    },
}

/// One configuration variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub kind: Kind,
    /// Never logged nor answered; the scrubber removes its value anywhere.
    pub secret: bool,
    pub readers: Readers,
}

impl Variable {
    const fn new(name: &'static str, kind: Kind) -> Self {
        Variable {
            name,
            kind,
            secret: false,
            readers: Readers::Every,
        }
    }

    const fn new_text(name: &'static str, default: &'static str) -> Self {
        Self::new(name, Kind::Text { default })
    }

    const fn new_choice(
        name: &'static str,
        values: &'static [&'static str],
        default: &'static str,
    ) -> Self {
        Self::new(name, Kind::Choice { values, default })
    }

    const fn new_number(name: &'static str, default: u64, min: u64, max: u64) -> Self {
        Self::new(name, Kind::Number { default, min, max })
    }

    const fn new_optional_number(
        name: &'static str,
        min: u64,
        max: u64,
        unset: &'static str,
    ) -> Self {
        Self::new(name, Kind::OptionalNumber { min, max, unset })
    }

    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    const fn read_by(mut self, readers: Readers) -> Self {
        self.readers = readers;
        self
    }

    /// The default as the docs' table writes it (backticks for a value).
    pub fn documented_default(&self) -> String {
        match self.kind {
            Kind::Text { default } => default.to_owned(),
            Kind::Choice { default, .. } => format!("`{default}`"),
            Kind::Number { default, .. } => format!("`{default}`"),
            Kind::OptionalNumber { unset, .. } => unset.to_owned(),
        }
    }

    /// The values allowed, as the docs' table writes them (`""` for text).
    pub fn documented_range(&self) -> String {
        match self.kind {
            Kind::Text { .. } => String::new(),
            Kind::Choice { values, .. } => values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", "),
            Kind::Number { min, max, .. } | Kind::OptionalNumber { min, max, .. } => {
                format!("{min}–{max}")
            }
        }
    }

    /// The value, trimmed; empty counts as unset.
    pub fn read(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        lookup(self.name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A [`Kind::Choice`]: the value given, or the default.
    pub fn choice(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<&'static str, ConfigError> {
        let Kind::Choice { values, default } = self.kind else {
            unreachable!("{} is not a choice", self.name)
        };
        match self.read(lookup) {
            None => Ok(default),
            Some(value) => values.iter().copied().find(|v| *v == value).ok_or_else(|| {
                let (last, first) = values.split_last().expect("choices");
                self.error(format!("must be {} or {last}", first.join(", ")))
            }),
        }
    }

    /// A [`Kind::Number`]: the value given, or the default.
    pub fn number<T: TryFrom<u64>>(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<T, ConfigError> {
        let Kind::Number { default, min, max } = self.kind else {
            unreachable!("{} is not a number", self.name)
        };
        let value = self.number_in(lookup, min, max)?.unwrap_or(default);
        T::try_from(value).map_err(|_| self.error("out of range for this platform"))
    }

    /// A [`Kind::OptionalNumber`]: the value given, if any.
    pub fn optional_number<T: TryFrom<u64>>(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<T>, ConfigError> {
        let Kind::OptionalNumber { min, max, .. } = self.kind else {
            unreachable!("{} is not an optional number", self.name)
        };
        self.number_in(lookup, min, max)?
            .map(|v| T::try_from(v).map_err(|_| self.error("out of range for this platform")))
            .transpose()
    }

    fn number_in(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(raw) = self.read(lookup) else {
            return Ok(None);
        };
        match u64::from_str(&raw) {
            Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(self.error(format!("must be a whole number from {min} to {max}"))),
        }
    }

    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.name, message)
    }
}

/// `on` or `off`.
const ON_OFF: &[&str] = &["on", "off"];

pub const AGENT_RUNTIME_ARN: Variable = Variable::new_text("AGENT_RUNTIME_ARN", "—").secret();
pub const AGENT_QUALIFIER: Variable = Variable::new_text("AGENT_QUALIFIER", "`DEFAULT`");
pub const ORIGIN_URL: Variable = Variable::new_text("ORIGIN_URL", "derived");
// A secret: its agents' ARNs (config/agents.rs parses it).
pub const AGENTS: Variable = Variable::new_text("AGENTS", "none").secret();
pub const DEFAULT_AGENT: Variable = Variable::new_text(
    "DEFAULT_AGENT",
    "the agent of `AGENT_RUNTIME_ARN` or `ORIGIN_URL`",
);
pub const ORIGIN_AUTH: Variable = Variable::new_choice(
    "ORIGIN_AUTH",
    &["sigv4", "jwt-passthrough", "none"],
    "sigv4",
);
pub const SIGV4_SERVICE: Variable = Variable::new_text(
    "SIGV4_SERVICE",
    "`bedrock-agentcore` for an ARN, `lambda` for a `*.lambda-url.*.on.aws` URL",
);
pub const AWS_REGION: Variable = Variable::new_text("AWS_REGION", "from the ARN or URL");
pub const AWS_ACCESS_KEY_ID: Variable = Variable::new_text("AWS_ACCESS_KEY_ID", "—").secret();
pub const AWS_SECRET_ACCESS_KEY: Variable =
    Variable::new_text("AWS_SECRET_ACCESS_KEY", "—").secret();
pub const AWS_SESSION_TOKEN: Variable = Variable::new_text("AWS_SESSION_TOKEN", "—").secret();
pub const AUTH: Variable = Variable::new_choice("AUTH", &["jwt", "none"], "jwt");
pub const JWT_ISSUER: Variable = Variable::new_text("JWT_ISSUER", "—");
pub const JWT_AUDIENCE: Variable = Variable::new_text("JWT_AUDIENCE", "—");
pub const JWT_JWKS_URL: Variable = Variable::new_text(
    "JWT_JWKS_URL",
    "from `<issuer>/.well-known/openid-configuration`",
);
pub const JWT_TOKEN_USE: Variable =
    Variable::new_choice("JWT_TOKEN_USE", &["id", "access", "any"], "any");
pub const JWT_LEEWAY_SECONDS: Variable = Variable::new_number("JWT_LEEWAY_SECONDS", 60, 0, 3600);
pub const JWT_USER_ID_CLAIM: Variable = Variable::new_text("JWT_USER_ID_CLAIM", "unset: not sent");
// With AUTH=none the default is `none` (config/mod.rs): there is no subject.
pub const SESSION_SCOPE: Variable =
    Variable::new_choice("SESSION_SCOPE", &["subject", "none"], "subject");
pub const DEFAULT_RESPONSE_MODE: Variable = Variable::new_choice(
    "DEFAULT_RESPONSE_MODE",
    &["original", "transformed"],
    "original",
);
pub const MAX_BODY_BYTES: Variable = Variable::new_number("MAX_BODY_BYTES", 1 << 20, 1, 64 << 20);
pub const MAX_BODY_KEYS: Variable = Variable::new_number("MAX_BODY_KEYS", 10_000, 1, 1_000_000);
pub const MAX_EVENT_BYTES: Variable =
    Variable::new_number("MAX_EVENT_BYTES", 1 << 20, 1024, 64 << 20);
pub const KEEPALIVE_SECONDS: Variable = Variable::new_number("KEEPALIVE_SECONDS", 15, 0, 3600);
pub const ORIGIN_TIMEOUT_SECONDS: Variable =
    Variable::new_number("ORIGIN_TIMEOUT_SECONDS", 60, 1, 3600);
// Retries of a transient origin failure before the first byte, all within
// ORIGIN_TIMEOUT_SECONDS; more than a few only adds load to a struggling origin.
pub const ORIGIN_RETRIES: Variable = Variable::new_number("ORIGIN_RETRIES", 2, 0, 10);
// Agents think for minutes between two outputs: generous.
pub const ORIGIN_IDLE_TIMEOUT_SECONDS: Variable =
    Variable::new_number("ORIGIN_IDLE_TIMEOUT_SECONDS", 900, 1, 86_400);
pub const CORS_ALLOW_ORIGINS: Variable = Variable::new_text("CORS_ALLOW_ORIGINS", "none");
pub const PUBLIC_HOSTS: Variable = Variable::new_text("PUBLIC_HOSTS", "none");
pub const RATE_LIMIT_PER_MINUTE: Variable =
    Variable::new_optional_number("RATE_LIMIT_PER_MINUTE", 1, 1_000_000, "none");
pub const TOKEN_BUDGET: Variable =
    Variable::new_optional_number("TOKEN_BUDGET", 1, 1 << 50, "unset: no budget");
pub const TOKEN_BUDGET_WINDOW_SECONDS: Variable =
    Variable::new_number("TOKEN_BUDGET_WINDOW_SECONDS", 86_400, 1, 31_622_400);
pub const LIMITS_STORE: Variable = Variable::new_choice(
    "LIMITS_STORE",
    &["memory", "redis", "durable_object"],
    "memory",
);
pub const REDIS_URL: Variable = Variable::new_text("REDIS_URL", "—").secret();
pub const LIMITS_STORE_TIMEOUT_MS: Variable =
    Variable::new_number("LIMITS_STORE_TIMEOUT_MS", 250, 1, 60_000);
pub const LIMITS_STORE_FAILURE: Variable =
    Variable::new_choice("LIMITS_STORE_FAILURE", &["allow", "deny"], "allow");
pub const UI: Variable = Variable::new_choice("UI", ON_OFF, "on");
// Checked against JWT_ISSUER by the parser (`dev_token_url` in config/mod.rs).
pub const DEV_TOKEN_URL: Variable = Variable::new_text("DEV_TOKEN_URL", "unset: no button");
pub const LISTEN_ADDR: Variable =
    Variable::new_text("LISTEN_ADDR", "`127.0.0.1:8787`").read_by(Readers::Command);
pub const CLIENT_HEADER_TIMEOUT_SECONDS: Variable =
    Variable::new_number("CLIENT_HEADER_TIMEOUT_SECONDS", 30, 1, 3600)
        .read_by(Readers::NativeServer);
pub const CLIENT_IDLE_TIMEOUT_SECONDS: Variable =
    Variable::new_number("CLIENT_IDLE_TIMEOUT_SECONDS", 15, 1, 3600).read_by(Readers::NativeServer);
pub const CLIENT_BODY_TIMEOUT_SECONDS: Variable =
    Variable::new_number("CLIENT_BODY_TIMEOUT_SECONDS", 60, 1, 3600).read_by(Readers::NativeServer);
// hyper needs at least 8 KiB to read a head.
pub const MAX_HEADER_BYTES: Variable =
    Variable::new_number("MAX_HEADER_BYTES", 32 << 10, 8 << 10, 1 << 20)
        .read_by(Readers::NativeServer);
pub const MAX_CONNECTIONS: Variable =
    Variable::new_number("MAX_CONNECTIONS", 10_000, 1, 1_000_000).read_by(Readers::NativeServer);
pub const SHUTDOWN_GRACE_SECONDS: Variable =
    Variable::new_number("SHUTDOWN_GRACE_SECONDS", 30, 0, 86_400).read_by(Readers::NativeServer);

/// Every variable, in the docs' order.
pub const VARIABLES: &[Variable] = &[
    AGENT_RUNTIME_ARN,
    AGENT_QUALIFIER,
    ORIGIN_URL,
    AGENTS,
    DEFAULT_AGENT,
    ORIGIN_AUTH,
    SIGV4_SERVICE,
    AWS_REGION,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
    AUTH,
    JWT_ISSUER,
    JWT_AUDIENCE,
    JWT_JWKS_URL,
    JWT_TOKEN_USE,
    JWT_LEEWAY_SECONDS,
    JWT_USER_ID_CLAIM,
    SESSION_SCOPE,
    DEFAULT_RESPONSE_MODE,
    MAX_BODY_BYTES,
    MAX_BODY_KEYS,
    MAX_EVENT_BYTES,
    KEEPALIVE_SECONDS,
    ORIGIN_TIMEOUT_SECONDS,
    ORIGIN_RETRIES,
    ORIGIN_IDLE_TIMEOUT_SECONDS,
    CORS_ALLOW_ORIGINS,
    PUBLIC_HOSTS,
    RATE_LIMIT_PER_MINUTE,
    TOKEN_BUDGET,
    TOKEN_BUDGET_WINDOW_SECONDS,
    LIMITS_STORE,
    REDIS_URL,
    LIMITS_STORE_TIMEOUT_MS,
    LIMITS_STORE_FAILURE,
    UI,
    DEV_TOKEN_URL,
    LISTEN_ADDR,
    CLIENT_HEADER_TIMEOUT_SECONDS,
    CLIENT_IDLE_TIMEOUT_SECONDS,
    CLIENT_BODY_TIMEOUT_SECONDS,
    MAX_HEADER_BYTES,
    MAX_CONNECTIONS,
    SHUTDOWN_GRACE_SECONDS,
];

/// The variable named `name`.
pub fn variable(name: &str) -> Option<&'static Variable> {
    VARIABLES.iter().find(|v| v.name == name)
}
