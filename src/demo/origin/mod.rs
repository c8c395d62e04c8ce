//! The built-in demo agent: a local stand-in for Amazon Bedrock AgentCore
//! Runtime, speaking its `InvokeAgentRuntime` protocol, for `agent-edge dev`
//! and for tests.
//!
//! It knows two runtimes, [`DEMO_RUNTIME_ARN`] and
//! [`DEMO_SECOND_RUNTIME_ARN`] (more with
//! [`DemoOriginSettings::more_runtime_arns`]), and two operations:
//! `InvokeAgentRuntime`, `POST /runtimes/{url-encoded ARN}/invocations?qualifier=Q`,
//! and `StopRuntimeSession`, `POST /runtimes/{url-encoded ARN}/stopruntimesession?qualifier=Q`.
//!
//! Per request, in AgentCore's order (authenticate, then find the resource,
//! then validate):
//! 1. the route, one of the two operations (else 404
//!    `UnknownOperationException`);
//! 2. the SigV4 signature ([`signature`]);
//! 3. the ARN and qualifier (else 404 `ResourceNotFoundException`);
//! 4. the `X-Amzn-Bedrock-AgentCore-Runtime-Session-Id` header, 33 to 256
//!    characters (else 400 `ValidationException`).
//!
//! Sessions: a session is a runtime's, by id. Every invocation opens its
//! session if it is not open yet; each has a memory the test prompts
//! `/remember` and `/recall` use. `StopRuntimeSession` of an open session
//! forgets it and answers 200 with the session header (no body); of any
//! other, 404 `ResourceNotFoundException`. At most [`MAX_SESSIONS`] are
//! kept, the oldest forgotten first.
//!
//! Errors use AWS's rest-json shape: a JSON body `{"message":"..."}` and the
//! error type in `x-amzn-ErrorType` (`<Type>:http://internal.amazon.com/coral/...`),
//! plus `x-amzn-RequestId`.
//!
//! A valid request gets `text/event-stream; charset=utf-8`, the session
//! header echoed, and Strands events framed as the AgentCore Python SDK
//! (`BedrockAgentCoreApp`) frames them: `data: <json.dumps(event)>\n\n`, with
//! Python's default separators (`", "`, `": "`) and non-ASCII kept:
//! `messageStart`, one `contentBlockDelta` per word of a reply quoting the
//! prompt (`word_delay` apart), `contentBlockStop`, `messageStop`, and
//! `metadata` with `usage` (words counted as tokens) and `metrics.latencyMs`.
//!
//! ## Test prompts
//! A `prompt` starting with `/` scripts the answer instead:
//! - `/events N [MS [K]]`: the numbers `1 2 … N` as text, K numbers per
//!   delta (default 1: `"1"`, `" 2"`, …), the deltas `MS` milliseconds apart
//!   (default `word_delay`), then the usual closing events. K = 6 makes
//!   deltas of about 22 characters, the size AgentCore sends in `002_*.txt`.
//! - `/error-after N`: N deltas, then the SDK's mid-stream error event
//!   `{"error": ..., "error_type": "RuntimeError", "message": "An error occurred during streaming"}`,
//!   and the stream ends.
//! - `/abort-after N`: N deltas, then the connection is cut mid-body.
//! - `/origin-error [STATUS]`: answers STATUS (default 500) before streaming,
//!   with an AWS error body that echoes the ARN, account id, access key,
//!   secret key, session token and `Authorization` header: what a gateway
//!   must never relay.
//! - `/json`: answers `application/json`, the reply as a JSON string (what
//!   the SDK returns for a non-streaming handler).
//! - `/html`: answers 200 `text/html`, as a login page or a proxy's error
//!   page in front of an agent would.
//! - `/usage-keys N`: one delta, then metadata whose `usage` has the three
//!   token counts, an object `nested` of N keys and N more keys (N at most
//!   1000 each): wider than a log line keeps.
//! - `/remember TEXT`: the session keeps TEXT; the answer is
//!   `I will remember: TEXT.`
//! - `/recall`: what the session keeps, `I remember: A, B.` (in the order
//!   given), or `I remember nothing.` for a new session.
//! - `/ag-ui`: an AG-UI agent's answer instead of Strands events: the bytes
//!   of `tests/data/sse/ag-ui-run.sse` (text messages, a tool call, state,
//!   a messages snapshot, `RUN_FINISHED` with `usage`), one event per chunk,
//!   `word_delay` apart.
//! - `/ag-ui-error`: the same for `tests/data/sse/ag-ui-run-error.sse`,
//!   which ends in `RUN_ERROR` (its message quotes ARNs).
//!
//! AgentCore's failures before the stream, each in its AWS error shape (a
//! gateway retries some of them before the first byte):
//! - `/status-then STATUS N [SECONDS]`: STATUS (4xx or 5xx) with its AWS
//!   error type (409 `RetryableConflictException`, 429
//!   `ThrottlingException`, 503 `ServiceUnavailableException`...) to the
//!   first N requests of the session (its session id: a gateway's retries
//!   share it, other tests' requests do not), with `Retry-After: SECONDS`
//!   when given; then the usual reply.
//! - `/conflict-then N`: `/status-then 409 N`.
//! - `/runtime-client-error`: 424 `RuntimeClientError`, as AgentCore
//!   answers when the agent's own code failed.
//! - `/quota`: 402 `ServiceQuotaExceededException`.
//!
//! Each streamed answer is noted when it ends ([`DemoOrigin::streams`]):
//! its session id, and whether it was sent to the end or the caller went
//! away first (what a gateway must do when its own client leaves).
//!
//! Faults, for the gateway's fault suite:
//! - `/reset`: the connection is closed before any response head.
//! - `/origin-html [STATUS]`: an HTML error page (default 503).
//! - `/slow-headers MS`: the head only after MS milliseconds, then 3 deltas.
//! - `/stall-after N`: N deltas, then nothing until the client hangs up.
//! - `/drop-mid-event`: one delta, half an event, then the connection is cut.
//! - `/invalid-utf8`: a delta whose text holds bytes that are not UTF-8.
//! - `/big-event BYTES`: one delta of BYTES characters.
//! - `/garbage`: 4 KiB of random bytes as `text/event-stream`.
//! - `/content-type TYPE`: 200 with this content type and a small HTML body.
//! - `/gzip`: three deltas, gzip-encoded (`Content-Encoding: gzip`).
//! - `/echo-error-type`: 500 whose `x-amzn-ErrorType` is the request's
//!   `Authorization` header.
//! - `/echo-request`: a stream whose usage metadata and error event quote the
//!   request's path, `Authorization` and session token headers.
//!
//! The two echoes are answered before the signature is checked, so that
//! they work whatever the gateway's origin authentication. Submodules:
//! [`signature`] (SigV4 verification) and `script` (the answers).
//!
//! Native only (tokio, hyper). It reads the clock; the core does not.
//!
//! AgentCore `InvokeAgentRuntime`,
//! <https://docs.aws.amazon.com/bedrock-agentcore/latest/APIReference/API_InvokeAgentRuntime.html>.

