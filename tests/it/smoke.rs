//! Smoke tests of the native pipeline: demo origin, gateway, transformed
//! answer, and its log line.

use crate::native_stack::NativeStack;

#[tokio::test]
async fn transformed_answer_through_the_native_gateway() {
    let stack = NativeStack::start(&[("AUTH", "none")]).await;
    let body = r#"{"prompt":"hello there","response":"transformed"}"#;
    let response = stack.invoke(body, &[]).await;
    assert_eq!(response.status(), 200);
    let session = response
        .headers()
        .get("x-amzn-bedrock-agentcore-runtime-session-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.text().await.unwrap();
    assert!(
        body.ends_with(&format!("{{\"runtimeSessionId\":\"{session}\"}}")),
        "{body}"
    );
    assert!(body.contains("\n----------\n{\"usage\":"), "{body}");
}

/// An event over `MAX_EVENT_BYTES` ends the stream with the error in the
/// trailer, and the log line says so (not `complete`).
#[tokio::test]
async fn an_event_over_the_limit_is_logged_as_an_origin_error() {
    let stack = NativeStack::start(&[("AUTH", "none"), ("MAX_EVENT_BYTES", "1024")]).await;
    // One delta of 400 numbers: an event of about 1.5 KB.
    let body = r#"{"prompt":"/events 400 0 400","response":"transformed"}"#;
    let response = stack
        .invoke(body, &[("x-request-id", "smoke-event-too-large")])
        .await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("\n----------\n{\"error\":{\"code\":\"event_too_large\""),
        "{body}"
    );
    let line = stack
        .request_log("smoke-event-too-large")
        .expect("the request's log line");
    assert_eq!(line["outcome"], "origin_error", "{line}");
    assert_eq!(line["error"], "event_too_large", "{line}");
}
