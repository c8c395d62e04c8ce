//! The native server's connections: hyper serves each one and hands its
//! requests to the [`Edge`]; this module converts hyper's types and keeps
//! the connections in bounds ([`ClientLimits`]). hyper times out slow
//! request heads and caps their size (431); this module adds the idle and
//! body timeouts, the connection cap, the lingering close that lets clients
//! read an early answer, the graceful shutdown ([`GatewayServer::drain`]),
//! and a log line for each request hyper refuses.
//!
//! A client that disconnects mid-stream makes hyper drop the response body,
//! which owns the origin response: dropping it cancels the origin request.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http::HeaderValue;
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::platform::{now_ms, process_epoch, wall_clock, LogSink, NativePlatform};
use crate::config::{ClientLimits, Config};
use crate::gateway::driver::{self, BodyError, Platform};
use crate::gateway::{Edge, Event, EventName, Level};

/// A running gateway. Dropping it (or [`GatewayServer::shutdown`]) stops
/// accepting connections; [`GatewayServer::drain`] also lets the streams in
/// flight finish.
pub struct GatewayServer {
    pub addr: SocketAddr,
    control: Arc<ServerControl>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What the accept loop and every connection watch.
struct ServerControl {
    /// Set on shutdown: stop accepting; connections close once idle.
    stopping: watch::Sender<bool>,
    /// Set when the shutdown grace is over: streams end with their mode's error.
    grace_over: watch::Sender<bool>,
    /// One permit per open client connection.
    connections: Arc<Semaphore>,
    limits: ClientLimits,
    platform: NativePlatform,
}

/// After the grace, how long the last streams have to write their error and close.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

impl GatewayServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting and waits for the accept loop to end; connections
    /// already open go on.
    pub async fn shutdown(mut self) {
        let _ = self.control.stopping.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Graceful shutdown: stops accepting (new connections are refused),
    /// closes idle connections, lets requests in flight finish for up to
    /// `SHUTDOWN_GRACE_SECONDS`, then ends the remaining streams with their
    /// mode's in-band error (logged with outcome `shutdown`). Returns when
    /// every connection is closed, or shortly after the grace if some client
    /// does not read its last bytes.
    pub async fn drain(mut self) {
        let control = self.control.clone();
        let _ = control.stopping.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let open = control.open_connections();
        let grace = Duration::from_secs(control.limits.shutdown_grace_seconds);
        control.log_event(
            Level::Info,
            EventName::ShutdownStarted,
            format!("{open} connections open; grace {} s", grace.as_secs()),
        );
        if tokio::time::timeout(grace, control.all_closed())
            .await
            .is_err()
        {
            let _ = control.grace_over.send(true);
            control.log_event(
                Level::Warn,
                EventName::ShutdownGraceOver,
                format!(
                    "{} connections open; their streams end now",
                    control.open_connections()
                ),
            );
            let _ = tokio::time::timeout(SHUTDOWN_FLUSH, control.all_closed()).await;
        }
        control.log_event(
            Level::Info,
            EventName::ShutdownComplete,
            format!("{} connections left open", control.open_connections()),
        );
    }
}

impl ServerControl {
    fn open_connections(&self) -> usize {
        self.limits.max_connections - self.connections.available_permits()
    }

    /// Resolves when no client connection is open.
    async fn all_closed(&self) {
        let all = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        let _ = self.connections.acquire_many(all).await;
    }

    /// An event line with the number of open connections as its detail.
    fn log_event(&self, level: Level, event: EventName, detail: String) {
        let line = Event::new(driver::unix_ms(wall_clock()), level, event).with_detail(detail);
        self.platform.log(&line.to_line());
    }
}

impl Drop for GatewayServer {
    fn drop(&mut self) {
        let _ = self.control.stopping.send(true);
    }
}

/// Serves the gateway of `config` on `listener` in the background.
pub async fn spawn(
    config: Config,
    listener: TcpListener,
    log: LogSink,
) -> io::Result<GatewayServer> {
    let platform = NativePlatform::new(log)
        .listening_on(listener.local_addr()?)
        .with_limits(&config.limits);
    if let Some(why) = platform.limits_store_error() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()));
    }
    let edge = Edge::new(config, &platform);
    spawn_edge(edge, listener, platform)
}

