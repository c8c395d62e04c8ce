//! Caller authentication: verification of `Authorization: Bearer` JWTs
//! against the issuer's JSON Web Key Set, with a key cache and a
//! verified-token cache, as a sans-IO state machine.
//!
//! What is checked and the `JWT_*` variables: `docs/interface.md`;
//! RFC 7515/7517/7519 (JWS, JWK, JWT), RFC 8725 (JWT best practices),
//! RFC 6750 (bearer challenges), OpenID Connect Discovery 1.0.
//!
//! [`Authenticator::check`] answers a request's `Authorization` header with
//! [`Check::Verified`], [`Check::Rejected`] (a [`GatewayError`] carrying its
//! `WWW-Authenticate` challenge), or [`Check::Fetch`]: the adapter performs
//! that HTTP GET, hands the result to [`Authenticator::on_fetched`], and
//! checks again (the loop is `crate::gateway::driver`'s `authenticate`).
//!
//! With [`Authenticator::use_platform_rsa`] (the Workers adapter: WebCrypto),
//! `check` may also answer [`Check::VerifySignature`]: the adapter checks
//! that RSA signature, passes the verdict to [`Authenticator::on_signature`]
//! and checks again (`platform_rsa`).
//!
//! A stale key set that still serves never makes a request wait: `check`
//! answers with it, and [`Authenticator::take_background_refresh`] hands out
//! its refresh once, for the adapter to run off the request's path (or,
//! where I/O cannot outlive a request, within [`STALE_REFRESH_WAIT_MS`]).
//! Every issuer fetch gets [`ISSUER_FETCH_TIMEOUT_MS`] and reads at most
//! [`MAX_ISSUER_DOCUMENT_BYTES`].
//!
//! The loop ends: a `Fetch` is only returned when a fetch is allowed, and
//! every completed key set fetch (good or bad) bars the next one for a
//! minute, so after at most a discovery and a key set fetch `check` answers.
//!
//! Submodules: [`reject`] (reasons and RFC 6750 responses), [`jwks`] (key
//! sets, algorithms, discovery), `keys` (when to fetch), `verify` (one
//! token), `rsa_key` (RSA signatures: `ring` natively, for speed; the `rsa`
//! crate on wasm32), `platform_rsa` (RSA signatures handed to the platform:
//! WebCrypto on Workers, with `rsa_key` as the fallback), `token_cache`
//! (verified tokens). Signatures are checked
//! through `jwt-compact`; only the policy around it is written here.

mod algorithm;
pub mod jwks;
mod keys;
mod platform_rsa;
pub mod reject;
mod rsa_key;
mod token_cache;
mod verify;

use bytes::Bytes;

use crate::config::JwtConfig;
use crate::error::GatewayError;

pub use algorithm::JwsAlgorithm;
pub use keys::{MIN_REFETCH_INTERVAL, STALE_GRACE};
pub use platform_rsa::SignatureCheck;
pub use reject::{Reason, MAX_TOKEN_BYTES};
pub use token_cache::DEFAULT_CAPACITY as DEFAULT_TOKEN_CACHE_CAPACITY;

use jwks::PublicKey;
use keys::{KeyLookup, KeyStore};
use platform_rsa::{Verdict, Verdicts};
use token_cache::{Lookup, VerifiedTokens};

/// The deadline of one issuer fetch (discovery or key set), head and body.
pub const ISSUER_FETCH_TIMEOUT_MS: u64 = 10_000;
/// How long a request waits for the refresh of a stale key set that still
/// serves, where the refresh cannot run apart from the request (Workers);
/// the stale keys are used when it has not finished by then.
pub const STALE_REFRESH_WAIT_MS: u64 = 500;
/// The largest issuer document (discovery, key set) read.
pub const MAX_ISSUER_DOCUMENT_BYTES: usize = jwks::MAX_DOCUMENT_BYTES;

/// What a verified token says about its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The `sub` claim.
    pub subject: Option<String>,
    /// The claim named by `JWT_USER_ID_CLAIM` (a string, or a number as text).
    pub user_id: Option<String>,
    /// The claims of [`JwtConfig::gate_claims`] the token has, as an
    /// agent's `requireClaims` compares them ([`crate::config::Agent::admits`]).
    pub claims: Vec<(String, Vec<String>)>,
    /// The `exp` claim, unix seconds.
    pub expires_at: u64,
}

