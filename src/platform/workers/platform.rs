//! The Workers [`Platform`]: `Fetch` for the origin and the issuer,
//! `setTimeout` timers, `Date.now()` as the clock (it does not advance
//! during computation, which only makes our timings conservative),
//! WebCrypto for RSA signatures, the optional `RATE_LIMITER` binding, and
//! the `LIMITS` Durable Objects ([`limits`]) for `LIMITS_STORE=durable_object`.

use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::{select, Either};
use futures::{Stream, StreamExt};
use http::StatusCode;
use worker::{
    console_log, Context, Date, Env, Fetch, Headers, Method, Request, RequestInit, Response,
};

use super::crypto;
use super::headers::{to_header_map, to_headers};
use super::limits;
use super::timer::Timer;
use crate::auth::SignatureCheck;
use crate::config::LimitsStore;
use crate::gateway::driver::{ChargeFailure, FetchError, IssuerAnswer, Platform, RateDecision};
use crate::gateway::limits::{Counts, StoreCall, StoreError};

const RATE_LIMITER_BINDING: &str = "RATE_LIMITER";

/// The Workers [`Platform`], one per `fetch` event.
#[derive(Clone)]
pub(super) struct WorkersPlatform {
    pub(super) env: Env,
    /// The event's context: work that outlives the answer (a charge whose
    /// client left) goes to its `waitUntil`.
    pub(super) ctx: Rc<Context>,
}

type WorkersBody = Pin<Box<dyn Stream<Item = Result<Bytes, String>>>>;
type StoreAnswer = Pin<Box<dyn std::future::Future<Output = Result<Counts, StoreError>>>>;

pub(super) fn now_millis() -> u64 {
    Date::now().as_millis()
}

impl Platform for WorkersPlatform {
    type OriginBody = WorkersBody;
    type Sleep = Timer;
    type StoreCall = StoreAnswer;
    const SHARES_IO_ACROSS_REQUESTS: bool = false;
    const VERIFIES_RSA: bool = true;

    fn now_ms(&self) -> u64 {
        now_millis()
    }

    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(now_millis())
    }

    fn random(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        // crypto.getRandomValues: cannot fail for 32 bytes.
        let _ = getrandom::getrandom(&mut bytes);
        bytes
    }

    fn sleep_until(&self, deadline_ms: u64) -> Self::Sleep {
        let wait = deadline_ms.saturating_sub(now_millis());
        Timer::new(Duration::from_millis(wait))
    }

    async fn fetch_origin(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<WorkersBody>, FetchError> {
        let (parts, body) = request.into_parts();
        let mut init = RequestInit::new();
        init.with_method(Method::from(parts.method.as_str().to_owned()))
            .with_headers(to_headers(&parts.headers).map_err(unreachable)?)
            .with_body(Some(worker::js_sys::Uint8Array::from(body.as_ref()).into()));
        let url = parts.uri.to_string();
        let request = Request::new_with_init(&url, &init).map_err(unreachable)?;
        let mut response = Fetch::Request(request).send().await.map_err(unreachable)?;
        let status = StatusCode::from_u16(response.status_code()).map_err(unreachable)?;
        let headers = to_header_map(response.headers());
        let mut out = http::Response::new(body_stream(&mut response));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }

    async fn fetch_issuer(&self, url: &str) -> Result<IssuerAnswer<WorkersBody>, String> {
        let mut init = RequestInit::new();
        let headers = Headers::new();
        let _ = headers.set("accept", "application/json");
        init.with_method(Method::Get).with_headers(headers);
        let request = Request::new_with_init(url, &init).map_err(|e| e.to_string())?;
        let mut response = Fetch::Request(request)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        Ok(IssuerAnswer {
            status: response.status_code(),
            cache_control: response.headers().get("cache-control").ok().flatten(),
            body: body_stream(&mut response),
        })
    }

    async fn verify_rsa(&self, check: &SignatureCheck) -> Option<bool> {
        crypto::verify_rsa(check).await
    }

    async fn rate_limit(&self, key: &str) -> Option<RateDecision> {
        let limiter = self.env.rate_limiter(RATE_LIMITER_BINDING).ok()?;
        match limiter.limit(key.to_owned()).await {
            Ok(outcome) if outcome.success => Some(RateDecision::Allowed),
            // The binding counts per 60-second period.
            Ok(_) => Some(RateDecision::Limited {
                retry_after_seconds: 60,
            }),
            // Fail open: an outage of the limiter must not take the gateway down.
            Err(_) => Some(RateDecision::Allowed),
        }
    }

    /// Memory, and the Durable Objects when the `LIMITS` binding exists
    /// (without it, configuration names `LIMITS_STORE` as invalid).
    fn reaches_store(&self, store: &LimitsStore) -> bool {
        match store {
            LimitsStore::Memory => true,
            LimitsStore::DurableObject => self.env.durable_object(limits::BINDING).is_ok(),
            LimitsStore::Redis { .. } => false,
        }
    }

    fn limits_store(&self, call: StoreCall) -> StoreAnswer {
        let env = self.env.clone();
        Box::pin(async move { limits::ask(&env, &call).await })
    }

    /// The event lives on until `charge` settles or `deadline_ms` passes.
    fn detach(&self, charge: StoreAnswer, deadline_ms: u64, failure: ChargeFailure) {
        let deadline = self.sleep_until(deadline_ms);
        self.ctx.wait_until(async move {
            let error = match select(charge, deadline).await {
                Either::Left((Ok(_), _)) => return,
                Either::Left((Err(error), _)) => error,
                Either::Right(_) => StoreError::TimedOut,
            };
            console_log!("{}", failure.line(&error));
        });
    }

    fn log(&self, line: &str) {
        console_log!("{}", line);
    }
}

fn unreachable(error: impl std::fmt::Display) -> FetchError {
    FetchError::Unreachable(error.to_string())
}

/// A Workers response's body as the driver reads it.
fn body_stream(response: &mut Response) -> WorkersBody {
    match response.stream() {
        Ok(stream) => {
            Box::pin(stream.map(|chunk| chunk.map(Bytes::from).map_err(|e| e.to_string())))
        }
        Err(_) => Box::pin(futures::stream::empty()),
    }
}
