//! RSA signature checks (RS256/384/512, PS256/384/512; RFC 7518 §3.3,
//! §3.5): with `ring` on native targets, with `jwt-compact`'s pure-Rust
//! backend (the `rsa` crate) on wasm32.
//!
//! `ring` natively for speed (its Montgomery multiplication is assembly;
//! figures in BENCHMARKS.md, "JWT verification"). Not on the Worker: `ring`
//! has no wasm32 assembly and needs clang to build for it, so the Worker
//! keeps the pure-Rust path as the fallback behind WebCrypto
//! (`super::platform_rsa`).
//!
//! Both plug into `jwt-compact` as an [`Algorithm`], so tokens go through the
//! same `Validator` and a JWK is accepted or skipped by the same rule (the
//! `rsa` crate's, all of which `ring` accepts); PSS salts are the digest
//! length in both. The unit tests check that both give the same verdicts.

use jwt_compact::alg::{Rsa, RsaPublicKey};
use jwt_compact::jwk::JsonWebKey;

use super::algorithm::JwsAlgorithm;

/// An RSA public key, decoded for this target's backend.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type RsaKey = ring::signature::RsaPublicKeyComponents<Vec<u8>>;
#[cfg(target_arch = "wasm32")]
pub(crate) type RsaKey = RsaPublicKey;

/// This target's RSA [`Algorithm`] (its verifying key is an [`RsaKey`]).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type RsaAlgorithm = RingRsa;
#[cfg(target_arch = "wasm32")]
pub(crate) type RsaAlgorithm = Rsa;

/// Decodes an RSA JWK; `Err` when the `rsa` crate refuses the key.
pub(crate) fn decode(jwk: &JsonWebKey<'_>) -> Result<RsaKey, &'static str> {
    let key = RsaPublicKey::try_from(jwk).map_err(|_| "malformed RSA key")?;
    #[cfg(not(target_arch = "wasm32"))]
    let key = ring_key(&key);
    Ok(key)
}

/// The key's modulus and public exponent, big-endian.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn components(key: &RsaKey) -> (Vec<u8>, Vec<u8>) {
    (key.n.clone(), key.e.clone())
}
/// The key's modulus and public exponent, big-endian.
#[cfg(target_arch = "wasm32")]
pub(crate) fn components(key: &RsaKey) -> (Vec<u8>, Vec<u8>) {
    use rsa::traits::PublicKeyParts as _;
    (key.n().to_bytes_be(), key.e().to_bytes_be())
}

/// The RSA algorithm for `alg` on this target; `None` for non-RSA ones.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn algorithm(alg: JwsAlgorithm) -> Option<RsaAlgorithm> {
    RingRsa::new(alg)
}
/// The RSA algorithm for `alg` on this target; `None` for non-RSA ones.
#[cfg(target_arch = "wasm32")]
pub(crate) fn algorithm(alg: JwsAlgorithm) -> Option<RsaAlgorithm> {
    pure_rust(alg)
}

/// `jwt-compact`'s own RSA algorithm for `alg` (the `rsa` crate).
#[cfg_attr(not(any(test, target_arch = "wasm32")), allow(dead_code))]
fn pure_rust(alg: JwsAlgorithm) -> Option<Rsa> {
    Some(match alg {
        JwsAlgorithm::Rs256 => Rsa::rs256(),
        JwsAlgorithm::Rs384 => Rsa::rs384(),
        JwsAlgorithm::Rs512 => Rsa::rs512(),
        JwsAlgorithm::Ps256 => Rsa::ps256(),
        JwsAlgorithm::Ps384 => Rsa::ps384(),
        JwsAlgorithm::Ps512 => Rsa::ps512(),
        JwsAlgorithm::Es256 | JwsAlgorithm::EdDsa => return None,
    })
}

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) use ring_rsa::ring_parameters;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use ring_rsa::{ring_key, RingRsa};

