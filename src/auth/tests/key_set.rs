//! Fetching the issuer's key set: discovery, lifetime, stale serving and
//! background refresh, failures, sharing, export/import, key rotation.

use super::*;

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
