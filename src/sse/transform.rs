//! The response body filter: turns the origin's bytes into what the client
//! receives (`docs/interface.md`, "The response"), as an enum of its four
//! states (pass-through JSON, original SSE, transformed SSE, transformed
//! JSON), each holding only what it needs.
//!
//! - **Original**: each chunk is returned as-is (zero-copy). A
//!   [`BoundaryTracker`] follows what the client's parser has seen so that a
//!   keepalive goes only where it changes nothing (a line start with no field
//!   line since the last dispatch), and so that a failure's `event: error`
//!   is parsed on its own (a cut-off line and event are closed first). If a
//!   keepalive goes out before the origin's first byte, a BOM the origin
//!   then starts with is dropped: the client strips one only at the very
//!   start.
//! - **Transformed**: a [`Parser`] reads the events, `super::dialect` takes
//!   their text, metadata and errors, and the text goes out as it arrives;
//!   at the end, the trailer. OpenAI's `data: [DONE]` ends the stream.
//!
//! Memory is bounded by `max_event_bytes` in both modes: a larger event (or
//! JSON body, in transformed mode) ends the stream with `event_too_large`;
//! in original mode the chunk is cut at the start of that event if it
//! starts in the chunk.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::dialect::{Extractor, Read};
use super::parser::{match_bom, BomMatch, BoundaryTracker, EventTooLarge, ParseError, Parser, BOM};
use crate::config::ResponseMode;
use crate::error::{error_json, Code, StreamError};
use crate::scrub::Scrubber;

/// The comment inserted when the origin is idle in original mode.
pub const KEEPALIVE: &[u8] = b": keepalive\n\n";
/// The line between the text and the trailer in transformed mode.
pub const TRAILER_SEPARATOR: &[u8] = b"\n----------\n";

/// What the origin answered with; the gateway picks it from the origin's
/// `Content-Type` (see [`OriginBodyKind::from_content_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginBodyKind {
    EventStream,
    Json,
}

impl OriginBodyKind {
    /// `text/event-stream` (any parameters) or JSON (`application/json` or a
    /// `+json` type); `None` for anything else, which the gateway must not
    /// treat as an event stream (the WHATWG algorithm fails such a
    /// connection).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .as_bytes();
        let json_suffix =
            essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case(b"+json");
        if essence.eq_ignore_ascii_case(b"text/event-stream") {
            Some(OriginBodyKind::EventStream)
        } else if essence.eq_ignore_ascii_case(b"application/json") || json_suffix {
            Some(OriginBodyKind::Json)
        } else {
            None
        }
    }
}

/// How a [`Transformer`] behaves for one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformerOptions {
    pub mode: ResponseMode,
    pub body_kind: OriginBodyKind,
    /// Largest event (field-line bytes) or JSON body held or passed;
    /// usually [`crate::config::DEFAULT_MAX_EVENT_BYTES`].
    pub max_event_bytes: usize,
    /// Idle time before a keepalive comment; `None` (or 0) disables them.
    /// Only original mode over an event stream sends keepalives.
    pub keepalive_ms: Option<u64>,
    /// The runtime session id printed in the transformed trailer.
    pub session_id: String,
    /// Original mode reads the usage (and counts the text) of what it
    /// relays, unchanged, for `TOKEN_BUDGET`; transformed mode always does.
    pub meter: bool,
}

/// The response body filter of one request; see the module doc.
#[derive(Debug)]
pub struct Transformer {
    kind: Kind,
    max_event_bytes: usize,
    finished: bool,
    /// The stream was ended by an event over `max_event_bytes`.
    cut_by_limit: bool,
}

/// The four real states of a transformer: one per response mode and origin
/// body, each holding only what it needs.
#[derive(Debug)]
enum Kind {
    /// Original mode over a JSON body: the bytes as they come (counted as
    /// text when metered).
    PassThroughJson { metered: Option<u64> },
    /// Original mode over an event stream: the bytes as they come, with
    /// keepalives between events.
    OriginalSse(OriginalSse),
    /// Transformed mode over an event stream: the text as each event arrives.
    TransformedSse { parser: Parser, text: Text },
    /// Transformed mode over a JSON body: held (bounded), printed at the end.
    TransformedJson { body: Vec<u8>, text: Text },
}

/// Original mode over an event stream.
#[derive(Debug)]
struct OriginalSse {
    /// What the client's parser has seen.
    tracker: BoundaryTracker,
    keepalive_ms: Option<u64>,
    /// Time of the last origin byte or keepalive.
    last_activity_ms: u64,
    /// `Some(n)` once a keepalive went out before the origin's first byte,
    /// until it is known whether the origin starts with a BOM; `n` BOM bytes
    /// are held meanwhile.
    bom_hold: Option<u8>,
    /// Reads usage and counts text without changing a byte (`meter`).
    meter: Option<Box<Meter>>,
}