/// The answer to [`Authenticator::check`].
#[derive(Debug)]
pub enum Check {
    Verified(Verified),
    Rejected(GatewayError),
    /// Perform this GET, pass the result to [`Authenticator::on_fetched`],
    /// then call `check` again.
    Fetch(FetchRequest),
    /// Check this RSA signature, pass the verdict to
    /// [`Authenticator::on_signature`], then call `check` again. Only after
    /// [`Authenticator::use_platform_rsa`].
    VerifySignature(SignatureCheck),
}

/// Why a fetch is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPurpose {
    /// `<issuer>/.well-known/openid-configuration`, to find `jwks_uri`.
    Discovery,
    /// The JWKS document.
    KeySet,
}

/// An HTTP GET the adapter must perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub url: String,
    pub purpose: FetchPurpose,
}

/// The response to a [`FetchRequest`].
#[derive(Debug, Clone)]
pub struct FetchResponse {
    pub status: u16,
    /// The `Cache-Control` header value, if any.
    pub cache_control: Option<String>,
    pub body: Bytes,
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Signatures checked (tokens that missed the verified-token cache).
    pub signature_checks: u64,
    /// Requests answered from the verified-token cache.
    pub cache_hits: u64,
}

/// Verifies bearer tokens for one issuer: the policy of a [`JwtConfig`], the
/// issuer's key set, and the verified-token cache.
pub struct Authenticator {
    config: JwtConfig,
    keys: KeyStore,
    tokens: VerifiedTokens,
    stats: AuthStats,
    /// RSA signatures go to the platform ([`Check::VerifySignature`]).
    platform_rsa: bool,
    verdicts: Verdicts,
}

impl Authenticator {
    pub fn new(config: JwtConfig) -> Self {
        let keys = KeyStore::new(
            config.issuer.clone(),
            config.discovery_url(),
            config.jwks_url.clone(),
        );
        Authenticator {
            config,
            keys,
            tokens: VerifiedTokens::new(token_cache::DEFAULT_CAPACITY),
            stats: AuthStats::default(),
            platform_rsa: false,
            verdicts: Verdicts::default(),
        }
    }

    /// Hands RSA signature checks to the adapter ([`Check::VerifySignature`]),
    /// for platforms whose native crypto beats the in-process one (WebCrypto
    /// on Workers).
    pub fn use_platform_rsa(&mut self) {
        self.platform_rsa = true;
    }

    /// Takes the platform's verdict on a [`Check::VerifySignature`]:
    /// `Some(valid)`, or `None` when it could not check (the next `check`
    /// then verifies in-process).
    pub fn on_signature(&mut self, check: &SignatureCheck, verdict: Option<bool>) {
        let verdict = match verdict {
            Some(true) => Verdict::Valid,
            Some(false) => Verdict::Invalid,
            None => Verdict::InProcess,
        };
        self.verdicts.insert(check, verdict);
    }

