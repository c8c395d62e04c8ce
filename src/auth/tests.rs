//! Authenticator tests: tokens minted here with `jwt-compact` and the
//! test-only keys of `tests/data/jwt/`, a fake issuer answering fetches, and a
//! fake clock.

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

// ---- accepted tokens ----

#[test]
fn cognito_id_token_is_accepted_with_subject_and_user_id() {
    let mut h = Harness::with_keys(&[RSA_A, RSA_B]);
    let verified = h.check(&rs256_a(&id_claims()), NOW).unwrap();
    assert_eq!(
        verified,
        Verified {
            subject: Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".into()),
            user_id: Some("alice".into()),
            expires_at: NOW + 3600,
        }
    );
    assert_eq!(
        h.issuer.fetches,
        [FetchPurpose::Discovery, FetchPurpose::KeySet]
    );
    assert!(h.logged.is_empty(), "{:?}", h.logged);
}

#[test]
fn cognito_access_token_is_accepted_by_client_id() {
    let mut h = Harness::with_keys(&[RSA_A]);
    let verified = h.check(&rs256_a(&access_claims()), NOW).unwrap();
    assert_eq!(
        verified.user_id, None,
        "no cognito:username in access tokens"
    );
    let mut access_only = config();
    access_only.token_use = TokenUse::Access;
    let mut h = Harness::new(access_only, &[RSA_A]);
    h.check(&rs256_a(&access_claims()), NOW).unwrap();
}

#[test]
fn aud_array_and_absent_token_use_are_accepted() {
    let mut h = Harness::with_keys(&[RSA_A]);
    let generic_oidc = with(
        id_claims(),
        json!({"aud": ["other", "client-b"], "token_use": null}),
    );
    h.check(&rs256_a(&generic_oidc), NOW).unwrap();
}

#[test]
fn es256_and_eddsa_tokens_are_accepted() {
    let mut h = Harness::with_keys(&[RSA_A, P256, ED25519]);
    let es = mint(
        Signer::Es256,
        json!({"alg": "ES256", "kid": "p256"}),
        &id_claims(),
    );
    h.check(&es, NOW).unwrap();
    let ed = mint(
        Signer::Ed25519,
        json!({"alg": "EdDSA", "kid": "ed25519"}),
        &id_claims(),
    );
    h.check(&ed, NOW).unwrap();
}

#[test]
fn rsa_key_without_alg_verifies_the_rsa_family() {
    let mut rsa_b = public(RSA_B);
    rsa_b.as_object_mut().unwrap().remove("alg");
    let mut h = Harness::with_keys(&[]);
    h.issuer.keys = vec![rsa_b];
    for (alg, name) in [
        (Rsa::rs256(), "RS256"),
        (Rsa::rs384(), "RS384"),
        (Rsa::rs512(), "RS512"),
        (Rsa::ps256(), "PS256"),
    ] {
        let token = mint(
            Signer::Rsa(alg, &keys().rsa_b),
            json!({"alg": name, "kid": "rsa-b"}),
            &id_claims(),
        );
        h.check(&token, NOW)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}

#[test]
fn a_token_without_kid_uses_the_only_fitting_key() {
    let mut h = Harness::with_keys(&[RSA_A, P256]);
    let token = mint(
        Signer::Rsa(Rsa::rs256(), &keys().rsa_a),
        json!({"alg": "RS256"}),
        &id_claims(),
    );
    h.check(&token, NOW).unwrap();
    let mut h = Harness::with_keys(&[RSA_A, RSA_B]);
    assert_eq!(h.reason(&token, NOW), "ambiguous_kid");
}

#[test]
fn times_are_checked_with_leeway() {
    let mut h = Harness::with_keys(&[RSA_A]);
    let token = rs256_a(&with(
        id_claims(),
        json!({"exp": NOW - 30, "nbf": NOW + 30, "iat": NOW + 30}),
    ));
    h.check(&token, NOW).expect("within the 60 s leeway");
}

// ---- rejected requests: one test each ----

#[test]
fn missing_header_gets_a_bare_challenge() {
    let mut h = Harness::with_keys(&[RSA_A]);
    let error = h.check_header(None, NOW).unwrap_err();
    assert_eq!(error.status, http::StatusCode::UNAUTHORIZED);
    assert_eq!(error.detail.as_deref(), Some("missing_token"));
    let (_, challenge) = &error.headers[0];
    assert_eq!(challenge, "Bearer realm=\"agent-edge\"");
    assert!(h.issuer.fetches.is_empty(), "no fetch for a missing token");
}

#[test]
fn non_bearer_scheme_gets_a_bare_challenge() {
    let mut h = Harness::with_keys(&[RSA_A]);
    let error = h
        .check_header(Some("Basic YWxpY2U6c2VjcmV0"), NOW)
        .unwrap_err();
    assert_eq!(error.status, http::StatusCode::UNAUTHORIZED);
    assert_eq!(error.detail.as_deref(), Some("missing_token"));
    assert!(!error.headers[0].1.to_str().unwrap().contains("error="));
}

#[test]
fn malformed_bearer_header_is_invalid_request() {
    let mut h = Harness::with_keys(&[RSA_A]);
    let token = rs256_a(&id_claims());
    let error = h
        .check_header(Some(&format!("Bearer {token} extra")), NOW)
        .unwrap_err();
    assert_eq!(error.status, http::StatusCode::BAD_REQUEST);
    assert_eq!(error.code.as_str(), "invalid_request");
    assert!(error.headers[0]
        .1
        .to_str()
        .unwrap()
        .starts_with("Bearer error=\"invalid_request\""));
    assert_token_not_echoed(&error, &token);
}

#[test]
fn unknown_kid_is_rejected_after_one_refresh() {
    let mut h = Harness::with_keys(&[RSA_A]);
    h.check(&rs256_a(&id_claims()), NOW).unwrap();
    let fetches = h.issuer.key_set_fetches();
    let unknown = mint(
        Signer::Rsa(Rsa::rs256(), &keys().attacker),
        rs256_header("rsa-attacker"),
        &id_claims(),
    );
    // A minute later: one refresh, then the rejection.
    expect_invalid_token_at(&mut h, &unknown, Reason::UnknownKid, NOW + 60);
    assert_eq!(h.issuer.key_set_fetches(), fetches + 1);
    // Within the next minute: no more fetches however many tries.
    for t in 0..10 {
        expect_invalid_token_at(&mut h, &unknown, Reason::UnknownKid, NOW + 61 + t);
    }
    assert_eq!(h.issuer.key_set_fetches(), fetches + 1);
}

fn expect_invalid_token_at(h: &mut Harness, token: &str, reason: Reason, now: u64) {
    assert_eq!(h.reason(token, now), reason.as_str());
}

/// A request the authenticator must refuse as `invalid_token` with `reason`.
struct Rejection {
    case: &'static str,
    /// The issuer's published keys.
    keys: &'static [&'static str],
    token_use: TokenUse,
    /// The tokens of the case (variants of one mistake).
    tokens: fn() -> Vec<String>,
    reason: Reason,
    /// The token must be refused before any issuer fetch.
    fetches_nothing: bool,
}

