//! The verified-token cache: hits skip the signature check, altered twins
//! and expired tokens are still refused, capacity 0 disables it.

use super::*;

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
    expect_invalid_token(&mut h, &replace_claims(&token), Reason::BadSignature);
    let parts: Vec<&str> = token.split('.').collect();
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
