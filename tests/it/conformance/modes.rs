//! The two response modes (`docs/interface.md`, "The response"), their
//! selection, their headers, and the payload forwarded to the origin.

use std::sync::Arc;

use std::time::SystemTime;

use agent_edge::origin::{build_request, Invocation};
use bytes::Bytes;
use serde_json::Value;

use super::client::{
    client, data_events, delta_texts, invoke, normalize_latency, post, send, session_id,
    split_transformed, unique, Reply, SESSION_HEADER,
};
use super::stack::stack;
use super::tokens::{origin_session, token};
use super::{every_target, Target};

/// What the demo origin answers, called directly (no gateway, no tap).
async fn direct(payload: &str, session: &str) -> Reply {
    let request = build_request(
        &stack().direct_origin(),
        Invocation {
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            session_id: session,
            user_id: None,
            bearer_token: None,
        },
        SystemTime::now(),
    )
    .expect("an origin request");
    let request = reqwest::Request::try_from(request).expect("a reqwest request");
    let response = client()
        .execute(request)
        .await
        .expect("the demo origin answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("the demo origin's body");
    assert_eq!(status, 200, "direct call: {body:?}");
    Reply {
        status,
        headers,
        body,
    }
}

/// The payload the origin received for this client session id, sent with
/// `token` to the default agent.
pub(super) fn received_payload(token: &str, session: &str) -> Bytes {
    let session = &origin_session(token, "default", session);
    let requests = stack().demo.requests();
    let request = requests
        .iter()
        .rev()
        .find(|r| r.headers.get(SESSION_HEADER).is_some_and(|v| v == session))
        .unwrap_or_else(|| panic!("the origin got no request for session {session}"));
    request.body.clone()
}

pub fn assert_stream_headers(reply: &Reply, content_type: &str, session: &str) {
    assert_eq!(
        reply.header("content-type"),
        Some(content_type),
        "Content-Type"
    );
    assert_eq!(
        reply.header("cache-control"),
        Some("no-cache, no-transform"),
        "Cache-Control"
    );
    assert_eq!(
        reply.header("content-encoding"),
        Some("identity"),
        "Content-Encoding"
    );
    assert_eq!(
        reply.header("x-accel-buffering"),
        Some("no"),
        "X-Accel-Buffering"
    );
    assert_eq!(
        reply.header(SESSION_HEADER),
        Some(session),
        "session header"
    );
    assert!(
        reply
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty()),
        "X-Request-Id"
    );
}

