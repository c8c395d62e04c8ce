//! The origin dialects of transformed mode: what text, metadata and errors
//! each `data` payload carries (Strands / Bedrock ConverseStream, AgentCore
//! SDK strings and errors, Anthropic Messages, OpenAI-style chunks, raw
//! text), read in one pass into small borrowed structs; the table is in
//! `docs/interface.md`, "Transformed mode".
//!
//! Strands text deltas, nearly all of a Strands stream, are recognised token
//! by token before serde is involved ([`strands_text_delta`]). An error the
//! agent reports in-band becomes [`Code::AgentError`], its message scrubbed
//! ([`crate::scrub`]).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use bytes::BytesMut;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::parser::Parser;
use crate::error::{Code, StreamError};
use crate::scrub::Scrubber;

/// Longest agent error message kept for the trailer, in bytes.
const MAX_AGENT_ERROR_MESSAGE: usize = 512;

/// What transformed mode has taken from the events so far.
#[derive(Debug, Default)]
pub(super) struct Extractor {
    /// Text not yet returned (and the trailer being built).
    pub(super) out: BytesMut,
    /// The merged metadata object; `None` until the origin sends usage.
    pub(super) metadata: Option<Map<String, Value>>,
    /// Anthropic: the usage of the message in progress (`message_delta`
    /// counts are cumulative within a message, so they replace, not add).
    pub(super) call_usage: Option<Map<String, Value>>,
    /// The first error reported, in-band or by `finish`.
    pub(super) error: Option<StreamError>,
    /// OpenAI's `data: [DONE]` was seen.
    pub(super) done: bool,
    /// For what reaches the client from the agent's own words (error
    /// messages, metadata).
    pub(super) scrubber: Scrubber,
    /// Bytes of answer text seen (the usage estimate's).
    pub(super) text_bytes: u64,
    /// Text is counted, not kept: original mode's meter.
    pub(super) count_only: bool,
}

/// How [`Extractor::read`] stopped.
pub(super) enum Read {
    /// The input is used up.
    Consumed,
    /// OpenAI's `data: [DONE]`: the stream is over.
    Done,
    /// An event over the parser's limit.
    TooLarge,
}

impl Extractor {
    /// Takes what the events of `input` carry. Strands text deltas framed as
    /// AgentCore frames them, nearly every event of a stream, are read
    /// straight from the bytes between events ([`strands_delta_event`]);
    /// `parser` reads everything else.
    pub(super) fn read(&mut self, parser: &mut Parser, mut input: &[u8]) -> Read {
        loop {
            if parser.between_events() {
                // An event over the limit is the parser's to refuse.
                let limit = parser.max_event_bytes();
                if self.count_only {
                    let (len, text_bytes) = count_plain_events(input, limit);
                    self.text_bytes += text_bytes;
                    input = &input[len..];
                } else {
                    while let Some((text, len)) =
                        strands_delta_event(input).filter(|&(_, len)| len <= limit)
                    {
                        self.text(&input[text]);
                        input = &input[len..];
                    }
                }
            }
            match parser.next_event(&mut input) {
                Ok(Some(event)) => {
                    self.on_event(event.event, event.data);
                    if self.done {
                        return Read::Done;
                    }
                }
                Ok(None) => return Read::Consumed,
                Err(_) => return Read::TooLarge,
            }
        }
    }

    fn text(&mut self, text: &[u8]) {
        self.text_bytes += text.len() as u64;
        if !self.count_only {
            self.out.extend_from_slice(text);
        }
    }

    /// Takes what the event carries.
    pub(super) fn on_event(&mut self, event_type: &str, data: &[u8]) {
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        let is_error_event = event_type == "error";
        if !is_error_event {
            if let Some(text) = strands_text_delta(data) {
                self.text(&text);
                return;
            }
        }
        if self.count_only && strands_without_text_or_usage(data) {
            // The meter wants text and usage only: spare it the parse.
            return;
        }
        match serde_json::from_slice::<ObjOrStr<Payload>>(data) {
            Ok(ObjOrStr::Obj(payload)) => self.on_payload(payload, is_error_event),
            Ok(ObjOrStr::Str(text)) if is_error_event => self.agent_error(None, &text),
            Ok(ObjOrStr::Str(text)) => self.text(text.as_bytes()),
            Ok(ObjOrStr::Other) => {}
            Err(_) => match std::str::from_utf8(data) {
                // serde_json rejects invalid UTF-8 that the spec's decoder
                // replaces before anything else: judge the decoded text.
                Err(_) => self.on_event(event_type, String::from_utf8_lossy(data).as_bytes()),
                Ok(_) if serde_json::from_slice::<IgnoredAny>(data).is_ok() => {
                    // JSON of a shape no dialect uses: not text, dropped.
                }
                Ok(text) if is_error_event => self.agent_error(None, text),
                Ok(text) => self.text(text.as_bytes()),
            },
        }
    }