    /// Sets how many verified tokens are remembered (`0` disables the cache).
    pub fn with_token_cache_capacity(mut self, capacity: usize) -> Self {
        self.tokens = VerifiedTokens::new(capacity);
        self
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    pub fn stats(&self) -> AuthStats {
        self.stats
    }

    /// Checks a request's `Authorization` header value at `now` (unix seconds).
    pub fn check(&mut self, authorization: Option<&str>, now: u64) -> Check {
        match self.try_check(authorization, now) {
            Ok(verified) => Check::Verified(verified),
            Err(Outcome::Fetch(request)) => Check::Fetch(request),
            Err(Outcome::VerifySignature(check)) => Check::VerifySignature(*check),
            Err(Outcome::Reject(reason)) => Check::Rejected(reason.to_error()),
        }
    }

    fn try_check(&mut self, authorization: Option<&str>, now: u64) -> Result<Verified, Outcome> {
        let token = reject::bearer_candidate(authorization)?;
        let digest = token_cache::digest(token);
        let leeway = self.config.leeway_seconds;

        match self.tokens.get(&digest, now, leeway) {
            Lookup::Miss => {}
            Lookup::Rejected(reason) => return Err(reason.into()),
            Lookup::Hit(verified) => {
                // No usable set: fetch first (it may drop the token's key).
                if let Some(request) = self.keys.refresh_due(now) {
                    return Err(Outcome::Fetch(request));
                }
                if self.keys.is_usable(now) {
                    self.stats.cache_hits += 1;
                    return Ok(verified);
                }
                return Err(Reason::KeysUnavailable.into());
            }
        }

        reject::check_b64token(token)?;
        let (untrusted, alg) = verify::parse(token)?;
        let key = match self
            .keys
            .lookup(untrusted.header().key_id.as_deref(), alg, now)
        {
            KeyLookup::Found(key) => key,
            KeyLookup::Fetch(request) => return Err(Outcome::Fetch(request)),
            KeyLookup::Reject(reason) => return Err(reason.into()),
        };
        let verdict = match &key.public {
            PublicKey::Rsa(public) if self.platform_rsa && key.allows(alg) => {
                match self.verdicts.take(&digest, &key.thumbprint) {
                    Some(verdict) => verdict,
                    None => {
                        let check =
                            verify::signature_check(token, &untrusted, alg, key, public, digest);
                        return Err(Outcome::VerifySignature(Box::new(check)));
                    }
                }
            }
            _ => Verdict::InProcess,
        };
        self.stats.signature_checks += 1;
        let claims = match verdict {
            Verdict::Valid => verify::trusted_claims(&untrusted)?,
            Verdict::Invalid => return Err(Reason::BadSignature.into()),
            Verdict::InProcess => verify::verify_signature(&untrusted, alg, key)?,
        };
        let (verified, validity) = verify::check_claims(&claims, &self.config, now)?;
        let key_thumbprint = key.thumbprint;
        self.tokens.insert(
            digest,
            verified.clone(),
            validity,
            key_thumbprint,
            now,
            leeway,
        );
        Ok(verified)
    }

    /// The refresh of a stale key set that still serves, if one is due and
    /// none is in flight: perform it like a [`Check::Fetch`] (result to
    /// [`Self::on_fetched`]), then ask again (discovery may lead to a key set
    /// fetch), without holding up the request.
    pub fn take_background_refresh(&mut self, now: u64) -> Option<FetchRequest> {
        self.keys.background_refresh(now)
    }

    /// Takes the result of a [`Check::Fetch`]: `Err(message)` when the
    /// issuer could not be reached. Returns a log-worthy message (a failure,
    /// or keys of the set that were skipped); it holds no token or secret.
    pub fn on_fetched(
        &mut self,
        request: &FetchRequest,
        response: Result<FetchResponse, String>,
        now: u64,
    ) -> Option<String> {
        let outcome = self.keys.on_fetched(request, response, now);
        if outcome.replaced {
            self.forget_tokens_of_dropped_keys();
        }
        outcome.message
    }

    /// The current JWKS document as fetched, with its fetch time and
    /// lifetime (seconds), for platforms that cache it outside the process
    /// (the Workers Cache API).
    pub fn export_key_set(&self) -> Option<(Bytes, u64, u64)> {
        self.keys.export()
    }

    /// Adopts a JWKS document from [`Self::export_key_set`] (possibly of
    /// another instance), unless the current key set is as recent.
    pub fn import_key_set(
        &mut self,
        document: Bytes,
        fetched_at: u64,
        max_age: u64,
    ) -> Result<(), String> {
        if self.keys.import(document, fetched_at, max_age)? {
            self.forget_tokens_of_dropped_keys();
        }
        Ok(())
    }

    fn forget_tokens_of_dropped_keys(&mut self) {
        match self.keys.key_set() {
            Some(set) => self.tokens.retain_keys(|k| set.contains_thumbprint(k)),
            None => self.tokens.clear(),
        }
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.config.issuer)
            .field("keys", &self.keys.key_set().map(|s| s.keys().len()))
            .field("cached_tokens", &self.tokens.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// Why `try_check` did not verify.
enum Outcome {
    Fetch(FetchRequest),
    VerifySignature(Box<SignatureCheck>),
    Reject(Reason),
}

impl From<Reason> for Outcome {
    fn from(reason: Reason) -> Self {
        Outcome::Reject(reason)
    }
}

#[cfg(test)]
#[path = "../../tests/support/jws.rs"]
pub(crate) mod test_jws;
#[cfg(test)]
mod tests;
