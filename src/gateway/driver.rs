//! Runs the gateway's phases in order over a [`Platform`], the one seam
//! between the core and a runtime.
//!
//! The platform does the I/O (origin and issuer fetches, timers, the rate
//! limit binding, log output) and reads the clocks; this module only
//! sequences the synchronous phases of [`super`]. Both adapters, the native
//! server and the Cloudflare Worker, call [`handle`], which is why their
//! responses are the same byte for byte. No runtime is named here: futures
//! come from the platform, and the response body is a plain
//! [`futures::Stream`] polled by hand so that it stays `Send` when the
//! platform's types are, and needs no boxing.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures::future::{select, Either};
use futures::Stream;
use http::{header, HeaderValue, Response};

use super::log::{Event, EventName, Level, Outcome};
use super::rate_limit::{RateDecision, RateLimiter};
use super::{Gateway, RequestContext, RequestLog, Route, StreamStart};
use crate::auth::{
    Authenticator, Check, FetchRequest, FetchResponse, SignatureCheck, Verified,
    ISSUER_FETCH_TIMEOUT_MS, STALE_REFRESH_WAIT_MS,
};
use crate::config::AuthConfig;
use crate::error::{Code, GatewayError};
use crate::scrub::Scrubber;
use crate::sse::{StreamError, Transformer};

/// Why the origin could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Connection refused, DNS, TLS, reset before headers: the detail is for
    /// the log (the driver scrubs it).
    Unreachable(String),
}

/// Why the request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Over the limit the adapter was given.
    TooLarge,
    /// The client's connection failed while sending it.
    Io(String),
    /// Not all there within the adapter's body timeout.
    TimedOut,
}

/// What a runtime provides. Clocks: `now_ms` is monotonic, `now` is the wall
/// clock (JWT times, SigV4 dates). Nothing in the core reads either itself.
pub trait Platform: Clone + Unpin {
    /// The origin's response body, chunk by chunk.
    type OriginBody: Stream<Item = Result<Bytes, String>> + Unpin;
    /// A timer completing at a monotonic deadline.
    type Sleep: Future<Output = ()> + Unpin;
    /// Whether one request may wait for I/O started by another (a shared
    /// key set refresh). Workers forbid it: such a request is cancelled as
    /// hung, so there each request fetches for itself.
    const SHARES_IO_ACROSS_REQUESTS: bool = true;

    fn now_ms(&self) -> u64;
    fn now(&self) -> SystemTime;
    /// 32 unpredictable bytes (request and session ids).
    fn random(&self) -> [u8; 32];
    fn sleep_until(&self, deadline_ms: u64) -> Self::Sleep;
    /// Sends the signed origin request; resolves when its head has arrived.
    fn fetch_origin(
        &self,
        request: http::Request<Bytes>,
    ) -> impl Future<Output = Result<http::Response<Self::OriginBody>, FetchError>>;
    /// GETs an issuer document (discovery or key set), reading at most
    /// [`crate::auth::MAX_ISSUER_DOCUMENT_BYTES`]; the driver gives it
    /// [`crate::auth::ISSUER_FETCH_TIMEOUT_MS`].
    fn fetch_auth(
        &self,
        request: &FetchRequest,
    ) -> impl Future<Output = Result<FetchResponse, String>>;
    /// Checks an RSA signature with the platform's crypto (WebCrypto on
    /// Workers): `None` when it cannot, and the core then verifies it
    /// in-process. Asked only by an authenticator set to
    /// [`Authenticator::use_platform_rsa`].
    fn verify_rsa(&self, _check: &SignatureCheck) -> impl Future<Output = Option<bool>> {
        std::future::ready(None)
    }
    /// Runs a key set refresh apart from the request that found it due
    /// (natively: a spawned task). Platforms that cannot (Workers: I/O
    /// belongs to one request) hand it back, and the request runs it for at
    /// most [`crate::auth::STALE_REFRESH_WAIT_MS`].
    fn spawn_key_refresh(&self, refresh: KeyRefresh) -> Option<KeyRefresh> {
        Some(refresh)
    }
    /// A platform rate limiter (the Workers binding), or `None` to use the
    /// configured in-process one.
    fn rate_limit(&self, key: &str) -> impl Future<Output = Option<RateDecision>>;
    /// Writes one structured log line.
    fn log(&self, line: &str);
}