    fn on_payload(&mut self, payload: Payload<'_>, is_error_event: bool) {
        // Strands / Bedrock ConverseStream.
        if let Some(ObjOrStr::Obj(event)) = payload.event {
            if let Some(text) = event
                .content_block_delta
                .and_then(|block| block.delta)
                .and_then(|delta| delta.text)
            {
                self.text(text.as_bytes());
            }
            if let Some(metadata) = event.metadata {
                self.merge_metadata(*metadata);
            }
        }
        // AgentCore SDK errors (`error` is a string), Anthropic and our own
        // error events (`error` is an object).
        match &payload.error {
            Some(ObjOrStr::Str(error)) => self.agent_error(payload.error_type.as_deref(), error),
            Some(ObjOrStr::Obj(error)) => {
                let label = error.kind.as_deref().or(match &error.code {
                    Some(ObjOrStr::Str(code)) => Some(code.as_ref()),
                    _ => None,
                });
                let message = error
                    .message
                    .as_deref()
                    .unwrap_or("the agent reported an error");
                self.agent_error(label, message);
            }
            _ if is_error_event || payload.kind.as_deref() == Some("error") => {
                self.agent_error(None, "the agent reported an error");
            }
            _ => {}
        }
        match payload.kind.as_deref() {
            // Anthropic Messages stream.
            Some("content_block_delta") => {
                if let Some(ObjOrStr::Obj(delta)) = payload.delta {
                    if matches!(delta.kind.as_deref(), None | Some("text_delta")) {
                        if let Some(text) = delta.text {
                            self.text(text.as_bytes());
                        }
                    }
                }
            }
            Some("message_start") => {
                self.fold_call_usage();
                if let Some(ObjOrStr::Obj(message)) = payload.message {
                    if let Some(Value::Object(usage)) = message.usage.map(|usage| *usage) {
                        self.call_usage = Some(usage);
                    }
                }
            }
            Some("message_delta") => {
                if let Some(Value::Object(usage)) = payload.usage.map(|usage| *usage) {
                    let call = self.call_usage.get_or_insert_with(Map::new);
                    for (key, value) in usage {
                        if !value.is_null() {
                            call.insert(key, value);
                        }
                    }
                }
            }
            Some("message_stop") => self.fold_call_usage(),
            // OpenAI-style chunks, and any other event with a top-level usage.
            _ => {
                if let Some(First(Some(choice))) = payload.choices {
                    if let Some(text) = choice.delta.and_then(|delta| delta.content) {
                        self.text(text.as_bytes());
                    }
                }
                if let Some(usage @ Value::Object(_)) = payload.usage.map(|usage| *usage) {
                    self.add_usage(usage);
                }
            }
        }
    }

    fn agent_error(&mut self, label: Option<&str>, message: &str) {
        let message = match label {
            Some(label) => format!("{label}: {message}"),
            None => message.to_owned(),
        };
        self.record_error(Some(StreamError {
            code: Code::AgentError,
            message: self
                .scrubber
                .scrub_bounded(&message, MAX_AGENT_ERROR_MESSAGE),
        }));
    }

    /// Keeps `error` unless an earlier one was recorded.
    pub(super) fn record_error(&mut self, error: Option<StreamError>) {
        if self.error.is_none() {
            self.error = error;
        }
    }

    /// Adds one model call's metadata: `usage` and `metrics` are summed,
    /// other keys take the latest value; keys keep their first position.
    fn merge_metadata(&mut self, metadata: Map<String, Value>) {
        let Some(merged) = &mut self.metadata else {
            self.metadata = Some(metadata);
            return;
        };
        for (key, value) in metadata {
            match merged.get_mut(&key) {
                Some(existing) if key == "usage" || key == "metrics" => sum_into(existing, value),
                Some(existing) => *existing = value,
                None => {
                    merged.insert(key, value);
                }
            }
        }
    }

    fn add_usage(&mut self, usage: Value) {
        let metadata = self.metadata.get_or_insert_with(Map::new);
        match metadata.get_mut("usage") {
            Some(existing) => sum_into(existing, usage),
            None => {
                metadata.insert("usage".to_owned(), usage);
            }
        }
    }

