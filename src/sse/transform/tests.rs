//! The transformer's unit tests: both modes, the meter, limits, keepalives.
use super::*;
use crate::sse::test_support::*;

/// Original mode's meter counts what transformed mode counts, in every
/// dialect, whatever the chunking, without changing a byte it relays.
#[test]
fn original_mode_is_metered_as_transformed() {
    // Each stream and the tokens its usage counts.
    let corpora = [
        (
            include_str!("../../../tests/data/sse/strands-seed.sse"),
            Some(1005),
        ),
        (
            include_str!("../../../tests/data/sse/anthropic-messages.sse"),
            Some(37),
        ),
        (
            include_str!("../../../tests/data/sse/openai-chunks.sse"),
            Some(17),
        ),
        (
            include_str!("../../../tests/data/sse/ag-ui-run.sse"),
            Some(1694),
        ),
        // No usage: the budget estimates from the text.
        (
            include_str!("../../../tests/data/sse/ag-ui-run-error.sse"),
            None,
        ),
        (SEED_002_STREAM, Some(38)),
    ];
    for (stream, expected) in corpora {
        let run = |mode, chunk: usize| {
            let mut t = metered(mode, 1 << 20);
            let mut out = Vec::new();
            for piece in stream.as_bytes().chunks(chunk) {
                out.extend_from_slice(&t.push(Bytes::copy_from_slice(piece), 0));
            }
            out.extend_from_slice(&t.finish(None));
            (t.tokens(), t.text_bytes(), out)
        };
        let (tokens, text_bytes, _) = run(ResponseMode::Transformed, stream.len());
        assert_eq!(tokens, expected, "usage in {stream:.80}");
        assert!(text_bytes > 0, "text in {stream:.80}");
        for chunk in [1, 7, 4096] {
            let (original, original_text, relayed) = run(ResponseMode::Original, chunk);
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
    let mut t = metered(ResponseMode::Original, 1 << 20);
    t.push(Bytes::from(stream), 0);
    assert_eq!((t.tokens(), t.text_bytes()), (None, 2));
}

/// AG-UI's `RUN_FINISHED` ends the answer: what follows is neither text
/// nor usage, for the meter either, whatever the chunking.
#[test]
fn the_meter_stops_at_ag_ui_run_finished() {
    let stream = sse(&[
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":"hi"}"#,
        r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r","usage":[{"inputTokens":3,"outputTokens":4}]}"#,
        r#"{"type":"RUN_STARTED","threadId":"t","runId":"r2"}"#,
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m2","delta":"more"}"#,
        r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r2","usage":[{"totalTokens":50}]}"#,
    ]);
    for chunk in [1, 5, stream.len()] {
        let mut t = metered(ResponseMode::Original, 1 << 20);
        let mut relayed = Vec::new();
        for piece in stream.as_bytes().chunks(chunk) {
            relayed.extend_from_slice(&t.push(Bytes::copy_from_slice(piece), 0));
        }
        relayed.extend_from_slice(&t.finish(None));
        assert_eq!(relayed, stream.as_bytes(), "relayed unchanged");
        assert_eq!(
            (t.tokens(), t.text_bytes()),
            (Some(7), 2),
            "chunks of {chunk}"
        );
    }
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
    // Transformed mode reads usage whether or not the meter is on.
    for mode in [ResponseMode::Transformed, ResponseMode::Original] {
        let mut t = metered(mode, 120);
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
