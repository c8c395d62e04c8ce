//! Bearer tokens for the suite: good ones from the issuer the gateways
//! trust, and the usual forgeries (expired, wrong audience, signed by a key
//! the issuer never published, garbage).
//!
//! The issuer is a small HTTP server of ours publishing the discovery
//! document and the key set of `tests/data/jwt/rsa-a` (the test-only keys
//! the auth unit tests use); `rsa-attacker` signs the forgeries
//! (`tests/support/issuer.rs`, shared with the benches). Tokens are signed
//! with `jwt-compact`, the library the gateway verifies with; the `pyjwt`
//! module checks interoperability with an independent one.

use serde_json::{json, Value};
use tokio::net::TcpListener;

pub use crate::issuer_support::{
    header, issuer_documents, mint, serve_documents, unix_now, Signer,
};

/// `JWT_AUDIENCE` of the shared stack.
pub const AUDIENCE: &str = "conformance-client";

/// A running issuer: discovery document and key set over HTTP.
pub struct Issuer {
    pub url: String,
}

impl Issuer {
    pub async fn spawn() -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind issuer");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        serve_documents(listener, issuer_documents(&url));
        Issuer { url }
    }
}

/// Cognito-shaped ID token claims for `sub`, valid for an hour.
pub fn id_claims(sub: &str) -> Value {
    id_claims_of(super::stack::issuer_url(), sub)
}

/// The same, for the issuer at `issuer_url`.
pub fn id_claims_of(issuer_url: &str, sub: &str) -> Value {
    let now = unix_now();
    json!({
        "sub": sub,
        "iss": issuer_url,
        "aud": AUDIENCE,
        "token_use": "id",
        "cognito:username": sub,
        "auth_time": now - 5,
        "iat": now - 5,
        "exp": now + 3600,
    })
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
