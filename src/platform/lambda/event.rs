//! A function URL event (payload format 2.0) read as an HTTP request, from
//! its own fields: `lambda_http`'s conversion rebuilds the URL from `Host`
//! and `X-Forwarded-Proto` (and panics on values it cannot parse) and
//! normalizes the path, so a path that is no route natively would be one
//! here.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::Value;

use crate::error::{Code, GatewayError};
use crate::gateway::driver::BodyError;
use crate::gateway::Unconverted;

/// Bytes of a raw path or query that a URI cannot hold as they are (they
/// stay part of the path, percent-encoded, so that it matches no route).
const NOT_IN_URI: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'#');

/// A function URL event (payload format 2.0) as the driver's request.
///
/// Built from the event's own fields (`rawPath`, `rawQueryString`,
/// `requestContext.http.method`, `headers`, `cookies`, `body`), never from
/// a URL rebuilt out of `Host` and `X-Forwarded-Proto`: the path is the one
/// the client sent, not normalized, so `/x/../invocations` is no route here
/// either, and no header value can fail the conversion.
pub(super) struct FunctionUrlRequest {
    pub head: http::request::Parts,
    pub body: Result<Bytes, BodyError>,
}

/// An event that is not an HTTP request the driver can take.
pub(super) struct Refusal {
    pub request: Unconverted,
    pub error: Box<GatewayError>,
}

impl FunctionUrlRequest {
    pub(super) fn from_event(event: &Value) -> Result<Self, Refusal> {
        let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
        let method = text("/requestContext/http/method").unwrap_or_default();
        let raw_path = text("/rawPath").unwrap_or_default();
        let origin = event
            .pointer("/headers/origin")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let refuse_with = |error| Refusal {
            request: Unconverted {
                method: method.to_owned(),
                path: raw_path.to_owned(),
                origin: origin.clone(),
            },
            error: Box::new(error),
        };
        let refuse = |reason: &'static str| {
            refuse_with(GatewayError::new(Code::InvalidRequest).with_message(reason))
        };
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| refuse("the request method is malformed"))?;
        if !raw_path.starts_with('/') {
            // No route has it; the log line shows it as sent.
            return Err(refuse_with(GatewayError::new(Code::NotFound)));
        }
        let path: String = utf8_percent_encode(raw_path, NOT_IN_URI).collect();
        let uri = match text("/rawQueryString").filter(|q| !q.is_empty()) {
            Some(query) => format!("{path}?{}", utf8_percent_encode(query, NOT_IN_URI)),
            None => path,
        };
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .version(http::Version::HTTP_11);
        let headers = builder.headers_mut().expect("a fresh builder");
        if let Some(fields) = event.get("headers").and_then(Value::as_object) {
            for (name, value) in fields {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| refuse("a header name is malformed"))?;
                let value = value
                    .as_str()
                    .and_then(|v| HeaderValue::from_str(v).ok())
                    .ok_or_else(|| refuse("a header value is malformed"))?;
                headers.append(name, value);
            }
        }
        if let Some(cookies) = event.get("cookies").and_then(Value::as_array) {
            let joined: Vec<&str> = cookies.iter().filter_map(Value::as_str).collect();
            if !joined.is_empty() {
                let value = HeaderValue::from_str(&joined.join("; "))
                    .map_err(|_| refuse("a cookie is malformed"))?;
                headers.insert(http::header::COOKIE, value);
            }
        }
        let head = builder
            .body(())
            .map_err(|_| refuse("the request path or query is malformed"))?
            .into_parts()
            .0;
        let body = match event.get("body").and_then(Value::as_str) {
            None => Ok(Bytes::new()),
            Some(body) if event.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .map(Bytes::from)
                    .map_err(|_| BodyError::Io("the event's base64 body is malformed".into()))
            }
            Some(body) => Ok(Bytes::copy_from_slice(body.as_bytes())),
        };
        Ok(FunctionUrlRequest { head, body })
    }
}
