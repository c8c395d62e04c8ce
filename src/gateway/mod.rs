//! The gateway: one request's life as named phases, pingora style.
//!
//! Reading order, which is also the order a request goes through:
//! 1. [`Gateway::request_filter`]: route, method, CORS preflight, health
//!    check, the chat page ([`page`]), content type and declared length,
//!    before the body is read.
//! 2. authentication (`auth`, driven by [`driver`]): the caller's JWT; then
//!    the agent and whether the caller may use it ([`agents`]).
//! 3. [`Gateway::parse_invocation`]: the body: control fields, response
//!    mode, session id (and the one sent to the agent); the agent's payload.
//! 4. [`Gateway::upstream_request`]: the signed origin request.
//! 5. [`Gateway::response_filter`]: the origin's status and headers become
//!    the client's, or a mapped error that never relays the origin's body.
//! 6. response body filter: [`crate::sse::Transformer`], chunk by chunk.
//! 7. logging: one [`RequestLog`] line per request.
//!
//! Everything here is synchronous and platform-free; [`driver`] runs the
//! phases over a [`driver::Platform`] that does the I/O and reads the clock.
//!
//! The routes, fields and headers: `docs/interface.md`.

mod agents;
pub mod driver;
mod edge;
pub mod limits;
pub mod log;
pub mod page;
pub mod payload;
pub mod routes;
pub mod secrets;

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::config::{Agent, Config, Cors, ResponseMode};
use crate::error::{Code, GatewayError};
use crate::origin::{self, Invocation};
use crate::scrub::Scrubber;
use crate::sse::{OriginBodyKind, Transformer, TransformerOptions};
use routes::{Handler, Unrouted};

pub use agents::{scoped_session_id, SCOPE_DOMAIN};
pub use edge::{Edge, KeySetCopy, Unconverted};
pub use log::{Event, EventName, Level, Outcome, RequestLog};

/// AgentCore's session header: accepted from callers, returned to them and
/// sent to the origin (one definition, in [`crate::origin`]).
pub use crate::origin::SESSION_ID_HEADER as SESSION_HEADER;
/// The per-request id header, echoed or generated.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
const SESSION_ID_LEN: std::ops::RangeInclusive<usize> = 33..=256;
/// `Cache-Control` of a stream: not stored, and not transformed (compressed)
/// by an intermediary.
pub const STREAM_CACHE_CONTROL: &str = "no-cache, no-transform";
/// `Content-Encoding` of a stream: the bytes as produced.
pub const STREAM_CONTENT_ENCODING: &str = "identity";
/// Longest text taken from a request into a log field (method, path, subject).
pub const MAX_LOG_FIELD_CHARS: usize = 256;
const EXPOSED_HEADERS: &str =
    "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id, X-Request-Id, RateLimit, RateLimit-Policy, Retry-After";
const ALLOWED_HEADERS: &str =
    "authorization, content-type, accept, x-amzn-bedrock-agentcore-runtime-session-id, x-request-id";

/// What the request filter decided. An agent's name and a session id are
/// the path's segments as sent: checked after authentication.
#[derive(Debug)]
pub enum Route {
    /// `POST /invocations` or `POST /` (the default agent, `agent: None`),
    /// or `POST /agents/<name>/invocations`: go on to authentication.
    Invoke { agent: Option<String> },
    /// `GET /usage`: authentication, then the subject's counts.
    Usage,
    /// `GET /agents`: authentication, then the agents the caller may use.
    Agents,
    /// `DELETE /sessions/<id>` or `DELETE /agents/<name>/sessions/<id>`:
    /// authentication, then `StopRuntimeSession`.
    EndSession {
        agent: Option<String>,
        session: String,
    },
    /// Answered without the origin (ping, preflight).
    Answered(Response<Bytes>),
}

/// `RateLimit-Policy` and, once the store answered, `RateLimit`.
#[derive(Debug, Clone)]
pub struct LimitFields {
    pub policy: HeaderValue,
    pub remaining: Option<HeaderValue>,
}

