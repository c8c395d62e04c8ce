//! Retries before the first byte (issue 17, item 4): a 409
//! `RetryableConflictException`, a 429, a 503 or a failed connection is
//! sent again, signed afresh, at most `ORIGIN_RETRIES` times and within
//! `ORIGIN_TIMEOUT_SECONDS`; a failure after the first byte never is; and
//! AgentCore's own 424 and 402 have codes of their own and are not retried.
//!
//! Each request has a session of its own, so the demo origin's
//! `/status-then` counts its failures for that request alone, and its
//! recorded requests (`requests_of_session`) are this request's attempts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_edge::demo::origin::RecordedRequest;
use serde_json::Value;

use super::client::{invoke, send, session_id, split_transformed, unique, Reply, SESSION_HEADER};
use super::every_target;
use super::origin_errors::{assert_logs_clean, assert_no_leak};
use super::stack::{spawn_native, stack, vars_with, Target, ORIGIN_TIMEOUT_SECONDS};
use super::tokens::token;

/// `ORIGIN_RETRIES`' default, which every shared target runs with.
const DEFAULT_RETRIES: u64 = 2;

/// One request's answer, its log line and what reached the origin.
struct Tried {
    reply: Reply,
    log: Value,
    attempts: Vec<RecordedRequest>,
    token: String,
}

impl Tried {
    /// The log line's `attempts`, checked against what the origin saw.
    fn attempts(&self) -> u64 {
        let logged = self.log["attempts"]
            .as_u64()
            .unwrap_or_else(|| panic!("attempts in {}", self.log));
        assert_eq!(
            logged,
            self.attempts.len() as u64,
            "the log's attempts against the origin's requests: {}",
            self.log
        );
        logged
    }
}

/// Sends `prompt` in `mode` in a session of its own, and collects the
/// answer, its log line and the origin requests of that session.
async fn try_prompt(t: &Target, prompt: &str, mode: &str) -> Tried {
    let session = session_id("retry");
    let request_id = unique("retry");
    let token = token(&unique("retry"));
    let body = serde_json::json!({ "prompt": prompt, "response": mode }).to_string();
    let reply = send(
        invoke(t, Some(&token), body)
            .header(SESSION_HEADER, &session)
            .header("x-request-id", &request_id),
    )
    .await;
    let log = t.request_log(&request_id).await;
    // The origin sees the session scoped to the caller (SESSION_SCOPE).
    let origin_session = log["origin_session_id"].as_str().unwrap_or(&session);
    let attempts = stack().demo.requests_of_session(origin_session);
    assert_no_leak(&reply, &token, prompt);
    Tried {
        reply,
        log,
        attempts,
        token,
    }
}

/// Every attempt reached the origin correctly signed, each with its own
/// signing date (a later attempt's signature differs whenever its date
/// does).
fn assert_each_attempt_signed(attempts: &[RecordedRequest]) {
    let demo = &stack().demo;
    for (i, attempt) in attempts.iter().enumerate() {
        assert!(
            demo.signature_verifies(attempt),
            "attempt {} has a valid SigV4 signature",
            i + 1
        );
    }
    for pair in attempts.windows(2) {
        let date = |r: &RecordedRequest| r.headers["x-amz-date"].clone();
        let signature = |r: &RecordedRequest| r.headers["authorization"].clone();
        assert!(pair[0].received <= pair[1].received);
        assert!(date(&pair[0]) <= date(&pair[1]), "signing dates in order");
        if date(&pair[0]) != date(&pair[1]) {
            assert_ne!(signature(&pair[0]), signature(&pair[1]), "re-signed");
        }
        assert_eq!(pair[0].body, pair[1].body, "the same body each time");
    }
}

async fn two_conflicts_then_a_stream_are_one_clean_answer_in_three_attempts(t: Arc<Target>) {
    let tried = try_prompt(&t, "/conflict-then 2", "transformed").await;
    assert_eq!(tried.reply.status, 200, "{}", tried.reply.text());
    let body = split_transformed(&tried.reply.text());
    assert!(
        body.text.starts_with("You said: \"/conflict-then 2\"."),
        "{:?}",
        body.text
    );
    assert!(
        !body.trailer.iter().any(|l| l.starts_with("{\"error\"")),
        "{:?}",
        body.trailer
    );
    assert_eq!(tried.log["status"], 200, "{}", tried.log);
    assert_eq!(tried.log["outcome"], "complete", "{}", tried.log);
    assert_eq!(tried.attempts(), 3);
    assert_each_attempt_signed(&tried.attempts);
}

