//! Gateway configuration: the variables of the interface's configuration
//! table (`docs/interface.md`, kept equal to [`VARIABLES`] by a test), read
//! through a lookup function so that every platform (process environment,
//! Workers `[vars]` and secrets, Lambda environment) shares one parser.
//!
//! Invalid configuration is a [`ConfigError`] naming the variable; nothing
//! here panics. `Debug` of anything holding a credential is redacted.

mod agents;
mod vars;

use std::fmt;
use std::str::FromStr;

pub use agents::{is_agent_name, Agent, Agents, CallerClaims, ClaimRule, IMPLICIT_DEFAULT};
pub use vars::*;

/// Response mode of the HTTP interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// The origin's bytes, unchanged.
    Original,
    /// Plain text plus a trailer.
    Transformed,
}

impl FromStr for ResponseMode {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "original" => Ok(ResponseMode::Original),
            "transformed" => Ok(ResponseMode::Transformed),
            _ => Err(()),
        }
    }
}

impl ResponseMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseMode::Original => "original",
            ResponseMode::Transformed => "transformed",
        }
    }
}

/// A configuration problem, naming the variable at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(variable: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            variable,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: {}: {}",
            self.variable, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// A value that must never reach a log line or a response.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// AWS credentials for SigV4.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"***")
            .field("session_token", &self.session_token.is_some())
            .finish_non_exhaustive()
    }
}

/// An AgentCore runtime, from `AGENT_RUNTIME_ARN` and `AGENT_QUALIFIER`.
#[derive(Clone, PartialEq, Eq)]
pub struct AgentRuntime {
    pub arn: String,
    pub partition: String,
    pub region: String,
    pub account_id: String,
    pub qualifier: String,
}

impl fmt::Debug for AgentRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentRuntime")
            .field("region", &self.region)
            .field("qualifier", &self.qualifier)
            .finish_non_exhaustive()
    }
}

impl AgentRuntime {
    /// Parses `arn:<partition>:bedrock-agentcore:<region>:<account>:runtime/<id>`
    /// (`AGENT_RUNTIME_ARN`) and its qualifier (`AGENT_QUALIFIER`).
    pub fn parse(arn: &str, qualifier: String) -> Result<Self, ConfigError> {
        Self::from_parts(arn, qualifier).map_err(|part| match part {
            RuntimePart::Arn(why) => ConfigError::new("AGENT_RUNTIME_ARN", why),
            RuntimePart::Qualifier => {
                ConfigError::new("AGENT_QUALIFIER", "must be a non-empty word")
            }
        })
    }

    /// The same, saying which part is wrong; never quoting the ARN.
    pub(crate) fn from_parts(arn: &str, qualifier: String) -> Result<Self, RuntimePart> {
        let err = |m: &'static str| RuntimePart::Arn(m);
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" {
            return Err(err(
                "expected arn:<partition>:bedrock-agentcore:<region>:<account>:runtime/<id>",
            ));
        }
        let (partition, service, region, account, resource) =
            (parts[1], parts[2], parts[3], parts[4], parts[5]);
        if service != "bedrock-agentcore" {
            return Err(err("the service part must be bedrock-agentcore"));
        }
        if partition.is_empty() || !is_region(region) {
            return Err(err("the partition or region part is missing or malformed"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("the account part must be 12 digits"));
        }
        match resource.strip_prefix("runtime/") {
            Some(id) if !id.is_empty() && !id.contains(char::is_whitespace) => {}
            _ => return Err(err("the resource part must be runtime/<id>")),
        }
        if qualifier.is_empty() || qualifier.contains(char::is_whitespace) {
            return Err(RuntimePart::Qualifier);
        }
        Ok(AgentRuntime {
            arn: arn.to_owned(),
            partition: partition.to_owned(),
            region: region.to_owned(),
            account_id: account.to_owned(),
            qualifier,
        })
    }

    /// `https://bedrock-agentcore.<region>.amazonaws.com` (or `.com.cn`).
    pub fn default_endpoint(&self) -> String {
        let suffix = if self.partition == "aws-cn" {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("https://bedrock-agentcore.{}.{suffix}", self.region)
    }
}

/// Which part of a runtime is wrong, and why (never quoting it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuntimePart {
    Arn(&'static str),
    Qualifier,
}

fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// How the gateway authenticates to the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginAuth {
    SigV4 {
        service: String,
        region: String,
        credentials: AwsCredentials,
    },
    /// Forward the caller's bearer token (AgentCore's OAuth endpoint).
    JwtPassthrough,
    None,
}

