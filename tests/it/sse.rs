//! Data-driven and property tests of the SSE parser and the transformer:
//! the WPT `format-*` cases at every split point, the Strands seed stream
//! and the AG-UI runs, and original mode's byte-for-byte guarantee over
//! random chunkings.

use agent_edge::config::ResponseMode;
use agent_edge::sse::{OriginBodyKind, Parser, StreamError, Transformer, TransformerOptions};
use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;

const WPT_CASES: &str = include_str!("../data/sse/wpt-cases.json");
const STRANDS_SEED: &str = include_str!("../data/sse/strands-seed.sse");
const AG_UI_RUN: &str = include_str!("../data/sse/ag-ui-run.sse");
const AG_UI_RUN_ERROR: &str = include_str!("../data/sse/ag-ui-run-error.sse");

#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    event: String,
    data: String,
    id: String,
}

/// Every event of `body` fed in the given chunks, and the final `retry`.
fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Parsed>, Option<u64>) {
    let mut parser = Parser::new(1 << 20);
    let mut events = Vec::new();
    for chunk in chunks {
        let mut input = chunk;
        while let Some(event) = parser.next_event(&mut input).expect("within the limit") {
            events.push(Parsed {
                event: event.event.to_owned(),
                data: event.text().into_owned(),
                id: event.id.to_owned(),
            });
        }
        assert!(input.is_empty());
    }
    (events, parser.retry())
}

/// The chunkings each case is re-run with: whole, every split point into
/// two chunks, and one-byte chunks.
fn chunkings(body: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut all = vec![vec![body]];
    for split in 0..=body.len() {
        all.push(vec![&body[..split], &body[split..]]);
    }
    all.push(body.chunks(1).collect());
    all
}

#[test]
fn wpt_format_cases_at_every_split_point() {
    let cases: Value = serde_json::from_str(WPT_CASES).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 19);
    let mut runs = 0;
    for case in cases {
        let name = case["source_test"].as_str().unwrap();
        let body = case["body"].as_str().unwrap().as_bytes();
        let expected = case["expected_events"].as_array().unwrap();
        let content_type = case["content_type"].as_str().unwrap();
        if OriginBodyKind::from_content_type(content_type) != Some(OriginBodyKind::EventStream) {
            // The connection fails: no event may come out of such a body.
            assert!(expected.is_empty(), "{name}");
            continue;
        }
        for chunks in chunkings(body) {
            let (events, retry) = parse_chunks(chunks.iter().copied());
            assert_eq!(events.len(), expected.len(), "{name}: {events:?}");
            for (event, want) in events.iter().zip(expected) {
                assert_eq!(event.data, want["data"].as_str().unwrap(), "{name}");
                if let Some(kind) = want.get("type") {
                    assert_eq!(event.event, kind.as_str().unwrap(), "{name}");
                }
                if let Some(id) = want.get("lastEventId") {
                    assert_eq!(event.id, id.as_str().unwrap(), "{name}");
                }
                if let Some(retry_after) = want.get("retry_after") {
                    assert_eq!(retry, retry_after.as_u64(), "{name}");
                }
            }
            runs += 1;
        }
    }
    assert!(runs > 2000, "{runs}");
}

fn options(mode: ResponseMode, max_event_bytes: usize) -> TransformerOptions {
    TransformerOptions {
        mode,
        body_kind: OriginBodyKind::EventStream,
        max_event_bytes,
        keepalive_ms: Some(1000),
        session_id: "0b7c64d5-94a3-4a52-8e44-6a33b3d1f0a1-session".to_owned(),
        meter: false,
    }
}

fn transform_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut transformer = Transformer::new(options(ResponseMode::Transformed, 1 << 20), 0);
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&transformer.push(Bytes::copy_from_slice(chunk), 0));
    }
    out.extend_from_slice(&transformer.finish(None));
    String::from_utf8(out).unwrap()
}

#[test]
fn strands_seed_stream_transformed_at_every_split_point() {
    let expected = concat!(
        "Let me check the weather for you.",
        "It is sunny in Tokyo today, 24\u{b0}C with a light breeze.\n\nAnything \"else\" I can help with?",
        "\n----------\n",
        r#"{"usage":{"inputTokens":920,"outputTokens":85,"totalTokens":1005},"metrics":{"latencyMs":1913}}"#,
        "\n",
        r#"{"runtimeSessionId":"0b7c64d5-94a3-4a52-8e44-6a33b3d1f0a1-session"}"#,
    );
    for chunks in chunkings(STRANDS_SEED.as_bytes()) {
        assert_eq!(transform_chunks(chunks), expected);
    }
}

