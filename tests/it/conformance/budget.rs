//! Token budgets on a native gateway with the in-process store (issue 16;
//! `docs/interface.md`, "Budgets and limits"): the 429 before any origin
//! call, the RateLimit fields and `GET /usage`, the charge of both modes,
//! and the estimate for a client that leaves early. The shared stores
//! (Redis, the Durable Object) have suites of their own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_edge::platform::native::GatewayServer;
use futures::StreamExt;
use serde_json::Value;

use super::client::{client, invoke, send, session_id, split_transformed, unique, Reply};
use super::stack::{rate_limit, spawn_native, stack, vars_with, CORS_ORIGIN};
use super::tokens::token;
use super::Target;

const WINDOW_SECONDS: u64 = 3600;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Seconds from now to the end of the current budget window.
fn seconds_to_window_end() -> u64 {
    WINDOW_SECONDS - unix_now() % WINDOW_SECONDS
}

async fn budget_gateway(budget: u64) -> (GatewayServer, Target) {
    let budget = budget.to_string();
    let window = WINDOW_SECONDS.to_string();
    spawn_native(&vars_with(&[
        ("TOKEN_BUDGET", &budget),
        ("TOKEN_BUDGET_WINDOW_SECONDS", &window),
    ]))
    .await
}

async fn usage(t: &Target, token: &str) -> Reply {
    send(client().get(t.url("/usage")).bearer_auth(token)).await
}

/// `totalTokens` of a transformed answer's trailer.
fn trailer_tokens(reply: &Reply) -> u64 {
    let transformed = split_transformed(&reply.text());
    let metadata: Value = serde_json::from_str(&transformed.trailer[0]).expect("metadata line");
    metadata["usage"]["totalTokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("totalTokens in {metadata}"))
}

/// `"tokens";r=<r>;t=<t>` of a RateLimit field.
fn tokens_item(field: &str) -> (u64, u64) {
    let item = field
        .split(", ")
        .find(|item| item.starts_with("\"tokens\""))
        .unwrap_or_else(|| panic!("a tokens item in {field:?}"));
    let param = |name: &str| -> u64 {
        item.split(';')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {item:?}"))
    };
    (param("r"), param("t"))
}

fn assert_near_window_end(seconds: u64, what: &str) {
    let expected = seconds_to_window_end();
    assert!(
        seconds.abs_diff(expected) <= 2,
        "{what}: {seconds} s, the window ends in {expected} s"
    );
}

#[tokio::test]
async fn native_a_spent_budget_is_429_until_the_window_ends() {
    if seconds_to_window_end() < 20 {
        // The window would end mid-check: wait for the next one.
        tokio::time::sleep(Duration::from_secs(seconds_to_window_end() + 1)).await;
    }
    let budget = 40;
    let (_server, t) = budget_gateway(budget).await;
    let subject = unique("budget");
    let bearer = token(&subject);

    let mut used = 0;
    while used < budget {
        let reply = send(invoke(
            &t,
            Some(&bearer),
            r#"{"prompt":"how much is left","response":"transformed"}"#,
        ))
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some(
                format!(
                    "\"tokens\";q={budget};w={WINDOW_SECONDS}, \"requests\";q={};w=60",
                    rate_limit()
                )
                .as_str()
            )
        );
        let (remaining, reset) = tokens_item(reply.header("ratelimit").expect("RateLimit"));
        assert_eq!(remaining, budget - used, "what was left before this answer");
        assert_near_window_end(reset, "RateLimit t");
        let tokens = trailer_tokens(&reply);
        used += tokens;
        let log = t
            .request_log(reply.header("x-request-id").expect("request id"))
            .await;
        assert_eq!(log["tokens_charged"], tokens, "{log}");
        assert!(log.get("usage_estimated").is_none(), "{log}");

        let report = usage(&t, &bearer).await;
        assert_eq!(report.status, 200, "{}", report.text());
        let report = report.json();
        assert_eq!(report["subject"], subject.as_str());
        assert_eq!(report["tokens"]["limit"], budget);
        assert_eq!(report["tokens"]["used"], used);
        assert_eq!(report["tokens"]["remaining"], budget.saturating_sub(used));
        assert_eq!(report["requests"]["limit"], rate_limit());
        let resets_at = report["tokens"]["resetsAt"].as_str().expect("resetsAt");
        assert!(resets_at.ends_with(":00:00Z"), "{resets_at}");
    }
    assert!(used > budget, "the last answer overran: {used} of {budget}");

    // Spent: 429 before any origin call, and never a negative remainder.
    let session = session_id("spent");
    let spent = send(
        invoke(&t, Some(&bearer), r#"{"prompt":"one more"}"#)
            .header(super::client::SESSION_HEADER, &session)
            .header("origin", CORS_ORIGIN),
    )
    .await;
    spent.assert_error(429, "token_budget_exhausted");
    let retry_after: u64 = spent.header("retry-after").unwrap().parse().unwrap();
    assert_near_window_end(retry_after, "Retry-After");
    assert_eq!(tokens_item(spent.header("ratelimit").unwrap()).0, 0);
    let exposed = spent
        .header("access-control-expose-headers")
        .expect("CORS exposes headers");
    for name in ["RateLimit", "RateLimit-Policy", "Retry-After"] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !stack()
            .tap
            .carried(&super::tokens::origin_session(&bearer, "default", &session)),
        "no origin request once the budget is spent"
    );
    let report = usage(&t, &bearer).await.json();
    assert_eq!(report["tokens"]["remaining"], 0, "{report}");

    // Another subject has a budget of its own.
    let other = send(invoke(
        &t,
        Some(&token(&unique("budget-other"))),
        r#"{"prompt":"hi"}"#,
    ))
    .await;
    assert_eq!(other.status, 200);
}

