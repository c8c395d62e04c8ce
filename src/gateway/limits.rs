//! Token budgets and request limits that hold across instances
//! (`TOKEN_BUDGET`, `RATE_LIMIT_PER_MINUTE`): fixed windows aligned to Unix
//! time, the three calls a limits store answers ([`StoreCall`]), the
//! admission rule every store applies ([`apply`]), and what the driver makes
//! of an answer (the 429s, the RateLimit header fields, `/usage`).
//!
//! The in-process store ([`MemoryStore`]) is here; Redis (native server,
//! Lambda) and the Durable Object (Workers) are the platforms', and the
//! Redis script mirrors [`apply`]. Hand-written rather than `governor`:
//! budgets are charged after the fact, in windows shared with other stores,
//! with time as an input.

use std::collections::HashMap;

use http::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::civil::rfc3339;
use crate::config::LimitsConfig;

/// The request limit's window (`RATE_LIMIT_PER_MINUTE`).
pub const REQUEST_WINDOW_SECONDS: u64 = 60;
/// How long a store keeps a window's count past its end: a stream admitted
/// in a window is charged to it when it ends, maybe after the window did.
pub const KEPT_PAST_END_SECONDS: u64 = 3600;

pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// A fixed window aligned to Unix time: `start = floor(now / seconds) * seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Unix seconds.
    pub start: u64,
    pub seconds: u64,
}

impl Window {
    /// The window of `seconds` that contains `now` (Unix seconds).
    pub fn containing(now: u64, seconds: u64) -> Window {
        let seconds = seconds.max(1);
        Window {
            start: now / seconds * seconds,
            seconds,
        }
    }

    /// Unix seconds at which the next window starts.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.seconds)
    }

    /// Whole seconds from `now` to the end, at least 1 (`Retry-After`).
    pub fn seconds_left(&self, now: u64) -> u64 {
        self.end().saturating_sub(now).max(1)
    }

    /// When a store may forget this window's count (Unix seconds).
    pub fn expires_at(&self) -> u64 {
        self.end().saturating_add(KEPT_PAST_END_SECONDS)
    }
}

/// What a store counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Tokens,
    Requests,
}

impl Counter {
    /// The store key of this counter for `subject` in `window`:
    /// `agent-edge:<counter>:<window seconds>:<window start>:<subject>`.
    pub fn key(self, window: Window, subject: &str) -> String {
        let name = match self {
            Counter::Tokens => "tokens",
            Counter::Requests => "requests",
        };
        format!(
            "agent-edge:{name}:{}:{}:{subject}",
            window.seconds, window.start
        )
    }
}

/// A limit in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounded {
    pub window: Window,
    pub limit: u64,
}

/// What the gateway asks a limits store: one call before the origin, one
/// after the stream, one for `GET /usage`. Serialized for the Durable Object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged (`{"charge":{...}}`): an internally tagged enum makes
// serde buffer the whole object first, code the Worker's wasm would carry.
#[serde(rename_all = "snake_case")]
pub enum StoreCall {
    /// Counts one request if the subject is under both limits (see [`apply`]).
    Admit {
        subject: String,
        tokens: Option<Bounded>,
        requests: Option<Bounded>,
    },
    /// Adds `tokens` to the subject's count in `window`.
    Charge {
        subject: String,
        window: Window,
        tokens: u64,
    },
    /// Reads the counts without changing them.
    Read {
        subject: String,
        tokens: Option<Window>,
        requests: Option<Window>,
    },
}

/// A store's answer: the counts after the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Tokens used in the window.
    pub tokens: u64,
    /// Requests counted in the window, this one included when admitted.
    pub requests: u64,
    /// [`StoreCall::Admit`]: whether this request was counted and may go on.
    pub admitted: bool,
}

/// Why a store did not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Not within `LIMITS_STORE_TIMEOUT_MS`.
    TimedOut,
    /// Refused, failed or unreachable; the detail is for the log (scrubbed).
    Failed(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::TimedOut => f.write_str("the limits store did not answer in time"),
            StoreError::Failed(detail) => write!(f, "the limits store failed: {detail}"),
        }
    }
}

