//! Phase 4's origin request, retried before the first byte.
//!
//! An attempt that fails before its head reaches the client (AgentCore's
//! 409 `RetryableConflictException`, a 429, a 503, a connection that failed
//! before the head) is sent again, signed afresh, after a jittered
//! exponential backoff, at most `ORIGIN_RETRIES` times and all within
//! `ORIGIN_TIMEOUT_SECONDS` counted from the first attempt. Those statuses
//! say the origin did not take the request on, so sending the same body
//! again does not run the agent twice; a failed connection mostly means the
//! request never arrived (a reset after sending cannot be told apart). Once
//! a head is passed on (a stream has begun), nothing is retried: the client
//! may already have bytes of it.
//!
//! [`RetryPolicy`] and [`transient`] decide, without I/O or clocks (tested
//! with fixed random bytes); [`fetch`] runs the attempts over a
//! [`Platform`].

use std::time::SystemTime;

use bytes::Bytes;
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use http::{HeaderMap, StatusCode};

use super::{unix_ms, FetchError, Platform};
use crate::config::Agent;
use crate::error::{Code, GatewayError};
use crate::gateway::{Gateway, InvocationRequest, RequestContext};

/// The first retry waits up to this long; each further one up to twice
/// the previous ceiling, at most [`BACKOFF_CAP_MS`].
pub const BACKOFF_BASE_MS: u64 = 100;
/// The longest ceiling of one backoff (before a `Retry-After`).
pub const BACKOFF_CAP_MS: u64 = 2_000;
/// A retry is made only if at least this long is left before the deadline
/// once its wait is over: an attempt with less would only time out.
pub const MIN_ATTEMPT_MS: u64 = 500;
/// Most of a failed attempt's body read while waiting (an AWS error is a
/// few hundred bytes), so that its connection can serve the next attempt.
const DRAIN_LIMIT: usize = 64 << 10;
/// A `Retry-After` longer than this is treated as this (an hour: beyond
/// any `ORIGIN_TIMEOUT_SECONDS` worth waiting for).
const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// When to try the origin again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `ORIGIN_RETRIES`: attempts after the first.
    pub retries: u32,
}

impl RetryPolicy {
    /// When to send the next attempt (monotonic ms), after `attempts`
    /// attempts that all failed transiently, the last one answered at
    /// `now_ms`; `None` when no retry is left or none fits before
    /// `deadline_ms`. The wait is the full-jitter backoff or the origin's
    /// `Retry-After`, whichever is longer.
    pub fn next_attempt_at(
        &self,
        attempts: u32,
        now_ms: u64,
        deadline_ms: u64,
        retry_after_ms: Option<u64>,
        random: [u8; 32],
    ) -> Option<u64> {
        if attempts == 0 || attempts > self.retries {
            return None;
        }
        let wait = backoff_ms(attempts, random).max(retry_after_ms.unwrap_or(0));
        let at = now_ms.saturating_add(wait);
        (at.saturating_add(MIN_ATTEMPT_MS) <= deadline_ms).then_some(at)
    }
}

/// The wait before retry number `retry` (1 for the first): "full jitter",
/// uniform from 0 to `min(cap, base * 2^(retry - 1))`, so that callers
/// failing together do not retry together.
pub fn backoff_ms(retry: u32, random: [u8; 32]) -> u64 {
    let doublings = retry.saturating_sub(1).min(20);
    let ceiling = (BACKOFF_BASE_MS << doublings).min(BACKOFF_CAP_MS);
    let mut draw = [0u8; 8];
    draw.copy_from_slice(&random[..8]);
    u64::from_le_bytes(draw) % (ceiling + 1)
}

/// A failed answer that may be retried, with the origin's `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transient {
    pub retry_after_ms: Option<u64>,
}

/// Whether an origin head says the request was not taken on and may be
/// sent again: 429 and 503 from any origin; 409 only as AgentCore's
/// `RetryableConflictException` (another origin's 409 is a conflict that
/// would answer the same again). 402 (a quota) and 424 (the agent failed)
/// are not: a quota does not free in milliseconds, and a failed agent ran.
pub fn transient(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Transient> {
    let retryable = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => true,
        StatusCode::CONFLICT => headers
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("RetryableConflict")),
        _ => false,
    };
    retryable.then(|| Transient {
        retry_after_ms: headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after_ms(v, unix_ms(now) / 1000)),
    })
}