    /// The tokens of the usage so far ([`total_tokens`]), the Anthropic
    /// message in progress folded in as the trailer would fold it.
    pub(super) fn tokens(&self) -> Option<u64> {
        let folded = self.metadata.as_ref().and_then(|m| m.get("usage"));
        let usage = match (folded, &self.call_usage) {
            (usage, None) => usage.cloned(),
            (None, Some(call)) => Some(Value::Object(call.clone())),
            (Some(usage), Some(call)) => {
                let mut usage = usage.clone();
                sum_into(&mut usage, Value::Object(call.clone()));
                Some(usage)
            }
        };
        usage.as_ref().and_then(total_tokens)
    }

    /// Adds the usage of the Anthropic message in progress.
    pub(super) fn fold_call_usage(&mut self) {
        if let Some(usage) = self.call_usage.take() {
            self.add_usage(Value::Object(usage));
        }
    }
}

/// The tokens a summed `usage` object counts: `totalTokens` (or
/// `total_tokens`), else input plus output in any dialect (Bedrock/Strands
/// `inputTokens`/`outputTokens`, Anthropic `input_tokens`/`output_tokens`,
/// OpenAI `prompt_tokens`/`completion_tokens`).
pub fn total_tokens(usage: &Value) -> Option<u64> {
    let count = |key: &str| usage.get(key).and_then(Value::as_u64);
    let total = count("totalTokens").or_else(|| count("total_tokens"));
    total.or_else(|| {
        let pair = |input: &str, output: &str| match (count(input), count(output)) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
        };
        pair("inputTokens", "outputTokens")
            .or_else(|| pair("input_tokens", "output_tokens"))
            .or_else(|| pair("prompt_tokens", "completion_tokens"))
    })
}

/// Adds `src` into `dst`: numbers are summed (integers stay integers),
/// objects recursively, new keys appended; null never overwrites.
fn sum_into(dst: &mut Value, src: Value) {
    match (dst, src) {
        (_, Value::Null) => {}
        (Value::Object(dst), Value::Object(src)) => {
            for (key, value) in src {
                match dst.get_mut(&key) {
                    Some(existing) => sum_into(existing, value),
                    None if value.is_null() => {}
                    None => {
                        dst.insert(key, value);
                    }
                }
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            let sum = if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
                x.checked_add(y).map(serde_json::Number::from)
            } else if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
                x.checked_add(y).map(serde_json::Number::from)
            } else {
                None
            };
            let sum = sum.or_else(|| {
                serde_json::Number::from_f64(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0))
            });
            if let Some(sum) = sum {
                *a = sum;
            }
        }
        (dst, src) => *dst = src,
    }
}

/// A whole Strands text delta event at the start of `input` as AgentCore's
/// SDK frames it: `data: ` and the delta's JSON in `json.dumps` or compact
/// spacing, a string without escapes, `\n\n`. Returns where its text is
/// and the event's length; `None` for anything else (another event, another
/// framing, an escape, an event cut by the chunk's end), which the parser
/// then reads. The text is what [`strands_text_delta`] would take.
fn strands_delta_event(input: &[u8]) -> Option<(std::ops::Range<usize>, usize)> {
    const SPACED_TAIL: &[u8] = br#", "contentBlockIndex": "#;
    const COMPACT_TAIL: &[u8] = br#","contentBlockIndex":"#;
    let after_field = input.strip_prefix(b"data:")?;
    let value = after_field.strip_prefix(b" ").unwrap_or(after_field);
    let (rest, index_tail) = match (
        value.strip_prefix(STRANDS_SPACED),
        value.strip_prefix(STRANDS_COMPACT),
    ) {
        (Some(rest), _) => (rest, SPACED_TAIL),
        (None, Some(rest)) => (rest, COMPACT_TAIL),
        (None, None) => return None,
    };
    let body = rest.strip_prefix(b"\"")?;
    // Deltas are a few words: a plain loop beats a vectorised search here.
    let end = body
        .iter()
        .position(|&b| matches!(b, b'"' | b'\\' | 0..=0x1F))?;
    let text = &body[..end];
    if body[end] != b'"' {
        return None;
    }
    if !text.is_ascii() {
        std::str::from_utf8(text).ok()?;
    }
    let mut tail = body[end + 1..].strip_prefix(b"}")?;
    if let Some(index) = tail.strip_prefix(index_tail) {
        let digits = index.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && index[0] == b'0') {
            return None;
        }
        tail = &index[digits..];
    }
    let after = tail.strip_prefix(b"}}}\n\n")?;
    let start = input.len() - body.len();
    Some((start..start + end, input.len() - after.len()))
}

