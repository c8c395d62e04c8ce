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
use crate::gateway::driver;
use crate::gateway::Edge;
use event::FunctionUrlRequest;

/// Runs the function: configures the gateway from the environment, then
/// serves invocations until the execution environment is shut down.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    native::log_panics(native::stderr_log());
    let platform = NativePlatform::new(native::stderr_log());
    let edge = Arc::new(Edge::configure(|name| std::env::var(name).ok(), &platform));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        serve_one(edge.clone(), platform.clone(), event.payload)
    }))
    .await
}

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