/// State shared by all requests of a deployment (or a Worker isolate).
pub struct Shared {
    pub gateway: Gateway,
    authenticator: Option<Arc<Mutex<Authenticator>>>,
    /// Serializes issuer fetches so concurrent requests share one refresh.
    auth_fetch: futures::lock::Mutex<()>,
    rate_limiter: Option<Mutex<RateLimiter>>,
}

impl Shared {
    pub fn new(gateway: Gateway) -> Self {
        let config = gateway.config();
        let authenticator = match &config.auth {
            AuthConfig::Jwt(jwt) => Some(Arc::new(Mutex::new(Authenticator::new(jwt.clone())))),
            AuthConfig::None => None,
        };
        let rate_limiter = config
            .rate_limit_per_minute
            .map(|limit| Mutex::new(RateLimiter::new(limit)));
        Shared {
            gateway,
            authenticator,
            auth_fetch: futures::lock::Mutex::new(()),
            rate_limiter,
        }
    }

    /// The verified-token and key caches, for adapters that persist keys.
    pub fn authenticator(&self) -> Option<&Mutex<Authenticator>> {
        self.authenticator.as_deref()
    }
}

/// Serves one request. `body` is read only when the request gets that far;
/// the adapter bounds it by `config().max_body_bytes`.
pub async fn handle<P: Platform>(
    shared: &Shared,
    platform: &P,
    head: http::request::Parts,
    body: impl Future<Output = Result<Bytes, BodyError>>,
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
            gateway.finish_headers(&mut parts.headers, &ctx);
            let mut log = RequestLog::new(&ctx, parts.status);
            log.bytes_out = body.len() as u64;
            log.duration_ms = platform.now_ms().saturating_sub(ctx.started_ms);
            platform.log(&log.to_line());
            Response::from_parts(parts, ResponseBody::Full(Some(body)))
        }
        Ok(Invoked::Stream(start, origin_body)) => {
            let StreamStart { head, transformer } = *start;
            let log = RequestLog::new(&ctx, head.status);
            let stream = StreamBody {
                platform: platform.clone(),
                origin: Some(origin_body),
                transformer,
                sleep: None,
                started_ms: ctx.started_ms,
                origin_idle_ms: gateway.config().origin_idle_timeout_seconds * 1000,
                last_origin_ms: platform.now_ms(),
                log: Some(log),
                scrubber: gateway.scrubber().clone(),
            };
            Response::from_parts(head, ResponseBody::Stream(Box::new(stream)))
        }
        Err(error) => answer_error(gateway, platform, &ctx, &error),
    }
}

/// Answers a request the adapter could not turn into an HTTP request (a
/// Lambda event with a malformed header, say) with `error`, its common
/// headers and its log line, as every other answer.
pub fn refuse<P: Platform>(
    shared: &Shared,
    platform: &P,
    method: &str,
    path: &str,
    error: &GatewayError,
) -> Response<ResponseBody<P>> {
    let ctx = RequestContext::unparsed(
        method,
        path,
        platform.random(),
        platform.now_ms(),
        unix_ms(platform.now()),
    );
    answer_error(&shared.gateway, platform, &ctx, error)
}

fn answer_error<P: Platform>(
    gateway: &Gateway,
    platform: &P,
    ctx: &RequestContext,
    error: &GatewayError,
) -> Response<ResponseBody<P>> {
    let response = gateway.error_response(error, ctx);
    let mut log = RequestLog::new(ctx, error.status);
    log.error = Some(error.code);
    log.detail = error.detail.as_deref().map(|d| gateway.scrubber().scrub(d));
    log.bytes_out = response.body().len() as u64;
    log.duration_ms = platform.now_ms().saturating_sub(ctx.started_ms);
    platform.log(&log.to_line());
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, ResponseBody::Full(Some(body)))
}