/// The meter's fast path between events: the length of the events at the
/// start of `input` that AgentCore frames as one `data: ` line and a blank
/// line and that carry no usage, and the bytes of their text once decoded.
/// These are Strands text deltas (escapes decoded as serde_json would) and
/// the Strands events without text (see [`strands_without_text_or_usage`]);
/// it stops at anything else, or an event over `limit` bytes, which the
/// parser then reads.
fn count_plain_events(input: &[u8], limit: usize) -> (usize, u64) {
    const HEAD: &[u8] = br#"data: {"event": {""#;
    const DELTA: &[u8] = br#"data: {"event": {"contentBlockDelta": {"delta": {"text": ""#;
    const INDEX_TAIL: &[u8] = br#"}, "contentBlockIndex": "#;
    // Nearly every delta ends so: one comparison instead of the general tail.
    const FIRST_BLOCK_END: &[u8] = b"}, \"contentBlockIndex\": 0}}}\n\n";
    let mut pos = 0;
    let mut text_bytes = 0;
    loop {
        let event = &input[pos..];
        let skipped = if let Some(string) = event.strip_prefix(DELTA) {
            let Some((decoded, rest)) = decoded_string_len(string) else {
                break;
            };
            let after = match rest.strip_prefix(FIRST_BLOCK_END) {
                Some(after) => after,
                None => {
                    let Some(rest) = rest.strip_prefix(INDEX_TAIL) else {
                        break;
                    };
                    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                    if digits == 0 || (digits > 1 && rest[0] == b'0') {
                        break;
                    }
                    let Some(after) = rest[digits..].strip_prefix(b"}}}\n\n") else {
                        break;
                    };
                    after
                }
            };
            let len = event.len() - after.len();
            if len > limit {
                break;
            }
            text_bytes += decoded;
            len
        } else if event.starts_with(HEAD) {
            let line_start = pos + "data: ".len();
            let Some(line_len) = memchr::memchr(b'\n', &input[line_start..]) else {
                break;
            };
            let line = &input[line_start..line_start + line_len];
            let blank_follows = input.get(line_start + line_len + 1) == Some(&b'\n');
            if !blank_follows
                || line_len + "data: ".len() + 2 > limit
                || memchr::memchr(b'\r', line).is_some()
                || !strands_without_text_or_usage(line)
            {
                break;
            }
            "data: ".len() + line_len + 2
        } else {
            break;
        };
        pos += skipped;
    }
    (pos, text_bytes)
}

/// The decoded length in bytes of the JSON string whose body (after the
/// opening quote) starts `bytes`, and what follows its closing quote;
/// `None` where serde_json would refuse it (a control character, a bad
/// escape, a lone surrogate) or the string is cut off. Bytes past ASCII are
/// counted as received: this is an estimate's input, not validated text.
fn decoded_string_len(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut len = 0u64;
    let mut i = 0;
    loop {
        let plain = plain_run(bytes.get(i..)?);
        i += plain;
        len += plain as u64;
        match *bytes.get(i)? {
            b'"' => return Some((len, &bytes[i + 1..])),
            b'\\' => {
                let escape = *bytes.get(i + 1)?;
                if escape == b'u' {
                    let unit = |at: usize| {
                        let hex = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
                        u16::from_str_radix(hex, 16).ok()
                    };
                    let first = unit(i + 2)?;
                    i += 6;
                    len += match first {
                        0..=0x7F => 1,
                        0x80..=0x7FF => 2,
                        0xD800..=0xDBFF => {
                            // A high surrogate needs its low half next.
                            if bytes.get(i..i + 2)? != b"\\u"
                                || !(0xDC00..=0xDFFF).contains(&unit(i + 2)?)
                            {
                                return None;
                            }
                            i += 6;
                            4
                        }
                        0xDC00..=0xDFFF => return None,
                        _ => 3,
                    };
                    continue;
                }
                if !matches!(
                    escape,
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't'
                ) {
                    return None;
                }
                len += 1;
                i += 2;
            }
            // A control character.
            _ => return None,
        }
    }
}

