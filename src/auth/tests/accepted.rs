//! Tokens the authenticator accepts: Cognito ID and access tokens, every
//! supported algorithm, keys chosen without `kid`, the time leeway.

use super::*;

#[test]
fn cognito_id_token_is_accepted_with_subject_and_user_id() {
    let mut h = Harness::with_keys(&[RSA_A, RSA_B]);
    let verified = h.check(&rs256_a(&id_claims()), NOW).unwrap();
    assert_eq!(
        verified,
        Verified {
            subject: Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".into()),
            user_id: Some("alice".into()),
            claims: Vec::new(),
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

#[test]
fn the_claims_agents_gate_on_are_kept_as_text() {
    let mut config = config();
    config.gate_claims = vec![
        "cognito:groups".into(),
        "tier".into(),
        "level".into(),
        "absent".into(),
    ];
    let mut h = Harness::new(config, &[RSA_A]);
    let claims = with(
        id_claims(),
        json!({"cognito:groups": ["sales", 7, {"x": 1}], "tier": "gold", "level": 3, "other": "x"}),
    );
    let verified = h.check(&rs256_a(&claims), NOW).unwrap();
    assert_eq!(
        verified.claims,
        [
            (
                "cognito:groups".to_owned(),
                vec!["sales".to_owned(), "7".to_owned()]
            ),
            ("tier".to_owned(), vec!["gold".to_owned()]),
            ("level".to_owned(), vec!["3".to_owned()]),
        ]
    );
}

#[test]
fn sessions_of_their_subject_need_a_sub() {
    let mut config = config();
    config.require_subject = true;
    let mut h = Harness::new(config, &[RSA_A]);
    h.check(&rs256_a(&id_claims()), NOW).unwrap();
    let no_sub = with(id_claims(), json!({"sub": null}));
    assert_eq!(h.reason(&rs256_a(&no_sub), NOW), "missing_sub");
    // Without session scoping, a token without `sub` is fine.
    let mut h = Harness::with_keys(&[RSA_A]);
    assert_eq!(h.check(&rs256_a(&no_sub), NOW).unwrap().subject, None);
}