/// Counters by key, as a store keeps them.
pub trait CounterMap {
    fn get(&mut self, key: &str) -> u64;
    /// Adds `n`, keeping the count until `expires_at` (Unix seconds); returns the new count.
    fn add(&mut self, key: &str, n: u64, expires_at: u64) -> u64;
}

/// Runs `call` on `counters`. The admission rule: a request is counted, and
/// may go on, only while the subject's tokens are under the budget and its
/// requests under the limit; a refused request is not counted.
pub fn apply(call: &StoreCall, counters: &mut impl CounterMap) -> Counts {
    match call {
        StoreCall::Admit {
            subject,
            tokens,
            requests,
        } => {
            let tokens_key = tokens.map(|b| (Counter::Tokens.key(b.window, subject), b));
            let requests_key = requests.map(|b| (Counter::Requests.key(b.window, subject), b));
            let used_tokens = tokens_key.as_ref().map_or(0, |(k, _)| counters.get(k));
            let used_requests = requests_key.as_ref().map_or(0, |(k, _)| counters.get(k));
            let admitted = tokens_key
                .as_ref()
                .is_none_or(|(_, b)| used_tokens < b.limit)
                && requests_key
                    .as_ref()
                    .is_none_or(|(_, b)| used_requests < b.limit);
            let requests = match (&requests_key, admitted) {
                (Some((key, b)), true) => counters.add(key, 1, b.window.expires_at()),
                _ => used_requests,
            };
            Counts {
                tokens: used_tokens,
                requests,
                admitted,
            }
        }
        StoreCall::Charge {
            subject,
            window,
            tokens,
        } => Counts {
            tokens: counters.add(
                &Counter::Tokens.key(*window, subject),
                *tokens,
                window.expires_at(),
            ),
            ..Counts::default()
        },
        StoreCall::Read {
            subject,
            tokens,
            requests,
        } => Counts {
            tokens: tokens.map_or(0, |w| counters.get(&Counter::Tokens.key(w, subject))),
            requests: requests.map_or(0, |w| counters.get(&Counter::Requests.key(w, subject))),
            admitted: false,
        },
    }
}

/// The limits of one deployment at one instant: the windows now, and what
/// the store is asked and answers mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub tokens: Option<Bounded>,
    pub requests: Option<Bounded>,
    /// Unix seconds.
    pub now: u64,
}

/// Why a request may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TokenBudgetExhausted { retry_after: u64 },
    RateLimited { retry_after: u64 },
}

impl Policy {
    /// The configured limits at `now` (Unix seconds); `None` without any.
    pub fn at(config: &LimitsConfig, now: u64) -> Option<Policy> {
        let tokens = config.token_budget.map(|limit| Bounded {
            window: Window::containing(now, config.token_window_seconds),
            limit,
        });
        let requests = config.requests_per_minute.map(|limit| Bounded {
            window: Window::containing(now, REQUEST_WINDOW_SECONDS),
            limit: u64::from(limit),
        });
        (tokens.is_some() || requests.is_some()).then_some(Policy {
            tokens,
            requests,
            now,
        })
    }

    pub fn admit_call(&self, subject: &str) -> StoreCall {
        StoreCall::Admit {
            subject: subject.to_owned(),
            tokens: self.tokens,
            requests: self.requests,
        }
    }

    pub fn read_call(&self, subject: &str) -> StoreCall {
        StoreCall::Read {
            subject: subject.to_owned(),
            tokens: self.tokens.map(|b| b.window),
            requests: self.requests.map(|b| b.window),
        }
    }

    /// What an admission answer means: a spent budget wins over the request
    /// limit, since waiting a minute would not help.
    pub fn refusal(&self, counts: &Counts) -> Option<Refusal> {
        if counts.admitted {
            return None;
        }
        match self.tokens {
            Some(b) if counts.tokens >= b.limit => Some(Refusal::TokenBudgetExhausted {
                retry_after: b.window.seconds_left(self.now),
            }),
            _ => Some(Refusal::RateLimited {
                retry_after: self.requests.map_or(1, |b| b.window.seconds_left(self.now)),
            }),
        }
    }