mod script;
pub mod signature;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::{AgentRuntime, AwsCredentials, OriginAuth, OriginConfig, Secret};
use crate::origin::SESSION_ID_HEADER;
use script::{Answer, Script};

/// The demo runtime's ARN (a made-up account).
pub const DEMO_RUNTIME_ARN: &str =
    "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agent_edge_demo-Xy12AbC3dE";
/// The demo's second runtime: same account, region and qualifier.
pub const DEMO_SECOND_RUNTIME_ARN: &str =
    "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agent_edge_demo_two-Qr34StU5vW";
/// Most sessions the demo keeps open at once.
pub const MAX_SESSIONS: usize = 10_000;
/// The demo credentials: shared by the demo origin and the gateway in front.
pub const DEMO_ACCESS_KEY_ID: &str = "AKIAAGENTEDGEDEMO001";
pub const DEMO_SECRET_ACCESS_KEY: &str = "agentEdgeDemoSecretKey/NotARealAwsKey0001";

/// The signing name the demo expects, as AgentCore does.
pub const SERVICE: &str = "bedrock-agentcore";
/// How far `x-amz-date` may be from the clock, as AWS allows.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// Largest request body read.
const MAX_BODY_BYTES: usize = 16 << 20;
/// Requests kept for [`DemoOrigin::requests`] (the most recent ones).
const RECORDED_REQUESTS: usize = 256;
/// Longest prompt quoted back, in words.
const QUOTED_WORDS: usize = 64;
const CORAL: &str = ":http://internal.amazon.com/coral/com.amazon.coral.service/";

