//! Unit tests of the origin dialects, through the transformer's transformed
//! mode: text, metadata and in-band errors of each dialect.

use bytes::Bytes;

use super::*;
use crate::config::ResponseMode;
use crate::sse::test_support::*;
use crate::sse::transform::OriginBodyKind;

#[test]
fn seed_002_example_is_byte_identical() {
    let expected = concat!(
        "Hello! How can I assist you today? Feel free to ask me any questions or let me know if there's anything you'd like help with.\n",
        "----------\n",
        "{\"usage\":{\"inputTokens\":8,\"outputTokens\":30,\"totalTokens\":38},\"metrics\":{\"latencyMs\":909}}\n",
        "{\"runtimeSessionId\":\"afa31b91-a767-41f1-a7bc-d9cbf8c4cfd3\"}",
    );
    assert_eq!(transform(SEED_002_STREAM), expected);
}

#[test]
fn usage_and_metrics_are_summed_over_model_calls() {
    let stream = sse(&[
        r#"{"event":{"contentBlockDelta":{"delta":{"text":"a"}}}}"#,
        r#"{"event":{"metadata":{"usage":{"inputTokens":8,"outputTokens":30,"totalTokens":38},"metrics":{"latencyMs":909,"score":0.5},"trace":{"id":1}}}}"#,
        r#"{"event":{"contentBlockDelta":{"delta":{"text":"b"}}}}"#,
        r#"{"event":{"metadata":{"usage":{"inputTokens":50,"outputTokens":2,"totalTokens":52,"cacheReadInputTokens":4},"metrics":{"latencyMs":91,"score":0.25},"trace":{"id":2}}}}"#,
    ]);
    let expected = format!(
        "ab\n----------\n{}\n{}",
        r#"{"usage":{"inputTokens":58,"outputTokens":32,"totalTokens":90,"cacheReadInputTokens":4},"metrics":{"latencyMs":1000,"score":0.75},"trace":{"id":2}}"#,
        session_line()
    );
    assert_eq!(transform(&stream), expected);
}

#[test]
fn usage_is_reported_for_the_log() {
    let mut t = transformer(ResponseMode::Transformed, OriginBodyKind::EventStream);
    assert_eq!(t.usage(), None);
    t.push(
        Bytes::from(sse(&[
            r#"{"event":{"metadata":{"usage":{"totalTokens":3}}}}"#,
        ])),
        0,
    );
    assert_eq!(t.usage(), Some(&serde_json::json!({"totalTokens": 3})));
}

