//! The streamed answer written into workerd's native pass-through stream.

use futures::future::{select, Either};
use futures::StreamExt;
use wasm_bindgen::prelude::*;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{TransformStream, WritableStreamDefaultWriter};

use super::platform::WorkersPlatform;
use crate::gateway::driver;

#[wasm_bindgen]
extern "C" {
    /// workerd's native pass-through stream (`IdentityTransformStream`): what
    /// is written to its writable side goes to the client as is, with no
    /// JavaScript between them.
    #[wasm_bindgen(extends = TransformStream)]
    pub(super) type IdentityTransformStream;

    #[wasm_bindgen(constructor, catch)]
    pub(super) fn new() -> Result<IdentityTransformStream, JsValue>;
}

thread_local! {
    /// Marks a write's rejection as handled: the same failure also settles
    /// the writer's `closed`, which [`pump`] watches.
    static IGNORE_REJECTION: Closure<dyn FnMut(JsValue)> = Closure::new(|_: JsValue| {});
}

/// Writes the streamed body into the response's pipe as each chunk is ready.
///
/// A streaming answer makes one origin read and one client write per chunk,
/// and that per-chunk cost in the runtime is most of a long answer's CPU
/// time (BENCHMARKS.md, "Cloudflare Worker vs native"). A `ReadableStream`
/// built from a Rust `Stream` (what `ResponseBuilder::from_stream` does)
/// adds a `pull()` call, a spawned task and a promise per chunk, and the
/// runtime then reads that JavaScript stream again; this loop is one task
/// for the whole answer, writes into a native pipe and does not wait for
/// each write, only for backpressure (`writer.ready`).
///
/// The client going away settles `writer.closed`: the loop ends at once,
/// even while the origin is idle, and dropping `body` cancels the origin
/// request and logs `client_closed`.
pub(super) async fn pump(
    mut body: driver::ResponseBody<WorkersPlatform>,
    writer: WritableStreamDefaultWriter,
) {
    let mut closed = JsFuture::from(writer.closed());
    loop {
        let chunk = match select(body.next(), &mut closed).await {
            Either::Left((Some(chunk), _)) => chunk,
            Either::Left((None, _)) => {
                let _ = JsFuture::from(writer.close()).await;
                return;
            }
            Either::Right(_) => return,
        };
        if chunk.is_empty() {
            continue;
        }
        let full = writer
            .desired_size()
            .ok()
            .flatten()
            .is_none_or(|size| size <= 0.0);
        if full {
            match select(JsFuture::from(writer.ready()), &mut closed).await {
                Either::Left((Ok(_), _)) => {}
                _ => return,
            }
        }
        let written = writer.write_with_chunk(&Uint8Array::from(chunk.as_ref()));
        IGNORE_REJECTION.with(|ignore| {
            let _ = written.catch(ignore);
        });
    }
}
