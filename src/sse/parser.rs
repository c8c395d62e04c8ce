//! The incremental Server-Sent Events parser, and the lighter boundary
//! tracker that original mode uses instead of it.
//!
//! Both follow the WHATWG HTML algorithm, "Interpreting an event stream"
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>),
//! as the interface promises: LF, CR and CRLF line ends (a CR at
//! the end of one chunk and its LF at the start of the next are one line end),
//! one leading BOM stripped at the start of the stream only, comments,
//! `event`/`id`/`retry` fields, multi-line `data`, an `id` containing NUL
//! ignored, and lines, events and UTF-8 characters split anywhere across
//! chunks.
//!
//! One prelude (the leading BOM, the LF of a CRLF split across chunks)
//! serves both. Like `httparse`, the state lives in the struct and the
//! caller feeds byte slices; running out of input is not an error, it just returns `None`.
//! Line ends are found with `memchr`, whole line slices are copied at once,
//! and the buffers are reused from one event to the next.
//!
//! Memory is bounded: the field lines of one event (the line being read
//! included, line ends excluded, comments not counted because they are never
//! held) may total at most `max_event_bytes`; beyond that the parser reports
//! [`ParseError::EventTooLarge`] and stays failed.
//!
//! Event data is handed out as bytes with a decoding helper
//! ([`Event::text`]); the event type and id are decoded when read. UTF-8 is
//! decoded with replacement characters, which per line gives the same text
//! as the spec's stream decoder: CR and LF are ASCII, so no multi-byte
//! sequence can span a line end.
//!
//! Hand-written rather than taken from `eventsource-stream` or similar crates
//! because those are `Stream` adapters that allocate a `String` per field and
//! event and have no size limit; the core needs a sans-IO parser that lends
//! out borrowed events, and original mode needs [`BoundaryTracker`], which
//! no crate offers.

use std::fmt;
use std::mem;

use memchr::{memchr, memchr2};

/// The byte order mark a stream may start with (UTF-8 encoded U+FEFF).
pub(crate) const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// How far the bytes of a chunk go towards a BOM of which `matched` bytes
/// were seen before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BomMatch {
    /// The chunk ended inside the BOM: `matched` bytes of it so far.
    Partial(u8),
    /// The BOM is complete after the first `len` bytes of the chunk.
    Complete { len: usize },
    /// Not a BOM: content starts at `at` in the chunk, after the BOM's
    /// first `matched` bytes, which were content too.
    Mismatch { at: usize, matched: u8 },
}

/// Matches a BOM across chunks: the one rule for the parser, the boundary
/// tracker and the transformer's held BOM.
pub(crate) fn match_bom(matched: u8, chunk: &[u8]) -> BomMatch {
    let mut matched = matched;
    for (at, &byte) in chunk.iter().enumerate() {
        if byte != BOM[usize::from(matched)] {
            return BomMatch::Mismatch { at, matched };
        }
        matched += 1;
        if usize::from(matched) == BOM.len() {
            return BomMatch::Complete { len: at + 1 };
        }
    }
    BomMatch::Partial(matched)
}

/// What precedes the content of each chunk, shared by [`Parser`] and
/// [`BoundaryTracker`]: the stream's leading BOM (stripped once, at the very
/// start only) and the LF completing a CR that ended the previous chunk.
#[derive(Debug, Clone, Copy, Default)]
struct Prelude {
    /// BOM bytes seen at the stream's start so far.
    bom_matched: u8,
    /// The BOM window is closed (a BOM was stripped, or content began).
    bom_done: bool,
    /// The last byte seen was a CR ending a line: an LF next belongs to it.
    after_cr: bool,
}

/// Where the content of a chunk starts.
enum ContentStart {
    /// The chunk is used up while the stream's BOM may still be arriving.
    NotYet,
    /// Content starts at `pos`, after `bom_prefix`: bytes that looked like a
    /// BOM but were not, and so start the first line.
    At {
        pos: usize,
        bom_prefix: &'static [u8],
    },
}

