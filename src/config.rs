//! Gateway configuration: the variables of the interface's configuration
//! table (`docs/interface.md`, kept equal to [`VARIABLES`] by a test), read
//! through a lookup function so that every platform (process environment,
//! Workers `[vars]` and secrets, Lambda environment) shares one parser.
//!
//! Invalid configuration is a [`ConfigError`] naming the variable; nothing
//! here panics. `Debug` of anything holding a credential is redacted.

use std::fmt;
use std::str::FromStr;

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
    fn new(variable: &'static str, message: impl Into<String>) -> Self {
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
    /// Parses `arn:<partition>:bedrock-agentcore:<region>:<account>:runtime/<id>`.
    pub fn parse(arn: &str, qualifier: String) -> Result<Self, ConfigError> {
        let err = |m: &str| ConfigError::new("AGENT_RUNTIME_ARN", m);
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
            return Err(ConfigError::new(
                "AGENT_QUALIFIER",
                "must be a non-empty word",
            ));
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

/// The whole gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub origin: OriginConfig,
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
    pub rate_limit_per_minute: Option<u32>,
    /// Largest SSE event held in memory (transformed mode) or passed (original).
    pub max_event_bytes: usize,
    /// Time allowed for the origin to answer with headers.
    pub origin_timeout_seconds: u64,
    /// Whether the chat page is served at `GET /` (`UI`).
    pub ui: bool,
    /// The development issuer's token endpoint, offered by the chat page.
    /// Not a variable: only `agent-edge dev` sets it.
    pub dev_token_url: Option<String>,
    /// Longest silence between two origin body bytes before the stream ends
    /// with `origin_idle_timeout` (keepalives go on meanwhile).
    pub origin_idle_timeout_seconds: u64,
    /// The native server's client connections (other platforms manage their own).
    pub client_limits: ClientLimits,
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

/// Every variable [`Config::from_lookup`] reads: adapters that must name
/// what they look up (the Worker, among `[vars]` and secrets) use this list.
pub const VARIABLES: &[&str] = &[
    "AGENT_RUNTIME_ARN",
    "AGENT_QUALIFIER",
    "ORIGIN_URL",
    "ORIGIN_AUTH",
    "SIGV4_SERVICE",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AUTH",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_JWKS_URL",
    "JWT_TOKEN_USE",
    "JWT_LEEWAY_SECONDS",
    "JWT_USER_ID_CLAIM",
    "DEFAULT_RESPONSE_MODE",
    "MAX_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "KEEPALIVE_SECONDS",
    "CORS_ALLOW_ORIGINS",
    "MAX_BODY_KEYS",
    "PUBLIC_HOSTS",
    "RATE_LIMIT_PER_MINUTE",
    "ORIGIN_TIMEOUT_SECONDS",
    "UI",
    "ORIGIN_IDLE_TIMEOUT_SECONDS",
    "CLIENT_HEADER_TIMEOUT_SECONDS",
    "CLIENT_IDLE_TIMEOUT_SECONDS",
    "CLIENT_BODY_TIMEOUT_SECONDS",
    "MAX_HEADER_BYTES",
    "MAX_CONNECTIONS",
    "SHUTDOWN_GRACE_SECONDS",
];

/// Default for `MAX_EVENT_BYTES`.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

impl Config {
    /// Reads the configuration through `lookup` (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            debug_assert!(VARIABLES.contains(&name), "{name} is not in VARIABLES");
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let qualifier = get("AGENT_QUALIFIER").unwrap_or_else(|| "DEFAULT".to_owned());
        let runtime = get("AGENT_RUNTIME_ARN")
            .map(|arn| AgentRuntime::parse(&arn, qualifier))
            .transpose()?;

        let origin_url = get("ORIGIN_URL");
        let base_url = match (&origin_url, &runtime) {
            (Some(url), _) => parse_origin_url(url)?,
            (None, Some(rt)) => rt.default_endpoint().parse().map_err(|_| {
                ConfigError::new("AGENT_RUNTIME_ARN", "does not give a valid endpoint")
            })?,
            (None, None) => {
                return Err(ConfigError::new(
                    "AGENT_RUNTIME_ARN",
                    "set AGENT_RUNTIME_ARN (AgentCore) or ORIGIN_URL (any other origin)",
                ))
            }
        };
        let lambda_region = lambda_url_region(&base_url);

        let auth = match get("ORIGIN_AUTH").as_deref().unwrap_or("sigv4") {
            "sigv4" => {
                let service = match get("SIGV4_SERVICE") {
                    Some(s) => s,
                    None if runtime.is_some() => "bedrock-agentcore".to_owned(),
                    None if lambda_region.is_some() => "lambda".to_owned(),
                    None => {
                        return Err(ConfigError::new(
                            "SIGV4_SERVICE",
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
                    .or_else(|| get("AWS_REGION"))
                    .ok_or_else(|| {
                        ConfigError::new(
                            "AWS_REGION",
                            "required: the origin does not name a region",
                        )
                    })?;
                if !is_region(&region) {
                    return Err(ConfigError::new("AWS_REGION", "malformed region"));
                }
                let access_key_id = get("AWS_ACCESS_KEY_ID").ok_or_else(|| {
                    ConfigError::new("AWS_ACCESS_KEY_ID", "required with ORIGIN_AUTH=sigv4")
                })?;
                let secret = get("AWS_SECRET_ACCESS_KEY").ok_or_else(|| {
                    ConfigError::new("AWS_SECRET_ACCESS_KEY", "required with ORIGIN_AUTH=sigv4")
                })?;
                OriginAuth::SigV4 {
                    service,
                    region,
                    credentials: AwsCredentials {
                        access_key_id,
                        secret_access_key: Secret::new(secret),
                        session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
                    },
                }
            }
            "jwt-passthrough" => OriginAuth::JwtPassthrough,
            "none" => OriginAuth::None,
            _ => {
                return Err(ConfigError::new(
                    "ORIGIN_AUTH",
                    "must be sigv4, jwt-passthrough or none",
                ))
            }
        };

        let auth_mode = get("AUTH").unwrap_or_else(|| "jwt".to_owned());
        let caller_auth = match auth_mode.as_str() {
            "jwt" => AuthConfig::Jwt(jwt_config(&get)?),
            "none" => AuthConfig::None,
            _ => return Err(ConfigError::new("AUTH", "must be jwt or none")),
        };
        if matches!(auth, OriginAuth::JwtPassthrough) && caller_auth == AuthConfig::None {
            // Passing through a token nobody checked is allowed: the origin checks it.
        }

        let default_mode = match get("DEFAULT_RESPONSE_MODE") {
            None => ResponseMode::Original,
            Some(v) => v.parse().map_err(|_| {
                ConfigError::new("DEFAULT_RESPONSE_MODE", "must be original or transformed")
            })?,
        };

        Ok(Config {
            origin: OriginConfig {
                base_url,
                runtime,
                auth,
            },
            auth: caller_auth,
            default_mode,
            max_body_bytes: number(&get, "MAX_BODY_BYTES", 1_048_576, 1, 64 << 20)?,
            keepalive_seconds: number(&get, "KEEPALIVE_SECONDS", 15, 0, 3600)?,
            cors: Cors::from_list(list(get("CORS_ALLOW_ORIGINS"))),
            max_body_keys: number(&get, "MAX_BODY_KEYS", 10_000, 1, 1_000_000)?,
            public_hosts: list(get("PUBLIC_HOSTS"))
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            loopback_listener: false,
            rate_limit_per_minute: match get("RATE_LIMIT_PER_MINUTE") {
                None => None,
                Some(_) => Some(number(&get, "RATE_LIMIT_PER_MINUTE", 0, 1, 1_000_000)?),
            },
            max_event_bytes: number(
                &get,
                "MAX_EVENT_BYTES",
                DEFAULT_MAX_EVENT_BYTES,
                1024,
                64 << 20,
            )?,
            origin_timeout_seconds: number(&get, "ORIGIN_TIMEOUT_SECONDS", 60, 1, 3600)?,
            ui: match get("UI").as_deref() {
                None | Some("on") => true,
                Some("off") => false,
                Some(_) => return Err(ConfigError::new("UI", "must be on or off")),
            },
            dev_token_url: None,
            // Agents think for minutes between two outputs: generous.
            origin_idle_timeout_seconds: number(
                &get,
                "ORIGIN_IDLE_TIMEOUT_SECONDS",
                900,
                1,
                86_400,
            )?,
            client_limits: client_limits(&get)?,
        })
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

fn client_limits(get: &impl Fn(&str) -> Option<String>) -> Result<ClientLimits, ConfigError> {
    let limits = ClientLimits {
        header_timeout_seconds: number(get, "CLIENT_HEADER_TIMEOUT_SECONDS", 30, 1, 3600)?,
        idle_timeout_seconds: number(get, "CLIENT_IDLE_TIMEOUT_SECONDS", 15, 1, 3600)?,
        body_timeout_seconds: number(get, "CLIENT_BODY_TIMEOUT_SECONDS", 60, 1, 3600)?,
        // hyper needs at least 8 KiB to read a head.
        max_header_bytes: number(get, "MAX_HEADER_BYTES", 32 * 1024, 8 * 1024, 1 << 20)?,
        max_connections: number(get, "MAX_CONNECTIONS", 10_000, 1, 1_000_000)?,
        shutdown_grace_seconds: number(get, "SHUTDOWN_GRACE_SECONDS", 30, 0, 86_400)?,
    };
    if limits.idle_timeout_seconds > limits.header_timeout_seconds {
        // The wait for the next request head counts against the header timeout.
        return Err(ConfigError::new(
            "CLIENT_IDLE_TIMEOUT_SECONDS",
            "must not exceed CLIENT_HEADER_TIMEOUT_SECONDS, which also bounds the wait for the next request",
        ));
    }
    Ok(limits)
}

fn jwt_config(get: &impl Fn(&str) -> Option<String>) -> Result<JwtConfig, ConfigError> {
    let issuer = get("JWT_ISSUER").ok_or_else(|| {
        ConfigError::new(
            "JWT_ISSUER",
            "required with AUTH=jwt (set AUTH=none for local development only)",
        )
    })?;
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err(ConfigError::new("JWT_ISSUER", "must be an http(s) URL"));
    }
    let audiences = list(get("JWT_AUDIENCE"));
    if audiences.is_empty() {
        return Err(ConfigError::new(
            "JWT_AUDIENCE",
            "required with AUTH=jwt: the app client id(s) tokens must be issued to",
        ));
    }
    let jwks_url = get("JWT_JWKS_URL");
    if let Some(url) = &jwks_url {
        if url
            .parse::<http::Uri>()
            .map(|u| u.host().is_none())
            .unwrap_or(true)
        {
            return Err(ConfigError::new("JWT_JWKS_URL", "must be an absolute URL"));
        }
    }
    let token_use = match get("JWT_TOKEN_USE").as_deref().unwrap_or("any") {
        "id" => TokenUse::Id,
        "access" => TokenUse::Access,
        "any" => TokenUse::Any,
        _ => {
            return Err(ConfigError::new(
                "JWT_TOKEN_USE",
                "must be id, access or any",
            ))
        }
    };
    Ok(JwtConfig {
        issuer,
        audiences,
        jwks_url,
        token_use,
        leeway_seconds: number(get, "JWT_LEEWAY_SECONDS", 60, 0, 3600)?,
        user_id_claim: get("JWT_USER_ID_CLAIM"),
    })
}

fn number<T: FromStr + PartialOrd + fmt::Display + Copy>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    let Some(raw) = get(name) else {
        return Ok(default);
    };
    match raw.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(ConfigError::new(
            name,
            format!("must be a whole number from {min} to {max}"),
        )),
    }
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
        .map_err(|_| ConfigError::new("ORIGIN_URL", "not a valid URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) if uri.query().is_none() => Ok(uri),
        _ => Err(ConfigError::new(
            "ORIGIN_URL",
            "must be an absolute http(s) URL without a query",
        )),
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
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ARN: &str = "arn:aws:bedrock-agentcore:us-west-2:123456789012:runtime/demo_agent-AbC123";

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AGENT_RUNTIME_ARN", ARN),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AUTH", "none"),
        ]
    }

    #[test]
    fn arn_gives_region_endpoint_and_service() {
        let c = config(&base()).unwrap();
        let rt = c.origin.runtime.as_ref().unwrap();
        assert_eq!(rt.region, "us-west-2");
        assert_eq!(rt.account_id, "123456789012");
        assert_eq!(rt.qualifier, "DEFAULT");
        assert_eq!(
            c.origin.base_url.to_string(),
            "https://bedrock-agentcore.us-west-2.amazonaws.com/"
        );
        match &c.origin.auth {
            OriginAuth::SigV4 {
                service, region, ..
            } => {
                assert_eq!(service, "bedrock-agentcore");
                assert_eq!(region, "us-west-2");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.default_mode, ResponseMode::Original);
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert_eq!(c.keepalive_seconds, 15);
        assert_eq!(
            c.client_limits,
            ClientLimits {
                header_timeout_seconds: 30,
                idle_timeout_seconds: 15,
                body_timeout_seconds: 60,
                max_header_bytes: 32 * 1024,
                max_connections: 10_000,
                shutdown_grace_seconds: 30,
            }
        );
    }

    #[test]
    fn client_limits_are_validated_naming_the_variable() {
        for (name, value) in [
            ("CLIENT_HEADER_TIMEOUT_SECONDS", "0"),
            ("CLIENT_IDLE_TIMEOUT_SECONDS", "31"),
            ("CLIENT_BODY_TIMEOUT_SECONDS", "soon"),
            ("MAX_HEADER_BYTES", "4096"),
            ("MAX_CONNECTIONS", "0"),
            ("SHUTDOWN_GRACE_SECONDS", "-1"),
        ] {
            let mut vars = base();
            vars.push((name, value));
            assert_eq!(config(&vars).unwrap_err().variable, name, "{name}={value}");
        }
        let mut vars = base();
        vars.extend([
            ("CLIENT_HEADER_TIMEOUT_SECONDS", "120"),
            ("CLIENT_IDLE_TIMEOUT_SECONDS", "90"),
        ]);
        assert_eq!(
            config(&vars).unwrap().client_limits.idle_timeout_seconds,
            90
        );
    }

    #[test]
    fn lambda_url_defaults_to_lambda_service_and_its_region() {
        let c = config(&[
            ("ORIGIN_URL", "https://abc123.lambda-url.eu-west-1.on.aws/"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AUTH", "none"),
        ])
        .unwrap();
        match &c.origin.auth {
            OriginAuth::SigV4 {
                service, region, ..
            } => {
                assert_eq!((service.as_str(), region.as_str()), ("lambda", "eu-west-1"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_origin_region_wins_over_aws_region() {
        let signing_region = |vars: &[(&str, &str)]| match config(vars).unwrap().origin.auth {
            OriginAuth::SigV4 { region, .. } => region,
            other => panic!("{other:?}"),
        };
        // A function in eu-west-1 (Lambda sets AWS_REGION) calling a runtime
        // in us-west-2.
        let mut vars = base();
        vars.push(("AWS_REGION", "eu-west-1"));
        assert_eq!(signing_region(&vars), "us-west-2");
        vars.push(("ORIGIN_URL", "https://abc123.lambda-url.ap-south-1.on.aws/"));
        assert_eq!(
            signing_region(&vars),
            "us-west-2",
            "the ARN's, then the URL's"
        );
        let custom_origin = [
            ("ORIGIN_URL", "https://agent.example.com"),
            ("SIGV4_SERVICE", "execute-api"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AUTH", "none"),
        ];
        assert_eq!(signing_region(&custom_origin), "eu-west-1");
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("AUTH", "none")], "AGENT_RUNTIME_ARN"),
            (
                &[
                    ("AGENT_RUNTIME_ARN", "arn:aws:s3:::bucket"),
                    ("AUTH", "none"),
                ],
                "AGENT_RUNTIME_ARN",
            ),
            (
                &[("AGENT_RUNTIME_ARN", ARN), ("AUTH", "none")],
                "AWS_ACCESS_KEY_ID",
            ),
            (
                &[("AGENT_RUNTIME_ARN", ARN), ("ORIGIN_AUTH", "none")],
                "JWT_ISSUER",
            ),
            (
                &[
                    ("AGENT_RUNTIME_ARN", ARN),
                    ("ORIGIN_AUTH", "none"),
                    ("AUTH", "maybe"),
                ],
                "AUTH",
            ),
            (&[("ORIGIN_URL", "ftp://x"), ("AUTH", "none")], "ORIGIN_URL"),
            (
                &[("ORIGIN_URL", "http://127.0.0.1:1/x"), ("AUTH", "none")],
                "SIGV4_SERVICE",
            ),
            (
                &[
                    ("ORIGIN_URL", "http://127.0.0.1:1/x"),
                    ("AUTH", "none"),
                    ("ORIGIN_AUTH", "none"),
                    ("MAX_BODY_BYTES", "-1"),
                ],
                "MAX_BODY_BYTES",
            ),
            (
                &[
                    ("ORIGIN_URL", "http://127.0.0.1:1/x"),
                    ("ORIGIN_AUTH", "none"),
                    ("JWT_ISSUER", "https://issuer"),
                ],
                "JWT_AUDIENCE",
            ),
            (
                &[
                    ("ORIGIN_URL", "http://127.0.0.1:1/x"),
                    ("AUTH", "none"),
                    ("ORIGIN_AUTH", "none"),
                    ("UI", "yes"),
                ],
                "UI",
            ),
        ];
        for (vars, variable) in cases {
            let err = config(vars).unwrap_err();
            assert_eq!(err.variable, *variable, "{vars:?}: {err}");
        }
    }

    #[test]
    fn debug_redacts_credentials_and_arn() {
        let c = config(&base()).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!debug.contains("AKIDEXAMPLE"), "{debug}");
        assert!(!debug.contains("123456789012"), "{debug}");
    }
}
