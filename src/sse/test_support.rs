//! Helpers shared by the transformer's and the dialects' unit tests.

use bytes::Bytes;

use super::transform::{OriginBodyKind, Transformer, TransformerOptions};
use crate::config::{ResponseMode, DEFAULT_MAX_EVENT_BYTES};

pub const SESSION: &str = "afa31b91-a767-41f1-a7bc-d9cbf8c4cfd3";

pub fn transformer(mode: ResponseMode, body_kind: OriginBodyKind) -> Transformer {
    Transformer::new(
        TransformerOptions {
            mode,
            body_kind,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            keepalive_ms: Some(1000),
            session_id: SESSION.to_owned(),
            meter: false,
        },
        0,
    )
}

/// A transformer over an event stream with the usage meter on (`TOKEN_BUDGET`),
/// keepalives off.
pub fn metered(mode: ResponseMode, max_event_bytes: usize) -> Transformer {
    Transformer::new(
        TransformerOptions {
            mode,
            body_kind: OriginBodyKind::EventStream,
            max_event_bytes,
            keepalive_ms: None,
            session_id: SESSION.to_owned(),
            meter: true,
        },
        0,
    )
}

/// Transformed output of `stream` fed in one chunk, plus the trailer.
pub fn transform(stream: &str) -> String {
    let mut t = transformer(ResponseMode::Transformed, OriginBodyKind::EventStream);
    let mut out = t
        .push(Bytes::copy_from_slice(stream.as_bytes()), 0)
        .to_vec();
    out.extend_from_slice(&t.finish(None));
    String::from_utf8(out).unwrap()
}

pub fn session_line() -> String {
    format!("{{\"runtimeSessionId\":\"{SESSION}\"}}")
}

pub fn sse(payloads: &[&str]) -> String {
    payloads.iter().map(|p| format!("data: {p}\n\n")).collect()
}

/// The "Keep original stream response" of `seeds/002_*.txt`, with the
/// usage and metrics of its transformed example.
pub const SEED_002_STREAM: &str = concat!(
    "data: {\"event\": {\"messageStart\": {\"role\": \"assistant\"}}}\n\n",
    "data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \"Hello! How can\"}, \"contentBlockIndex\": 0}}}\n\n",
    "data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \" I assist you today?\"}, \"contentBlockIndex\": 0}}}\n\n",
    "data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \" Feel free to ask me\"}, \"contentBlockIndex\": 0}}}\n\n",
    "data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \" any questions or let me know if there\"}, \"contentBlockIndex\": 0}}}\n\n",
    "data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \"'s anything you'd like help with\"}, \"contentBlockIndex\": 0}}}\n\n",
    "data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \".\"}, \"contentBlockIndex\": 0}}}\n\n",
    "data: {\"event\": {\"contentBlockStop\": {\"contentBlockIndex\": 0}}}\n\n",
    "data: {\"event\": {\"messageStop\": {\"stopReason\": \"end_turn\"}}}\n\n",
    "data: {\"event\": {\"metadata\": {\"usage\": {\"inputTokens\": 8, \"outputTokens\": 30, \"totalTokens\": 38}, \"metrics\": {\"latencyMs\": 909}}}}\n\n",
);
