//! Strands events read straight from their bytes: nearly every event of an
//! AgentCore stream is a text delta of one fixed shape, and matching that
//! shape token by token is several times faster than serde. Each function
//! answers `None` (or stops) at anything else, which the parser and the
//! general dialect path then read.

use std::borrow::Cow;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny};

use super::ObjOrStr;

/// A whole Strands text delta event at the start of `input` as AgentCore's
/// SDK frames it: `data: ` and the delta's JSON in `json.dumps` or compact
/// spacing, a string without escapes, `\n\n`. Returns where its text is
/// and the event's length; `None` for anything else (another event, another
/// framing, an escape, an event cut by the chunk's end), which the parser
/// then reads. The text is what [`strands_text_delta`] would take.
pub(super) fn strands_delta_event(input: &[u8]) -> Option<(std::ops::Range<usize>, usize)> {
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
pub(super) fn count_plain_events(input: &[u8], limit: usize) -> (usize, u64) {
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
pub(super) fn strands_without_text_or_usage(data: &[u8]) -> bool {
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
pub(super) fn strands_text_delta(data: &[u8]) -> Option<Cow<'_, [u8]>> {
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