/// How [`invoke`] ended when it did not fail.
enum Invoked<B> {
    Answered(Response<Bytes>),
    Stream(Box<StreamStart>, B),
}

async fn invoke<P: Platform>(
    shared: &Shared,
    platform: &P,
    head: &http::request::Parts,
    body: impl Future<Output = Result<Bytes, BodyError>>,
    ctx: &mut RequestContext,
) -> Result<Invoked<P::OriginBody>, GatewayError> {
    let gateway = &shared.gateway;

    // Phase 1: request filter.
    if let Route::Answered(response) = gateway.request_filter(head, ctx)? {
        return Ok(Invoked::Answered(response));
    }

    // Phase 2: authentication, then the per-subject rate limit.
    let authorization = head
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let verified = authenticate(shared, platform, authorization).await?;
    ctx.subject = verified.as_ref().and_then(|v| v.subject.clone());
    rate_limit(shared, platform, ctx).await?;

    // Phase 3: the body.
    let body = body.await.map_err(|e| match e {
        BodyError::TooLarge => gateway.body_too_large(),
        BodyError::Io(detail) => GatewayError::new(Code::BodyReadFailed).with_detail(detail),
        BodyError::TimedOut => GatewayError::new(Code::BodyTimeout),
    })?;
    let invocation = gateway.parse_invocation(head, &body, ctx)?;

    // Phase 4: the upstream request.
    let bearer = crate::auth::reject::bearer_token(authorization).ok();
    let user_id = verified.as_ref().and_then(|v| v.user_id.as_deref());
    let request = gateway.upstream_request(&invocation, user_id, bearer, platform.now())?;

    // The origin has `origin_timeout_seconds` to answer with a head.
    let deadline = platform.now_ms() + gateway.config().origin_timeout_seconds * 1000;
    let fetch = std::pin::pin!(platform.fetch_origin(request));
    let origin = match select(fetch, platform.sleep_until(deadline)).await {
        Either::Left((Ok(response), _)) => response,
        Either::Left((Err(FetchError::Unreachable(detail)), _)) => {
            return Err(GatewayError::new(Code::OriginUnreachable).with_detail(detail))
        }
        Either::Right(_) => return Err(GatewayError::new(Code::OriginTimeout)),
    };

    // Phase 5: response filter.
    let (origin_head, origin_body) = origin.into_parts();
    let start = gateway.response_filter(&origin_head, &invocation, ctx, platform.now_ms())?;
    Ok(Invoked::Stream(Box::new(start), origin_body))
}

async fn authenticate<P: Platform>(
    shared: &Shared,
    platform: &P,
    authorization: Option<&str>,
) -> Result<Option<Verified>, GatewayError> {
    let Some(authenticator) = &shared.authenticator else {
        return Ok(None);
    };
    let refresh = lock(authenticator).take_background_refresh(unix_seconds(platform.now()));
    if let Some(request) = refresh {
        let refresh = KeyRefresh {
            authenticator: authenticator.clone(),
            request,
        };
        if let Some(refresh) = platform.spawn_key_refresh(refresh) {
            // Run here, briefly: the stale keys serve if it is not done.
            refresh.run(platform, STALE_REFRESH_WAIT_MS).await;
        }
    }
    let mut fetch_turn = None;
    loop {
        let now = unix_seconds(platform.now());
        let check = lock(authenticator).check(authorization, now);
        match check {
            Check::Verified(verified) => return Ok(Some(verified)),
            Check::Rejected(error) => return Err(error),
            Check::VerifySignature(check) => {
                let verdict = platform.verify_rsa(&check).await;
                if verdict.is_none() {
                    // Correct, but the slow path the platform was to spare.
                    let event = Event::new(
                        unix_ms(platform.now()),
                        Level::Warn,
                        EventName::SignatureCheckFallback,
                    )
                    .with_detail(
                        "the platform could not check an RSA signature; checked in-process",
                    );
                    platform.log(&event.to_line());
                }
                lock(authenticator).on_signature(&check, verdict);
            }
            Check::Fetch(request) => {
                if P::SHARES_IO_ACROSS_REQUESTS && fetch_turn.is_none() {
                    // Wait for any refresh in flight, then look again: it may
                    // have brought the key.
                    fetch_turn = Some(shared.auth_fetch.lock().await);
                    continue;
                }
                let response = fetch_issuer(platform, &request, ISSUER_FETCH_TIMEOUT_MS).await;
                let now = unix_seconds(platform.now());
                if let Some(failure) = lock(authenticator).on_fetched(&request, response, now) {
                    log_fetch_failure(platform, &failure);
                }
            }
        }
    }
}