/// How many bytes at the start of `bytes` need no decoding in a JSON
/// string: anything but `"`, `\` and control characters. Eight at a time
/// (the SWAR tests of "Bit Twiddling Hacks"): deltas are short, too short
/// for a vectorised search to pay off.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(word) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let zero_in = |y: u64| y.wrapping_sub(ONES) & !y & HIGHS;
        // Bytes below 0x20 (high bit clear), `"`, `\`.
        let special = (x.wrapping_sub(ONES * 0x20) & !x & HIGHS)
            | zero_in(x ^ (ONES * u64::from(b'"')))
            | zero_in(x ^ (ONES * u64::from(b'\\')));
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + bytes[i..]
        .iter()
        .take_while(|&&b| b >= 0x20 && b != b'"' && b != b'\\')
        .count()
}

/// A Strands event that carries neither text nor usage (the start and end
/// of a message or content block, a tool use's input), by its first key.
fn strands_without_text_or_usage(data: &[u8]) -> bool {
    const KINDS: [&[u8]; 4] = [
        b"messageStart\"",
        b"messageStop\"",
        b"contentBlockStart\"",
        b"contentBlockStop\"",
    ];
    const TOOL_USE_SPACED: &[u8] = br#"contentBlockDelta": {"delta": {"toolUse""#;
    const TOOL_USE_COMPACT: &[u8] = br#"contentBlockDelta":{"delta":{"toolUse""#;
    let Some(kind) = data
        .strip_prefix(br#"{"event": {""#)
        .or_else(|| data.strip_prefix(br#"{"event":{""#))
    else {
        return false;
    };
    let known = KINDS.iter().any(|k| kind.starts_with(k))
        || kind.starts_with(TOOL_USE_SPACED)
        || kind.starts_with(TOOL_USE_COMPACT);
    // A usage beside the event would count (any top-level `usage` does).
    known && memchr::memmem::find(kind, b"usage").is_none()
}

/// The Strands delta prefix as AgentCore (Python `json.dumps`) writes it.
const STRANDS_SPACED: &[u8] = br#"{"event": {"contentBlockDelta": {"delta": {"text": "#;
/// The same, as compact serializers write it.
const STRANDS_COMPACT: &[u8] = br#"{"event":{"contentBlockDelta":{"delta":{"text":"#;

/// The text (UTF-8 checked) of `{"event":{"contentBlockDelta":{"delta":{"text":<string>}}}}`
/// with an optional `"contentBlockIndex":<n>` after the delta, in any JSON
/// spacing: nearly every event of a Strands stream. Matched token by token
/// with only the string handed to serde_json, which is several times faster
/// than the general path; `None` for anything else, including anything
/// malformed, which the general path then judges.
fn strands_text_delta(data: &[u8]) -> Option<Cow<'_, [u8]>> {
    const HEAD: [&[u8]; 12] = [
        b"{",
        b"\"event\"",
        b":",
        b"{",
        b"\"contentBlockDelta\"",
        b":",
        b"{",
        b"\"delta\"",
        b":",
        b"{",
        b"\"text\"",
        b":",
    ];
    let mut rest = match (
        data.strip_prefix(STRANDS_SPACED),
        data.strip_prefix(STRANDS_COMPACT),
    ) {
        (Some(rest), _) | (None, Some(rest)) => rest,
        (None, None) => {
            let mut rest = data;
            for token in HEAD {
                rest = skip_json_space(rest).strip_prefix(token)?;
            }
            rest
        }
    };
    let (text, after) = json_string(skip_json_space(rest))?;
    rest = after;
    rest = skip_json_space(skip_json_space(rest).strip_prefix(b"}")?);
    if let Some(after_comma) = rest.strip_prefix(b",") {
        rest = skip_json_space(after_comma).strip_prefix(b"\"contentBlockIndex\"")?;
        rest = skip_json_space(skip_json_space(rest).strip_prefix(b":")?);
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && rest[0] == b'0') {
            return None;
        }
        rest = &rest[digits..];
    }
    for token in [b"}", b"}", b"}"] {
        rest = skip_json_space(rest).strip_prefix(token)?;
    }
    skip_json_space(rest).is_empty().then_some(text)
}

/// The JSON string at the start of `bytes` and what follows it. A string
/// without escapes is checked and borrowed here (the common case, and
/// cheaper than setting up a deserializer); serde_json reads the others.
fn json_string(bytes: &[u8]) -> Option<(Cow<'_, [u8]>, &[u8])> {
    let body = bytes.strip_prefix(b"\"")?;
    // One pass: find the closing quote, give up on a control character
    // (not allowed in JSON strings), hand escapes to serde_json, and only
    // validate UTF-8 when there is a non-ASCII byte.
    let mut ascii = true;
    for (end, &byte) in body.iter().enumerate() {
        match byte {
            b'"' => {
                let text = &body[..end];
                if !ascii {
                    std::str::from_utf8(text).ok()?;
                }
                return Some((Cow::Borrowed(text), &body[end + 1..]));
            }
            b'\\' => break,
            0..=0x1F => return None,
            0x80.. => ascii = false,
            _ => {}
        }
    }
    let mut strings = serde_json::Deserializer::from_slice(bytes).into_iter::<CowStr>();
    let CowStr(text) = strings.next()?.ok()?;
    let text = match text {
        Cow::Borrowed(text) => Cow::Borrowed(text.as_bytes()),
        Cow::Owned(text) => Cow::Owned(text.into_bytes()),
    };
    Some((text, &bytes[strings.byte_offset()..]))
}

fn skip_json_space(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'\n' | b'\r', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// A JSON string, borrowed when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match ObjOrStr::<IgnoredAny>::deserialize(deserializer)? {
            ObjOrStr::Str(text) => Ok(CowStr(text)),
            _ => Err(de::Error::custom("expected a string")),
        }
    }
}

