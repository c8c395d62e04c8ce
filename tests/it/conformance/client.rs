//! Requests to a target, and the answers read whole or chunk by chunk with
//! the arrival time of each chunk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use reqwest::RequestBuilder;
use serde_json::Value;

use super::origin_errors::assert_no_configured_secret;
use super::Target;

/// The gateway's session header.
pub const SESSION_HEADER: &str = "x-amzn-bedrock-agentcore-runtime-session-id";

/// A client of this test's runtime (a `reqwest::Client` must not outlive the
/// runtime that made its connections).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// A string unique in this process, for subjects, request ids and sessions.
pub fn unique(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{label}-{}-{n}", std::process::id())
}

/// A session id the gateway accepts (33 to 256 visible characters).
pub fn session_id(label: &str) -> String {
    format!("{:-<40}", unique(&format!("conformance-session-{label}")))
}

/// `POST /invocations` with a JSON body and, when given, a bearer token.
pub fn invoke(target: &Target, token: Option<&str>, body: impl Into<String>) -> RequestBuilder {
    post(target, "/invocations", token, body)
}

/// `POST <path_and_query>` with a JSON body and, when given, a bearer
/// token.
pub fn post(
    target: &Target,
    path_and_query: &str,
    token: Option<&str>,
    body: impl Into<String>,
) -> RequestBuilder {
    let mut request = client()
        .post(target.url(path_and_query))
        .header("content-type", "application/json")
        .body(body.into());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
}

/// A whole answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("a text header"))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("a UTF-8 body")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    /// Asserts the error shape: this status, `application/json`, and a body
    /// `{"error":{"code":<code>,"message":<non-empty sentence>}}` with
    /// nothing else in it.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "status (expected {status} {code}); body {:?}",
            self.text()
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "error content type"
        );
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "error code in {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "an error message in {body}");
        assert_eq!(
            body.as_object().map(|o| o.len()),
            Some(1),
            "only `error`: {body}"
        );
        assert_eq!(
            body["error"].as_object().map(|o| o.len()),
            Some(2),
            "only code and message: {body}"
        );
    }
}

/// Sends and reads the whole answer (10 s at most).
pub async fn send(request: RequestBuilder) -> Reply {
    let read = async {
        let response = request.send().await.expect("the request was answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("the whole body");
        assert_no_configured_secret(&headers, &body, "an answer");
        Reply {
            status,
            headers,
            body,
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s")
}

/// An answer read chunk by chunk, each with its arrival time.
#[derive(Debug)]
pub struct Timed {
    pub status: u16,
    pub headers: HeaderMap,
    /// Time since the request was sent, and the chunk.
    pub chunks: Vec<(Duration, Bytes)>,
    /// Time since the request was sent until the end of the body.
    pub ended: Duration,
    /// The body ended with a transport error (what reqwest said).
    pub error: Option<String>,
}

impl Timed {
    pub fn body(&self) -> String {
        let bytes: Vec<u8> = self.chunks.iter().flat_map(|(_, c)| c.to_vec()).collect();
        String::from_utf8(bytes).expect("a UTF-8 body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("a text header"))
    }
}

/// Sends and reads the body with `chunk()`, timing each read; at most
/// `limit` in all.
pub async fn send_timed(request: RequestBuilder, limit: Duration) -> Timed {
    let sent = Instant::now();
    let read = async {
        let mut response = request.send().await.expect("the request was answered");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut chunks = Vec::new();
        let mut error = None;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => chunks.push((sent.elapsed(), chunk)),
                Ok(None) => break,
                Err(e) => {
                    error = Some(format!("{e:?}"));
                    break;
                }
            }
        }
        let body: Vec<u8> = chunks
            .iter()
            .flat_map(|(_, c): &(Duration, Bytes)| c.to_vec())
            .collect();
        assert_no_configured_secret(&headers, &body, "an answer");
        Timed {
            status,
            headers,
            chunks,
            ended: sent.elapsed(),
            error,
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("the body did not end within {limit:?} (a hang)"))
}

/// The JSON payloads of the `data:` lines of an SSE body.
pub fn data_events(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .map(|data| serde_json::from_str(&data).unwrap_or(Value::String(data)))
        .collect()
}

/// The text deltas of Strands events, in order.
pub fn delta_texts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["event"]["contentBlockDelta"]["delta"]["text"].as_str())
        .map(str::to_owned)
        .collect()
}

/// A transformed body split into its text and trailer lines.
pub struct Transformed {
    pub text: String,
    /// The lines after the last `\n----------\n`.
    pub trailer: Vec<String>,
}

pub fn split_transformed(body: &str) -> Transformed {
    let at = body
        .rfind("\n----------\n")
        .unwrap_or_else(|| panic!("no trailer separator in {body:?}"));
    Transformed {
        text: body[..at].to_owned(),
        trailer: body[at + "\n----------\n".len()..]
            .split('\n')
            .map(str::to_owned)
            .collect(),
    }
}

/// `"latencyMs": <n>` (origin spelling) and `"latencyMs":<n>` (compact)
/// with the number replaced by 0: the one part of an answer that depends on
/// timing.
pub fn normalize_latency(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\"latencyMs\":") {
        let after = at + "\"latencyMs\":".len();
        out.push_str(&rest[..after]);
        let tail = &rest[after..];
        let spaces = tail.len() - tail.trim_start().len();
        out.push_str(&tail[..spaces]);
        let digits = tail[spaces..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        out.push('0');
        rest = &tail[spaces + digits..];
    }
    out.push_str(rest);
    out
}

#[test]
fn latency_is_normalized_in_both_spellings() {
    assert_eq!(
        normalize_latency(r#"{"metrics": {"latencyMs": 1234}} {"metrics":{"latencyMs":7}}"#),
        r#"{"metrics": {"latencyMs": 0}} {"metrics":{"latencyMs":0}}"#
    );
}
