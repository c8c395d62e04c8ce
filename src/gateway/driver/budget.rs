//! The driver's side of [`crate::gateway::limits`]: phase 2's budget and
//! request-limit check, `GET /usage`, and a stream's charge when it ends.
//! The store is the in-process one or the platform's
//! ([`Platform::limits_store`]); each call gets `LIMITS_STORE_TIMEOUT_MS`,
//! and `LIMITS_STORE_FAILURE` says what a store that does not answer means.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::{select, Either};
use http::{header, HeaderValue, Response};

use super::{lock, unix_ms, unix_seconds, Platform};
use crate::config::{LimitsConfig, LimitsStore};
use crate::error::{Code, GatewayError};
use crate::gateway::limits::{Counts, MemoryStore, Policy, Refusal, StoreCall, StoreError, Window};
use crate::gateway::log::{Event, EventName, Level};
use crate::gateway::{LimitFields, RequestContext};
use crate::scrub::Scrubber;

/// The subject of requests without a token (`AUTH=none`).
pub(super) const ANONYMOUS: &str = "anonymous";

/// A store that does not answer: retry after this many seconds.
const UNAVAILABLE_RETRY_SECONDS: u32 = 1;

/// The limits of a deployment and where they are counted.
pub(super) struct Budget {
    config: LimitsConfig,
    /// `LIMITS_STORE=memory`.
    memory: Option<Arc<Mutex<MemoryStore>>>,
    scrubber: Scrubber,
}

/// What a stream admitted under a token budget is charged to, when it ends.
pub struct ChargePlan {
    subject: String,
    window: Window,
    memory: Option<Arc<Mutex<MemoryStore>>>,
    timeout_ms: u64,
    request_id: String,
    scrubber: Scrubber,
}

/// The `limits_unavailable` line of a charge that did not land.
pub struct ChargeFailure {
    unix_ms: u64,
    request_id: String,
    tokens: u64,
    scrubber: Scrubber,
}

impl ChargeFailure {
    /// The line, once the store's `error` is known.
    pub fn line(&self, error: &StoreError) -> String {
        unavailable_line(
            self.unix_ms,
            &self.request_id,
            &format!(
                "{}; {} tokens were not charged",
                self.scrubber.scrub(&error.to_string()),
                self.tokens
            ),
        )
    }
}

impl Budget {
    /// `None` without any limit.
    pub(super) fn new(config: &LimitsConfig, scrubber: Scrubber) -> Option<Budget> {
        config.any().then(|| Budget {
            config: config.clone(),
            memory: (config.store == LimitsStore::Memory)
                .then(|| Arc::new(Mutex::new(MemoryStore::new()))),
            scrubber,
        })
    }

    /// `RateLimit-Policy`, for every answer of a limited route.
    pub(super) fn policy_field(&self) -> HeaderValue {
        self.policy(0).policy_field()
    }

    /// The limits at `now` (Unix seconds).
    fn policy(&self, now: u64) -> Policy {
        Policy::at(&self.config, now).expect("a budget has a limit")
    }

    /// Phase 2, after authentication: counts the request, or refuses it with
    /// 429 (`token_budget_exhausted`, `rate_limited`) or, when the store does
    /// not answer and `LIMITS_STORE_FAILURE=deny`, 503. Sets the RateLimit
    /// fields; returns where the stream's tokens go.
    pub(super) async fn admit<P: Platform>(
        &self,
        platform: &P,
        ctx: &mut RequestContext,
    ) -> Result<Option<ChargePlan>, GatewayError> {
        let now = unix_seconds(platform.now());
        let policy = self.policy(now);
        let subject = ctx.subject.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        ctx.limit_fields = Some(LimitFields {
            policy: policy.policy_field(),
            remaining: None,
        });
        match self.call(platform, policy.admit_call(&subject), now).await {
            Ok(counts) => {
                if let Some(fields) = &mut ctx.limit_fields {
                    fields.remaining = Some(policy.remaining_field(&counts));
                }
                if let Some(refusal) = policy.refusal(&counts) {
                    return Err(refused(refusal));
                }
            }
            Err(error) => self.unavailable(platform, ctx, &error)?,
        }
        Ok(policy.tokens.map(|tokens| ChargePlan {
            subject,
            window: tokens.window,
            memory: self.memory.clone(),
            timeout_ms: self.config.store_timeout_ms,
            request_id: ctx.request_id.clone(),
            scrubber: self.scrubber.clone(),
        }))
    }

