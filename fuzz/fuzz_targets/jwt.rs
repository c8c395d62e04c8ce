//! Bearer tokens of any bytes: the authenticator never panics and never
//! accepts one (no fuzz input is signed by the issuer's keys), whatever the
//! header, claims and signature parts hold.
#![no_main]

use std::sync::OnceLock;

use agent_edge::auth::{Authenticator, Check};
use agent_edge::config::{AuthConfig, Config, JwtConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const NOW: u64 = 1_800_000_000;

/// The public half of a test JWK.
fn public(jwk: &str) -> Value {
    let jwk: Map<String, Value> = serde_json::from_str(jwk).expect("a JWK");
    let public = ["kty", "kid", "alg", "use", "n", "e", "crv", "x", "y"];
    Value::Object(
        jwk.into_iter()
            .filter(|(k, _)| public.contains(&k.as_str()))
            .collect(),
    )
}

fn setup() -> &'static (JwtConfig, bytes::Bytes) {
    static SETUP: OnceLock<(JwtConfig, bytes::Bytes)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let vars = [
            ("ORIGIN_URL", "http://127.0.0.1:9"),
            ("ORIGIN_AUTH", "none"),
            ("AUTH", "jwt"),
            ("JWT_ISSUER", "https://issuer.example"),
            ("JWT_AUDIENCE", "fuzz"),
        ];
        let config = Config::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect("a valid configuration");
        let AuthConfig::Jwt(jwt) = config.auth else {
            panic!("AUTH=jwt")
        };
        let keys = [
            include_str!("../../tests/data/jwt/rsa-a.private.jwk.json"),
            include_str!("../../tests/data/jwt/p256.private.jwk.json"),
            include_str!("../../tests/data/jwt/ed25519.private.jwk.json"),
        ];
        let set = serde_json::json!({ "keys": keys.map(public) });
        (jwt, set.to_string().into())
    })
}

fuzz_target!(|data: &[u8]| {
    let (config, key_set) = setup();
    let mut auth = Authenticator::new(config.clone()).with_token_cache_capacity(0);
    auth.import_key_set(key_set.clone(), NOW, 3600)
        .expect("the key set");
    let header = format!("Bearer {}", String::from_utf8_lossy(data));
    match auth.check(Some(&header), NOW + 1) {
        Check::Verified(verified) => panic!("a fuzz input was accepted: {verified:?}"),
        Check::Rejected(_) | Check::Fetch(_) | Check::VerifySignature(_) => {}
    }
});
