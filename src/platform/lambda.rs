//! The AWS Lambda adapter: a function behind a function URL with response
//! streaming. `lambda_http`'s streaming runner hands each invocation over as
//! an HTTP request; [`crate::gateway::driver::handle`] answers it, and its
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

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use lambda_http::{service_fn, Body, Request};

use super::native::{self, NativePlatform};
use crate::config::{AuthConfig, Config};
use crate::error::{Code, GatewayError};
use crate::gateway::driver::{self, BodyError, Platform, Shared};
use crate::gateway::{Event, EventName, Gateway, Level};

/// Runs the function: reads the configuration from the environment, then
/// serves invocations until the execution environment is shut down.
pub async fn run() -> Result<(), lambda_http::Error> {
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
    lambda_http::run_with_streaming_response(service_fn(move |request| {
        serve_one(shared.clone(), platform.clone(), request)
    }))
    .await
}

type ClientBody = StreamBody<
    futures::stream::Map<
        driver::ResponseBody<NativePlatform>,
        fn(Bytes) -> Result<Frame<Bytes>, Infallible>,
    >,
>;

async fn serve_one(
    shared: Result<Arc<Shared>, GatewayError>,
    platform: NativePlatform,
    request: Request,
) -> Result<http::Response<ClientBody>, Infallible> {
    let to_frame: fn(Bytes) -> Result<Frame<Bytes>, Infallible> = |b| Ok(Frame::data(b));
    let shared = match shared {
        Ok(shared) => shared,
        Err(error) => {
            let response = error.to_response();
            let body = driver::ResponseBody::Full(Some(response.body().clone()));
            let (parts, _) = response.into_parts();
            return Ok(http::Response::from_parts(
                parts,
                StreamBody::new(body.map(to_frame)),
            ));
        }
    };
    stream_without_delay();
    let (mut head, body) = request.into_parts();
    // lambda_http rebuilds an absolute URI from the Host header; the other
    // adapters hand the driver the path and query only.
    if let Some(path_and_query) = head.uri.path_and_query() {
        head.uri = http::Uri::from(path_and_query.clone());
    }
    let limit = shared.gateway.config().max_body_bytes;
    // Lambda delivers the whole body with the event (at most 6 MB).
    let read_body = async move {
        let body = match body {
            Body::Text(text) => Bytes::from(text),
            Body::Binary(bytes) => Bytes::from(bytes),
            other => Bytes::copy_from_slice(&other),
        };
        if body.len() > limit {
            return Err(BodyError::TooLarge);
        }
        Ok(body)
    };
    let response = driver::handle(&shared, &platform, head, read_body).await;
    Ok(response.map(|body| StreamBody::new(body.map(to_frame))))
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
