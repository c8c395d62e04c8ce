//! Test keys and token minting, the one minter of every test and bench
//! (included with `#[path]` by the unit tests, the integration tests and the
//! benches, which cannot import each other): the test-only JWKs of
//! `tests/data/jwt/`, their public halves, and compact JWS tokens over
//! exactly the header and claims given.

#![allow(dead_code)] // Each includer uses part of it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmSignature as _};
use serde_json::Value;

pub const RSA_A: &str = include_str!("../data/jwt/rsa-a.private.jwk.json");
pub const RSA_B: &str = include_str!("../data/jwt/rsa-b.private.jwk.json");
pub const RSA_ATTACKER: &str = include_str!("../data/jwt/rsa-attacker.private.jwk.json");
pub const RSA_WEAK: &str = include_str!("../data/jwt/rsa-weak-1024.private.jwk.json");
pub const P256: &str = include_str!("../data/jwt/p256.private.jwk.json");
pub const ED25519: &str = include_str!("../data/jwt/ed25519.private.jwk.json");

/// The members of a private JWK that its public half leaves out.
const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

/// A JWK as `jwt-compact` reads it (to build a signing key from).
pub fn jwk(text: &str) -> JsonWebKey<'static> {
    serde_json::from_str(text).expect("a JWK")
}

/// The public half of a private test JWK, with its `kid`, `alg` and `use`.
pub fn public(private_jwk: &str) -> Value {
    let mut jwk: Value = serde_json::from_str(private_jwk).expect("JSON");
    let object = jwk.as_object_mut().expect("a JWK object");
    for member in PRIVATE_MEMBERS {
        object.remove(member);
    }
    jwk
}

/// A compact JWS over exactly this header and these claims, signed by
/// `sign` (which may return anything, an empty signature included).
pub fn mint_with(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", B64.encode(signature))
}

/// A compact JWS over exactly this header and these claims, signed with
/// `alg` and `key`.
pub fn mint<A: Algorithm>(alg: &A, key: &A::SigningKey, header: &Value, claims: &Value) -> String {
    mint_with(header, claims, |input| {
        alg.sign(key, input).as_bytes().into_owned()
    })
}
