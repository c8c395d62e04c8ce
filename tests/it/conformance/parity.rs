//! The same requests to every target, and the same answers back: status,
//! the headers the contract names, and the body, byte for byte, with only
//! the origin's latency figure normalized (issue 4: "A response that
//! differs between the two is a bug"). Request ids are fixed by the client,
//! so they must match too.

use reqwest::RequestBuilder;

use super::client::{client, normalize_latency, send, Reply, SESSION_HEADER};
use super::stack::{self, Capability, Target, CORS_ORIGIN, MAX_BODY_BYTES};
use super::tokens::token;

/// Headers compared between targets.
const COMPARED: &[&str] = &[
    "content-type",
    "cache-control",
    "content-encoding",
    "x-accel-buffering",
    SESSION_HEADER,
    "x-request-id",
    "www-authenticate",
    "allow",
    "retry-after",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
    "vary",
];

/// The fixed requests, by name.
fn requests(target: &Target, token: &str) -> Vec<(&'static str, RequestBuilder)> {
    let c = client();
    let session = "conformance-parity-session-0000000000000001";
    let post = |path: &str| {
        c.post(target.url(path))
            .header("content-type", "application/json")
    };
    let invoke = |body: &str| {
        post("/invocations")
            .bearer_auth(token)
            .body(body.to_owned())
    };
    vec![
        ("ping", c.get(target.url("/ping"))),
        ("404", c.post(target.url("/nope")).body("{}")),
        ("405", c.get(target.url("/invocations"))),
        (
            "415",
            c.post(target.url("/invocations"))
                .bearer_auth(token)
                .header("content-type", "text/plain")
                .body("hi"),
        ),
        ("400 invalid_json", invoke("{\"prompt\":")),
        ("400 invalid_session_id", invoke(r#"{"prompt":"x","runtimeSessionId":"short"}"#)),
        ("401 missing", post("/invocations").body("{}")),
        ("401 invalid", post("/invocations").bearer_auth("a.b.c").body("{}")),
        (
            "413",
            invoke(&format!(r#"{{"prompt":"{}"}}"#, "x".repeat(MAX_BODY_BYTES))),
        ),
        (
            "preflight allowed",
            c.request(reqwest::Method::OPTIONS, target.url("/invocations"))
                .header("origin", CORS_ORIGIN)
                .header("access-control-request-method", "POST"),
        ),
        (
            "preflight refused",
            c.request(reqwest::Method::OPTIONS, target.url("/invocations"))
                .header("origin", "https://evil.example.com")
                .header("access-control-request-method", "POST"),
        ),
        (
            "original",
            invoke(&format!(r#"{{"prompt":"hello parity","runtimeSessionId":"{session}"}}"#))
                .header("origin", CORS_ORIGIN),
        ),
        (
            "transformed",
            invoke(&format!(
                r#"{{"prompt":"hello parity","response":"transformed","runtimeSessionId":"{session}"}}"#
            )),
        ),
        ("json origin", invoke(r#"{"prompt":"/json parity"}"#)),
        ("origin 500", invoke(r#"{"prompt":"/origin-error 500"}"#)),
        ("origin 429", invoke(r#"{"prompt":"/origin-error 429"}"#)),
        (
            "agent error",
            invoke(r#"{"prompt":"/error-after 2","response":"transformed"}"#),
        ),
        ("origin cut, original", invoke(r#"{"prompt":"/abort-after 2"}"#)),
        (
            "origin cut, transformed",
            invoke(r#"{"prompt":"/abort-after 2","response":"transformed"}"#),
        ),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, request))| {
        // Fixed ids, so that every header can be compared.
        let request = request
            .header("x-request-id", format!("conformance-parity-{i:02}"))
            .header(SESSION_HEADER, session);
        (name, request)
    })
    .collect()
}

/// What is compared of an answer. A target that cannot send a response
/// without a `Content-Type` ([`Capability::ResponseWithoutContentType`]) is
/// compared without the one it added to an empty body.
fn comparable(target: &Target, reply: &Reply) -> String {
    let added_content_type = reply.body.is_empty()
        && reply.header("content-type") == Some("application/octet-stream")
        && target.lacks(
            Capability::ResponseWithoutContentType,
            "parity: Content-Type of an empty answer",
        );
    let mut out = format!("status {}\n", reply.status);
    for name in COMPARED {
        if added_content_type && *name == "content-type" {
            continue;
        }
        for value in reply.headers.get_all(*name) {
            out.push_str(&format!(
                "{name}: {}\n",
                value.to_str().unwrap_or("<binary>")
            ));
        }
    }
    out.push('\n');
    out.push_str(&normalize_latency(&String::from_utf8_lossy(&reply.body)));
    out
}

#[tokio::test]
async fn every_target_answers_the_same() {
    let kinds = stack::kinds();
    if kinds.len() < 2 {
        eprintln!("conformance parity: only one target, nothing to compare");
        return;
    }
    let token = token("conformance-parity");
    let mut answers: Vec<(&'static str, Vec<(&'static str, String)>)> = Vec::new();
    for kind in kinds {
        let target = match stack::target(kind).await {
            Ok(target) => target,
            Err(unavailable) => panic!("[{}] {}", kind.name(), unavailable.reason),
        };
        let mut replies = Vec::new();
        for (name, request) in requests(&target, &token) {
            replies.push((name, comparable(&target, &send(request).await)));
        }
        answers.push((kind.name(), replies));
    }
    let (reference_name, reference) = &answers[0];
    let mut differences = Vec::new();
    for (name, replies) in &answers[1..] {
        for ((request, expected), (_, actual)) in reference.iter().zip(replies) {
            if expected != actual {
                differences.push(format!(
                    "--- {request}: {reference_name} ---\n{expected}\n--- {request}: {name} ---\n{actual}\n"
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} answers differ between targets:\n{}",
        differences.len(),
        reference.len(),
        differences.join("\n")
    );
}
