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

/// A valid ID token for `sub` in the Cognito groups `groups`.
pub fn token_in_groups(sub: &str, groups: &[&str]) -> String {
    let mut claims = id_claims(sub);
    claims["cognito:groups"] = json!(groups);
    mint(Signer::Issuer, &header(), &claims)
}

/// The `sub` of a token (its payload, unverified).
pub fn subject_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a compact JWS");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    let claims: Value = serde_json::from_slice(&json).expect("JSON claims");
    claims["sub"].as_str().expect("a sub").to_owned()
}

/// The session id the agent named `agent` gets for the client's `session`
/// sent with `token`, as `docs/interface.md` derives it ("Agents and
/// sessions"), written here again from that text: the lowercase hex
/// SHA-256 of `agent-edge session v1`, then each of sub, agent name and
/// client id as its length (4 bytes, big-endian) and bytes.
pub fn origin_session(token: &str, agent: &str, session: &str) -> String {
    use sha2::Digest as _;
    let mut input = b"agent-edge session v1".to_vec();
    for part in [subject_of(token).as_str(), agent, session] {
        input.extend_from_slice(&(part.len() as u32).to_be_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    hex::encode(sha2::Sha256::digest(&input))
}