impl Prelude {
    /// Consumes the BOM and the LF of a split CRLF at the start of `buf`.
    fn skip(&mut self, buf: &[u8]) -> ContentStart {
        let mut pos = 0;
        let mut bom_prefix: &'static [u8] = &[];
        if !self.bom_done {
            match match_bom(self.bom_matched, buf) {
                BomMatch::Partial(matched) => {
                    self.bom_matched = matched;
                    return ContentStart::NotYet;
                }
                BomMatch::Complete { len } => pos = len,
                BomMatch::Mismatch { at, matched } => {
                    pos = at;
                    bom_prefix = &BOM[..usize::from(matched)];
                }
            }
            self.bom_done = true;
        }
        if self.after_cr && pos < buf.len() {
            self.after_cr = false;
            if buf[pos] == b'\n' {
                pos += 1;
            }
        }
        ContentStart::At { pos, bom_prefix }
    }

    /// Skips the line end (LF, CR or CRLF) at `buf[at]`; returns the next
    /// position. A CR ending `buf` may be the first half of a CRLF.
    fn skip_line_end(&mut self, buf: &[u8], at: usize) -> usize {
        if buf[at] == b'\r' {
            match buf.get(at + 1) {
                Some(b'\n') => return at + 2,
                Some(_) => {}
                None => self.after_cr = true,
            }
        }
        at + 1
    }

    /// True while a BOM has started but not finished arriving.
    fn inside_bom(&self) -> bool {
        !self.bom_done && self.bom_matched > 0
    }

    /// True before any byte of the stream.
    fn at_stream_start(&self) -> bool {
        !self.bom_done && self.bom_matched == 0
    }
}

/// Why the parser stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// One event's field lines exceeded the configured limit (in bytes).
    EventTooLarge { limit: usize },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::EventTooLarge { limit } => {
                write!(
                    f,
                    "an event from the agent exceeded the limit of {limit} bytes"
                )
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// One dispatched event, borrowed from the parser (and the input) until the
/// next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event type: the last `event` field, or `"message"` without one.
    pub event: &'a str,
    /// The `data` lines joined with `\n`, as bytes: consumers that parse
    /// JSON validate UTF-8 only where it matters; [`Event::text`] decodes.
    pub data: &'a [u8],
    /// The last event ID buffer at dispatch time (the event's `lastEventId`).
    pub id: &'a str,
}

impl<'a> Event<'a> {
    /// The data decoded as the spec's UTF-8 decoder does (invalid bytes
    /// become U+FFFD; CR and LF are ASCII, so no sequence spans a line end
    /// and decoding per event gives the same text as decoding the stream).
    pub fn text(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.data)
    }
}

/// What is known about the line that has started but not ended yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartialLine {
    /// At the start of a line.
    None,
    /// Bytes of a line are held in `Parser::line`.
    Held,
    /// A comment line: its bytes are skipped, never held.
    Comment,
}

/// Incremental SSE parser. Feed it with [`Parser::next_event`].
#[derive(Debug, Clone)]
pub struct Parser {
    max_event_bytes: usize,
    prelude: Prelude,
    partial: PartialLine,
    line: Vec<u8>,
    data: Vec<u8>,
    event_type: String,
    last_event_id: String,
    retry: Option<u64>,
    /// Field-line bytes of the event being read (see the module doc).
    event_bytes: usize,
    /// An event was handed out: its buffers are cleared on the next call.
    dispatched: bool,
    failed: bool,
}

impl Parser {
    /// A parser for a new stream whose events may hold at most
    /// `max_event_bytes` of field lines.
    pub fn new(max_event_bytes: usize) -> Self {
        Parser {
            max_event_bytes,
            prelude: Prelude::default(),
            partial: PartialLine::None,
            line: Vec::new(),
            data: Vec::new(),
            event_type: String::new(),
            last_event_id: String::new(),
            retry: None,
            event_bytes: 0,
            dispatched: false,
            failed: false,
        }
    }

