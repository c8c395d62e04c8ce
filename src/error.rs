//! Errors a request can end with before its stream starts, and errors that end
//! a stream early.
//!
//! Every error carries a stable snake_case `code` (the JSON body's
//! `error.code`), an HTTP status, and who caused it (pingora's split:
//! downstream, upstream, internal). Messages are written for clients: they
//! never carry a token, an ARN, an account id or a key. Details for operators
//! go to the log line through [`GatewayError::detail`], which is itself
//! scrubbed before it is written.
//!
//! Every [`Code`] is in the error table of `docs/interface.md` with its
//! status (a test keeps them equal).

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

/// Who caused an error; decides between 4xx (caller) and 5xx (origin, us).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blame {
    Downstream,
    Upstream,
    Internal,
}

/// Declares [`Code`] from one table: each row is a code, its wire name, the
/// status it is answered with (`None`: it ends a stream already answered
/// with 200) and its client message (the default; some errors say more).
macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $name:literal, $status:expr, $message:literal;)*) => {
        /// Every error code the gateway answers or ends a stream with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in table order (the docs' error table lists them all).
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The wire name: `error.code` in bodies, `error` in log lines.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// The response status; `None` for codes that end a started stream.
            pub const fn status(self) -> Option<StatusCode> {
                match self {
                    $(Code::$variant => $status,)*
                }
            }

            /// The client-facing sentence used unless the error says more.
            pub const fn message(self) -> &'static str {
                match self {
                    $(Code::$variant => $message,)*
                }
            }
        }
    };
}

const fn answered(status: StatusCode) -> Option<StatusCode> {
    Some(status)
}
const IN_STREAM: Option<StatusCode> = None;

