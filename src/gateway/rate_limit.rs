//! Per-subject request limit for the native server (`RATE_LIMIT_PER_MINUTE`);
//! Workers use Cloudflare's `RATE_LIMITER` binding instead.
//!
//! A fixed one-minute window per key: the same semantics as the Workers
//! binding's `simple = { limit, period = 60 }`, so both platforms answer
//! alike. Hand-written rather than `governor` because it must run without a
//! clock of its own (time is an input) and is a dozen lines. Memory is
//! bounded: at most `max_keys` windows are kept; when full, finished windows
//! are dropped first, and a key that still finds no room is limited.

use std::collections::HashMap;

const WINDOW_MS: u64 = 60_000;

#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    max_keys: usize,
    windows: HashMap<String, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start_ms: u64,
    count: u32,
}

/// Whether a request may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Limited; retry after this many seconds (at least 1).
    Limited {
        retry_after_seconds: u64,
    },
}

impl RateLimiter {
    pub fn new(limit_per_minute: u32) -> Self {
        Self::with_capacity(limit_per_minute, 100_000)
    }

    pub fn with_capacity(limit_per_minute: u32, max_keys: usize) -> Self {
        RateLimiter {
            limit: limit_per_minute,
            max_keys,
            windows: HashMap::new(),
        }
    }

    /// Counts one request of `key` at `now_ms` (monotonic milliseconds).
    pub fn check(&mut self, key: &str, now_ms: u64) -> RateDecision {
        if !self.windows.contains_key(key) && self.windows.len() >= self.max_keys {
            self.windows
                .retain(|_, w| now_ms.saturating_sub(w.start_ms) < WINDOW_MS);
            if self.windows.len() >= self.max_keys {
                return RateDecision::Limited {
                    retry_after_seconds: 1,
                };
            }
        }
        let window = self.windows.entry(key.to_owned()).or_insert(Window {
            start_ms: now_ms,
            count: 0,
        });
        if now_ms.saturating_sub(window.start_ms) >= WINDOW_MS {
            *window = Window {
                start_ms: now_ms,
                count: 0,
            };
        }
        if window.count < self.limit {
            window.count += 1;
            RateDecision::Allowed
        } else {
            let remaining_ms = WINDOW_MS - now_ms.saturating_sub(window.start_ms);
            RateDecision::Limited {
                retry_after_seconds: remaining_ms.div_ceil(1000).max(1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_key_within_its_window() {
        let mut limiter = RateLimiter::new(2);
        assert_eq!(limiter.check("alice", 0), RateDecision::Allowed);
        assert_eq!(limiter.check("alice", 10), RateDecision::Allowed);
        assert_eq!(
            limiter.check("alice", 20_000),
            RateDecision::Limited {
                retry_after_seconds: 40
            }
        );
        assert_eq!(limiter.check("bob", 20_000), RateDecision::Allowed);
        assert_eq!(limiter.check("alice", 60_000), RateDecision::Allowed);
    }

    #[test]
    fn memory_is_bounded_and_finished_windows_are_reclaimed() {
        let mut limiter = RateLimiter::with_capacity(5, 2);
        assert_eq!(limiter.check("a", 0), RateDecision::Allowed);
        assert_eq!(limiter.check("b", 0), RateDecision::Allowed);
        assert!(matches!(
            limiter.check("c", 1),
            RateDecision::Limited { .. }
        ));
        assert_eq!(limiter.check("c", 60_001), RateDecision::Allowed);
        assert!(limiter.windows.len() <= 2);
    }
}