#[test]
fn ag_ui_runs_transformed_at_every_split_point() {
    let session = r#"{"runtimeSessionId":"0b7c64d5-94a3-4a52-8e44-6a33b3d1f0a1-session"}"#;
    let run = [
        "Let me check the weather in Z\u{fc}rich for you.",
        "It is 18 \u{b0}C and partly cloudy in Z\u{fc}rich (\u{30c1}\u{30e5}\u{30fc}\u{30ea}\u{30c3}\u{30d2}) \u{1f324}\u{fe0f}.",
        "\n\nA \"light\" jacket should do.",
        "\n----------\n",
        r#"{"usage":{"inputTokens":1620,"outputTokens":74,"totalTokens":1694}}"#,
        "\n",
        session,
    ]
    .concat();
    let error = [
        "Looking up your order\u{2026}",
        "\n----------\n",
        r#"{"error":{"code":"agent_error","message":"STRANDS_ERROR: An error occurred (AccessDeniedException) when calling the ConverseStream operation: User: [redacted] is not authorized to perform: bedrock:InvokeModelWithResponseStream on resource: [redacted] because no identity-based policy allows the bedrock:InvokeModelWithResponseStream action"}}"#,
        "\n",
        session,
    ]
    .concat();
    for (recording, expected) in [(AG_UI_RUN, run), (AG_UI_RUN_ERROR, error)] {
        for chunks in chunkings(recording.as_bytes()) {
            assert_eq!(transform_chunks(chunks), expected);
        }
    }
}

/// Pieces random streams are made of: every kind of line end, fields,
/// comments, BOMs, multi-byte characters, and JSON of the dialects.
fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "data: ",
        "data:",
        "data",
        "event: ",
        "event:x",
        "id: 7",
        "id",
        "retry: 10",
        ": keepalive",
        ":",
        "\n",
        "\n",
        "\r",
        "\r\n",
        "\u{feff}",
        "\u{e9}\u{1F600}",
        "hello",
        " ",
        "\0",
        "\"quoted\"",
        r#"{"event":{"contentBlockDelta":{"delta":{"text":"t"}}}}"#,
        r#"{"event":{"metadata":{"usage":{"totalTokens":1}}}}"#,
        r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}}"#,
        r#"{"choices":[{"delta":{"content":"o"}}]}"#,
        "[DONE]",
        // Whole events as AgentCore frames them: the meter's fast path.
        "data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \" plain\"}, \"contentBlockIndex\": 0}}}\n\n",
        "data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \" caf\u{e9} \\\"q\\\" \\n\\u00e9\\ud83d\\ude00\\/\"}, \"contentBlockIndex\": 12}}}\n\n",
        "data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \"lone \\ud800\"}, \"contentBlockIndex\": 0}}}\n\n",
        "data: {\"event\": {\"messageStart\": {\"role\": \"assistant\"}}}\n\n",
        "data: {\"event\": {\"messageStop\": {\"stopReason\": \"end_turn\"}}, \"usage\": {\"totalTokens\": 5}}\n\n",
        "data: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"toolUse\": {\"input\": \"{}\"}}, \"contentBlockIndex\": 1}}}\n\n",
        "data: {\"event\": {\"metadata\": {\"usage\": {\"inputTokens\": 3, \"outputTokens\": 4}}}}\n\n",
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
        "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":6}}\n\n",
        // AG-UI: text, not text, usage that is not AG-UI's, and the run's
        // end, which ends the answer and the meter's reading.
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m","delta":"a\u00e9 \"g\""}"#,
        r#"{"type":"TEXT_MESSAGE_CHUNK","delta":"c"}"#,
        r#"{"type":"TOOL_CALL_ARGS","toolCallId":"t","delta":"{}"}"#,
        r#"{"type":"RAW","event":{"metadata":{"usage":{"totalTokens":9}}},"source":"strands"}"#,
        r#"{"type":"RUN_FINISHED","threadId":"t","runId":"r","usage":[{"model":"m","inputTokens":2,"outputTokens":3}]}"#,
        r#"{"type":"RUN_ERROR","message":"boom","code":"E","usage":[{"totalTokens":4}]}"#,
        "data: {\"type\":\"TEXT_MESSAGE_CONTENT\",\"messageId\":\"m\",\"delta\":\" ag-ui\"}\n\n",
        "data: {\"type\":\"RUN_FINISHED\",\"threadId\":\"t\",\"runId\":\"r\",\"usage\":[{\"totalTokens\":6}]}\n\n",
    ])
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(token(), 0..60).prop_map(|tokens| tokens.concat().into_bytes())
}

/// An original-mode transformer with a limit no test event reaches.
fn original() -> Transformer {
    Transformer::new(options(ResponseMode::Original, 1 << 20), 0)
}