/// Original mode's meter: the events of what is relayed, through the
/// dialects, text counted and dropped.
#[derive(Debug)]
struct Meter {
    parser: Parser,
    extract: Extractor,
}

impl Meter {
    fn new(max_event_bytes: usize) -> Self {
        Meter {
            parser: Parser::new(max_event_bytes),
            extract: Extractor {
                count_only: true,
                ..Extractor::default()
            },
        }
    }

    fn push(&mut self, input: &[u8]) {
        // After OpenAI's `[DONE]` transformed mode reads nothing more: nor
        // does the meter. An event over the limit: the tracker cuts the
        // stream there too.
        if !self.extract.done {
            self.extract.read(&mut self.parser, input);
        }
    }
}

/// Transformed mode: the text and what goes in the trailer.
#[derive(Debug)]
struct Text {
    extract: Extractor,
    session_id: String,
}

impl Transformer {
    /// `now_ms`: monotonic milliseconds, any epoch; the keepalive clock starts here.
    pub fn new(opts: TransformerOptions, now_ms: u64) -> Self {
        let text = || Text {
            extract: Extractor::default(),
            session_id: opts.session_id.clone(),
        };
        let kind = match (opts.mode, opts.body_kind) {
            (ResponseMode::Original, OriginBodyKind::Json) => Kind::PassThroughJson {
                metered: opts.meter.then_some(0),
            },
            (ResponseMode::Original, OriginBodyKind::EventStream) => {
                Kind::OriginalSse(OriginalSse {
                    tracker: BoundaryTracker::new(opts.max_event_bytes),
                    keepalive_ms: opts.keepalive_ms.filter(|&ms| ms > 0),
                    last_activity_ms: now_ms,
                    bom_hold: None,
                    meter: opts
                        .meter
                        .then(|| Box::new(Meter::new(opts.max_event_bytes))),
                })
            }
            (ResponseMode::Transformed, OriginBodyKind::EventStream) => Kind::TransformedSse {
                parser: Parser::new(opts.max_event_bytes),
                text: text(),
            },
            (ResponseMode::Transformed, OriginBodyKind::Json) => Kind::TransformedJson {
                body: Vec::new(),
                text: text(),
            },
        };
        Transformer {
            kind,
            max_event_bytes: opts.max_event_bytes,
            finished: false,
            cut_by_limit: false,
        }
    }

    /// Scrubs what the agent's words put in the trailer (error messages,
    /// metadata) with `scrubber`, which knows the configured secrets,
    /// instead of by their shape alone.
    pub fn with_scrubber(mut self, scrubber: Scrubber) -> Self {
        if let Kind::TransformedSse { text, .. } | Kind::TransformedJson { text, .. } =
            &mut self.kind
        {
            text.extract.scrubber = scrubber;
        }
        self
    }

    /// Origin bytes arrived at `now_ms`; returns the bytes to send to the
    /// client now (maybe empty). Original mode returns `chunk` itself
    /// (zero-copy) unless a limit ended the stream.
    pub fn push(&mut self, chunk: Bytes, now_ms: u64) -> Bytes {
        if self.finished || chunk.is_empty() {
            return Bytes::new();
        }
        let limit = self.max_event_bytes;
        let pushed = match &mut self.kind {
            Kind::PassThroughJson { metered } => {
                if let Some(bytes) = metered {
                    *bytes += chunk.len() as u64;
                }
                Pushed::Out(chunk)
            }
            Kind::OriginalSse(original) => {
                original.last_activity_ms = now_ms;
                original.push(chunk, limit)
            }
            Kind::TransformedSse { parser, text } => text.push_events(parser, &chunk, limit),
            Kind::TransformedJson { body, text } => {
                if body.len() + chunk.len() > limit {
                    *body = Vec::new();
                    text.extract.record_error(Some(event_too_large(limit)));
                    Pushed::Cut(text.trailer())
                } else {
                    body.extend_from_slice(&chunk);
                    Pushed::Out(Bytes::new())
                }
            }
        };
        match pushed {
            Pushed::Out(out) => out,
            Pushed::Ended(out) => {
                self.finished = true;
                out
            }
            Pushed::Cut(out) => {
                self.finished = true;
                self.cut_by_limit = true;
                out
            }
        }
    }