/// `base` with each value of `field` in turn (`null` removes it), signed by key A.
fn rs256_a_with(base: fn() -> Value, field: &str, values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|value| rs256_a(&with(base(), json!({ field: value }))))
        .collect()
}

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

fn by_attacker(header: Value) -> String {
    mint(
        Signer::Rsa(Rsa::rs256(), &keys().attacker),
        header,
        &id_claims(),
    )
}

const REJECTIONS: &[Rejection] = &[
    Rejection {
        case: "a header that is not base64url",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            let token = rs256_a(&id_claims());
            let (header, rest) = token.split_once('.').unwrap();
            vec![format!("{}+{}.{rest}", &header[..4], &header[5..])]
        },
        reason: Reason::MalformedBase64,
        fetches_nothing: true,
    },
    Rejection {
        case: "two parts, or four",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            let token = rs256_a(&id_claims());
            vec![
                token.rsplit_once('.').unwrap().0.to_owned(),
                format!("{token}.x"),
            ]
        },
        reason: Reason::MalformedStructure,
        fetches_nothing: true,
    },
    Rejection {
        case: "a header that is not JSON",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            let token = rs256_a(&id_claims());
            let rest = token.split_once('.').unwrap().1;
            vec![format!(
                "{}.{rest}",
                B64.encode(b"{\"alg\":\"RS256\",\"kid\":")
            )]
        },
        reason: Reason::MalformedHeaderJson,
        fetches_nothing: true,
    },
    Rejection {
        case: "claims that are not JSON, validly signed",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            let header = B64.encode(rs256_header("rsa-a").to_string());
            let input = format!("{header}.{}", B64.encode(b"{\"sub\":"));
            let signature = Rsa::rs256().sign(&keys().rsa_a, input.as_bytes());
            vec![format!("{input}.{}", B64.encode(signature.as_bytes()))]
        },
        reason: Reason::MalformedClaims,
        fetches_nothing: false,
    },
    Rejection {
        case: "alg none, in any case",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            ["none", "None", "NONE"]
                .map(|alg| {
                    mint(
                        Signer::Unsigned,
                        json!({"alg": alg, "kid": "rsa-a"}),
                        &id_claims(),
                    )
                })
                .into()
        },
        reason: Reason::AlgNone,
        fetches_nothing: true,
    },
    Rejection {
        // The classic confusion: the verifier's public key used as HMAC secret.
        case: "HS256 signed with the RSA public key",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            [public(RSA_A).to_string(), public(RSA_A)["n"].to_string()]
                .map(|secret| {
                    mint(
                        Signer::Hs256(secret.into_bytes()),
                        json!({"alg": "HS256", "kid": "rsa-a"}),
                        &id_claims(),
                    )
                })
                .into()
        },
        reason: Reason::SymmetricAlgorithm,
        fetches_nothing: true,
    },
    Rejection {
        case: "a valid signature by a key not in the set",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || vec![forged_rs256_a()],
        reason: Reason::BadSignature,
        fetches_nothing: false,
    },
    Rejection {
        case: "RS384 by the right key whose JWK says RS256; ES256 naming the RSA key",
        keys: &[RSA_A, P256],
        token_use: TokenUse::Any,
        tokens: || {
            vec![
                mint(
                    Signer::Rsa(Rsa::rs384(), &keys().rsa_a),
                    json!({"alg": "RS384", "kid": "rsa-a"}),
                    &id_claims(),
                ),
                mint(
                    Signer::Es256,
                    json!({"alg": "ES256", "kid": "rsa-a"}),
                    &id_claims(),
                ),
            ]
        },
        reason: Reason::AlgorithmMismatch,
        fetches_nothing: false,
    },
    Rejection {
        case: "an algorithm the gateway does not verify",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            vec![mint(
                Signer::Rsa(Rsa::rs256(), &keys().rsa_a),
                json!({"alg": "ES384", "kid": "rsa-a"}),
                &id_claims(),
            )]
        },
        reason: Reason::UnsupportedAlgorithm,
        fetches_nothing: true,
    },
    Rejection {
        case: "another issuer, none, a number, a trailing slash",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            let values = [
                json!("https://evil.example"),
                json!(null),
                json!(7),
                json!(format!("{ISSUER}/")),
            ];
            rs256_a_with(id_claims, "iss", &values)
        },
        reason: Reason::WrongIssuer,
        fetches_nothing: false,
    },
    Rejection {
        case: "another audience, none, a number",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            let values = [json!("other"), json!(["x", "y"]), json!(null), json!(42)];
            rs256_a_with(id_claims, "aud", &values)
        },
        reason: Reason::WrongAudience,
        fetches_nothing: false,
    },
    Rejection {
        case: "an ID token's client_id does not stand in for aud",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            let claims = json!({"aud": "other", "client_id": CLIENT});
            vec![rs256_a(&with(id_claims(), claims))]
        },
        reason: Reason::WrongAudience,
        fetches_nothing: false,
    },
    Rejection {
        case: "an access token of another client, or of none",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || rs256_a_with(access_claims, "client_id", &[json!("other"), json!(null)]),
        reason: Reason::WrongClientId,
        fetches_nothing: false,
    },
    Rejection {
        case: "token_use refresh, unknown, a number",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            let values = [json!("refresh"), json!("other"), json!(1)];
            rs256_a_with(id_claims, "token_use", &values)
        },
        reason: Reason::WrongTokenUse,
        fetches_nothing: false,
    },
    Rejection {
        case: "JWT_TOKEN_USE=id: an access token, or no token_use",
        keys: &[RSA_A],
        token_use: TokenUse::Id,
        tokens: || {
            vec![
                rs256_a(&access_claims()),
                rs256_a(&with(id_claims(), json!({"token_use": null}))),
            ]
        },
        reason: Reason::WrongTokenUse,
        fetches_nothing: false,
    },
    Rejection {
        case: "JWT_TOKEN_USE=access: an ID token",
        keys: &[RSA_A],
        token_use: TokenUse::Access,
        tokens: || vec![rs256_a(&id_claims())],
        reason: Reason::WrongTokenUse,
        fetches_nothing: false,
    },
    Rejection {
        case: "expired beyond the leeway",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || rs256_a_with(id_claims, "exp", &[json!(NOW - 61)]),
        reason: Reason::Expired,
        fetches_nothing: false,
    },
    Rejection {
        case: "no exp",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || rs256_a_with(id_claims, "exp", &[json!(null)]),
        reason: Reason::MissingExpiry,
        fetches_nothing: false,
    },
    Rejection {
        case: "nbf beyond the leeway",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || rs256_a_with(id_claims, "nbf", &[json!(NOW + 61)]),
        reason: Reason::NotYetValid,
        fetches_nothing: false,
    },
    Rejection {
        case: "iat beyond the leeway",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || rs256_a_with(id_claims, "iat", &[json!(NOW + 61)]),
        reason: Reason::IssuedInFuture,
        fetches_nothing: false,
    },
    Rejection {
        case: "a crit header",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            vec![mint(
                Signer::Rsa(Rsa::rs256(), &keys().rsa_a),
                json!({"alg": "RS256", "kid": "rsa-a", "crit": ["exp"], "exp": NOW + 10}),
                &id_claims(),
            )]
        },
        reason: Reason::CriticalHeader,
        fetches_nothing: false,
    },
    Rejection {
        case: "a jku header, never fetched",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            vec![by_attacker(
                json!({"alg": "RS256", "kid": "rsa-attacker", "jku": "https://evil.example/jwks.json"}),
            )]
        },
        reason: Reason::KeySetUrlHeader,
        fetches_nothing: true,
    },
    Rejection {
        case: "an x5u header, never fetched",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            vec![by_attacker(
                json!({"alg": "RS256", "kid": "rsa-a", "x5u": "https://evil.example/cert.pem"}),
            )]
        },
        reason: Reason::CertificateUrlHeader,
        fetches_nothing: true,
    },
    Rejection {
        case: "an embedded jwk or x5c",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            vec![
                by_attacker(json!({"alg": "RS256", "jwk": public(RSA_ATTACKER)})),
                by_attacker(json!({"alg": "RS256", "kid": "rsa-a", "x5c": ["MIIB"]})),
            ]
        },
        reason: Reason::EmbeddedKeyHeader,
        fetches_nothing: false,
    },
    Rejection {
        case: "over 16 KiB",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || {
            let padding = json!("x".repeat(MAX_TOKEN_BYTES));
            let token = rs256_a_with(id_claims, "padding", &[padding]);
            assert!(token[0].len() > MAX_TOKEN_BYTES);
            token
        },
        reason: Reason::TooLarge,
        fetches_nothing: true,
    },
    Rejection {
        case: "a signature altered by one bit (RS256, ES256)",
        keys: &[RSA_A, P256],
        token_use: TokenUse::Any,
        tokens: || {
            let es256 = mint(
                Signer::Es256,
                json!({"alg": "ES256", "kid": "p256"}),
                &id_claims(),
            );
            [rs256_a(&id_claims()), es256]
                .map(|token| flip_signature_bit(&token))
                .into()
        },
        reason: Reason::BadSignature,
        fetches_nothing: false,
    },
    Rejection {
        case: "claims altered after signing",
        keys: &[RSA_A],
        token_use: TokenUse::Any,
        tokens: || vec![replace_claims(&rs256_a(&id_claims()))],
        reason: Reason::BadSignature,
        fetches_nothing: false,
    },
];