#[test]
fn no_metadata_means_no_metadata_line() {
    let stream = sse(&[r#"{"event":{"contentBlockDelta":{"delta":{"text":"hi"}}}}"#]);
    assert_eq!(
        transform(&stream),
        format!("hi\n----------\n{}", session_line())
    );
    assert_eq!(transform(""), format!("\n----------\n{}", session_line()));
}

#[test]
fn tool_use_reasoning_and_other_events_are_dropped() {
    let stream = sse(&[
        r#"{"event":{"messageStart":{"role":"assistant"}}}"#,
        r#"{"event":{"contentBlockStart":{"start":{"toolUse":{"toolUseId":"t1","name":"calc"}}}}}"#,
        r#"{"event":{"contentBlockDelta":{"delta":{"toolUse":{"input":"{\"x\":1}"}}}}}"#,
        r#"{"event":{"contentBlockDelta":{"delta":{"reasoningContent":{"text":"hmm"}}}}}"#,
        r#"{"event":{"contentBlockDelta":{"delta":{"text":"ok"}}}}"#,
        r#"{"init_event_loop":true}"#,
        r#"{"event":"message","weird":[1,2,{"a":null}]}"#,
        r#"[1,2]"#,
        r#"42"#,
        r#"null"#,
    ]);
    assert_eq!(
        transform(&stream),
        format!("ok\n----------\n{}", session_line())
    );
}

#[test]
fn agentcore_sdk_strings_and_raw_text() {
    let stream = sse(&[r#""Hello""#, r#"" wor\u006cd\n""#, "not json: {", "[DONE]x"]);
    let expected = format!(
        "Hello world\nnot json: {{[DONE]x\n----------\n{}",
        session_line()
    );
    assert_eq!(transform(&stream), expected);
    // Multi-line data is one payload, joined with \n.
    assert_eq!(
        transform("data: line one\ndata: line two\n\n"),
        format!("line one\nline two\n----------\n{}", session_line())
    );
}

#[test]
fn invalid_utf8_is_replaced_before_json_is_read() {
    let mut t = transformer(ResponseMode::Transformed, OriginBodyKind::EventStream);
    let stream: &[u8] = b"data: \"caf\xE9\"\n\ndata: {\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \"\xFF!\"}}}}\n\ndata: raw\xC3\n\n";
    let out = t.push(Bytes::from_static(stream), 0);
    assert_eq!(
        String::from_utf8(out.to_vec()).unwrap(),
        "caf\u{FFFD}\u{FFFD}!raw\u{FFFD}"
    );
}

#[test]
fn agentcore_sdk_error_event_becomes_the_error_line() {
    let stream = sse(&[
        r#""partial""#,
        r#"{"error": "Access denied for arn:aws:iam::123456789012:role/x (key AKIAABCDEFGHIJKLMNOP)", "error_type": "ValueError", "message": "An error occurred during streaming"}"#,
    ]);
    let expected = format!(
        "partial\n----------\n{}\n{}",
        r#"{"error":{"code":"agent_error","message":"ValueError: Access denied for [redacted] (key [redacted])"}}"#,
        session_line()
    );
    assert_eq!(transform(&stream), expected);
}

#[test]
fn error_line_comes_after_metadata_and_first_error_wins() {
    let mut t = transformer(ResponseMode::Transformed, OriginBodyKind::EventStream);
    let stream = sse(&[
        r#"{"event":{"contentBlockDelta":{"delta":{"text":"Hi"}}}}"#,
        r#"{"event":{"metadata":{"usage":{"totalTokens":3}}}}"#,
    ]);
    let mut out = t.push(Bytes::from(stream), 0).to_vec();
    out.extend_from_slice(&t.finish(Some(StreamError {
        code: Code::OriginStreamFailed,
        message: "the agent's stream broke off".into(),
    })));
    let expected = format!(
        "Hi\n----------\n{}\n{}\n{}",
        r#"{"usage":{"totalTokens":3}}"#,
        r#"{"error":{"code":"origin_stream_failed","message":"the agent's stream broke off"}}"#,
        session_line()
    );
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    assert!(t.finish(None).is_empty());

    let stream =
        sse(&[r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#]);
    let mut t = transformer(ResponseMode::Transformed, OriginBodyKind::EventStream);
    t.push(Bytes::from(stream), 0);
    let tail = t.finish(Some(StreamError {
        code: Code::OriginStreamFailed,
        message: "later".into(),
    }));
    assert!(String::from_utf8_lossy(&tail)
        .contains(r#"{"error":{"code":"agent_error","message":"overloaded_error: Overloaded"}}"#));
}

#[test]
fn sse_error_events_become_the_error_line() {
    // Another gateway's error event, and a plain-text one.
    let out =
        transform("event: error\ndata: {\"error\":{\"code\":\"x_y\",\"message\":\"boom\"}}\n\n");
    assert!(
        out.contains(r#"{"error":{"code":"agent_error","message":"x_y: boom"}}"#),
        "{out}"
    );
    let out = transform("event: error\ndata: it broke\n\n");
    assert!(
        out.starts_with(
            "\n----------\n{\"error\":{\"code\":\"agent_error\",\"message\":\"it broke\"}}"
        ),
        "{out}"
    );
}

#[test]
fn anthropic_messages_stream() {
    let message = |input: u64, output: u64, text: &str| {
        sse(&[
            &format!(
                r#"{{"type":"message_start","message":{{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude","stop_reason":null,"usage":{{"input_tokens":{input},"output_tokens":1,"cache_read_input_tokens":0}}}}}}"#
            ),
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"let me see"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"abc"}}"#,
            r#"{"type":"ping"}"#,
            &format!(
                r#"{{"type":"content_block_delta","index":1,"delta":{{"type":"text_delta","text":"{text}"}}}}"#
            ),
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
            &format!(
                r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{output}}}}}"#
            ),
            r#"{"type":"message_stop"}"#,
        ])
    };
    let stream = message(25, 15, "Hello") + &message(40, 5, " there");
    let expected = format!(
        "Hello there\n----------\n{}\n{}",
        r#"{"usage":{"input_tokens":65,"output_tokens":20,"cache_read_input_tokens":0}}"#,
        session_line()
    );
    assert_eq!(transform(&stream), expected);
    // With `event:` lines, as the API sends them, and no message_stop.
    let stream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
        event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
        event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":4}}\n\n";
    assert_eq!(
        transform(stream),
        format!(
            "Hi\n----------\n{{\"usage\":{{\"input_tokens\":3,\"output_tokens\":4}}}}\n{}",
            session_line()
        )
    );
}

#[test]
fn openai_chunks_and_done() {
    let mut t = transformer(ResponseMode::Transformed, OriginBodyKind::EventStream);
    let stream = sse(&[
        r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo"}},{"index":1,"delta":{"content":"ignored"}}]}"#,
        r#"{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]},"finish_reason":"stop"}]}"#,
        r#"{"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0}}}"#,
        "[DONE]",
        r#"{"choices":[{"delta":{"content":"after done"}}]}"#,
    ]);
    let out = t.push(Bytes::from(stream), 0);
    let expected = format!(
        "Hello\n----------\n{}\n{}",
        r#"{"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0}}}"#,
        session_line()
    );
    assert_eq!(String::from_utf8_lossy(&out), expected);
    assert!(t.is_finished());
    // `[DONE]` is a normal end, not an error.
    assert_eq!(t.ended_with_error(), None);
    assert!(t
        .push(Bytes::from_static(b"data: \"more\"\n\n"), 0)
        .is_empty());
    assert!(t.finish(None).is_empty());
}

#[test]
fn strands_fast_path_accepts_exactly_the_text_delta_shape() {
    let accepted = [
        r#"{"event": {"contentBlockDelta": {"delta": {"text": "Hello! How can"}, "contentBlockIndex": 0}}}"#,
        r#"{"event":{"contentBlockDelta":{"delta":{"text":"a \"q\" \u00e9\n"} ,"contentBlockIndex":12}}}"#,
        "{ \"event\" :\n{\"contentBlockDelta\":{\"delta\":{\"text\":\"\"}}}}\r\n",
    ];
    for data in accepted {
        let value: Value = serde_json::from_str(data).unwrap();
        let expected = value["event"]["contentBlockDelta"]["delta"]["text"]
            .as_str()
            .unwrap();
        assert_eq!(
            strands_text_delta(data.as_bytes()).as_deref(),
            Some(expected.as_bytes()),
            "{data}"
        );
    }
    let rejected = [
        r#"{"event": {"contentBlockDelta": {"delta": {"text": "x"}, "contentBlockIndex": 00}}}"#,
        r#"{"event": {"contentBlockDelta": {"delta": {"text": "x"}, "contentBlockIndex": -1}}}"#,
        r#"{"event": {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "x"}}}}"#,
        r#"{"event": {"contentBlockDelta": {"delta": {"text": "x", "more": 1}}}}"#,
        r#"{"event": {"contentBlockDelta": {"delta": {"text": "x"}}}} x"#,
        r#"{"event": {"contentBlockDelta": {"delta": {"text": "x"}}}}}"#,
        r#"{"event": {"contentBlockDelta": {"delta": {"text": "x"}}}"#,
        r#"{"event": {"contentBlockDelta": {"delta": {"text": 5}}}}"#,
        r#"{"event": {"contentBlockDelta": {"delta": {"text": "x"#,
        "{\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \"tab\there\"}}}}",
        "{\"event\": {\"contentBlockDelta\": {\"delta\": {\"text\": \"\u{e9}\\u12\"}}}}",
        r#"{"event": {"contentBlockDelta": {"delta": {"toolUse": {"input": "{}"}}}}}"#,
    ];
    for data in rejected {
        assert_eq!(strands_text_delta(data.as_bytes()), None, "{data}");
    }
    // Rejected shapes still give the right answer through the general path.
    let stream = sse(&[
        r#"{"event": {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "a"}}}}"#,
        r#"{"event": {"contentBlockDelta": {"delta": {"text": "b", "more": 1}}}}"#,
        r#"{"event": {"contentBlockDelta": {"delta": {"text": "c"}}}"#,
    ]);
    let expected = format!(
        "ab{}\n----------\n{}",
        r#"{"event": {"contentBlockDelta": {"delta": {"text": "c"}}}"#,
        session_line()
    );
    assert_eq!(transform(&stream), expected);
}

#[test]
fn agent_messages_are_scrubbed_and_bounded() {
    let scrubbed = Scrubber::default().scrub_bounded(
        "User: arn:aws:sts::123456789012:assumed-role/r/s is not authorized; account 123456789012, \
         request 1234567890123, key ASIAABCDEFGHIJKLMNOP",
        MAX_AGENT_ERROR_MESSAGE,
    );
    assert_eq!(
        scrubbed,
        "User: [redacted] is not authorized; account [redacted], request 1234567890123, key [redacted]"
    );
    let long = "é".repeat(1000);
    let scrubbed = Scrubber::default().scrub_bounded(&long, MAX_AGENT_ERROR_MESSAGE);
    assert!(
        scrubbed.len() <= MAX_AGENT_ERROR_MESSAGE && scrubbed.len() >= MAX_AGENT_ERROR_MESSAGE - 1
    );
}

#[test]
fn sum_into_keeps_integers_and_handles_mixed_numbers() {
    let mut total = serde_json::json!({"a": 1, "b": 1.5, "c": u64::MAX, "d": -2, "e": "x"});
    sum_into(
        &mut total,
        serde_json::json!({"a": 2, "b": 1, "c": 1, "d": 1, "e": "y", "f": null, "g": {"h": 1}}),
    );
    assert_eq!(
        total.to_string(),
        r#"{"a":3,"b":2.5,"c":1.8446744073709552e+19,"d":-1,"e":"y","g":{"h":1}}"#
    );
}

/// AG-UI events as `@ag-ui/core` defines them, compact as its encoders write
/// them.
#[test]
fn ag_ui_text_is_the_text_message_deltas_only() {
    let stream = sse(&[
        r#"{"type":"RUN_STARTED","threadId":"t1","runId":"r1","input":{"messages":[{"id":"u1","role":"user","content":"not text"}]}}"#,
        r#"{"type":"STEP_STARTED","stepName":"plan"}"#,
        r#"{"type":"TEXT_MESSAGE_START","messageId":"m1","role":"assistant"}"#,
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m1","delta":"caf\u00e9 \"q\"\n"}"#,
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m1","delta":"日本"}"#,
        r#"{"type":"TEXT_MESSAGE_END","messageId":"m1"}"#,
        r#"{"type":"TEXT_MESSAGE_CHUNK","messageId":"m2","role":"assistant","delta":" chunk"}"#,
        r#"{"type":"TEXT_MESSAGE_CHUNK","messageId":"m2"}"#,
        r#"{"type":"THINKING_TEXT_MESSAGE_CONTENT","delta":"thinking"}"#,
        r#"{"type":"REASONING_MESSAGE_CONTENT","messageId":"r1","delta":"reasoning"}"#,
        r#"{"type":"REASONING_MESSAGE_CHUNK","messageId":"r1","delta":"reasoning"}"#,
        r#"{"type":"TOOL_CALL_START","toolCallId":"c1","toolCallName":"calc","parentMessageId":"m1"}"#,
        r#"{"type":"TOOL_CALL_ARGS","toolCallId":"c1","delta":"{\"x\":1}"}"#,
        r#"{"type":"TOOL_CALL_CHUNK","toolCallId":"c1","delta":"{}"}"#,
        r#"{"type":"TOOL_CALL_END","toolCallId":"c1"}"#,
        r#"{"type":"TOOL_CALL_RESULT","messageId":"m3","toolCallId":"c1","content":"tool output","role":"tool"}"#,
        r#"{"type":"STATE_SNAPSHOT","snapshot":{"text":"state"}}"#,
        r#"{"type":"STATE_DELTA","delta":[{"op":"add","path":"/a","value":"patch"}]}"#,
        r#"{"type":"MESSAGES_SNAPSHOT","messages":[{"id":"m1","role":"assistant","content":"snapshot"}]}"#,
        r#"{"type":"ACTIVITY_DELTA","messageId":"a1","activityType":"plan","patch":[]}"#,
        r#"{"type":"CUSTOM","name":"usage","value":{"usage":{"totalTokens":5}}}"#,
        // The Strands events ag_ui_strands forwards as RAW were streamed as
        // AG-UI text already: neither their text nor their usage counts.
        r#"{"type":"RAW","event":{"contentBlockDelta":{"delta":{"text":"raw text"}}},"source":"strands"}"#,
        r#"{"type":"RAW","event":{"metadata":{"usage":{"totalTokens":7}}},"source":"strands"}"#,
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m1","delta":{"text":"not a string"}}"#,
        r#"{"type":"STEP_FINISHED","stepName":"plan","usage":{"totalTokens":3}}"#,
    ]);
    let mut t = transformer(ResponseMode::Transformed, OriginBodyKind::EventStream);
    let mut out = t.push(Bytes::from(stream), 0).to_vec();
    assert!(!t.is_finished());
    assert_eq!(t.usage(), None);
    out.extend_from_slice(&t.finish(None));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "caf\u{e9} \"q\"\n日本 chunk\n----------\n{}",
            session_line()
        )
    );
}