    /// The adapter's idle timer fired: a `: keepalive\n\n` comment if one is
    /// due and allowed here.
    pub fn poll_idle(&mut self, now_ms: u64) -> Option<Bytes> {
        if now_ms < self.idle_deadline()? {
            return None;
        }
        let Kind::OriginalSse(original) = &mut self.kind else {
            return None;
        };
        if original.tracker.at_stream_start() && original.bom_hold.is_none() {
            original.bom_hold = Some(0);
        }
        original.tracker.inserted_keepalive();
        original.last_activity_ms = now_ms;
        Some(Bytes::from_static(KEEPALIVE))
    }

    /// Absolute time (ms) at which [`Transformer::poll_idle`] should next be
    /// called; `None` = never (keepalives off, or inside an event: the next
    /// origin bytes move the deadline).
    pub fn idle_deadline(&self) -> Option<u64> {
        let Kind::OriginalSse(original) = &self.kind else {
            return None;
        };
        let keepalive_ms = original.keepalive_ms?;
        let allowed = !self.finished && original.tracker.at_event_boundary();
        allowed.then(|| original.last_activity_ms.saturating_add(keepalive_ms))
    }

    /// End of the origin stream; `error` when it failed mid-stream. Returns
    /// the final bytes (transformed: the trailer; original: the `event:
    /// error` event if `error`). Idempotent: later calls return nothing.
    pub fn finish(&mut self, error: Option<StreamError>) -> Bytes {
        if self.finished {
            return Bytes::new();
        }
        self.finished = true;
        match &mut self.kind {
            Kind::PassThroughJson { .. } => Bytes::new(),
            Kind::OriginalSse(original) => original.finish(error),
            Kind::TransformedSse { text, .. } => {
                text.extract.record_error(error);
                text.trailer()
            }
            Kind::TransformedJson { body, text } => {
                match error {
                    None => print_json(&mut text.extract.out, body),
                    error => text.extract.record_error(error),
                }
                *body = Vec::new();
                text.trailer()
            }
        }
    }

    /// True once the stream is over (`finish` called, or a limit or the
    /// origin's `[DONE]` ended it inside `push`); the adapter then stops
    /// reading the origin and sends nothing more.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The error code the transformer ended the stream with itself
    /// ([`Code::EventTooLarge`]), for the log line; `None` otherwise.
    pub fn ended_with_error(&self) -> Option<Code> {
        self.cut_by_limit.then_some(Code::EventTooLarge)
    }

    /// Token usage summed so far (the metadata `usage` object), for the log
    /// line: transformed mode, and original mode when metered.
    pub fn usage(&self) -> Option<&Value> {
        self.extractor()?.metadata.as_ref()?.get("usage")
    }

    /// The tokens the origin's usage counts so far (`totalTokens`, else
    /// input plus output, in any dialect);
    /// `None` until it sent some.
    pub fn tokens(&self) -> Option<u64> {
        self.extractor()?.tokens()
    }

    /// Bytes of answer text so far (a JSON body's bytes in original mode);
    /// 0 when original mode is not metered.
    pub fn text_bytes(&self) -> u64 {
        match &self.kind {
            Kind::PassThroughJson { metered } => metered.unwrap_or(0),
            _ => self.extractor().map_or(0, |e| e.text_bytes),
        }
    }

    fn extractor(&self) -> Option<&Extractor> {
        match &self.kind {
            Kind::TransformedSse { text, .. } | Kind::TransformedJson { text, .. } => {
                Some(&text.extract)
            }
            Kind::OriginalSse(original) => original.meter.as_ref().map(|m| &m.extract),
            Kind::PassThroughJson { .. } => None,
        }
    }
}

/// What one `push` produced, and whether it ended the stream.
enum Pushed {
    Out(Bytes),
    /// The stream ended here (OpenAI's `[DONE]`).
    Ended(Bytes),
    /// An event over the limit ended the stream here.
    Cut(Bytes),
}

