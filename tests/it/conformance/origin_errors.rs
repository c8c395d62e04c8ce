//! The origin side: the request is SigV4-signed with its body hash (the demo
//! origin verifies both, so a 200 proves it), origin failures are mapped to
//! gateway errors, and nothing a client sees or a log line holds contains
//! the runtime ARN, the account id, an AWS credential or the caller's token.

use std::sync::Arc;

use agent_edge::demo::origin::{
    DEMO_ACCESS_KEY_ID, DEMO_RUNTIME_ARN, DEMO_SECOND_RUNTIME_ARN, DEMO_SECRET_ACCESS_KEY,
};
use agent_edge::origin::encode_path_segment;
use sha2::{Digest, Sha256};

use super::client::{invoke, send, session_id, unique, Reply, SESSION_HEADER};
use super::every_target;
use super::stack::{spawn_native, stack, vars_with, Target, SESSION_TOKEN};
use super::tokens::token;

/// What must never reach a client or a log line, with a name for messages:
/// every secret of the test configuration, in every form it travels in.
pub fn secrets() -> Vec<(&'static str, String)> {
    let encoded = encode_path_segment(DEMO_RUNTIME_ARN);
    let lower_hex = encoded.replace("%3A", "%3a").replace("%2F", "%2f");
    vec![
        ("the runtime ARN", DEMO_RUNTIME_ARN.to_owned()),
        ("the second runtime ARN", DEMO_SECOND_RUNTIME_ARN.to_owned()),
        (
            "the second runtime's URL-encoded ARN",
            encode_path_segment(DEMO_SECOND_RUNTIME_ARN),
        ),
        ("the URL-encoded ARN", encoded.clone()),
        ("the URL-encoded ARN in lower-case hex", lower_hex),
        ("the ARN encoded twice", encoded.replace('%', "%25")),
        ("the account id", "123456789012".to_owned()),
        ("the access key id", DEMO_ACCESS_KEY_ID.to_owned()),
        ("the secret key", DEMO_SECRET_ACCESS_KEY.to_owned()),
        ("the session token", SESSION_TOKEN.to_owned()),
    ]
}

/// Asserts that no configured secret is in `body` or `headers` (any answer
/// a conformance check reads; the client helpers call it).
pub fn assert_no_configured_secret(headers: &http::HeaderMap, body: &[u8], what: &str) {
    let body = String::from_utf8_lossy(body);
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
        .collect();
    for (name, secret) in secrets() {
        assert!(
            !body.contains(&secret),
            "{what}: the body contains {name}: {body}"
        );
        assert!(
            !headers.contains(&secret),
            "{what}: a header contains {name}:\n{headers}"
        );
    }
}

/// Asserts that no secret (nor `token`) is in the reply's body or headers.
pub fn assert_no_leak(reply: &Reply, token: &str, what: &str) {
    let headers: String = reply
        .headers
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())))
        .collect();
    let mut secrets = secrets();
    secrets.push(("the bearer token", token.to_owned()));
    for (name, secret) in secrets {
        assert!(
            !reply.text().contains(&secret),
            "{what}: the body contains {name}: {}",
            reply.text()
        );
        assert!(
            !headers.contains(&secret),
            "{what}: a header contains {name}:\n{headers}"
        );
    }
}

/// Asserts that no log line of `target` holds a secret or a token.
pub fn assert_logs_clean(target: &Target, tokens: &[&str]) {
    let lines = target.logs.lines();
    let mut secrets = secrets();
    for token in tokens {
        secrets.push(("a bearer token", (*token).to_owned()));
    }
    for line in &lines {
        for (name, secret) in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "a log line contains {name}: {line}"
            );
        }
        // Any JWT at all (`{"` in base64url).
        assert!(
            !line.contains("eyJ"),
            "a log line contains what looks like a JWT: {line}"
        );
    }
}

