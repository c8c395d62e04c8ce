//! RSA signatures checked by the platform (WebCrypto on Workers): its
//! verdicts match in-process ones, are cached, and bind to one token.

use super::*;

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
        ("flipped signature bit", flip_signature_bit(&good)),
        ("claims altered after signing", replace_claims(&good)),
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