/// State carried from phase to phase of one request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The gateway's own id: a caller cannot choose the id of a log line.
    pub request_id: String,
    /// The caller's `X-Request-Id` (1 to 128 visible ASCII characters),
    /// echoed in the answer and logged beside ours.
    pub client_request_id: Option<String>,
    /// Monotonic milliseconds at arrival.
    pub started_ms: u64,
    /// Wall clock at arrival, unix milliseconds, for the log line.
    pub unix_ms: u64,
    pub method: String,
    pub path: String,
    /// What the CORS headers of the answer say.
    pub cors: CorsAnswer,
    pub mode: Option<ResponseMode>,
    /// The client's session id.
    pub session_id: Option<String>,
    /// The id sent to the agent, when it is not the client's
    /// (`SESSION_SCOPE=subject`).
    pub origin_session_id: Option<String>,
    /// The agent's name, once the request reached one.
    pub agent: Option<String>,
    pub subject: Option<String>,
    pub bytes_in: usize,
    /// The RateLimit header fields of the answer, with a limit configured.
    pub limit_fields: Option<LimitFields>,
    /// Origin requests sent for this answer, retries included (0: none).
    pub origin_attempts: u32,
    /// Random bytes for the generated session id.
    session_seed: [u8; 16],
}

impl RequestContext {
    /// `random`: 32 unpredictable bytes from the platform.
    pub fn new(
        head: &http::request::Parts,
        random: [u8; 32],
        started_ms: u64,
        unix_ms: u64,
    ) -> Self {
        let (id_seed, session_seed) = random.split_at(16);
        let client_request_id = head
            .headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_safe_id(v, 1..=128))
            .map(str::to_owned);
        RequestContext {
            request_id: uuid_v4(id_seed.try_into().expect("16 bytes")),
            client_request_id,
            started_ms,
            unix_ms,
            method: capped(head.method.as_str()),
            path: capped(head.uri.path()),
            cors: CorsAnswer::Off,
            mode: None,
            session_id: None,
            origin_session_id: None,
            agent: None,
            subject: None,
            bytes_in: 0,
            limit_fields: None,
            origin_attempts: 0,
            session_seed: session_seed.try_into().expect("16 bytes"),
        }
    }
}

impl RequestContext {
    /// For a request that could not be converted: only what is known of it.
    pub fn unparsed(
        method: &str,
        path: &str,
        random: [u8; 32],
        started_ms: u64,
        unix_ms: u64,
    ) -> Self {
        let head = http::Request::new(()).into_parts().0;
        let mut ctx = RequestContext::new(&head, random, started_ms, unix_ms);
        ctx.method = capped(method);
        ctx.path = capped(path);
        ctx
    }
}

/// The CORS part of an answer, decided from `CORS_ALLOW_ORIGINS` and `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsAnswer {
    /// CORS is not configured: no headers.
    Off,
    /// `CORS_ALLOW_ORIGINS=*`: a literal `*`, whatever the `Origin`.
    Any,
    /// A list of origins: `Vary: Origin`, and the request's origin when it
    /// is listed.
    Vary(Option<HeaderValue>),
}

impl CorsAnswer {
    /// The answer's CORS part for a request with `headers`.
    pub fn decide(cors: &Cors, headers: &HeaderMap) -> Self {
        Self::for_origin(cors, headers.get(header::ORIGIN))
    }

    /// The same for a request whose `Origin` is `origin`.
    pub fn for_origin(cors: &Cors, origin: Option<&HeaderValue>) -> Self {
        match cors {
            Cors::Off => CorsAnswer::Off,
            Cors::Any => CorsAnswer::Any,
            Cors::Origins(_) => CorsAnswer::Vary(
                origin
                    .filter(|o| o.to_str().is_ok_and(|o| cors.allows(o)))
                    .cloned(),
            ),
        }
    }

    fn allows_origin(&self) -> bool {
        matches!(self, CorsAnswer::Any | CorsAnswer::Vary(Some(_)))
    }
}

/// At most [`MAX_LOG_FIELD_CHARS`] characters of `text`.
fn capped(text: &str) -> String {
    text.chars().take(MAX_LOG_FIELD_CHARS).collect()
}