/// Where and how the origin is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginConfig {
    /// `scheme://host[:port]` plus, without a runtime, the path to POST to.
    pub base_url: http::Uri,
    pub runtime: Option<AgentRuntime>,
    pub auth: OriginAuth,
}

/// Which `token_use` claims are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Id,
    Access,
    /// `id`, `access`, or no `token_use` claim at all.
    Any,
}

/// `AUTH=jwt` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks_url: Option<String>,
    pub token_use: TokenUse,
    pub leeway_seconds: u64,
    pub user_id_claim: Option<String>,
    /// The claims an agent's `requireClaims` names: kept of each verified
    /// token ([`crate::auth::Verified::claims`]).
    pub gate_claims: Vec<String>,
    /// `SESSION_SCOPE=subject`: a token without `sub` is refused, since the
    /// sessions it opens would belong to nobody in particular.
    pub require_subject: bool,
}

impl JwtConfig {
    /// The key set URL, or the discovery document to find it.
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }
}

/// Caller authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    Jwt(JwtConfig),
    /// Local development only.
    None,
}

/// Whose the sessions sent to an agent are (`SESSION_SCOPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionScope {
    /// The id sent to the agent is derived from the subject, the agent and
    /// the client's id (`crate::gateway::agents::scoped_session_id`).
    Subject,
    /// The client's id is sent as it is: whoever knows it shares the session.
    None,
}

/// The whole gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The agents, by name, and the default one.
    pub agents: Agents,
    pub session_scope: SessionScope,
    pub auth: AuthConfig,
    pub default_mode: ResponseMode,
    pub max_body_bytes: usize,
    /// `0` disables keepalive comments.
    pub keepalive_seconds: u64,
    pub cors: Cors,
    /// Most top-level keys a request body may have (`MAX_BODY_KEYS`).
    pub max_body_keys: usize,
    /// Host names accepted besides the loopback ones when the listener is on
    /// a loopback address (`PUBLIC_HOSTS`), lower case.
    pub public_hosts: Vec<String>,
    /// Whether the listener is on a loopback address: then a `Host` not
    /// naming this machine (or `PUBLIC_HOSTS`) is refused, against DNS
    /// rebinding. Not a variable: the native server sets it.
    pub loopback_listener: bool,
    /// Token budgets and request limits, and where they are counted.
    pub limits: LimitsConfig,
    /// Largest SSE event held in memory (transformed mode) or passed (original).
    pub max_event_bytes: usize,
    /// Time allowed for the origin to answer with headers, every attempt
    /// included.
    pub origin_timeout_seconds: u64,
    /// Retries of a transient origin failure before the first byte
    /// (`ORIGIN_RETRIES`).
    pub origin_retries: u32,
    /// Whether the chat page is served at `GET /` (`UI`).
    pub ui: bool,
    /// The development issuer's token endpoint, offered by the chat page
    /// (`DEV_TOKEN_URL`, which `agent-edge dev` sets on every target).
    pub dev_token_url: Option<String>,
    /// Longest silence between two origin body bytes before the stream ends
    /// with `origin_idle_timeout` (keepalives go on meanwhile).
    pub origin_idle_timeout_seconds: u64,
    /// The native server's client connections (other platforms manage their own).
    pub client_limits: ClientLimits,
    /// The values of every secret variable ([`Variable::secret`]), for the
    /// scrubber.
    pub sensitive_values: Vec<Secret>,
}

/// Limits on the native server's client connections, of the nginx/Envoy
/// kind. Workers and Lambda front ends enforce their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientLimits {
    /// `CLIENT_HEADER_TIMEOUT_SECONDS`: time for a request head to arrive,
    /// counted from when the server waits for it (accept, or the previous
    /// response on a kept-alive connection).
    pub header_timeout_seconds: u64,
    /// `CLIENT_IDLE_TIMEOUT_SECONDS`: a connection with no request in flight
    /// for this long is closed; at most the header timeout, which also runs
    /// while a connection waits for its next request.
    pub idle_timeout_seconds: u64,
    /// `CLIENT_BODY_TIMEOUT_SECONDS`: time for the whole request body to
    /// arrive, counted from the end of the head (then 408).
    pub body_timeout_seconds: u64,
    /// `MAX_HEADER_BYTES`: request line plus headers (then 431).
    pub max_header_bytes: usize,
    /// `MAX_CONNECTIONS`: open client connections; further ones wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// `SHUTDOWN_GRACE_SECONDS`: on SIGTERM/SIGINT, how long streams in
    /// flight may go on before they are ended with their mode's error.
    pub shutdown_grace_seconds: u64,
}