async fn origin_request_is_sigv4_signed_with_the_body_hash(t: Arc<Target>) {
    let session = session_id("sigv4");
    let token = token(&unique("sigv4"));
    let reply = send(
        invoke(&t, Some(&token), r#"{"prompt":"/events 1 1"}"#).header(SESSION_HEADER, &session),
    )
    .await;
    // The demo origin recomputes the signature and the body hash: a 200
    // means both matched.
    assert_eq!(reply.status, 200, "{}", reply.text());

    let requests = stack().demo.requests();
    let sent = super::tokens::origin_session(&token, "default", &session);
    let request = requests
        .iter()
        .rev()
        .find(|r| {
            r.headers
                .get(SESSION_HEADER)
                .is_some_and(|v| v == sent.as_str())
        })
        .expect("the origin got the request");
    assert_eq!(
        request.uri.to_string(),
        format!(
            "/runtimes/{}/invocations?qualifier=DEFAULT",
            encode_path_segment(DEMO_RUNTIME_ARN)
        )
    );
    let authorization = request.headers["authorization"].to_str().unwrap();
    assert!(
        authorization.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={DEMO_ACCESS_KEY_ID}/"
        )) && authorization.contains("/us-east-1/bedrock-agentcore/aws4_request"),
        "{authorization}"
    );
    let signed = authorization
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    assert!(
        signed.split(';').any(|h| h == "x-amz-content-sha256"),
        "body hash signed: {signed}"
    );
    assert_eq!(
        request.headers["x-amz-content-sha256"].to_str().unwrap(),
        hex::encode(Sha256::digest(&request.body))
    );
    // The caller's token stays at the gateway.
    for (name, value) in &request.headers {
        assert!(
            !value
                .as_bytes()
                .windows(token.len())
                .any(|w| w == token.as_bytes()),
            "{name} carries the token"
        );
    }
}