/// The same answer costs the same in both modes: original mode reads the
/// usage of what it relays.
#[tokio::test]
async fn native_original_mode_is_charged_as_transformed() {
    let (_server, t) = budget_gateway(1_000_000).await;
    let mut charged = Vec::new();
    for mode in ["original", "transformed"] {
        let token = token(&unique(&format!("meter-{mode}")));
        let body = format!(r#"{{"prompt":"/events 40 0 3","response":"{mode}"}}"#);
        let reply = send(invoke(&t, Some(&token), body)).await;
        assert_eq!(reply.status, 200);
        let log = t.request_log(reply.header("x-request-id").unwrap()).await;
        assert!(log.get("usage_estimated").is_none(), "{log}");
        let report = usage(&t, &token).await.json();
        assert_eq!(report["tokens"]["used"], log["tokens_charged"], "{log}");
        charged.push((log["tokens_charged"].as_u64().expect("charged"), reply));
    }
    let (original, _) = &charged[0];
    let (transformed, reply) = &charged[1];
    assert_eq!(original, transformed);
    assert_eq!(*transformed, trailer_tokens(reply));
}

/// A client that hangs up before the usage event is charged
/// `ceil(request bytes / 4) + ceil(text bytes / 4)`.
#[tokio::test]
async fn native_a_client_that_leaves_is_charged_the_estimate() {
    let (_server, t) = budget_gateway(1_000_000).await;
    for mode in ["original", "transformed"] {
        let token = token(&unique(&format!("leaver-{mode}")));
        let body = format!(r#"{{"prompt":"/stall-after 3","response":"{mode}"}}"#);
        let response = invoke(&t, Some(&token), body.clone())
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status(), 200);
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        // Read the three deltas ("1", " 2", " 3"), then hang up.
        let third = if mode == "original" {
            "\"text\": \" 3\""
        } else {
            "1 2 3"
        };
        let mut received = String::new();
        let mut stream = response.bytes_stream();
        while !received.contains(third) {
            match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                Ok(Some(Ok(chunk))) => received.push_str(&String::from_utf8_lossy(&chunk)),
                other => panic!("the three deltas did not come: {other:?}; {received:?}"),
            }
        }
        drop(stream);
        let log = t
            .log_line("the leaver's line", |line| {
                line["request_id"] == request_id.as_str() && line["outcome"] == "client_closed"
            })
            .await;
        assert_eq!(log["usage_estimated"], true, "{log}");
        let text_bytes = "1 2 3".len() as u64;
        let expected = (body.len() as u64).div_ceil(4) + text_bytes.div_ceil(4);
        assert_eq!(log["tokens_charged"], expected, "{mode}: {log}");
        let report = usage(&t, &token).await.json();
        assert_eq!(report["tokens"]["used"], expected, "{mode}: {report}");
    }
}

/// `GET /usage` is authenticated like `/invocations`; without any limit it
/// reports the subject alone.
#[tokio::test]
async fn native_usage_needs_a_token_and_reports_only_configured_limits() {
    let (_server, t) = spawn_native(&vars_with(&[("RATE_LIMIT_PER_MINUTE", "")])).await;
    send(client().get(t.url("/usage")))
        .await
        .assert_error(401, "missing_token");
    let subject = unique("no-limits");
    let reply = usage(&t, &token(&subject)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), serde_json::json!({ "subject": subject }));
    assert_eq!(reply.header("ratelimit-policy"), None);
}