#[test]
fn rejected_tokens_get_their_reason_and_never_see_it_echoed() {
    for rejection in REJECTIONS {
        let mut config = config();
        config.token_use = rejection.token_use;
        let mut h = Harness::new(config, rejection.keys);
        for token in (rejection.tokens)() {
            let error = h.check(&token, NOW).expect_err(rejection.case);
            assert_eq!(
                error.detail.as_deref(),
                Some(rejection.reason.as_str()),
                "{}: {error:?}",
                rejection.case
            );
            expect_invalid_token(&mut h, &token, rejection.reason);
        }
        if rejection.fetches_nothing {
            assert!(h.issuer.fetches.is_empty(), "{}", rejection.case);
        }
    }
}

// ---- key set fetching ----

#[test]
fn configured_jwks_url_skips_discovery() {
    let mut configured = config();
    configured.jwks_url = Some(JWKS_URL.to_owned());
    let mut h = Harness::new(configured, &[RSA_A]);
    h.check(&rs256_a(&id_claims()), NOW).unwrap();
    assert_eq!(h.issuer.fetches, [FetchPurpose::KeySet]);
}

#[test]
fn discovery_of_another_issuer_is_refused_and_reported() {
    let mut h = Harness::with_keys(&[RSA_A]);
    h.issuer.discovery_issuer = "https://evil.example".to_owned();
    let error = h.check(&rs256_a(&id_claims()), NOW).unwrap_err();
    assert_eq!(error.status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.issuer.fetches, [FetchPurpose::Discovery]);
    assert!(h.logged[0].contains("JWT_ISSUER"), "{:?}", h.logged);
    // Retried a minute later, not before.
    h.check(&rs256_a(&id_claims()), NOW + 59).unwrap_err();
    assert_eq!(h.issuer.fetches.len(), 1);
    h.issuer.discovery_issuer = ISSUER.to_owned();
    h.check(&rs256_a(&id_claims()), NOW + 60).unwrap();
}

