//! The demo agent's answers: a reply quoting the prompt as Strands events,
//! and the scripted answers of the test prompts listed in [`super`]'s module
//! doc (the recorded AG-UI runs among them), faults included (a reset before headers, slow headers, a stall, a
//! broken event, bytes that are not UTF-8, garbage, a wrong content type, a
//! gzip-encoded body, error pages, and echoes of the request's secrets).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};

use super::{
    full, AwsError, Body, DemoOriginSettings, SessionKey, State, StreamEnd, StreamRecord,
    QUOTED_WORDS,
};
use crate::config::Secret;
use crate::origin::SESSION_ID_HEADER;

/// What a prompt asks the demo to do.
#[derive(Debug, PartialEq)]
pub(super) enum Script {
    /// Strands events.
    Stream(Plan),
    /// `application/json`: the reply as a JSON string.
    Json(String),
    /// An AWS error whose message echoes every secret the demo knows.
    OriginError(StatusCode),
    /// An HTML error page.
    OriginHtml(StatusCode),
    /// The connection is closed before any response head.
    Reset,
    /// The head after a pause, then the plan.
    SlowHeaders(Duration, Plan),
    /// 200 `text/html`, as a login page would.
    Html,
    /// 200 with exactly these bytes.
    Raw(Raw),
    /// 500 whose `x-amzn-ErrorType` is the request's `Authorization` header.
    EchoErrorType,
    /// A stream whose usage and error event quote the request's secrets.
    EchoRequest,
    /// The session keeps this text.
    Remember(String),
    /// What the session keeps.
    Recall,
    /// AgentCore's error of this status, in its AWS shape.
    AgentCoreError(StatusCode),
    /// AgentCore's error of a status to the first requests of a session,
    /// then the plan.
    FailThen(FailThen),
}

/// `/status-then`: which error, how many times per session, then what.
#[derive(Debug, PartialEq)]
pub(super) struct FailThen {
    status: StatusCode,
    times: u64,
    retry_after: Option<u64>,
    then: Plan,
}

impl Script {
    /// Answered before the signature is checked: what they echo is the
    /// point, whatever the origin authentication.
    pub(super) fn skips_authentication(&self) -> bool {
        matches!(self, Script::EchoErrorType | Script::EchoRequest)
    }
}

/// A streamed answer: the deltas, their spacing, and how it ends.
#[derive(Debug, PartialEq)]
pub(super) struct Plan {
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
    /// Nothing more, until the client goes away.
    Stall,
}

/// A body given byte for byte.
#[derive(Debug, PartialEq)]
pub(super) struct Raw {
    content_type: String,
    content_encoding: Option<&'static str>,
    /// Sent `delay` apart.
    chunks: Vec<Bytes>,
    delay: Duration,
    /// The connection is cut after the last chunk.
    abort: bool,
}

/// The longest `/big-event`.
const MAX_BIG_EVENT: u64 = 16 << 20;
/// The most keys of each kind in a `/usage-keys` usage object.
const MAX_USAGE_KEYS: u64 = 1000;
/// The recorded AG-UI runs of `tests/data/sse/` (`/ag-ui`, `/ag-ui-error`).
const AG_UI_RUN: &[u8] = include_bytes!("../../../tests/data/sse/ag-ui-run.sse");
const AG_UI_RUN_ERROR: &[u8] = include_bytes!("../../../tests/data/sse/ag-ui-run-error.sse");

