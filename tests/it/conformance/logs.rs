//! One structured JSON log line per request: status, mode, bytes, time to
//! first byte, duration, usage when known, the token's subject, and never
//! the token (issue 2 item 5, issue 3 item 5). Native lines come from its
//! log sink, the Worker's from the output of `wrangler dev`.

use std::sync::Arc;

use std::time::Duration;

use super::client::{invoke, send, send_timed, unique};
use super::every_target;
use super::origin_errors::assert_logs_clean;
use super::stack::Target;
use super::tokens::token;

/// The lines naming `request_id`: there must be exactly one.
fn lines_of(target: &Target, request_id: &str) -> usize {
    target
        .logs
        .lines()
        .iter()
        .filter(|line| line.contains(&format!("\"client_request_id\":\"{request_id}\"")))
        .count()
}

async fn a_streamed_request_is_logged_once_with_its_figures(t: Arc<Target>) {
    let sub = unique("log-subject");
    let token = token(&sub);
    let request_id = unique("conformance-log");
    let timed = send_timed(
        invoke(
            &t,
            Some(&token),
            r#"{"prompt":"hello log","response":"transformed"}"#,
        )
        .header("x-request-id", &request_id),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(timed.status, 200);
    let body_len = timed.body().len() as u64;

    let line = t.request_log(&request_id).await;
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["mode"], "transformed", "{line}");
    assert_eq!(line["sub"], sub.as_str(), "{line}");
    assert_eq!(line["method"], "POST", "{line}");
    assert_eq!(line["path"], "/invocations", "{line}");
    assert_eq!(line["bytes_out"], body_len, "bytes sent: {line}");
    assert!(line["bytes_in"].as_u64().is_some_and(|n| n > 0), "{line}");
    let ttfb = line["ttfb_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("ttfb_ms: {line}"));
    let duration = line["duration_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("duration_ms: {line}"));
    assert!(ttfb <= duration, "{line}");
    assert_eq!(line["usage"]["inputTokens"], 2, "usage: {line}");
    assert!(
        line["usage"]["outputTokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "usage: {line}"
    );
    assert_eq!(line["outcome"], "complete", "{line}");
    assert!(line["session_id"].is_string(), "{line}");
    assert_eq!(lines_of(&t, &request_id), 1, "one line per request");
    assert_logs_clean(&t, &[&token]);
}

async fn a_refused_request_is_logged_without_the_token(t: Arc<Target>) {
    let request_id = unique("conformance-log-401");
    let mut forged = token(&unique("log-forged"));
    forged.push_str("AAAA");
    let reply = send(invoke(&t, Some(&forged), "{}").header("x-request-id", &request_id)).await;
    assert_eq!(reply.status, 401);
    let line = t.request_log(&request_id).await;
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(line["error"], "invalid_token", "{line}");
    assert!(
        line.get("sub").is_none_or(|s| s.is_null()),
        "no subject for a refused token: {line}"
    );
    assert_eq!(lines_of(&t, &request_id), 1, "one line per request");
    assert_logs_clean(&t, &[&forged]);
}

every_target!(
    a_streamed_request_is_logged_once_with_its_figures,
    a_refused_request_is_logged_without_the_token,
);