    /// True between two events: no byte of the next one read, the BOM
    /// window closed, no CR waiting for its LF. A caller that recognises a
    /// whole event at this point may skip its bytes (see
    /// `dialect::Extractor::read`): the parser's state would be the same.
    pub fn between_events(&self) -> bool {
        let nothing_held = self.dispatched
            || (self.data.is_empty() && self.event_type.is_empty() && self.event_bytes == 0);
        !self.failed
            && self.prelude.bom_done
            && !self.prelude.after_cr
            && self.partial == PartialLine::None
            && nothing_held
    }

    /// The most field-line bytes an event may hold.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// The reconnection time the stream asked for with `retry`, if any.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// The last event ID buffer.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// Parses `input` up to the end of the next event and advances `input`
    /// past the bytes consumed. `Ok(None)` means `input` is used up (it is
    /// then empty) and more bytes are needed; an incomplete event at the end
    /// of the stream is never dispatched, as the spec says. Once an error has
    /// been returned, every later call returns it again.
    ///
    /// The event borrows from `input` where it can (a single `data` line
    /// inside this chunk, the common case) and from the parser otherwise.
    pub fn next_event<'p, 'i: 'p>(
        &'p mut self,
        input: &mut &'i [u8],
    ) -> Result<Option<Event<'p>>, ParseError> {
        if self.failed {
            *input = &[];
            return Err(self.too_large());
        }
        if self.dispatched {
            self.dispatched = false;
            self.data.clear();
            self.event_type.clear();
        }
        let buf: &'i [u8] = input;
        let mut pos = match self.prelude.skip(buf) {
            ContentStart::NotYet => {
                *input = &buf[buf.len()..];
                return Ok(None);
            }
            ContentStart::At { pos, bom_prefix } => {
                if !bom_prefix.is_empty() {
                    // Not a BOM after all: what matched starts the first line.
                    self.line.extend_from_slice(bom_prefix);
                    self.partial = PartialLine::Held;
                }
                pos
            }
        };
        // The value of the event's only data line so far, left in `buf`
        // rather than copied into `self.data` (which is then empty).
        let mut borrowed: Option<std::ops::Range<usize>> = None;
        while pos < buf.len() {
            let rest = &buf[pos..];
            // Blank lines are frequent: spare them the search.
            let found = match rest[0] {
                b'\n' | b'\r' if self.partial == PartialLine::None => Some(0),
                _ => memchr2(b'\n', b'\r', rest),
            };
            let Some(len) = found else {
                if let Err(error) = self.hold(rest) {
                    self.failed = true;
                    *input = &buf[buf.len()..];
                    return Err(error);
                }
                pos = buf.len();
                break;
            };
            let next = self.prelude.skip_line_end(buf, pos + len);
            let line = match self.partial {
                PartialLine::None => self.process_line(&rest[..len]),
                PartialLine::Comment => {
                    self.partial = PartialLine::None;
                    Ok(Line::Other)
                }
                PartialLine::Held => {
                    self.partial = PartialLine::None;
                    let mut line = mem::take(&mut self.line);
                    line.extend_from_slice(&rest[..len]);
                    let outcome = match self.process_line(&line) {
                        Ok(Line::Data { value_start }) => {
                            self.append_data(&mut borrowed, buf, &line[value_start..]);
                            Ok(Line::Other)
                        }
                        outcome => outcome,
                    };
                    line.clear();
                    self.line = line;
                    outcome
                }
            };
            let line_start = pos;
            pos = next;
            match line {
                Ok(Line::Other) => {}
                Ok(Line::Data { value_start }) => {
                    let value = line_start + value_start..line_start + len;
                    if borrowed.is_none() && self.data.is_empty() {
                        borrowed = Some(value);
                    } else {
                        self.append_data(&mut borrowed, buf, &buf[value]);
                    }
                }
                Ok(Line::Blank) => {
                    self.event_bytes = 0;
                    let data: &'i [u8] = match borrowed.take() {
                        Some(value) => &buf[value],
                        None if self.data.is_empty() => {
                            self.event_type.clear();
                            continue;
                        }
                        None => {
                            self.data.pop();
                            &[]
                        }
                    };
                    self.dispatched = true;
                    *input = &buf[pos..];
                    return Ok(Some(Event {
                        event: if self.event_type.is_empty() {
                            "message"
                        } else {
                            &self.event_type
                        },
                        data: if self.data.is_empty() {
                            data
                        } else {
                            &self.data
                        },
                        id: &self.last_event_id,
                    }));
                }
                Err(error) => {
                    self.failed = true;
                    *input = &buf[buf.len()..];
                    return Err(error);
                }
            }
        }
        if let Some(value) = borrowed {
            self.data.extend_from_slice(&buf[value]);
            self.data.push(b'\n');
        }
        *input = &buf[pos..];
        Ok(None)
    }

    /// Appends a data line's value to `self.data`, first moving there the
    /// one still borrowed from the input.
    fn append_data(
        &mut self,
        borrowed: &mut Option<std::ops::Range<usize>>,
        buf: &[u8],
        value: &[u8],
    ) {
        if let Some(first) = borrowed.take() {
            self.data.extend_from_slice(&buf[first]);
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
        self.data.push(b'\n');
    }

    fn too_large(&self) -> ParseError {
        ParseError::EventTooLarge {
            limit: self.max_event_bytes,
        }
    }

    /// Keeps the start of a line that has no end in this chunk.
    fn hold(&mut self, rest: &[u8]) -> Result<(), ParseError> {
        match self.partial {
            PartialLine::Comment => Ok(()),
            PartialLine::None if rest[0] == b':' => {
                self.partial = PartialLine::Comment;
                Ok(())
            }
            PartialLine::None | PartialLine::Held => {
                if self.event_bytes + self.line.len() + rest.len() > self.max_event_bytes {
                    return Err(self.too_large());
                }
                self.line.extend_from_slice(rest);
                self.partial = PartialLine::Held;
                Ok(())
            }
        }
    }

    /// Classifies one complete line and applies its field, except `data`,
    /// whose value the caller stores.
    fn process_line(&mut self, line: &[u8]) -> Result<Line, ParseError> {
        let Some(&first) = line.first() else {
            return Ok(Line::Blank);
        };
        if first == b':' {
            return Ok(Line::Other);
        }
        self.event_bytes += line.len();
        if self.event_bytes > self.max_event_bytes {
            return Err(self.too_large());
        }
        if let Some(value) = line.strip_prefix(b"data:") {
            let space = usize::from(value.first() == Some(&b' '));
            return Ok(Line::Data {
                value_start: 5 + space,
            });
        }
        let (name, value) = match memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                return Ok(Line::Data {
                    value_start: line.len(),
                })
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(&String::from_utf8_lossy(value));
            }
            // An id containing NUL is ignored.
            b"id" if memchr(0, value).is_none() => {
                self.last_event_id.clear();
                self.last_event_id.push_str(&String::from_utf8_lossy(value));
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Only digits, so valid UTF-8; an overflowing value is ignored.
                if let Some(ms) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|digits| digits.parse().ok())
                {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(Line::Other)
    }
}