impl Script {
    pub(super) fn from_prompt(prompt: &str, word_delay: Duration) -> Script {
        let words: Vec<&str> = prompt.split_whitespace().collect();
        let input_tokens = words.len().max(1);
        let number = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
        let counted_in = |n: u64, per_delta: u64, delay: Duration, end: End| {
            let numbers: Vec<u64> = (1..=n.min(100_000)).collect();
            let per_delta = usize::try_from(per_delta.clamp(1, 1000)).unwrap_or(1);
            Plan {
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
            }
        };
        let counted = |n: u64, end: End| Script::Stream(counted_in(n, 1, word_delay, end));
        let status = |default: StatusCode| {
            number(1)
                .and_then(|n| u16::try_from(n).ok())
                .and_then(|n| StatusCode::from_u16(n).ok())
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(default)
        };
        let raw = |content_type: &str, chunks: Vec<Bytes>, abort: bool| {
            Script::Raw(Raw {
                content_type: content_type.to_owned(),
                content_encoding: None,
                chunks,
                delay: word_delay,
                abort,
            })
        };
        const EVENT_STREAM: &str = "text/event-stream; charset=utf-8";
        match words.first().copied() {
            Some("/events") if number(1).is_some() => {
                let delay = number(2)
                    .map(|ms| Duration::from_millis(ms.min(60_000)))
                    .unwrap_or(word_delay);
                let per_delta = number(3).unwrap_or(1);
                return Script::Stream(counted_in(
                    number(1).unwrap_or(0),
                    per_delta,
                    delay,
                    End::Complete,
                ));
            }
            Some("/error-after") if number(1).is_some() => {
                return counted(number(1).unwrap_or(0), End::SdkError)
            }
            Some("/abort-after") if number(1).is_some() => {
                return counted(number(1).unwrap_or(0), End::Abort)
            }
            Some("/stall-after") if number(1).is_some() => {
                return counted(number(1).unwrap_or(0), End::Stall)
            }
            Some("/origin-error") => {
                return Script::OriginError(status(StatusCode::INTERNAL_SERVER_ERROR))
            }
            Some("/origin-html") => {
                return Script::OriginHtml(status(StatusCode::SERVICE_UNAVAILABLE))
            }
            Some("/reset") => return Script::Reset,
            Some("/slow-headers") if number(1).is_some() => {
                let pause = Duration::from_millis(number(1).unwrap_or(0).min(600_000));
                return Script::SlowHeaders(pause, counted_in(3, 1, word_delay, End::Complete));
            }
            Some("/drop-mid-event") => {
                let mut chunks = stream_start(&["1"]);
                chunks.push(Bytes::from_static(
                    b"data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \" 2",
                ));
                return raw(EVENT_STREAM, chunks, true);
            }
            Some("/invalid-utf8") => {
                let mut chunks = stream_start(&["valid"]);
                chunks.push(Bytes::from_static(
                    b"data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \" bad \xff\xfe bytes\"}, \"contentBlockIndex\": 0}}}\n\n",
                ));
                chunks.push(stream_end());
                return raw(EVENT_STREAM, chunks, false);
            }
            Some("/big-event") if number(1).is_some() => {
                let size = number(1).unwrap_or(0).min(MAX_BIG_EVENT) as usize;
                return Script::Stream(Plan {
                    deltas: vec!["x".repeat(size)],
                    delay: word_delay,
                    input_tokens,
                    end: End::Complete,
                });
            }
            Some("/garbage") => return raw(EVENT_STREAM, vec![garbage(4096)], false),
            Some("/content-type") if words.len() > 1 => {
                let body = Bytes::from_static(b"<!doctype html><p>not an event stream</p>\n");
                return raw(words[1], vec![body], false);
            }
            Some("/gzip") => {
                let mut events = stream_start(&["1", " 2", " 3"]);
                events.push(stream_end());
                let plain: Vec<u8> = events.concat();
                return Script::Raw(Raw {
                    content_type: EVENT_STREAM.to_owned(),
                    content_encoding: Some("gzip"),
                    chunks: vec![Bytes::from(gzip_stored(&plain))],
                    delay: word_delay,
                    abort: false,
                });
            }
            Some("/status-then") => {
                let status = number(1)
                    .and_then(|n| u16::try_from(n).ok())
                    .and_then(|n| StatusCode::from_u16(n).ok())
                    .filter(|s| s.is_client_error() || s.is_server_error());
                if let (Some(status), Some(times)) = (status, number(2)) {
                    return Script::FailThen(FailThen {
                        status,
                        times,
                        retry_after: number(3),
                        then: reply_plan(&words, word_delay),
                    });
                }
            }
            Some("/conflict-then") if number(1).is_some() => {
                return Script::FailThen(FailThen {
                    status: StatusCode::CONFLICT,
                    times: number(1).unwrap_or(0),
                    retry_after: None,
                    then: reply_plan(&words, word_delay),
                });
            }
            Some("/runtime-client-error") => {
                return Script::AgentCoreError(StatusCode::FAILED_DEPENDENCY)
            }
            Some("/quota") => return Script::AgentCoreError(StatusCode::PAYMENT_REQUIRED),
            Some("/ag-ui") => return raw(EVENT_STREAM, events_of(AG_UI_RUN), false),
            Some("/ag-ui-error") => return raw(EVENT_STREAM, events_of(AG_UI_RUN_ERROR), false),
            Some("/remember") => return Script::Remember(words[1..].join(" ")),
            Some("/recall") => return Script::Recall,
            Some("/echo-error-type") => return Script::EchoErrorType,
            Some("/echo-request") => return Script::EchoRequest,
            Some("/json") => return Script::Json(reply_text(&words[1..])),
            Some("/html") => return Script::Html,
            Some("/usage-keys") if number(1).is_some() => {
                let mut chunks = stream_start(&["usage"]);
                chunks.push(stream_end());
                chunks.push(Bytes::from(sse_event(&json!({"event": {"metadata": {
                    "usage": usage_with_keys(number(1).unwrap_or(0).min(MAX_USAGE_KEYS))
                }}}))));
                return raw(EVENT_STREAM, chunks, false);
            }
            _ => {}
        }
        Script::Stream(reply_plan(&words, word_delay))
    }
}