/// Which store counts budgets and request limits (`LIMITS_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitsStore {
    /// This process, isolate or execution environment.
    Memory,
    /// `REDIS_URL`, shared by every instance.
    Redis { url: Secret },
    /// The Worker's `LIMITS` Durable Object namespace, one object per subject.
    DurableObject,
}

/// Token budgets and request limits (`TOKEN_BUDGET`, `RATE_LIMIT_PER_MINUTE`
/// and the `LIMITS_STORE*` variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Tokens a subject may use per window.
    pub token_budget: Option<u64>,
    pub token_window_seconds: u64,
    pub requests_per_minute: Option<u32>,
    pub store: LimitsStore,
    /// Longest wait for the store, per call.
    pub store_timeout_ms: u64,
    /// `LIMITS_STORE_FAILURE=deny`: 503 when the store does not answer.
    pub deny_when_unavailable: bool,
}

impl LimitsConfig {
    fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let store = match LIMITS_STORE.choice(get)? {
            "redis" => {
                let url = REDIS_URL
                    .read(get)
                    .ok_or_else(|| REDIS_URL.error("required with LIMITS_STORE=redis"))?;
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(REDIS_URL.error("must start with redis:// or rediss://"));
                }
                LimitsStore::Redis {
                    url: Secret::new(url),
                }
            }
            "durable_object" => LimitsStore::DurableObject,
            _ => LimitsStore::Memory,
        };
        Ok(LimitsConfig {
            token_budget: TOKEN_BUDGET.optional_number(get)?,
            token_window_seconds: TOKEN_BUDGET_WINDOW_SECONDS.number(get)?,
            requests_per_minute: RATE_LIMIT_PER_MINUTE.optional_number(get)?,
            store,
            store_timeout_ms: LIMITS_STORE_TIMEOUT_MS.number(get)?,
            deny_when_unavailable: LIMITS_STORE_FAILURE.choice(get)? == "deny",
        })
    }

    /// Whether any limit is configured.
    pub fn any(&self) -> bool {
        self.token_budget.is_some() || self.requests_per_minute.is_some()
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            token_budget: None,
            token_window_seconds: 86_400,
            requests_per_minute: None,
            store: LimitsStore::Memory,
            store_timeout_ms: 250,
            deny_when_unavailable: false,
        }
    }
}

/// The password of a `redis://user:password@host` URL, itself a secret (a
/// client's error may quote it without the rest of the URL).
fn redis_password(url: &str) -> Option<String> {
    let authority = url.split_once("://")?.1.split('/').next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let password = userinfo.split_once(':').map_or(userinfo, |(_, p)| p);
    (!password.is_empty()).then(|| password.to_owned())
}

/// Default for `MAX_EVENT_BYTES`.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

impl Config {
    /// Reads the configuration through `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get: &dyn Fn(&str) -> Option<String> = &lookup;
        let agents = agents_from(get)?;
        let authenticated = AUTH.choice(get)? == "jwt";
        let session_scope = match SESSION_SCOPE.choice(get)? {
            // Without authentication there is no subject to scope by.
            "subject" if !authenticated && SESSION_SCOPE.read(get).is_some() => {
                return Err(SESSION_SCOPE
                    .error("subject needs AUTH=jwt: without authentication there is no subject"))
            }
            "subject" if authenticated => SessionScope::Subject,
            _ => SessionScope::None,
        };
        let caller_auth = match AUTH.choice(get)? {
            "jwt" => AuthConfig::Jwt(JwtConfig {
                gate_claims: agents.gate_claims(),
                require_subject: session_scope == SessionScope::Subject,
                ..jwt_config(get)?
            }),
            _ => AuthConfig::None,
        };
        let dev_token_url = dev_token_url(get, &caller_auth)?;
        let default_mode = match DEFAULT_RESPONSE_MODE.choice(get)? {
            "transformed" => ResponseMode::Transformed,
            _ => ResponseMode::Original,
        };

