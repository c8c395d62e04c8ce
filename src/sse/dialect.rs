//! The origin dialects of transformed mode: what text, metadata and errors
//! each `data` payload carries (Strands / Bedrock ConverseStream, AgentCore
//! SDK strings and errors, Anthropic Messages, OpenAI-style chunks, AG-UI
//! events, raw text), read in one pass into small borrowed structs; the
//! table is in `docs/interface.md`, "Transformed mode".
//!
//! Strands text deltas, nearly all of a Strands stream, are recognised token
//! by token before serde is involved ([`strands_text_delta`]). An error the
//! agent reports in-band becomes [`Code::AgentError`], its message scrubbed
//! ([`crate::scrub`]). AG-UI events have a module of their own ([`ag_ui`]).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use bytes::BytesMut;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::parser::Parser;
use ag_ui::is_ag_ui_type;
use strands::{
    count_plain_events, strands_delta_event, strands_text_delta, strands_without_text_or_usage,
};

mod ag_ui;
mod strands;
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
    /// The origin ended the answer in-band: OpenAI's `data: [DONE]`, or
    /// AG-UI's `RUN_FINISHED` or `RUN_ERROR`.
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
    /// The origin ended the answer ([`Extractor::done`]).
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
        // Before the other dialects: an AG-UI `RAW` event can wrap a Strands
        // event whose text was already streamed as AG-UI text.
        if payload.kind.as_deref().is_some_and(is_ag_ui_type) {
            self.on_ag_ui(&payload, is_error_event);
            return;
        }
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

/// A top-level `data` payload object.
#[derive(serde::Deserialize)]
struct Payload<'a> {
    /// Strands / Bedrock ConverseStream: `{"event":{..}}`.
    #[serde(borrow)]
    event: Option<ObjOrStr<'a, StrandsEvent<'a>>>,
    /// Anthropic and AG-UI: the event type.
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    /// Anthropic: `content_block_delta`'s delta (an object); AG-UI: a text
    /// or tool-call delta (a string), a state patch (an array).
    #[serde(borrow)]
    delta: Option<ObjOrStr<'a, Delta<'a>>>,
    /// Anthropic `message_start`'s message (an object), or the AgentCore
    /// SDK's and AG-UI `RUN_ERROR`'s error message (a string).
    #[serde(borrow)]
    message: Option<ObjOrStr<'a, MessageStart>>,
    /// AG-UI `RUN_ERROR`'s error code.
    #[serde(borrow)]
    code: Option<ObjOrStr<'a, IgnoredAny>>,
    /// Anthropic `message_delta`, OpenAI's final chunk (objects); AG-UI
    /// `RUN_FINISHED` and `RUN_ERROR` (an array).
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
