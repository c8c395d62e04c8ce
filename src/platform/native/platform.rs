//! The tokio [`Platform`], shared by the native server and the Lambda
//! function: reqwest for the origin and the issuer, tokio timers, the
//! process clocks, log lines to a sink (stderr by default), and Redis as
//! the shared limits store ([`RedisStore`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::{Stream, TryStreamExt};

use super::redis_store::RedisStore;
use crate::auth::ISSUER_FETCH_TIMEOUT_MS;
use crate::config::{LimitsConfig, LimitsStore};
use crate::gateway::driver::{self, ChargeFailure, FetchError, IssuerAnswer, KeyRefresh, Platform};
use crate::gateway::limits::{Counts, StoreCall, StoreError};
use crate::gateway::{Event, EventName, Level};

/// Where log lines go: stderr by default, a collector in tests.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The native [`Platform`].
#[derive(Clone)]
pub struct NativePlatform {
    client: reqwest::Client,
    log: LogSink,
    loopback: bool,
    /// `LIMITS_STORE=redis`: the store, or why `REDIS_URL` cannot be used.
    redis: Option<Result<RedisStore, String>>,
}

impl NativePlatform {
    pub fn new(log: LogSink) -> Self {
        let client = reqwest::Client::builder()
            // A redirect would carry signed headers elsewhere: never follow.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .build()
            .expect("reqwest client with static settings");
        NativePlatform {
            client,
            log,
            loopback: false,
            redis: None,
        }
    }

    /// The platform of a gateway whose limits are `limits`: with
    /// `LIMITS_STORE=redis`, it reaches Redis (connecting now, in the
    /// background, when a runtime is running: so that the first request does
    /// not pay for the connection, TLS and `AUTH` within
    /// `LIMITS_STORE_TIMEOUT_MS`). A `REDIS_URL` that does not parse is logged
    /// (`invalid_configuration`) and makes the store unreachable, so that
    /// the gateway refuses the configuration rather than count nothing.
    pub fn with_limits(mut self, limits: &LimitsConfig) -> Self {
        self.redis = match &limits.store {
            LimitsStore::Redis { url } => {
                let store = RedisStore::new(url.expose(), limits.store_timeout_ms)
                    .map_err(|why| format!("REDIS_URL: {why}"));
                if let (Ok(store), Ok(runtime)) = (&store, tokio::runtime::Handle::try_current()) {
                    runtime.spawn(store.connect_early());
                }
                if let Err(why) = &store {
                    let line = Event::new(
                        driver::unix_ms(wall_clock()),
                        Level::Error,
                        EventName::InvalidConfiguration,
                    )
                    .with_detail(why.clone());
                    self.log(&line.to_line());
                }
                Some(store)
            }
            _ => None,
        };
        self
    }

    /// Why the configured limits store cannot be used (a `REDIS_URL` that
    /// does not parse), if it cannot.
    pub fn limits_store_error(&self) -> Option<&str> {
        self.redis.as_ref()?.as_ref().err().map(String::as_str)
    }

    /// The platform of a server listening on `addr`.
    pub fn listening_on(mut self, addr: std::net::SocketAddr) -> Self {
        self.loopback = addr.ip().is_loopback();
        self
    }
}

// This adapter reads the clocks for the core (see clippy.toml).
#[allow(clippy::disallowed_methods)]
pub(super) fn wall_clock() -> SystemTime {
    SystemTime::now()
}

#[allow(clippy::disallowed_methods)]
pub(super) fn process_epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since the process epoch (the monotonic clock of [`Platform::now_ms`]).
pub(super) fn now_ms() -> u64 {
    process_epoch().elapsed().as_millis() as u64
}

pub type OriginBody = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;
pub type StoreAnswer = Pin<Box<dyn Future<Output = Result<Counts, StoreError>> + Send>>;

impl Platform for NativePlatform {
    type OriginBody = OriginBody;
    type Sleep = Pin<Box<tokio::time::Sleep>>;
    type StoreCall = StoreAnswer;

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn now(&self) -> SystemTime {
        wall_clock()
    }