/// A `Retry-After` value (RFC 9110 section 10.2.3) as milliseconds from
/// now: delay-seconds, or an IMF-fixdate (the form senders must use; the
/// obsolete ones are ignored). A date in the past is 0.
pub fn retry_after_ms(value: &str, now_unix_seconds: u64) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a long time".
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(seconds.saturating_mul(1000).min(MAX_RETRY_AFTER_MS));
    }
    let at = imf_fixdate(value)?;
    Some(
        at.saturating_sub(now_unix_seconds)
            .saturating_mul(1000)
            .min(MAX_RETRY_AFTER_MS),
    )
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` as Unix seconds.
fn imf_fixdate(value: &str) -> Option<u64> {
    let mut parts = value.split(' ');
    let (_weekday, day, month, year, time, zone) = (
        parts.next()?.strip_suffix(',')?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if parts.next().is_some() || zone != "GMT" || day.len() != 2 || year.len() != 4 {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let number = |text: &str| -> Option<i64> {
        text.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| text.parse().ok())
            .flatten()
    };
    let (day, year) = (number(day)?, number(year)?);
    let mut clock = time.split(':');
    let (h, m, s) = (
        number(clock.next()?)?,
        number(clock.next()?)?,
        number(clock.next()?)?,
    );
    if clock.next().is_some() || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = crate::civil::days_from_civil(year, month, day);
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + s).ok()
}

/// Sends the signed origin request until an attempt gets a head that is
/// not [`transient`] (or the retries or the time run out), re-signing each
/// attempt with the wall clock of its sending. Counts the attempts in
/// `ctx.origin_attempts`. The head has `ORIGIN_TIMEOUT_SECONDS` from the
/// first attempt, every attempt and wait included.
pub(super) async fn fetch<P: Platform>(
    gateway: &Gateway,
    platform: &P,
    agent: &Agent,
    invocation: &InvocationRequest,
    user_id: Option<&str>,
    bearer: Option<&str>,
    ctx: &mut RequestContext,
) -> Result<http::Response<P::OriginBody>, GatewayError> {
    let config = gateway.config();
    let policy = RetryPolicy {
        retries: config.origin_retries,
    };
    let deadline = platform.now_ms() + config.origin_timeout_seconds * 1000;
    let outcome = loop {
        let request =
            gateway.upstream_request(agent, invocation, user_id, bearer, platform.now())?;
        ctx.origin_attempts += 1;
        let attempt = std::pin::pin!(platform.fetch_origin(request));
        let outcome = match select(attempt, platform.sleep_until(deadline)).await {
            Either::Left((outcome, _)) => outcome,
            Either::Right(_) => return Err(GatewayError::new(Code::OriginTimeout)),
        };
        let retry_after_ms = match &outcome {
            Ok(response) => {
                match transient(response.status(), response.headers(), platform.now()) {
                    Some(transient) => transient.retry_after_ms,
                    None => break outcome,
                }
            }
            Err(FetchError::Unreachable(_)) => None,
        };
        let Some(at) = policy.next_attempt_at(
            ctx.origin_attempts,
            platform.now_ms(),
            deadline,
            retry_after_ms,
            platform.random(),
        ) else {
            break outcome;
        };
        // The failed answer's body is read (within a limit) while waiting,
        // then dropped: its connection can be reused, and a Worker does
        // not hold an unread response open.
        let wait = platform.sleep_until(at);
        match outcome {
            Ok(response) => {
                let mut body = response.into_body();
                let drain = std::pin::pin!(drain(&mut body, DRAIN_LIMIT));
                if let Either::Left((_, wait)) = select(drain, wait).await {
                    wait.await;
                }
            }
            Err(_) => wait.await,
        }
    };
    outcome.map_err(|FetchError::Unreachable(detail)| {
        GatewayError::new(Code::OriginUnreachable).with_detail(detail)
    })
}

/// Reads and drops a body, at most `limit` bytes of it.
async fn drain<S, E>(body: &mut S, limit: usize)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut read = 0usize;
    while let Some(Ok(chunk)) = body.next().await {
        read += chunk.len();
        if read > limit {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }

    fn random(draw: u64) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&draw.to_le_bytes());
        bytes
    }

    #[test]
    fn the_backoff_doubles_its_ceiling_up_to_the_cap() {
        // One below a common multiple of every (ceiling + 1): each ceiling.
        let multiple: u64 = [101u64, 201, 401, 801, 1601, 2001]
            .iter()
            .fold(1, |l, &c| l / gcd(l, c) * c);
        let highest = |retry: u32| backoff_ms(retry, random(multiple - 1));
        let ceilings: Vec<u64> = (1..=7).map(highest).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(highest(u32::MAX), BACKOFF_CAP_MS);
        // Full jitter: a draw of 0 retries at once.
        assert_eq!(backoff_ms(3, random(0)), 0);
        assert_eq!(backoff_ms(1, random(150)), 150 % 101);
    }

    #[test]
    fn every_draw_stays_within_its_ceiling() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for retry in 1..=12u32 {
            let ceiling = (BACKOFF_BASE_MS << (retry - 1).min(20)).min(BACKOFF_CAP_MS);
            let mut seen_high = false;
            for _ in 0..2000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let wait = backoff_ms(retry, random(state));
                assert!(wait <= ceiling, "retry {retry}: {wait} > {ceiling}");
                seen_high |= wait > ceiling / 2;
            }
            assert!(seen_high, "retry {retry}: draws spread over the range");
        }
    }

    #[test]
    fn retries_stop_at_the_configured_number() {
        let policy = RetryPolicy { retries: 2 };
        let at = |attempts| policy.next_attempt_at(attempts, 1_000, 60_000, None, random(7));
        assert_eq!(at(1), Some(1_007));
        assert_eq!(at(2), Some(1_007));
        assert_eq!(at(3), None, "three attempts: two retries made");
        assert_eq!(at(0), None);
        let never = RetryPolicy { retries: 0 };
        assert_eq!(
            never.next_attempt_at(1, 1_000, 60_000, None, random(7)),
            None
        );
    }

    #[test]
    fn a_retry_that_cannot_fit_before_the_deadline_is_not_made() {
        let policy = RetryPolicy { retries: 10 };
        // 100 ms of backoff, then at least MIN_ATTEMPT_MS for the attempt.
        let deadline = 1_000 + 100 + MIN_ATTEMPT_MS;
        assert_eq!(
            policy.next_attempt_at(1, 1_000, deadline, None, random(100)),
            Some(1_100)
        );
        assert_eq!(
            policy.next_attempt_at(1, 1_000, deadline - 1, None, random(100)),
            None
        );
        // Past the deadline already.
        assert_eq!(
            policy.next_attempt_at(1, 5_000, 4_000, None, random(0)),
            None
        );
    }

    #[test]
    fn retry_after_is_honoured_when_it_fits_and_stops_retries_when_not() {
        let policy = RetryPolicy { retries: 2 };
        // Longer than the backoff: the origin's wait wins.
        assert_eq!(
            policy.next_attempt_at(1, 0, 60_000, Some(3_000), random(50)),
            Some(3_000)
        );
        // Shorter: the backoff wins.
        assert_eq!(
            policy.next_attempt_at(1, 0, 60_000, Some(10), random(50)),
            Some(50)
        );
        // Beyond the deadline: no retry at all.
        assert_eq!(
            policy.next_attempt_at(1, 0, 4_000, Some(30_000), random(0)),
            None
        );
    }

    fn head(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
        let mut builder = http::Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_answers_that_were_not_taken_on_are_transient() {
        let now = SystemTime::UNIX_EPOCH;
        let conflict = "RetryableConflictException:http://internal.amazon.com/coral/x/";
        for (status, headers, expected) in [
            (409, &[("x-amzn-errortype", conflict)][..], true),
            (409, &[][..], false),
            (409, &[("x-amzn-errortype", "ConflictException")][..], false),
            (429, &[][..], true),
            (503, &[][..], true),
            (500, &[][..], false),
            (502, &[][..], false),
            (402, &[][..], false),
            (424, &[][..], false),
            (400, &[][..], false),
            (200, &[][..], false),
        ] {
            let head = head(status, headers);
            assert_eq!(
                transient(head.status, &head.headers, now).is_some(),
                expected,
                "{status} {headers:?}"
            );
        }
        let throttled = head(429, &[("retry-after", "2")]);
        let throttled = transient(throttled.status, &throttled.headers, now);
        assert_eq!(
            throttled,
            Some(Transient {
                retry_after_ms: Some(2_000)
            })
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        // 1994-11-06T08:49:37Z.
        let then = 784_111_777;
        assert_eq!(retry_after_ms("3", then), Some(3_000));
        assert_eq!(retry_after_ms(" 0 ", then), Some(0));
        assert_eq!(
            retry_after_ms("99999999999999999999999", then),
            Some(MAX_RETRY_AFTER_MS)
        );
        assert_eq!(
            retry_after_ms("Sun, 06 Nov 1994 08:49:40 GMT", then),
            Some(3_000)
        );
        assert_eq!(
            retry_after_ms("Sun, 06 Nov 1994 08:49:00 GMT", then),
            Some(0)
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
        ] {
            assert_eq!(retry_after_ms(bad, then), None, "{bad:?}");
        }
    }
}
