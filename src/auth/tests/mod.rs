//! Authenticator tests, and the helpers they share: tokens minted with
//! `jwt-compact` and the test-only keys of `tests/data/jwt/`, a fake issuer
//! answering fetches, the adapter's check loop, and a fake clock.

mod accepted;
mod cached_tokens;
mod key_set;
mod platform_verdicts;
mod rejected;

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Rsa, RsaPrivateKey};
use jwt_compact::{Algorithm, AlgorithmSignature as _};
use serde_json::{json, Value};

use super::test_jws::{self, jwk, public, ED25519, P256, RSA_A, RSA_ATTACKER, RSA_B};
use super::*;
use crate::config::TokenUse;

const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Test";
const JWKS_URL: &str =
    "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Test/.well-known/jwks.json";
const CLIENT: &str = "client-a";
const NOW: u64 = 1_700_000_000;

// ---- keys and token minting ----

struct Keys {
    rsa_a: RsaPrivateKey,
    rsa_b: RsaPrivateKey,
    attacker: RsaPrivateKey,
    p256: <Es256 as Algorithm>::SigningKey,
    ed25519: <Ed25519 as Algorithm>::SigningKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa_a: RsaPrivateKey::try_from(&jwk(RSA_A)).unwrap(),
        rsa_b: RsaPrivateKey::try_from(&jwk(RSA_B)).unwrap(),
        attacker: RsaPrivateKey::try_from(&jwk(RSA_ATTACKER)).unwrap(),
        p256: TryFrom::try_from(&jwk(P256)).unwrap(),
        ed25519: TryFrom::try_from(&jwk(ED25519)).unwrap(),
    })
}

enum Signer {
    Rsa(Rsa, &'static RsaPrivateKey),
    Es256,
    Ed25519,
    Hs256(Vec<u8>),
    Unsigned,
}

/// A compact JWS over exactly this header and these claims.
fn mint(signer: Signer, header: Value, claims: &Value) -> String {
    let k = keys();
    match signer {
        Signer::Rsa(alg, key) => test_jws::mint(&alg, key, &header, claims),
        Signer::Es256 => test_jws::mint(&Es256, &k.p256, &header, claims),
        Signer::Ed25519 => test_jws::mint(&Ed25519, &k.ed25519, &header, claims),
        Signer::Hs256(secret) => test_jws::mint(&Hs256, &Hs256Key::new(secret), &header, claims),
        Signer::Unsigned => test_jws::mint_with(&header, claims, |_| Vec::new()),
    }
}

/// A Cognito-shaped ID token, valid at `NOW`.
fn id_claims() -> Value {
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "email_verified": true,
        "iss": ISSUER,
        "cognito:username": "alice",
        "origin_jti": "11111111-2222-3333-4444-555555555555",
        "aud": CLIENT,
        "event_id": "66666666-7777-8888-9999-000000000000",
        "token_use": "id",
        "auth_time": NOW - 10,
        "exp": NOW + 3600,
        "iat": NOW - 10,
        "jti": "abcdef01-2345-6789-abcd-ef0123456789",
        "email": "alice@example.com"
    })
}

/// A Cognito-shaped access token (no `aud`; `client_id`), valid at `NOW`.
fn access_claims() -> Value {
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "iss": ISSUER,
        "client_id": CLIENT,
        "origin_jti": "11111111-2222-3333-4444-555555555555",
        "event_id": "66666666-7777-8888-9999-000000000000",
        "token_use": "access",
        "scope": "openid email",
        "auth_time": NOW - 10,
        "exp": NOW + 3600,
        "iat": NOW - 10,
        "jti": "abcdef01-2345-6789-abcd-ef0123456789",
        "username": "alice"
    })
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn rs256_header(kid: &str) -> Value {
    json!({"alg": "RS256", "kid": kid})
}

/// An RS256 token by `key` under the `kid` given.
fn rs256(key: &'static RsaPrivateKey, kid: &str, claims: &Value) -> String {
    mint(Signer::Rsa(Rsa::rs256(), key), rs256_header(kid), claims)
}

fn rs256_a(claims: &Value) -> String {
    rs256(&keys().rsa_a, "rsa-a", claims)
}

/// Signed by a key the issuer never published, under the `kid` of key A.
fn forged_rs256_a() -> String {
    rs256(&keys().attacker, "rsa-a", &id_claims())
}

fn rs256_b(claims: &Value) -> String {
    rs256(&keys().rsa_b, "rsa-b", claims)
}

// ---- a fake issuer and the adapter's fetch loop ----

fn config() -> JwtConfig {
    JwtConfig {
        issuer: ISSUER.to_owned(),
        audiences: vec![CLIENT.to_owned(), "client-b".to_owned()],
        jwks_url: None,
        token_use: TokenUse::Any,
        leeway_seconds: 60,
        user_id_claim: Some("cognito:username".to_owned()),
        gate_claims: Vec::new(),
        require_subject: false,
    }
}

struct FakeIssuer {
    keys: Vec<Value>,
    reachable: bool,
    status: u16,
    cache_control: Option<String>,
    discovery_issuer: String,
    /// Served instead of the key set, when set.
    raw_key_set: Option<&'static str>,
    fetches: Vec<FetchPurpose>,
}