async fn a_failure_after_the_first_byte_is_not_retried(t: Arc<Target>) {
    for mode in ["original", "transformed"] {
        let tried = try_prompt(&t, "/abort-after 2", mode).await;
        assert_eq!(tried.reply.status, 200, "{mode}");
        assert!(
            tried.reply.text().contains("origin_stream_failed"),
            "{mode}: {}",
            tried.reply.text()
        );
        assert_eq!(tried.log["outcome"], "origin_error", "{}", tried.log);
        assert_eq!(tried.attempts(), 1, "{mode}: one origin request");
    }
}

async fn throttling_unavailability_and_resets_are_retried_then_mapped(t: Arc<Target>) {
    // (prompt, status, code or "" for a stream, attempts)
    let exhausted = DEFAULT_RETRIES + 1;
    let cases = [
        ("/status-then 429 1", 200, "", 2),
        ("/status-then 503 2", 200, "", 3),
        ("/status-then 503 9", 502, "origin_error", exhausted),
        ("/status-then 429 9", 429, "origin_throttled", exhausted),
        ("/conflict-then 9", 502, "origin_rejected", exhausted),
        ("/reset", 502, "origin_unreachable", exhausted),
        // A 409 that is not AgentCore's RetryableConflict is a conflict.
        ("/origin-html 409", 502, "origin_rejected", 1),
        // Not transient: a 500, a 502.
        ("/status-then 500 9", 502, "origin_error", 1),
        ("/status-then 502 9", 502, "origin_error", 1),
    ];
    let runs = cases.map(|(prompt, status, code, attempts)| {
        let t = t.clone();
        async move {
            let tried = try_prompt(&t, prompt, "original").await;
            if code.is_empty() {
                assert_eq!(tried.reply.status, status, "{prompt}");
            } else {
                tried.reply.assert_error(status, code);
                assert_eq!(tried.log["error"], code, "{prompt}: {}", tried.log);
            }
            assert_eq!(tried.attempts(), attempts, "{prompt}: {}", tried.log);
            if code == "origin_throttled" {
                assert_eq!(tried.reply.header("retry-after"), Some("1"), "{prompt}");
            }
            assert_each_attempt_signed(&tried.attempts);
            assert_logs_clean(&t, &[&tried.token]);
        }
    });
    futures::future::join_all(runs).await;
}

async fn agentcore_424_and_402_have_their_own_codes_and_are_not_retried(t: Arc<Target>) {
    let failed = try_prompt(&t, "/runtime-client-error", "transformed").await;
    failed.reply.assert_error(502, "agent_failed");
    assert_eq!(failed.log["error"], "agent_failed", "{}", failed.log);
    assert!(
        failed.log["detail"]
            .as_str()
            .is_some_and(|d| d.contains("424") && d.contains("RuntimeClientError")),
        "{}",
        failed.log
    );
    assert_eq!(failed.attempts(), 1);

    let quota = try_prompt(&t, "/quota", "original").await;
    quota.reply.assert_error(503, "origin_quota_exceeded");
    assert_eq!(quota.reply.header("retry-after"), Some("60"));
    assert_eq!(quota.log["error"], "origin_quota_exceeded", "{}", quota.log);
    assert_eq!(quota.attempts(), 1);
    assert_logs_clean(&t, &[&failed.token, &quota.token]);
}