impl OriginalSse {
    fn push(&mut self, mut chunk: Bytes, limit: usize) -> Pushed {
        if let Some(held) = self.bom_hold {
            match match_bom(held, &chunk) {
                BomMatch::Partial(matched) => {
                    self.bom_hold = Some(matched);
                    return Pushed::Out(Bytes::new());
                }
                BomMatch::Complete { len } => {
                    self.bom_hold = None;
                    chunk = chunk.slice(len..);
                    if chunk.is_empty() {
                        return Pushed::Out(chunk);
                    }
                }
                BomMatch::Mismatch { .. } => {
                    self.bom_hold = None;
                    if held > 0 {
                        let mut joined = BytesMut::with_capacity(usize::from(held) + chunk.len());
                        joined.extend_from_slice(&BOM[..usize::from(held)]);
                        joined.extend_from_slice(&chunk);
                        chunk = joined.freeze();
                    }
                }
            }
        }
        let before = self.tracker;
        match self.tracker.scan(&chunk) {
            Ok(()) => {
                if let Some(meter) = &mut self.meter {
                    meter.push(&chunk);
                }
                Pushed::Out(chunk)
            }
            Err(EventTooLarge { event_start }) => {
                let mut out = BytesMut::new();
                match event_start {
                    // The cut leaves the client at an event boundary.
                    Some(start) => {
                        if let Some(meter) = &mut self.meter {
                            meter.push(&chunk[..start]);
                        }
                        out.extend_from_slice(&chunk[..start]);
                    }
                    None => out.extend_from_slice(before.closing_bytes()),
                }
                write_error_event(&mut out, &event_too_large(limit));
                Pushed::Cut(out.freeze())
            }
        }
    }

    fn finish(&mut self, error: Option<StreamError>) -> Bytes {
        let mut out = BytesMut::new();
        if let Some(held @ 1..) = self.bom_hold.take() {
            // Held as a possible BOM, but the stream ended: it was content.
            let held = &BOM[..usize::from(held)];
            out.extend_from_slice(held);
            let _ = self.tracker.scan(held);
        }
        if let Some(error) = error {
            out.extend_from_slice(self.tracker.closing_bytes());
            write_error_event(&mut out, &error);
        }
        out.freeze()
    }
}

impl Text {
    fn push_events(&mut self, parser: &mut Parser, chunk: &[u8], limit: usize) -> Pushed {
        match self.extract.read(parser, chunk) {
            Read::Consumed => Pushed::Out(self.extract.out.split().freeze()),
            Read::Done => Pushed::Ended(self.trailer()),
            Read::TooLarge => {
                self.extract.record_error(Some(event_too_large(limit)));
                Pushed::Cut(self.trailer())
            }
        }
    }

    /// The pending text, then `\n----------\n`, the metadata line, the error
    /// line and the session line (no newline after it).
    fn trailer(&mut self) -> Bytes {
        let extract = &mut self.extract;
        extract.fold_call_usage();
        let out = &mut extract.out;
        out.extend_from_slice(TRAILER_SEPARATOR);
        if let Some(metadata) = &extract.metadata {
            // The origin's own words reach the client here: scrubbed.
            let mut metadata = serde_json::Value::Object(metadata.clone());
            extract.scrubber.scrub_json(&mut metadata);
            out.extend_from_slice(&serde_json::to_vec(&metadata).unwrap_or_default());
            out.extend_from_slice(b"\n");
        }
        if let Some(error) = &extract.error {
            out.extend_from_slice(error_json(error.code, &error.message).as_bytes());
            out.extend_from_slice(b"\n");
        }
        let session = serde_json::json!({ "runtimeSessionId": self.session_id });
        out.extend_from_slice(session.to_string().as_bytes());
        out.split().freeze()
    }
}

/// The error of an event (or JSON body) over `limit` bytes.
fn event_too_large(limit: usize) -> StreamError {
    StreamError {
        code: Code::EventTooLarge,
        message: ParseError::EventTooLarge { limit }.to_string(),
    }
}