#[test]
fn key_set_lives_for_its_max_age() {
    let mut h = Harness::with_keys(&[RSA_A]);
    h.issuer.cache_control = Some("max-age=300".to_owned());
    // Distinct tokens, so the verified-token cache does not answer.
    let token_at = |t: u64| rs256_a(&with(id_claims(), json!({ "jti": t.to_string() })));
    h.check(&token_at(0), NOW).unwrap();
    h.check(&token_at(1), NOW + 299).unwrap();
    assert_eq!(h.issuer.key_set_fetches(), 1);
    h.check(&token_at(2), NOW + 300).unwrap();
    assert_eq!(h.issuer.key_set_fetches(), 2);
    // Without Cache-Control: 10 minutes.
    h.issuer.cache_control = None;
    h.check(&token_at(3), NOW + 600).unwrap();
    assert_eq!(h.issuer.key_set_fetches(), 3);
    h.check(&token_at(4), NOW + 600 + 599).unwrap();
    assert_eq!(h.issuer.key_set_fetches(), 3);
    h.check(&token_at(5), NOW + 600 + 600).unwrap();
    assert_eq!(h.issuer.key_set_fetches(), 4);
}

#[test]
fn a_stale_set_serves_while_one_background_refresh_runs() {
    let mut h = Harness::with_keys(&[RSA_A]);
    h.issuer.cache_control = Some("max-age=600".to_owned());
    h.check(&rs256_a(&id_claims()), NOW).unwrap();
    let token = rs256_a(&with(id_claims(), json!({"jti": "stale"})));
    let header = format!("Bearer {token}");
    let stale = NOW + 600;
    // Stale but usable: answered without a fetch, cached token or not.
    assert!(matches!(
        h.auth.check(Some(&header), stale),
        Check::Verified(_)
    ));
    assert!(matches!(
        h.auth.check(Some(&header), stale),
        Check::Verified(_)
    ));
    // One refresh is handed out, not one per request…
    let request = h.auth.take_background_refresh(stale).expect("a refresh");
    assert_eq!(request.purpose, FetchPurpose::KeySet);
    assert!(h.auth.take_background_refresh(stale + 1).is_none());
    // …unless it never reported back within the fetch deadline.
    let lost = stale + ISSUER_FETCH_TIMEOUT_MS / 1000 + 1;
    let again = h
        .auth
        .take_background_refresh(lost)
        .expect("handed out again");
    let response = h.issuer.answer(&again);
    assert!(h.auth.on_fetched(&again, response, lost).is_none());
    // Fresh again: nothing to refresh.
    assert!(h.auth.take_background_refresh(lost + 1).is_none());
    assert_eq!(h.issuer.key_set_fetches(), 2);
}