/// What the demo origin accepts and how it answers.
#[derive(Debug, Clone)]
pub struct DemoOriginSettings {
    /// The runtime of [`DemoOrigin::gateway_vars`] (`AGENT_RUNTIME_ARN`).
    pub runtime_arn: String,
    /// The other runtimes it answers for, with the same qualifier.
    pub more_runtime_arns: Vec<String>,
    pub qualifier: String,
    pub region: String,
    pub credentials: AwsCredentials,
    /// Pause between two words of the streamed reply.
    pub word_delay: Duration,
}

impl DemoOriginSettings {
    /// [`DEMO_RUNTIME_ARN`] and [`DEMO_SECOND_RUNTIME_ARN`], qualifier
    /// `DEFAULT`, `us-east-1`, the demo credentials, 40 ms between words.
    pub fn demo() -> Self {
        DemoOriginSettings {
            runtime_arn: DEMO_RUNTIME_ARN.to_owned(),
            more_runtime_arns: vec![DEMO_SECOND_RUNTIME_ARN.to_owned()],
            qualifier: "DEFAULT".to_owned(),
            region: "us-east-1".to_owned(),
            credentials: AwsCredentials {
                access_key_id: DEMO_ACCESS_KEY_ID.to_owned(),
                secret_access_key: Secret::new(DEMO_SECRET_ACCESS_KEY),
                session_token: None,
            },
            word_delay: Duration::from_millis(40),
        }
    }

    /// Whether `arn` is one of its runtimes.
    fn knows(&self, arn: &str) -> bool {
        self.runtime_arn == arn || self.more_runtime_arns.iter().any(|a| a == arn)
    }
}

/// A session: its runtime and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub runtime_arn: String,
    pub session_id: String,
}

/// The open sessions and what each keeps, oldest first.
#[derive(Default)]
struct Sessions {
    memories: std::collections::HashMap<SessionKey, Vec<String>>,
    order: VecDeque<SessionKey>,
}

impl Sessions {
    /// Opens `key` if it is not open yet.
    fn open(&mut self, key: &SessionKey) -> &mut Vec<String> {
        if !self.memories.contains_key(key) {
            if self.order.len() >= MAX_SESSIONS {
                if let Some(oldest) = self.order.pop_front() {
                    self.memories.remove(&oldest);
                }
            }
            self.order.push_back(key.clone());
        }
        self.memories.entry(key.clone()).or_default()
    }

    /// Forgets `key`; whether it was open.
    fn stop(&mut self, key: &SessionKey) -> bool {
        self.order.retain(|k| k != key);
        self.memories.remove(key).is_some()
    }
}

/// How a streamed answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Sent to its last event (or its scripted error or cut).
    Sent,
    /// The caller closed the connection before the end.
    CallerLeft,
}

/// A streamed answer, noted when it ended.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    pub session_id: String,
    pub started: Instant,
    pub ended: Instant,
    pub end: StreamEnd,
}

/// One request as the demo origin received it (raw path and query).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    /// Origin-form: the raw path and query, as sent.
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When its head arrived.
    pub received: Instant,
}

impl RecordedRequest {
    /// Its session header, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.headers
            .get(SESSION_ID_HEADER)
            .and_then(|v| v.to_str().ok())
    }
}

/// A running demo origin. Dropping it (or [`DemoOrigin::shutdown`]) stops
/// the server and cuts its open connections.
pub struct DemoOrigin {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

struct State {
    settings: DemoOriginSettings,
    recorded: Mutex<VecDeque<RecordedRequest>>,
    streams: Mutex<VecDeque<StreamRecord>>,
    sessions: Mutex<Sessions>,
    request_counter: AtomicU64,
    /// `/status-then`'s failures so far, per status and session.
    failures: Mutex<HashMap<String, u64>>,
}

/// Serves the demo origin on `listener` until the returned handle is dropped.
pub async fn spawn(settings: DemoOriginSettings, listener: TcpListener) -> io::Result<DemoOrigin> {
    let addr = listener.local_addr()?;
    let state = Arc::new(State {
        settings,
        recorded: Mutex::new(VecDeque::new()),
        streams: Mutex::new(VecDeque::new()),
        sessions: Mutex::new(Sessions::default()),
        request_counter: AtomicU64::new(0),
        failures: Mutex::new(HashMap::new()),
    });
    let task = tokio::spawn(accept_loop(listener, state.clone()));
    Ok(DemoOrigin { addr, state, task })
}

impl DemoOrigin {
    /// `http://<addr>`, the value for `ORIGIN_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn settings(&self) -> &DemoOriginSettings {
        &self.state.settings
    }

