//! The AWS Lambda adapter: a function behind a function URL with response
//! streaming. `lambda_runtime` hands each invocation over as its raw event,
//! which [`event`] reads as an HTTP request; the [`Edge`] answers it, and
//! its body goes back to the Runtime API chunk by chunk as it is produced.
//! The I/O is the native server's ([`NativePlatform`]).
//!
//! One [`Edge`] per execution environment (process), built at init: the
//! issuer's keys and verified tokens outlive an invocation. Lambda itself
//! sets `AWS_REGION` and the execution role's credentials in the
//! environment.
//!
//! A client that hangs up: the runtime is told only when the Runtime API
//! closes the connection carrying the response stream; then the body, which
//! owns the origin response, is dropped and the origin request is cancelled.

mod event;
mod nodelay;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use lambda_runtime::{service_fn, LambdaEvent, MetadataPrelude, StreamResponse};
use serde_json::Value;

use super::native::{self, NativePlatform};
use crate::config::Config;
use crate::gateway::driver;
use crate::gateway::driver::Platform;
use crate::gateway::{Edge, Event, EventName, Level};
use event::FunctionUrlRequest;

/// Runs the function: configures the gateway from the environment, then
/// serves invocations until the execution environment is shut down.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    native::log_panics(native::stderr_log());
    let lookup = |name: &str| std::env::var(name).ok();
    let mut platform = NativePlatform::new(native::stderr_log());
    // An invalid configuration is the Edge's to report (every invocation
    // answers it); a REDIS_URL that does not parse is logged by the
    // platform, and the Edge refuses the store.
    if let Ok(config) = Config::from_lookup(lookup) {
        platform = platform.with_limits(&config.limits);
    }
    let edge = Arc::new(Edge::configure(lookup, &platform));
    // `lambda_runtime::run` returns at the first Runtime API error, such as
    // an answer whose stream the Runtime API closed (its client left): the
    // invocation is lost, but the function can take the next one. Only
    // errors in quick succession (the Runtime API is gone) end it.
    let mut quick_failures = 0;
    loop {
        let started_ms = platform.now_ms();
        let service = {
            let (edge, platform) = (edge.clone(), platform.clone());
            service_fn(move |event: LambdaEvent<Value>| {
                serve_one(edge.clone(), platform.clone(), event.payload)
            })
        };
        let error = match lambda_runtime::run(service).await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let line = Event::new(
            driver::unix_ms(platform.now()),
            Level::Warn,
            EventName::RuntimeApiError,
        )
        .with_detail(error.to_string());
        platform.log(&line.to_line());
        quick_failures = if platform.now_ms() - started_ms < RUNTIME_RESTART_WINDOW_MS {
            quick_failures + 1
        } else {
            1
        };
        if quick_failures >= MAX_QUICK_RUNTIME_FAILURES {
            return Err(error);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Runtime API errors closer together than this count as one outage.
const RUNTIME_RESTART_WINDOW_MS: u64 = 1000;
/// After this many in a row, the function ends (Lambda starts a new one).
const MAX_QUICK_RUNTIME_FAILURES: u32 = 5;

type ClientBody = futures::stream::Map<
    driver::ResponseBody<NativePlatform>,
    fn(Bytes) -> Result<Bytes, Infallible>,
>;

async fn serve_one(
    edge: Arc<Edge>,
    platform: NativePlatform,
    event: Value,
) -> Result<StreamResponse<ClientBody>, Infallible> {
    nodelay::stream_without_delay();
    let response = match FunctionUrlRequest::from_event(&event) {
        Ok(FunctionUrlRequest { head, body }) => {
            // Lambda delivers the whole body with the event (at most 6 MB).
            let mut body = futures::stream::iter([body]);
            edge.handle(&platform, head, &mut body).await
        }
        Err(refusal) => edge.refuse(&platform, &refusal.request, &refusal.error),
    };
    let (parts, body) = response.into_parts();
    let to_chunk: fn(Bytes) -> Result<Bytes, Infallible> = Ok;
    Ok(StreamResponse {
        metadata_prelude: MetadataPrelude {
            status_code: parts.status,
            headers: parts.headers,
            cookies: Vec::new(),
        },
        stream: body.map(to_chunk),
    })
}
