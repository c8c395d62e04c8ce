//! Requests the authenticator refuses: missing or malformed headers, unknown
//! keys, and a table of bad tokens with the reason each must get.

use super::*;

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