    /// The gateway configuration that reaches this origin with SigV4.
    pub fn origin_config(&self) -> OriginConfig {
        let settings = &self.state.settings;
        let runtime = AgentRuntime::parse(&settings.runtime_arn, settings.qualifier.clone())
            .expect("the demo settings hold a valid runtime ARN");
        OriginConfig {
            base_url: self
                .base_url()
                .parse()
                .expect("a socket address is a valid URL"),
            runtime: Some(runtime),
            auth: OriginAuth::SigV4 {
                service: SERVICE.to_owned(),
                region: settings.region.clone(),
                credentials: settings.credentials.clone(),
            },
        }
    }

    /// The same, as the environment variables `agent-edge serve` reads.
    pub fn gateway_vars(&self) -> Vec<(&'static str, String)> {
        let settings = &self.state.settings;
        let credentials = &settings.credentials;
        let mut vars = vec![
            ("AGENT_RUNTIME_ARN", settings.runtime_arn.clone()),
            ("AGENT_QUALIFIER", settings.qualifier.clone()),
            ("ORIGIN_URL", self.base_url()),
            ("ORIGIN_AUTH", "sigv4".to_owned()),
            ("AWS_REGION", settings.region.clone()),
            ("AWS_ACCESS_KEY_ID", credentials.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY",
                credentials.secret_access_key.expose().to_owned(),
            ),
        ];
        if let Some(token) = &credentials.session_token {
            vars.push(("AWS_SESSION_TOKEN", token.expose().to_owned()));
        }
        vars
    }

    /// The most recent requests received (up to 256), oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let recorded = self
            .state
            .recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        recorded.iter().cloned().collect()
    }

    /// The most recent requests (up to 256) that carried `session_id`,
    /// oldest first.
    pub fn requests_of_session(&self, session_id: &str) -> Vec<RecordedRequest> {
        let mut requests = self.requests();
        requests.retain(|r| r.session_id() == Some(session_id));
        requests
    }

    /// Whether `request`'s SigV4 signature verifies now, as it is checked
    /// on arrival (its date within [`MAX_CLOCK_SKEW`] of the clock).
    pub fn signature_verifies(&self, request: &RecordedRequest) -> bool {
        let mut head = Request::new(()).into_parts().0;
        head.method = request.method.clone();
        head.uri = request.uri.clone();
        head.headers = request.headers.clone();
        signature::verify_signature(
            &self.state.settings,
            &head,
            &request.body,
            SystemTime::now(),
        )
        .is_ok()
    }

    /// Whether the session is open: invoked, and not stopped since.
    pub fn session_open(&self, runtime_arn: &str, session_id: &str) -> bool {
        let key = SessionKey {
            runtime_arn: runtime_arn.to_owned(),
            session_id: session_id.to_owned(),
        };
        self.state.sessions().memories.contains_key(&key)
    }

    /// The most recent streamed answers that have ended (up to 256),
    /// oldest first.
    pub fn streams(&self) -> Vec<StreamRecord> {
        let streams = self.state.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.iter().cloned().collect()
    }

    /// Stops the server and returns once its listener is closed and its
    /// connections are cut. Dropping the handle does the same without waiting.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for DemoOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    // Connections live in the set, so aborting this task drops the set and
    // aborts every open connection with it.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small SSE writes must not wait for a delayed ACK.
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            handle(state.clone(), request)
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Out of file descriptors and the like: back off, keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

type Body = UnsyncBoxBody<Bytes, io::Error>;