#[test]
fn ag_ui_run_finished_ends_the_answer_with_its_usage() {
    let mut t = transformer(ResponseMode::Transformed, OriginBodyKind::EventStream);
    let stream = sse(&[
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m1","delta":"Done"}"#,
        // Per provider and model; the labels are not summed.
        r#"{"type":"RUN_FINISHED","threadId":"t1","runId":"r1","outcome":{"type":"success"},"result":{"usage":{"totalTokens":1000}},"usage":[{"provider":"openai","model":"gpt-4o","inputTokens":100,"outputTokens":20,"totalTokens":120,"reasoningTokens":4},{"provider":"anthropic","model":"claude","inputTokens":10,"outputTokens":5,"totalTokens":15,"cachedInputTokens":8,"costUsd":"0.1"}]}"#,
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m2","delta":"after the run"}"#,
    ]);
    let out = t.push(Bytes::from(stream), 0);
    let expected = format!(
        "Done\n----------\n{}\n{}",
        r#"{"usage":{"inputTokens":110,"outputTokens":25,"totalTokens":135,"reasoningTokens":4,"cachedInputTokens":8}}"#,
        session_line()
    );
    assert_eq!(String::from_utf8_lossy(&out), expected);
    assert!(t.is_finished());
    assert_eq!(t.ended_with_error(), None);
    assert_eq!(t.tokens(), Some(135));
    assert!(t
        .push(Bytes::from_static(b"data: \"more\"\n\n"), 0)
        .is_empty());
    assert!(t.finish(None).is_empty());

    // Without usage (or with a usage of another shape): no metadata line.
    for finished in [
        r#"{"type":"RUN_FINISHED","threadId":"t1","runId":"r1"}"#,
        r#"{"type":"RUN_FINISHED","threadId":"t1","runId":"r1","usage":{"totalTokens":3}}"#,
        r#"{"type":"RUN_FINISHED","threadId":"t1","runId":"r1","usage":[{"model":"m"},7,null]}"#,
    ] {
        assert_eq!(
            transform(&sse(&[finished])),
            format!("\n----------\n{}", session_line()),
            "{finished}"
        );
    }
}