/// The usual answer: a reply quoting the prompt, a word per delta.
fn reply_plan(words: &[&str], word_delay: Duration) -> Plan {
    Plan {
        deltas: word_deltas(&reply_text(words)),
        delay: word_delay,
        input_tokens: words.len().max(1),
        end: End::Complete,
    }
}

impl Plan {
    /// `text`, one delta per word, then the usual closing events.
    fn saying(text: &str, delay: Duration) -> Plan {
        Plan {
            deltas: word_deltas(text),
            delay,
            input_tokens: 1,
            end: End::Complete,
        }
    }
}

/// `text` cut before each space: `"a b"` is `"a"`, `" b"`.
fn word_deltas(text: &str) -> Vec<String> {
    text.split(' ')
        .enumerate()
        .map(|(i, word)| {
            if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            }
        })
        .collect()
}

/// How the demo answers.
pub(super) enum Answer {
    Response(Response<Body>),
    Error(AwsError),
    /// No response: the connection is closed.
    Reset,
}

/// The answer to `script` in `session`, whose id is echoed on streamed
/// answers.
pub(super) async fn answer(
    script: Script,
    state: &Arc<State>,
    head: &http::request::Parts,
    session: Option<SessionKey>,
    received: Instant,
) -> Answer {
    let settings = &state.settings;
    let session_id = session.as_ref().map(|key| key.session_id.clone());
    let watch = |session_id: &Option<String>| StreamWatch {
        state: state.clone(),
        session_id: session_id.clone().unwrap_or_default(),
        started: received,
        sent: Default::default(),
    };
    let mut response = match script {
        Script::Html => {
            let mut response = Response::new(full("<!doctype html><title>Sign in</title>"));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Script::OriginError(status) => {
            return Answer::Error(echo_secrets_error(settings, head, status))
        }
        Script::OriginHtml(status) => {
            let mut response = Response::new(full(format!(
                "<!doctype html><title>{status}</title><h1>{status}</h1>\n"
            )));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
            return Answer::Response(response);
        }
        Script::Reset => return Answer::Reset,
        Script::EchoErrorType => {
            let authorization = header_text(head, AUTHORIZATION.as_str());
            return Answer::Error(AwsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                authorization,
                "the error type is the request's Authorization header",
            ));
        }
        Script::EchoRequest => raw_response(echo_request(settings, head)),
        Script::Json(text) => {
            let mut response = Response::new(full(Value::String(text).to_string()));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Script::SlowHeaders(pause, plan) => {
            tokio::time::sleep(pause).await;
            event_stream(sse_body(plan, received, watch(&session_id)))
        }
        Script::Stream(plan) => event_stream(sse_body(plan, received, watch(&session_id))),
        Script::AgentCoreError(status) => return Answer::Error(agentcore_error(status)),
        Script::FailThen(FailThen {
            status,
            times,
            retry_after,
            then,
        }) => {
            let key = format!(
                "{} {}",
                status.as_u16(),
                session_id.as_deref().unwrap_or("")
            );
            if state.fails(key, times) {
                let mut error = agentcore_error(status);
                error.retry_after = retry_after;
                return Answer::Error(error);
            }
            event_stream(sse_body(then, received, watch(&session_id)))
        }
        Script::Remember(text) => {
            if let Some(key) = &session {
                state.sessions().open(key).push(text.clone());
            }
            let plan = Plan::saying(&format!("I will remember: {text}."), settings.word_delay);
            event_stream(sse_body(plan, received, watch(&session_id)))
        }
        Script::Recall => {
            let kept = session
                .as_ref()
                .map(|key| state.sessions().open(key).clone())
                .unwrap_or_default();
            let reply = if kept.is_empty() {
                "I remember nothing.".to_owned()
            } else {
                format!("I remember: {}.", kept.join(", "))
            };
            let plan = Plan::saying(&reply, settings.word_delay);
            event_stream(sse_body(plan, received, watch(&session_id)))
        }
        Script::Raw(raw) => raw_response(raw),
    };
    if let Some(value) = session_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(SESSION_ID_HEADER), value);
    }
    Answer::Response(response)
}