#[test]
fn unreachable_issuer_the_last_good_set_serves_for_24_hours() {
    let mut h = Harness::with_keys(&[RSA_A]);
    h.issuer.cache_control = Some("max-age=600".to_owned());
    h.check(&rs256_a(&id_claims()), NOW).unwrap();
    h.issuer.reachable = false;
    let long_lived = |jti: u64| {
        rs256_a(&with(
            id_claims(),
            json!({"exp": NOW + 3 * 86400, "jti": jti.to_string()}),
        ))
    };
    // Stale: one failed refresh, reported, and the old keys still serve.
    h.check(&long_lived(1), NOW + 600).unwrap();
    assert_eq!(h.issuer.key_set_fetches(), 2);
    assert_eq!(h.logged.len(), 1);
    assert!(h.logged[0].contains("connection refused"), "{:?}", h.logged);
    assert!(h.logged[0].contains("still serving"), "{:?}", h.logged);
    // Retries at most once a minute.
    h.check(&long_lived(2), NOW + 630).unwrap();
    assert_eq!(h.issuer.key_set_fetches(), 2);
    h.check(&long_lived(3), NOW + 660).unwrap();
    assert_eq!(h.issuer.key_set_fetches(), 3);
    // Up to 24 hours past the set's lifetime, then refused (503).
    h.check(&long_lived(4), NOW + 600 + 86399).unwrap();
    let error = h.check(&long_lived(5), NOW + 600 + 86400).unwrap_err();
    assert_eq!(error.status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error.detail.as_deref(), Some("keys_unavailable"));
    // Cached tokens are refused too.
    let error = h.check(&long_lived(4), NOW + 600 + 86400 + 60).unwrap_err();
    assert_eq!(error.status, http::StatusCode::SERVICE_UNAVAILABLE);
    // The issuer is back: accepted again.
    h.issuer.reachable = true;
    h.check(&long_lived(4), NOW + 600 + 86400 + 120).unwrap();
}

#[test]
fn fetch_loop_ends_for_every_kind_of_failure() {
    type BreakIssuer = fn(&mut FakeIssuer);
    let failures: [(&str, BreakIssuer); 4] = [
        ("unreachable", |i| i.reachable = false),
        ("404", |i| i.status = 404),
        ("no usable key", |i| {
            i.keys = vec![json!({"kty": "oct", "k": "c2VjcmV0"})]
        }),
        ("not JSON", |i| i.raw_key_set = Some("<html>502</html>")),
    ];
    for (name, break_issuer) in failures {
        let mut h = Harness::with_keys(&[RSA_A]);
        break_issuer(&mut h.issuer);
        // check_header panics if the loop needs more than 3 fetches.
        let error = h.check(&rs256_a(&id_claims()), NOW).unwrap_err();
        assert_eq!(
            error.status,
            http::StatusCode::SERVICE_UNAVAILABLE,
            "{name}"
        );
        assert!(!h.logged.is_empty(), "{name}: the failure is reported");
        let fetches = h.issuer.fetches.len();
        h.check(&rs256_a(&id_claims()), NOW + 30).unwrap_err();
        assert_eq!(
            h.issuer.fetches.len(),
            fetches,
            "{name}: no retry within a minute"
        );
    }
}

