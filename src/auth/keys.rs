//! The issuer's key set over time: a sans-IO state machine that says when to
//! fetch (OIDC discovery, then the JWKS) and takes the responses; the
//! platform adapter does the HTTP.
//!
//! Policy:
//! - the key set lives for its `Cache-Control: max-age` (default 10 min);
//! - a token with an unknown `kid` triggers a refresh, and so does a stale
//!   set, but fetches are at least [`MIN_REFETCH_INTERVAL`] apart, counted
//!   from the end of the previous attempt: after a failed or useless fetch
//!   the caller is refused instead of asked to fetch again, which is what
//!   makes the adapter's fetch loop terminate;
//! - a stale set that is still usable (up to [`STALE_GRACE`] past its
//!   lifetime) keeps serving while it is refreshed off the request's path
//!   ([`KeyStore::background_refresh`], one at a time); only a missing or
//!   unusable set, or an unknown `kid`, makes a request wait for the issuer;
//! - when a refresh fails, the failure is returned for the log.
//!
//! No fetch is recorded as started when it is requested, only when it ends
//! ([`KeyStore::on_fetched`]): concurrent callers that all asked for a fetch
//! and queue behind the adapter's lock find the refreshed set on re-checking.

use bytes::Bytes;

use super::algorithm::JwsAlgorithm;
use super::jwks::{self, Key, KeyMatch, KeySet};
use super::reject::Reason;
use super::{FetchPurpose, FetchRequest, FetchResponse, ISSUER_FETCH_TIMEOUT_MS};

/// Shortest gap between two fetch attempts, in seconds.
pub const MIN_REFETCH_INTERVAL: u64 = 60;
/// How long past its lifetime a key set keeps serving while the issuer is
/// unreachable, in seconds.
pub const STALE_GRACE: u64 = 24 * 3600;

struct Current {
    set: KeySet,
    document: Bytes,
    fetched_at: u64,
    max_age: u64,
}

impl Current {
    fn is_fresh(&self, now: u64) -> bool {
        now < self.fetched_at.saturating_add(self.max_age)
    }

    fn is_usable(&self, now: u64) -> bool {
        now < self
            .fetched_at
            .saturating_add(self.max_age)
            .saturating_add(STALE_GRACE)
    }
}

/// Where the key set comes from, and the last good one.
pub(crate) struct KeyStore {
    issuer: String,
    discovery_url: String,
    configured_url: Option<String>,
    discovered_url: Option<String>,
    current: Option<Current>,
    /// When the last key set fetch, or failed discovery, ended.
    last_attempt: Option<u64>,
    /// When the background refresh in flight was handed out.
    refreshing_since: Option<u64>,
}

/// The key for a token, or what to do instead.
pub(crate) enum KeyLookup<'a> {
    Found(&'a Key),
    Fetch(FetchRequest),
    Reject(Reason),
}

/// What a fetch result did to the store.
pub(crate) struct FetchOutcome {
    /// A log-worthy message: a failure, or keys skipped.
    pub message: Option<String>,
    /// The key set was replaced (keys may have been dropped).
    pub replaced: bool,
}

impl KeyStore {
    pub fn new(issuer: String, discovery_url: String, configured_url: Option<String>) -> Self {
        KeyStore {
            issuer,
            discovery_url,
            configured_url,
            discovered_url: None,
            current: None,
            last_attempt: None,
            refreshing_since: None,
        }
    }

    fn may_fetch(&self, now: u64) -> bool {
        self.last_attempt
            .is_none_or(|t| now >= t.saturating_add(MIN_REFETCH_INTERVAL))
    }

    fn next_request(&self) -> FetchRequest {
        match self
            .configured_url
            .as_ref()
            .or(self.discovered_url.as_ref())
        {
            Some(url) => FetchRequest {
                url: url.clone(),
                purpose: FetchPurpose::KeySet,
            },
            None => FetchRequest {
                url: self.discovery_url.clone(),
                purpose: FetchPurpose::Discovery,
            },
        }
    }

    /// A fetch to make before answering anything: there is no usable key
    /// set, and fetching is allowed now.
    pub fn refresh_due(&self, now: u64) -> Option<FetchRequest> {
        let due = self.current.as_ref().is_none_or(|c| !c.is_usable(now));
        (due && self.may_fetch(now)).then(|| self.next_request())
    }

    /// A refresh of a stale set that still serves, to run without making a
    /// request wait; handed out once until its result comes back (or until
    /// [`ISSUER_FETCH_TIMEOUT_MS`] has passed without one).
    pub fn background_refresh(&mut self, now: u64) -> Option<FetchRequest> {
        let stale = self
            .current
            .as_ref()
            .is_some_and(|c| c.is_usable(now) && !c.is_fresh(now));
        let in_flight = self
            .refreshing_since
            .is_some_and(|since| now < since.saturating_add(ISSUER_FETCH_TIMEOUT_MS / 1000 + 1));
        if !stale || in_flight || !self.may_fetch(now) {
            return None;
        }
        self.refreshing_since = Some(now);
        Some(self.next_request())
    }

    /// Whether there is a key set that may still be used.
    pub fn is_usable(&self, now: u64) -> bool {
        self.current.as_ref().is_some_and(|c| c.is_usable(now))
    }