/// A parsed invocation: the agent's payload and the gateway's decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRequest {
    pub payload: Bytes,
    pub mode: ResponseMode,
    /// The client's: answered in the header and the trailer.
    pub session_id: String,
    /// Sent to the agent ([`Gateway::origin_session_id`]).
    pub origin_session_id: String,
}

/// The client response head and the body transformer for a started stream.
pub struct StreamStart {
    pub head: http::response::Parts,
    pub transformer: Transformer,
}

/// Shared, immutable per deployment: the configuration and what derives from it.
#[derive(Debug)]
pub struct Gateway {
    config: Config,
    page: Option<page::Page>,
    scrubber: Scrubber,
}

impl Gateway {
    pub fn new(config: Config) -> Self {
        let page = page::Page::new(&config);
        let scrubber = secrets::scrubber(&config);
        Gateway {
            config,
            page,
            scrubber,
        }
    }

    /// Removes the configuration's secrets (and anything shaped like a
    /// secret) from text that is logged or written to a client.
    pub fn scrubber(&self) -> &Scrubber {
        &self.scrubber
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Phase 1: decide from the head alone.
    pub fn request_filter(
        &self,
        head: &http::request::Parts,
        ctx: &mut RequestContext,
    ) -> Result<Route, GatewayError> {
        ctx.cors = CorsAnswer::decide(&self.config.cors, &head.headers);
        check_host(head, &self.config)?;
        check_expect(&head.headers)?;

        let path = head.uri.path();
        let (handler, params) =
            routes::resolve(&head.method, path, self.page.is_some()).map_err(|e| match e {
                Unrouted::NotFound => GatewayError::new(Code::NotFound),
                Unrouted::MethodNotAllowed(allow) => method_not_allowed(allow),
            })?;
        let agent = params.agent.map(str::to_owned);
        match handler {
            Handler::Preflight => Ok(Route::Answered(self.preflight(head, ctx)?)),
            Handler::Ping => {
                let mut response = Response::new(Bytes::from_static(br#"{"status":"Healthy"}"#));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Ok(Route::Answered(response))
            }
            Handler::Page => self
                .page
                .as_ref()
                .and_then(|page| page.answer(path))
                .map(Route::Answered)
                .ok_or_else(|| GatewayError::new(Code::NotFound)),
            Handler::Usage => Ok(Route::Usage),
            Handler::Agents => Ok(Route::Agents),
            Handler::EndSession => Ok(Route::EndSession {
                agent,
                session: params.session.unwrap_or_default().to_owned(),
            }),
            Handler::Invoke => {
                check_content_type(&head.headers)?;
                let declared = head
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                if declared.is_some_and(|n| n > self.config.max_body_bytes as u64) {
                    return Err(self.body_too_large());
                }
                Ok(Route::Invoke { agent })
            }
        }
    }

    fn preflight(
        &self,
        head: &http::request::Parts,
        ctx: &RequestContext,
    ) -> Result<Response<Bytes>, GatewayError> {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let allow = HeaderValue::from_str(&routes::allow(head.uri.path(), self.page.is_some()))
            .expect("method names");
        let headers = response.headers_mut();
        headers.insert(header::ALLOW, allow.clone());
        if !head.headers.contains_key(header::ORIGIN) {
            return Ok(response);
        }
        if !ctx.cors.allows_origin() {
            return Err(GatewayError::new(Code::CorsOriginNotAllowed));
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        Ok(response)
    }

    /// The 413 answer, also used by adapters when a body without a declared
    /// length turns out too large.
    pub fn body_too_large(&self) -> GatewayError {
        GatewayError::new(Code::BodyTooLarge).with_message(format!(
            "the request body is larger than {} bytes",
            self.config.max_body_bytes
        ))
    }

    /// Phase 3: the body. Control fields are taken out; everything else is
    /// the agent's payload, forwarded with its values byte for byte. The
    /// session id sent to `agent` derives from the client's.
    pub fn parse_invocation(
        &self,
        head: &http::request::Parts,
        agent: &Agent,
        body: &Bytes,
        ctx: &mut RequestContext,
    ) -> Result<InvocationRequest, GatewayError> {
        ctx.bytes_in = body.len();
        if body.len() > self.config.max_body_bytes {
            return Err(self.body_too_large());
        }
        let (controls, payload) = payload::read(body, self.config.max_body_keys)?;
        let mode = self.response_mode(head, controls.response.as_deref())?;
        let session_id = match controls
            .session_id
            .or_else(|| header_str(&head.headers, SESSION_HEADER))
        {
            Some(id) if is_valid_session_id(&id) => id,
            Some(_) => return Err(GatewayError::new(Code::InvalidSessionId)),
            None => generated_session_id(&ctx.session_seed),
        };
        ctx.mode = Some(mode);
        ctx.session_id = Some(session_id.clone());
        let origin_session_id = self.origin_session_id(agent, &session_id, ctx)?;
        Ok(InvocationRequest {
            payload,
            mode,
            session_id,
            origin_session_id,
        })
    }

    /// Body field, then `?response=` (its last occurrence, as in the body), then `Accept: text/plain`, then the default.
    fn response_mode(
        &self,
        head: &http::request::Parts,
        body_mode: Option<&str>,
    ) -> Result<ResponseMode, GatewayError> {
        let query_mode = head.uri.query().and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
                .filter(|(k, _)| *k == "response")
                .map(|(_, v)| v)
                .next_back()
        });
        if let Some(requested) = body_mode.or(query_mode) {
            return requested
                .parse()
                .map_err(|()| GatewayError::new(Code::InvalidResponseMode));
        }
        let wants_text = head
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|item| item.split(';').next().unwrap_or("").trim() == "text/plain");
        Ok(if wants_text {
            ResponseMode::Transformed
        } else {
            self.config.default_mode
        })
    }

    /// Phase 4: the signed request to `agent`'s origin.
    pub fn upstream_request(
        &self,
        agent: &Agent,
        invocation: &InvocationRequest,
        user_id: Option<&str>,
        bearer_token: Option<&str>,
        now: SystemTime,
    ) -> Result<http::Request<Bytes>, GatewayError> {
        origin::build_request(
            &agent.origin,
            Invocation {
                payload: invocation.payload.clone(),
                session_id: &invocation.origin_session_id,
                user_id,
                bearer_token,
            },
            now,
        )
    }

    /// Phase 5: the origin answered with a head. A success starts the stream;
    /// anything else is mapped to a gateway error without the origin's body.
    pub fn response_filter(
        &self,
        origin: &http::response::Parts,
        invocation: &InvocationRequest,
        ctx: &RequestContext,
        now_ms: u64,
    ) -> Result<StreamStart, GatewayError> {
        if !origin.status.is_success() {
            return Err(map_origin_status(origin));
        }
        // A compressed body can be neither relayed byte for byte (the
        // client would not be told) nor read as events.
        let encoding = header_str(&origin.headers, header::CONTENT_ENCODING.as_str());
        if let Some(encoding) = encoding.filter(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            let shown: String = encoding.chars().take(32).collect();
            return Err(GatewayError::new(Code::OriginEncodingUnsupported)
                .with_detail(format!("origin Content-Encoding: {shown}")));
        }
        let content_type =
            header_str(&origin.headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
        // Anything else (an HTML login or error page, no type at all) is not
        // an agent's answer; an EventSource would refuse it too.
        let Some(body_kind) = OriginBodyKind::from_content_type(&content_type) else {
            let shown: String = content_type.chars().take(64).collect();
            return Err(GatewayError::new(Code::OriginError).with_detail(format!(
                "origin status {} with content type {shown:?}, neither an event stream nor JSON",
                origin.status.as_u16()
            )));
        };
        let keepalive = self.config.keepalive_seconds;
        let transformer = Transformer::new(
            TransformerOptions {
                mode: invocation.mode,
                body_kind,
                max_event_bytes: self.config.max_event_bytes,
                keepalive_ms: (keepalive > 0).then_some(keepalive * 1000),
                session_id: invocation.session_id.clone(),
                meter: self.config.limits.token_budget.is_some(),
            },
            now_ms,
        )
        .with_scrubber(self.scrubber.clone());
        let mut response = Response::new(());
        let headers = response.headers_mut();
        let content_type = match (invocation.mode, body_kind) {
            (ResponseMode::Transformed, _) => "text/plain; charset=utf-8",
            (ResponseMode::Original, OriginBodyKind::Json) => "application/json",
            (ResponseMode::Original, OriginBodyKind::EventStream) => "text/event-stream",
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Never compressed on the way out, whatever the client's
        // Accept-Encoding: a compressor holds text back until its buffer
        // fills (workerd's gzip, until the stream ends). Cloudflare's edge
        // leaves a response alone when the origin (here, the Worker) says
        // `no-transform`; workerd ignores that but only encodes a body whose
        // Content-Encoding is unset, gzip or br, so `identity` keeps it out.
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(STREAM_CACHE_CONTROL),
        );
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(STREAM_CONTENT_ENCODING),
        );
        headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
        if let Ok(value) = HeaderValue::from_str(&invocation.session_id) {
            headers.insert(HeaderName::from_static(SESSION_HEADER), value);
        }
        finish_headers(headers, ctx);
        let (head, ()) = response.into_parts();
        Ok(StreamStart { head, transformer })
    }
}

/// Headers every response carries: request id and, for allowed browser
/// origins, CORS.
pub fn finish_headers(headers: &mut HeaderMap, ctx: &RequestContext) {
    let echoed = ctx.client_request_id.as_ref().unwrap_or(&ctx.request_id);
    if let Ok(value) = HeaderValue::from_str(echoed) {
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let allowed = match &ctx.cors {
        CorsAnswer::Off => None,
        CorsAnswer::Any => Some(HeaderValue::from_static("*")),
        CorsAnswer::Vary(origin) => {
            // The answer depends on Origin whether or not it was allowed:
            // a shared cache must not serve one origin's to another.
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
            origin.clone()
        }
    };
    if let Some(fields) = &ctx.limit_fields {
        headers.insert(limits::RATE_LIMIT_POLICY, fields.policy.clone());
        if let Some(remaining) = &fields.remaining {
            headers.insert(limits::RATE_LIMIT, remaining.clone());
        }
    }
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
}

/// An error as the client sees it, with the common headers.
pub fn error_response(error: &GatewayError, ctx: &RequestContext) -> Response<Bytes> {
    let mut response = error.to_response();
    if let Some(session) = ctx
        .session_id
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static(SESSION_HEADER), session);
    }
    finish_headers(response.headers_mut(), ctx);
    response
}

