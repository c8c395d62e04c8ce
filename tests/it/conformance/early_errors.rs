//! Errors answered before the request body is read (401, 404, 405, 413,
//! 415) reach a client that keeps its connection alive and sends its whole
//! request before reading, as Python's `http.client` (under `urllib`) does;
//! and the head rules every target applies (RFC 9112 `Host`).

use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stack::TargetKind;
use super::stack::MAX_BODY_BYTES;
use super::{every_target, Target};

/// Each case's request sent `TRIES` times over one `http.client` connection
/// (it reconnects after `Connection: close`); the statuses, or the error
/// the client raised.
const CLIENT: &str = r#"
import http.client, json, sys
host, port, cases = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
results = []
for case in cases:
    conn = http.client.HTTPConnection(host, port, timeout=20)
    body = b"{\"prompt\":\"" + b"x" * case["size"] + b"\"}"
    got = []
    for _ in range(case["tries"]):
        try:
            conn.request(case["method"], case["path"], body=body, headers=case["headers"])
            response = conn.getresponse()
            response.read()
            got.append(response.status)
        except Exception as e:
            got.append(type(e).__name__ + ": " + str(e))
            conn.close()
    results.append(got)
print(json.dumps(results))
"#;

const TRIES: usize = 15;

async fn early_errors_reach_keep_alive_clients(t: Arc<Target>) {
    let json_type = json!({"Content-Type": "application/json"});
    let big = 512 * 1024;
    let cases = [
        // (method, path, headers, body size, expected status)
        ("POST", "/invocations", json_type.clone(), 2000, 401),
        ("POST", "/invocations", json_type.clone(), big, 413),
        ("POST", "/nope", json_type.clone(), big, 404),
        ("PUT", "/invocations", json_type.clone(), big, 405),
        (
            "POST",
            "/invocations",
            json!({"Content-Type": "text/plain"}),
            big,
            415,
        ),
    ];
    assert!(big > MAX_BODY_BYTES);
    let prefix = path_prefix(&t);
    let spec: Vec<Value> = cases
        .iter()
        .map(|(method, path, headers, size, _)| {
            json!({"method": method, "path": format!("{prefix}{path}"), "headers": headers, "size": size, "tries": TRIES})
        })
        .collect();
    let url: http::Uri = t.base_url.parse().unwrap();
    let (host, port) = (url.host().unwrap().to_owned(), url.port_u16().unwrap());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", CLIENT, &host, &port.to_string()])
            .arg(Value::Array(spec).to_string())
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Vec<Value>> = serde_json::from_slice(&output.stdout).unwrap();
    for ((method, path, _, size, expected), got) in cases.iter().zip(results) {
        let wrong: Vec<&Value> = got.iter().filter(|s| **s != json!(expected)).collect();
        assert!(
            wrong.is_empty(),
            "{method} {path} with a {size}-byte body: expected {expected} every time, got {got:?}"
        );
    }
}

/// The path of the target's base URL (the Lambda emulator's function
/// route), without a trailing slash.
fn path_prefix(t: &Target) -> String {
    let url: http::Uri = t.base_url.parse().unwrap();
    url.path().trim_end_matches('/').to_owned()
}

/// Sends `request` (with `Connection: close`) on a fresh connection; the
/// whole answer.
async fn answer(t: &Target, request: &str) -> String {
    let url: http::Uri = t.base_url.parse().unwrap();
    let mut stream = tokio::net::TcpStream::connect((url.host().unwrap(), url.port_u16().unwrap()))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

async fn host_must_be_given_once(t: Arc<Target>) {
    let url: http::Uri = t.base_url.parse().unwrap();
    let authority = url.authority().unwrap().to_string();
    let prefix = path_prefix(&t);
    let ok = answer(
        &t,
        &format!("GET {prefix}/ping HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");

    let missing = format!("GET {prefix}/ping HTTP/1.1\r\nConnection: close\r\n\r\n");
    let twice = format!(
        "GET {prefix}/ping HTTP/1.1\r\nHost: {authority}\r\nHost: other.test\r\nConnection: close\r\n\r\n"
    );
    for (request, duplicated) in [(missing, false), (twice, true)] {
        let reply = answer(&t, &request).await;
        match t.kind {
            // `cargo lambda watch` keeps one of two Host headers in the
            // event it builds: the function cannot see the duplicate.
            TargetKind::Lambda if duplicated => {}
            TargetKind::Native | TargetKind::Lambda => {
                assert!(reply.starts_with("HTTP/1.1 400"), "{request:?}: {reply}");
                assert!(
                    reply.contains(r#""code":"invalid_host""#),
                    "{request:?}: {reply}"
                );
            }
            // The platform refuses these before the Worker runs (`wrangler
            // dev`: 400 without a Host, 500 with two; Cloudflare's edge:
            // 400): not served either way.
            TargetKind::Worker => assert!(
                reply.starts_with("HTTP/1.1 400") || reply.starts_with("HTTP/1.1 500"),
                "{request:?}: {reply}"
            ),
        }
    }
}

every_target!(
    early_errors_reach_keep_alive_clients,
    host_must_be_given_once
);
