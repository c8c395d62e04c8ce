//! The native server: hyper for the listener, reqwest for the origin and the
//! issuer, tokio for timers. It converts types, does the I/O and reads the
//! clock; the gateway's behaviour lives in [`crate::gateway::driver`].
//!
//! A client that disconnects mid-stream makes hyper drop the response body,
//! which owns the origin response: dropping it closes the origin connection,
//! cancelling the origin request.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{
    FetchRequest, FetchResponse, ISSUER_FETCH_TIMEOUT_MS, MAX_ISSUER_DOCUMENT_BYTES,
};
use crate::config::{AuthConfig, Config};
use crate::gateway::driver::{self, BodyError, FetchError, KeyRefresh, Platform, Shared};
use crate::gateway::rate_limit::RateDecision;
use crate::gateway::{Event, EventName, Gateway, Level};

/// Where log lines go: stderr by default, a collector in tests.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The native [`Platform`].
#[derive(Clone)]
pub struct NativePlatform {
    client: reqwest::Client,
    log: LogSink,
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
        NativePlatform { client, log }
    }
}

// This adapter reads the clocks for the core (see clippy.toml).
#[allow(clippy::disallowed_methods)]
fn wall_clock() -> SystemTime {
    SystemTime::now()
}

#[allow(clippy::disallowed_methods)]
fn process_epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub type OriginBody = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

impl Platform for NativePlatform {
    type OriginBody = OriginBody;
    type Sleep = Pin<Box<tokio::time::Sleep>>;

    fn now_ms(&self) -> u64 {
        process_epoch().elapsed().as_millis() as u64
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
            let body: OriginBody = Box::pin(response.bytes_stream().map_err(|e| error_chain(&e)));
            builder
                .body(body)
                .map_err(|e| FetchError::Unreachable(e.to_string()))
        }
    }

    fn fetch_auth(
        &self,
        request: &FetchRequest,
    ) -> impl Future<Output = Result<FetchResponse, String>> {
        let client = self.client.clone();
        let url = request.url.clone();
        async move {
            let response = client
                .get(&url)
                .header(http::header::ACCEPT, "application/json")
                .send()
                .await
                .map_err(|e| error_chain(&e))?;
            let status = response.status().as_u16();
            let cache_control = response
                .headers()
                .get(http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let mut body = Vec::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| error_chain(&e))?;
                if body.len() + chunk.len() > MAX_ISSUER_DOCUMENT_BYTES {
                    return Err(format!(
                        "issuer document larger than {MAX_ISSUER_DOCUMENT_BYTES} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(FetchResponse {
                status,
                cache_control,
                body: body.into(),
            })
        }
    }

    fn spawn_key_refresh(&self, refresh: KeyRefresh) -> Option<KeyRefresh> {
        let platform = self.clone();
        tokio::spawn(async move { refresh.run(&platform, ISSUER_FETCH_TIMEOUT_MS).await });
        None
    }

    async fn rate_limit(&self, _key: &str) -> Option<RateDecision> {
        None
    }

    fn log(&self, line: &str) {
        (self.log)(line)
    }
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

/// Log lines to stderr, one per line.
pub fn stderr_log() -> LogSink {
    Arc::new(|line: &str| eprintln!("{line}"))
}

/// A running gateway. Dropping it (or [`GatewayServer::shutdown`]) stops
/// accepting connections.
pub struct GatewayServer {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl GatewayServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for GatewayServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The warning written at start with `AUTH=none`.
pub(crate) fn auth_disabled_warning(time_ms: u64) -> Event {
    Event::new(time_ms, Level::Warn, EventName::AuthDisabled)
        .with_detail("AUTH=none: callers are not authenticated; use for local development only")
}

/// Serves the gateway on `listener` in the background.
pub async fn spawn(
    config: Config,
    listener: TcpListener,
    log: LogSink,
) -> io::Result<GatewayServer> {
    if config.auth == AuthConfig::None {
        log(&auth_disabled_warning(driver::unix_ms(wall_clock())).to_line());
    }
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(Gateway::new(config)));
    let platform = NativePlatform::new(log);
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopped.changed() => break,
            };
            let Ok((stream, _peer)) = accepted else {
                // Out of descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            let platform = platform.clone();
            tokio::spawn(async move {
                let service =
                    service_fn(move |request| serve_one(shared.clone(), platform.clone(), request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(GatewayServer {
        addr,
        stop,
        task: Some(task),
    })
}

type ClientBody = StreamBody<
    futures::stream::Map<
        driver::ResponseBody<NativePlatform>,
        fn(Bytes) -> Result<Frame<Bytes>, Infallible>,
    >,
>;

async fn serve_one(
    shared: Arc<Shared>,
    platform: NativePlatform,
    request: http::Request<Incoming>,
) -> Result<http::Response<ClientBody>, Infallible> {
    let (head, body) = request.into_parts();
    let limit = shared.gateway.config().max_body_bytes;
    let read_body = async move {
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
            Err(e) => Err(BodyError::Io(e.to_string())),
        }
    };
    let response = driver::handle(&shared, &platform, head, read_body).await;
    let to_frame: fn(Bytes) -> Result<Frame<Bytes>, Infallible> = |b| Ok(Frame::data(b));
    Ok(response.map(|body| StreamBody::new(body.map(to_frame))))
}

/// `agent-edge serve`: runs until Ctrl-C or SIGTERM.
pub async fn serve(config: Config, listen: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let server = spawn(config, listener, stderr_log()).await?;
    let mut listening = Event::new(
        driver::unix_ms(wall_clock()),
        Level::Info,
        EventName::Listening,
    );
    listening.addr = Some(server.addr.to_string());
    eprintln!("{}", listening.to_line());
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
