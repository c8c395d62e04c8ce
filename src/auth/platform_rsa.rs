//! RSA signatures checked by the platform instead of in-process: on
//! Cloudflare Workers, WebCrypto (`crypto.subtle.verify`) runs in the
//! runtime's native code and checks an RS256 signature in a few
//! microseconds, where the pure-Rust `rsa` crate compiled to wasm takes
//! about a millisecond of the request's CPU budget (BENCHMARKS.md,
//! "Cloudflare Worker vs native").
//!
//! WebCrypto is asynchronous, so the check is an instruction, like a key
//! set fetch: [`super::Authenticator::check`] answers
//! [`super::Check::VerifySignature`] with a [`SignatureCheck`] (the key, the
//! JWS signing input and the signature); the adapter verifies it and hands
//! the verdict to [`super::Authenticator::on_signature`]; the next `check`
//! of the same token with the same key takes the verdict and goes on to the
//! claims exactly as after an in-process check. A verdict is keyed by the
//! token's digest and the key's thumbprint, so it never applies to another
//! token, nor to the same token once its key was replaced. An adapter that
//! cannot verify (`None`) makes the next `check` verify in-process.
//!
//! Only with [`super::Authenticator::use_platform_rsa`]; native adapters
//! verify in-process with `ring`, which is as fast.

use std::collections::VecDeque;

use super::algorithm::JwsAlgorithm;

/// An RSA signature for the platform to check (RFC 7518 §3.3 and §3.5:
/// PKCS#1 v1.5 or PSS with a salt as long as the digest).
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    pub alg: JwsAlgorithm,
    /// RFC 7638 thumbprint of the key: identifies it, for instance to reuse
    /// the platform's imported key.
    pub key_thumbprint: [u8; 32],
    /// The key's modulus and public exponent, big-endian.
    pub modulus: Vec<u8>,
    pub exponent: Vec<u8>,
    /// The JWS signing input: `BASE64URL(header) "." BASE64URL(payload)`.
    pub signed_data: Vec<u8>,
    pub signature: Vec<u8>,
    pub(crate) token_digest: [u8; 32],
}

impl std::fmt::Debug for SignatureCheck {
    // The signing input holds the token's claims: not for logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureCheck")
            .field("alg", &self.alg)
            .field("modulus_bits", &(self.modulus.len() * 8))
            .finish_non_exhaustive()
    }
}

/// What the platform said of a [`SignatureCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Valid,
    Invalid,
    /// The platform could not check it: verify in-process.
    InProcess,
}

/// Verdicts waiting for the `check` that asked for them. Bounded: a request
/// that never comes back (its client left) must not leak.
#[derive(Debug, Default)]
pub(crate) struct Verdicts {
    pending: VecDeque<([u8; 32], [u8; 32], Verdict)>,
}

const MAX_PENDING_VERDICTS: usize = 256;

impl Verdicts {
    pub(crate) fn insert(&mut self, check: &SignatureCheck, verdict: Verdict) {
        if self.pending.len() >= MAX_PENDING_VERDICTS {
            self.pending.pop_front();
        }
        self.pending
            .push_back((check.token_digest, check.key_thumbprint, verdict));
    }

    /// Takes the verdict for this token and key, if there is one.
    pub(crate) fn take(&mut self, token_digest: &[u8; 32], key: &[u8; 32]) -> Option<Verdict> {
        let at = self
            .pending
            .iter()
            .position(|(digest, thumbprint, _)| digest == token_digest && thumbprint == key)?;
        self.pending.remove(at).map(|(_, _, verdict)| verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(digest: u8, key: u8) -> SignatureCheck {
        SignatureCheck {
            alg: JwsAlgorithm::Rs256,
            key_thumbprint: [key; 32],
            modulus: vec![1; 256],
            exponent: vec![1, 0, 1],
            signed_data: b"eyJ.eyJ".to_vec(),
            signature: vec![0; 256],
            token_digest: [digest; 32],
        }
    }

    #[test]
    fn a_verdict_is_taken_once_and_only_for_its_token_and_key() {
        let mut verdicts = Verdicts::default();
        verdicts.insert(&check(1, 7), Verdict::Valid);
        assert_eq!(verdicts.take(&[2; 32], &[7; 32]), None, "another token");
        assert_eq!(verdicts.take(&[1; 32], &[8; 32]), None, "another key");
        assert_eq!(verdicts.take(&[1; 32], &[7; 32]), Some(Verdict::Valid));
        assert_eq!(verdicts.take(&[1; 32], &[7; 32]), None, "taken");
    }

    #[test]
    fn pending_verdicts_are_bounded() {
        let mut verdicts = Verdicts::default();
        for i in 0..=MAX_PENDING_VERDICTS {
            let mut c = check(0, 0);
            c.token_digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            verdicts.insert(&c, Verdict::Invalid);
        }
        assert_eq!(verdicts.pending.len(), MAX_PENDING_VERDICTS);
        let mut oldest = [0u8; 32];
        oldest[..8].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(verdicts.take(&oldest, &[0; 32]), None, "the oldest went");
    }

    #[test]
    fn debug_shows_no_token_material() {
        let text = format!("{:?}", check(1, 2));
        assert!(!text.contains("eyJ"), "{text}");
    }
}