        let sensitive_values = VARIABLES
            .iter()
            .filter(|v| v.secret)
            .filter_map(|v| v.read(get))
            .chain(REDIS_URL.read(get).and_then(|url| redis_password(&url)))
            // Each ARN of AGENTS on its own too: a secret in a bigger value.
            .chain(agents.runtimes().map(|rt| rt.arn.clone()))
            .map(Secret::new)
            .collect();
        Ok(Config {
            agents,
            session_scope,
            auth: caller_auth,
            default_mode,
            max_body_bytes: MAX_BODY_BYTES.number(get)?,
            keepalive_seconds: KEEPALIVE_SECONDS.number(get)?,
            cors: Cors::from_list(list(CORS_ALLOW_ORIGINS.read(get))),
            max_body_keys: MAX_BODY_KEYS.number(get)?,
            public_hosts: list(PUBLIC_HOSTS.read(get))
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            loopback_listener: false,
            limits: LimitsConfig::from_lookup(get)?,
            max_event_bytes: MAX_EVENT_BYTES.number(get)?,
            origin_timeout_seconds: ORIGIN_TIMEOUT_SECONDS.number(get)?,
            origin_retries: ORIGIN_RETRIES.number(get)?,
            ui: UI.choice(get)? == "on",
            dev_token_url,
            origin_idle_timeout_seconds: ORIGIN_IDLE_TIMEOUT_SECONDS.number(get)?,
            client_limits: client_limits(get)?,
            sensitive_values,
        })
    }

    /// `CORS_ALLOW_ORIGINS` from its value (it cannot be invalid).
    pub fn cors_from(value: Option<String>) -> Cors {
        Cors::from_list(list(value))
    }

    /// Whether `host` (a `Host` header's host part, without port) may
    /// reach this gateway: always, unless the listener is on loopback.
    pub fn host_allowed(&self, host: &str) -> bool {
        !self.loopback_listener
            || is_loopback_host(host)
            || self
                .public_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host))
    }
}

/// `localhost`, `127.0.0.1` or `[::1]`: the names a loopback listener answers to.
pub fn is_loopback_host(host: &str) -> bool {
    ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .any(|name| name.eq_ignore_ascii_case(host))
}

/// `CORS_ALLOW_ORIGINS`: which browser origins may read answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// Unset: no CORS headers; answers do not depend on `Origin`.
    Off,
    /// `*`: any origin, answered with a literal `*`.
    Any,
    /// These exact origins; every answer varies on `Origin`.
    Origins(Vec<String>),
}

impl Cors {
    fn from_list(origins: Vec<String>) -> Self {
        if origins.is_empty() {
            Cors::Off
        } else if origins.iter().any(|o| o == "*") {
            Cors::Any
        } else {
            Cors::Origins(origins)
        }
    }

    /// Whether `origin` (a browser's `Origin` header) may call us.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Cors::Off => false,
            Cors::Any => true,
            Cors::Origins(origins) => origins.iter().any(|allowed| allowed == origin),
        }
    }
}

/// The agents: the implicit one of `AGENT_RUNTIME_ARN`/`ORIGIN_URL`, those
/// of `AGENTS`, and the default (`DEFAULT_AGENT`, else the implicit one).
fn agents_from(get: &dyn Fn(&str) -> Option<String>) -> Result<Agents, ConfigError> {
    let qualifier = AGENT_QUALIFIER
        .read(get)
        .unwrap_or_else(|| "DEFAULT".to_owned());
    let runtime = AGENT_RUNTIME_ARN
        .read(get)
        .map(|arn| AgentRuntime::parse(&arn, qualifier))
        .transpose()?;
    let origin_url = ORIGIN_URL
        .read(get)
        .map(|url| parse_origin_url(&url))
        .transpose()?;
    let default_agent = DEFAULT_AGENT.read(get);
    let entries = AGENTS
        .read(get)
        .map(|json| agents::parse(&json))
        .transpose()?;

    // With AGENTS, ORIGIN_URL without an ARN is only the endpoint of the
    // ARNs: a default agent at a bare endpoint would answer nothing useful.
    let implicit = match (&runtime, &origin_url) {
        (Some(_), _) if default_agent.is_some() => {
            return Err(DEFAULT_AGENT.error(
                "not with AGENT_RUNTIME_ARN, whose agent is the default (named \"default\")",
            ))
        }
        (None, _) if entries.is_some() => None,
        (Some(rt), _) => Some(origin_config(get, Some(rt.clone()), origin_url.clone())?),
        (None, Some(url)) => Some(origin_config(get, None, Some(url.clone()))?),
        (None, None) => {
            return Err(AGENT_RUNTIME_ARN.error(
                "set AGENT_RUNTIME_ARN (AgentCore), ORIGIN_URL (any other origin) or AGENTS",
            ))
        }
    };
    let mut agents = match implicit {
        Some(origin) => Agents::single(origin),
        None => Agents::empty(),
    };
    for entry in entries.unwrap_or_default() {
        if agents.get(&entry.name).is_some() {
            return Err(AGENTS.error(format!(
                "agent \"{}\" is the name of the agent of AGENT_RUNTIME_ARN or ORIGIN_URL",
                entry.name
            )));
        }
        let origin = match entry.place {
            agents::Place::Runtime(rt) => origin_config(get, Some(rt), origin_url.clone()),
            agents::Place::Url(url) => {
                let url = parse_origin_url(&url).map_err(|e| {
                    AGENTS.error(format!("agent \"{}\": url {}", entry.name, e.message))
                })?;
                origin_config(get, None, Some(url))
            }
        }
        .map_err(|e| ConfigError {
            message: format!("{} (agent \"{}\" of AGENTS)", e.message, entry.name),
            ..e
        })?;
        agents.push(Agent {
            name: entry.name,
            origin,
            description: entry.description,
            require_claims: entry.require_claims,
        });
    }
    if let Some(name) = default_agent {
        if !agents.set_default(&name) {
            return Err(DEFAULT_AGENT.error("must name an agent of AGENTS"));
        }
    }
    Ok(agents)
}