impl FakeIssuer {
    fn answer(&mut self, request: &FetchRequest) -> Result<FetchResponse, String> {
        self.fetches.push(request.purpose);
        if !self.reachable {
            return Err("connection refused".to_owned());
        }
        let body = match request.purpose {
            FetchPurpose::Discovery => {
                assert_eq!(
                    request.url,
                    format!("{ISSUER}/.well-known/openid-configuration")
                );
                json!({"issuer": self.discovery_issuer, "jwks_uri": JWKS_URL})
            }
            FetchPurpose::KeySet => {
                assert_eq!(request.url, JWKS_URL);
                json!({ "keys": self.keys })
            }
        };
        let body = match (request.purpose, self.raw_key_set) {
            (FetchPurpose::KeySet, Some(raw)) => raw.to_owned(),
            _ => body.to_string(),
        };
        Ok(FetchResponse {
            status: self.status,
            cache_control: self.cache_control.clone(),
            body: body.into(),
        })
    }

    fn key_set_fetches(&self) -> usize {
        self.fetches
            .iter()
            .filter(|p| **p == FetchPurpose::KeySet)
            .count()
    }
}

struct Harness {
    auth: Authenticator,
    issuer: FakeIssuer,
    logged: Vec<String>,
    /// The platform's RSA check, after `use_platform_rsa`.
    platform_rsa: Option<fn(&SignatureCheck) -> Option<bool>>,
    platform_checks: usize,
}

impl Harness {
    fn new(config: JwtConfig, keys: &[&str]) -> Self {
        Harness {
            auth: Authenticator::new(config),
            issuer: FakeIssuer {
                keys: keys.iter().map(|k| public(k)).collect(),
                reachable: true,
                status: 200,
                cache_control: Some("public, max-age=3600".to_owned()),
                discovery_issuer: ISSUER.to_owned(),
                raw_key_set: None,
                fetches: Vec::new(),
            },
            logged: Vec::new(),
            platform_rsa: None,
            platform_checks: 0,
        }
    }

    /// RSA signatures checked by `verifier`, as WebCrypto does on Workers.
    fn with_platform_rsa(mut self, verifier: fn(&SignatureCheck) -> Option<bool>) -> Self {
        self.auth.use_platform_rsa();
        self.platform_rsa = Some(verifier);
        self
    }

    fn with_keys(keys: &[&str]) -> Self {
        Harness::new(config(), keys)
    }

    /// A stale set's refresh, run to its end as a background task would
    /// (before the check, as if the issuer answered at once).
    fn background_refresh(&mut self, now: u64) {
        while let Some(request) = self.auth.take_background_refresh(now) {
            let response = self.issuer.answer(&request);
            self.logged
                .extend(self.auth.on_fetched(&request, response, now));
        }
    }

    /// The adapter's loop, as the gateway drives it.
    fn check_header(
        &mut self,
        authorization: Option<&str>,
        now: u64,
    ) -> Result<Verified, GatewayError> {
        self.background_refresh(now);
        for _ in 0..4 {
            match self.auth.check(authorization, now) {
                Check::Verified(v) => return Ok(v),
                Check::Rejected(e) => return Err(e),
                Check::Fetch(request) => {
                    let response = self.issuer.answer(&request);
                    self.logged
                        .extend(self.auth.on_fetched(&request, response, now));
                }
                Check::VerifySignature(check) => {
                    let verifier = self.platform_rsa.expect("no platform RSA configured");
                    self.platform_checks += 1;
                    self.auth.on_signature(&check, verifier(&check));
                }
            }
        }
        panic!("the check loop did not end after 3 fetches or signature checks");
    }

    fn check(&mut self, token: &str, now: u64) -> Result<Verified, GatewayError> {
        self.check_header(Some(&format!("Bearer {token}")), now)
    }

    /// The rejection reason for `token` (panics if accepted).
    fn reason(&mut self, token: &str, now: u64) -> String {
        let error = self.check(token, now).expect_err("token must be rejected");
        assert_token_not_echoed(&error, token);
        error.detail.unwrap()
    }
}

/// A rejection is a 401 with an RFC 6750 challenge, and says nothing of the token.
fn assert_token_not_echoed(error: &GatewayError, token: &str) {
    let challenge = error
        .headers
        .iter()
        .find(|(name, _)| name == http::header::WWW_AUTHENTICATE)
        .map(|(_, v)| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = String::from_utf8(error.body().to_vec()).unwrap();
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(
            !challenge.contains(part) && !body.contains(part),
            "{error:?}"
        );
    }
}

fn expect_invalid_token(harness: &mut Harness, token: &str, reason: Reason) {
    let error = harness.check(token, NOW).expect_err("must be rejected");
    assert_token_not_echoed(&error, token);
    assert_eq!(error.detail.as_deref(), Some(reason.as_str()), "{error:?}");
    assert_eq!(error.status, http::StatusCode::UNAUTHORIZED);
    assert_eq!(error.code.as_str(), "invalid_token");
    let challenge = &error
        .headers
        .iter()
        .find(|(n, _)| n == http::header::WWW_AUTHENTICATE)
        .unwrap()
        .1;
    assert_eq!(
        challenge.to_str().unwrap(),
        format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            reason.description()
        )
    );
}

// ---- altering a signed token ----

/// Flips one bit of the signature.
fn flip_signature_bit(token: &str) -> String {
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = B64.decode(signature).unwrap();
    bytes[17] ^= 0x04;
    format!("{input}.{}", B64.encode(&bytes))
}

/// Swaps the claims for altered ones, keeping header and signature.
fn replace_claims(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let altered = with(id_claims(), json!({"sub": "admin"}));
    format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(altered.to_string()),
        parts[2]
    )
}
