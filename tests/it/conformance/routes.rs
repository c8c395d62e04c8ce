//! Routes, methods, content types, body limits and the errors before a
//! stream starts (`docs/interface.md`, "Routes", "Errors").

use std::sync::Arc;

use bytes::Bytes;

use super::child;
use super::client::{client, invoke, post, send, unique};
use super::stack::{TargetKind, MAX_BODY_BYTES};
use super::tokens::token;
use super::{every_target, Target};

async fn ping_is_healthy(t: Arc<Target>) {
    let reply = send(client().get(t.url("/ping"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), r#"{"status":"Healthy"}"#);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply
        .header("x-request-id")
        .is_some_and(|id| !id.is_empty()));
}

async fn unknown_route_is_404(t: Arc<Target>) {
    let reply = send(client().post(t.url("/nope")).body("{}")).await;
    reply.assert_error(404, "not_found");
    let reply = send(client().get(t.url("/invocations/extra"))).await;
    reply.assert_error(404, "not_found");
}

async fn wrong_method_is_405_with_allow(t: Arc<Target>) {
    let reply = send(client().get(t.url("/invocations"))).await;
    reply.assert_error(405, "method_not_allowed");
    let allow = reply.header("allow").expect("Allow on a 405");
    assert!(allow.contains("POST"), "Allow: {allow}");

    let reply = send(client().delete(t.url("/ping"))).await;
    reply.assert_error(405, "method_not_allowed");
    let allow = reply.header("allow").expect("Allow on a 405");
    assert!(
        allow.contains("GET") && !allow.contains("POST"),
        "Allow: {allow}"
    );
}

async fn non_json_content_type_is_415(t: Arc<Target>) {
    let token = token(&unique("415"));
    let reply = send(
        client()
            .post(t.url("/invocations"))
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body(r#"{"prompt":"hi"}"#),
    )
    .await;
    reply.assert_error(415, "unsupported_media_type");
}

async fn malformed_json_is_400(t: Arc<Target>) {
    let token = token(&unique("400"));
    let reply = send(invoke(&t, Some(&token), r#"{"prompt": "unterminated"#)).await;
    reply.assert_error(400, "invalid_json");
    let reply = send(invoke(&t, Some(&token), r#"["not", "an", "object"]"#)).await;
    reply.assert_error(400, "invalid_body");
    let reply = send(invoke(
        &t,
        Some(&token),
        r#"{"prompt":"x","response":"loud"}"#,
    ))
    .await;
    reply.assert_error(400, "invalid_response_mode");
}

async fn declared_body_over_the_limit_is_413(t: Arc<Target>) {
    let token = token(&unique("413"));
    let prompt = "x".repeat(MAX_BODY_BYTES);
    let reply = send(invoke(
        &t,
        Some(&token),
        format!(r#"{{"prompt":"{prompt}"}}"#),
    ))
    .await;
    reply.assert_error(413, "body_too_large");
}

async fn chunked_body_over_the_limit_is_413(t: Arc<Target>) {
    // No Content-Length: the limit must hold while reading.
    let token = token(&unique("413-chunked"));
    let reply = send(oversized_chunked(&t, &token)).await;
    reply.assert_error(413, "body_too_large");
}

async fn refusing_a_chunked_body_leaves_other_requests_alone(t: Arc<Target>) {
    // The gateway stops reading an over-limit body and answers; requests
    // in flight meanwhile must not notice.
    let token = token(&unique("413-neighbours"));
    for round in 0..3 {
        let requests = (0..6).map(|i| {
            let (t, token) = (t.clone(), token.clone());
            async move {
                if i == 0 {
                    send(oversized_chunked(&t, &token)).await.status
                } else {
                    tokio::time::sleep(std::time::Duration::from_millis(5 * i)).await;
                    send(invoke(&t, Some(&token), "not json")).await.status
                }
            }
        });
        let statuses = futures::future::join_all(requests).await;
        assert_eq!(statuses, [413, 400, 400, 400, 400, 400], "round {round}");
    }
}

/// `POST /invocations` with a body over the limit, sent chunked (no
/// Content-Length).
pub(super) fn oversized_chunked(t: &Target, token: &str) -> reqwest::RequestBuilder {
    let pieces: Vec<Result<Bytes, std::io::Error>> =
        std::iter::once(Ok(Bytes::from_static(b"{\"prompt\":\"")))
            .chain((0..MAX_BODY_BYTES / 512 + 2).map(|_| Ok(Bytes::from(vec![b'y'; 512]))))
            .chain(std::iter::once(Ok(Bytes::from_static(b"\"}"))))
            .collect();
    client()
        .post(t.url("/invocations"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
}

async fn body_at_the_limit_is_accepted(t: Arc<Target>) {
    let token = token(&unique("limit"));
    let head = r#"{"prompt":"/events 1 1","pad":""#;
    let pad = "p".repeat(MAX_BODY_BYTES - head.len() - 2);
    let body = format!("{head}{pad}\"}}");
    assert_eq!(body.len(), MAX_BODY_BYTES);
    let reply = send(invoke(&t, Some(&token), body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

async fn root_path_invokes_like_invocations(t: Arc<Target>) {
    // For clients of the CloudFront setup.
    let token = token(&unique("root"));
    let body = r#"{"prompt":"/events 2 1","response":"transformed"}"#;
    let reply = send(post(&t, "/", Some(&token), body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.text().starts_with("1 2\n----------\n"),
        "{}",
        reply.text()
    );
}

async fn request_id_is_echoed_or_generated(t: Arc<Target>) {
    let id = unique("conformance-request");
    let reply = send(client().get(t.url("/ping")).header("x-request-id", &id)).await;
    assert_eq!(reply.header("x-request-id"), Some(id.as_str()));

    let first = send(client().get(t.url("/ping"))).await;
    let second = send(client().get(t.url("/ping"))).await;
    let (a, b) = (
        first.header("x-request-id").unwrap(),
        second.header("x-request-id").unwrap(),
    );
    assert!(a.len() >= 16 && a != b, "generated request ids {a} {b}");

    // On errors too.
    let reply = send(client().post(t.url("/nope")).header("x-request-id", &id)).await;
    assert_eq!(reply.header("x-request-id"), Some(id.as_str()));
}

async fn chat_page_is_served_with_a_strict_policy(t: Arc<Target>) {
    let reply = send(
        client()
            .get(t.url("/"))
            .header("accept-encoding", "gzip, deflate, br, zstd"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = reply.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    if reply.header("content-encoding").is_none() {
        let html = reply.text();
        assert!(html.contains(r#"data-auth="jwt""#), "{html}");
        assert!(html.contains(r#"<script src="/app.js""#), "{html}");
    }
    for (path, content_type) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
    ] {
        let reply = send(client().get(t.url(path))).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert!(!reply.body.is_empty(), "{path}");
    }
    let reply = send(client().put(t.url("/")).body("{}")).await;
    reply.assert_error(405, "method_not_allowed");
}

/// `UI=off`, on a native gateway and a Worker of its own; with `AUTH=none`,
/// which each logs once as the `auth_disabled` warning.
#[tokio::test]
async fn ui_off_removes_the_chat_page() {
    let vars = super::stack::vars_with(&[("UI", "off"), ("AUTH", "none")]);
    let (_server, native) = super::stack::spawn_native(&vars).await;
    let worker = if TargetKind::Worker.left_out("ui_off_removes_the_chat_page") {
        None
    } else {
        let start = move |logs| super::worker::start_named("ui-off", &vars, logs);
        Some(child::own(TargetKind::Worker, start).await)
    };
    for t in std::iter::once(&native).chain(worker.iter().map(|own| &own.target)) {
        let name = t.name();
        // `/` still takes POST: its GET is a method the path does not allow.
        let reply = send(client().get(t.url("/"))).await;
        assert_eq!(reply.status, 405, "[{name}] GET /: {}", reply.text());
        reply.assert_error(405, "method_not_allowed");
        assert_eq!(reply.header("allow"), Some("POST, OPTIONS"), "[{name}]");
        for path in ["/app.js", "/app.css"] {
            let reply = send(client().get(t.url(path))).await;
            assert_eq!(reply.status, 404, "[{name}] GET {path}: {}", reply.text());
            reply.assert_error(404, "not_found");
        }
        assert_auth_disabled_logged_once(t).await;
    }
}

/// The startup warning of `AUTH=none`: one line, whatever the requests.
pub(super) async fn assert_auth_disabled_logged_once(t: &super::Target) {
    let warning = t
        .log_line("event auth_disabled", |l| l["event"] == "auth_disabled")
        .await;
    assert_eq!(warning["level"], "warn", "[{}] {warning}", t.name());
    let count = t
        .json_lines()
        .iter()
        .filter(|l| l["event"] == "auth_disabled")
        .count();
    assert_eq!(
        count,
        1,
        "[{}] auth_disabled logged {count} times",
        t.name()
    );
}

every_target!(
    chat_page_is_served_with_a_strict_policy,
    ping_is_healthy,
    unknown_route_is_404,
    wrong_method_is_405_with_allow,
    non_json_content_type_is_415,
    malformed_json_is_400,
    declared_body_over_the_limit_is_413,
    chunked_body_over_the_limit_is_413,
    refusing_a_chunked_body_leaves_other_requests_alone,
    body_at_the_limit_is_accepted,
    root_path_invokes_like_invocations,
    request_id_is_echoed_or_generated,
);
