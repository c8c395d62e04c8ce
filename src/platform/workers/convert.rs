//! Workers types to and from the `http` types the [`Edge`] speaks.
//!
//! [`Edge`]: crate::gateway::Edge

use std::cell::Cell;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use worker::{Context, Request, Response, ResponseBuilder};

use super::headers::{to_header_map, to_headers};
use super::platform::WorkersPlatform;
use super::pump::{pump, IdentityTransformStream};
use crate::gateway::driver::{self, BodyError};
use crate::gateway::Unconverted;

/// The request head with a path-and-query URI, as every adapter hands over.
pub(super) fn request_head(request: &Request) -> Result<http::request::Parts, Unconverted> {
    let method = request.method().to_string();
    let unconverted = |path: &str| Unconverted {
        method: method.clone(),
        path: path.to_owned(),
        origin: request.headers().get("origin").ok().flatten(),
    };
    let url = request.url().map_err(|_| unconverted(""))?;
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{}", url.path(), query),
        None => url.path().to_owned(),
    };
    let mut builder = http::Request::builder()
        .method(method.as_str())
        .uri(path_and_query);
    if let Some(headers) = builder.headers_mut() {
        *headers = to_header_map(request.headers());
    }
    builder
        .body(())
        .map(|r| r.into_parts().0)
        .map_err(|_| unconverted(url.path()))
}

/// The request body as the driver reads it (none when there is none),
/// opened on the first read, which sets `opened`: an answer that does not
/// need the body leaves it untouched.
pub(super) fn request_body<'a>(
    request: &'a mut Request,
    opened: &'a Cell<bool>,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Unpin + 'a {
    let open = futures::future::lazy(move |_| {
        opened.set(true);
        request.stream().ok()
    });
    futures::stream::once(open)
        .filter_map(futures::future::ready)
        .flatten()
        .map(|chunk: worker::Result<Vec<u8>>| {
            chunk
                .map(Bytes::from)
                .map_err(|e| BodyError::Io(e.to_string()))
        })
}

/// The driver's answer as a Workers response; a stream is pumped after the
/// response is returned ([`pump`]).
pub(super) fn to_worker_response(
    response: http::Response<driver::ResponseBody<WorkersPlatform>>,
    ctx: &Context,
) -> worker::Result<Response> {
    let (parts, body) = response.into_parts();
    let builder = ResponseBuilder::new()
        .with_status(parts.status.as_u16())
        .with_headers(to_headers(&parts.headers)?);
    match body {
        driver::ResponseBody::Full(Some(bytes)) if !bytes.is_empty() => {
            Ok(builder.fixed(bytes.to_vec()))
        }
        driver::ResponseBody::Full(_) => Ok(builder.empty()),
        stream => {
            let pipe = IdentityTransformStream::new().map_err(worker::Error::from)?;
            let writer = pipe.writable().get_writer().map_err(worker::Error::from)?;
            ctx.wait_until(pump(stream, writer));
            Ok(builder.stream(pipe.readable()))
        }
    }
}
