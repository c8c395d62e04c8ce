//! The built-in demo agent: a local stand-in for Amazon Bedrock AgentCore
//! Runtime, speaking its `InvokeAgentRuntime` protocol, for `agent-edge dev`
//! and for tests.
//!
//! Per request, in AgentCore's order (authenticate, then find the resource,
//! then validate):
//! 1. the route `POST /runtimes/{url-encoded ARN}/invocations?qualifier=Q`
//!    (else 404 `UnknownOperationException`);
//! 2. the SigV4 signature, recomputed with the demo credentials from the
//!    received method, path, query, signed headers and body through
//!    [`crate::origin::sign`]; `x-amz-content-sha256` must be signed and equal
//!    the body's SHA-256, `x-amz-date` must be within 5 minutes of the clock
//!    (else 403 `InvalidSignatureException`, `UnrecognizedClientException`,
//!    `IncompleteSignatureException` or `MissingAuthenticationTokenException`);
//! 3. the ARN and qualifier (else 404 `ResourceNotFoundException`);
//! 4. the `X-Amzn-Bedrock-AgentCore-Runtime-Session-Id` header, 33 to 256
//!    characters (else 400 `ValidationException`).
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
//!
//! Each streamed answer is noted when it ends ([`DemoOrigin::streams`]):
//! its session id, and whether it was sent to the end or the caller went
//! away first (what a gateway must do when its own client leaves).
//!
//! Native only (tokio, hyper). It reads the clock; the core does not.
//!
//! AgentCore `InvokeAgentRuntime`,
//! <https://docs.aws.amazon.com/bedrock-agentcore/latest/APIReference/API_InvokeAgentRuntime.html>.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::{AgentRuntime, AwsCredentials, OriginAuth, OriginConfig, Secret};
use crate::origin::{self, SigningInputs, SESSION_ID_HEADER};

/// The demo runtime's ARN (a made-up account).
pub const DEMO_RUNTIME_ARN: &str =
    "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/agent_edge_demo-Xy12AbC3dE";
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
    pub runtime_arn: String,
    pub qualifier: String,
    pub region: String,
    pub credentials: AwsCredentials,
    /// Pause between two words of the streamed reply.
    pub word_delay: Duration,
}