/// Maps an origin's failure status to ours. 401/403 from the origin mean our
/// credentials or its policy failed, not the caller: 502, never 401.
pub fn map_origin_status(origin: &http::response::Parts) -> GatewayError {
    let status = origin.status;
    // The origin's header is logged only when it has the shape of an AWS
    // error type (`ThrottlingException`); anything else may echo a secret.
    let error_type = header_str(&origin.headers, "x-amzn-errortype")
        .map(|t| t.split(':').next().unwrap_or_default().to_owned())
        .map(|t| {
            let is_name = (1..=64).contains(&t.len())
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
            if is_name {
                t
            } else {
                "unrecognized error type".to_owned()
            }
        });
    let code = match status.as_u16() {
        429 => Code::OriginThrottled,
        408 | 504 => Code::OriginTimeout,
        401 | 403 => Code::OriginAuthFailed,
        404 => Code::OriginNotFound,
        // AgentCore's own: `ServiceQuotaExceededException` and
        // `RuntimeClientError` (the agent's code failed).
        402 => Code::OriginQuotaExceeded,
        424 => Code::AgentFailed,
        400..=499 => Code::OriginRejected,
        _ => Code::OriginError,
    };
    let mut error = GatewayError::new(code).with_detail(format!(
        "origin status {}{}",
        status.as_u16(),
        error_type.map(|t| format!(" ({t})")).unwrap_or_default()
    ));
    let default_retry_after = match code {
        Code::OriginThrottled => Some("1"),
        Code::OriginQuotaExceeded => Some(QUOTA_RETRY_AFTER_SECONDS),
        _ => None,
    };
    if let Some(default) = default_retry_after {
        let retry = header_str(&origin.headers, "retry-after")
            .filter(|v| v.parse::<u32>().is_ok())
            .unwrap_or_else(|| default.to_owned());
        if let Ok(value) = HeaderValue::from_str(&retry) {
            error = error.with_header(header::RETRY_AFTER, value);
        }
    }
    error
}

