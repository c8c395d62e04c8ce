//! Runs the gateway's phases in order over a [`Platform`]: every adapter
//! (native server, Worker, Lambda function) hands its request to
//! [`super::Edge::handle`], which lands here, so their answers are the same
//! byte for byte. Every answer, early or late, gets the same header
//! finishing and writes one request log line.
//!
//! - [`platform`]: the trait a runtime implements, and its errors;
//! - this file: the phases of one request, the request body read under
//!   `MAX_BODY_BYTES`, and early answers;
//! - [`authenticate`]: phase 2's loop around the sans-IO authenticator;
//! - [`retry`]: phase 4's origin request, retried before the first byte;
//! - [`body`]: phases 6 and 7 of a streamed answer.
//!
//! No runtime is named here: futures come from the platform.

mod authenticate;
mod body;
mod budget;
mod platform;
pub mod retry;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use http::{header, HeaderValue, Response};

pub use authenticate::KeyRefresh;
pub use body::{ResponseBody, StreamBody};
pub use budget::{ChargeFailure, ChargePlan};
pub use platform::{BodyError, FetchError, IssuerAnswer, Platform, RateDecision, RequestBody};

use super::log::RequestLog;
use super::{
    error_response, finish_headers, Gateway, LimitFields, RequestContext, Route, StreamStart,
};
use crate::auth::Authenticator;
use crate::config::AuthConfig;
use crate::error::{Code, GatewayError};
use budget::{Budget, ANONYMOUS};

/// State shared by all requests of a deployment (or a Worker isolate).
pub(super) struct Shared {
    pub(super) gateway: Gateway,
    pub(super) authenticator: Option<Arc<Mutex<Authenticator>>>,
    /// Serializes issuer fetches so concurrent requests share one refresh.
    auth_fetch: futures::lock::Mutex<()>,
    budget: Option<Budget>,
}

impl Shared {
    pub(super) fn new(gateway: Gateway, platform_verifies_rsa: bool) -> Self {
        let config = gateway.config();
        let authenticator = match &config.auth {
            AuthConfig::Jwt(jwt) => {
                let mut authenticator = Authenticator::new(jwt.clone());
                if platform_verifies_rsa {
                    authenticator.use_platform_rsa();
                }
                Some(Arc::new(Mutex::new(authenticator)))
            }
            AuthConfig::None => None,
        };
        let budget = Budget::new(&config.limits, gateway.scrubber().clone());
        Shared {
            gateway,
            authenticator,
            auth_fetch: futures::lock::Mutex::new(()),
            budget,
        }
    }
}

/// Serves one request. `body` is read only when the request gets that far,
/// and at most `MAX_BODY_BYTES` of it: what is left is the adapter's to
/// drain or drop.
pub(super) async fn handle<P: Platform, B: RequestBody>(
    shared: &Shared,
    platform: &P,
    head: http::request::Parts,
    body: &mut B,
) -> Response<ResponseBody<P>> {
    let gateway = &shared.gateway;
    let mut ctx = RequestContext::new(
        &head,
        platform.random(),
        platform.now_ms(),
        unix_ms(platform.now()),
    );
    match invoke(shared, platform, &head, body, &mut ctx).await {
        Ok(Invoked::Answered(response)) => {
            let (mut parts, body) = response.into_parts();
            finish_headers(&mut parts.headers, &ctx);
            let mut log = RequestLog::new(&ctx, parts.status);
            log.bytes_out = body.len() as u64;
            log.duration_ms = platform.now_ms().saturating_sub(ctx.started_ms);
            platform.log(&log.to_line());
            Response::from_parts(parts, ResponseBody::Full(Some(body)))
        }
        Ok(Invoked::Stream(start, origin_body, charge)) => {
            let StreamStart { head, transformer } = *start;
            let stream = StreamBody::new(
                platform,
                origin_body,
                transformer,
                ctx.started_ms,
                gateway.config().origin_idle_timeout_seconds * 1000,
                RequestLog::new(&ctx, head.status),
                gateway.scrubber().clone(),
                charge,
            );
            Response::from_parts(head, ResponseBody::Stream(Box::new(stream)))
        }
        Err(error) => answer_error(platform, &ctx, &error, gateway.scrubber()),
    }
}

/// Answers `error` with the common headers, and writes its log line (its
/// detail scrubbed).
pub(super) fn answer_error<P: Platform>(
    platform: &P,
    ctx: &RequestContext,
    error: &GatewayError,
    scrubber: &crate::scrub::Scrubber,
) -> Response<ResponseBody<P>> {
    let response = error_response(error, ctx);
    let mut log = RequestLog::new(ctx, error.status);
    log.error = Some(error.code);
    log.detail = error.detail.as_deref().map(|d| scrubber.scrub(d));
    log.bytes_out = response.body().len() as u64;
    log.duration_ms = platform.now_ms().saturating_sub(ctx.started_ms);
    platform.log(&log.to_line());
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, ResponseBody::Full(Some(body)))
}

/// How [`invoke`] ended when it did not fail.
enum Invoked<B> {
    Answered(Response<Bytes>),
    Stream(Box<StreamStart>, B, Option<ChargePlan>),
}