/// Where and how an agent is called: `url` (else the runtime's endpoint),
/// authenticated as `ORIGIN_AUTH` says.
fn origin_config(
    get: &dyn Fn(&str) -> Option<String>,
    runtime: Option<AgentRuntime>,
    url: Option<http::Uri>,
) -> Result<OriginConfig, ConfigError> {
    let base_url = match (url, &runtime) {
        (Some(url), _) => url,
        (None, Some(rt)) => rt
            .default_endpoint()
            .parse()
            .map_err(|_| AGENT_RUNTIME_ARN.error("does not give a valid endpoint"))?,
        (None, None) => return Err(ORIGIN_URL.error("required without a runtime ARN")),
    };
    let lambda_region = lambda_url_region(&base_url);
    let auth = match ORIGIN_AUTH.choice(get)? {
        "sigv4" => {
            let service = match SIGV4_SERVICE.read(get) {
                Some(s) => s,
                None if runtime.is_some() => "bedrock-agentcore".to_owned(),
                None if lambda_region.is_some() => "lambda".to_owned(),
                None => {
                    return Err(SIGV4_SERVICE.error(
                        "required with ORIGIN_AUTH=sigv4 when the origin is neither an AgentCore runtime nor a Lambda function URL",
                    ))
                }
            };
            // The region the origin names wins: AgentCore and Lambda
            // check the signature against their own region, while
            // AWS_REGION may be another's (Lambda sets it to the
            // function's region, and it cannot be changed there).
            let region = runtime
                .as_ref()
                .map(|rt| rt.region.clone())
                .or(lambda_region)
                .or_else(|| AWS_REGION.read(get))
                .ok_or_else(|| AWS_REGION.error("required: the origin does not name a region"))?;
            if !is_region(&region) {
                return Err(AWS_REGION.error("malformed region"));
            }
            let required = |variable: Variable| {
                variable
                    .read(get)
                    .ok_or_else(|| variable.error("required with ORIGIN_AUTH=sigv4"))
            };
            OriginAuth::SigV4 {
                service,
                region,
                credentials: AwsCredentials {
                    access_key_id: required(AWS_ACCESS_KEY_ID)?,
                    secret_access_key: Secret::new(required(AWS_SECRET_ACCESS_KEY)?),
                    session_token: AWS_SESSION_TOKEN.read(get).map(Secret::new),
                },
            }
        }
        "jwt-passthrough" => OriginAuth::JwtPassthrough,
        _ => OriginAuth::None,
    };
    Ok(OriginConfig {
        base_url,
        runtime,
        auth,
    })
}

fn client_limits(get: &dyn Fn(&str) -> Option<String>) -> Result<ClientLimits, ConfigError> {
    let limits = ClientLimits {
        header_timeout_seconds: CLIENT_HEADER_TIMEOUT_SECONDS.number(get)?,
        idle_timeout_seconds: CLIENT_IDLE_TIMEOUT_SECONDS.number(get)?,
        body_timeout_seconds: CLIENT_BODY_TIMEOUT_SECONDS.number(get)?,
        max_header_bytes: MAX_HEADER_BYTES.number(get)?,
        max_connections: MAX_CONNECTIONS.number(get)?,
        shutdown_grace_seconds: SHUTDOWN_GRACE_SECONDS.number(get)?,
    };
    if limits.idle_timeout_seconds > limits.header_timeout_seconds {
        // The wait for the next request head counts against the header timeout.
        return Err(CLIENT_IDLE_TIMEOUT_SECONDS.error(
            "must not exceed CLIENT_HEADER_TIMEOUT_SECONDS, which also bounds the wait for the next request",
        ));
    }
    Ok(limits)
}