/// Serves a configured `edge` on `listener` in the background.
fn spawn_edge(
    edge: Edge,
    listener: TcpListener,
    platform: NativePlatform,
) -> io::Result<GatewayServer> {
    let addr = listener.local_addr()?;
    let limits = edge
        .config()
        .expect("a configured gateway")
        .client_limits
        .clone();
    let control = Arc::new(ServerControl {
        stopping: watch::channel(false).0,
        grace_over: watch::channel(false).0,
        connections: Arc::new(Semaphore::new(limits.max_connections)),
        limits,
        platform: platform.clone(),
    });
    let task = tokio::spawn(accept_loop(
        listener,
        control.clone(),
        Arc::new(edge),
        platform,
    ));
    Ok(GatewayServer {
        addr,
        control,
        task: Some(task),
    })
}

/// Accepts while a connection permit is free: at the cap, new connections
/// wait in the listen backlog (the kernel completes their handshake) and are
/// served as soon as another closes; nothing in flight is disturbed.
async fn accept_loop(
    listener: TcpListener,
    control: Arc<ServerControl>,
    edge: Arc<Edge>,
    platform: NativePlatform,
) {
    let mut stopping = control.stopping.subscribe();
    let mut at_capacity_logged = false;
    loop {
        let permit = match control.connections.clone().try_acquire_owned() {
            Ok(permit) => {
                at_capacity_logged = false;
                permit
            }
            Err(_) => {
                if !at_capacity_logged {
                    at_capacity_logged = true;
                    let open = control.open_connections();
                    control.log_event(
                        Level::Warn,
                        EventName::ConnectionLimitReached,
                        format!("{open} connections open; new ones wait in the listen backlog"),
                    );
                }
                tokio::select! {
                    permit = control.connections.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    _ = stopping.wait_for(|stop| *stop) => break,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            permit,
            control.clone(),
            edge.clone(),
            platform.clone(),
        ));
    }
    // Dropping the listener here makes the kernel refuse new connections.
}

/// One client connection: hyper with the header timeout and size cap, our
/// idle timeout, and graceful shutdown.
async fn serve_connection(
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    control: Arc<ServerControl>,
    edge: Arc<Edge>,
    platform: NativePlatform,
) {
    let limits = &control.limits;
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        let grace_over = control.grace_over.subscribe();
        let body_timeout = Duration::from_secs(limits.body_timeout_seconds);
        service_fn(move |request| {
            serve_one(
                edge.clone(),
                platform.clone(),
                request,
                InFlight::start(&activity),
                grace_over.clone(),
                body_timeout,
            )
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_seconds))
        .max_header_size(limits.max_header_bytes);
    let stream = LingeringStream::new(stream);
    let linger = stream.linger.clone();
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let mut stopping = control.stopping.subscribe();
    let idle_timeout = Duration::from_secs(limits.idle_timeout_seconds);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = &result {
                    if error.is_timeout() {
                        // A head that did not arrive in time: nothing to deliver.
                        linger.store(false, Ordering::Release);
                    }
                    if let Some(reason) = refusal(error, limits) {
                        control.log_event(Level::Warn, EventName::RequestRefused, reason);
                    }
                }
                break;
            }
            _ = activity.idle_for(idle_timeout), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = stopping.wait_for(|stop| *stop), if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Why hyper refused a request before the gateway saw it (it answered 400
/// or 431, or closed a head that did not arrive in time), or `None` for a
/// connection that merely ended.
fn refusal(error: &hyper::Error, limits: &ClientLimits) -> Option<String> {
    if error.is_parse_too_large() {
        Some(format!(
            "431: the request head is over MAX_HEADER_BYTES ({} bytes)",
            limits.max_header_bytes
        ))
    } else if error.is_parse() {
        // hyper's sentence names what was wrong, never the bytes themselves.
        Some(format!("400: {error}"))
    } else if error.is_timeout() {
        Some(format!(
            "the request head did not arrive within CLIENT_HEADER_TIMEOUT_SECONDS ({} s)",
            limits.header_timeout_seconds
        ))
    } else {
        None
    }
}

/// A connection's requests: how many are in flight, and since when none is.
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since the process epoch of the last request start or end.
    changed_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            changed_ms: AtomicU64::new(now_ms()),
        }
    }

    /// Resolves once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let since = self.changed_ms.load(Ordering::Acquire);
            let deadline = process_epoch() + Duration::from_millis(since) + timeout;
            tokio::time::sleep_until(deadline.into()).await;
            if self.in_flight.load(Ordering::Acquire) == 0
                && self.changed_ms.load(Ordering::Acquire) == since
            {
                return;
            }
        }
    }
}