/// The refresh of a stale key set that still serves
/// ([`Authenticator::take_background_refresh`]), handed to
/// [`Platform::spawn_key_refresh`].
pub struct KeyRefresh {
    authenticator: Arc<Mutex<Authenticator>>,
    request: FetchRequest,
}

impl KeyRefresh {
    /// Fetches until the key set is refreshed or the attempt failed; each
    /// fetch within `wait_ms` (at most [`ISSUER_FETCH_TIMEOUT_MS`]).
    pub async fn run<P: Platform>(self, platform: &P, wait_ms: u64) {
        let mut request = self.request;
        loop {
            let wait_ms = wait_ms.min(ISSUER_FETCH_TIMEOUT_MS);
            let response = fetch_issuer(platform, &request, wait_ms).await;
            let now = unix_seconds(platform.now());
            let next = {
                let mut authenticator = lock(&self.authenticator);
                if let Some(failure) = authenticator.on_fetched(&request, response, now) {
                    log_fetch_failure(platform, &failure);
                }
                authenticator.take_background_refresh(now)
            };
            match next {
                Some(next) => request = next,
                None => return,
            }
        }
    }
}

/// One issuer fetch, given up after `wait_ms`.
async fn fetch_issuer<P: Platform>(
    platform: &P,
    request: &FetchRequest,
    wait_ms: u64,
) -> Result<FetchResponse, String> {
    let deadline = platform.now_ms().saturating_add(wait_ms);
    let fetch = std::pin::pin!(platform.fetch_auth(request));
    match select(fetch, platform.sleep_until(deadline)).await {
        Either::Left((response, _)) => response,
        Either::Right(_) => Err(format!("no answer within {wait_ms} ms")),
    }
}

fn log_fetch_failure<P: Platform>(platform: &P, failure: &str) {
    let event = Event::new(unix_ms(platform.now()), Level::Warn, EventName::KeySetFetch)
        .with_detail(failure.to_owned());
    platform.log(&event.to_line());
}