#[test]
fn a_key_set_answering_404_is_looked_up_again_by_discovery() {
    let mut h = Harness::with_keys(&[RSA_A]);
    let token_at = |t: u64| {
        rs256_a(&with(
            id_claims(),
            json!({"jti": t.to_string(), "exp": NOW + 86400}),
        ))
    };
    h.check(&token_at(0), NOW).unwrap();
    h.issuer.status = 404;
    h.check(&token_at(1), NOW + 3600)
        .expect("the last good set serves");
    assert_eq!(h.issuer.fetches.len(), 3);
    h.issuer.status = 200;
    h.check(&token_at(2), NOW + 3660).unwrap();
    assert_eq!(
        h.issuer.fetches[3..],
        [FetchPurpose::Discovery, FetchPurpose::KeySet]
    );
    // An unreachable issuer, though, keeps the discovered location.
    h.issuer.reachable = false;
    h.check(&token_at(3), NOW + 3660 + 3600).unwrap();
    h.issuer.reachable = true;
    h.check(&token_at(4), NOW + 3660 + 3660).unwrap();
    assert_eq!(
        h.issuer.fetches[5..],
        [FetchPurpose::KeySet, FetchPurpose::KeySet]
    );
}

#[test]
fn skipped_keys_are_reported_without_failing_the_set() {
    let mut h = Harness::with_keys(&[RSA_A]);
    h.issuer
        .keys
        .push(json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}));
    h.check(&rs256_a(&id_claims()), NOW).unwrap();
    assert_eq!(h.logged.len(), 1);
    assert!(h.logged[0].contains("\"hmac\""), "{:?}", h.logged);
    assert!(!h.logged[0].contains("c2VjcmV0"));
}

#[test]
fn concurrent_callers_share_one_refresh() {
    let mut h = Harness::with_keys(&[RSA_A]);
    h.check(&rs256_a(&id_claims()), NOW).unwrap();
    h.issuer.keys.push(public(RSA_B));
    let first = format!("Bearer {}", rs256_b(&id_claims()));
    let second = format!(
        "Bearer {}",
        rs256_b(&with(id_claims(), json!({"sub": "bob"})))
    );
    let now = NOW + 120;
    // Both see the unknown kid before either refresh completes.
    let Check::Fetch(request) = h.auth.check(Some(&first), now) else {
        panic!()
    };
    assert!(matches!(h.auth.check(Some(&second), now), Check::Fetch(_)));
    // The first refreshes; the second, re-checking after it, needs no fetch.
    let response = h.issuer.answer(&request);
    assert_eq!(h.auth.on_fetched(&request, response, now), None);
    assert!(matches!(
        h.auth.check(Some(&second), now),
        Check::Verified(_)
    ));
    assert!(matches!(
        h.auth.check(Some(&first), now),
        Check::Verified(_)
    ));
    assert_eq!(h.issuer.key_set_fetches(), 2);
}

#[test]
fn exported_key_set_imports_into_another_instance() {
    let mut h = Harness::with_keys(&[RSA_A]);
    h.check(&rs256_a(&id_claims()), NOW).unwrap();
    let (document, fetched_at, max_age) = h.auth.export_key_set().unwrap();
    assert_eq!((fetched_at, max_age), (NOW, 3600));

    let mut other = Authenticator::new(config());
    other
        .import_key_set(document.clone(), fetched_at, max_age)
        .unwrap();
    let header = format!("Bearer {}", rs256_a(&id_claims()));
    assert!(matches!(
        other.check(Some(&header), NOW + 10),
        Check::Verified(_)
    ));
    // Once stale, the imported set is refreshed like a fetched one: in the
    // background, while it still serves.
    assert!(matches!(
        other.check(Some(&header), NOW + 3600),
        Check::Verified(_)
    ));
    assert!(other.take_background_refresh(NOW + 3600).is_some());
    // An older document does not replace a newer set.
    other.import_key_set(document, NOW - 100, 3600).unwrap();
    assert_eq!(other.export_key_set().unwrap().1, NOW);
    assert!(other.import_key_set("{}".into(), NOW + 1, 60).is_err());
}

// ---- the verified-token cache ----

#[test]
fn a_cache_hit_skips_signature_verification() {
    let mut h = Harness::with_keys(&[RSA_A]);
    let token = rs256_a(&id_claims());
    let first = h.check(&token, NOW).unwrap();
    assert_eq!(h.auth.stats().signature_checks, 1);
    for t in 1..=5 {
        assert_eq!(h.check(&token, NOW + t).unwrap(), first);
    }
    assert_eq!(
        h.auth.stats(),
        AuthStats {
            signature_checks: 1,
            cache_hits: 5
        }
    );
}

#[test]
fn the_altered_twin_of_a_cached_token_is_rejected() {
    let mut h = Harness::with_keys(&[RSA_A]);
    let token = rs256_a(&id_claims());
    h.check(&token, NOW).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let altered_claims = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(with(id_claims(), json!({"sub": "admin"})).to_string()),
        parts[2]
    );
    expect_invalid_token(&mut h, &altered_claims, Reason::BadSignature);
    let mut signature = B64.decode(parts[2]).unwrap();
    signature[0] ^= 1;
    let altered_signature = format!("{}.{}.{}", parts[0], parts[1], B64.encode(signature));
    expect_invalid_token(&mut h, &altered_signature, Reason::BadSignature);
    assert_eq!(h.auth.stats().cache_hits, 0);
    h.check(&token, NOW).unwrap();
    assert_eq!(h.auth.stats().cache_hits, 1);
}

