//! The demo agent's scripted answers, prompt by prompt.
use std::time::SystemTime;

use super::super::test_support::*;
use super::super::{DemoOrigin, DEMO_ACCESS_KEY_ID, DEMO_RUNTIME_ARN, DEMO_SECRET_ACCESS_KEY};
use super::*;

#[tokio::test]
async fn events_prompt_streams_numbered_deltas() {
    let origin = start(fast()).await;
    let body = ask(&origin, r#"{"prompt":"/events 5 1"}"#)
        .await
        .text()
        .await
        .unwrap();
    let events = data_lines(&body);
    let texts: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event"]["contentBlockDelta"]["delta"]["text"].as_str())
        .collect();
    assert_eq!(texts, ["1", " 2", " 3", " 4", " 5"]);
    assert_eq!(events.len(), 9);
}

#[tokio::test]
async fn events_prompt_groups_numbers_into_deltas() {
    let origin = start(fast()).await;
    let body = ask(&origin, r#"{"prompt":"/events 8 0 3"}"#)
        .await
        .text()
        .await
        .unwrap();
    let texts: Vec<String> = data_lines(&body)
        .iter()
        .filter_map(|e| e["event"]["contentBlockDelta"]["delta"]["text"].as_str())
        .map(str::to_owned)
        .collect();
    assert_eq!(texts, ["1 2 3", " 4 5 6", " 7 8"]);
}

#[tokio::test]
async fn error_after_prompt_ends_with_the_sdk_error_event() {
    let origin = start(fast()).await;
    let body = ask(&origin, r#"{"prompt":"/error-after 2"}"#)
        .await
        .text()
        .await
        .unwrap();
    assert!(body.ends_with(
        "data: {\"error\": \"demo failure requested by the prompt\", \"error_type\": \"RuntimeError\", \
         \"message\": \"An error occurred during streaming\"}\n\n"
    ), "{body}");
    assert_eq!(data_lines(&body).len(), 4);
}

#[tokio::test]
async fn abort_after_prompt_cuts_the_connection() {
    let origin = start(fast()).await;
    let response = ask(&origin, r#"{"prompt":"/abort-after 1"}"#).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.is_err());
}

#[tokio::test]
async fn origin_error_prompt_echoes_secrets() {
    let origin = start(fast()).await;
    let response = ask(&origin, r#"{"prompt":"/origin-error 429"}"#).await;
    let (status, error_type, message) = rejection(response).await;
    assert_eq!((status, error_type.as_str()), (429, "ThrottlingException"));
    for secret in [
        DEMO_RUNTIME_ARN,
        "123456789012",
        DEMO_ACCESS_KEY_ID,
        DEMO_SECRET_ACCESS_KEY,
    ] {
        assert!(message.contains(secret), "{message}");
    }
}

#[tokio::test]
async fn json_prompt_answers_json() {
    let origin = start(fast()).await;
    let response = ask(&origin, r#"{"prompt":"/json hi"}"#).await;
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    let text: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert!(text.as_str().unwrap().starts_with("You said: \"hi\"."));
}

#[tokio::test]
async fn usage_keys_prompt_sends_a_wide_usage_object() {
    let origin = start(fast()).await;
    let body = ask(&origin, r#"{"prompt":"/usage-keys 3"}"#)
        .await
        .text()
        .await
        .unwrap();
    let events = data_lines(&body);
    assert_eq!(
        events.last().unwrap()["event"]["metadata"]["usage"],
        json!({"inputTokens": 1, "outputTokens": 1, "totalTokens": 2,
               "nested": {"n1": 1, "n2": 2, "n3": 3}, "k1": 1, "k2": 2, "k3": 3})
    );
}

#[test]
fn python_json_separators_and_unicode() {
    let value = json!({"a": [1, 2, {"b": "ü\n\"x\""}], "c": null, "d": 1.5});
    assert_eq!(
        python_json(&value),
        r#"{"a": [1, 2, {"b": "ü\n\"x\""}], "c": null, "d": 1.5}"#
    );
}
async fn answer_to(prompt: &str) -> reqwest::Response {
    let origin = start(fast()).await;
    let payload = json!({ "prompt": prompt }).to_string();
    let response = send(signed(&origin.origin_config(), &payload, SystemTime::now())).await;
    // The server stops with `origin`: read what is needed first.
    std::mem::forget(origin);
    response
}

#[tokio::test]
async fn reset_prompt_closes_before_the_head() {
    let origin = start(fast()).await;
    let request = signed(
        &origin.origin_config(),
        r#"{"prompt":"/reset"}"#,
        SystemTime::now(),
    );
    let request = reqwest::Request::try_from(request).unwrap();
    assert!(reqwest::Client::new().execute(request).await.is_err());
}

#[tokio::test]
async fn origin_html_prompt_answers_an_html_page() {
    let response = answer_to("/origin-html 502").await;
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/html");
    assert!(response
        .text()
        .await
        .unwrap()
        .starts_with("<!doctype html>"));
}

#[tokio::test]
async fn slow_headers_prompt_waits_before_the_head() {
    let started = Instant::now();
    let response = answer_to("/slow-headers 300").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(response.status(), 200);
    assert_eq!(data_lines(&response.text().await.unwrap()).len(), 7);
}

#[tokio::test]
async fn stall_prompt_sends_its_deltas_then_nothing() {
    let mut response = answer_to("/stall-after 2").await;
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            body.extend_from_slice(&chunk);
        }
    };
    let ended = tokio::time::timeout(Duration::from_millis(500), read).await;
    assert!(ended.is_err(), "the body is still open");
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(r#"{"text": " 2"}"#), "{text}");
    assert!(!text.contains("messageStop"), "{text}");
}

#[tokio::test]
async fn drop_mid_event_prompt_cuts_inside_an_event() {
    let mut response = answer_to("/drop-mid-event").await;
    let mut body = Vec::new();
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => panic!("the body ended cleanly: {body:?}"),
            Err(error) => break error,
        }
    };
    let text = String::from_utf8(body).unwrap();
    assert!(text.ends_with(r#"{"text": " 2"#), "{text:?} then {error}");
}

#[tokio::test]
async fn invalid_utf8_prompt_sends_bytes_that_are_not_utf8() {
    let body = answer_to("/invalid-utf8").await.bytes().await.unwrap();
    assert!(std::str::from_utf8(&body).is_err());
    assert!(body.windows(2).any(|w| w == b"\xff\xfe"));
    assert!(body.ends_with(b"\"stopReason\": \"end_turn\"}}}\n\n"));
}

#[tokio::test]
async fn big_event_prompt_sends_one_large_delta() {
    let body = answer_to("/big-event 100000").await.text().await.unwrap();
    let events = data_lines(&body);
    let text = events[1]["event"]["contentBlockDelta"]["delta"]["text"]
        .as_str()
        .unwrap();
    assert_eq!(text.len(), 100_000);
}

#[tokio::test]
async fn garbage_and_content_type_prompts_send_what_they_say() {
    let response = answer_to("/garbage").await;
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "text/event-stream; charset=utf-8"
    );
    let body = response.bytes().await.unwrap();
    assert_eq!(body, garbage(4096));
    assert!(body.contains(&0) && std::str::from_utf8(&body).is_err());

    let response = answer_to("/content-type text/html").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/html");
}

#[test]
fn gzip_stored_is_valid_gzip() {
    // The CRC-32 check value of RFC 3720's example.
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    let data = b"data: {}\n\n".repeat(10_000);
    let gz = gzip_stored(&data);
    assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
    assert_eq!(
        gz.len(),
        data.len() + 10 + 8 + 5 * data.len().div_ceil(65_535)
    );
    assert_eq!(&gz[gz.len() - 4..], &(data.len() as u32).to_le_bytes());
}

#[tokio::test]
async fn gzip_prompt_sends_a_gzip_encoded_stream() {
    let response = answer_to("/gzip").await;
    assert_eq!(response.headers()[CONTENT_ENCODING], "gzip");
    let body = response.bytes().await.unwrap();
    assert_eq!(&body[..2], &[0x1f, 0x8b]);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(r#"{"text": " 3"}"#), "stored blocks: {text}");
}

#[tokio::test]
async fn echo_prompts_quote_the_request_even_unsigned() {
    let origin = start(fast()).await;
    let unsigned = crate::config::OriginConfig {
        auth: crate::config::OriginAuth::None,
        ..origin.origin_config()
    };
    let mut request = signed(
        &unsigned,
        r#"{"prompt":"/echo-error-type"}"#,
        SystemTime::now(),
    );
    request.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_static("Bearer abc.def.ghi"),
    );
    let (status, error_type, _) = rejection(send(request).await).await;
    assert_eq!((status, error_type.as_str()), (500, "Bearer abc.def.ghi"));

    let body = ask(&origin, r#"{"prompt":"/echo-request"}"#)
        .await
        .text()
        .await
        .unwrap();
    let events = data_lines(&body);
    let usage = &events[2]["event"]["metadata"]["usage"];
    assert!(usage["echo"]["authorization"]
        .as_str()
        .unwrap()
        .contains(DEMO_ACCESS_KEY_ID));
    let error = events[3]["error"].as_str().unwrap();
    assert!(
        error.contains("arn%3aaws%3a") && error.contains("arn%3Aaws%3A"),
        "{error}"
    );
    assert!(error.contains("Signature="), "{error}");
}

/// A signed request for `prompt` in session `session`.
fn in_session(origin: &DemoOrigin, prompt: &str, session: &str) -> http::Request<Bytes> {
    crate::origin::build_request(
        &origin.origin_config(),
        crate::origin::Invocation {
            payload: Bytes::from(json!({ "prompt": prompt }).to_string()),
            session_id: session,
            user_id: None,
            bearer_token: None,
        },
        SystemTime::now(),
    )
    .unwrap()
}

#[tokio::test]
async fn status_then_fails_the_first_requests_of_each_session() {
    let origin = start(fast()).await;
    let (one, two) = (
        "session-one-0123456789abcdef0123456789",
        "session-two-0123456789abcdef0123456789",
    );
    for _ in 0..2 {
        let response = send(in_session(&origin, "/conflict-then 2", one)).await;
        assert!(response.headers().get("retry-after").is_none());
        let (status, error_type, message) = rejection(response).await;
        assert_eq!(
            (status, error_type.as_str()),
            (409, "RetryableConflictException")
        );
        assert!(!message.contains(DEMO_ACCESS_KEY_ID), "{message}");
    }
    // Another session counts on its own, and so does another status.
    let (status, _, _) = rejection(send(in_session(&origin, "/conflict-then 2", two)).await).await;
    assert_eq!(status, 409);
    let response = send(in_session(&origin, "/status-then 503 1 7", one)).await;
    assert_eq!(response.headers()["retry-after"], "7");
    let (status, error_type, _) = rejection(response).await;
    assert_eq!(
        (status, error_type.as_str()),
        (503, "ServiceUnavailableException")
    );

    // Then the usual reply, in the session.
    let response = send(in_session(&origin, "/conflict-then 2", one)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[SESSION_ID_HEADER], one);
    let text: String = data_lines(&response.text().await.unwrap())
        .iter()
        .filter_map(|e| {
            e["event"]["contentBlockDelta"]["delta"]["text"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        text.starts_with("You said: \"/conflict-then 2\"."),
        "{text}"
    );
    assert_eq!(origin.requests_of_session(one).len(), 4);
    assert!(origin
        .requests_of_session(one)
        .iter()
        .all(|r| origin.signature_verifies(r)));
}

#[tokio::test]
async fn agentcore_statuses_have_their_error_types() {
    let origin = start(fast()).await;
    for (prompt, status, error_type) in [
        ("/runtime-client-error", 424, "RuntimeClientError"),
        ("/quota", 402, "ServiceQuotaExceededException"),
        ("/status-then 429 1", 429, "ThrottlingException"),
    ] {
        let (got, got_type, message) =
            rejection(ask(&origin, &json!({ "prompt": prompt }).to_string()).await).await;
        assert_eq!((got, got_type.as_str()), (status, error_type), "{prompt}");
        assert!(!message.contains(DEMO_RUNTIME_ARN), "{message}");
    }
}

#[tokio::test]
async fn a_request_with_a_bad_signature_is_recorded_but_does_not_verify() {
    let origin = start(fast()).await;
    let mut request = signed(
        &origin.origin_config(),
        r#"{"prompt":"hi"}"#,
        SystemTime::now(),
    );
    *request.body_mut() = Bytes::from_static(br#"{"prompt":"changed"}"#);
    let (status, _, _) = rejection(send(request).await).await;
    assert_eq!(status, 403);
    let recorded = origin.requests();
    assert_eq!(recorded.len(), 1);
    assert!(!origin.signature_verifies(&recorded[0]));
}

#[tokio::test]
async fn ag_ui_prompts_stream_the_recordings_event_by_event() {
    for (prompt, recording) in [("/ag-ui", AG_UI_RUN), ("/ag-ui-error", AG_UI_RUN_ERROR)] {
        let mut response = answer_to(prompt).await;
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/event-stream; charset=utf-8"
        );
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            body.extend_from_slice(&chunk);
        }
        assert_eq!(body, recording, "{prompt}");
    }
    // Sent a chunk per event, `word_delay` apart.
    let chunks = events_of(AG_UI_RUN_ERROR);
    assert_eq!(chunks.len(), 5);
    assert!(chunks.iter().all(|chunk| chunk.ends_with(b"\n\n")));
    assert!(chunks[4].starts_with(b"data: {\"type\":\"RUN_ERROR\""));
}
