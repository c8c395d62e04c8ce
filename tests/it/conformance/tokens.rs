//! Bearer tokens for the suite: good ones from the issuer the gateways
//! trust, and the usual forgeries (expired, wrong audience, signed by a key
//! the issuer never published, garbage).
//!
//! The issuer is the test issuer of `tests/support/issuer.rs` (shared with
//! the benches), publishing `tests/data/jwt/rsa-a` (the test-only keys the
//! auth unit tests use); `rsa-attacker` signs the forgeries. Tokens are
//! signed with `jwt-compact`, the library the gateway verifies with; the
//! `pyjwt` module checks interoperability with an independent one.

use serde_json::{json, Value};

pub use crate::issuer_support::{header, header_of, mint, unix_now, Issuer, Signer};

/// `JWT_AUDIENCE` of the shared stack.
pub const AUDIENCE: &str = "conformance-client";

/// Cognito-shaped ID token claims for `sub`.
pub fn id_claims(sub: &str) -> Value {
    id_claims_of(super::stack::issuer_url(), sub)
}

/// The same, for the issuer at `issuer_url`.
pub fn id_claims_of(issuer_url: &str, sub: &str) -> Value {
    let mut claims = crate::issuer_support::id_claims(issuer_url, AUDIENCE, sub);
    claims["cognito:username"] = json!(sub);
    claims["auth_time"] = claims["iat"].clone();
    claims
}

/// A valid ID token for `sub`.
pub fn token(sub: &str) -> String {
    mint(Signer::Issuer, &header(), &id_claims(sub))
}

/// A valid ID token for `sub` from the issuer at `issuer_url` (usable while
/// the stack is starting).
pub fn token_of(issuer_url: &str, sub: &str) -> String {
    mint(Signer::Issuer, &header(), &id_claims_of(issuer_url, sub))
}
