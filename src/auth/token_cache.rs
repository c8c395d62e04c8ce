//! The verified-token cache: a token whose signature and claims were checked
//! is remembered, keyed by the SHA-256 of the whole token string, so that its
//! repeats skip signature verification until it expires.
//!
//! Only [`VerifiedTokens::insert`] adds entries, and only after a full
//! verification, and the key covers every byte of the token: a token that
//! differs in any byte (an altered claim or signature) misses the cache and
//! is verified from scratch. A hit still re-checks `exp`, `nbf` and `iat`
//! against the clock. The cache is bounded: when full, expired entries go
//! first, then the oldest.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use super::reject::Reason;
use super::Verified;

/// Default number of tokens remembered.
pub const DEFAULT_CAPACITY: usize = 10_000;

pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// The time claims of a verified token, all in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validity {
    pub expires_at: u64,
    pub not_before: Option<u64>,
    pub issued_at: Option<u64>,
}

impl Validity {
    /// Checks the time claims against `now`, with `leeway` seconds of skew.
    pub fn check(&self, now: u64, leeway: u64) -> Result<(), Reason> {
        if now > self.expires_at.saturating_add(leeway) {
            return Err(Reason::Expired);
        }
        if self
            .not_before
            .is_some_and(|nbf| now < nbf.saturating_sub(leeway))
        {
            return Err(Reason::NotYetValid);
        }
        if self
            .issued_at
            .is_some_and(|iat| iat > now.saturating_add(leeway))
        {
            return Err(Reason::IssuedInFuture);
        }
        Ok(())
    }
}

struct Entry {
    verified: Verified,
    validity: Validity,
    /// The thumbprint of the key that verified the token.
    key: [u8; 32],
    /// Insertion number, to tell a live queue slot from a stale one.
    seq: u64,
}

/// A bounded map from token digest to verification result.
pub(crate) struct VerifiedTokens {
    capacity: usize,
    entries: HashMap<TokenDigest, Entry>,
    /// Insertion order, oldest first; may hold slots of removed entries.
    order: VecDeque<(TokenDigest, u64)>,
    next_seq: u64,
}

/// What the cache knows about a token.
pub(crate) enum Lookup {
    Miss,
    Hit(Verified),
    /// Verified once, but the clock now says no.
    Rejected(Reason),
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        VerifiedTokens {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&mut self, digest: &TokenDigest, now: u64, leeway: u64) -> Lookup {
        let Some(entry) = self.entries.get(digest) else {
            return Lookup::Miss;
        };
        match entry.validity.check(now, leeway) {
            Ok(()) => Lookup::Hit(entry.verified.clone()),
            Err(Reason::Expired) => {
                self.entries.remove(digest);
                Lookup::Rejected(Reason::Expired)
            }
            Err(reason) => Lookup::Rejected(reason),
        }
    }