async fn handle(state: Arc<State>, request: Request<Incoming>) -> io::Result<Response<Body>> {
    let received = Instant::now();
    let now = SystemTime::now();
    let request_id = state.request_id();
    let (head, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let error = AwsError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ValidationException",
                "The request payload is too large or could not be read.",
            );
            return Ok(error.into_response());
        }
    };
    state.record(RecordedRequest {
        method: head.method.clone(),
        uri: head.uri.clone(),
        headers: head.headers.clone(),
        body: body.clone(),
        received,
    });
    let settings = &state.settings;
    let answer = match call(settings, &head, &body, now) {
        Ok(Call::Invoke(script, session)) => {
            if let Some(key) = &session {
                state.sessions().open(key);
            }
            script::answer(script, &state, &head, session, received).await
        }
        Ok(Call::Stop(key)) => state.stop(&key),
        Err(error) => Answer::Error(error),
    };
    let (mut parts, body) = match answer {
        Answer::Response(response) => response,
        Answer::Error(error) => error.into_response(),
        // An error from the service makes hyper close the connection.
        Answer::Reset => {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "demo reset before headers",
            ))
        }
    }
    .into_parts();
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        parts.headers.insert("x-amzn-requestid", id);
    }
    Ok(Response::from_parts(parts, body))
}

impl State {
    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `StopRuntimeSession`: 200 with the session header for an open
    /// session, which is forgotten; else 404, as AgentCore answers.
    fn stop(&self, key: &SessionKey) -> Answer {
        if !self.sessions().stop(key) {
            return Answer::Error(AwsError::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                "Session not found",
            ));
        }
        let mut response = Response::new(full(Bytes::new()));
        if let Ok(id) = HeaderValue::from_str(&key.session_id) {
            response.headers_mut().insert(SESSION_ID_HEADER, id);
        }
        Answer::Response(response)
    }

    fn record(&self, request: RecordedRequest) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        if recorded.len() == RECORDED_REQUESTS {
            recorded.pop_front();
        }
        recorded.push_back(request);
    }

    fn record_stream(&self, stream: StreamRecord) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if streams.len() == RECORDED_REQUESTS {
            streams.pop_front();
        }
        streams.push_back(stream);
    }

    /// Whether the request keyed `key` is one of the first `times`
    /// (counting it).
    fn fails(&self, key: String, times: u64) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a long `agent-edge dev` session forgets old sessions.
        if failures.len() >= 10_000 && !failures.contains_key(&key) {
            failures.clear();
        }
        let count = failures.entry(key).or_insert(0);
        if *count < times {
            *count += 1;
            true
        } else {
            false
        }
    }

    /// A UUID-shaped request id, unique per server.
    fn request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        format!("00000000-0000-4000-8000-{n:012x}")
    }
}

/// An error in AWS rest-json shape.
#[derive(Debug)]
struct AwsError {
    status: StatusCode,
    error_type: String,
    message: String,
    /// `Retry-After`, in seconds.
    retry_after: Option<u64>,
}

