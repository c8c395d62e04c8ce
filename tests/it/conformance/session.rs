//! The session id: from the body, from the header, or generated; always
//! echoed in the response header, and sent to the origin as the subject's
//! (`docs/interface.md`, "The request": `runtimeSessionId`; what the
//! origin gets is checked further in [`super::agents`]).

use std::sync::Arc;

use super::client::{invoke, send, session_id, split_transformed, unique, SESSION_HEADER};
use super::stack::stack;
use super::tokens::{origin_session, token};
use super::{every_target, Target};

/// The transformed trailer's session line of a body.
fn trailer_session(body: &str) -> String {
    let parts = split_transformed(body);
    let line: serde_json::Value =
        serde_json::from_str(parts.trailer.last().expect("a trailer")).expect("JSON line");
    line["runtimeSessionId"]
        .as_str()
        .expect("runtimeSessionId")
        .to_owned()
}

async fn session_id_from_the_body(t: Arc<Target>) {
    let session = session_id("body");
    let token = token(&unique("session"));
    let reply = send(invoke(
        &t,
        Some(&token),
        format!(
            r#"{{"prompt":"/events 1 1","response":"transformed","runtimeSessionId":"{session}"}}"#
        ),
    ))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header(SESSION_HEADER), Some(session.as_str()));
    assert_eq!(trailer_session(&reply.text()), session);
    assert!(
        stack()
            .tap
            .carried(&origin_session(&token, "default", &session)),
        "the origin got the session header"
    );
}

async fn session_id_from_the_header(t: Arc<Target>) {
    let session = session_id("header");
    let token = token(&unique("session"));
    let reply = send(
        invoke(
            &t,
            Some(&token),
            r#"{"prompt":"/events 1 1","response":"transformed"}"#,
        )
        .header(SESSION_HEADER, &session),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header(SESSION_HEADER), Some(session.as_str()));
    assert_eq!(trailer_session(&reply.text()), session);
    assert!(stack()
        .tap
        .carried(&origin_session(&token, "default", &session)));
}

async fn body_session_id_wins_over_the_header(t: Arc<Target>) {
    let (in_body, in_header) = (session_id("wins-body"), session_id("wins-header"));
    let reply = send(
        invoke(
            &t,
            Some(&token(&unique("session"))),
            format!(r#"{{"prompt":"/events 1 1","runtimeSessionId":"{in_body}"}}"#),
        )
        .header(SESSION_HEADER, &in_header),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header(SESSION_HEADER), Some(in_body.as_str()));
}

async fn session_id_is_generated_when_absent(t: Arc<Target>) {
    let token = token(&unique("session"));
    let mut seen = Vec::new();
    for _ in 0..2 {
        let reply = send(invoke(
            &t,
            Some(&token),
            r#"{"prompt":"/events 1 1","response":"transformed"}"#,
        ))
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let session = reply
            .header(SESSION_HEADER)
            .expect("a generated session id")
            .to_owned();
        assert!(
            session.len() >= 33,
            "AgentCore needs at least 33 characters: {session}"
        );
        assert!(session.bytes().all(|b| b.is_ascii_graphic()), "{session}");
        assert_eq!(trailer_session(&reply.text()), session);
        assert!(
            stack()
                .tap
                .carried(&origin_session(&token, "default", &session)),
            "the origin got the generated id"
        );
        seen.push(session);
    }
    assert_ne!(seen[0], seen[1], "a new id per request");
}

async fn malformed_session_ids_are_400(t: Arc<Target>) {
    let token = token(&unique("session"));
    for bad in ["too-short", &"x".repeat(257)] {
        let reply = send(invoke(
            &t,
            Some(&token),
            format!(r#"{{"prompt":"/events 1 1","runtimeSessionId":"{bad}"}}"#),
        ))
        .await;
        reply.assert_error(400, "invalid_session_id");
        let reply = send(
            invoke(&t, Some(&token), r#"{"prompt":"/events 1 1"}"#).header(SESSION_HEADER, bad),
        )
        .await;
        reply.assert_error(400, "invalid_session_id");
    }
    let reply = send(invoke(
        &t,
        Some(&token),
        r#"{"prompt":"x","runtimeSessionId":42}"#,
    ))
    .await;
    reply.assert_error(400, "invalid_field");
}

every_target!(
    session_id_from_the_body,
    session_id_from_the_header,
    body_session_id_wins_over_the_header,
    session_id_is_generated_when_absent,
    malformed_session_ids_are_400,
);
