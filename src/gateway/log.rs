//! The log lines: one per request ([`RequestLog`]) and one per notable
//! event outside a request's outcome ([`Event`]), both JSON objects written
//! by [`to_line`]. Neither ever holds a token, an ARN, an account id or a key.

use http::StatusCode;
use serde::Serialize;

use super::RequestContext;
use crate::config::ResponseMode;
use crate::error::Code;

/// Declares a log field's values: an enum with its wire names, the list of
/// all of them (`docs/interface.md` names each, a test checks it) and a
/// `Serialize` that writes the wire name.
macro_rules! log_values {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$doc:meta])* $variant:ident = $wire:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$doc])* $variant,)*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The value as written in log lines.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)*
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

log_values! {
    /// A log line's severity.
    pub enum Level {
        Info = "info",
        Warn = "warn",
        Error = "error",
    }
}

log_values! {
    /// How a streamed answer ended.
    pub enum Outcome {
        /// The origin's stream ended and everything was sent.
        Complete = "complete",
        /// The origin failed or broke a limit; the stream ended with an error.
        OriginError = "origin_error",
        /// The client went away before the end.
        ClientClosed = "client_closed",
        /// Still running when the server's shutdown grace ran out; ended
        /// with the mode's error.
        Shutdown = "shutdown",
    }
}

log_values! {
    /// What an [`Event`] line reports (its `event` field).
    pub enum EventName {
        /// The server is listening (`addr`).
        Listening = "listening",
        /// `AUTH=none`: callers are not authenticated.
        AuthDisabled = "auth_disabled",
        /// An issuer document could not be fetched or used.
        KeySetFetch = "key_set_fetch",
        /// The platform could not check a signature it was handed; the core did.
        SignatureCheckFallback = "signature_check_fallback",
        /// The configuration is invalid: every request answers 500 (adapters
        /// that cannot refuse to start, like a Lambda function).
        InvalidConfiguration = "invalid_configuration",
        /// The native server stopped accepting and drains its connections.
        ShutdownStarted = "shutdown_started",
        /// The shutdown grace ran out: remaining streams end with their error.
        ShutdownGraceOver = "shutdown_grace_over",
        /// Every connection closed (or the last ones were abandoned).
        ShutdownComplete = "shutdown_complete",
        /// `MAX_CONNECTIONS` are open: new connections wait in the backlog.
        ConnectionLimitReached = "connection_limit_reached",
        /// The open-files limit is too low for `MAX_CONNECTIONS`.
        OpenFileLimit = "open_file_limit",
        /// The native server's HTTP parser refused a request (malformed
        /// head, 431, head timeout): no request line is written for it.
        RequestRefused = "request_refused",
        /// Something panicked: a bug. The request it served fails.
        Panic = "panic",
        /// The Lambda Runtime API connection failed (an answer's stream was
        /// closed under it): that answer is lost, the function goes on.
        RuntimeApiError = "runtime_api_error",
        /// The limits store did not answer (`LIMITS_STORE_FAILURE=allow`:
        /// the request went on), or a charge was lost.
        LimitsUnavailable = "limits_unavailable",
    }
}

/// A log line about something other than one request's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub time_ms: u64,
    pub level: Level,
    pub event: EventName,
    /// The request it happened to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The listening address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

impl Event {
    pub fn new(time_ms: u64, level: Level, event: EventName) -> Self {
        Event {
            time_ms,
            level,
            event,
            request_id: None,
            detail: None,
            addr: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn to_line(&self) -> String {
        to_line(self)
    }
}

/// The line a platform's panic hook writes instead of the default text (on
/// several lines, not JSON): the message, scrubbed and cut, and where.
pub fn panic_event(info: &std::panic::PanicHookInfo<'_>, time_ms: u64) -> Event {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let message = crate::scrub::Scrubber::default().scrub_bounded(message, 512);
    let location = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    Event::new(time_ms, Level::Error, EventName::Panic).with_detail(format!("{message}{location}"))
}

/// One JSON object on one line; every log line is written by this.
pub fn to_line(line: &impl Serialize) -> String {
    // Serializing these structs cannot fail (string keys, no maps of other keys).
    serde_json::to_string(line).unwrap_or_else(|_| "{\"level\":\"error\"}".to_owned())
}

/// One structured line per request: no token, no ARN, no key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestLog {
    pub time_ms: u64,
    pub level: Level,
    /// The gateway's own id, whatever the client sent.
    pub request_id: String,
    /// The client's `X-Request-Id`, when it sent a usable one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<ResponseMode>,
    /// The agent's name (never its ARN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The client's session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The id sent to the agent, when it is not the client's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub bytes_in: usize,
    pub bytes_out: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<u64>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<serde_json::Value>,
    /// Tokens added to the subject's budget window (with `TOKEN_BUDGET`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_charged: Option<u64>,
    /// The charge is the estimate: the stream ended before the origin's usage.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub usage_estimated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Code>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How a streamed answer ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Origin requests sent for this answer: 1 without a retry; absent
    /// when the origin was not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

impl RequestLog {
    pub fn new(ctx: &RequestContext, status: StatusCode) -> Self {
        RequestLog {
            time_ms: ctx.unix_ms,
            level: if status.is_server_error() {
                Level::Error
            } else {
                Level::Info
            },
            request_id: ctx.request_id.clone(),
            client_request_id: ctx.client_request_id.clone(),
            method: ctx.method.clone(),
            path: ctx.path.clone(),
            status: status.as_u16(),
            mode: ctx.mode,
            agent: ctx.agent.clone(),
            session_id: ctx.session_id.clone(),
            origin_session_id: ctx.origin_session_id.clone(),
            sub: ctx.subject.as_deref().map(super::capped),
            bytes_in: ctx.bytes_in,
            bytes_out: 0,
            ttfb_ms: None,
            duration_ms: 0,
            usage: None,
            tokens_charged: None,
            usage_estimated: false,
            error: None,
            detail: None,
            outcome: None,
            attempts: (ctx.origin_attempts > 0).then_some(ctx.origin_attempts),
        }
    }

    pub fn to_line(&self) -> String {
        to_line(self)
    }
}