    fn random(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).expect("the OS random source");
        bytes
    }

    fn sleep_until(&self, deadline_ms: u64) -> Self::Sleep {
        let at = process_epoch() + Duration::from_millis(deadline_ms);
        Box::pin(tokio::time::sleep_until(at.into()))
    }

    fn listens_on_loopback(&self) -> bool {
        self.loopback
    }

    fn fetch_origin(
        &self,
        request: http::Request<Bytes>,
    ) -> impl Future<Output = Result<http::Response<OriginBody>, FetchError>> {
        let client = self.client.clone();
        async move {
            let request = reqwest::Request::try_from(request)
                .map_err(|e| FetchError::Unreachable(format!("invalid origin request: {e}")))?;
            let response = client
                .execute(request)
                .await
                .map_err(|e| FetchError::Unreachable(error_chain(&e)))?;
            let mut builder = http::Response::builder().status(response.status());
            if let Some(headers) = builder.headers_mut() {
                *headers = response.headers().clone();
            }
            builder
                .body(body_stream(response))
                .map_err(|e| FetchError::Unreachable(e.to_string()))
        }
    }

    fn fetch_issuer(
        &self,
        url: &str,
    ) -> impl Future<Output = Result<IssuerAnswer<OriginBody>, String>> {
        let request = self
            .client
            .get(url)
            .header(http::header::ACCEPT, "application/json");
        async move {
            let response = request.send().await.map_err(|e| error_chain(&e))?;
            Ok(IssuerAnswer {
                status: response.status().as_u16(),
                cache_control: response
                    .headers()
                    .get(http::header::CACHE_CONTROL)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body: body_stream(response),
            })
        }
    }

    fn spawn_key_refresh(&self, refresh: KeyRefresh) -> Option<KeyRefresh> {
        let platform = self.clone();
        tokio::spawn(async move { refresh.run(&platform, ISSUER_FETCH_TIMEOUT_MS).await });
        None
    }

    fn reaches_store(&self, store: &LimitsStore) -> bool {
        match store {
            LimitsStore::Memory => true,
            LimitsStore::Redis { .. } => matches!(self.redis, Some(Ok(_))),
            LimitsStore::DurableObject => false,
        }
    }

    fn limits_store(&self, call: StoreCall) -> Self::StoreCall {
        match &self.redis {
            Some(Ok(redis)) => Box::pin(redis.call(call)),
            _ => Box::pin(std::future::ready(Err(StoreError::Failed(
                "no shared limits store".into(),
            )))),
        }
    }

    fn detach(&self, charge: Self::StoreCall, deadline_ms: u64, failure: ChargeFailure) {
        let platform = self.clone();
        tokio::spawn(async move {
            let wait = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
            let error = match tokio::time::timeout(wait, charge).await {
                Ok(Ok(_)) => return,
                Ok(Err(error)) => error,
                Err(_) => StoreError::TimedOut,
            };
            platform.log(&failure.line(&error));
        });
    }

    fn log(&self, line: &str) {
        (self.log)(line)
    }
}

fn body_stream(response: reqwest::Response) -> OriginBody {
    Box::pin(response.bytes_stream().map_err(|e| error_chain(&e)))
}

/// An error and its sources on one line (reqwest's Display hides the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Writes every panic as one `panic` event line to `log` instead of the
/// default text. For the binaries: a test harness keeps its own hook.
pub fn log_panics(log: LogSink) {
    std::panic::set_hook(Box::new(move |info| {
        let line = crate::gateway::log::panic_event(info, driver::unix_ms(wall_clock()));
        log(&line.to_line());
    }));
}

/// Log lines to stderr, one per line. Each line goes out with its newline
/// in one write (`eprintln!` makes two), so that processes sharing the
/// output, as the execution environments of `cargo lambda watch` do, cannot
/// write between a line and its end (a pipe keeps a write of up to 4 KiB
/// whole).
pub fn stderr_log() -> LogSink {
    Arc::new(|line: &str| {
        let mut whole = String::with_capacity(line.len() + 1);
        whole.push_str(line);
        whole.push('\n');
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), whole.as_bytes());
    })
}