impl AwsError {
    fn new(status: StatusCode, error_type: impl Into<String>, message: impl Into<String>) -> Self {
        AwsError {
            status,
            error_type: error_type.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    fn forbidden(error_type: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, error_type, message)
    }

    fn into_response(self) -> Response<Body> {
        let body = json!({ "message": self.message }).to_string();
        let mut response = Response::new(full(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(value) = HeaderValue::from_str(&format!("{}{CORAL}", self.error_type)) {
            headers.insert("x-amzn-errortype", value);
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What a request asks for, once it passed steps 1 to 4 of the module doc.
enum Call {
    /// `InvokeAgentRuntime`: the script to answer with, and the session
    /// (none for the echoes, answered before any check).
    Invoke(Script, Option<SessionKey>),
    /// `StopRuntimeSession` of this session.
    Stop(SessionKey),
}

/// Steps 1 to 4 of the module doc.
fn call(
    settings: &DemoOriginSettings,
    head: &http::request::Parts,
    body: &Bytes,
    now: SystemTime,
) -> Result<Call, AwsError> {
    let route = head.uri.path().strip_prefix("/runtimes/").and_then(|rest| {
        let (segment, operation) = rest.split_once('/')?;
        let stop = match operation {
            "invocations" => false,
            "stopruntimesession" => true,
            _ => return None,
        };
        (!segment.is_empty()).then_some((segment, stop))
    });
    let Some((arn_segment, stop)) = route.filter(|_| head.method == Method::POST) else {
        return Err(AwsError::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        ));
    };

    let payload: Option<Value> = serde_json::from_slice(body).ok();
    let script = payload.as_ref().filter(|_| !stop).map(|payload| {
        let prompt = match payload.get("prompt") {
            Some(Value::String(prompt)) => prompt.clone(),
            _ => payload.to_string(),
        };
        Script::from_prompt(&prompt, settings.word_delay)
    });
    let script = match script {
        Some(script) if script.skips_authentication() => return Ok(Call::Invoke(script, None)),
        script => script,
    };

    signature::verify_signature(settings, head, body, now)?;

    let arn = percent_decode_str(arn_segment).decode_utf8_lossy();
    let qualifier = query_param(&head.uri, "qualifier").unwrap_or_else(|| "DEFAULT".to_owned());
    if !settings.knows(&arn) || qualifier != settings.qualifier {
        return Err(AwsError::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("No endpoint or agent found with qualifier '{qualifier}' for agent '{arn}'"),
        ));
    }

    let session_id = head
        .headers
        .get(SESSION_ID_HEADER)
        .and_then(|v| v.to_str().ok());
    let session_id = match session_id {
        Some(id) if (33..=256).contains(&id.chars().count()) => id.to_owned(),
        Some(id) => {
            let bound = if id.chars().count() < 33 {
                "length greater than or equal to 33"
            } else {
                "length less than or equal to 256"
            };
            return Err(validation(format!(
                "1 validation error detected: Value at 'runtimeSessionId' failed to satisfy constraint: Member must have {bound}"
            )));
        }
        None => {
            return Err(validation(
                "1 validation error detected: Value null at 'runtimeSessionId' failed to satisfy constraint: Member must not be null",
            ))
        }
    };
    let key = SessionKey {
        runtime_arn: arn.into_owned(),
        session_id,
    };
    if stop {
        return Ok(Call::Stop(key));
    }
    let script = script.ok_or_else(|| validation("The payload is not valid JSON."))?;
    Ok(Call::Invoke(script, Some(key)))
}

fn validation(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode_str(key).decode_utf8_lossy() == name)
            .then(|| percent_decode_str(value).decode_utf8_lossy().into_owned())
    })
}

#[cfg(test)]
mod test_support {
    use super::*;
    use crate::origin::{build_request, Invocation};

    pub(super) const SESSION: &str = "demo-session-0123456789abcdef0123456789";

    pub(super) async fn start(settings: DemoOriginSettings) -> DemoOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        spawn(settings, listener).await.unwrap()
    }

    pub(super) fn fast() -> DemoOriginSettings {
        DemoOriginSettings {
            word_delay: Duration::from_millis(1),
            ..DemoOriginSettings::demo()
        }
    }

    pub(super) fn signed(config: &OriginConfig, payload: &str, at: SystemTime) -> Request<Bytes> {
        build_request(
            config,
            Invocation {
                payload: Bytes::from(payload.to_owned()),
                session_id: SESSION,
                user_id: None,
                bearer_token: None,
            },
            at,
        )
        .unwrap()
    }

    /// A prompt's payload, signed now, sent to `origin`.
    pub(super) async fn ask(origin: &DemoOrigin, payload: &str) -> reqwest::Response {
        send(signed(&origin.origin_config(), payload, SystemTime::now())).await
    }

    pub(super) async fn send(request: Request<Bytes>) -> reqwest::Response {
        let request = reqwest::Request::try_from(request).unwrap();
        reqwest::Client::new().execute(request).await.unwrap()
    }

    pub(super) async fn rejection(response: reqwest::Response) -> (u16, String, String) {
        let status = response.status().as_u16();
        let error_type = response.headers()["x-amzn-errortype"]
            .to_str()
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        let message = body["message"].as_str().unwrap().to_owned();
        (status, error_type, message)
    }

