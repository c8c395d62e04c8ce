//! The Cloudflare Workers adapter: the `fetch` event converts the request,
//! runs [`crate::gateway::driver::handle`] and streams its body back as it
//! is produced. I/O goes through the Workers runtime: `Fetch` for the origin
//! and the issuer, `setTimeout` for keepalive timers, the Cache API to share
//! the issuer's key set across isolates, WebCrypto for RSA signatures (the
//! core's `Check::VerifySignature`), and the optional `RATE_LIMITER`
//! binding. The clock is `Date.now()` (it does not advance during
//! computation, which only makes our timings conservative).
//!
//! Configuration comes from `[vars]` and secrets, validated on the first
//! request: a bad value answers 500 naming the variable, never a panic.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::{select, Either};
use futures::task::AtomicWaker;
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use wasm_bindgen::prelude::*;
use worker::js_sys::{self, Uint8Array};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{TransformStream, WritableStreamDefaultWriter};
use worker::{
    console_log, event, Cache, Context, Date, Delay, Env, Fetch, Headers, Method, Request,
    RequestInit, Response, ResponseBuilder,
};

use crate::auth::{
    FetchRequest, FetchResponse, JwsAlgorithm, SignatureCheck, MAX_ISSUER_DOCUMENT_BYTES,
};
use crate::config::Config;
use crate::error::{Code, GatewayError};
use crate::gateway::driver::{self, BodyError, FetchError, Platform, Shared};
use crate::gateway::rate_limit::RateDecision;
use crate::gateway::Gateway;

const RATE_LIMITER_BINDING: &str = "RATE_LIMITER";
/// How much of an over-limit request body is read and dropped before 413.
const MAX_DRAINED_BODY: usize = 8 << 20;
/// Cache API key under which the issuer's key set is shared across isolates.
const KEY_SET_CACHE_PREFIX: &str = "https://agent-edge.internal/jwks?issuer=";

thread_local! {
    /// One gateway per isolate: configuration, key and token caches.
    static SHARED: RefCell<Option<Rc<Shared>>> = const { RefCell::new(None) };
}

