//! CORS: preflights from an allowed and a refused browser origin, and the
//! headers of actual responses (`docs/interface.md`, "The response").

use std::sync::Arc;

use super::client::{client, invoke, send, unique, Reply};
use super::stack::CORS_ORIGIN;
use super::tokens::token;
use super::{every_target, Target};

const REFUSED_ORIGIN: &str = "https://evil.example.com";

fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

fn assert_exposed(reply: &Reply, what: &str) {
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(CORS_ORIGIN),
        "{what}: Access-Control-Allow-Origin"
    );
    let exposed = list(reply.header("access-control-expose-headers"));
    for header in [
        "x-amzn-bedrock-agentcore-runtime-session-id",
        "x-request-id",
    ] {
        assert!(
            exposed.contains(&header.to_owned()),
            "{what}: {header} not exposed: {exposed:?}"
        );
    }
    let vary = list(reply.header("vary"));
    assert!(
        vary.contains(&"origin".to_owned()),
        "{what}: Vary: {vary:?}"
    );
}

async fn preflight_from_an_allowed_origin(t: Arc<Target>) {
    let reply = send(
        client()
            .request(reqwest::Method::OPTIONS, t.url("/invocations"))
            .header("origin", CORS_ORIGIN)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, x-amzn-bedrock-agentcore-runtime-session-id",
            ),
    )
    .await;
    assert!(
        reply.status == 204 || reply.status == 200,
        "preflight status {}",
        reply.status
    );
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(CORS_ORIGIN)
    );
    let methods = list(reply.header("access-control-allow-methods"));
    assert!(methods.contains(&"post".to_owned()), "{methods:?}");
    let headers = list(reply.header("access-control-allow-headers"));
    for needed in [
        "authorization",
        "content-type",
        "x-amzn-bedrock-agentcore-runtime-session-id",
    ] {
        assert!(
            headers.contains(&needed.to_owned()),
            "{needed} not allowed: {headers:?}"
        );
    }
    assert!(reply.header("access-control-max-age").is_some());
    assert!(reply.body.is_empty());
}

async fn preflight_from_a_refused_origin(t: Arc<Target>) {
    let reply = send(
        client()
            .request(reqwest::Method::OPTIONS, t.url("/invocations"))
            .header("origin", REFUSED_ORIGIN)
            .header("access-control-request-method", "POST"),
    )
    .await;
    reply.assert_error(403, "cors_origin_not_allowed");
    assert_eq!(reply.header("access-control-allow-origin"), None);
    assert_eq!(reply.header("access-control-allow-methods"), None);
}

async fn actual_responses_expose_headers_to_allowed_origins(t: Arc<Target>) {
    let token = token(&unique("cors"));
    let reply = send(
        invoke(
            &t,
            Some(&token),
            r#"{"prompt":"/events 1 1","response":"transformed"}"#,
        )
        .header("origin", CORS_ORIGIN),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_exposed(&reply, "a stream");

    // Errors too, or a browser cannot read why it failed.
    let reply = send(invoke(&t, None, "{}").header("origin", CORS_ORIGIN)).await;
    assert_eq!(reply.status, 401);
    assert_exposed(&reply, "a 401");

    let reply = send(client().get(t.url("/ping")).header("origin", CORS_ORIGIN)).await;
    assert_exposed(&reply, "ping");

    let reply = send(
        invoke(&t, Some(&token), r#"{"prompt":"/events 1 1"}"#).header("origin", REFUSED_ORIGIN),
    )
    .await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        None,
        "refused origin"
    );
    assert_eq!(
        reply.header("access-control-expose-headers"),
        None,
        "refused origin"
    );
}

every_target!(
    preflight_from_an_allowed_origin,
    preflight_from_a_refused_origin,
    actual_responses_expose_headers_to_allowed_origins,
);
