//! The one seam between the core and a runtime: what a platform does (I/O,
//! timers, clocks, log output) and the errors it reports.

use std::future::Future;
use std::time::SystemTime;

use bytes::Bytes;
use futures::Stream;

use super::{ChargeFailure, KeyRefresh};
use crate::auth::SignatureCheck;
use crate::config::LimitsStore;
use crate::gateway::limits::{Counts, StoreCall, StoreError};

/// Why the origin could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Connection refused, DNS, TLS, reset before headers: the detail is for
    /// the log (the driver scrubs it).
    Unreachable(String),
}

/// Why the request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Over `MAX_BODY_BYTES` (the driver's verdict).
    TooLarge,
    /// The client's connection failed while sending it.
    Io(String),
    /// Not all there within the platform's body timeout.
    TimedOut,
}

/// A request body as a platform hands it over, chunk by chunk.
pub trait RequestBody: Stream<Item = Result<Bytes, BodyError>> + Unpin {}
impl<B: Stream<Item = Result<Bytes, BodyError>> + Unpin> RequestBody for B {}

/// An issuer document's answer (discovery or key set); the driver reads at
/// most [`crate::auth::MAX_ISSUER_DOCUMENT_BYTES`] of its body.
pub struct IssuerAnswer<B> {
    pub status: u16,
    pub cache_control: Option<String>,
    pub body: B,
}

/// A platform rate limiter's verdict (the Workers `RATE_LIMITER` binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Limited; retry after this many seconds (at least 1).
    Limited {
        retry_after_seconds: u64,
    },
}

/// What a runtime provides. Clocks: `now_ms` is monotonic, `now` is the wall
/// clock (JWT times, SigV4 dates). Nothing in the core reads either itself.
pub trait Platform: Clone + Unpin {
    /// A response body (the origin's, an issuer's), chunk by chunk.
    type OriginBody: Stream<Item = Result<Bytes, String>> + Unpin;
    /// A timer completing at a monotonic deadline.
    type Sleep: Future<Output = ()> + Unpin;
    /// A call to the shared limits store (Redis, a Durable Object), owning
    /// what it needs: a stream's charge may outlive its request.
    type StoreCall: Future<Output = Result<Counts, StoreError>> + Unpin + 'static;
    /// Whether one request may wait for I/O started by another (a shared
    /// key set refresh). Workers forbid it: such a request is cancelled as
    /// hung, so there each request fetches for itself.
    const SHARES_IO_ACROSS_REQUESTS: bool = true;
    /// Whether [`Platform::verify_rsa`] checks RSA signatures (WebCrypto on
    /// Workers): the authenticator then hands them over.
    const VERIFIES_RSA: bool = false;

    fn now_ms(&self) -> u64;
    fn now(&self) -> SystemTime;
    /// 32 unpredictable bytes (request and session ids).
    fn random(&self) -> [u8; 32];
    fn sleep_until(&self, deadline_ms: u64) -> Self::Sleep;
    /// Whether the gateway listens on a loopback address (then the `Host`
    /// rule against DNS rebinding applies).
    fn listens_on_loopback(&self) -> bool {
        false
    }
    /// Sends the signed origin request; resolves when its head has arrived.
    fn fetch_origin(
        &self,
        request: http::Request<Bytes>,
    ) -> impl Future<Output = Result<http::Response<Self::OriginBody>, FetchError>>;
    /// GETs an issuer document (`Accept: application/json`); the driver
    /// gives it [`crate::auth::ISSUER_FETCH_TIMEOUT_MS`].
    fn fetch_issuer(
        &self,
        url: &str,
    ) -> impl Future<Output = Result<IssuerAnswer<Self::OriginBody>, String>>;
    /// Checks an RSA signature with the platform's crypto: `None` when it
    /// cannot, and the core then verifies it in-process. Asked only when
    /// [`Platform::VERIFIES_RSA`].
    fn verify_rsa(&self, _check: &SignatureCheck) -> impl Future<Output = Option<bool>> {
        std::future::ready(None)
    }
    /// Runs a key set refresh apart from the request that found it due
    /// (natively: a spawned task). Platforms that cannot (Workers: I/O
    /// belongs to one request) hand it back, and the request runs it for at
    /// most [`crate::auth::STALE_REFRESH_WAIT_MS`].
    fn spawn_key_refresh(&self, refresh: KeyRefresh) -> Option<KeyRefresh> {
        Some(refresh)
    }
    /// A platform rate limiter (the Workers binding), or `None` when there is
    /// none; apart from `RATE_LIMIT_PER_MINUTE`, which counts in `LIMITS_STORE`.
    fn rate_limit(&self, _key: &str) -> impl Future<Output = Option<RateDecision>> {
        std::future::ready(None)
    }
    /// Whether this platform reaches `store` (memory: every platform).
    fn reaches_store(&self, store: &LimitsStore) -> bool {
        *store == LimitsStore::Memory
    }
    /// Sends `call` to the shared limits store this platform was set up
    /// with; asked only when [`Platform::reaches_store`] said yes to a store
    /// other than memory. The driver gives it `LIMITS_STORE_TIMEOUT_MS`.
    fn limits_store(&self, call: StoreCall) -> Self::StoreCall;
    /// Runs `charge` after its request is gone (the client left): natively a
    /// task, on Workers `waitUntil`. Gives up at the monotonic
    /// `deadline_ms`; logs [`ChargeFailure::line`] if it fails or gives up.
    fn detach(&self, charge: Self::StoreCall, deadline_ms: u64, failure: ChargeFailure);
    /// Writes one structured log line.
    fn log(&self, line: &str);
}