#[event(fetch)]
async fn fetch(request: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    log_panics();
    let shared = match shared(&env) {
        Ok(shared) => shared,
        Err(error) => return to_worker_response_full(error.to_response()),
    };
    let platform = WorkersPlatform { env: env.clone() };
    let head = match request_head(&request) {
        Ok(head) => head,
        Err(error) => return to_worker_response_full(error.to_response()),
    };
    load_shared_key_set(&shared).await;
    let before = key_set_stamp(&shared);
    let limit = shared.gateway.config().max_body_bytes;
    let response = driver::handle(&shared, &platform, head, read_body(request, limit)).await;
    if key_set_stamp(&shared) != before {
        // After the response, off this request's path.
        let shared = shared.clone();
        ctx.wait_until(async move { store_shared_key_set(&shared).await });
    }
    to_worker_response(response, &ctx)
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

fn shared(env: &Env) -> Result<Rc<Shared>, GatewayError> {
    if let Some(shared) = SHARED.with(|s| s.borrow().clone()) {
        return Ok(shared);
    }
    let config = Config::from_lookup(|name| {
        env.secret(name)
            .map(|s| s.to_string())
            .or_else(|_| env.var(name).map(|v| v.to_string()))
            .ok()
    })
    .map_err(|e| GatewayError::new(Code::InvalidConfiguration).with_message(e.to_string()))?;
    let shared = Rc::new(Shared::new(Gateway::new(config)));
    if let Some(auth) = shared.authenticator() {
        auth.lock()
            .unwrap_or_else(|p| p.into_inner())
            .use_platform_rsa();
    }
    SHARED.with(|s| *s.borrow_mut() = Some(shared.clone()));
    Ok(shared)
}

fn request_head(request: &Request) -> Result<http::request::Parts, GatewayError> {
    let url = request.url().map_err(|_| {
        GatewayError::new(Code::InvalidRequest).with_message("the request URL is malformed")
    })?;
    let path_and_query = match url.query() {
        Some(query) => format!("{}?{}", url.path(), query),
        None => url.path().to_owned(),
    };
    let mut builder = http::Request::builder()
        .method(request.method().as_ref())
        .uri(path_and_query);
    if let Some(headers) = builder.headers_mut() {
        *headers = to_header_map(request.headers());
    }
    builder
        .body(())
        .map(|r| r.into_parts().0)
        .map_err(|_| GatewayError::new(Code::InvalidRequest))
}

async fn read_body(mut request: Request, limit: usize) -> Result<Bytes, BodyError> {
    let mut stream = match request.stream() {
        Ok(stream) => stream,
        // No body at all.
        Err(_) => return Ok(Bytes::new()),
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Io(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            // Left half-read, a chunked body breaks the next request on the
            // same internal connection of `wrangler dev` (503 "worker
            // restarted"). Draining a bounded amount costs only reads.
            let mut drained = 0usize;
            while let Some(Ok(chunk)) = stream.next().await {
                drained += chunk.len();
                if drained > MAX_DRAINED_BODY {
                    break;
                }
            }
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

fn to_header_map(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers.entries() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            map.append(name, value);
        }
    }
    map
}

fn to_headers(map: &HeaderMap) -> worker::Result<Headers> {
    let headers = Headers::new();
    for (name, value) in map {
        if let Ok(value) = value.to_str() {
            headers.append(name.as_str(), value)?;
        }
    }
    Ok(headers)
}

fn to_worker_response(
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

#[wasm_bindgen]
extern "C" {
    /// workerd's native pass-through stream (`IdentityTransformStream`): what
    /// is written to its writable side goes to the client as is, with no
    /// JavaScript between them.
    #[wasm_bindgen(extends = TransformStream)]
    type IdentityTransformStream;

    #[wasm_bindgen(constructor, catch)]
    fn new() -> Result<IdentityTransformStream, JsValue>;
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
async fn pump(
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

fn to_worker_response_full(response: http::Response<Bytes>) -> worker::Result<Response> {
    let (parts, body) = response.into_parts();
    let builder = ResponseBuilder::new()
        .with_status(parts.status.as_u16())
        .with_headers(to_headers(&parts.headers)?);
    Ok(if body.is_empty() {
        builder.empty()
    } else {
        builder.fixed(body.to_vec())
    })
}

/// The isolate-independent copy of the issuer's key set, in the Cache API.
fn key_set_cache_key(shared: &Shared) -> Option<String> {
    let config = shared.gateway.config();
    match &config.auth {
        crate::config::AuthConfig::Jwt(jwt) => Some(format!(
            "{KEY_SET_CACHE_PREFIX}{}",
            percent_encoding::utf8_percent_encode(&jwt.issuer, percent_encoding::NON_ALPHANUMERIC)
        )),
        crate::config::AuthConfig::None => None,
    }
}

fn key_set_stamp(shared: &Shared) -> Option<u64> {
    let auth = shared.authenticator()?;
    let auth = auth.lock().unwrap_or_else(|p| p.into_inner());
    auth.export_key_set().map(|(_, fetched_at, _)| fetched_at)
}

/// A new isolate adopts the key set another isolate fetched.
async fn load_shared_key_set(shared: &Shared) {
    let (Some(key), Some(auth)) = (key_set_cache_key(shared), shared.authenticator()) else {
        return;
    };
    if auth
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .export_key_set()
        .is_some()
    {
        return;
    }
    let cache = Cache::default();
    let Ok(Some(mut cached)) = cache.get(key.as_str(), true).await else {
        return;
    };
    let header_number = |name: &str| {
        cached
            .headers()
            .get(name)
            .ok()
            .flatten()
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (Some(fetched_at), Some(max_age)) = (
        header_number("x-agent-edge-fetched-at"),
        header_number("x-agent-edge-max-age"),
    ) else {
        return;
    };
    if let Ok(document) = cached.bytes().await {
        let mut auth = auth.lock().unwrap_or_else(|p| p.into_inner());
        let _ = auth.import_key_set(document.into(), fetched_at, max_age);
    }
}

async fn store_shared_key_set(shared: &Shared) {
    let (Some(key), Some(auth)) = (key_set_cache_key(shared), shared.authenticator()) else {
        return;
    };
    let exported = auth
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .export_key_set();
    let Some((document, fetched_at, max_age)) = exported else {
        return;
    };
    let Ok(headers) = to_headers(&HeaderMap::from_iter([
        (
            http::header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("max-age={}", crate::auth::STALE_GRACE))
                .expect("digits"),
        ),
        (
            HeaderName::from_static("x-agent-edge-fetched-at"),
            HeaderValue::from(fetched_at),
        ),
        (
            HeaderName::from_static("x-agent-edge-max-age"),
            HeaderValue::from(max_age),
        ),
    ])) else {
        return;
    };
    let response = ResponseBuilder::new()
        .with_headers(headers)
        .fixed(document.to_vec());
    let _ = Cache::default().put(key.as_str(), response).await;
}

/// The Workers [`Platform`].
#[derive(Clone)]
struct WorkersPlatform {
    env: Env,
}

type WorkersBody = Pin<Box<dyn Stream<Item = Result<Bytes, String>>>>;

fn now_millis() -> u64 {
    Date::now().as_millis()
}

impl Platform for WorkersPlatform {
    type OriginBody = WorkersBody;
    type Sleep = Timer;
    const SHARES_IO_ACROSS_REQUESTS: bool = false;

    fn now_ms(&self) -> u64 {
        now_millis()
    }

    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(now_millis())
    }

    fn random(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        // crypto.getRandomValues: cannot fail for 32 bytes.
        let _ = getrandom::getrandom(&mut bytes);
        bytes
    }

    fn sleep_until(&self, deadline_ms: u64) -> Self::Sleep {
        let wait = deadline_ms.saturating_sub(now_millis());
        Timer::new(Duration::from_millis(wait))
    }

    async fn fetch_origin(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<WorkersBody>, FetchError> {
        let (parts, body) = request.into_parts();
        let mut init = RequestInit::new();
        init.with_method(Method::from(parts.method.as_str().to_owned()))
            .with_headers(to_headers(&parts.headers).map_err(unreachable)?)
            .with_body(Some(worker::js_sys::Uint8Array::from(body.as_ref()).into()));
        let url = parts.uri.to_string();
        let request = Request::new_with_init(&url, &init).map_err(unreachable)?;
        let mut response = Fetch::Request(request).send().await.map_err(unreachable)?;
        let status = StatusCode::from_u16(response.status_code()).map_err(unreachable)?;
        let headers = to_header_map(response.headers());
        let body: WorkersBody = match response.stream() {
            Ok(stream) => {
                Box::pin(stream.map(|chunk| chunk.map(Bytes::from).map_err(|e| e.to_string())))
            }
            Err(_) => Box::pin(futures::stream::empty()),
        };
        let mut out = http::Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }

    async fn fetch_auth(&self, request: &FetchRequest) -> Result<FetchResponse, String> {
        let mut init = RequestInit::new();
        let headers = Headers::new();
        let _ = headers.set("accept", "application/json");
        init.with_method(Method::Get).with_headers(headers);
        let request = Request::new_with_init(&request.url, &init).map_err(|e| e.to_string())?;
        let mut response = Fetch::Request(request)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        if let Ok(mut stream) = response.stream() {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                if body.len() + chunk.len() > MAX_ISSUER_DOCUMENT_BYTES {
                    return Err(format!(
                        "issuer document larger than {MAX_ISSUER_DOCUMENT_BYTES} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
        }
        Ok(FetchResponse {
            status: response.status_code(),
            cache_control: response.headers().get("cache-control").ok().flatten(),
            body: body.into(),
        })
    }

    async fn verify_rsa(&self, check: &SignatureCheck) -> Option<bool> {
        let key = web_crypto_key(check).await?;
        let (name, salt_length) = web_crypto_algorithm(check.alg)?;
        let params = js_object(&[("name", name.into())]);
        if let Some(salt_length) = salt_length {
            let _ = js_sys::Reflect::set(&params, &"saltLength".into(), &salt_length.into());
        }
        let promise = subtle_verify(
            &params,
            &key,
            &Uint8Array::from(check.signature.as_slice()),
            &Uint8Array::from(check.signed_data.as_slice()),
        )
        .ok()?;
        JsFuture::from(promise).await.ok()?.as_bool()
    }

    async fn rate_limit(&self, key: &str) -> Option<RateDecision> {
        let limiter = self.env.rate_limiter(RATE_LIMITER_BINDING).ok()?;
        match limiter.limit(key.to_owned()).await {
            Ok(outcome) if outcome.success => Some(RateDecision::Allowed),
            // The binding counts per 60-second period.
            Ok(_) => Some(RateDecision::Limited {
                retry_after_seconds: 60,
            }),
            // Fail open: an outage of the limiter must not take the gateway down.
            Err(_) => Some(RateDecision::Allowed),
        }
    }

    fn log(&self, line: &str) {
        console_log!("{}", line);
    }
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = importKey, catch)]
    fn subtle_import_key(
        format: &str,
        key_data: &JsValue,
        algorithm: &JsValue,
        extractable: bool,
        usages: &js_sys::Array,
    ) -> Result<js_sys::Promise, JsValue>;

    #[wasm_bindgen(js_namespace = ["crypto", "subtle"], js_name = verify, catch)]
    fn subtle_verify(
        algorithm: &JsValue,
        key: &JsValue,
        signature: &Uint8Array,
        data: &Uint8Array,
    ) -> Result<js_sys::Promise, JsValue>;
}

/// WebCrypto's name and PSS salt length for an RSA JWS algorithm (RFC 7518
/// §3.3, §3.5: the salt is as long as the digest).
fn web_crypto_algorithm(alg: JwsAlgorithm) -> Option<(&'static str, Option<u32>)> {
    Some(match alg {
        JwsAlgorithm::Rs256 | JwsAlgorithm::Rs384 | JwsAlgorithm::Rs512 => {
            ("RSASSA-PKCS1-v1_5", None)
        }
        JwsAlgorithm::Ps256 => ("RSA-PSS", Some(32)),
        JwsAlgorithm::Ps384 => ("RSA-PSS", Some(48)),
        JwsAlgorithm::Ps512 => ("RSA-PSS", Some(64)),
        JwsAlgorithm::Es256 | JwsAlgorithm::EdDsa => return None,
    })
}

fn web_crypto_hash(alg: JwsAlgorithm) -> &'static str {
    match alg {
        JwsAlgorithm::Rs384 | JwsAlgorithm::Ps384 => "SHA-384",
        JwsAlgorithm::Rs512 | JwsAlgorithm::Ps512 => "SHA-512",
        _ => "SHA-256",
    }
}

fn js_object(fields: &[(&str, JsValue)]) -> JsValue {
    let object: JsValue = js_sys::Object::new().into();
    for (name, value) in fields {
        let _ = js_sys::Reflect::set(&object, &(*name).into(), value);
    }
    object
}

/// Imported WebCrypto keys by key thumbprint and algorithm: importing costs
/// more than verifying. Bounded; an issuer has a few keys.
const MAX_WEB_CRYPTO_KEYS: usize = 16;

type WebCryptoKeyId = ([u8; 32], JwsAlgorithm);

thread_local! {
    static WEB_CRYPTO_KEYS: RefCell<Vec<(WebCryptoKeyId, JsValue)>> =
        const { RefCell::new(Vec::new()) };
}

/// The check's key, imported into WebCrypto (once per isolate).
async fn web_crypto_key(check: &SignatureCheck) -> Option<JsValue> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    let id = (check.key_thumbprint, check.alg);
    let cached = WEB_CRYPTO_KEYS.with(|keys| {
        keys.borrow()
            .iter()
            .find(|(key_id, _)| *key_id == id)
            .map(|(_, key)| key.clone())
    });
    if cached.is_some() {
        return cached;
    }
    let (name, _) = web_crypto_algorithm(check.alg)?;
    let jwk = js_object(&[
        ("kty", "RSA".into()),
        ("n", URL_SAFE_NO_PAD.encode(&check.modulus).into()),
        ("e", URL_SAFE_NO_PAD.encode(&check.exponent).into()),
    ]);
    let algorithm = js_object(&[
        ("name", name.into()),
        ("hash", web_crypto_hash(check.alg).into()),
    ]);
    let usages = js_sys::Array::of1(&"verify".into());
    let promise = subtle_import_key("jwk", &jwk, &algorithm, false, &usages).ok()?;
    let key = JsFuture::from(promise).await.ok()?;
    WEB_CRYPTO_KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if keys.len() >= MAX_WEB_CRYPTO_KEYS {
            keys.remove(0);
        }
        keys.push((id, key.clone()));
    });
    Some(key)
}

/// A `setTimeout` timer that wakes the task which polled it last.
///
/// `worker::Delay` keeps the waker of its first poll only. The streamed body
/// is polled by a new task for each `pull()` of the response's
/// `ReadableStream`, and the driver keeps a pending timer across pulls while
/// its deadline stands (as it does when an origin chunk arrives in the same
/// millisecond as the one before): the timer then wakes a finished task and
/// the keepalive never goes out. So `Delay` is polled here with a waker that
/// forwards to the latest one, as the `Future` contract asks.
struct Timer {
    delay: Delay,
    latest: Arc<LatestWaker>,
    forward: Waker,
}

impl Timer {
    fn new(wait: Duration) -> Self {
        let latest = Arc::new(LatestWaker(AtomicWaker::new()));
        Timer {
            delay: Delay::from(wait),
            forward: Waker::from(latest.clone()),
            latest,
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = &mut *self;
        this.latest.0.register(cx.waker());
        Pin::new(&mut this.delay).poll(&mut std::task::Context::from_waker(&this.forward))
    }
}

struct LatestWaker(AtomicWaker);

impl Wake for LatestWaker {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake();
    }
}

fn unreachable(error: impl std::fmt::Display) -> FetchError {
    FetchError::Unreachable(error.to_string())
}