/// A request in flight on its connection, from its head until its response
/// body is done or dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.changed_ms.store(now_ms(), Ordering::Release);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.changed_ms.store(now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long a closed connection keeps reading (and discarding) what the
/// client still sends. Closing a socket with unread data makes the kernel
/// send a reset, which can destroy the response the client has not read yet
/// (nginx's "lingering close").
const LINGER: Duration = Duration::from_secs(5);

/// The client socket. When hyper is done with it and the client has not
/// closed its side, the write side is shut and the rest of what the client
/// sends is read and discarded for up to [`LINGER`] before the socket closes.
struct LingeringStream {
    stream: Option<TcpStream>,
    /// Cleared when the client has closed its side, or is not worth waiting for.
    linger: Arc<AtomicBool>,
}

impl LingeringStream {
    fn new(stream: TcpStream) -> Self {
        LingeringStream {
            stream: Some(stream),
            linger: Arc::new(AtomicBool::new(true)),
        }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.stream.as_mut().expect("present until drop"))
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = self.stream().poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            if buf.filled().len() == before && buf.remaining() > 0 {
                self.linger.store(false, Ordering::Release);
            }
        }
        result
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        let Some(mut stream) = self.stream.take() else {
            return;
        };
        if !self.linger.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _ = stream.shutdown().await;
            let mut sink = [0u8; 8192];
            let _ = tokio::time::timeout(LINGER, async {
                while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        });
    }
}

/// The client's response body: the driver's, ended in-band when the
/// shutdown grace is over.
pub struct ClientBody {
    body: driver::ResponseBody<NativePlatform>,
    /// Resolves when the shutdown grace is over; `None` once handled.
    grace_over: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    _in_flight: InFlight,
}

