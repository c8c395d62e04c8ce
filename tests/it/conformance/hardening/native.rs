//! Native only, each with a gateway (or development issuer) of its own:
//! the `Host` rule with `PUBLIC_HOSTS` and `AUTH=none` (DNS rebinding), the
//! development issuer's `Host` rule, `CORS_ALLOW_ORIGINS=*`, and the
//! `request_refused` line of each head hyper refuses (raw bytes on a
//! socket).

use std::time::Duration;

use agent_edge::demo::issuer::{self, DevIssuer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::super::client::{client, invoke, send, unique};
use super::super::stack::{bind, spawn_native, vars_with, Target};
use super::super::tokens::token;
use super::{
    assert_served_or_refused, items, port, send_from, shown, with_host, PROMPT, REFUSED_ORIGIN,
};

/// `AUTH=none` (the development setup) behind a proxy that keeps the
/// client's `Host`: the names of `PUBLIC_HOSTS` (any case, any port) are
/// served, any other name is refused before the origin is called.
#[tokio::test]
async fn native_public_hosts_are_served_and_a_rebound_name_is_not() {
    let vars = vars_with(&[
        ("AUTH", "none"),
        ("PUBLIC_HOSTS", "agent.example.test, gw.example.test"),
    ]);
    let (_server, gateway) = spawn_native(&vars).await;
    let port = port(&gateway);
    let cases = [
        ("agent.example.test".to_owned(), 200),
        ("Agent.Example.TEST:8443".to_owned(), 200),
        ("gw.example.test".to_owned(), 200),
        (format!("localhost:{port}"), 200),
        ("rebound.example".to_owned(), 421),
        ("agent.example.test.rebound.example".to_owned(), 421),
        ("example.test".to_owned(), 421),
    ];
    for (host, expected) in cases {
        let (ping, invocation, session) = with_host(&gateway, &host, None).await;
        let what = format!("Host {host}");
        assert_eq!(ping.status, expected, "{what}: {}", shown(&ping));
        let refusal = (421, "misdirected_request");
        assert_served_or_refused(&invocation, &session, expected, refusal, &what);
    }
}

/// `agent-edge dev`'s issuer mints tokens for anyone who reaches it: on
/// loopback, only under a loopback name.
#[tokio::test]
async fn native_the_development_issuer_refuses_a_forged_host() {
    let key = tokio::task::spawn_blocking(DevIssuer::generate)
        .await
        .expect("a key");
    let server = issuer::spawn(key, bind().await)
        .await
        .expect("the development issuer");
    let port = server.addr.port();
    let routes = [
        (reqwest::Method::POST, "/token"),
        (reqwest::Method::GET, "/.well-known/jwks.json"),
        (reqwest::Method::GET, "/.well-known/openid-configuration"),
    ];
    let hosts = [
        (format!("127.0.0.1:{port}"), 200),
        (format!("localhost:{port}"), 200),
        (format!("[::1]:{port}"), 200),
        (format!("rebound.example:{port}"), 421),
        ("rebound.example".to_owned(), 421),
        (format!("127.0.0.2:{port}"), 421),
    ];
    for (method, path) in routes {
        for (host, expected) in &hosts {
            let reply = send(
                client()
                    .request(method.clone(), format!("{}{path}", server.issuer_url()))
                    .header("host", host),
            )
            .await;
            assert_eq!(
                reply.status,
                *expected,
                "{method} {path}, Host {host}: {}",
                shown(&reply)
            );
            if *expected == 421 {
                assert!(
                    !reply.text().contains("eyJ"),
                    "{method} {path}, Host {host}: a token"
                );
            }
        }
    }
}

/// `CORS_ALLOW_ORIGINS=*`: a literal `*` on every answer, never the
/// request's origin (not even `null`), and nothing varies on `Origin`.
#[tokio::test]
async fn native_cors_any_answers_a_literal_star() {
    let (_server, gateway) = spawn_native(&vars_with(&[("CORS_ALLOW_ORIGINS", "*")])).await;
    let token = token(&unique("cors-any"));
    for origin in [Some("null"), Some(REFUSED_ORIGIN), None] {
        let mut preflight = client()
            .request(reqwest::Method::OPTIONS, gateway.url("/invocations"))
            .header("access-control-request-method", "POST");
        if let Some(origin) = origin {
            preflight = preflight.header("origin", origin);
        }
        let answers = [
            ("a stream", invoke(&gateway, Some(&token), PROMPT), 200),
            ("a 401", invoke(&gateway, None, PROMPT), 401),
            ("a 404", client().get(gateway.url("/nope")), 404),
            ("a preflight", preflight, 204),
        ];
        for (what, request, status) in answers {
            let (reply, what) = send_from(origin, what, request, status).await;
            assert_eq!(
                reply.header("access-control-allow-origin"),
                Some("*"),
                "{what}"
            );
            assert!(
                !items(&reply, "vary").contains(&"origin".to_owned()),
                "{what}: Vary {:?}",
                items(&reply, "vary")
            );
        }
    }
}

/// Writes `bytes` to a fresh connection to `t` (the server may refuse them
/// before they are all written), then reads until the server closes it (10
/// s at most); what it answered.
async fn raw_exchange(t: &Target, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port(t)))
        .await
        .expect("a connection");
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    let _ = read.await.expect("the server closed the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Each head hyper refuses before the gateway sees it is one
/// `request_refused` line at level `warn` with the reason, and no request
/// line; the answer is hyper's (400, 431, or none).
#[tokio::test]
async fn native_refused_heads_are_logged() {
    let (_server, gateway) = spawn_native(&vars_with(&[
        ("CLIENT_HEADER_TIMEOUT_SECONDS", "1"),
        ("CLIENT_IDLE_TIMEOUT_SECONDS", "1"),
    ]))
    .await;
    let head = "GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    let big = "a".repeat(40 * 1024);
    // (what, bytes, answer's status line, detail's start)
    let cases = [
        (
            "an obs-fold header",
            format!("{head}X-Folded: a\r\n b\r\n\r\n"),
            Some("HTTP/1.1 400"),
            "400",
        ),
        (
            "a bare CR in a header",
            format!("{head}X-Cr: a\rb\r\n\r\n"),
            Some("HTTP/1.1 400"),
            "400",
        ),
        (
            "two different Content-Lengths",
            "POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
                .to_owned(),
            Some("HTTP/1.1 400"),
            "400",
        ),
        (
            "a 40 KiB header (MAX_HEADER_BYTES 32 KiB)",
            format!("{head}X-Big: {big}\r\n\r\n"),
            Some("HTTP/1.1 431"),
            "431",
        ),
        (
            "an HTTP/0.9 request",
            "GET /\r\n".to_owned(),
            Some("HTTP/1.1 400"),
            "400",
        ),
        (
            "a head that does not arrive in time",
            head.to_owned(),
            None,
            "the request head did not arrive",
        ),
    ];
    let refused = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["event"] == "request_refused")
            .cloned()
            .collect()
    };
    // One at a time, so that each line is the last case's; the last case
    // takes a second, in which a stray line of any other would show.
    for (count, (what, bytes, status, detail)) in cases.iter().enumerate() {
        let answer = raw_exchange(&gateway, bytes.as_bytes()).await;
        if let Some(status) = status {
            assert!(answer.starts_with(status), "{what}: answered {answer:?}");
        }
        let lines = gateway
            .json_lines_until(&format!("a request_refused line for {what}"), |lines| {
                refused(lines).len() > count
            })
            .await;
        let lines = refused(&lines);
        assert_eq!(lines.len(), count + 1, "{what}: one line each: {lines:#?}");
        let line = &lines[count];
        assert_eq!(line["level"], "warn", "{what}: {line}");
        let text = line["detail"].as_str().unwrap_or_default();
        assert!(
            text.starts_with(detail) && text.len() < 300,
            "{what}: detail {text:?}"
        );
        assert!(line["time_ms"].is_u64(), "{what}: {line}");
    }
    let request_lines: Vec<Value> = gateway
        .json_lines()
        .into_iter()
        .filter(|l| l.get("request_id").is_some())
        .collect();
    assert!(
        request_lines.is_empty(),
        "request lines: {request_lines:#?}"
    );
}