    pub fn key_set(&self) -> Option<&KeySet> {
        self.current.as_ref().map(|c| &c.set)
    }

    /// The key for a token's `kid` and `alg`.
    pub fn lookup(&self, kid: Option<&str>, alg: JwsAlgorithm, now: u64) -> KeyLookup<'_> {
        if let Some(request) = self.refresh_due(now) {
            return KeyLookup::Fetch(request);
        }
        let current = match &self.current {
            Some(c) if c.is_usable(now) => c,
            _ => return KeyLookup::Reject(Reason::KeysUnavailable),
        };
        match current.set.find(kid, alg) {
            KeyMatch::Found(key) => KeyLookup::Found(key),
            KeyMatch::UnknownKid if kid.is_some() && self.may_fetch(now) => {
                KeyLookup::Fetch(self.next_request())
            }
            KeyMatch::UnknownKid => KeyLookup::Reject(Reason::UnknownKid),
            KeyMatch::AlgorithmMismatch => KeyLookup::Reject(Reason::AlgorithmMismatch),
            KeyMatch::AmbiguousKid => KeyLookup::Reject(Reason::AmbiguousKid),
        }
    }

    /// Takes the result of `request`.
    pub fn on_fetched(
        &mut self,
        request: &FetchRequest,
        response: Result<FetchResponse, String>,
        now: u64,
    ) -> FetchOutcome {
        self.refreshing_since = None;
        let reached = response.is_ok();
        let body = response.and_then(|r| {
            if (200..300).contains(&r.status) {
                Ok(r)
            } else {
                Err(format!("HTTP status {}", r.status))
            }
        });
        match request.purpose {
            FetchPurpose::Discovery => {
                match body.and_then(|r| jwks::parse_discovery(&r.body, &self.issuer)) {
                    Ok(url) => {
                        // Not an attempt: the key set fetch comes next.
                        self.discovered_url = Some(url);
                        FetchOutcome {
                            message: None,
                            replaced: false,
                        }
                    }
                    Err(error) => {
                        self.last_attempt = Some(now);
                        self.failure(
                            format!("OIDC discovery at {} failed: {error}", request.url),
                            now,
                        )
                    }
                }
            }
            FetchPurpose::KeySet => {
                self.last_attempt = Some(now);
                let parsed = body.and_then(|r| {
                    let set = jwks::parse_key_set(&r.body)?;
                    Ok((set, r))
                });
                match parsed {
                    Ok((set, _)) if set.is_empty() => self.failure(
                        format!(
                            "key set at {} has no usable key (skipped: {})",
                            request.url,
                            set.skipped.join("; ")
                        ),
                        now,
                    ),
                    Ok((set, response)) => {
                        let message = (!set.skipped.is_empty()).then(|| {
                            format!(
                                "key set at {}: {} usable key(s), skipped: {}",
                                request.url,
                                set.keys().len(),
                                set.skipped.join("; ")
                            )
                        });
                        self.current = Some(Current {
                            set,
                            document: response.body,
                            fetched_at: now,
                            max_age: jwks::max_age(response.cache_control.as_deref()),
                        });
                        FetchOutcome {
                            message,
                            replaced: true,
                        }
                    }
                    Err(error) => {
                        if reached && self.configured_url.is_none() {
                            // The issuer answered, but not with keys: the
                            // discovered location may have moved.
                            self.discovered_url = None;
                        }
                        self.failure(
                            format!("key set fetch from {} failed: {error}", request.url),
                            now,
                        )
                    }
                }
            }
        }
    }

    fn failure(&self, what: String, now: u64) -> FetchOutcome {
        let consequence = match &self.current {
            Some(c) if c.is_usable(now) => format!(
                "still serving the key set fetched {}s ago",
                now.saturating_sub(c.fetched_at)
            ),
            Some(_) => "the last key set is over 24 h stale: tokens are refused".to_owned(),
            None => "no key set yet: tokens are refused".to_owned(),
        };
        FetchOutcome {
            message: Some(format!(
                "{what}; {consequence}; next attempt in {MIN_REFETCH_INTERVAL}s at the earliest"
            )),
            replaced: false,
        }
    }

    /// The raw JWKS document of the current set, when it was fetched and
    /// its lifetime, for platforms that cache it outside this process.
    pub fn export(&self) -> Option<(Bytes, u64, u64)> {
        self.current
            .as_ref()
            .map(|c| (c.document.clone(), c.fetched_at, c.max_age))
    }

    /// Adopts a JWKS document cached elsewhere, unless the current set is
    /// newer. Returns whether the set was replaced.
    pub fn import(
        &mut self,
        document: Bytes,
        fetched_at: u64,
        max_age: u64,
    ) -> Result<bool, String> {
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.fetched_at >= fetched_at)
        {
            return Ok(false);
        }
        let set = jwks::parse_key_set(&document)?;
        if set.is_empty() {
            return Err("key set has no usable key".into());
        }
        self.current = Some(Current {
            set,
            document,
            fetched_at,
            max_age: max_age.min(jwks::MAX_MAX_AGE),
        });
        Ok(true)
    }
}