async fn rate_limit<P: Platform>(
    shared: &Shared,
    platform: &P,
    ctx: &RequestContext,
) -> Result<(), GatewayError> {
    let key = ctx.subject.as_deref().unwrap_or("anonymous");
    let decision = match platform.rate_limit(key).await {
        Some(decision) => decision,
        None => match &shared.rate_limiter {
            Some(limiter) => lock(limiter).check(key, platform.now_ms()),
            None => RateDecision::Allowed,
        },
    };
    match decision {
        RateDecision::Allowed => Ok(()),
        RateDecision::Limited {
            retry_after_seconds,
        } => Err(GatewayError::new(Code::RateLimited).with_header(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_seconds.max(1)),
        )),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent cache state behind
    // (every update is a single assignment), so poisoning is not fatal.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn unix_seconds(now: SystemTime) -> u64 {
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

/// Most keys of an origin's `usage` object kept in a log line, nested ones
/// included: the origin decides how many it sends.
const MAX_LOGGED_USAGE_KEYS: usize = 32;

/// The numbers of an origin's `usage` object (nested objects kept, keys of
/// safe characters only, at most [`MAX_LOGGED_USAGE_KEYS`]): the origin's own
/// text never reaches the log.
fn numbers_only(value: &serde_json::Value) -> Option<serde_json::Value> {
    let mut keys_left = MAX_LOGGED_USAGE_KEYS;
    numbers_within(value, &mut keys_left)
}

fn numbers_within(value: &serde_json::Value, keys_left: &mut usize) -> Option<serde_json::Value> {
    use serde_json::Value;
    const MAX_KEY: usize = 64;
    match value {
        Value::Number(_) => Some(value.clone()),
        Value::Object(map) => {
            let mut kept = serde_json::Map::new();
            for (key, value) in map {
                if *keys_left == 0 {
                    break;
                }
                let safe = key.len() <= MAX_KEY
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                if !safe {
                    continue;
                }
                *keys_left -= 1;
                if let Some(value) = numbers_within(value, keys_left) {
                    kept.insert(key.clone(), value);
                }
            }
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        _ => None,
    }
}

/// The client's response body.
pub enum ResponseBody<P: Platform> {
    /// A complete answer (errors, ping, preflight).
    Full(Option<Bytes>),
    /// The origin's stream through the transformer.
    Stream(Box<StreamBody<P>>),
}

impl<P: Platform> ResponseBody<P> {
    /// Ends a stream now because the server is shutting down: its mode's
    /// in-band error, logged with outcome `shutdown`. The bytes to send
    /// last, or `None` when there is nothing more to send.
    pub fn shut_down(&mut self) -> Option<Bytes> {
        match self {
            ResponseBody::Full(body) => body.take(),
            ResponseBody::Stream(stream) if stream.origin.is_some() => {
                if let Some(log) = &mut stream.log {
                    log.outcome = Some(Outcome::Shutdown);
                }
                Some(stream.end(Some(StreamError::new(Code::ShuttingDown))))
            }
            ResponseBody::Stream(_) => None,
        }
    }
}

impl<P: Platform> Stream for ResponseBody<P> {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match self.get_mut() {
            ResponseBody::Full(body) => Poll::Ready(body.take().filter(|b| !b.is_empty())),
            ResponseBody::Stream(stream) => Pin::new(stream.as_mut()).poll_next(cx),
        }
    }
}

/// Phase 6 (response body filter) and phase 7 (logging) of a streamed
/// answer: origin chunks through the transformer, keepalives when the origin
/// is idle, the log line when the stream ends or the client goes away.
pub struct StreamBody<P: Platform> {
    platform: P,
    /// `None` once the origin is done (or dropped, which cancels it).
    origin: Option<P::OriginBody>,
    transformer: Transformer,
    sleep: Option<(u64, P::Sleep)>,
    started_ms: u64,
    /// `ORIGIN_IDLE_TIMEOUT_SECONDS`, in milliseconds.
    origin_idle_ms: u64,
    /// When the origin last sent bytes (or its head).
    last_origin_ms: u64,
    log: Option<RequestLog>,
    scrubber: Scrubber,
}

impl<P: Platform> StreamBody<P> {
    fn emit(&mut self, bytes: Bytes) -> Poll<Option<Bytes>> {
        if let Some(log) = &mut self.log {
            if log.ttfb_ms.is_none() {
                log.ttfb_ms = Some(self.platform.now_ms().saturating_sub(self.started_ms));
            }
            log.bytes_out += bytes.len() as u64;
        }
        Poll::Ready(Some(bytes))
    }

    fn end(&mut self, error: Option<StreamError>) -> Bytes {
        self.origin = None;
        self.sleep = None;
        // The transformer's own limit error, or the origin's failure.
        let code = error
            .as_ref()
            .map(|e| e.code)
            .or_else(|| self.transformer.ended_with_error());
        let outcome = if code.is_some() {
            Outcome::OriginError
        } else {
            Outcome::Complete
        };
        let tail = self.transformer.finish(error);
        if let Some(mut log) = self.log.take() {
            // A cause set before the end (shutdown) stands.
            log.outcome.get_or_insert(outcome);
            log.error = code;
            log.bytes_out += tail.len() as u64;
            if log.ttfb_ms.is_none() && !tail.is_empty() {
                log.ttfb_ms = Some(self.platform.now_ms().saturating_sub(self.started_ms));
            }
            self.write_log(log);
        }
        tail
    }

    fn write_log(&self, mut log: RequestLog) {
        // The origin wrote it: only its numbers are logged.
        log.usage = self.transformer.usage().and_then(numbers_only);
        log.duration_ms = self.platform.now_ms().saturating_sub(self.started_ms);
        if log.outcome != Some(Outcome::Complete) {
            log.level = Level::Warn;
        }
        self.platform.log(&log.to_line());
    }
}

impl<P: Platform> Stream for StreamBody<P> {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        // Every field is Unpin (the platform's futures are required to be).
        let this = self.get_mut();
        loop {
            let Some(origin) = this.origin.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(origin).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let now = this.platform.now_ms();
                    if !chunk.is_empty() {
                        this.last_origin_ms = now;
                    }
                    let out = this.transformer.push(chunk, now);
                    if this.transformer.is_finished() {
                        // A limit ended the stream inside `push`.
                        let tail = this.end(None);
                        let all = if tail.is_empty() {
                            out
                        } else {
                            [out, tail].concat().into()
                        };
                        return this.emit(all);
                    }
                    if !out.is_empty() {
                        return this.emit(out);
                    }
                }
                Poll::Ready(Some(Err(detail))) => {
                    // The client gets a fixed sentence (the same on every
                    // platform); the platform's wording goes to the log.
                    if let Some(log) = &mut this.log {
                        log.detail = Some(this.scrubber.scrub(&detail));
                    }
                    let tail = this.end(Some(StreamError::new(Code::OriginStreamFailed)));
                    return this.emit(tail);
                }
                Poll::Ready(None) => {
                    let tail = this.end(None);
                    return if tail.is_empty() {
                        Poll::Ready(None)
                    } else {
                        this.emit(tail)
                    };
                }
                Poll::Pending => {
                    let idle_at = this.last_origin_ms.saturating_add(this.origin_idle_ms);
                    // `None` inside an event: no keepalive may go there.
                    let keepalive_at = this.transformer.idle_deadline();
                    let deadline = keepalive_at.map_or(idle_at, |at| at.min(idle_at));
                    // A timer due later is replaced; one due earlier is kept
                    // (and re-armed when it fires), so a busy stream does not
                    // arm a timer per chunk.
                    if this.sleep.as_ref().is_none_or(|(at, _)| *at > deadline) {
                        this.sleep = Some((deadline, this.platform.sleep_until(deadline)));
                    }
                    let (armed_at, sleep) = this.sleep.as_mut().expect("just set");
                    if Pin::new(sleep).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let armed_at = *armed_at;
                    this.sleep = None;
                    // The timer firing proves its time has passed, even
                    // where the clock only advances on I/O (Workers).
                    let now = this.platform.now_ms().max(armed_at);
                    if now >= idle_at {
                        if let Some(log) = &mut this.log {
                            log.detail = Some(format!(
                                "no origin bytes for {} s",
                                this.origin_idle_ms / 1000
                            ));
                        }
                        let tail = this.end(Some(StreamError::new(Code::OriginIdleTimeout)));
                        return this.emit(tail);
                    }
                    if let Some(keepalive) = this.transformer.poll_idle(now) {
                        return this.emit(keepalive);
                    }
                    // Not due yet: loop to re-arm the timer.
                }
            }
        }
    }
}

impl<P: Platform> Drop for StreamBody<P> {
    fn drop(&mut self) {
        // Dropped before the end: the client went away. Dropping `origin`
        // with us cancels the origin request.
        if let Some(mut log) = self.log.take() {
            log.outcome = Some(Outcome::ClientClosed);
            self.write_log(log);
        }
    }
}