fn write_error_event(out: &mut BytesMut, error: &StreamError) {
    out.extend_from_slice(b"event: error\ndata: ");
    out.extend_from_slice(error_json(error.code, &error.message).as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// A JSON origin body as text: a JSON string as its text, any other JSON
/// compactly re-serialized, and anything that is not JSON as it is.
fn print_json(out: &mut BytesMut, body: &[u8]) {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::String(text)) => out.extend_from_slice(text.as_bytes()),
        Ok(value) => out.extend_from_slice(value.to_string().as_bytes()),
        Err(_) => out.extend_from_slice(String::from_utf8_lossy(body).as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::test_support::*;

    /// Original mode's meter counts what transformed mode counts, in every
    /// dialect, whatever the chunking, without changing a byte it relays.
    #[test]
    fn original_mode_is_metered_as_transformed() {
        let corpora = [
            (include_str!("../../tests/data/sse/strands-seed.sse"), None),
            (
                include_str!("../../tests/data/sse/anthropic-messages.sse"),
                None,
            ),
            (include_str!("../../tests/data/sse/openai-chunks.sse"), None),
            (SEED_002_STREAM, Some(38)),
        ];
        for (stream, expected) in corpora {
            let metered = |mode, chunk: usize| {
                let mut t = Transformer::new(
                    TransformerOptions {
                        mode,
                        body_kind: OriginBodyKind::EventStream,
                        max_event_bytes: 1 << 20,
                        keepalive_ms: None,
                        session_id: SESSION.into(),
                        meter: true,
                    },
                    0,
                );
                let mut out = Vec::new();
                for piece in stream.as_bytes().chunks(chunk) {
                    out.extend_from_slice(&t.push(Bytes::copy_from_slice(piece), 0));
                }
                out.extend_from_slice(&t.finish(None));
                (t.tokens(), t.text_bytes(), out)
            };
            let (tokens, text_bytes, _) = metered(ResponseMode::Transformed, stream.len());
            assert!(tokens.is_some_and(|n| n > 0), "usage in {stream:.80}");
            if expected.is_some() {
                assert_eq!(tokens, expected);
            }
            for chunk in [1, 7, 4096] {
                let (original, original_text, relayed) = metered(ResponseMode::Original, chunk);
                assert_eq!(original, tokens, "chunks of {chunk}: {stream:.80}");
                assert_eq!(original_text, text_bytes, "chunks of {chunk}");
                assert_eq!(relayed, stream.as_bytes(), "relayed unchanged");
            }
        }
    }

    #[test]
    fn the_meter_stops_where_transformed_mode_stops() {
        let stream = sse(&[
            r#"{"choices":[{"delta":{"content":"hi"}}]}"#,
            "[DONE]",
            r#"{"usage":{"total_tokens":7}}"#,
        ]);
        let mut t = Transformer::new(
            TransformerOptions {
                mode: ResponseMode::Original,
                body_kind: OriginBodyKind::EventStream,
                max_event_bytes: 1 << 20,
                keepalive_ms: None,
                session_id: SESSION.into(),
                meter: true,
            },
            0,
        );
        t.push(Bytes::from(stream), 0);
        assert_eq!((t.tokens(), t.text_bytes()), (None, 2));
    }

    #[test]
    fn usage_totals_in_every_dialect() {
        use super::super::dialect::total_tokens;
        use serde_json::json;
        let cases = [
            (
                json!({"inputTokens": 3, "outputTokens": 4, "totalTokens": 9}),
                Some(9),
            ),
            (json!({"inputTokens": 3, "outputTokens": 4}), Some(7)),
            (json!({"input_tokens": 5, "output_tokens": 6}), Some(11)),
            (json!({"output_tokens": 6}), Some(6)),
            (
                json!({"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}),
                Some(3),
            ),
            (json!({"prompt_tokens": 2, "completion_tokens": 1}), Some(3)),
            (json!({"cacheReadInputTokens": 2}), None),
        ];
        for (usage, expected) in cases {
            assert_eq!(total_tokens(&usage), expected, "{usage}");
        }
    }

    #[test]
    fn text_is_flushed_as_it_arrives() {
        let mut t = transformer(ResponseMode::Transformed, OriginBodyKind::EventStream);
        let stream = SEED_002_STREAM.as_bytes();
        let mut outputs = Vec::new();
        for chunk in stream.chunks(7) {
            outputs.push(t.push(Bytes::copy_from_slice(chunk), 0));
        }
        assert!(outputs.iter().filter(|out| !out.is_empty()).count() >= 6);
        let text: Vec<u8> = outputs.concat();
        assert!(text.ends_with(b"help with."));
        assert!(!t.is_finished());
        assert!(t.finish(None).starts_with(b"\n----------\n{\"usage\""));
        assert!(t.is_finished());
    }

    /// The fast path for AgentCore's deltas leaves an event over the limit
    /// to the parser, in both modes, metered or not.
    #[test]
    fn a_strands_delta_over_the_limit_is_refused_on_the_fast_path_too() {
        let delta = |text: &str| {
            format!(
                "data: {{\"event\": {{\"contentBlockDelta\": {{\"delta\": {{\"text\": \"{text}\"}}, \"contentBlockIndex\": 0}}}}}}\n\n"
            )
        };
        let stream = delta("fits") + &delta(&"x".repeat(100));
        for (mode, meter) in [
            (ResponseMode::Transformed, false),
            (ResponseMode::Original, true),
        ] {
            let mut t = Transformer::new(
                TransformerOptions {
                    mode,
                    body_kind: OriginBodyKind::EventStream,
                    max_event_bytes: 120,
                    keepalive_ms: None,
                    session_id: SESSION.into(),
                    meter,
                },
                0,
            );
            let out = t.push(Bytes::from(stream.clone()), 0);
            assert!(t.is_finished(), "{mode:?}");
            assert_eq!(t.ended_with_error(), Some(Code::EventTooLarge));
            assert_eq!(
                t.text_bytes(),
                4,
                "{mode:?}: {}",
                String::from_utf8_lossy(&out)
            );
        }
    }

    #[test]
    fn transformed_event_too_large_ends_with_error_line() {
        let mut t = Transformer::new(
            TransformerOptions {
                mode: ResponseMode::Transformed,
                body_kind: OriginBodyKind::EventStream,
                max_event_bytes: 64,
                keepalive_ms: None,
                session_id: SESSION.into(),
                meter: false,
            },
            0,
        );
        let ok = t.push(Bytes::from(sse(&[r#""fits""#])), 0);
        assert_eq!(&ok[..], b"fits");
        assert_eq!(t.ended_with_error(), None);
        let big = format!("data: \"{}", "x".repeat(40));
        assert!(t.push(Bytes::from(big.clone()), 0).is_empty());
        let out = t.push(Bytes::from(big), 0);
        let expected = format!(
            "\n----------\n{}\n{}",
            r#"{"error":{"code":"event_too_large","message":"an event from the agent exceeded the limit of 64 bytes"}}"#,
            session_line()
        );
        assert_eq!(String::from_utf8_lossy(&out), expected);
        assert!(t.is_finished());
        assert_eq!(t.ended_with_error(), Some(Code::EventTooLarge));
        assert!(t.finish(None).is_empty());
        let Kind::TransformedSse { parser, .. } = &mut t.kind else {
            panic!("{t:?}")
        };
        assert!(parser.next_event(&mut &b"\n\n"[..]).is_err());
    }

    fn json_transformed(body: &[&[u8]], max: usize) -> String {
        let mut t = Transformer::new(
            TransformerOptions {
                mode: ResponseMode::Transformed,
                body_kind: OriginBodyKind::Json,
                max_event_bytes: max,
                keepalive_ms: Some(5),
                session_id: SESSION.into(),
                meter: false,
            },
            0,
        );
        let mut out = Vec::new();
        for chunk in body {
            out.extend_from_slice(&t.push(Bytes::copy_from_slice(chunk), 0));
        }
        assert_eq!(t.idle_deadline(), None);
        out.extend_from_slice(&t.finish(None));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_origin_transformed_is_printed_before_the_trailer() {
        let trailer = format!("\n----------\n{}", session_line());
        assert_eq!(
            json_transformed(&[b"\"Hello", b" there\""], 1024),
            format!("Hello there{trailer}")
        );
        assert_eq!(
            json_transformed(&[b"{ \"b\": 1,\n \"a\": [true, null] }"], 1024),
            format!("{{\"b\":1,\"a\":[true,null]}}{trailer}")
        );
        assert_eq!(
            json_transformed(&[b"oops {"], 1024),
            format!("oops {{{trailer}")
        );
        let too_large = json_transformed(&[b"\"12345", b"67890\""], 8);
        assert!(
            too_large.starts_with("\n----------\n{\"error\":{\"code\":\"event_too_large\""),
            "{too_large}"
        );
    }

    #[test]
    fn json_origin_original_is_passed_through() {
        let mut t = transformer(ResponseMode::Original, OriginBodyKind::Json);
        let chunk = Bytes::from_static(b"{\"a\":");
        let out = t.push(chunk.clone(), 0);
        assert_eq!(out.as_ptr(), chunk.as_ptr());
        assert_eq!(t.idle_deadline(), None);
        assert_eq!(t.poll_idle(1_000_000), None);
        assert!(t
            .finish(Some(StreamError {
                code: Code::OriginStreamFailed,
                message: "y".into()
            }))
            .is_empty());
    }

    #[test]
    fn original_mode_returns_the_chunk_itself() {
        let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
        for chunk in SEED_002_STREAM.as_bytes().chunks(33) {
            let chunk = Bytes::copy_from_slice(chunk);
            let out = t.push(chunk.clone(), 0);
            assert_eq!((out.as_ptr(), out.len()), (chunk.as_ptr(), chunk.len()));
        }
        assert!(t.finish(None).is_empty());
        assert_eq!(t.usage(), None);
    }

    #[test]
    fn keepalive_only_when_idle_and_between_events() {
        let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
        assert_eq!(t.idle_deadline(), Some(1000));
        assert_eq!(t.poll_idle(999), None);
        assert_eq!(t.poll_idle(1000).as_deref(), Some(&b": keepalive\n\n"[..]));
        assert_eq!(t.idle_deadline(), Some(2000));
        t.push(Bytes::from_static(b"data: a\n\n"), 1500);
        assert_eq!(t.idle_deadline(), Some(2500));
        assert_eq!(t.poll_idle(2000), None);
        assert!(t.poll_idle(2500).is_some());
        // Inside an event (after `event: x`, or mid-line): no deadline at all.
        for partial in ["event: x\n", "data: {\"a\"", "data: a\r", ": comment"] {
            let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
            t.push(Bytes::copy_from_slice(partial.as_bytes()), 10);
            assert_eq!(t.idle_deadline(), None, "{partial:?}");
            assert_eq!(t.poll_idle(1_000_000), None);
            t.push(Bytes::from_static(b"\n\n"), 20);
            assert_eq!(t.idle_deadline(), Some(1020), "{partial:?}");
        }
        // A comment line that ended is a boundary.
        let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
        t.push(Bytes::from_static(b"data: a\n\n: ping\n"), 10);
        assert_eq!(t.idle_deadline(), Some(1010));
    }

    #[test]
    fn keepalives_off() {
        let mut t = transformer(ResponseMode::Transformed, OriginBodyKind::EventStream);
        assert_eq!(t.idle_deadline(), None);
        assert_eq!(t.poll_idle(1_000_000), None);
        for keepalive_ms in [None, Some(0)] {
            let mut t = Transformer::new(
                TransformerOptions {
                    mode: ResponseMode::Original,
                    body_kind: OriginBodyKind::EventStream,
                    max_event_bytes: 1024,
                    keepalive_ms,
                    session_id: SESSION.into(),
                    meter: false,
                },
                0,
            );
            assert_eq!(t.idle_deadline(), None);
            assert_eq!(t.poll_idle(1_000_000), None);
        }
        let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
        t.finish(None);
        assert_eq!(t.idle_deadline(), None);
    }

    #[test]
    fn keepalive_after_a_cr_is_parsed_as_the_client_would() {
        // "\r" ended the event; its LF arrives after the keepalive and must
        // then be a harmless blank line, not glue to anything.
        let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
        let mut wire = t.push(Bytes::from_static(b"data: a\n\r"), 0).to_vec();
        wire.extend_from_slice(&t.poll_idle(1000).unwrap());
        wire.extend_from_slice(&t.push(Bytes::from_static(b"\nevent: x\ndata: b\r"), 1100));
        assert_eq!(t.idle_deadline(), None);
        wire.extend_from_slice(&t.push(Bytes::from_static(b"\n\r\n"), 1200));
        let mut parser = Parser::new(1024);
        let mut input = &wire[..];
        let mut events = Vec::new();
        while let Some(event) = parser.next_event(&mut input).unwrap() {
            events.push((event.event.to_owned(), event.text().into_owned()));
        }
        assert_eq!(
            events,
            [("message".into(), "a".into()), ("x".into(), "b".into())]
        );
    }

    #[test]
    fn origin_bom_after_an_early_keepalive_is_dropped() {
        let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
        assert!(t.poll_idle(1000).is_some());
        assert!(t.push(Bytes::from_static(b"\xEF"), 1100).is_empty());
        assert!(t.push(Bytes::from_static(b"\xBB"), 1100).is_empty());
        assert_eq!(
            &t.push(Bytes::from_static(b"\xBFdata: a\n\n"), 1100)[..],
            b"data: a\n\n"
        );
        // Only the first bytes: a BOM later is content.
        assert_eq!(
            &t.push(Bytes::from_static(b"\xEF\xBB\xBF"), 1100)[..],
            b"\xEF\xBB\xBF"
        );

        let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
        assert!(t.poll_idle(1000).is_some());
        assert!(t.push(Bytes::from_static(b"\xEF\xBB"), 1100).is_empty());
        assert_eq!(&t.push(Bytes::from_static(b"x"), 1100)[..], b"\xEF\xBBx");

        let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
        assert!(t.poll_idle(1000).is_some());
        assert!(t.push(Bytes::from_static(b"\xEF"), 1100).is_empty());
        assert_eq!(&t.finish(None)[..], b"\xEF");

        // Without an early keepalive the client strips the BOM itself.
        let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
        assert_eq!(
            &t.push(Bytes::from_static(b"\xEF\xBB\xBFdata: a\n\n"), 10)[..],
            b"\xEF\xBB\xBFdata: a\n\n"
        );
        // And while the start could still be a BOM, no keepalive.
        let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
        t.push(Bytes::from_static(b"\xEF\xBB"), 10);
        assert_eq!(t.idle_deadline(), None);
    }

    fn original_failure(stream: &[u8]) -> String {
        let mut t = transformer(ResponseMode::Original, OriginBodyKind::EventStream);
        let mut wire = t.push(Bytes::copy_from_slice(stream), 0).to_vec();
        wire.extend_from_slice(&t.finish(Some(StreamError {
            code: Code::OriginStreamFailed,
            message: "broke".into(),
        })));
        assert!(t.is_finished());
        assert!(t.finish(None).is_empty());
        String::from_utf8(wire).unwrap()
    }

    #[test]
    fn original_mid_stream_failure_appends_an_error_event() {
        let error = "event: error\ndata: {\"error\":{\"code\":\"origin_stream_failed\",\"message\":\"broke\"}}\n\n";
        assert_eq!(
            original_failure(b"data: a\n\n"),
            format!("data: a\n\n{error}")
        );
        assert_eq!(original_failure(b""), error);
        assert_eq!(
            original_failure(b"data: {\"a"),
            format!("data: {{\"a\n\n{error}")
        );
        assert_eq!(
            original_failure(b"event: x\n"),
            format!("event: x\n\n{error}")
        );
        assert_eq!(
            original_failure(b"data: a\r"),
            format!("data: a\r\n\n{error}")
        );
        assert_eq!(
            original_failure(b"data: a\n\n: com"),
            format!("data: a\n\n: com\n{error}")
        );
        // Whatever the cut, the client parses the error event on its own.
        for stream in [
            "data: {\"a",
            "data: a\r",
            "event: x\ndata: y\n",
            ": c",
            "data: a\r\n\r",
        ] {
            let wire = original_failure(stream.as_bytes());
            let mut parser = Parser::new(1024);
            let mut input = wire.as_bytes();
            let mut last = None;
            while let Some(event) = parser.next_event(&mut input).unwrap() {
                last = Some((event.event.to_owned(), event.text().into_owned()));
            }
            let expected = r#"{"error":{"code":"origin_stream_failed","message":"broke"}}"#;
            assert_eq!(last, Some(("error".into(), expected.into())), "{stream:?}");
        }
    }

    #[test]
    fn original_event_too_large_ends_the_stream() {
        let limited = || {
            Transformer::new(
                TransformerOptions {
                    mode: ResponseMode::Original,
                    body_kind: OriginBodyKind::EventStream,
                    max_event_bytes: 32,
                    keepalive_ms: Some(1000),
                    session_id: SESSION.into(),
                    meter: false,
                },
                0,
            )
        };
        let error = "event: error\ndata: {\"error\":{\"code\":\"event_too_large\",\"message\":\"an event from the agent exceeded the limit of 32 bytes\"}}\n\n";
        // The event starts in this chunk: cut before it.
        let mut t = limited();
        let big = format!("data: ok\n\n: c\ndata: {}\n\n", "x".repeat(40));
        let out = t.push(Bytes::from(big), 0);
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("data: ok\n\n: c\n{error}")
        );
        assert!(t.is_finished());
        assert_eq!(t.ended_with_error(), Some(Code::EventTooLarge));
        assert!(t.push(Bytes::from_static(b"data: more\n\n"), 0).is_empty());
        assert!(t.finish(None).is_empty());
        assert_eq!(t.idle_deadline(), None);
        // It started earlier: close it, then the error event.
        let mut t = limited();
        assert_eq!(
            &t.push(Bytes::from_static(b"data: 0123456789"), 0)[..],
            b"data: 0123456789"
        );
        let out = t.push(Bytes::from_static(b"0123456789012345678\n\n"), 0);
        assert_eq!(String::from_utf8_lossy(&out), format!("\n\n{error}"));
    }

    #[test]
    fn content_type_to_body_kind() {
        use OriginBodyKind::*;
        assert_eq!(
            OriginBodyKind::from_content_type("text/event-stream"),
            Some(EventStream)
        );
        assert_eq!(
            OriginBodyKind::from_content_type("Text/Event-Stream; charset=utf-8"),
            Some(EventStream)
        );
        assert_eq!(
            OriginBodyKind::from_content_type("text/event-stream;"),
            Some(EventStream)
        );
        assert_eq!(
            OriginBodyKind::from_content_type("application/json"),
            Some(Json)
        );
        assert_eq!(
            OriginBodyKind::from_content_type("application/problem+json"),
            Some(Json)
        );
        assert_eq!(OriginBodyKind::from_content_type("text/x-bogus"), None);
        assert_eq!(OriginBodyKind::from_content_type("x bogus"), None);
        assert_eq!(OriginBodyKind::from_content_type(""), None);
    }
}