/// `body` cut at the given (sorted, deduplicated) positions.
fn cut(body: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
    cuts.iter_mut().for_each(|cut| *cut %= body.len() + 1);
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(&body[start..cut]);
        start = cut;
    }
    chunks.push(&body[start..]);
    chunks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn original_mode_output_is_the_input(
        body in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut transformer = original();
        let mut out = Vec::new();
        for chunk in cut(&body, cuts) {
            let chunk = Bytes::copy_from_slice(chunk);
            let sent = transformer.push(chunk.clone(), 1);
            prop_assert_eq!(&sent, &chunk);
            out.extend_from_slice(&sent);
        }
        out.extend_from_slice(&transformer.finish(None));
        prop_assert_eq!(out, body);
    }

    #[test]
    fn keepalives_never_change_the_events(
        body in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        idle in prop::collection::vec(any::<bool>(), 13),
    ) {
        let mut transformer = original();
        let mut wire = Vec::new();
        let mut now = 0;
        let mut keepalives = 0;
        for (chunk, idle) in cut(&body, cuts).into_iter().zip(idle) {
            if idle {
                now += 5000;
                if let Some(keepalive) = transformer.poll_idle(now) {
                    wire.extend_from_slice(&keepalive);
                    keepalives += 1;
                }
            }
            now += 1;
            wire.extend_from_slice(&transformer.push(Bytes::copy_from_slice(chunk), now));
        }
        wire.extend_from_slice(&transformer.finish(None));
        prop_assert_eq!(parse_chunks([&wire[..]]), parse_chunks([&body[..]]));
        if keepalives == 0 {
            prop_assert_eq!(wire, body);
        }
    }

    #[test]
    fn original_mode_failure_leaves_a_parseable_error_event(
        body in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut transformer = original();
        let mut wire: Vec<u8> = cut(&body, cuts)
            .into_iter()
            .flat_map(|chunk| transformer.push(Bytes::copy_from_slice(chunk), 1))
            .collect();
        wire.extend_from_slice(&transformer.finish(Some(StreamError::new(
            agent_edge::error::Code::OriginStreamFailed,
        ))));
        let (events, _) = parse_chunks([&wire[..]]);
        let last = events.last().expect("the error event");
        prop_assert_eq!(&last.event, "error");
        prop_assert_eq!(
            &last.data,
            r#"{"error":{"code":"origin_stream_failed","message":"the agent's stream broke off"}}"#
        );
    }

    #[test]
    fn parser_and_transformer_ignore_chunking(
        body in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let chunks = cut(&body, cuts);
        prop_assert_eq!(parse_chunks(chunks.iter().copied()), parse_chunks([&body[..]]));
        prop_assert_eq!(transform_chunks(chunks), transform_chunks([&body[..]]));
    }

    /// Original mode's meter (`TOKEN_BUDGET`) counts the tokens and text
    /// bytes transformed mode counts, whatever the chunking.
    #[test]
    fn the_meter_counts_what_transformed_mode_counts(
        body in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let metered = |mode| {
            let mut t = Transformer::new(TransformerOptions { meter: true, ..options(mode, 1 << 20) }, 0);
            let mut out = Vec::new();
            for chunk in cut(&body, cuts.clone()) {
                out.extend_from_slice(&t.push(Bytes::copy_from_slice(chunk), 1));
            }
            out.extend_from_slice(&t.finish(None));
            (t.tokens(), t.text_bytes(), out)
        };
        let (tokens, text_bytes, relayed) = metered(ResponseMode::Original);
        prop_assert_eq!(relayed, body.clone());
        let (expected_tokens, expected_text, _) = metered(ResponseMode::Transformed);
        prop_assert_eq!(tokens, expected_tokens);
        prop_assert_eq!(text_bytes, expected_text);
    }

    #[test]
    fn events_over_the_limit_end_both_modes_the_same_way(
        body in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        limit in 1usize..64,
    ) {
        let mut original = Transformer::new(options(ResponseMode::Original, limit), 0);
        let mut transformed = Transformer::new(options(ResponseMode::Transformed, limit), 0);
        let mut original_out = Vec::new();
        let mut transformed_out = Vec::new();
        for chunk in cut(&body, cuts) {
            original_out.extend_from_slice(&original.push(Bytes::copy_from_slice(chunk), 1));
            transformed_out.extend_from_slice(&transformed.push(Bytes::copy_from_slice(chunk), 1));
        }
        let too_large = |out: &[u8]| String::from_utf8_lossy(out).contains("event_too_large");
        // `[DONE]` and AG-UI's run ends end the transformed stream before
        // any limit is reached.
        prop_assume!(!transformed.is_finished() || too_large(&transformed_out));
        prop_assert_eq!(original.is_finished(), too_large(&original_out));
        prop_assert_eq!(original.is_finished(), transformed.is_finished() && too_large(&transformed_out));
        prop_assert!(original_out.len() <= body.len() + 200);
    }
}