async fn original_mode_is_the_origin_byte_for_byte(t: Arc<Target>) {
    let session = session_id("original");
    // Control fields anywhere in the object; the rest raw (number
    // spelling, escapes, nesting) must reach the origin unchanged.
    let body = format!(
        r#"{{"response":"original","prompt":"hello there, conformance","extra":{{"n":1.50,"s":"caf\u00e9 \"q\""}},"runtimeSessionId":"{session}","list":[1,2e3]}}"#
    );
    let payload = r#"{"prompt":"hello there, conformance","extra":{"n":1.50,"s":"caf\u00e9 \"q\""},"list":[1,2e3]}"#;
    let token = token(&unique("original"));
    let reply = send(invoke(&t, Some(&token), body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_stream_headers(&reply, "text/event-stream", &session);
    assert_eq!(
        received_payload(&token, &session),
        payload,
        "the payload the origin received"
    );

    let expected = direct(payload, &session_id("original-direct")).await;
    assert!(!expected.body.is_empty());
    // Only the origin's own latency measurement may differ.
    assert_eq!(
        normalize_latency(&reply.text()),
        normalize_latency(&expected.text()),
        "original mode must be the origin's bytes"
    );
    assert_eq!(
        reply.body.len(),
        expected.body.len(),
        "same length (latency aside)"
    );
}

async fn original_mode_relays_an_agent_error_event_unchanged(t: Arc<Target>) {
    let session = session_id("original-error");
    let payload = r#"{"prompt":"/error-after 3"}"#;
    let reply = send(
        invoke(&t, Some(&token(&unique("original-error"))), payload)
            .header(SESSION_HEADER, &session),
    )
    .await;
    assert_eq!(reply.status, 200);
    let expected = direct(payload, &session).await;
    // No timing inside: exactly the same bytes.
    assert_eq!(reply.text(), expected.text());
    let last = data_events(&reply.text()).pop().expect("events");
    assert_eq!(last["error_type"], "RuntimeError", "{last}");
}

async fn transformed_mode_is_text_and_trailer(t: Arc<Target>) {
    let session = session_id("transformed");
    let payload = r#"{"prompt":"hello there, conformance"}"#;
    let token = token(&unique("transformed"));
    let reply = send(
        invoke(
            &t,
            Some(&token),
            r#"{"prompt":"hello there, conformance","response":"transformed"}"#,
        )
        .header(SESSION_HEADER, &session),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_stream_headers(&reply, "text/plain; charset=utf-8", &session);
    assert_eq!(received_payload(&token, &session), payload);

    let body = reply.text();
    let parts = split_transformed(&body);
    let origin = direct(payload, &session_id("transformed-direct")).await;
    let events = data_events(&origin.text());
    assert_eq!(
        parts.text,
        delta_texts(&events).concat(),
        "the answer's text"
    );
    assert_eq!(
        parts.trailer.len(),
        2,
        "metadata and session lines: {body:?}"
    );
    let metadata: Value = serde_json::from_str(&parts.trailer[0]).expect("metadata JSON");
    let origin_metadata = &events.last().expect("events")["event"]["metadata"];
    assert_eq!(metadata["usage"], origin_metadata["usage"], "usage");
    assert!(metadata["metrics"]["latencyMs"].is_u64(), "{metadata}");
    // Compact, keys in the order received.
    assert_eq!(
        normalize_latency(&parts.trailer[0]),
        normalize_latency(&serde_json::to_string(origin_metadata).unwrap())
    );
    assert_eq!(
        parts.trailer[1],
        format!(r#"{{"runtimeSessionId":"{session}"}}"#)
    );
    assert!(!body.ends_with('\n'), "no newline after the last line");
}

async fn mode_from_body_then_query_then_accept(t: Arc<Target>) {
    const TEXT: &str = "text/plain; charset=utf-8";
    const EVENTS: &str = "text/event-stream";
    let token = token(&unique("mode"));
    let prompt = r#"{"prompt":"/events 2 1"}"#;
    let original = r#"{"prompt":"/events 2 1","response":"original"}"#;
    // (what, query, Accept, body, the Content-Type answered)
    let cases = [
        (
            "?response=transformed",
            "?response=transformed",
            None,
            prompt,
            TEXT,
        ),
        ("Accept: text/plain", "", Some("text/plain"), prompt, TEXT),
        (
            "the body field wins",
            "?response=transformed",
            None,
            original,
            EVENTS,
        ),
        (
            "the query wins over Accept",
            "?response=original",
            Some("text/plain"),
            prompt,
            EVENTS,
        ),
        ("the default (original)", "", None, prompt, EVENTS),
    ];
    for (what, query, accept, body, content_type) in cases {
        let mut request = post(&t, &format!("/invocations{query}"), Some(&token), body);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let reply = send(request).await;
        assert_eq!(reply.header("content-type"), Some(content_type), "{what}");
    }
}

async fn json_origin_answer_in_both_modes(t: Arc<Target>) {
    let token = token(&unique("json"));
    let payload = r#"{"prompt":"/json hi"}"#;
    let origin = direct(payload, &session_id("json-direct")).await;

    let reply = send(invoke(&t, Some(&token), payload)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.body, origin.body, "passed through in original mode");

    let session = session_id("json");
    let reply = send(
        invoke(
            &t,
            Some(&token),
            r#"{"prompt":"/json hi","response":"transformed"}"#,
        )
        .header(SESSION_HEADER, &session),
    )
    .await;
    let text: String = serde_json::from_slice(&origin.body).expect("a JSON string");
    assert_eq!(
        reply.text(),
        format!("{text}\n----------\n{{\"runtimeSessionId\":\"{session}\"}}"),
        "the string printed, no metadata line"
    );
}

every_target!(
    original_mode_is_the_origin_byte_for_byte,
    original_mode_relays_an_agent_error_event_unchanged,
    transformed_mode_is_text_and_trailer,
    mode_from_body_then_query_then_accept,
    json_origin_answer_in_both_modes,
);
