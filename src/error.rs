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
//! Spec: `SPEC.md`, "Errors before the stream starts".

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

/// An error answered with a JSON body `{"error":{"code":..,"message":..}}`.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    pub blame: Blame,
    /// Extra headers such as `WWW-Authenticate` or `Retry-After`.
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
    /// Operator-facing detail for the log line only (already free of secrets).
    pub detail: Option<String>,
}

impl GatewayError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        let blame = if status.is_client_error() {
            Blame::Downstream
        } else if status == StatusCode::BAD_GATEWAY || status == StatusCode::GATEWAY_TIMEOUT {
            Blame::Upstream
        } else {
            Blame::Internal
        };
        GatewayError {
            status,
            code,
            message: message.into(),
            blame,
            headers: Vec::new(),
            detail: None,
        }
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, message)
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

/// `{"error":{"code":<code>,"message":<message>}}`, compact, as used by the
/// error response body, the transformed trailer's error line and the
/// original mode's final `error` event.
pub fn error_json(code: &str, message: &str) -> String {
    serde_json::json!({ "error": { "code": code, "message": message } }).to_string()
}
