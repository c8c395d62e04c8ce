//! JWT verification speed (issue 3, "Benchmarks"): RS256 (2048-bit) through
//! the authenticator without and with the verified-token cache, ES256
//! without, and the `jsonwebtoken` crate (ring) verifying the same RS256
//! token with the same claim checks. Targets: a cache hit under 2 µs; uncached
//! RS256 within 2x of `jsonwebtoken`.
//!
//! Natively the authenticator checks RSA signatures with `ring`
//! (`src/auth/rsa_key.rs`); the Worker uses `jwt-compact`'s `rsa` crate
//! backend. `ring_rs256_signature_only` and `rsa_crate_rs256_signature_only`
//! isolate those two signature checks (parse, verify, claims to JSON) from our
//! policy around them.
//!
//! Run: `cargo bench --bench jwt -- --warm-up-time 1 --measurement-time 3`.

// Only the core may not read the clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use agent_edge::auth::{Authenticator, Check};
use agent_edge::config::{JwtConfig, TokenUse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use jwt_compact::alg::{Es256, Rsa, RsaPrivateKey, RsaPublicKey};
use jwt_compact::{Algorithm, AlgorithmExt as _, UntrustedToken};
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};

#[path = "../tests/support/jws.rs"]
mod jws;
use jws::{jwk, mint, public, P256, RSA_A};

const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Bench";
const CLIENT: &str = "bench-client";

/// A Cognito-shaped ID token.
fn claims(now: u64) -> Value {
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "email_verified": true,
        "iss": ISSUER,
        "cognito:username": "alice",
        "origin_jti": "11111111-2222-3333-4444-555555555555",
        "aud": CLIENT,
        "event_id": "66666666-7777-8888-9999-000000000000",
        "token_use": "id",
        "auth_time": now,
        "exp": now + 3600,
        "iat": now,
        "jti": "abcdef01-2345-6789-abcd-ef0123456789",
        "email": "alice@example.com"
    })
}

fn authenticator(now: u64, cache_capacity: usize) -> Authenticator {
    let config = JwtConfig {
        issuer: ISSUER.to_owned(),
        audiences: vec![CLIENT.to_owned()],
        jwks_url: Some(format!("{ISSUER}/.well-known/jwks.json")),
        token_use: TokenUse::Any,
        leeway_seconds: 60,
        user_id_claim: Some("cognito:username".to_owned()),
        gate_claims: Vec::new(),
        require_subject: false,
    };
    let mut auth = Authenticator::new(config).with_token_cache_capacity(cache_capacity);
    let jwks = json!({ "keys": [public(RSA_A), public(P256)] }).to_string();
    auth.import_key_set(jwks.into(), now, 3600).unwrap();
    auth
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let rsa_key = RsaPrivateKey::try_from(&jwk(RSA_A)).unwrap();
    let p256_key: <Es256 as Algorithm>::SigningKey = TryFrom::try_from(&jwk(P256)).unwrap();
    let rs256 = mint(
        &Rsa::rs256(),
        &rsa_key,
        &json!({"alg": "RS256", "kid": "rsa-a"}),
        &claims(now),
    );
    let es256 = mint(
        &Es256,
        &p256_key,
        &json!({"alg": "ES256", "kid": "p256"}),
        &claims(now),
    );
    let rs256_header = format!("Bearer {rs256}");
    let es256_header = format!("Bearer {es256}");

    let verified = |auth: &mut Authenticator, header: &str| {
        matches!(auth.check(Some(header), now), Check::Verified(_))
    };

    let mut uncached = authenticator(now, 0);
    assert!(verified(&mut uncached, &rs256_header));
    assert!(verified(&mut uncached, &es256_header));
    c.bench_function("rs256_uncached", |b| {
        b.iter(|| verified(&mut uncached, black_box(&rs256_header)))
    });

    let mut cached = authenticator(now, 10_000);
    assert!(verified(&mut cached, &rs256_header));
    c.bench_function("rs256_cache_hit", |b| {
        b.iter(|| verified(&mut cached, black_box(&rs256_header)))
    });
    assert!(cached.stats().cache_hits > 0 && cached.stats().signature_checks == 1);

    // The floor of a cache hit: hashing the token for the cache key.
    c.bench_function("sha256_of_the_token", |b| {
        b.iter(|| <sha2::Sha256 as sha2::Digest>::digest(black_box(rs256.as_bytes())))
    });

    c.bench_function("es256_uncached", |b| {
        b.iter(|| verified(&mut uncached, black_box(&es256_header)))
    });

    let public_key = RsaPublicKey::try_from(&jwk(RSA_A)).unwrap();
    let (signed_data, signature) = rs256.rsplit_once('.').unwrap();
    let ring_key = ring::signature::RsaPublicKeyComponents {
        n: public_key.n().to_bytes_be(),
        e: public_key.e().to_bytes_be(),
    };
    let signature = B64.decode(signature).unwrap();
    assert!(ring_key
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            signed_data.as_bytes(),
            &signature
        )
        .is_ok());
    c.bench_function("ring_rs256_signature_only", |b| {
        b.iter(|| {
            let jwt = black_box(&rs256);
            let token = UntrustedToken::new(jwt).unwrap();
            let (signed_data, _) = jwt.rsplit_once('.').unwrap();
            ring_key
                .verify(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    signed_data.as_bytes(),
                    token.signature_bytes(),
                )
                .is_ok()
                && token.deserialize_claims_unchecked::<Value>().is_ok()
        })
    });
    c.bench_function("rsa_crate_rs256_signature_only", |b| {
        b.iter(|| {
            let token = UntrustedToken::new(black_box(&rs256)).unwrap();
            Rsa::rs256()
                .validator::<Value>(&public_key)
                .validate(&token)
                .is_ok()
        })
    });

    let public_jwk = public(RSA_A);
    let decoding_key = jsonwebtoken::DecodingKey::from_rsa_components(
        public_jwk["n"].as_str().unwrap(),
        public_jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[CLIENT]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = 60;
    assert!(jsonwebtoken::decode::<Value>(&rs256, &decoding_key, &validation).is_ok());
    c.bench_function("jsonwebtoken_rs256", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Value>(black_box(&rs256), &decoding_key, &validation).is_ok()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