#[cfg(not(target_arch = "wasm32"))]
mod ring_rsa {
    use super::*;
    use std::borrow::Cow;

    use jwt_compact::alg::RsaSignature;
    use jwt_compact::{Algorithm, AlgorithmSignature as _};
    use ring::signature::{self, RsaParameters, RsaPublicKeyComponents};
    use rsa::traits::PublicKeyParts as _;

    /// `ring`'s components of a key the `rsa` crate accepted (big-endian,
    /// without the leading zero bytes `ring` refuses and some issuers send).
    pub(crate) fn ring_key(key: &RsaPublicKey) -> RsaKey {
        RsaPublicKeyComponents {
            n: key.n().to_bytes_be(),
            e: key.e().to_bytes_be(),
        }
    }

    /// A verify-only `jwt-compact` algorithm backed by `ring`.
    pub(crate) struct RingRsa {
        alg: JwsAlgorithm,
        parameters: &'static RsaParameters,
    }

    impl RingRsa {
        pub(crate) fn new(alg: JwsAlgorithm) -> Option<Self> {
            let parameters = ring_parameters(alg)?;
            Some(RingRsa { alg, parameters })
        }
    }

    /// `ring`'s verification parameters for an RSA JWS algorithm.
    pub(crate) fn ring_parameters(alg: JwsAlgorithm) -> Option<&'static RsaParameters> {
        Some(match alg {
            JwsAlgorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            JwsAlgorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            JwsAlgorithm::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            JwsAlgorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            JwsAlgorithm::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            JwsAlgorithm::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            JwsAlgorithm::Es256 | JwsAlgorithm::EdDsa => return None,
        })
    }

    impl Algorithm for RingRsa {
        /// Verification only: no signing key can exist.
        type SigningKey = std::convert::Infallible;
        type VerifyingKey = RsaKey;
        type Signature = RsaSignature;

        fn name(&self) -> Cow<'static, str> {
            Cow::Borrowed(self.alg.name())
        }

        fn sign(&self, signing_key: &Self::SigningKey, _message: &[u8]) -> Self::Signature {
            match *signing_key {}
        }

        fn verify_signature(
            &self,
            signature: &Self::Signature,
            verifying_key: &Self::VerifyingKey,
            message: &[u8],
        ) -> bool {
            verifying_key
                .verify(self.parameters, message, &signature.as_bytes())
                .is_ok()
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::auth::test_jws::{self, public, RSA_A, RSA_ATTACKER};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    use jwt_compact::alg::RsaPrivateKey;
    use jwt_compact::{Algorithm, AlgorithmExt as _, UntrustedToken};
    use serde_json::{json, Value};

    const RSA: [JwsAlgorithm; 6] = JwsAlgorithm::RSA;

    fn jwk(value: &Value) -> JsonWebKey<'static> {
        serde_json::from_value(value.clone()).unwrap()
    }

    fn private_key(private_jwk: &str) -> RsaPrivateKey {
        let value: Value = serde_json::from_str(private_jwk).unwrap();
        RsaPrivateKey::try_from(&jwk(&value)).unwrap()
    }

    fn mint(alg: JwsAlgorithm, key: &RsaPrivateKey, claims: &Value) -> String {
        let header = json!({"alg": alg.name(), "kid": "rsa-a"});
        test_jws::mint(&pure_rust(alg).unwrap(), key, &header, claims)
    }

    /// Flips one bit of the signature's first byte.
    fn flip_signature_bit(token: &str) -> String {
        let (input, signature) = token.rsplit_once('.').unwrap();
        let mut signature = B64.decode(signature).unwrap();
        signature[0] ^= 1;
        format!("{input}.{}", B64.encode(signature))
    }

    /// Swaps the claims for other ones, keeping header and signature.
    fn replace_claims(token: &str, claims: &Value) -> String {
        let parts: Vec<&str> = token.split('.').collect();
        let claims = B64.encode(claims.to_string());
        format!("{}.{claims}.{}", parts[0], parts[2])
    }

    /// The verdicts of the `ring` and the `rsa` crate backends.
    fn verdicts(alg: JwsAlgorithm, public_jwk: &Value, token: &str) -> (bool, bool) {
        let token = UntrustedToken::new(token).unwrap();
        let with_ring = RingRsa::new(alg)
            .unwrap()
            .validator::<Value>(&decode(&jwk(public_jwk)).unwrap())
            .validate(&token)
            .is_ok();
        let rsa_key = RsaPublicKey::try_from(&jwk(public_jwk)).unwrap();
        let with_rsa = pure_rust(alg)
            .unwrap()
            .validator::<Value>(&rsa_key)
            .validate(&token)
            .is_ok();
        (with_ring, with_rsa)
    }

    #[test]
    fn ring_and_the_rsa_crate_give_the_same_verdicts() {
        let key = private_key(RSA_A);
        let attacker = private_key(RSA_ATTACKER);
        let public_jwk = public(RSA_A);
        let claims = json!({"sub": "alice", "exp": 4_000_000_000u64});
        let forged_claims = json!({"sub": "mallory", "exp": 4_000_000_000u64});

        for signed_with in RSA {
            let good = mint(signed_with, &key, &claims);
            let tokens = [
                ("good", good.clone()),
                ("one signature bit flipped", flip_signature_bit(&good)),
                ("claims replaced", replace_claims(&good, &forged_claims)),
                (
                    "signed by another key",
                    mint(signed_with, &attacker, &claims),
                ),
            ];
            for checked_as in RSA {
                for (what, token) in &tokens {
                    let expected = checked_as == signed_with && *what == "good";
                    let (with_ring, with_rsa) = verdicts(checked_as, &public_jwk, token);
                    assert_eq!(
                        (with_ring, with_rsa),
                        (expected, expected),
                        "{what} {signed_with:?} token checked as {checked_as:?}: (ring, rsa)"
                    );
                }
            }
        }
    }

    #[test]
    fn a_token_relabelled_with_the_other_padding_fails_in_both() {
        // A PKCS#1 v1.5 signature under a PS256 header, and the reverse.
        let key = private_key(RSA_A);
        let claims = json!({"sub": "alice"});
        for (signed_as, labelled) in [
            (JwsAlgorithm::Rs256, JwsAlgorithm::Ps256),
            (JwsAlgorithm::Ps256, JwsAlgorithm::Rs256),
        ] {
            let token = mint(signed_as, &key, &claims);
            let (input, signature) = token.rsplit_once('.').unwrap();
            let (_, payload) = input.split_once('.').unwrap();
            let header = B64.encode(json!({"alg": labelled.name()}).to_string());
            let relabelled = format!("{header}.{payload}.{signature}");
            assert_eq!(
                verdicts(labelled, &public(RSA_A), &relabelled),
                (false, false)
            );
        }
    }

    #[test]
    fn a_modulus_with_a_leading_zero_byte_verifies_in_both() {
        // RFC 7518 §6.3.1.1 forbids the zero, but some issuers send it, and
        // the `rsa` crate (hence the Worker) accepts it.
        let mut padded = public(RSA_A);
        let n = B64.decode(padded["n"].as_str().unwrap()).unwrap();
        padded["n"] = json!(B64.encode([&[0u8][..], &n].concat()));
        let token = mint(JwsAlgorithm::Rs256, &private_key(RSA_A), &json!({}));
        assert_eq!(verdicts(JwsAlgorithm::Rs256, &padded, &token), (true, true));
    }

    #[test]
    fn the_backend_names_the_algorithm_it_verifies() {
        for alg in RSA {
            assert_eq!(algorithm(alg).unwrap().name(), alg.name());
        }
        assert!(algorithm(JwsAlgorithm::Es256).is_none());
        assert!(algorithm(JwsAlgorithm::EdDsa).is_none());
    }
}