/// What a complete line was, for [`Parser::next_event`].
enum Line {
    /// Dispatches the event.
    Blank,
    /// A `data` field whose value starts at this offset in the line.
    Data { value_start: usize },
    /// Anything else (already applied).
    Other,
}

/// The kind of the line being read, as far as [`BoundaryTracker`] cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineKind {
    /// At the start of a line.
    Start,
    Comment,
    Field,
}

/// An event grew past the limit while [`BoundaryTracker::scan`] read a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTooLarge {
    /// Where in the chunk the offending event's first field line starts, if
    /// it starts in this chunk (otherwise its start was in an earlier one).
    pub event_start: Option<usize>,
}

/// Follows a byte stream's SSE line and event boundaries without parsing
/// fields: original mode forwards the origin's bytes untouched and only
/// needs to know where a keepalive comment may go, how to close a cut-off
/// event, and how large the current event is (same count as [`Parser`]).
///
/// It models what the client's parser sees, so inserted bytes (keepalives)
/// must be reported with [`BoundaryTracker::inserted_keepalive`].
#[derive(Debug, Clone, Copy)]
pub struct BoundaryTracker {
    max_event_bytes: usize,
    prelude: Prelude,
    line: LineKind,
    event_has_fields: bool,
    event_bytes: usize,
}

