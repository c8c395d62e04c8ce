//! Cloudflare Workers adapter (temporary): the `#[event(fetch)]` entry.
//!
//! For now it only answers `GET /ping` with `{"status":"Healthy"}` (SPEC.md,
//! "HTTP interface"), so the worker-build / wrangler pipeline can be proven end
//! to end. The real adapter, which hands requests to the gateway, replaces it.

use worker::{event, Context, Env, Method, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    console_error_panic_hook::set_once();
    if req.method() == Method::Get && req.path() == "/ping" {
        let mut response = Response::ok(r#"{"status":"Healthy"}"#)?;
        response
            .headers_mut()
            .set("content-type", "application/json")?;
        return Ok(response);
    }
    Response::error("Not Found", 404)
}