    /// `RateLimit-Policy`: `"tokens";q=<budget>;w=<window>, "requests";q=<limit>;w=60`.
    pub fn policy_field(&self) -> HeaderValue {
        let items: Vec<String> = self
            .quotas()
            .map(|(name, b)| format!("\"{name}\";q={};w={}", b.limit, b.window.seconds))
            .collect();
        HeaderValue::from_str(&items.join(", ")).expect("digits and quotes")
    }

    /// `RateLimit`: what is left of each quota (never below 0) and the
    /// seconds to its reset. Tokens: before this request's own; requests:
    /// after this one was counted.
    pub fn remaining_field(&self, counts: &Counts) -> HeaderValue {
        let items: Vec<String> = self
            .quotas()
            .map(|(name, b)| {
                let used = if name == "tokens" {
                    counts.tokens
                } else {
                    counts.requests
                };
                format!(
                    "\"{name}\";r={};t={}",
                    b.limit.saturating_sub(used),
                    b.window.seconds_left(self.now)
                )
            })
            .collect();
        HeaderValue::from_str(&items.join(", ")).expect("digits and quotes")
    }

    fn quotas(&self) -> impl Iterator<Item = (&'static str, Bounded)> {
        [("tokens", self.tokens), ("requests", self.requests)]
            .into_iter()
            .filter_map(|(name, b)| Some((name, b?)))
    }

    /// The body of `GET /usage`: a member per configured limit.
    pub fn usage_json(&self, subject: &str, counts: &Counts) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("subject".into(), subject.into());
        for (name, b) in self.quotas() {
            let used = if name == "tokens" {
                counts.tokens
            } else {
                counts.requests
            };
            body.insert(
                name.into(),
                serde_json::json!({
                    "limit": b.limit,
                    "used": used,
                    "remaining": b.limit.saturating_sub(used),
                    "resetsAt": rfc3339(b.window.end()),
                }),
            );
        }
        serde_json::Value::Object(body)
    }
}

