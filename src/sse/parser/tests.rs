//! Unit tests of the event-stream parser and the boundary tracker: line
//! ends, fields, chunk splits, BOM handling and the event size limit.

use super::*;

/// (event type, data, id) of every event in `chunks`, plus the error if any.
fn parse_chunks(
    parser: &mut Parser,
    chunks: &[&[u8]],
) -> (Vec<(String, String, String)>, Option<ParseError>) {
    let mut events = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            match parser.next_event(&mut input) {
                Ok(Some(ev)) => events.push((
                    ev.event.to_owned(),
                    ev.text().into_owned(),
                    ev.id.to_owned(),
                )),
                Ok(None) => {
                    assert!(input.is_empty());
                    break;
                }
                Err(error) => return (events, Some(error)),
            }
        }
    }
    (events, None)
}

fn data_of(chunks: &[&[u8]]) -> Vec<String> {
    let (events, error) = parse_chunks(&mut Parser::new(1 << 20), chunks);
    assert_eq!(error, None);
    events.into_iter().map(|(_, data, _)| data).collect()
}

#[test]
fn line_ends_lf_cr_crlf() {
    assert_eq!(
        data_of(&[b"data: a\n\ndata: b\r\rdata: c\r\n\r\n"]),
        ["a", "b", "c"]
    );
}

#[test]
fn cr_at_chunk_end_then_lf_is_one_line_end() {
    // Were the LF a second line end, "a" would be dispatched alone.
    assert_eq!(
        data_of(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]),
        ["a\nb"]
    );
}

#[test]
fn cr_then_other_byte_in_next_chunk() {
    assert_eq!(data_of(&[b"data: a\r", b"\r"]), ["a"]);
    assert_eq!(data_of(&[b"data: a\r", b"data: b\r\r"]), ["a\nb"]);
}

#[test]
fn multi_line_data_event_id_and_comments() {
    let mut parser = Parser::new(1024);
    let (events, _) = parse_chunks(
        &mut parser,
        &[b": hi\nevent: delta\nid: 7\ndata: one\ndata:two\n\ndata: three\n\n"],
    );
    assert_eq!(
        events,
        [
            ("delta".into(), "one\ntwo".into(), "7".into()),
            ("message".into(), "three".into(), "7".into()),
        ]
    );
}

#[test]
fn id_with_nul_is_ignored_and_retry_needs_digits() {
    let mut parser = Parser::new(1024);
    let (events, _) = parse_chunks(
        &mut parser,
        &[b"id: 1\nretry: 500\nid: 2\0x\nretry: 7s\ndata: x\n\n"],
    );
    assert_eq!(events[0].2, "1");
    assert_eq!(parser.retry(), Some(500));
    assert_eq!(parser.last_event_id(), "1");
}