#[test]
fn a_cached_token_still_expires() {
    let mut h = Harness::with_keys(&[RSA_A]);
    let token = rs256_a(&with(id_claims(), json!({"exp": NOW + 100})));
    h.check(&token, NOW).unwrap();
    h.check(&token, NOW + 160).unwrap();
    assert_eq!(h.reason(&token, NOW + 161), "expired");
    assert_eq!(h.auth.stats().signature_checks, 1);
    // A clock set back before nbf also counts.
    let nbf = rs256_a(&with(id_claims(), json!({"nbf": NOW})));
    h.check(&nbf, NOW).unwrap();
    assert_eq!(h.reason(&nbf, NOW - 61), "not_yet_valid");
}

#[test]
fn disabled_cache_verifies_every_time() {
    let mut h = Harness::with_keys(&[RSA_A]);
    h.auth = Authenticator::new(config()).with_token_cache_capacity(0);
    let token = rs256_a(&id_claims());
    for _ in 0..3 {
        h.check(&token, NOW).unwrap();
    }
    assert_eq!(h.auth.stats().signature_checks, 3);
}

// ---- rotation ----

/// The issuer adds key B, signs with it, later drops key A: B's tokens are
/// accepted without a restart, A's are refused once the set is refreshed,
/// including tokens already in the verified-token cache.
#[test]
fn key_rotation_without_restart() {
    let mut h = Harness::with_keys(&[RSA_A]);
    h.issuer.cache_control = Some("max-age=600".to_owned());
    let long = |claims: Value| with(claims, json!({"exp": NOW + 86400}));
    let old_token = rs256_a(&long(id_claims()));
    h.check(&old_token, NOW).unwrap();

    // Day 1: the issuer publishes B next to A and starts signing with B.
    h.issuer.keys.push(public(RSA_B));
    let new_token = rs256_b(&long(id_claims()));
    h.check(&new_token, NOW + 100)
        .expect("unknown kid -> refresh -> accepted");
    assert_eq!(h.issuer.key_set_fetches(), 2);
    h.check(&old_token, NOW + 100)
        .expect("A is still published");

    // Later: A is dropped. Until the set is refreshed, A's cached token holds…
    h.issuer.keys.remove(0);
    h.check(&old_token, NOW + 500).unwrap();
    // …and at the next refresh (the set's max-age), it is refused, cached or not.
    assert_eq!(h.reason(&old_token, NOW + 700), "unknown_kid");
    assert_eq!(h.issuer.key_set_fetches(), 3);
    let fresh_old = rs256_a(&long(with(id_claims(), json!({"jti": "x"}))));
    assert_eq!(h.reason(&fresh_old, NOW + 800), "unknown_kid");
    h.check(&new_token, NOW + 800).unwrap();
}

#[test]
fn an_unknown_kid_refresh_also_drops_removed_keys() {
    let mut h = Harness::with_keys(&[RSA_A]);
    let old_token = rs256_a(&id_claims());
    h.check(&old_token, NOW).unwrap();
    // A swapped for B in one step; a B token triggers the refresh.
    h.issuer.keys = vec![public(RSA_B)];
    h.check(&rs256_b(&id_claims()), NOW + 60).unwrap();
    assert_eq!(h.reason(&old_token, NOW + 61), "unknown_kid");
}

// ---- RSA signatures checked by the platform (WebCrypto on Workers) ----

/// What WebCrypto does with a [`SignatureCheck`], with `ring`: the key from
/// its modulus and exponent, the JWS signing input and signature as given.
fn ring_verdict(check: &SignatureCheck) -> Option<bool> {
    let parameters = super::rsa_key::ring_parameters(check.alg)?;
    let key = ring::signature::RsaPublicKeyComponents {
        n: &check.modulus,
        e: &check.exponent,
    };
    Some(
        key.verify(parameters, &check.signed_data, &check.signature)
            .is_ok(),
    )
}