/// The in-process store: one process, isolate or execution environment.
/// Memory is bounded: at most `max_keys` counters; when full, expired ones
/// go first, and a request that still finds no room is refused.
#[derive(Debug)]
pub struct MemoryStore {
    max_keys: usize,
    counters: HashMap<String, (u64, u64)>,
    /// Unix seconds of the call being applied (for expiry).
    now: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::with_capacity(100_000)
    }

    pub fn with_capacity(max_keys: usize) -> Self {
        MemoryStore {
            max_keys,
            counters: HashMap::new(),
            now: 0,
        }
    }

    /// Runs `call` at `now` (Unix seconds).
    pub fn call(&mut self, call: &StoreCall, now: u64) -> Counts {
        self.now = now;
        let full = self.counters.len() >= self.max_keys;
        if full {
            self.counters.retain(|_, (_, expires)| *expires > now);
        }
        if let StoreCall::Admit { .. } = call {
            if self.counters.len() >= self.max_keys {
                return Counts::default();
            }
        }
        apply(call, self)
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl CounterMap for MemoryStore {
    fn get(&mut self, key: &str) -> u64 {
        match self.counters.get(key) {
            Some(&(n, expires)) if expires > self.now => n,
            _ => 0,
        }
    }

    fn add(&mut self, key: &str, n: u64, expires_at: u64) -> u64 {
        let now = self.now;
        let entry = self
            .counters
            .entry(key.to_owned())
            .or_insert((0, expires_at));
        if entry.1 <= now {
            *entry = (0, expires_at);
        }
        entry.0 = entry.0.saturating_add(n);
        entry.1 = expires_at;
        entry.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(budget: Option<u64>, requests: Option<u32>) -> LimitsConfig {
        LimitsConfig {
            token_budget: budget,
            token_window_seconds: 100,
            requests_per_minute: requests,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn windows_are_aligned_to_unix_time() {
        let day = Window::containing(1_765_100_000, 86_400);
        assert_eq!(day.start, 1_765_065_600);
        assert_eq!(rfc3339(day.end()), "2025-12-08T00:00:00Z");
        assert_eq!(day.seconds_left(day.end() - 1), 1);
        assert_eq!(day.seconds_left(day.end() + 5), 1);
    }

    #[test]
    fn a_spent_budget_refuses_until_the_window_ends() {
        let mut store = MemoryStore::new();
        let policy = Policy::at(&config(Some(10), None), 1_000).unwrap();
        let counts = store.call(&policy.admit_call("alice"), 1_000);
        assert!(counts.admitted);
        let window = policy.tokens.unwrap().window;
        let charge = |tokens| StoreCall::Charge {
            subject: "alice".into(),
            window,
            tokens,
        };
        assert_eq!(store.call(&charge(4), 1_010).tokens, 4);
        assert_eq!(store.call(&charge(8), 1_010).tokens, 12);
        let counts = store.call(&policy.admit_call("alice"), 1_050);
        assert!(!counts.admitted);
        let late = Policy {
            now: 1_050,
            ..policy
        };
        assert_eq!(
            late.refusal(&counts),
            Some(Refusal::TokenBudgetExhausted { retry_after: 50 })
        );
        assert_eq!(
            late.remaining_field(&counts).to_str().unwrap(),
            "\"tokens\";r=0;t=50"
        );
        assert!(store.call(&policy.admit_call("bob"), 1_050).admitted);
        let next = Policy::at(&config(Some(10), None), 1_100).unwrap();
        assert!(store.call(&next.admit_call("alice"), 1_100).admitted);
    }

    #[test]
    fn requests_are_counted_only_when_admitted() {
        let mut store = MemoryStore::new();
        let policy = Policy::at(&config(Some(5), Some(2)), 120).unwrap();
        assert_eq!(
            policy.policy_field().to_str().unwrap(),
            "\"tokens\";q=5;w=100, \"requests\";q=2;w=60"
        );
        for expected in [1, 2] {
            let counts = store.call(&policy.admit_call("a"), 120);
            assert!(counts.admitted);
            assert_eq!(counts.requests, expected);
        }
        let counts = store.call(&policy.admit_call("a"), 130);
        assert_eq!(counts.requests, 2);
        let at = Policy { now: 130, ..policy };
        assert_eq!(
            at.refusal(&counts),
            Some(Refusal::RateLimited { retry_after: 50 })
        );
        assert_eq!(
            at.remaining_field(&counts).to_str().unwrap(),
            "\"tokens\";r=5;t=70, \"requests\";r=0;t=50"
        );
        let usage = at.usage_json("a", &store.call(&at.read_call("a"), 130));
        assert_eq!(usage["requests"]["used"], 2);
        assert_eq!(usage["tokens"]["remaining"], 5);
        assert_eq!(usage["tokens"]["resetsAt"], "1970-01-01T00:03:20Z");
    }

    #[test]
    fn memory_is_bounded_and_expired_counters_are_reclaimed() {
        let mut store = MemoryStore::with_capacity(2);
        let policy = Policy::at(&config(None, Some(5)), 0).unwrap();
        assert!(store.call(&policy.admit_call("a"), 0).admitted);
        assert!(store.call(&policy.admit_call("b"), 0).admitted);
        assert!(!store.call(&policy.admit_call("c"), 1).admitted);
        let later = Policy::at(&config(None, Some(5)), 60 + KEPT_PAST_END_SECONDS).unwrap();
        assert!(store.call(&later.admit_call("c"), later.now).admitted);
        assert!(store.counters.len() <= 2);
    }

    #[test]
    fn calls_travel_as_json() {
        let call = StoreCall::Charge {
            subject: "s".into(),
            window: Window::containing(5, 2),
            tokens: 3,
        };
        let json = serde_json::to_string(&call).unwrap();
        assert_eq!(
            json,
            r#"{"charge":{"subject":"s","window":{"start":4,"seconds":2},"tokens":3}}"#
        );
        assert_eq!(serde_json::from_str::<StoreCall>(&json).unwrap(), call);
    }
}