codes! {
    // The request filter.
    NotFound = "not_found", answered(StatusCode::NOT_FOUND),
        "no such route: use POST /invocations";
    MethodNotAllowed = "method_not_allowed", answered(StatusCode::METHOD_NOT_ALLOWED),
        "this route does not allow this method";
    CorsOriginNotAllowed = "cors_origin_not_allowed", answered(StatusCode::FORBIDDEN),
        "this origin is not allowed to call the gateway";
    UnsupportedMediaType = "unsupported_media_type", answered(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        "the request body must be JSON (Content-Type: application/json)";
    BodyTooLarge = "body_too_large", answered(StatusCode::PAYLOAD_TOO_LARGE),
        "the request body is too large";
    /// RFC 9112 section 3.2: no `Host`, more than one, or not an authority.
    InvalidHost = "invalid_host", answered(StatusCode::BAD_REQUEST),
        "the request needs exactly one valid Host header";
    /// A listener on loopback reached under another name (DNS rebinding).
    MisdirectedRequest = "misdirected_request", answered(StatusCode::MISDIRECTED_REQUEST),
        "this gateway does not answer to this Host";
    /// An `Expect` other than `100-continue` (RFC 9110 section 10.1.1).
    ExpectationFailed = "expectation_failed", answered(StatusCode::EXPECTATION_FAILED),
        "the only expectation supported is 100-continue";
    /// The request head could not be converted (Workers only).
    InvalidRequest = "invalid_request", answered(StatusCode::BAD_REQUEST),
        "the request is malformed";
    // Authentication and the rate limit.
    MissingToken = "missing_token", answered(StatusCode::UNAUTHORIZED),
        "an Authorization: Bearer token is required";
    InvalidToken = "invalid_token", answered(StatusCode::UNAUTHORIZED),
        "the token is not accepted";
    /// The issuer's keys could not be fetched (blamed on the issuer).
    AuthUnavailable = "auth_unavailable", answered(StatusCode::SERVICE_UNAVAILABLE),
        "the token cannot be checked: the issuer's keys are unavailable";
    RateLimited = "rate_limited", answered(StatusCode::TOO_MANY_REQUESTS),
        "too many requests; retry later";
    /// The subject's `TOKEN_BUDGET` is spent for this window.
    TokenBudgetExhausted = "token_budget_exhausted", answered(StatusCode::TOO_MANY_REQUESTS),
        "the token budget of this window is spent; retry when it resets";
    /// `LIMITS_STORE_FAILURE=deny` and the limits store did not answer.
    LimitsUnavailable = "limits_unavailable", answered(StatusCode::SERVICE_UNAVAILABLE),
        "limits cannot be checked right now; retry later";
    // The agent and the session.
    /// No agent of that name (`AGENTS`), or no default one.
    UnknownAgent = "unknown_agent", answered(StatusCode::NOT_FOUND),
        "no such agent: GET /agents lists yours";
    /// The caller's token lacks the agent's `requireClaims`.
    AgentForbidden = "agent_forbidden", answered(StatusCode::FORBIDDEN),
        "this agent is not available to you";
    /// The agent does not know the caller's session (`StopRuntimeSession`).
    SessionNotFound = "session_not_found", answered(StatusCode::NOT_FOUND),
        "no such session: it has ended, or never started";
    // The body.
    BodyReadFailed = "body_read_failed", answered(StatusCode::BAD_REQUEST),
        "the request body could not be read";
    /// Not all there within the native server's `CLIENT_BODY_TIMEOUT_SECONDS`.
    BodyTimeout = "body_timeout", answered(StatusCode::REQUEST_TIMEOUT),
        "the request body did not arrive in time";
    InvalidJson = "invalid_json", answered(StatusCode::BAD_REQUEST),
        "the request body is not valid JSON";
    InvalidBody = "invalid_body", answered(StatusCode::BAD_REQUEST),
        "the request body must be a JSON object";
    InvalidField = "invalid_field", answered(StatusCode::BAD_REQUEST),
        "a control field must be a string";
    InvalidResponseMode = "invalid_response_mode", answered(StatusCode::BAD_REQUEST),
        "response must be \"original\" or \"transformed\"";
    InvalidSessionId = "invalid_session_id", answered(StatusCode::BAD_REQUEST),
        "runtimeSessionId must be 33 to 256 visible ASCII characters";
    InvalidUserId = "invalid_user_id", answered(StatusCode::BAD_REQUEST),
        "the user id must be visible ASCII text";
    // The origin request and the origin's answer.
    OriginThrottled = "origin_throttled", answered(StatusCode::TOO_MANY_REQUESTS),
        "the agent is busy; retry later";
    OriginTimeout = "origin_timeout", answered(StatusCode::GATEWAY_TIMEOUT),
        "the agent did not answer in time";
    OriginAuthFailed = "origin_auth_failed", answered(StatusCode::BAD_GATEWAY),
        "the gateway could not authenticate to the agent";
    OriginNotFound = "origin_not_found", answered(StatusCode::BAD_GATEWAY),
        "the agent runtime was not found";
    OriginRejected = "origin_rejected", answered(StatusCode::BAD_GATEWAY),
        "the agent rejected the request";
    OriginError = "origin_error", answered(StatusCode::BAD_GATEWAY),
        "the agent failed to answer";
    /// AgentCore's 424 `RuntimeClientError`: the agent's own code failed.
    AgentFailed = "agent_failed", answered(StatusCode::BAD_GATEWAY),
        "the agent failed while handling the request";
    /// AgentCore's 402 `ServiceQuotaExceededException`: an account quota
    /// of the origin, not the caller's limit (with `Retry-After`).
    OriginQuotaExceeded = "origin_quota_exceeded", answered(StatusCode::SERVICE_UNAVAILABLE),
        "the agent's service quota is exhausted; retry later";
    OriginUnreachable = "origin_unreachable", answered(StatusCode::BAD_GATEWAY),
        "the agent could not be reached";
    /// The origin's body is compressed (`Content-Encoding` other than
    /// `identity`): it cannot be streamed through or read.
    OriginEncodingUnsupported = "origin_encoding_unsupported", answered(StatusCode::BAD_GATEWAY),
        "the agent answered in an encoding the gateway does not read";
    // The gateway's own configuration.
    OriginSigningFailed = "origin_signing_failed", answered(StatusCode::INTERNAL_SERVER_ERROR),
        "the gateway could not sign the origin request";
    OriginMisconfigured = "origin_misconfigured", answered(StatusCode::INTERNAL_SERVER_ERROR),
        "the origin URL is not usable";
    InvalidConfiguration = "invalid_configuration", answered(StatusCode::INTERNAL_SERVER_ERROR),
        "the gateway's configuration is invalid";
    // Ends a started stream (transformed trailer, original `event: error`).
    EventTooLarge = "event_too_large", IN_STREAM,
        "an event from the agent exceeded the size limit";
    /// An error the agent reported inside its stream.
    AgentError = "agent_error", IN_STREAM,
        "the agent reported an error";
    OriginStreamFailed = "origin_stream_failed", IN_STREAM,
        "the agent's stream broke off";
    /// Nothing from the origin for `ORIGIN_IDLE_TIMEOUT_SECONDS`.
    OriginIdleTimeout = "origin_idle_timeout", IN_STREAM,
        "the agent stopped sending";
    /// The server is shutting down and the stream outlived the grace.
    ShuttingDown = "shutting_down", IN_STREAM,
        "the gateway is shutting down; retry the request";
}

impl Code {
    /// Who caused it: the status decides, except that unavailable issuer
    /// keys and an origin's exhausted quota are upstream's fault although
    /// answered with 503.
    pub fn blame(self) -> Blame {
        match self.status() {
            _ if matches!(self, Code::AuthUnavailable | Code::OriginQuotaExceeded) => {
                Blame::Upstream
            }
            Some(status) if status.is_client_error() => Blame::Downstream,
            Some(StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT) | None => Blame::Upstream,
            Some(_) => Blame::Internal,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// An error answered with a JSON body `{"error":{"code":..,"message":..}}`.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub status: StatusCode,
    pub code: Code,
    pub message: Cow<'static, str>,
    pub blame: Blame,
    /// Extra headers such as `WWW-Authenticate` or `Retry-After`.
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    /// Operator-facing detail for the log line only (already free of secrets).
    pub detail: Option<String>,
}

impl GatewayError {
    /// The error of `code`, with its status and default message.
    pub fn new(code: Code) -> Self {
        debug_assert!(code.status().is_some(), "{code} ends streams only");
        GatewayError {
            status: code.status().unwrap_or(StatusCode::BAD_GATEWAY),
            code,
            message: Cow::Borrowed(code.message()),
            blame: code.blame(),
            headers: Vec::new(),
            detail: None,
        }
    }

    /// Replaces the default message with a more precise one.
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The JSON body, `{"error":{"code":"..","message":".."}}`.
    pub fn body(&self) -> Bytes {
        error_json(self.code, &self.message).into()
    }

    /// The whole response: status, JSON body, extra headers.
    pub fn to_response(&self) -> Response<Bytes> {
        let mut response = Response::new(self.body());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}

impl fmt::Debug for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayError")
            .field("status", &self.status.as_u16())
            .field("code", &self.code)
            .field("message", &self.message)
            .field("blame", &self.blame)
            .finish()
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}

/// Why a stream ended early: the transformed trailer's error line, or
/// original mode's final `error` event. `message` is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub code: Code,
    pub message: String,
}

impl StreamError {
    /// The error of `code` with its default message.
    pub fn new(code: Code) -> Self {
        StreamError {
            code,
            message: code.message().to_owned(),
        }
    }
}

/// `{"error":{"code":<code>,"message":<message>}}`, compact, as used by the
/// error response body, the transformed trailer's error line and the
/// original mode's final `error` event.
pub fn error_json(code: Code, message: &str) -> String {
    serde_json::json!({ "error": { "code": code.as_str(), "message": message } }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_distinct_snake_case_names_and_sentences() {
        let mut names = std::collections::HashSet::new();
        for code in Code::ALL {
            let name = code.as_str();
            assert!(names.insert(name), "{name} twice");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(!code.message().is_empty(), "{name}");
        }
    }

    #[test]
    fn an_error_takes_status_blame_and_message_from_its_code() {
        let error = GatewayError::new(Code::OriginTimeout);
        assert_eq!(error.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(error.blame, Blame::Upstream);
        assert_eq!(
            error.body(),
            r#"{"error":{"code":"origin_timeout","message":"the agent did not answer in time"}}"#
        );
        assert_eq!(GatewayError::new(Code::NotFound).blame, Blame::Downstream);
        assert_eq!(
            GatewayError::new(Code::OriginMisconfigured).blame,
            Blame::Internal
        );
        assert_eq!(
            GatewayError::new(Code::AuthUnavailable).blame,
            Blame::Upstream
        );
        assert_eq!(
            GatewayError::new(Code::OriginQuotaExceeded).blame,
            Blame::Upstream
        );
        assert_eq!(GatewayError::new(Code::AgentFailed).blame, Blame::Upstream);
        assert_eq!(Code::OriginStreamFailed.status(), None);
        assert_eq!(
            serde_json::to_string(&Code::EventTooLarge).unwrap(),
            "\"event_too_large\""
        );
    }
}