impl DemoOriginSettings {
    /// [`DEMO_RUNTIME_ARN`], qualifier `DEFAULT`, `us-east-1`, the demo
    /// credentials, 40 ms between words.
    pub fn demo() -> Self {
        DemoOriginSettings {
            runtime_arn: DEMO_RUNTIME_ARN.to_owned(),
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
    request_counter: AtomicU64,
}

/// Serves the demo origin on `listener` until the returned handle is dropped.
pub async fn spawn(settings: DemoOriginSettings, listener: TcpListener) -> io::Result<DemoOrigin> {
    let addr = listener.local_addr()?;
    let state = Arc::new(State {
        settings,
        recorded: Mutex::new(VecDeque::new()),
        streams: Mutex::new(VecDeque::new()),
        request_counter: AtomicU64::new(0),
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

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
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
    });
    let response = match invoke(&state, &head, &body, now, received) {
        Ok(answer) => answer,
        Err(error) => error.into_response(),
    };
    let (mut parts, body) = response.into_parts();
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        parts.headers.insert("x-amzn-requestid", id);
    }
    Ok(Response::from_parts(parts, body))
}

impl State {
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
    error_type: &'static str,
    message: String,
}

impl AwsError {
    fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        AwsError {
            status,
            error_type,
            message: message.into(),
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
        response
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Steps 1 to 4 of the module doc, then the answer.
fn invoke(
    state: &Arc<State>,
    head: &http::request::Parts,
    body: &Bytes,
    now: SystemTime,
    received: Instant,
) -> Result<Response<Body>, AwsError> {
    let settings = &state.settings;
    let arn_segment = head
        .uri
        .path()
        .strip_prefix("/runtimes/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
        .filter(|segment| !segment.is_empty() && !segment.contains('/'));
    let Some(arn_segment) = arn_segment.filter(|_| head.method == Method::POST) else {
        return Err(AwsError::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            "Unknown operation",
        ));
    };

    verify_signature(settings, head, body, now)?;

    let arn = percent_decode_str(arn_segment).decode_utf8_lossy();
    let qualifier = query_param(&head.uri, "qualifier").unwrap_or_else(|| "DEFAULT".to_owned());
    if arn != settings.runtime_arn || qualifier != settings.qualifier {
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

    let payload: Value =
        serde_json::from_slice(body).map_err(|_| validation("The payload is not valid JSON."))?;
    let prompt = match payload.get("prompt") {
        Some(Value::String(prompt)) => prompt.clone(),
        _ => payload.to_string(),
    };
    let script = Script::from_prompt(&prompt, settings.word_delay);

    let session_header = HeaderValue::from_str(&session_id).expect("came from a header");
    let mut response = match script {
        Script::OriginError(status) => {
            return Err(echo_secrets_error(settings, head, status));
        }
        Script::Json(text) => {
            let mut response = Response::new(full(Value::String(text).to_string()));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Script::Html => {
            let mut response = Response::new(full("<!doctype html><title>Sign in</title>"));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Script::Stream(plan) => {
            let watch = StreamWatch {
                state: state.clone(),
                session_id: session_id.clone(),
                started: received,
                sent: Default::default(),
            };
            let mut response = Response::new(sse_body(plan, received, watch));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            );
            response
        }
    };
    response
        .headers_mut()
        .insert(HeaderName::from_static(SESSION_ID_HEADER), session_header);
    Ok(response)
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

const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// Recomputes the request's SigV4 signature with the demo credentials.
fn verify_signature(
    settings: &DemoOriginSettings,
    head: &http::request::Parts,
    body: &Bytes,
    now: SystemTime,
) -> Result<(), AwsError> {
    let incomplete = |message: &str| AwsError::forbidden("IncompleteSignatureException", message);
    let Some(authorization) = head.headers.get(AUTHORIZATION) else {
        return Err(AwsError::forbidden(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let authorization = authorization
        .to_str()
        .map_err(|_| incomplete("The Authorization header is not text."))?;
    let auth = parse_authorization(authorization).ok_or_else(|| {
        incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters \
             with the AWS4-HMAC-SHA256 algorithm.",
        )
    })?;

    let credentials = &settings.credentials;
    if auth.access_key_id != credentials.access_key_id {
        return Err(AwsError::forbidden(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }
    if auth.region != settings.region {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to a valid region, not '{}'.",
                auth.region
            ),
        ));
    }
    if auth.service != SERVICE {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: '{SERVICE}'."),
        ));
    }

    let amz_date = head
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."))?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        incomplete("The X-Amz-Date header is not in the form YYYYMMDD'T'HHMMSS'Z'.")
    })?;
    if !amz_date.starts_with(auth.date) {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            "The credential scope date does not match X-Amz-Date.",
        ));
    }
    if signed_at + MAX_CLOCK_SKEW < now {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
                format_amz_date(now - MAX_CLOCK_SKEW),
                format_amz_date(now)
            ),
        ));
    }
    if signed_at > now + MAX_CLOCK_SKEW {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
                format_amz_date(now + MAX_CLOCK_SKEW),
                format_amz_date(now)
            ),
        ));
    }

    for required in ["host", "x-amz-date", "x-amz-content-sha256"] {
        if !auth.signed_headers.contains(&required) {
            return Err(AwsError::forbidden(
                "InvalidSignatureException",
                format!("The demo origin requires '{required}' to be a signed header (the body hash must be signed)."),
            ));
        }
    }
    for name in &auth.signed_headers {
        if !head.headers.contains_key(*name) {
            return Err(incomplete(&format!(
                "The signed header '{name}' is missing from the request."
            )));
        }
    }
    let body_hash = hex::encode(Sha256::digest(body));
    if head.headers["x-amz-content-sha256"] != body_hash.as_str() {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    let signs_token = auth.signed_headers.contains(&"x-amz-security-token");
    let sent_token = head
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    if sent_token != credentials.session_token.as_ref().map(Secret::expose) {
        return Err(AwsError::forbidden(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    }

    // Rebuild the request as the client had it before signing: its signed
    // headers, minus the ones the signer adds again from time, body and
    // credentials.
    let host = head.headers[HOST]
        .to_str()
        .map_err(|_| incomplete("The Host header is not text."))?;
    let path_and_query = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: Uri = format!("http://{host}{path_and_query}")
        .parse()
        .map_err(|_| incomplete("The Host header is not a valid authority."))?;
    let mut rebuilt = Request::new(body.clone());
    *rebuilt.method_mut() = head.method.clone();
    *rebuilt.uri_mut() = uri;
    for name in &auth.signed_headers {
        if matches!(
            *name,
            "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
        ) {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| incomplete("SignedHeaders lists an invalid header name."))?;
        for value in head.headers.get_all(&name) {
            rebuilt.headers_mut().append(name.clone(), value.clone());
        }
    }
    let inputs = SigningInputs {
        credentials,
        region: &settings.region,
        service: SERVICE,
        time: signed_at,
        sign_body: true,
        normalize_path: true,
        sign_session_token: signs_token,
    };
    origin::sign(&mut rebuilt, &inputs)
        .map_err(|_| AwsError::forbidden("InvalidSignatureException", SIGNATURE_MISMATCH))?;
    let expected = rebuilt.headers()[AUTHORIZATION].as_bytes();
    if !constant_time_eq(expected, authorization.as_bytes()) {
        return Err(AwsError::forbidden(
            "InvalidSignatureException",
            SIGNATURE_MISMATCH,
        ));
    }
    Ok(())
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
}

/// `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(val),
            "SignedHeaders" => signed_headers = Some(val),
            "Signature" => signature = Some(val),
            _ => return None,
        }
    }
    signature.filter(|s| s.len() == 64)?;
    let mut scope = credential?.split('/');
    let parsed = Authorization {
        access_key_id: scope.next()?,
        date: scope.next()?,
        region: scope.next()?,
        service: scope.next()?,
        signed_headers: signed_headers?.split(';').collect(),
    };
    (scope.next()? == "aws4_request" && scope.next().is_none()).then_some(parsed)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `YYYYMMDDTHHMMSSZ` to a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    if bytes.len() != 16 || bytes[8] != b'T' || bytes[15] != b'Z' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (hour, minute, second) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

