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
//!   at the end, the trailer. The origin's own end of the answer (OpenAI's
//!   `data: [DONE]`, AG-UI's `RUN_FINISHED` or `RUN_ERROR`) ends the stream.
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
        // After the origin's own end (`[DONE]`, AG-UI's `RUN_FINISHED`)
        // transformed mode reads nothing more: nor does the meter. An event over the limit: the tracker cuts the
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
    /// origin's own end, `[DONE]` or AG-UI's `RUN_FINISHED`, ended it inside
    /// `push`); the adapter then stops
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
    /// The origin ended the answer here (`[DONE]`, AG-UI's `RUN_FINISHED`).
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
mod tests;