fn jwt_config(get: &dyn Fn(&str) -> Option<String>) -> Result<JwtConfig, ConfigError> {
    let issuer = JWT_ISSUER.read(get).ok_or_else(|| {
        JWT_ISSUER.error("required with AUTH=jwt (set AUTH=none for local development only)")
    })?;
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err(JWT_ISSUER.error("must be an http(s) URL"));
    }
    let audiences = list(JWT_AUDIENCE.read(get));
    if audiences.is_empty() {
        return Err(JWT_AUDIENCE
            .error("required with AUTH=jwt: the app client id(s) tokens must be issued to"));
    }
    let jwks_url = JWT_JWKS_URL.read(get);
    if let Some(url) = &jwks_url {
        if url
            .parse::<http::Uri>()
            .map(|u| u.host().is_none())
            .unwrap_or(true)
        {
            return Err(JWT_JWKS_URL.error("must be an absolute URL"));
        }
    }
    let token_use = match JWT_TOKEN_USE.choice(get)? {
        "id" => TokenUse::Id,
        "access" => TokenUse::Access,
        _ => TokenUse::Any,
    };
    Ok(JwtConfig {
        issuer,
        audiences,
        jwks_url,
        token_use,
        leeway_seconds: JWT_LEEWAY_SECONDS.number(get)?,
        user_id_claim: JWT_USER_ID_CLAIM.read(get),
        gate_claims: Vec::new(),
        require_subject: false,
    })
}

/// `DEV_TOKEN_URL`: the token endpoint of a development issuer, which the
/// chat page's "Get a development token" button calls. Only an `http://`
/// URL on this machine (`localhost`, `127.0.0.1`, `[::1]`) and on
/// `JWT_ISSUER`'s own origin, with `AUTH=jwt`: the button can reach nothing
/// but the issuer the gateway already trusts, on the visitor's own machine,
/// so setting it cannot send a deployment's visitors anywhere else (and a
/// deployment with a real issuer cannot set it at all).
fn dev_token_url(
    get: &dyn Fn(&str) -> Option<String>,
    auth: &AuthConfig,
) -> Result<Option<String>, ConfigError> {
    let Some(url) = DEV_TOKEN_URL.read(get) else {
        return Ok(None);
    };
    let AuthConfig::Jwt(jwt) = auth else {
        return Err(DEV_TOKEN_URL.error("only with AUTH=jwt: it gives tokens of JWT_ISSUER"));
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|_| DEV_TOKEN_URL.error("not a valid URL"))?;
    let on_this_machine = uri.scheme_str() == Some("http")
        && uri.host().is_some_and(is_loopback_host)
        && uri.query().is_none();
    if !on_this_machine {
        return Err(DEV_TOKEN_URL.error(
            "must be an http:// URL on localhost, 127.0.0.1 or [::1]: a development issuer on this machine",
        ));
    }
    let origin = |uri: &http::Uri| {
        Some((
            uri.scheme_str()?.to_owned(),
            uri.authority()?.as_str().to_ascii_lowercase(),
        ))
    };
    let issuer = jwt.issuer.parse::<http::Uri>().ok();
    if issuer.as_ref().and_then(origin) != origin(&uri) {
        return Err(DEV_TOKEN_URL.error(
            "must be on JWT_ISSUER's origin: the token endpoint of the issuer the gateway trusts",
        ));
    }
    Ok(Some(url))
}

fn list(value: Option<String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().trim_end_matches('/').to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn parse_origin_url(url: &str) -> Result<http::Uri, ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| ORIGIN_URL.error("not a valid URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) if uri.query().is_none() => Ok(uri),
        _ => Err(ORIGIN_URL.error("must be an absolute http(s) URL without a query")),
    }
}

/// The region of a Lambda function URL, `https://<id>.lambda-url.<region>.on.aws`.
fn lambda_url_region(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    let rest = host.split_once(".lambda-url.")?.1;
    let region = rest.strip_suffix(".on.aws")?;
    is_region(region).then(|| region.to_owned())
}

#[cfg(test)]
mod tests;