fn format_amz_date(time: SystemTime) -> String {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's civil calendar algorithms: a date crate for two functions
// is not worth a dependency.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// What a prompt asks the demo to do.
#[derive(Debug, PartialEq)]
enum Script {
    Stream(Plan),
    Json(String),
    Html,
    OriginError(StatusCode),
}

/// A streamed answer: the deltas, their spacing, and how it ends.
#[derive(Debug, PartialEq)]
struct Plan {
    deltas: Vec<String>,
    delay: Duration,
    input_tokens: usize,
    end: End,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// `contentBlockStop`, `messageStop`, `metadata`.
    Complete,
    /// The SDK's error event, then the end of the body.
    SdkError,
    /// The connection is cut.
    Abort,
}

impl Script {
    fn from_prompt(prompt: &str, word_delay: Duration) -> Script {
        let words: Vec<&str> = prompt.split_whitespace().collect();
        let input_tokens = words.len().max(1);
        let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
        let counted_in = |n: u64, per_delta: u64, delay: Duration, end: End| {
            let numbers: Vec<u64> = (1..=n.min(100_000)).collect();
            let per_delta = usize::try_from(per_delta.clamp(1, 1000)).unwrap_or(1);
            Script::Stream(Plan {
                deltas: numbers
                    .chunks(per_delta)
                    .map(|group| {
                        group
                            .iter()
                            .map(|i| {
                                if *i == 1 {
                                    "1".to_owned()
                                } else {
                                    format!(" {i}")
                                }
                            })
                            .collect()
                    })
                    .collect(),
                delay,
                input_tokens,
                end,
            })
        };
        let counted = |n: u64, delay: Duration, end: End| counted_in(n, 1, delay, end);
        match words.first().copied() {
            Some("/events") if number(1).is_some() => {
                let delay = number(2)
                    .map(|ms| Duration::from_millis(ms.min(60_000)))
                    .unwrap_or(word_delay);
                let per_delta = number(3).unwrap_or(1);
                return counted_in(number(1).unwrap_or(0), per_delta, delay, End::Complete);
            }
            Some("/error-after") if number(1).is_some() => {
                return counted(number(1).unwrap_or(0), word_delay, End::SdkError)
            }
            Some("/abort-after") if number(1).is_some() => {
                return counted(number(1).unwrap_or(0), word_delay, End::Abort)
            }
            Some("/origin-error") => {
                let status = number(1)
                    .and_then(|n| u16::try_from(n).ok())
                    .and_then(|n| StatusCode::from_u16(n).ok())
                    .filter(|s| s.is_client_error() || s.is_server_error())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return Script::OriginError(status);
            }
            Some("/json") => return Script::Json(reply_text(&words[1..])),
            Some("/html") => return Script::Html,
            _ => {}
        }
        let reply = reply_text(&words);
        let deltas = reply
            .split(' ')
            .enumerate()
            .map(|(i, word)| {
                if i == 0 {
                    word.to_owned()
                } else {
                    format!(" {word}")
                }
            })
            .collect();
        Script::Stream(Plan {
            deltas,
            delay: word_delay,
            input_tokens,
            end: End::Complete,
        })
    }
}

fn reply_text(prompt_words: &[&str]) -> String {
    let mut quoted = prompt_words
        .iter()
        .take(QUOTED_WORDS)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if prompt_words.len() > QUOTED_WORDS {
        quoted.push_str(" …");
    }
    format!(
        "You said: \"{quoted}\". This answer comes from the agent-edge demo agent, \
         streamed one word at a time after it checked the request's SigV4 signature and body hash."
    )
}

/// Notes how a streamed answer ended when its body is dropped: by hyper
/// after the last frame, or earlier when the caller hangs up.
struct StreamWatch {
    state: Arc<State>,
    session_id: String,
    started: Instant,
    sent: std::sync::atomic::AtomicBool,
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        self.state.record_stream(StreamRecord {
            session_id: std::mem::take(&mut self.session_id),
            started: self.started,
            ended: Instant::now(),
            end: if self.sent.load(Ordering::Relaxed) {
                StreamEnd::Sent
            } else {
                StreamEnd::CallerLeft
            },
        });
    }
}