fn event_stream(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    response
}

fn raw_response(raw: Raw) -> Response<Body> {
    let content_type = HeaderValue::from_str(&raw.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let encoding = raw.content_encoding;
    let mut response = Response::new(raw_body(raw));
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    if let Some(encoding) = encoding {
        response
            .headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    response
}

fn header_text(head: &http::request::Parts, name: &str) -> String {
    head.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_owned()
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

/// `messageStart` and one `contentBlockDelta` per text, one chunk each.
fn stream_start(texts: &[&str]) -> Vec<Bytes> {
    let mut chunks = vec![Bytes::from(sse_event(
        &json!({"event": {"messageStart": {"role": "assistant"}}}),
    ))];
    for text in texts {
        chunks.push(Bytes::from(sse_event(
            &json!({"event": {"contentBlockDelta": {
            "delta": {"text": text}, "contentBlockIndex": 0}}}),
        )));
    }
    chunks
}

/// A recorded stream cut after each blank line: one chunk per event, as an
/// agent sends them.
fn events_of(recording: &'static [u8]) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut rest = recording;
    while !rest.is_empty() {
        let len = memchr::memmem::find(rest, b"\n\n").map_or(rest.len(), |at| at + 2);
        chunks.push(Bytes::from_static(&rest[..len]));
        rest = &rest[len..];
    }
    chunks
}

/// A `usage` object wider than any log line keeps: the three token counts,
/// `nested` with `n` keys (`n1`, `n2`, ...), then `n` keys `k1`, `k2`, ...
fn usage_with_keys(n: u64) -> Value {
    let mut usage = serde_json::Map::new();
    usage.insert("inputTokens".into(), json!(1));
    usage.insert("outputTokens".into(), json!(1));
    usage.insert("totalTokens".into(), json!(2));
    let nested = (1..=n).map(|i| (format!("n{i}"), json!(i))).collect();
    usage.insert("nested".into(), Value::Object(nested));
    usage.extend((1..=n).map(|i| (format!("k{i}"), json!(i))));
    Value::Object(usage)
}

/// `contentBlockStop` and `messageStop`, as one chunk.
fn stream_end() -> Bytes {
    let mut closing = sse_event(&json!({"event": {"contentBlockStop": {"contentBlockIndex": 0}}}));
    closing.push_str(&sse_event(
        &json!({"event": {"messageStop": {"stopReason": "end_turn"}}}),
    ));
    Bytes::from(closing)
}

/// Bytes of every value, control characters and invalid UTF-8 included,
/// from a fixed xorshift sequence.
fn garbage(len: usize) -> Bytes {
    let mut state: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// `data` as a gzip member of stored (uncompressed) deflate blocks: valid
/// gzip for any client, without a compression crate.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut blocks = data.chunks(u16::MAX as usize).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (IEEE), bit by bit: the bodies are small.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Notes how a streamed answer ended when its body is dropped: by hyper
/// after the last frame, or earlier when the caller hangs up.
struct StreamWatch {
    state: Arc<State>,
    session_id: String,
    started: Instant,
    sent: AtomicBool,
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
                    if plan.end != End::Stall {
                        watch.sent.store(true, Ordering::Relaxed);
                    }
                    match plan.end {
                        End::Complete => {
                            let output_tokens = plan.deltas.len();
                            let latency_ms = received.elapsed().as_millis() as u64;
                            let mut closing = String::from_utf8(stream_end().to_vec())
                                .expect("serde_json writes UTF-8");
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
                        End::Stall => {
                            // Until the client hangs up, which drops this.
                            std::future::pending::<()>().await;
                            return None;
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

/// The chunks of a [`Raw`] answer, `delay` apart.
fn raw_body(raw: Raw) -> Body {
    let Raw {
        chunks,
        delay,
        abort,
        ..
    } = raw;
    let count = chunks.len();
    let stream = futures::stream::unfold(
        (chunks.into_iter(), 0usize),
        move |(mut chunks, sent)| async move {
            if sent > 0 {
                tokio::time::sleep(delay).await;
            }
            match chunks.next() {
                Some(chunk) => Some((Ok(Frame::data(chunk)), (chunks, sent + 1))),
                None if abort && sent == count => {
                    let cut = io::Error::new(io::ErrorKind::ConnectionAborted, "demo abort");
                    Some((Err(cut), (chunks, sent + 1)))
                }
                None => None,
            }
        },
    );
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
    use io::{Result as R, Write};
    struct PythonFormatter;
    fn separator<W: ?Sized + Write>(w: &mut W, first: bool) -> R<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    impl serde_json::ser::Formatter for PythonFormatter {
        fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> R<()> {
            separator(w, first)
        }
        fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> R<()> {
            separator(w, first)
        }
        fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> R<()> {
            w.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    serde::Serialize::serialize(value, &mut serializer).expect("a Value always serializes");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// AgentCore's error type for a status (`InvokeAgentRuntime`'s errors).
fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "ValidationException",
        402 => "ServiceQuotaExceededException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        409 => "RetryableConflictException",
        424 => "RuntimeClientError",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}

/// AgentCore's error of `status`, with a message in its words and nothing
/// secret (unlike `/origin-error`'s).
fn agentcore_error(status: StatusCode) -> AwsError {
    let message = match status.as_u16() {
        402 => "The request would exceed a service quota for this account (active sessions).",
        409 => "The session is busy with another request. Retry the request.",
        424 => "Received error (500) from runtime. Please check your CloudWatch logs for more information.",
        429 => "Rate exceeded",
        503 => "The service is temporarily unavailable. Retry the request.",
        _ => "The request failed.",
    };
    AwsError::new(status, error_type(status), message)
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
    let authorization = header_text(head, AUTHORIZATION.as_str());
    AwsError::new(
        status,
        error_type(status),
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

/// A stream that quotes the request's secrets where an agent might: in
/// its usage metadata and in its error event (the path with the encoded
/// ARN, in both cases of hex, the `Authorization` and session token
/// headers, the account id).
fn echo_request(settings: &DemoOriginSettings, head: &http::request::Parts) -> Raw {
    let path = head.uri.path().to_owned();
    let authorization = header_text(head, AUTHORIZATION.as_str());
    let token = header_text(head, "x-amz-security-token");
    let account = settings.runtime_arn.split(':').nth(4).unwrap_or_default();
    let mut chunks = stream_start(&["echo"]);
    chunks.push(Bytes::from(sse_event(&json!({"event": {"metadata": {
        "usage": {
            "inputTokens": 1,
            "outputTokens": 1,
            "totalTokens": 2,
            "echo": {"authorization": authorization, "path": path}
        }
    }}}))));
    chunks.push(Bytes::from(sse_event(&json!({
        "error": format!(
            "echo of {} {path} ({}) Authorization: {authorization}; \
             X-Amz-Security-Token: {token}; account {account}",
            head.method,
            path.replace("%3A", "%3a").replace("%2F", "%2f")
        ),
        "error_type": "RuntimeError",
        "message": "An error occurred during streaming"
    }))));
    Raw {
        content_type: "text/event-stream; charset=utf-8".to_owned(),
        content_encoding: None,
        chunks,
        delay: Duration::ZERO,
        abort: false,
    }
}

#[cfg(test)]
mod tests;