impl hyper::body::Body for ClientBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(grace_over) = &mut this.grace_over {
            if grace_over.as_mut().poll(cx).is_ready() {
                this.grace_over = None;
                let tail = this.body.shut_down();
                return Poll::Ready(tail.map(|bytes| Ok(Frame::data(bytes))));
            }
        }
        Pin::new(&mut this.body)
            .poll_next(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// A request body over at most this many bytes is read to the end even when
/// the answer did not need it (an early 401, 404, 415...), so that the
/// connection stays usable; a longer one closes the connection instead.
const EARLY_ANSWER_DRAIN_BYTES: u64 = 64 * 1024;
/// How long that read may take.
const EARLY_ANSWER_DRAIN_TIME: Duration = Duration::from_millis(250);

async fn serve_one(
    edge: Arc<Edge>,
    platform: NativePlatform,
    request: http::Request<Incoming>,
    in_flight: InFlight,
    mut grace_over: watch::Receiver<bool>,
    body_timeout: Duration,
) -> Result<http::Response<ClientBody>, Infallible> {
    let (head, body) = request.into_parts();
    let mut body = RequestBody::new(body, body_timeout);
    let mut response = edge.handle(&platform, head, &mut body).await;
    let keep_alive = body.ended
        || (body.declared_len <= EARLY_ANSWER_DRAIN_BYTES
            && tokio::time::timeout(
                EARLY_ANSWER_DRAIN_TIME,
                driver::drain(&mut body, EARLY_ANSWER_DRAIN_BYTES as usize),
            )
            .await
            .unwrap_or(false));
    if !keep_alive {
        // What the client still sends is read by the lingering close.
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let streaming = matches!(response.body(), driver::ResponseBody::Stream(_));
    let grace_over: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = streaming.then(|| {
        Box::pin(async move {
            let _ = grace_over.wait_for(|over| *over).await;
        }) as Pin<Box<dyn Future<Output = ()> + Send>>
    });
    Ok(response.map(|body| ClientBody {
        body,
        grace_over,
        _in_flight: in_flight,
    }))
}

/// hyper's request body as the driver reads it: data frames, until
/// `CLIENT_BODY_TIMEOUT_SECONDS` after the head.
struct RequestBody {
    body: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// The declared length (0 when none is declared).
    declared_len: u64,
    /// Whether the body was read to its end.
    ended: bool,
}

impl RequestBody {
    fn new(body: Incoming, timeout: Duration) -> Self {
        RequestBody {
            declared_len: body.size_hint().lower(),
            ended: body.is_end_stream(),
            deadline: Box::pin(tokio::time::sleep(timeout)),
            body,
        }
    }
}

impl Stream for RequestBody {
    type Item = Result<Bytes, BodyError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while !this.ended {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => return Poll::Ready(Some(Ok(data))),
                    Err(_trailers) => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(BodyError::Io(e.to_string()))));
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => {
                    return match this.deadline.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::TimedOut))),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        Poll::Ready(None)
    }
}

/// `agent-edge serve`: configures the gateway from `lookup` (an invalid
/// configuration is logged and returned: the server does not start), then
/// serves until Ctrl-C or SIGTERM and shuts down gracefully
/// ([`GatewayServer::drain`]).
pub async fn serve(
    lookup: impl Fn(&str) -> Option<String>,
    listen: SocketAddr,
) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let mut platform = NativePlatform::new(super::stderr_log())
        .listening_on(listener.local_addr().map_err(|e| e.to_string())?);
    // An invalid configuration is the Edge's to report, below.
    if let Ok(config) = Config::from_lookup(&lookup) {
        platform = platform.with_limits(&config.limits);
    }
    if let Some(why) = platform.limits_store_error() {
        return Err(why.to_owned());
    }
    let edge = Edge::configure(lookup, &platform);
    if let Some(error) = edge.configuration_error() {
        return Err(error.message.to_string());
    }
    raise_open_file_limit(edge.config().expect("configured"), &platform);
    let server = spawn_edge(edge, listener, platform.clone()).map_err(|e| e.to_string())?;
    let mut listening = Event::new(
        driver::unix_ms(wall_clock()),
        Level::Info,
        EventName::Listening,
    );
    listening.addr = Some(server.addr.to_string());
    platform.log(&listening.to_line());
    shutdown_signal().await;
    server.drain().await;
    Ok(())
}

/// Each stream holds two descriptors (client and origin): raise the soft
/// limit to the hard one, and warn when `MAX_CONNECTIONS` cannot be reached.
pub fn raise_open_file_limit(config: &Config, platform: &NativePlatform) {
    let Ok(limit) = rlimit::increase_nofile_limit(u64::MAX) else {
        return;
    };
    let needed = 2 * config.client_limits.max_connections as u64 + 64;
    if limit < needed {
        let line = Event::new(
            driver::unix_ms(wall_clock()),
            Level::Warn,
            EventName::OpenFileLimit,
        )
        .with_detail(format!(
            "the open file limit is {limit}; MAX_CONNECTIONS={} needs about {needed} (two per stream); raise `ulimit -n` or lower MAX_CONNECTIONS",
            config.client_limits.max_connections
        ));
        platform.log(&line.to_line());
    }
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
