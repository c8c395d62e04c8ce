//! The per-subject rate limit: `RATE_LIMIT_PER_MINUTE` on the native server,
//! the `RATE_LIMITER` binding on Workers, both with the limit of
//! `wrangler.toml` (`docs/interface.md`: 429 `rate_limited` with `Retry-After`).
//!
//! The subject is this check's own, so the other checks are not limited.
//! Requests carry an invalid body: the limit applies after authentication
//! and before the body, so each costs a quick 400 instead of a stream.

use std::sync::Arc;

use super::client::{invoke, send, unique};
use super::stack::{rate_limit, Capability, TargetKind};
use super::tokens::token;
use super::{child, every_target, lambda, stack, Target};

async fn over_the_limit_is_429_with_retry_after(t: Arc<Target>) {
    if t.lacks(
        Capability::OneRateLimiter,
        "over_the_limit_is_429_with_retry_after",
    ) {
        return;
    }
    assert_limited_at_the_limit(&t).await;
}

/// The Lambda function's in-process limiter, in a `cargo lambda watch` of
/// its own that runs one execution environment: exactly the limit passes,
/// as on the native server.
#[tokio::test]
async fn lambda_one_execution_environment_limits_like_native() {
    if TargetKind::Lambda.left_out("lambda_one_execution_environment_limits_like_native") {
        return;
    }
    let vars = stack::stack().vars.clone();
    let function = child::own(TargetKind::Lambda, move |logs| {
        lambda::start_with_concurrency("rate-limit", &vars, logs, 1)
    })
    .await;
    assert_limited_at_the_limit(&function.target).await;
}

/// Sends requests of one subject until the 429, which must come after
/// exactly the limit on a target with one limiter, unless a minute boundary
/// fell inside the run (windows are aligned to Unix time; the Workers
/// binding's are its own): up to twice the limit then.
async fn assert_limited_at_the_limit(t: &Target) {
    let limit = rate_limit() as usize;
    let minute = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 60
    };
    let first_minute = minute();
    let token = token(&unique(&format!("rate-limit-{}", t.name())));
    let mut allowed = 0;
    let limited = loop {
        let reply = send(invoke(t, Some(&token), "not json")).await;
        if reply.status == 429 {
            break reply;
        }
        reply.assert_error(400, "invalid_json");
        allowed += 1;
        // A window boundary may fall inside the run once (the binding's
        // windows need not start at our first request).
        assert!(
            allowed <= 2 * limit,
            "no 429 after {allowed} requests (limit {limit}/min)"
        );
    };
    limited.assert_error(429, "rate_limited");
    let retry_after: u64 = limited
        .header("retry-after")
        .expect("Retry-After on 429")
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert!(
        allowed >= limit,
        "limited after {allowed} requests, the limit is {limit}"
    );
    if t.kind != TargetKind::Worker && minute() == first_minute {
        assert_eq!(allowed, limit, "a fixed window aligned to the minute");
    }

    // Another subject is not affected.
    let other = super::tokens::token(&unique("rate-limit-other"));
    let reply = send(invoke(t, Some(&other), "not json")).await;
    reply.assert_error(400, "invalid_json");
}

every_target!(over_the_limit_is_429_with_retry_after,);