#[test]
fn ag_ui_run_error_is_the_error_line_and_ends_the_answer() {
    let mut t = transformer(ResponseMode::Transformed, OriginBodyKind::EventStream);
    let stream = sse(&[
        r#"{"type":"TEXT_MESSAGE_CONTENT","messageId":"m1","delta":"partial"}"#,
        r#"{"type":"RUN_ERROR","message":"User: arn:aws:sts::123456789012:assumed-role/r/s is not authorized (key AKIAABCDEFGHIJKLMNOP)","code":"STRANDS_ERROR","usage":[{"inputTokens":9,"outputTokens":1}]}"#,
        r#"{"type":"RUN_ERROR","message":"a second error"}"#,
    ]);
    let out = t.push(Bytes::from(stream), 0);
    let expected = format!(
        "partial\n----------\n{}\n{}\n{}",
        r#"{"usage":{"inputTokens":9,"outputTokens":1}}"#,
        r#"{"error":{"code":"agent_error","message":"STRANDS_ERROR: User: [redacted] is not authorized (key [redacted])"}}"#,
        session_line()
    );
    assert_eq!(String::from_utf8_lossy(&out), expected);
    assert!(t.is_finished());
    assert_eq!(t.tokens(), Some(10));

    // No code, no message, an `event: error` line: still the agent's error.
    assert!(
        transform(&sse(&[r#"{"type":"RUN_ERROR","message":"it broke"}"#]))
            .contains(r#"{"error":{"code":"agent_error","message":"it broke"}}"#)
    );
    assert!(transform(&sse(&[r#"{"type":"RUN_ERROR","code":7}"#]))
        .contains(r#"{"error":{"code":"agent_error","message":"the agent reported an error"}}"#));
    assert!(transform(
        "event: error\ndata: {\"type\":\"RUN_ERROR\",\"message\":\"its own\",\"code\":\"E1\"}\n\n"
    )
    .contains(r#"{"error":{"code":"agent_error","message":"E1: its own"}}"#));
    assert!(
        transform("event: error\ndata: {\"type\":\"STEP_FINISHED\",\"stepName\":\"s\"}\n\n")
            .contains(
                r#"{"error":{"code":"agent_error","message":"the agent reported an error"}}"#
            )
    );
}

#[test]
fn ag_ui_type_names_are_screaming_snake_case() {
    for kind in [
        "RUN_STARTED",
        "TEXT_MESSAGE_CONTENT",
        "RAW",
        "A_FUTURE_EVENT",
    ] {
        assert!(ag_ui::is_ag_ui_type(kind), "{kind}");
    }
    for kind in [
        "",
        "_RUN",
        "content_block_delta",
        "error",
        "Run_Started",
        "RUN-STARTED",
        "RUN STARTED",
        "RUN_STARTED2",
    ] {
        assert!(!ag_ui::is_ag_ui_type(kind), "{kind}");
    }
}
