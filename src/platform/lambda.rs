//! The AWS Lambda adapter: a function behind a function URL with response
//! streaming. `lambda_runtime` hands each invocation over as its raw event,
//! which [`FunctionUrlRequest`] turns into an HTTP request (not
//! `lambda_http`, whose conversion rebuilds the URL from `Host` and
//! `X-Forwarded-Proto`, panics on values it cannot parse, and normalizes
//! the path); [`crate::gateway::driver::handle`] answers it, and its
//! body goes back to the Runtime API chunk by chunk as it is produced. The
//! origin and issuer fetches, timers, clock and log are the native
//! server's ([`NativePlatform`]): the same HTTP client, the in-process rate
//! limiter.
//!
//! One [`Shared`] per execution environment (process), built at init: the
//! issuer's keys and verified tokens outlive an invocation. Configuration
//! comes from the function's environment, where Lambda itself sets
//! `AWS_REGION` and the execution role's `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`. An invalid configuration
//! answers every request with 500 `invalid_configuration` naming the
//! variable, as the Worker does, instead of failing the init.
//!
//! A client that hangs up: the runtime is told only when the Runtime API
//! closes the connection carrying the response stream; then the body, which
//! owns the origin response, is dropped and the origin request is cancelled.
//!
//! `lambda_runtime` connects to the Runtime API with Nagle's algorithm on
//! and offers no setting for it: a chunk written while the previous one is
//! unacknowledged waits for the Runtime API's delayed ACK, so the first
//! text and every event after a pause would leave late. Each invocation
//! therefore sets `TCP_NODELAY` on the process's sockets to the Runtime API
//! ([`stream_without_delay`]).

use std::convert::Infallible;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderName, HeaderValue, Method};
use lambda_runtime::{service_fn, LambdaEvent, MetadataPrelude, StreamResponse};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::Value;

use super::native::{self, NativePlatform};
use crate::config::{AuthConfig, Config};
use crate::error::{Code, GatewayError};
use crate::gateway::driver::{self, BodyError, Platform, Shared};
use crate::gateway::{Event, EventName, Gateway, Level};

/// Runs the function: reads the configuration from the environment, then
/// serves invocations until the execution environment is shut down.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    native::log_panics(native::stderr_log());
    let platform = NativePlatform::new(native::stderr_log());
    let shared = match Config::from_lookup(|name| std::env::var(name).ok()) {
        Ok(config) => {
            if config.auth == AuthConfig::None {
                let warning = native::auth_disabled_warning(driver::unix_ms(platform.now()));
                platform.log(&warning.to_line());
            }
            Ok(Arc::new(Shared::new(Gateway::new(config))))
        }
        Err(e) => {
            let message = e.to_string();
            let line = Event::new(
                driver::unix_ms(platform.now()),
                Level::Error,
                EventName::InvalidConfiguration,
            )
            .with_detail(&message);
            platform.log(&line.to_line());
            Err(GatewayError::new(Code::InvalidConfiguration).with_message(message))
        }
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        serve_one(shared.clone(), platform.clone(), event.payload)
    }))
    .await
}

type ClientBody = futures::stream::Map<
    driver::ResponseBody<NativePlatform>,
    fn(Bytes) -> Result<Bytes, Infallible>,
>;

async fn serve_one(
    shared: Result<Arc<Shared>, GatewayError>,
    platform: NativePlatform,
    event: Value,
) -> Result<StreamResponse<ClientBody>, Infallible> {
    let shared = match shared {
        Ok(shared) => shared,
        Err(error) => {
            let response = error.to_response();
            let body = driver::ResponseBody::Full(Some(response.body().clone()));
            let (parts, _) = response.into_parts();
            return Ok(stream_response(http::Response::from_parts(parts, body)));
        }
    };
    stream_without_delay();
    let limit = shared.gateway.config().max_body_bytes;
    let response = match FunctionUrlRequest::from_event(&event) {
        Ok(FunctionUrlRequest { head, body }) => {
            // Lambda delivers the whole body with the event (at most 6 MB).
            let read_body = async move {
                let body = body?;
                if body.len() > limit {
                    return Err(BodyError::TooLarge);
                }
                Ok(body)
            };
            driver::handle(&shared, &platform, head, read_body).await
        }
        Err(refusal) => driver::refuse(
            &shared,
            &platform,
            &refusal.method,
            &refusal.path,
            &refusal.error,
        ),
    };
    Ok(stream_response(response))
}

fn stream_response(
    response: http::Response<driver::ResponseBody<NativePlatform>>,
) -> StreamResponse<ClientBody> {
    let (parts, body) = response.into_parts();
    let to_chunk: fn(Bytes) -> Result<Bytes, Infallible> = Ok;
    StreamResponse {
        metadata_prelude: MetadataPrelude {
            status_code: parts.status,
            headers: parts.headers,
            cookies: Vec::new(),
        },
        stream: body.map(to_chunk),
    }
}

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
struct FunctionUrlRequest {
    head: http::request::Parts,
    body: Result<Bytes, BodyError>,
}

/// An event that is not an HTTP request the driver can take.
struct Refusal {
    method: String,
    path: String,
    error: Box<GatewayError>,
}

impl FunctionUrlRequest {
    fn from_event(event: &Value) -> Result<Self, Refusal> {
        let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str);
        let method = text("/requestContext/http/method").unwrap_or_default();
        let raw_path = text("/rawPath").unwrap_or_default();
        let refuse_with = |error| Refusal {
            method: method.to_owned(),
            path: raw_path.to_owned(),
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

/// Sets `TCP_NODELAY` on every socket of this process connected to the
/// Runtime API (`AWS_LAMBDA_RUNTIME_API`, `host:port` on Lambda, a URL under
/// `cargo lambda watch`), the one that will carry this invocation's answer
/// included. Errors are ignored: at worst the answer leaves with delays.
fn stream_without_delay() {
    static RUNTIME_API: OnceLock<Option<SocketAddr>> = OnceLock::new();
    let Some(runtime_api) = *RUNTIME_API.get_or_init(|| {
        let value = std::env::var("AWS_LAMBDA_RUNTIME_API").ok()?;
        let authority = value.trim_start_matches("http://");
        let authority = authority.split('/').next()?;
        authority.to_socket_addrs().ok()?.next()
    }) else {
        return;
    };
    let Ok(descriptors) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in descriptors.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor was open when listed. Were it closed and
        // reused meanwhile, the calls below fail (not a socket) or set
        // TCP_NODELAY on another socket, which is harmless.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        if socket
            .peer_addr()
            .ok()
            .and_then(|peer| peer.as_socket())
            .is_some_and(|peer| peer == runtime_api)
        {
            let _ = socket.set_tcp_nodelay(true);
        }
    }
}