impl BoundaryTracker {
    pub fn new(max_event_bytes: usize) -> Self {
        BoundaryTracker {
            max_event_bytes,
            prelude: Prelude::default(),
            line: LineKind::Start,
            event_has_fields: false,
            event_bytes: 0,
        }
    }

    /// True at a line start with no field line since the last dispatch (only
    /// comments, or nothing): a comment and a blank line inserted here change
    /// no event, no event type and no last event ID. Not while the first
    /// bytes could still be a BOM: a comment there would make the client
    /// read the rest of the BOM as content.
    pub fn at_event_boundary(&self) -> bool {
        self.line == LineKind::Start && !self.event_has_fields && !self.prelude.inside_bom()
    }

    /// True before the client has seen any byte (its BOM window is open).
    pub fn at_stream_start(&self) -> bool {
        self.prelude.at_stream_start()
    }

    /// Records that `: keepalive\n\n` was inserted at an event boundary.
    pub fn inserted_keepalive(&mut self) {
        debug_assert!(self.at_event_boundary());
        self.prelude.bom_done = true;
        self.prelude.after_cr = false;
    }

    /// The bytes that end a cut-off line and event so that whatever follows
    /// is parsed on its own: a line end if a line was started, then a blank
    /// line if the event has field lines. After a CR, a lone LF would merge
    /// with it into one CRLF line end, so a second one is needed then.
    pub fn closing_bytes(&self) -> &'static [u8] {
        match (self.line, self.event_has_fields, self.prelude.after_cr) {
            (LineKind::Field, _, _) => b"\n\n",
            (LineKind::Comment, true, _) => b"\n\n",
            (LineKind::Comment, false, _) => b"\n",
            (LineKind::Start, true, true) => b"\n\n",
            (LineKind::Start, true, false) => b"\n",
            (LineKind::Start, false, _) => b"",
        }
    }

    /// Follows `buf`, the next bytes the client receives.
    pub fn scan(&mut self, buf: &[u8]) -> Result<(), EventTooLarge> {
        let mut event_start = None;
        let mut pos = match self.prelude.skip(buf) {
            ContentStart::NotYet => return Ok(()),
            ContentStart::At { pos, bom_prefix } => {
                if !bom_prefix.is_empty() {
                    // A BOM prefix that is not a BOM starts a field line.
                    self.line = LineKind::Field;
                    self.event_has_fields = true;
                    self.event_bytes = bom_prefix.len();
                }
                pos
            }
        };
        while pos < buf.len() {
            if self.line == LineKind::Start {
                match buf[pos] {
                    b'\n' | b'\r' => {
                        // A blank line dispatches the event.
                        self.event_has_fields = false;
                        self.event_bytes = 0;
                        pos = self.prelude.skip_line_end(buf, pos);
                        continue;
                    }
                    b':' => self.line = LineKind::Comment,
                    _ => {
                        self.line = LineKind::Field;
                        if !self.event_has_fields {
                            self.event_has_fields = true;
                            event_start = Some(pos);
                        }
                    }
                }
            }
            let rest = &buf[pos..];
            let found = memchr2(b'\n', b'\r', rest);
            if self.line == LineKind::Field {
                self.event_bytes += found.unwrap_or(rest.len());
                if self.event_bytes > self.max_event_bytes {
                    return Err(EventTooLarge { event_start });
                }
            }
            match found {
                Some(len) => {
                    self.line = LineKind::Start;
                    pos = self.prelude.skip_line_end(buf, pos + len);
                }
                None => pos = buf.len(),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