/// The SSE body of a [`Plan`], produced lazily so the delays are real.
fn sse_body(plan: Plan, received: Instant, watch: StreamWatch) -> Body {
    enum Step {
        Start,
        Delta(usize),
        Closing,
        Done,
    }
    let plan = Arc::new(plan);
    // Owned by the body: dropped with it, at the end or when the caller leaves.
    let watch = Arc::new(watch);
    let stream = futures::stream::unfold(Step::Start, move |step| {
        let plan = plan.clone();
        let watch = watch.clone();
        async move {
            let (bytes, next) = match step {
                Step::Start => (
                    sse_event(&json!({"event": {"messageStart": {"role": "assistant"}}})),
                    if plan.deltas.is_empty() {
                        Step::Closing
                    } else {
                        Step::Delta(0)
                    },
                ),
                Step::Delta(i) => {
                    if i > 0 {
                        tokio::time::sleep(plan.delay).await;
                    }
                    let event = json!({"event": {"contentBlockDelta": {
                        "delta": {"text": plan.deltas[i]}, "contentBlockIndex": 0}}});
                    let next = if i + 1 < plan.deltas.len() {
                        Step::Delta(i + 1)
                    } else {
                        Step::Closing
                    };
                    (sse_event(&event), next)
                }
                Step::Closing => {
                    // A gap before the end, as between words; it also lets
                    // the server flush what came before an abort.
                    tokio::time::sleep(plan.delay).await;
                    watch.sent.store(true, Ordering::Relaxed);
                    match plan.end {
                        End::Complete => {
                            let output_tokens = plan.deltas.len();
                            let latency_ms = received.elapsed().as_millis() as u64;
                            let mut closing = sse_event(
                                &json!({"event": {"contentBlockStop": {"contentBlockIndex": 0}}}),
                            );
                            closing.push_str(&sse_event(
                                &json!({"event": {"messageStop": {"stopReason": "end_turn"}}}),
                            ));
                            closing.push_str(&sse_event(&json!({"event": {"metadata": {
                                "usage": {
                                    "inputTokens": plan.input_tokens,
                                    "outputTokens": output_tokens,
                                    "totalTokens": plan.input_tokens + output_tokens
                                },
                                "metrics": {"latencyMs": latency_ms}
                            }}})));
                            (closing, Step::Done)
                        }
                        End::SdkError => (
                            sse_event(&json!({
                                "error": "demo failure requested by the prompt",
                                "error_type": "RuntimeError",
                                "message": "An error occurred during streaming"
                            })),
                            Step::Done,
                        ),
                        End::Abort => {
                            let cut =
                                io::Error::new(io::ErrorKind::ConnectionAborted, "demo abort");
                            return Some((Err(cut), Step::Done));
                        }
                    }
                }
                Step::Done => return None,
            };
            Some((Ok(Frame::data(Bytes::from(bytes))), next))
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

/// `data: <json>\n\n`, the JSON as Python's `json.dumps(obj, ensure_ascii=False)`.
fn sse_event(value: &Value) -> String {
    format!("data: {}\n\n", python_json(value))
}

/// JSON with Python's default separators, `", "` and `": "`. serde_json only
/// ships compact and pretty formatters, hence this small one. Escaping is the
/// same as Python's with `ensure_ascii=False`: control characters, `"` and `\`.
pub fn python_json(value: &Value) -> String {
    struct PythonFormatter;
    impl serde_json::ser::Formatter for PythonFormatter {
        fn begin_array_value<W: ?Sized + io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }
        fn begin_object_key<W: ?Sized + io::Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        }
        fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
            w.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    serde::Serialize::serialize(value, &mut serializer).expect("a Value always serializes");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// An AWS error body echoing everything secret the demo knows, for tests
/// that the gateway never relays an origin's error body.
fn echo_secrets_error(
    settings: &DemoOriginSettings,
    head: &http::request::Parts,
    status: StatusCode,
) -> AwsError {
    let credentials = &settings.credentials;
    let account = settings.runtime_arn.split(':').nth(4).unwrap_or_default();
    let authorization = head
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let error_type = match status.as_u16() {
        400 => "ValidationException",
        402 => "ServiceQuotaExceededException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        409 => "RetryableConflictException",
        424 => "RuntimeClientError",
        429 => "ThrottlingException",
        _ => "InternalServerException",
    };
    AwsError::new(
        status,
        error_type,
        format!(
            "Demo failure for agent '{}' in account {account}: signed by {} with secret {} \
             and session token {}; Authorization: {authorization}",
            settings.runtime_arn,
            credentials.access_key_id,
            credentials.secret_access_key.expose(),
            credentials
                .session_token
                .as_ref()
                .map_or("(none)", Secret::expose),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::{build_request, Invocation};

    const SESSION: &str = "demo-session-0123456789abcdef0123456789";

    async fn start(settings: DemoOriginSettings) -> DemoOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        spawn(settings, listener).await.unwrap()
    }

    fn fast() -> DemoOriginSettings {
        DemoOriginSettings {
            word_delay: Duration::from_millis(1),
            ..DemoOriginSettings::demo()
        }
    }

    fn signed(config: &OriginConfig, payload: &str, at: SystemTime) -> Request<Bytes> {
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

    async fn send(request: Request<Bytes>) -> reqwest::Response {
        let request = reqwest::Request::try_from(request).unwrap();
        reqwest::Client::new().execute(request).await.unwrap()
    }

    async fn rejection(response: reqwest::Response) -> (u16, String, String) {
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

    fn data_lines(body: &str) -> Vec<Value> {
        assert!(body.ends_with("\n\n"), "{body:?}");
        body.split_terminator("\n\n")
            .map(|event| serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap())
            .collect()
    }

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
    async fn tampered_body_is_rejected() {
        let origin = start(fast()).await;
        let mut request = signed(
            &origin.origin_config(),
            r#"{"prompt":"a"}"#,
            SystemTime::now(),
        );
        *request.body_mut() = Bytes::from_static(br#"{"prompt":"b"}"#);
        let (status, error_type, message) = rejection(send(request).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (403, "InvalidSignatureException")
        );
        assert!(message.contains("x-amz-content-sha256"), "{message}");
    }

    #[tokio::test]
    async fn tampered_body_with_matching_hash_is_rejected() {
        // Body and hash header both replaced: only the signature catches it.
        let origin = start(fast()).await;
        let mut request = signed(
            &origin.origin_config(),
            r#"{"prompt":"a"}"#,
            SystemTime::now(),
        );
        let forged = Bytes::from_static(br#"{"prompt":"b"}"#);
        let hash = hex::encode(Sha256::digest(&forged));
        request
            .headers_mut()
            .insert("x-amz-content-sha256", hash.parse().unwrap());
        *request.body_mut() = forged;
        let (status, error_type, message) = rejection(send(request).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (403, "InvalidSignatureException")
        );
        assert_eq!(message, SIGNATURE_MISMATCH);
    }

    #[tokio::test]
    async fn wrong_secret_key_is_rejected() {
        let origin = start(fast()).await;
        let mut config = origin.origin_config();
        if let OriginAuth::SigV4 { credentials, .. } = &mut config.auth {
            credentials.secret_access_key = Secret::new("not-the-demo-secret");
        }
        let (status, error_type, message) =
            rejection(send(signed(&config, "{}", SystemTime::now())).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (403, "InvalidSignatureException")
        );
        assert_eq!(message, SIGNATURE_MISMATCH);
    }

    #[tokio::test]
    async fn unknown_access_key_is_rejected() {
        let origin = start(fast()).await;
        let mut config = origin.origin_config();
        if let OriginAuth::SigV4 { credentials, .. } = &mut config.auth {
            credentials.access_key_id = "AKIAOTHER".into();
        }
        let (status, error_type, _) =
            rejection(send(signed(&config, "{}", SystemTime::now())).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (403, "UnrecognizedClientException")
        );
    }

    #[tokio::test]
    async fn unsigned_body_hash_is_rejected() {
        let origin = start(fast()).await;
        let config = origin.origin_config();
        let OriginAuth::SigV4 {
            credentials,
            region,
            service,
        } = &config.auth
        else {
            unreachable!()
        };
        let mut request = signed(
            &OriginConfig {
                auth: OriginAuth::None,
                ..config.clone()
            },
            "{}",
            SystemTime::now(),
        );
        let inputs = SigningInputs {
            sign_body: false,
            ..SigningInputs::for_gateway(credentials, region, service, SystemTime::now())
        };
        origin::sign(&mut request, &inputs).unwrap();
        assert!(!request.headers().contains_key("x-amz-content-sha256"));
        let (status, error_type, message) = rejection(send(request).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (403, "InvalidSignatureException")
        );
        assert!(
            message.contains("'x-amz-content-sha256' to be a signed header"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn stale_and_future_dates_are_rejected() {
        let origin = start(fast()).await;
        let config = origin.origin_config();
        let stale = SystemTime::now() - Duration::from_secs(6 * 60);
        let (status, error_type, message) =
            rejection(send(signed(&config, "{}", stale)).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (403, "InvalidSignatureException")
        );
        assert!(message.starts_with("Signature expired: "), "{message}");

        let future = SystemTime::now() + Duration::from_secs(6 * 60);
        let (status, _, message) = rejection(send(signed(&config, "{}", future)).await).await;
        assert_eq!(status, 403);
        assert!(
            message.starts_with("Signature not yet current: "),
            "{message}"
        );

        let recent = SystemTime::now() - Duration::from_secs(4 * 60);
        assert_eq!(send(signed(&config, "{}", recent)).await.status(), 200);
    }

    #[tokio::test]
    async fn missing_authorization_is_rejected() {
        let origin = start(fast()).await;
        let config = OriginConfig {
            auth: OriginAuth::None,
            ..origin.origin_config()
        };
        let (status, error_type, _) =
            rejection(send(signed(&config, "{}", SystemTime::now())).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (403, "MissingAuthenticationTokenException")
        );
    }

    #[tokio::test]
    async fn session_token_must_match() {
        let mut settings = fast();
        settings.credentials.session_token = Some(Secret::new("demo-session-token"));
        let origin = start(settings).await;
        let config = origin.origin_config();
        assert_eq!(
            send(signed(&config, "{}", SystemTime::now()))
                .await
                .status(),
            200
        );

        let mut without = config.clone();
        if let OriginAuth::SigV4 { credentials, .. } = &mut without.auth {
            credentials.session_token = None;
        }
        let (status, error_type, _) =
            rejection(send(signed(&without, "{}", SystemTime::now())).await).await;
        assert_eq!(
            (status, error_type.as_str()),
            (403, "UnrecognizedClientException")
        );
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

    #[tokio::test]
    async fn events_prompt_streams_numbered_deltas() {
        let origin = start(fast()).await;
        let body = send(signed(
            &origin.origin_config(),
            r#"{"prompt":"/events 5 1"}"#,
            SystemTime::now(),
        ))
        .await
        .text()
        .await
        .unwrap();
        let events = data_lines(&body);
        let texts: Vec<&str> = events
            .iter()
            .filter_map(|e| e["event"]["contentBlockDelta"]["delta"]["text"].as_str())
            .collect();
        assert_eq!(texts, ["1", " 2", " 3", " 4", " 5"]);
        assert_eq!(events.len(), 9);
    }

    #[tokio::test]
    async fn events_prompt_groups_numbers_into_deltas() {
        let origin = start(fast()).await;
        let body = send(signed(
            &origin.origin_config(),
            r#"{"prompt":"/events 8 0 3"}"#,
            SystemTime::now(),
        ))
        .await
        .text()
        .await
        .unwrap();
        let texts: Vec<String> = data_lines(&body)
            .iter()
            .filter_map(|e| e["event"]["contentBlockDelta"]["delta"]["text"].as_str())
            .map(str::to_owned)
            .collect();
        assert_eq!(texts, ["1 2 3", " 4 5 6", " 7 8"]);
    }

    #[tokio::test]
    async fn error_after_prompt_ends_with_the_sdk_error_event() {
        let origin = start(fast()).await;
        let body = send(signed(
            &origin.origin_config(),
            r#"{"prompt":"/error-after 2"}"#,
            SystemTime::now(),
        ))
        .await
        .text()
        .await
        .unwrap();
        assert!(body.ends_with(
            "data: {\"error\": \"demo failure requested by the prompt\", \"error_type\": \"RuntimeError\", \
             \"message\": \"An error occurred during streaming\"}\n\n"
        ), "{body}");
        assert_eq!(data_lines(&body).len(), 4);
    }

    #[tokio::test]
    async fn abort_after_prompt_cuts_the_connection() {
        let origin = start(fast()).await;
        let response = send(signed(
            &origin.origin_config(),
            r#"{"prompt":"/abort-after 1"}"#,
            SystemTime::now(),
        ))
        .await;
        assert_eq!(response.status(), 200);
        assert!(response.text().await.is_err());
    }

    #[tokio::test]
    async fn origin_error_prompt_echoes_secrets() {
        let origin = start(fast()).await;
        let response = send(signed(
            &origin.origin_config(),
            r#"{"prompt":"/origin-error 429"}"#,
            SystemTime::now(),
        ))
        .await;
        let (status, error_type, message) = rejection(response).await;
        assert_eq!((status, error_type.as_str()), (429, "ThrottlingException"));
        for secret in [
            DEMO_RUNTIME_ARN,
            "123456789012",
            DEMO_ACCESS_KEY_ID,
            DEMO_SECRET_ACCESS_KEY,
        ] {
            assert!(message.contains(secret), "{message}");
        }
    }

    #[tokio::test]
    async fn json_prompt_answers_json() {
        let origin = start(fast()).await;
        let response = send(signed(
            &origin.origin_config(),
            r#"{"prompt":"/json hi"}"#,
            SystemTime::now(),
        ))
        .await;
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let text: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert!(text.as_str().unwrap().starts_with("You said: \"hi\"."));
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_server() {
        let origin = start(fast()).await;
        let url = origin.base_url();
        origin.shutdown().await;
        assert!(reqwest::get(url).await.is_err());
    }

    #[test]
    fn python_json_separators_and_unicode() {
        let value = json!({"a": [1, 2, {"b": "ü\n\"x\""}], "c": null, "d": 1.5});
        assert_eq!(
            python_json(&value),
            r#"{"a": [1, 2, {"b": "ü\n\"x\""}], "c": null, "d": 1.5}"#
        );
    }

    #[test]
    fn amz_dates_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(format_amz_date(t), "20150830T123600Z");
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(t));
        assert_eq!(parse_amz_date("20150830T123600"), None);
        assert_eq!(parse_amz_date("2015-08-30T12:36"), None);
        let leap = parse_amz_date("20240229T000000Z").unwrap();
        assert_eq!(format_amz_date(leap), "20240229T000000Z");
    }

    #[test]
    fn gateway_vars_name_the_demo() {
        let settings = DemoOriginSettings::demo();
        assert!(AgentRuntime::parse(&settings.runtime_arn, settings.qualifier.clone()).is_ok());
        assert!(!format!("{settings:?}").contains(DEMO_SECRET_ACCESS_KEY));
    }
}