    /// `GET /usage`: the subject's counts, without counting this request.
    pub(super) async fn usage<P: Platform>(
        &self,
        platform: &P,
        ctx: &mut RequestContext,
    ) -> Result<Response<Bytes>, GatewayError> {
        let now = unix_seconds(platform.now());
        let policy = self.policy(now);
        let subject = ctx.subject.clone().unwrap_or_else(|| ANONYMOUS.to_owned());
        let counts = match self.call(platform, policy.read_call(&subject), now).await {
            Ok(counts) => counts,
            // Nothing to go on with: the counts are the answer.
            Err(error) => return Err(unavailable_error(&self.scrubber.scrub(&error.to_string()))),
        };
        ctx.limit_fields = Some(LimitFields {
            policy: policy.policy_field(),
            remaining: Some(policy.remaining_field(&counts)),
        });
        Ok(json_response(&policy.usage_json(&subject, &counts)))
    }

    async fn call<P: Platform>(
        &self,
        platform: &P,
        call: StoreCall,
        now: u64,
    ) -> Result<Counts, StoreError> {
        if let Some(memory) = &self.memory {
            return Ok(lock(memory).call(&call, now));
        }
        let deadline = platform.now_ms() + self.config.store_timeout_ms;
        match select(platform.limits_store(call), platform.sleep_until(deadline)).await {
            Either::Left((answer, _)) => answer,
            Either::Right(_) => Err(StoreError::TimedOut),
        }
    }

    /// `LIMITS_STORE_FAILURE`: `deny` answers 503; `allow` logs and goes on.
    fn unavailable<P: Platform>(
        &self,
        platform: &P,
        ctx: &RequestContext,
        error: &StoreError,
    ) -> Result<(), GatewayError> {
        let detail = self.scrubber.scrub(&error.to_string());
        if self.config.deny_when_unavailable {
            return Err(unavailable_error(&detail));
        }
        platform.log(&unavailable_line(
            unix_ms(platform.now()),
            &ctx.request_id,
            &format!("{detail}; the request went on (LIMITS_STORE_FAILURE=allow)"),
        ));
        Ok(())
    }
}

/// An answer to a stream's charge: what goes in its log line, and the call
/// that is still to run (shared stores).
pub(super) struct Charged {
    pub tokens: u64,
    pub estimated: bool,
    /// The call to the platform's store, its deadline and what to log if it
    /// fails; `None` once the memory store took it.
    pub pending: Option<(StoreCall, u64, ChargeFailure)>,
}

impl ChargePlan {
    /// Charges the stream's `tokens` (the origin's usage), or the estimate
    /// `ceil(request bytes / 4) + ceil(text bytes / 4)` when it sent none.
    pub(super) fn charge(
        self,
        tokens: Option<u64>,
        request_bytes: u64,
        text_bytes: u64,
        now_ms: u64,
        unix_ms: u64,
    ) -> Charged {
        let estimated = tokens.is_none();
        let tokens = tokens.unwrap_or(request_bytes.div_ceil(4) + text_bytes.div_ceil(4));
        let call = StoreCall::Charge {
            subject: self.subject,
            window: self.window,
            tokens,
        };
        let pending = match &self.memory {
            Some(memory) => {
                lock(memory).call(&call, unix_ms / 1000);
                None
            }
            None => {
                let failure = ChargeFailure {
                    unix_ms,
                    request_id: self.request_id,
                    tokens,
                    scrubber: self.scrubber,
                };
                Some((call, now_ms + self.timeout_ms, failure))
            }
        };
        Charged {
            tokens,
            estimated,
            pending,
        }
    }
}

fn refused(refusal: Refusal) -> GatewayError {
    let (code, retry_after) = match refusal {
        Refusal::TokenBudgetExhausted { retry_after } => (Code::TokenBudgetExhausted, retry_after),
        Refusal::RateLimited { retry_after } => (Code::RateLimited, retry_after),
    };
    GatewayError::new(code).with_header(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)))
}

fn unavailable_error(detail: &str) -> GatewayError {
    GatewayError::new(Code::LimitsUnavailable)
        .with_detail(detail.to_owned())
        .with_header(
            header::RETRY_AFTER,
            HeaderValue::from(UNAVAILABLE_RETRY_SECONDS),
        )
}

fn unavailable_line(unix_ms: u64, request_id: &str, detail: &str) -> String {
    let mut event = Event::new(unix_ms, Level::Warn, EventName::LimitsUnavailable)
        .with_detail(detail.to_owned());
    event.request_id = Some(request_id.to_owned());
    event.to_line()
}

pub(super) fn json_response(body: &serde_json::Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