/// `Retry-After` of `origin_quota_exceeded` when the origin gives none.
/// A quota such as AgentCore's active sessions per account frees as other
/// sessions end or go idle, in minutes rather than a throttle's
/// milliseconds: a minute keeps clients from hammering a quota that a
/// second's wait would not have freed.
pub const QUOTA_RETRY_AFTER_SECONDS: &str = "60";

/// RFC 9112 section 3.2: exactly one `Host`, a valid authority (an HTTP/1.0
/// request may omit it); and on a loopback listener, a name of this machine
/// or of `PUBLIC_HOSTS` (against DNS rebinding).
fn check_host(head: &http::request::Parts, config: &Config) -> Result<(), GatewayError> {
    let mut hosts = head.headers.get_all(header::HOST).iter();
    let authority = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host
            .to_str()
            .ok()
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
            .filter(|a| !a.as_str().contains('@')),
        // HTTP/1.0 may omit it, but then nothing names this machine.
        (None, _) if head.version < http::Version::HTTP_11 => {
            return match config.loopback_listener {
                false => Ok(()),
                true => Err(GatewayError::new(Code::MisdirectedRequest)),
            };
        }
        _ => None,
    };
    let Some(authority) = authority else {
        return Err(GatewayError::new(Code::InvalidHost));
    };
    // An absolute-form target names a host too (RFC 9112 section 3.2.2).
    let target = head.uri.authority().map(|a| a.host());
    if [Some(authority.host()), target]
        .into_iter()
        .flatten()
        .all(|host| config.host_allowed(host))
    {
        Ok(())
    } else {
        Err(GatewayError::new(Code::MisdirectedRequest))
    }
}