    pub(super) fn data_lines(body: &str) -> Vec<Value> {
        assert!(body.ends_with("\n\n"), "{body:?}");
        body.split_terminator("\n\n")
            .map(|event| serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::origin::{build_request, Invocation};

    #[tokio::test]
    async fn signed_request_streams_strands_events() {
        let origin = start(fast()).await;
        let response = send(signed(
            &origin.origin_config(),
            r#"{"prompt":"hello there, agent"}"#,
            SystemTime::now(),
        ))
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/event-stream; charset=utf-8"
        );
        assert_eq!(response.headers()[SESSION_ID_HEADER], SESSION);
        let body = response.text().await.unwrap();
        assert!(body.starts_with(
            "data: {\"event\": {\"messageStart\": {\"role\": \"assistant\"}}}\n\n\
             data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \"You\"}, \"contentBlockIndex\": 0}}}\n\n\
             data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \" said:\"}, \"contentBlockIndex\": 0}}}\n\n"
        ), "{body}");
        assert!(
            body.contains(
                "data: {\"event\": {\"contentBlockStop\": {\"contentBlockIndex\": 0}}}\n\n\
             data: {\"event\": {\"messageStop\": {\"stopReason\": \"end_turn\"}}}\n\n\
             data: {\"event\": {\"metadata\": {\"usage\": {\"inputTokens\": 3, \"outputTokens\": "
            ),
            "{body}"
        );

        let events = data_lines(&body);
        let text: String = events
            .iter()
            .filter_map(|e| e["event"]["contentBlockDelta"]["delta"]["text"].as_str())
            .collect();
        assert!(
            text.starts_with("You said: \"hello there, agent\"."),
            "{text}"
        );
        let deltas = events.len() - 4;
        assert_eq!(deltas, text.split(' ').count());
        let usage = &events.last().unwrap()["event"]["metadata"]["usage"];
        assert_eq!(usage["outputTokens"], deltas);
        assert_eq!(usage["totalTokens"], deltas + 3);
        assert!(events.last().unwrap()["event"]["metadata"]["metrics"]["latencyMs"].is_u64());

        let recorded = origin.requests();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].method, Method::POST);
        assert_eq!(
            recorded[0].uri.to_string(),
            "/runtimes/arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fagent_edge_demo-Xy12AbC3dE/invocations?qualifier=DEFAULT"
        );
        assert_eq!(recorded[0].body, r#"{"prompt":"hello there, agent"}"#);
    }

    #[tokio::test]
    async fn other_arn_or_qualifier_is_not_found() {
        let origin = start(fast()).await;
        let mut config = origin.origin_config();
        config.runtime = Some(
            AgentRuntime::parse(
                "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/other-Zz99",
                "DEFAULT".into(),
            )
            .unwrap(),
        );
        let (status, error_type, _) =
            rejection(send(signed(&config, "{}", SystemTime::now())).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (404, "ResourceNotFoundException")
        );

        let mut config = origin.origin_config();
        config.runtime.as_mut().unwrap().qualifier = "prod".into();
        let (status, error_type, _) =
            rejection(send(signed(&config, "{}", SystemTime::now())).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (404, "ResourceNotFoundException")
        );
    }

    #[tokio::test]
    async fn short_session_id_is_a_validation_error() {
        let origin = start(fast()).await;
        let request = build_request(
            &origin.origin_config(),
            Invocation {
                payload: Bytes::from_static(b"{}"),
                session_id: "too-short",
                user_id: None,
                bearer_token: None,
            },
            SystemTime::now(),
        )
        .unwrap();
        let (status, error_type, message) = rejection(send(request).await).await;
        assert_eq!((status, error_type.as_str()), (400, "ValidationException"));
        assert!(message.contains("runtimeSessionId"), "{message}");
    }

    #[tokio::test]
    async fn unknown_route_is_unknown_operation() {
        let origin = start(fast()).await;
        let response = reqwest::get(format!("{}/ping", origin.base_url()))
            .await
            .unwrap();
        let (status, error_type, _) = rejection(response).await;
        assert_eq!(
            (status, error_type.as_str()),
            (404, "UnknownOperationException")
        );
    }

    /// The demo's configuration for its runtime `arn`.
    fn runtime(origin: &DemoOrigin, arn: &str) -> OriginConfig {
        let mut config = origin.origin_config();
        config.runtime = Some(AgentRuntime::parse(arn, "DEFAULT".into()).unwrap());
        config
    }