// ---- the borrowed shapes of the dialects' payloads ----
// Every field is optional and unknown fields are skipped, so one struct
// reads all dialects in a single pass.

/// A top-level `data` payload object.
#[derive(serde::Deserialize)]
struct Payload<'a> {
    /// Strands / Bedrock ConverseStream: `{"event":{..}}`.
    #[serde(borrow)]
    event: Option<ObjOrStr<'a, StrandsEvent<'a>>>,
    /// Anthropic: the event type.
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    /// Anthropic: `content_block_delta`'s delta.
    #[serde(borrow)]
    delta: Option<ObjOrStr<'a, Delta<'a>>>,
    /// Anthropic `message_start`'s message (an object), or the AgentCore
    /// SDK's error message (a string).
    #[serde(borrow)]
    message: Option<ObjOrStr<'a, MessageStart>>,
    /// Anthropic `message_delta`, OpenAI's final chunk.
    usage: Option<Box<Value>>,
    /// OpenAI-style chunks: only the first choice is read.
    #[serde(borrow)]
    choices: Option<First<Choice<'a>>>,
    #[serde(borrow)]
    error: Option<ObjOrStr<'a, Box<ErrorObject<'a>>>>,
    #[serde(borrow)]
    error_type: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct StrandsEvent<'a> {
    #[serde(rename = "contentBlockDelta", borrow)]
    content_block_delta: Option<ContentBlockDelta<'a>>,
    metadata: Option<Box<Map<String, Value>>>,
}

#[derive(serde::Deserialize)]
struct ContentBlockDelta<'a> {
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
}

/// Strands' `{"text":..}` (tool-use and reasoning deltas have no `text`)
/// and Anthropic's `{"type":"text_delta","text":..}`.
#[derive(serde::Deserialize)]
struct Delta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct MessageStart {
    usage: Option<Box<Value>>,
}

#[derive(serde::Deserialize)]
struct Choice<'a> {
    #[serde(borrow)]
    delta: Option<ChoiceDelta<'a>>,
}

#[derive(serde::Deserialize)]
struct ChoiceDelta<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct ErrorObject<'a> {
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<ObjOrStr<'a, IgnoredAny>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
}

/// A value that is an object read as `T`, a string, or anything else
/// (skipped): fields whose type differs between dialects.
enum ObjOrStr<'a, T> {
    Obj(T),
    Str(Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for ObjOrStr<'a, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjOrStrVisitor<'a, T>(PhantomData<(&'a (), T)>);

        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for ObjOrStrVisitor<'a, T> {
            type Value = ObjOrStr<'a, T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(ObjOrStr::Obj)
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(ObjOrStr::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(ObjOrStr::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(ObjOrStr::Str(Cow::Owned(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ObjOrStr::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(ObjOrStr::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(ObjOrStr::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(ObjOrStr::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(ObjOrStr::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ObjOrStr::Other)
            }
        }

        deserializer.deserialize_any(ObjOrStrVisitor(PhantomData))
    }
}

/// The first element of an array, the rest skipped without allocating.
struct First<T>(Option<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for First<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FirstVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for FirstVisitor<T> {
            type Value = First<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let first = seq.next_element()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(First(first))
            }
        }

        deserializer.deserialize_seq(FirstVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests;