/// `Expect: 100-continue` (which the platform answers) or none at all.
fn check_expect(headers: &HeaderMap) -> Result<(), GatewayError> {
    let unknown = headers
        .get_all(header::EXPECT)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if unknown {
        Err(GatewayError::new(Code::ExpectationFailed))
    } else {
        Ok(())
    }
}

fn method_not_allowed(allow: String) -> GatewayError {
    let value = HeaderValue::from_str(&allow).expect("method names");
    GatewayError::new(Code::MethodNotAllowed)
        .with_message(format!("this route allows {allow}"))
        .with_header(header::ALLOW, value)
}

/// JSON only, declared: a body without a type (or `text/plain`) is what a
/// cross-site page can send without a CORS preflight.
fn check_content_type(headers: &HeaderMap) -> Result<(), GatewayError> {
    // Exactly one: a Worker and a function URL see two as one value joined
    // by a comma, which is no JSON type either.
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(GatewayError::new(Code::UnsupportedMediaType));
    };
    let essence = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(GatewayError::new(Code::UnsupportedMediaType))
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A session id the gateway accepts (`runtimeSessionId`).
pub fn is_valid_session_id(id: &str) -> bool {
    is_safe_id(id, SESSION_ID_LEN)
}

/// Visible ASCII without spaces: safe in a header and a log line.
fn is_safe_id(id: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A version-4 UUID from 16 random bytes.
pub fn uuid_v4(bytes: [u8; 16]) -> String {
    let mut b = bytes;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// AgentCore wants at least 33 characters; a UUID has 36.
fn generated_session_id(seed: &[u8; 16]) -> String {
    uuid_v4(*seed)
}

#[cfg(test)]
mod tests;