    async fn stop(config: &OriginConfig, session: &str) -> reqwest::Response {
        let request = crate::origin::build_stop_request(config, session, None, SystemTime::now())
            .unwrap()
            .expect("a runtime");
        send(request).await
    }

    /// The text of a streamed answer to `prompt` in `session`.
    async fn say(config: &OriginConfig, session: &str, prompt: &str) -> String {
        let request = build_request(
            config,
            Invocation {
                payload: Bytes::from(json!({ "prompt": prompt }).to_string()),
                session_id: session,
                user_id: None,
                bearer_token: None,
            },
            SystemTime::now(),
        )
        .unwrap();
        let response = send(request).await;
        assert_eq!(response.status(), 200);
        data_lines(&response.text().await.unwrap())
            .iter()
            .filter_map(|e| e["event"]["contentBlockDelta"]["delta"]["text"].as_str())
            .collect()
    }

    #[tokio::test]
    async fn sessions_remember_per_runtime_until_stopped() {
        let origin = start(fast()).await;
        let first = runtime(&origin, DEMO_RUNTIME_ARN);
        let second = runtime(&origin, DEMO_SECOND_RUNTIME_ARN);
        let other = "demo-session-another-0123456789abcdef01";
        assert_eq!(say(&first, SESSION, "/recall").await, "I remember nothing.");
        assert_eq!(
            say(&first, SESSION, "/remember the blue door").await,
            "I will remember: the blue door."
        );
        say(&first, SESSION, "/remember 42").await;
        assert_eq!(
            say(&first, SESSION, "/recall").await,
            "I remember: the blue door, 42."
        );
        // Another session, or the same id on the other runtime: another memory.
        assert_eq!(say(&first, other, "/recall").await, "I remember nothing.");
        assert_eq!(
            say(&second, SESSION, "/recall").await,
            "I remember nothing."
        );
        assert!(origin.session_open(DEMO_SECOND_RUNTIME_ARN, SESSION));

        let stopped = stop(&first, SESSION).await;
        assert_eq!(stopped.status(), 200);
        assert_eq!(stopped.headers()[SESSION_ID_HEADER], SESSION);
        assert_eq!(stopped.text().await.unwrap(), "");
        assert!(!origin.session_open(DEMO_RUNTIME_ARN, SESSION));
        assert!(origin.session_open(DEMO_SECOND_RUNTIME_ARN, SESSION));
        let recorded = origin.requests();
        let last = recorded.last().unwrap();
        assert_eq!(
            last.uri.to_string(),
            "/runtimes/arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fagent_edge_demo-Xy12AbC3dE/stopruntimesession?qualifier=DEFAULT"
        );
        // Stopped: unknown now, and a new invocation starts it afresh.
        let (status, error_type, _) = rejection(stop(&first, SESSION).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (404, "ResourceNotFoundException")
        );
        assert_eq!(say(&first, SESSION, "/recall").await, "I remember nothing.");
    }

    #[tokio::test]
    async fn stopping_needs_a_signature_and_a_known_runtime() {
        let origin = start(fast()).await;
        let (status, error_type, _) = rejection(stop(&origin.origin_config(), SESSION).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (404, "ResourceNotFoundException"),
            "never invoked"
        );
        let mut forged = origin.origin_config();
        if let OriginAuth::SigV4 { credentials, .. } = &mut forged.auth {
            credentials.secret_access_key = Secret::new("not-the-demo-secret");
        }
        let (status, _, _) = rejection(stop(&forged, SESSION).await).await;
        assert_eq!(status, 403);
        let unknown = runtime(
            &origin,
            "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/other-Zz99",
        );
        let (status, error_type, _) = rejection(stop(&unknown, SESSION).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (404, "ResourceNotFoundException")
        );
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_server() {
        let origin = start(fast()).await;
        let url = origin.base_url();
        origin.shutdown().await;
        assert!(reqwest::get(url).await.is_err());
    }

    #[test]
    fn gateway_vars_name_the_demo() {
        let settings = DemoOriginSettings::demo();
        assert!(AgentRuntime::parse(&settings.runtime_arn, settings.qualifier.clone()).is_ok());
        assert!(!format!("{settings:?}").contains(DEMO_SECRET_ACCESS_KEY));
    }
}