async fn origin_failures_are_mapped_without_leaks(t: Arc<Target>) {
    let token = token(&unique("origin-error"));
    // (the origin's status, the gateway's, its code)
    let cases = [
        (500, 502, "origin_error"),
        (503, 502, "origin_error"),
        (403, 502, "origin_auth_failed"),
        (401, 502, "origin_auth_failed"),
        (404, 502, "origin_not_found"),
        (400, 502, "origin_rejected"),
        (429, 429, "origin_throttled"),
    ];
    for (origin_status, status, code) in cases {
        let prompt = format!(r#"{{"prompt":"/origin-error {origin_status}"}}"#);
        let reply = send(invoke(&t, Some(&token), prompt)).await;
        reply.assert_error(status, code);
        if status == 429 {
            assert!(reply.header("retry-after").is_some(), "Retry-After on 429");
        }
        assert_no_leak(&reply, &token, &format!("origin {origin_status}"));
    }
}

/// A 2xx that is neither an event stream nor JSON (an HTML login page) is
/// not streamed to the client as if it were one, in either mode.
async fn an_html_answer_is_502_origin_error(t: Arc<Target>) {
    let token = token(&unique("html"));
    for mode in ["original", "transformed"] {
        let reply = send(invoke(
            &t,
            Some(&token),
            format!(r#"{{"prompt":"/html","response":"{mode}"}}"#),
        ))
        .await;
        reply.assert_error(502, "origin_error");
        assert!(
            !reply.text().contains("<title>"),
            "{mode}: {}",
            reply.text()
        );
    }
}

async fn log_lines_hold_no_secret_and_no_token(t: Arc<Target>) {
    let token = token(&unique("log-leak"));
    for prompt in [
        "/origin-error 500",
        "/origin-error 403",
        "/abort-after 1",
        "/error-after 1",
        "/events 1 1",
    ] {
        let reply = send(invoke(
            &t,
            Some(&token),
            format!(r#"{{"prompt":"{prompt}"}}"#),
        ))
        .await;
        assert!(
            reply.status == 200 || reply.status == 502,
            "{prompt}: {}",
            reply.status
        );
    }
    let _ = send(invoke(&t, Some("not.a.token"), "{}")).await;
    // Every line so far, from every check that ran on this target.
    assert_logs_clean(&t, &[&token]);
}

/// The SigV4 `Authorization` header's parts that identify or prove the
/// gateway's credentials.
fn assert_no_signature(text: &str, what: &str) {
    assert!(
        !text.contains("Credential=AKIA") && !text.contains(DEMO_ACCESS_KEY_ID),
        "{what} holds the credential: {text}"
    );
    let signature = text
        .find("Signature=")
        .map(|at| &text[at + "Signature=".len()..]);
    assert!(
        signature.is_none_or(|s| !s.starts_with(|c: char| c.is_ascii_hexdigit())),
        "{what} holds the signature: {text}"
    );
}

async fn an_origin_echoing_the_request_leaks_nothing(t: Arc<Target>) {
    let token = token(&unique("echo"));
    let request_id = unique("echo-error-type");
    let reply = send(
        invoke(&t, Some(&token), r#"{"prompt":"/echo-error-type"}"#)
            .header("x-request-id", &request_id),
    )
    .await;
    reply.assert_error(502, "origin_error");
    let line = t.request_log(&request_id).await.to_string();
    assert_no_signature(&line, "the log line of an echoed x-amzn-ErrorType");

    let request_id = unique("echo-request");
    let reply = send(
        invoke(
            &t,
            Some(&token),
            r#"{"prompt":"/echo-request","response":"transformed"}"#,
        )
        .header("x-request-id", &request_id),
    )
    .await;
    assert_eq!(reply.status, 200);
    let text = reply.text();
    assert!(
        text.contains("\"code\":\"agent_error\"") && text.contains("[redacted]"),
        "{text}"
    );
    assert_no_signature(&text, "the trailer of an echoed request");
    let line = t.request_log(&request_id).await;
    assert_eq!(line["usage"]["inputTokens"], 1, "{line}");
    assert!(line["usage"].get("echo").is_none(), "only numbers: {line}");
    assert_no_signature(&line.to_string(), "the log line of an echoed request");
    assert_logs_clean(&t, &[&token]);
}

#[tokio::test]
async fn native_jwt_passthrough_echo_leaks_no_token() {
    // The caller's token goes to the origin, which echoes it back.
    let (_server, gateway) = spawn_native(&vars_with(&[("ORIGIN_AUTH", "jwt-passthrough")])).await;
    let token = token(&unique("passthrough"));
    let reply = send(invoke(
        &gateway,
        Some(&token),
        r#"{"prompt":"/echo-error-type"}"#,
    ))
    .await;
    reply.assert_error(502, "origin_error");
    let reply = send(invoke(
        &gateway,
        Some(&token),
        r#"{"prompt":"/echo-request","response":"transformed"}"#,
    ))
    .await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.text().contains("Bearer [redacted]"),
        "{}",
        reply.text()
    );
    assert_no_leak(&reply, &token, "an echoed bearer token");
    assert_logs_clean(&gateway, &[&token]);
}

/// A native gateway whose origin cannot be used: 502 with the code, and
/// no secret nor token in the answer or the log, nor the changed value
/// when it is a secret.
#[tokio::test]
async fn native_an_unusable_origin_is_502_without_leaks() {
    let wrong = "wrongSecretKey/NotTheDemoOne0000000000000";
    // A port nobody listens on: bind, note it, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = format!("http://{closed}");
    // (what, variable, value, whether the value is a secret, code)
    let cases = [
        (
            "a wrong AWS secret",
            "AWS_SECRET_ACCESS_KEY",
            wrong,
            true,
            "origin_auth_failed",
        ),
        (
            "an unreachable origin",
            "ORIGIN_URL",
            &unreachable,
            false,
            "origin_unreachable",
        ),
    ];
    for (what, variable, value, secret, code) in cases {
        let (_server, gateway) = spawn_native(&vars_with(&[(variable, value)])).await;
        let token = token(&unique("unusable-origin"));
        let reply = send(invoke(
            &gateway,
            Some(&token),
            r#"{"prompt":"/events 1 1"}"#,
        ))
        .await;
        reply.assert_error(502, code);
        assert_no_leak(&reply, &token, what);
        assert_logs_clean(&gateway, &[&token]);
        if secret {
            assert!(!reply.text().contains(value), "{what}: the answer shows it");
            assert!(
                gateway.logs.lines().iter().all(|l| !l.contains(value)),
                "{what}: the log shows it"
            );
        }
    }
}

every_target!(
    an_origin_echoing_the_request_leaks_nothing,
    origin_request_is_sigv4_signed_with_the_body_hash,
    origin_failures_are_mapped_without_leaks,
    an_html_answer_is_502_origin_error,
    log_lines_hold_no_secret_and_no_token,
);
