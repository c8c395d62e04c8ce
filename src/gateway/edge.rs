//! The gateway of one process, Worker isolate or Lambda execution
//! environment: configured once from the variables, it answers every
//! request through [`driver`]. The same startup events on every target
//! (`auth_disabled`, `invalid_configuration`); a configuration error is
//! kept as the answer to every request (a Worker or a function cannot
//! refuse to start), or read by the native server, which refuses to start.

use bytes::Bytes;
use http::HeaderValue;

use super::driver::{self, Platform, RequestBody, ResponseBody, Shared};
use super::log::{Event, EventName, Level};
use super::{CorsAnswer, Gateway, RequestContext};
use crate::config::{AuthConfig, Config, Cors, CORS_ALLOW_ORIGINS, LIMITS_STORE};
use crate::error::{Code, GatewayError};
use crate::scrub::Scrubber;

/// A configured gateway, or the reason it is not.
pub struct Edge {
    state: Result<Shared, Misconfigured>,
}

struct Misconfigured {
    error: GatewayError,
    /// `CORS_ALLOW_ORIGINS` as far as it can be read, so that a browser can
    /// read even this answer.
    cors: Cors,
}

/// What is known of a request an adapter could not convert into an HTTP
/// request (a header value the `http` types refuse, say).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unconverted {
    pub method: String,
    /// As sent, not normalized.
    pub path: String,
    /// Its `Origin`, for the CORS headers of the answer.
    pub origin: Option<String>,
}

/// An issuer key set as fetched, to hand to another instance (the Worker's
/// Cache API); see [`Edge::export_key_set`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetCopy {
    pub document: Bytes,
    /// Unix seconds.
    pub fetched_at: u64,
    /// Seconds it stays fresh from `fetched_at`.
    pub max_age: u64,
}

impl Edge {
    /// Reads the configuration through `lookup`, then as [`Edge::new`]; an
    /// invalid one is logged (`invalid_configuration`) and kept as the
    /// answer to every request.
    pub fn configure<P: Platform>(lookup: impl Fn(&str) -> Option<String>, platform: &P) -> Edge {
        match Config::from_lookup(&lookup) {
            Ok(config) => Edge::new(config, platform),
            Err(e) => {
                let cors = Config::cors_from(CORS_ALLOW_ORIGINS.read(&lookup));
                Edge::misconfigured(platform, e.to_string(), cors)
            }
        }
    }

    /// Logs `message` (`invalid_configuration`) and keeps it as the answer.
    fn misconfigured<P: Platform>(platform: &P, message: String, cors: Cors) -> Edge {
        let line = Event::new(
            driver::unix_ms(platform.now()),
            Level::Error,
            EventName::InvalidConfiguration,
        )
        .with_detail(&message);
        platform.log(&line.to_line());
        Edge {
            state: Err(Misconfigured {
                error: GatewayError::new(Code::InvalidConfiguration).with_message(message),
                cors,
            }),
        }
    }

    /// The gateway of `config` on `platform`; `AUTH=none` is logged as a warning.
    pub fn new<P: Platform>(mut config: Config, platform: &P) -> Edge {
        if !platform.reaches_store(&config.limits.store) {
            let message = LIMITS_STORE
                .error("names a store this platform cannot reach: redis natively and on Lambda, durable_object on Workers with the LIMITS binding, memory everywhere")
                .to_string();
            return Edge::misconfigured(platform, message, config.cors);
        }
        if config.auth == AuthConfig::None {
            let warning = Event::new(
                driver::unix_ms(platform.now()),
                Level::Warn,
                EventName::AuthDisabled,
            )
            .with_detail(
                "AUTH=none: callers are not authenticated; use for local development only",
            );
            platform.log(&warning.to_line());
        }
        config.loopback_listener = platform.listens_on_loopback();
        Edge {
            state: Ok(Shared::new(Gateway::new(config), P::VERIFIES_RSA)),
        }
    }

    /// Why the configuration is invalid (`invalid_configuration`, naming the
    /// variable), if it is.
    pub fn configuration_error(&self) -> Option<&GatewayError> {
        self.state.as_ref().err().map(|m| &m.error)
    }

    /// The configuration, when it is valid.
    pub fn config(&self) -> Option<&Config> {
        self.state.as_ref().ok().map(|s| s.gateway.config())
    }

    /// Answers one request; `body` is read as far as the answer needs
    /// (at most `MAX_BODY_BYTES`), the rest is the caller's.
    pub async fn handle<P: Platform, B: RequestBody>(
        &self,
        platform: &P,
        head: http::request::Parts,
        body: &mut B,
    ) -> http::Response<ResponseBody<P>> {
        match &self.state {
            Ok(shared) => driver::handle(shared, platform, head, body).await,
            Err(misconfigured) => {
                let mut ctx = context(platform, &head);
                ctx.cors = CorsAnswer::decide(&misconfigured.cors, &head.headers);
                driver::answer_error(platform, &ctx, &misconfigured.error, &Scrubber::default())
            }
        }
    }

    /// Answers with `error` a request the adapter could not convert into an
    /// HTTP request (only its method, path and `Origin` are known), with the
    /// common headers and its log line.
    pub fn refuse<P: Platform>(
        &self,
        platform: &P,
        request: &Unconverted,
        error: &GatewayError,
    ) -> http::Response<ResponseBody<P>> {
        let mut ctx = RequestContext::unparsed(
            &request.method,
            &request.path,
            platform.random(),
            platform.now_ms(),
            driver::unix_ms(platform.now()),
        );
        let origin = request
            .origin
            .as_deref()
            .and_then(|o| HeaderValue::from_str(o).ok());
        let (cors, scrubber) = match &self.state {
            Ok(shared) => (
                &shared.gateway.config().cors,
                shared.gateway.scrubber().clone(),
            ),
            Err(misconfigured) => (&misconfigured.cors, Scrubber::default()),
        };
        ctx.cors = CorsAnswer::for_origin(cors, origin.as_ref());
        driver::answer_error(platform, &ctx, error, &scrubber)
    }

    /// The issuer whose key set [`Edge::export_key_set`] gives.
    pub fn issuer(&self) -> Option<&str> {
        match &self.config()?.auth {
            AuthConfig::Jwt(jwt) => Some(&jwt.issuer),
            AuthConfig::None => None,
        }
    }

    /// The issuer's key set as last fetched, if any.
    pub fn export_key_set(&self) -> Option<KeySetCopy> {
        let authenticator = self.state.as_ref().ok()?.authenticator.as_ref()?;
        let (document, fetched_at, max_age) = driver::lock(authenticator).export_key_set()?;
        Some(KeySetCopy {
            document,
            fetched_at,
            max_age,
        })
    }

    /// Adopts a key set another instance fetched, unless this one has a
    /// newer one; a document that does not parse is ignored.
    pub fn import_key_set(&self, copy: KeySetCopy) {
        let Some(authenticator) = self
            .state
            .as_ref()
            .ok()
            .and_then(|s| s.authenticator.as_ref())
        else {
            return;
        };
        let _ = driver::lock(authenticator).import_key_set(
            copy.document,
            copy.fetched_at,
            copy.max_age,
        );
    }
}

fn context<P: Platform>(platform: &P, head: &http::request::Parts) -> RequestContext {
    RequestContext::new(
        head,
        platform.random(),
        platform.now_ms(),
        driver::unix_ms(platform.now()),
    )
}