#[test]
fn only_the_first_bom_at_stream_start_is_stripped() {
    assert_eq!(data_of(&[b"\xEF\xBB\xBFdata: a\n\n"]), ["a"]);
    assert_eq!(data_of(&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"]), ["a"]);
    // A second BOM makes the field name "\u{FEFF}data": unknown, ignored.
    assert!(data_of(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n"]).is_empty());
    // Not a BOM: the bytes stay part of the line (here an unknown field).
    assert_eq!(data_of(&[b"\xEF\xBB", b"x\ndata: a\n\n"]), ["a"]);
    assert_eq!(data_of(&[b"\xEF", b"\xBB:\ndata: a\n\n"]), ["a"]);
}

#[test]
fn utf8_split_across_chunks_and_invalid_bytes_replaced() {
    let text = "data: h\u{e9}llo \u{1F600}\n\n".as_bytes();
    for split in 0..=text.len() {
        assert_eq!(
            data_of(&[&text[..split], &text[split..]]),
            ["h\u{e9}llo \u{1F600}"]
        );
    }
    assert_eq!(
        data_of(&[b"data: a\xFFb\xE2\x82\n\n"]),
        ["a\u{FFFD}b\u{FFFD}"]
    );
}

#[test]
fn incomplete_event_at_end_is_not_dispatched() {
    assert_eq!(data_of(&[b"data: a\n\ndata: b\n"]), ["a"]);
    assert_eq!(data_of(&[b"data: a"]), Vec::<String>::new());
}

#[test]
fn event_over_the_limit_is_reported_and_sticks() {
    let mut parser = Parser::new(16);
    // 15 bytes of field lines is fine; "data: 0123456789" is 16 (still fine).
    let (events, error) = parse_chunks(&mut parser, &[b"data: 0123456789\n\n"]);
    assert_eq!((events.len(), error), (1, None));
    // Two lines of 12 = 24 > 16, even though each line is small.
    let (_, error) = parse_chunks(&mut parser, &[b"data: 012345\ndata: 012345\n\n"]);
    assert_eq!(error, Some(ParseError::EventTooLarge { limit: 16 }));
    let mut input: &[u8] = b"data: x\n\n";
    assert!(parser.next_event(&mut input).is_err());
}

#[test]
fn held_partial_line_is_bounded() {
    let mut parser = Parser::new(100);
    let chunk = [b'a'; 40];
    let mut input: &[u8] = b"data: ";
    assert_eq!(parser.next_event(&mut input), Ok(None));
    for _ in 0..2 {
        let mut input: &[u8] = &chunk;
        assert_eq!(parser.next_event(&mut input), Ok(None));
    }
    let mut input: &[u8] = &chunk;
    assert!(parser.next_event(&mut input).is_err());
    assert!(parser.line.capacity() <= 200);
}

#[test]
fn long_comments_across_chunks_are_not_held_or_counted() {
    let mut parser = Parser::new(8);
    let mut chunks: Vec<&[u8]> = vec![b":"];
    let filler = [b'x'; 64];
    chunks.extend(std::iter::repeat_n(&filler[..], 100));
    chunks.push(b"\ndata: ok\n\n");
    let (events, error) = parse_chunks(&mut parser, &chunks);
    assert_eq!(error, None);
    assert_eq!(events[0].1, "ok");
    assert!(parser.line.capacity() < 64);
}

fn tracker_scan(chunks: &[&[u8]]) -> BoundaryTracker {
    let mut tracker = BoundaryTracker::new(1 << 20);
    for chunk in chunks {
        tracker.scan(chunk).unwrap();
    }
    tracker
}

#[test]
fn tracker_boundaries() {
    assert!(tracker_scan(&[]).at_event_boundary());
    assert!(tracker_scan(&[b"data: a\n\n"]).at_event_boundary());
    assert!(tracker_scan(&[b"data: a\r\r"]).at_event_boundary());
    assert!(tracker_scan(&[b"data: a\n\n: c\n"]).at_event_boundary());
    assert!(!tracker_scan(&[b"data: a\n\n: c"]).at_event_boundary());
    assert!(!tracker_scan(&[b"data: a"]).at_event_boundary());
    assert!(!tracker_scan(&[b"data: a\n"]).at_event_boundary());
    // `event: x` with no data yet: a blank line would reset the type.
    assert!(!tracker_scan(&[b"event: x\n"]).at_event_boundary());
    assert!(!tracker_scan(&[b"id: 1\r"]).at_event_boundary());
    // CR, then its LF in the next chunk: still inside the event.
    assert!(!tracker_scan(&[b"data: a\r", b"\n"]).at_event_boundary());
    assert!(tracker_scan(&[b"data: a\r", b"\n\r", b"\n"]).at_event_boundary());
    assert!(tracker_scan(&[b"\xEF\xBB\xBF: c\n"]).at_event_boundary());
    assert!(!tracker_scan(&[b"\xEF\xBB", b"x\n"]).at_event_boundary());
    assert!(!tracker_scan(&[b"\xEF\xBB"]).at_event_boundary());
    assert!(tracker_scan(&[b"\xEF\xBB", b"\xBF"]).at_event_boundary());
}

#[test]
fn tracker_closing_bytes() {
    assert_eq!(tracker_scan(&[b"data: a"]).closing_bytes(), b"\n\n");
    assert_eq!(tracker_scan(&[b"data: a\n"]).closing_bytes(), b"\n");
    assert_eq!(tracker_scan(&[b"data: a\r"]).closing_bytes(), b"\n\n");
    assert_eq!(tracker_scan(&[b"data: a\n\n: c"]).closing_bytes(), b"\n");
    assert_eq!(tracker_scan(&[b"data: a\n: c"]).closing_bytes(), b"\n\n");
    assert_eq!(tracker_scan(&[b"data: a\n\n"]).closing_bytes(), b"");
    assert_eq!(tracker_scan(&[b"data: a\r\r"]).closing_bytes(), b"");
}

#[test]
fn tracker_counts_like_the_parser() {
    let mut tracker = BoundaryTracker::new(16);
    tracker
        .scan(b"data: 0123456789\n\n: a very long comment line\n")
        .unwrap();
    let error = tracker
        .scan(b"data: x\ndata: 012345\ndata: 1\n\n")
        .unwrap_err();
    assert_eq!(
        error,
        EventTooLarge {
            event_start: Some(0)
        }
    );
    let mut tracker = BoundaryTracker::new(16);
    tracker.scan(b"data: 0123").unwrap();
    let error = tracker.scan(b"\n\ndata: 012345\ndata: 012345").unwrap_err();
    assert_eq!(
        error,
        EventTooLarge {
            event_start: Some(2)
        }
    );
    let mut tracker = BoundaryTracker::new(16);
    tracker.scan(b"data: 0123").unwrap();
    let error = tracker.scan(b"4567890123").unwrap_err();
    assert_eq!(error, EventTooLarge { event_start: None });
}
