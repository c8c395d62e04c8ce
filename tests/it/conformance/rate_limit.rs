//! The per-subject rate limit: `RATE_LIMIT_PER_MINUTE` on the native server,
//! the `RATE_LIMITER` binding on Workers, both with the limit of
//! `wrangler.toml` (SPEC: "429 rate limited (with `Retry-After`)").
//!
//! The subject is this check's own, so the other checks are not limited.
//! Requests carry an invalid body: the limit applies after authentication
//! and before the body, so each costs a quick 400 instead of a stream.

use std::sync::Arc;

use super::client::{invoke, send, unique};
use super::stack::{rate_limit, TargetKind};
use super::tokens::token;
use super::{every_target, Target};

async fn over_the_limit_is_429_with_retry_after(t: Arc<Target>) {
    let limit = rate_limit() as usize;
    let token = token(&unique(&format!("rate-limit-{}", t.name())));
    let mut allowed = 0;
    let limited = loop {
        let reply = send(invoke(&t, Some(&token), "not json")).await;
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
    if t.kind == TargetKind::Native {
        assert_eq!(
            allowed, limit,
            "a fixed window starting at the first request"
        );
    }

    // Another subject is not affected.
    let other = super::tokens::token(&unique("rate-limit-other"));
    let reply = send(invoke(&t, Some(&other), "not json")).await;
    reply.assert_error(400, "invalid_json");
}

every_target!(over_the_limit_is_429_with_retry_after,);