async fn invoke<P: Platform, B: RequestBody>(
    shared: &Shared,
    platform: &P,
    head: &http::request::Parts,
    body: &mut B,
    ctx: &mut RequestContext,
) -> Result<Invoked<P::OriginBody>, GatewayError> {
    let gateway = &shared.gateway;

    // Phase 1: request filter.
    let route = gateway.request_filter(head, ctx)?;
    if let Route::Answered(response) = route {
        return Ok(Invoked::Answered(response));
    }
    if let Some(budget) = &shared.budget {
        ctx.limit_fields = Some(LimitFields {
            policy: budget.policy_field(),
            remaining: None,
        });
    }

    // Phase 2: authentication, then the per-subject limits.
    let authorization = head
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let verified = authenticate::authenticate(shared, platform, authorization).await?;
    ctx.subject = verified.as_ref().and_then(|v| v.subject.clone());
    let claims = verified.as_ref().map_or(&[][..], |v| &v.claims[..]);
    let bearer = crate::auth::reject::bearer_token(authorization).ok();
    let requested = match route {
        Route::Answered(response) => return Ok(Invoked::Answered(response)),
        Route::Usage => {
            return match &shared.budget {
                Some(budget) => budget.usage(platform, ctx).await.map(Invoked::Answered),
                // No limit: only the subject to report.
                None => Ok(Invoked::Answered(budget::json_response(
                    &serde_json::json!({
                        "subject": ctx.subject.as_deref().unwrap_or(ANONYMOUS)
                    }),
                ))),
            };
        }
        Route::Agents => return Ok(Invoked::Answered(gateway.agents_answer(claims))),
        Route::EndSession { agent, session } => {
            let agent = gateway.agent(agent.as_deref(), claims, ctx)?;
            rate_limit(platform, ctx).await?;
            let request =
                gateway.stop_session_request(agent, &session, bearer, ctx, platform.now())?;
            // The answer has no body worth reading: dropping it is enough.
            let (origin_head, _) = fetch_head(gateway, platform, request).await?.into_parts();
            return gateway
                .stop_session_answer(&origin_head, ctx)
                .map(Invoked::Answered);
        }
        Route::Invoke { agent } => agent,
    };
    // Before any counting: a refused agent costs the caller nothing.
    let agent = gateway.agent(requested.as_deref(), claims, ctx)?;
    rate_limit(platform, ctx).await?;
    let charge = match &shared.budget {
        Some(budget) => budget.admit(platform, ctx).await?,
        None => None,
    };

    // Phase 3: the body.
    let limit = gateway.config().max_body_bytes;
    let body = collect(body, limit, || BodyError::TooLarge)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => gateway.body_too_large(),
            BodyError::Io(detail) => GatewayError::new(Code::BodyReadFailed).with_detail(detail),
            BodyError::TimedOut => GatewayError::new(Code::BodyTimeout),
        })?;
    let invocation = gateway.parse_invocation(head, agent, &body, ctx)?;

    // Phase 4: the signed upstream request, retried while nothing has gone
    // to the client, all within `origin_timeout_seconds`.
    let user_id = verified.as_ref().and_then(|v| v.user_id.as_deref());
    let origin = retry::fetch(gateway, platform, agent, &invocation, user_id, bearer, ctx).await?;

    // Phase 5: response filter.
    let (origin_head, origin_body) = origin.into_parts();
    let start = gateway.response_filter(&origin_head, &invocation, ctx, platform.now_ms())?;
    Ok(Invoked::Stream(Box::new(start), origin_body, charge))
}

/// Sends an origin request; the origin has `ORIGIN_TIMEOUT_SECONDS` to
/// answer with a head.
async fn fetch_head<P: Platform>(
    gateway: &Gateway,
    platform: &P,
    request: http::Request<Bytes>,
) -> Result<Response<P::OriginBody>, GatewayError> {
    let deadline = platform.now_ms() + gateway.config().origin_timeout_seconds * 1000;
    let fetch = std::pin::pin!(platform.fetch_origin(request));
    match select(fetch, platform.sleep_until(deadline)).await {
        Either::Left((Ok(response), _)) => Ok(response),
        Either::Left((Err(FetchError::Unreachable(detail)), _)) => {
            Err(GatewayError::new(Code::OriginUnreachable).with_detail(detail))
        }
        Either::Right(_) => Err(GatewayError::new(Code::OriginTimeout)),
    }
}

/// The platform's own rate limiter (the Workers binding), if it has one: a
/// per-location abuse limit, apart from `RATE_LIMIT_PER_MINUTE`.
async fn rate_limit<P: Platform>(platform: &P, ctx: &RequestContext) -> Result<(), GatewayError> {
    let key = ctx.subject.as_deref().unwrap_or(ANONYMOUS);
    match platform.rate_limit(key).await {
        None | Some(RateDecision::Allowed) => Ok(()),
        Some(RateDecision::Limited {
            retry_after_seconds,
        }) => Err(GatewayError::new(Code::RateLimited).with_header(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_seconds.max(1)),
        )),
    }
}

/// Reads `stream` to its end, at most `limit` bytes (else `too_large()`):
/// a request body, an issuer document. One chunk is kept as it came.
async fn collect<S, E>(
    stream: &mut S,
    limit: usize,
    too_large: impl FnOnce() -> E,
) -> Result<Bytes, E>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let mut len = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        len += chunk.len();
        if len > limit {
            return Err(too_large());
        }
        match &first {
            None => first = Some(chunk),
            Some(head) => {
                if more.is_empty() {
                    more.extend_from_slice(head);
                }
                more.extend_from_slice(&chunk);
            }
        }
    }
    Ok(if more.is_empty() {
        first.unwrap_or_default()
    } else {
        more.freeze()
    })
}

/// Reads and drops what is left of a request body the answer did not need,
/// up to `limit` bytes; whether it ended (the connection can then be kept).
pub async fn drain<B: RequestBody>(body: &mut B, limit: usize) -> bool {
    let mut drained = 0usize;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => drained += chunk.len(),
            Err(_) => return false,
        }
        if drained > limit {
            return false;
        }
    }
    true
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent cache state behind
    // (every update is a single assignment), so poisoning is not fatal.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix milliseconds, for log lines.
pub fn unix_ms(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