async fn a_retry_after_that_fits_is_waited_for_and_one_that_does_not_ends_the_retries(
    t: Arc<Target>,
) {
    let waited = try_prompt(&t, "/status-then 503 1 1", "original").await;
    assert_eq!(waited.reply.status, 200);
    assert_eq!(waited.attempts(), 2);
    let gap = waited.attempts[1].received - waited.attempts[0].received;
    // `Retry-After: 1`, counted by the gateway from the head it got after
    // the origin noted the first request: at least a second (less a
    // margin for a Worker's coarse clock).
    assert!(
        gap >= Duration::from_millis(950),
        "the second attempt came {gap:?} after the first"
    );

    // Longer than ORIGIN_TIMEOUT_SECONDS: no retry, the answer at once.
    let started = Instant::now();
    let refused = try_prompt(
        &t,
        &format!("/status-then 503 9 {}", ORIGIN_TIMEOUT_SECONDS * 10),
        "original",
    )
    .await;
    refused.reply.assert_error(502, "origin_error");
    assert_eq!(refused.attempts(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(ORIGIN_TIMEOUT_SECONDS),
        "answered after {:?}",
        started.elapsed()
    );
}

/// `ORIGIN_RETRIES=0`: every answer is the first.
#[tokio::test]
async fn native_origin_retries_0_never_retries() {
    let (_server, gateway) = spawn_native(&vars_with(&[("ORIGIN_RETRIES", "0")])).await;
    for (prompt, code) in [
        ("/conflict-then 1", "origin_rejected"),
        ("/status-then 503 1", "origin_error"),
        ("/reset", "origin_unreachable"),
    ] {
        let tried = try_prompt(&gateway, prompt, "original").await;
        tried.reply.assert_error(502, code);
        assert_eq!(tried.attempts(), 1, "{prompt}");
    }
}

/// An origin that always answers 503, and one that cannot be reached,
/// behind a gateway with many retries and a short timeout: the answer is
/// the mapped error by the deadline, after at most `ORIGIN_RETRIES + 1`
/// attempts.
#[tokio::test]
async fn native_retries_end_within_the_origin_timeout() {
    const TIMEOUT: u64 = 2;
    const RETRIES: u64 = 10;
    let timeout = TIMEOUT.to_string();
    let retries = RETRIES.to_string();
    let changes = [
        ("ORIGIN_TIMEOUT_SECONDS", timeout.as_str()),
        ("ORIGIN_RETRIES", retries.as_str()),
    ];
    let (_server, gateway) = spawn_native(&vars_with(&changes)).await;
    let started = Instant::now();
    let tried = try_prompt(&gateway, "/status-then 503 1000", "original").await;
    let took = started.elapsed();
    tried.reply.assert_error(502, "origin_error");
    let attempts = tried.attempts();
    assert!(
        (2..=RETRIES + 1).contains(&attempts),
        "{attempts} attempts: {}",
        tried.log
    );
    // The deadline bounds the answer (its log line is written by then);
    // the margin is for a loaded machine, not for a retry.
    assert!(
        took < Duration::from_millis(TIMEOUT * 1000 + 1500),
        "answered after {took:?}"
    );
    // From arrival: authentication and the body come before the deadline
    // starts, hence a small margin.
    let duration = tried.log["duration_ms"].as_u64().unwrap();
    assert!(duration <= TIMEOUT * 1000 + 250, "{}", tried.log);
    assert_each_attempt_signed(&tried.attempts);

    // A port nobody listens on: bind, note it, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = format!("http://{closed}");
    let mut changes = changes.to_vec();
    changes.push(("ORIGIN_URL", unreachable.as_str()));
    let (_server, gateway) = spawn_native(&vars_with(&changes)).await;
    let request_id = unique("unreachable");
    let started = Instant::now();
    let reply = send(
        invoke(&gateway, Some(&token(&unique("unreachable"))), "{}")
            .header("x-request-id", &request_id),
    )
    .await;
    let took = started.elapsed();
    reply.assert_error(502, "origin_unreachable");
    let line = gateway.request_log(&request_id).await;
    let attempts = line["attempts"].as_u64().unwrap();
    assert!((2..=RETRIES + 1).contains(&attempts), "{line}");
    assert!(
        took < Duration::from_millis(TIMEOUT * 1000 + 1500),
        "answered after {took:?}"
    );
}

every_target!(
    two_conflicts_then_a_stream_are_one_clean_answer_in_three_attempts,
    a_failure_after_the_first_byte_is_not_retried,
    throttling_unavailability_and_resets_are_retried_then_mapped,
    agentcore_424_and_402_have_their_own_codes_and_are_not_retried,
    a_retry_after_that_fits_is_waited_for_and_one_that_does_not_ends_the_retries,
);