/// Tokens that exercise the signature: good ones in every RSA algorithm,
/// a flipped signature bit, claims changed after signing, another key's
/// signature under this key's `kid`, and an ES256 token (never the
/// platform's).
fn signature_cases() -> Vec<(&'static str, String)> {
    let by_b = |alg: Rsa, name: &str| {
        mint(
            Signer::Rsa(alg, &keys().rsa_b),
            json!({"alg": name, "kid": "rsa-b"}),
            &id_claims(),
        )
    };
    let good = by_b(Rsa::rs256(), "RS256");
    let (input, signature) = good.rsplit_once('.').unwrap();
    let mut bytes = B64.decode(signature).unwrap();
    bytes[17] ^= 0x04;
    let flipped = format!("{input}.{}", B64.encode(&bytes));
    let parts: Vec<&str> = good.split('.').collect();
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(with(id_claims(), json!({"sub": "admin"})).to_string()),
        parts[2]
    );
    let attacker = mint(
        Signer::Rsa(Rsa::rs256(), &keys().attacker),
        json!({"alg": "RS256", "kid": "rsa-b"}),
        &id_claims(),
    );
    vec![
        ("RS256", good.clone()),
        ("RS384", by_b(Rsa::rs384(), "RS384")),
        ("RS512", by_b(Rsa::rs512(), "RS512")),
        ("PS256", by_b(Rsa::ps256(), "PS256")),
        ("PS384", by_b(Rsa::ps384(), "PS384")),
        ("PS512", by_b(Rsa::ps512(), "PS512")),
        ("flipped signature bit", flipped),
        ("claims altered after signing", altered),
        ("another key's signature", attacker),
        (
            "expired, good signature",
            mint(
                Signer::Rsa(Rsa::rs256(), &keys().rsa_b),
                rs256_header("rsa-b"),
                &with(id_claims(), json!({"exp": NOW - 3600})),
            ),
        ),
        (
            "ES256",
            mint(
                Signer::Es256,
                json!({"alg": "ES256", "kid": "p256"}),
                &id_claims(),
            ),
        ),
    ]
}

/// The RSA-family key B without `alg`, and the P-256 key.
fn harness_for_signature_cases() -> Harness {
    let mut rsa_b = public(RSA_B);
    rsa_b.as_object_mut().unwrap().remove("alg");
    let mut h = Harness::with_keys(&[P256]);
    h.issuer.keys.push(rsa_b);
    h
}

#[test]
fn platform_rsa_verdicts_equal_in_process_ones() {
    for (case, token) in signature_cases() {
        let in_process = harness_for_signature_cases().check(&token, NOW);
        let mut h = harness_for_signature_cases().with_platform_rsa(ring_verdict);
        let by_platform = h.check(&token, NOW);
        assert_eq!(by_platform, in_process, "{case}");
        let expected_platform_checks = usize::from(case != "ES256");
        assert_eq!(h.platform_checks, expected_platform_checks, "{case}");
    }
    // The good ones are accepted, the others refused for their signature.
    let accepted: Vec<&str> = signature_cases()
        .into_iter()
        .filter(|(_, token)| harness_for_signature_cases().check(token, NOW).is_ok())
        .map(|(case, _)| case)
        .collect();
    assert_eq!(
        accepted,
        ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256"]
    );
}

#[test]
fn a_platform_verdict_is_cached_like_an_in_process_one() {
    let mut h = Harness::with_keys(&[RSA_A]).with_platform_rsa(ring_verdict);
    let token = rs256_a(&id_claims());
    h.check(&token, NOW).unwrap();
    h.check(&token, NOW + 1).unwrap();
    assert_eq!(h.platform_checks, 1, "the second check is a cache hit");
    assert_eq!(h.auth.stats().signature_checks, 1);
    assert_eq!(h.auth.stats().cache_hits, 1);
}

#[test]
fn a_negative_platform_verdict_is_a_bad_signature() {
    let mut h = Harness::with_keys(&[RSA_A]).with_platform_rsa(|_| Some(false));
    let token = rs256_a(&id_claims());
    expect_invalid_token(&mut h, &token, Reason::BadSignature);
}

#[test]
fn without_a_platform_verdict_the_signature_is_checked_in_process() {
    let mut h = Harness::with_keys(&[RSA_A]).with_platform_rsa(|_| None);
    h.check(&rs256_a(&id_claims()), NOW).unwrap();
    let forged = forged_rs256_a();
    expect_invalid_token(&mut h, &forged, Reason::BadSignature);
}

#[test]
fn a_verdict_applies_to_its_token_only() {
    let bearer = |token: &str| format!("Bearer {token}");
    let mut h = Harness::with_keys(&[RSA_A]).with_platform_rsa(ring_verdict);
    // Fetches the key set.
    let warm_up = rs256_a(&with(id_claims(), json!({"sub": "warm-up"})));
    h.check(&warm_up, NOW).unwrap();
    let good = rs256_a(&id_claims());
    let forged = forged_rs256_a();
    let Check::VerifySignature(check) = h.auth.check(Some(&bearer(&good)), NOW) else {
        panic!("a signature check for the good token");
    };
    h.auth.on_signature(&check, Some(true));
    // A "valid" verdict waiting for one token does not let another through.
    match h.auth.check(Some(&bearer(&forged)), NOW) {
        Check::VerifySignature(other) => assert_ne!(other.token_digest, check.token_digest),
        other => panic!("the forged token needs its own check, got {other:?}"),
    }
    assert!(matches!(
        h.auth.check(Some(&bearer(&good)), NOW),
        Check::Verified(_)
    ));
}