    pub fn insert(
        &mut self,
        digest: TokenDigest,
        verified: Verified,
        validity: Validity,
        key: [u8; 32],
        now: u64,
        leeway: u64,
    ) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&digest) {
            self.make_room(now, leeway);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.insert(
            digest,
            Entry {
                verified,
                validity,
                key,
                seq,
            },
        );
        self.order.push_back((digest, seq));
    }

    /// Keeps only tokens verified by a key for which `keep_key` holds (after a
    /// key set refresh dropped keys).
    pub fn retain_keys(&mut self, keep_key: impl Fn(&[u8; 32]) -> bool) {
        self.entries.retain(|_, entry| keep_key(&entry.key));
        self.compact_order();
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// Drops expired entries; if that frees less than a tenth of the
    /// capacity, also the oldest, so that sweeps stay rare (amortised O(1)).
    fn make_room(&mut self, now: u64, leeway: u64) {
        self.entries
            .retain(|_, entry| entry.validity.expires_at.saturating_add(leeway) >= now);
        let target = self.capacity - self.capacity.div_ceil(10);
        while self.entries.len() > target {
            let Some((digest, seq)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&digest).is_some_and(|e| e.seq == seq) {
                self.entries.remove(&digest);
            }
        }
        self.compact_order();
    }

    fn compact_order(&mut self) {
        let entries = &self.entries;
        self.order
            .retain(|(digest, seq)| entries.get(digest).is_some_and(|e| e.seq == *seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(subject: &str, expires_at: u64) -> Verified {
        Verified {
            subject: Some(subject.to_owned()),
            user_id: None,
            claims: Vec::new(),
            expires_at,
        }
    }

    fn validity(expires_at: u64) -> Validity {
        Validity {
            expires_at,
            not_before: None,
            issued_at: None,
        }
    }

    fn insert(cache: &mut VerifiedTokens, token: &str, expires_at: u64, now: u64) {
        cache.insert(
            digest(token),
            verified(token, expires_at),
            validity(expires_at),
            [0; 32],
            now,
            0,
        );
    }

    fn hit(cache: &mut VerifiedTokens, token: &str, now: u64) -> bool {
        matches!(cache.get(&digest(token), now, 0), Lookup::Hit(_))
    }

    #[test]
    fn hits_until_expiry_then_forgets() {
        let mut cache = VerifiedTokens::new(10);
        insert(&mut cache, "t", 100, 0);
        assert!(hit(&mut cache, "t", 100));
        assert!(matches!(
            cache.get(&digest("t"), 101, 0),
            Lookup::Rejected(Reason::Expired)
        ));
        assert_eq!(cache.len(), 0);
        assert!(matches!(cache.get(&digest("t"), 50, 0), Lookup::Miss));
    }

    #[test]
    fn time_claims_are_rechecked_with_leeway() {
        let v = Validity {
            expires_at: 100,
            not_before: Some(50),
            issued_at: Some(40),
        };
        assert_eq!(v.check(100, 0), Ok(()));
        assert_eq!(v.check(110, 10), Ok(()));
        assert_eq!(v.check(111, 10), Err(Reason::Expired));
        assert_eq!(v.check(45, 0), Err(Reason::NotYetValid));
        assert_eq!(v.check(45, 5), Ok(()));
        let issued_later = Validity {
            issued_at: Some(40),
            not_before: None,
            ..v
        };
        assert_eq!(issued_later.check(10, 30), Ok(()));
        assert_eq!(issued_later.check(9, 30), Err(Reason::IssuedInFuture));
    }

    #[test]
    fn a_token_differing_in_one_byte_misses() {
        let mut cache = VerifiedTokens::new(10);
        insert(&mut cache, "header.claims.signature", 100, 0);
        assert!(hit(&mut cache, "header.claims.signature", 1));
        assert!(!hit(&mut cache, "header.claims.signaturf", 1));
        assert!(!hit(&mut cache, "header.claimz.signature", 1));
        assert!(!hit(&mut cache, "header.claims.signature.", 1));
    }

    #[test]
    fn bounded_evicting_expired_first_then_oldest() {
        let mut cache = VerifiedTokens::new(10);
        for i in 0..9 {
            insert(&mut cache, &format!("live{i}"), 1000, 0);
        }
        insert(&mut cache, "short", 5, 0);
        assert_eq!(cache.len(), 10);
        // Full at t=10: the expired token makes room; the live ones stay.
        insert(&mut cache, "new", 1000, 10);
        assert!(!hit(&mut cache, "short", 1));
        assert!(hit(&mut cache, "live0", 10));
        assert!(hit(&mut cache, "new", 10));
        // Full again, nothing expired: the oldest goes.
        insert(&mut cache, "newer", 1000, 10);
        assert!(!hit(&mut cache, "live0", 10));
        assert!(hit(&mut cache, "live1", 10));
        assert!(hit(&mut cache, "newer", 10));
        for i in 0..100 {
            insert(&mut cache, &format!("more{i}"), 1000, 10);
            assert!(cache.len() <= 10);
        }
        assert!(hit(&mut cache, "more99", 10));
        assert!(cache.order.len() <= 20, "stale queue slots are compacted");
    }

    #[test]
    fn capacity_zero_disables_the_cache() {
        let mut cache = VerifiedTokens::new(0);
        insert(&mut cache, "t", 100, 0);
        assert!(!hit(&mut cache, "t", 1));
    }

    #[test]
    fn retain_keys_drops_tokens_of_removed_keys() {
        let mut cache = VerifiedTokens::new(10);
        cache.insert(
            digest("a"),
            verified("a", 100),
            validity(100),
            [1; 32],
            0,
            0,
        );
        cache.insert(
            digest("b"),
            verified("b", 100),
            validity(100),
            [2; 32],
            0,
            0,
        );
        cache.retain_keys(|k| k == &[2; 32]);
        assert!(!hit(&mut cache, "a", 1));
        assert!(hit(&mut cache, "b", 1));
    }
}
