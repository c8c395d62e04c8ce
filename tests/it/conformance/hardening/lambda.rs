//! The Lambda function reads its function URL events itself: hand-made
//! events (payload format 2.0) sent to the shared function through `cargo
//! lambda watch`'s Invoke API (`POST /2015-03-31/functions/<name>/invocations`
//! with the event as the body), which hands the function's streamed answer
//! back as an HTTP response, status and headers from its prelude.

use serde_json::{json, Value};

use super::super::client::{client, send, unique};
use super::super::stack::{self, TargetKind};
use super::{is_uuid, items, shown, PROMPT};

/// A function URL event (payload format 2.0) for `POST raw_path` with these
/// headers (a JSON content type and a loopback Host unless replaced).
fn function_url_event(raw_path: &str, headers: &[(&str, &str)], cookies: &[&str]) -> Value {
    let mut fields = serde_json::Map::new();
    fields.insert("host".into(), json!("127.0.0.1"));
    fields.insert("content-type".into(), json!("application/json"));
    for (name, value) in headers {
        fields.insert((*name).to_owned(), json!(value));
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": fields,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "conformance",
            "domainName": "127.0.0.1",
            "domainPrefix": "conformance",
            "http": {
                "method": "POST",
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "conformance"
            },
            "requestId": unique("event"),
            "routeKey": "$default",
            "stage": "$default",
            "time": "06/Dec/2026:00:00:00 +0000",
            "timeEpoch": 1796515200000u64
        },
        "body": PROMPT,
        "isBase64Encoded": false
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    event
}

/// Events `lambda_http` used to panic on or normalize, sent to the shared
/// function through the Invoke API: each is answered as the contract says,
/// with exactly one request line naming the path, and nothing panics.
#[tokio::test]
async fn lambda_function_url_events_are_read_raw() {
    if TargetKind::Lambda.left_out("lambda_function_url_events_are_read_raw") {
        return;
    }
    let t = stack::target(TargetKind::Lambda)
        .await
        .unwrap_or_else(|unavailable| panic!("{}", unavailable.reason));
    let invoke_url = format!(
        "{}/invocations",
        t.base_url.replace("/lambda-url/", "/2015-03-31/functions/")
    );
    const INVOCATIONS: &str = "/invocations";
    let plain = |raw_path: &str| function_url_event(raw_path, &[], &[]);
    let with_header =
        |name: &str, value: &str| function_url_event(INVOCATIONS, &[(name, value)], &[]);
    // (what, event, status, code, path logged)
    let cases = [
        (
            "host: a b",
            with_header("host", "a b"),
            400,
            "invalid_host",
            INVOCATIONS,
        ),
        (
            "x-forwarded-proto: a b",
            with_header("x-forwarded-proto", "a b"),
            401,
            "missing_token",
            INVOCATIONS,
        ),
        (
            "a header value with a newline",
            with_header("x-note", "a\nb"),
            400,
            "invalid_request",
            INVOCATIONS,
        ),
        (
            "a header name with a space",
            with_header("x note", "a"),
            400,
            "invalid_request",
            INVOCATIONS,
        ),
        (
            "a cookie with a newline",
            function_url_event(INVOCATIONS, &[], &["a=1\nb=2"]),
            400,
            "invalid_request",
            INVOCATIONS,
        ),
        (
            "dot segments",
            plain("/x/../invocations"),
            404,
            "not_found",
            "/x/../invocations",
        ),
        (
            "encoded dot segments",
            plain("/x/%2e%2e/invocations"),
            404,
            "not_found",
            "/x/%2e%2e/invocations",
        ),
        // Bytes a URI cannot hold are logged percent-encoded.
        (
            "backslash dot segments",
            plain(r"/x\..\invocations"),
            404,
            "not_found",
            "/x%5C..%5Cinvocations",
        ),
        (
            "a tab",
            plain("/invo\tcations"),
            404,
            "not_found",
            "/invo%09cations",
        ),
        (
            "no leading slash",
            plain("invocations"),
            404,
            "not_found",
            "invocations",
        ),
    ];
    // Checked last, so that every case's other assertions are.
    let mut without_vary = Vec::new();
    for (what, event, status, code, logged) in cases {
        let reply = send(client().post(&invoke_url).body(event.to_string())).await;
        assert_eq!(reply.status, status, "{what}: {}", shown(&reply));
        reply.assert_error(status, code);
        let id = reply.header("x-request-id").unwrap_or_default().to_owned();
        assert!(is_uuid(&id), "{what}: the gateway's id, not {id:?}");
        if !items(&reply, "vary").contains(&"origin".to_owned()) {
            without_vary.push(what);
        }
        let line = t
            .log_line(&format!("request_id {id} ({what})"), |l| {
                l["request_id"] == id
            })
            .await;
        assert_eq!(
            (&line["path"], &line["status"], &line["error"]),
            (&json!(logged), &json!(status), &json!(code)),
            "{what}: {line}"
        );
        assert_eq!(t.request_lines(&id), 1, "{what}: request lines");
    }
    let panics: Vec<String> = t
        .logs
        .lines()
        .into_iter()
        .filter(|l| l.contains(r#""event":"panic""#) || l.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "the function panicked: {panics:#?}");
    assert!(
        without_vary.is_empty(),
        "answers without Vary: Origin (the shared stack lists CORS origins): {without_vary:?}"
    );
}
