//! The Cloudflare Workers adapter: the `fetch` event converts the request
//! ([`convert`]), hands it to the isolate's [`Edge`] and streams its body
//! back as it is produced ([`pump`]). The I/O is the Workers runtime's
//! ([`platform`]: `Fetch`, `setTimeout` ([`timer`]), WebCrypto
//! ([`crypto`]), the `RATE_LIMITER` binding), and the issuer's key set is
//! shared across isolates through the Cache API ([`key_cache`]). With
//! `LIMITS_STORE=durable_object`, budgets and request limits are counted in
//! a Durable Object per subject ([`limits`]).
//!
//! Configuration comes from `[vars]` and secrets, read on the isolate's
//! first request: a bad value answers 500 naming the variable.

mod convert;
mod crypto;
mod headers;
mod key_cache;
mod limits;
mod platform;
mod pump;
mod timer;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use worker::{console_log, event, Context, Env, Request, Response};

use crate::error::{Code, GatewayError};
use crate::gateway::{driver, Edge};
use platform::{now_millis, WorkersPlatform};

/// How much of a request body the driver began to read (and stopped: over
/// the limit) is read and dropped before the answer: left half-read, a body
/// breaks the next request on the same internal connection of `wrangler
/// dev` (503 "worker restarted"). A body never opened does not.
const MAX_DRAINED_BODY: usize = 8 << 20;

thread_local! {
    /// One gateway per isolate: configuration, key and token caches.
    static EDGE: RefCell<Option<Rc<Edge>>> = const { RefCell::new(None) };
}

#[event(fetch)]
async fn fetch(mut request: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    log_panics();
    let platform = WorkersPlatform {
        env,
        ctx: Rc::new(ctx),
    };
    let edge = edge(&platform);
    key_cache::load(&edge).await;
    let before = key_cache::stamp(&edge);
    let response = match convert::request_head(&request) {
        Ok(head) => {
            let opened = Cell::new(false);
            let mut body = convert::request_body(&mut request, &opened);
            let response = edge.handle(&platform, head, &mut body).await;
            if opened.get() {
                // A no-op when the driver read it all.
                driver::drain(&mut body, MAX_DRAINED_BODY).await;
            }
            response
        }
        Err(unconverted) => edge.refuse(
            &platform,
            &unconverted,
            &GatewayError::new(Code::InvalidRequest),
        ),
    };
    if key_cache::stamp(&edge) != before {
        // After the response, off this request's path.
        let edge = edge.clone();
        platform
            .ctx
            .wait_until(async move { key_cache::store(&edge).await });
    }
    convert::to_worker_response(response, &platform.ctx)
}

/// The isolate's gateway, configured on its first request.
fn edge(platform: &WorkersPlatform) -> Rc<Edge> {
    if let Some(edge) = EDGE.with(|e| e.borrow().clone()) {
        return edge;
    }
    let env = &platform.env;
    let edge = Rc::new(Edge::configure(
        |name| {
            env.secret(name)
                .map(|s| s.to_string())
                .or_else(|_| env.var(name).map(|v| v.to_string()))
                .ok()
        },
        platform,
    ));
    EDGE.with(|e| *e.borrow_mut() = Some(edge.clone()));
    edge
}

/// Every panic as one `panic` event line, instead of the runtime's text.
fn log_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let line = crate::gateway::log::panic_event(info, now_millis());
            console_log!("{}", line.to_line());
        }))
    });
}
