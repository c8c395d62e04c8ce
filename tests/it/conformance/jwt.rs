//! Caller authentication over HTTP: valid tokens pass, and each kind of bad
//! token is a 401 with an RFC 6750 challenge and the JSON error shape,
//! never echoing the token (`docs/interface.md`, "Errors"). The full attack list, minted by an independent library, is in
//! the `pyjwt` module.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::json;

use agent_edge::gateway::EventName;

use super::client::{client, invoke, send, unique, Reply};
use super::origin_errors::assert_logs_clean;
use super::stack::{spawn_native, vars_with};
use super::tokens::{header, id_claims, mint, token, unix_now, Signer, AUDIENCE};
use super::{every_target, Target};

const PROMPT: &str = r#"{"prompt":"/events 1 1"}"#;

/// A 401 for a bad token: `invalid_token` challenge, JSON error, no echo.
fn assert_invalid_token(reply: &Reply, token: &str, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.text());
    reply.assert_error(401, "invalid_token");
    let challenge = reply
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#),
        "{what}: WWW-Authenticate: {challenge}"
    );
    assert!(
        challenge.contains("error_description=\""),
        "{what}: {challenge}"
    );
    let signature = token.rsplit('.').next().unwrap_or(token);
    for leak in [token, signature] {
        if leak.len() > 8 {
            assert!(
                !reply.text().contains(leak),
                "{what}: the body echoes the token"
            );
            assert!(
                !challenge.contains(leak),
                "{what}: the challenge echoes the token"
            );
        }
    }
}

/// Sends `token` and asserts the 401 of a bad token.
async fn assert_refused(t: &Target, token: &str, what: &str) {
    assert_invalid_token(&send(invoke(t, Some(token), PROMPT)).await, token, what);
}

/// No signature handed to the platform (WebCrypto on the Worker) fell back
/// to the in-process check: waits for `request_id`'s log line, written after
/// any fallback line of that request.
async fn assert_no_signature_fallback(t: &Target, request_id: &str) {
    t.request_log(request_id).await;
    let fallbacks: Vec<String> = t
        .logs
        .lines()
        .into_iter()
        .filter(|line| line.contains(EventName::SignatureCheckFallback.as_str()))
        .collect();
    assert!(fallbacks.is_empty(), "{fallbacks:?}");
}

async fn valid_id_token_is_accepted(t: Arc<Target>) {
    let request_id = unique("jwt-ok");
    let reply = send(
        invoke(&t, Some(&token(&unique("jwt-ok"))), PROMPT).header("x-request-id", &request_id),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_no_signature_fallback(&t, &request_id).await;
}

async fn valid_access_token_is_accepted(t: Arc<Target>) {
    // Cognito access tokens: client_id instead of aud.
    let mut claims = id_claims(&unique("jwt-access"));
    let claims_map = claims.as_object_mut().unwrap();
    claims_map.remove("aud");
    claims_map.insert("client_id".into(), json!(AUDIENCE));
    claims_map.insert("token_use".into(), json!("access"));
    claims_map.insert("scope".into(), json!("openid"));
    let reply = send(invoke(
        &t,
        Some(&mint(Signer::Issuer, &header(), &claims)),
        PROMPT,
    ))
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

async fn missing_token_is_401_with_a_bearer_challenge(t: Arc<Target>) {
    let reply = send(invoke(&t, None, PROMPT)).await;
    reply.assert_error(401, "missing_token");
    let challenge = reply.header("www-authenticate").expect("WWW-Authenticate");
    assert!(challenge.starts_with("Bearer"), "{challenge}");

    // Another scheme counts as no token (RFC 6750 §3.1).
    let reply = send(
        client()
            .post(t.url("/invocations"))
            .header("content-type", "application/json")
            .header("authorization", "Basic dXNlcjpwYXNz")
            .body(PROMPT),
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert!(reply
        .header("www-authenticate")
        .is_some_and(|c| c.starts_with("Bearer")));
}

async fn garbage_tokens_are_401(t: Arc<Target>) {
    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "....."] {
        assert_refused(&t, garbage, garbage).await;
    }
}

async fn expired_token_is_401(t: Arc<Target>) {
    let mut claims = id_claims(&unique("jwt-expired"));
    let now = unix_now();
    // Beyond the default 60 s leeway.
    claims["exp"] = json!(now - 600);
    claims["iat"] = json!(now - 4200);
    claims["auth_time"] = json!(now - 4200);
    let token = mint(Signer::Issuer, &header(), &claims);
    assert_refused(&t, &token, "expired").await;
}

async fn wrong_audience_and_issuer_are_401(t: Arc<Target>) {
    let mut claims = id_claims(&unique("jwt-aud"));
    claims["aud"] = json!("another-client");
    let token = mint(Signer::Issuer, &header(), &claims);
    assert_refused(&t, &token, "wrong aud").await;

    let mut claims = id_claims(&unique("jwt-iss"));
    claims["iss"] = json!("https://issuer.example.com");
    let token = mint(Signer::Issuer, &header(), &claims);
    assert_refused(&t, &token, "wrong iss").await;
}

async fn token_from_another_key_is_401(t: Arc<Target>) {
    let claims = id_claims(&unique("jwt-forged"));
    // Same kid as the issuer's key: only the signature can tell.
    let token = mint(Signer::Attacker, &header(), &claims);
    let request_id = unique("jwt-forged");
    assert_invalid_token(
        &send(invoke(&t, Some(&token), PROMPT).header("x-request-id", &request_id)).await,
        &token,
        "same kid, other key",
    );
    assert_no_signature_fallback(&t, &request_id).await;

    let mut other_kid = header();
    other_kid["kid"] = json!("rsa-attacker");
    let token = mint(Signer::Attacker, &other_kid, &claims);
    assert_refused(&t, &token, "unknown kid").await;
}

async fn unsigned_and_tampered_tokens_are_401(t: Arc<Target>) {
    let claims = id_claims(&unique("jwt-tamper"));
    let none = format!(
        "{}.{}.",
        B64.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        B64.encode(claims.to_string())
    );
    assert_refused(&t, &none, "alg none").await;

    let good = mint(Signer::Issuer, &header(), &claims);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut altered = claims.clone();
    altered["sub"] = json!("admin");
    parts[1] = B64.encode(altered.to_string());
    let tampered = parts.join(".");
    assert_refused(&t, &tampered, "altered claims").await;
}

async fn first_requests_at_once_share_the_key_fetch(t: Arc<Target>) {
    // Sent by the stack before any check: concurrent requests that all need
    // the issuer's keys, which nobody has fetched yet.
    assert!(
        !t.cold_start.is_empty(),
        "the stack sent no cold-start burst"
    );
    let failed: Vec<&String> = t.cold_start.iter().filter(|s| *s != "200").collect();
    assert!(
        failed.is_empty(),
        "{} of {} concurrent first requests failed: {failed:#?}",
        failed.len(),
        t.cold_start.len()
    );
}

/// `AUTH=none` (local development only): no token needed, a warning logged
/// at start, and a token sent anyway is neither checked nor logged.
#[tokio::test]
async fn native_auth_none_needs_no_token_and_warns() {
    let (_server, gateway) = spawn_native(&vars_with(&[("AUTH", "none")])).await;
    let reply = send(invoke(&gateway, None, PROMPT)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let lines = gateway.logs.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"level\":\"warn\"") && l.contains("AUTH=none")),
        "a warning about AUTH=none: {lines:?}"
    );
    let ignored = token(&unique("auth-none"));
    let reply = send(invoke(&gateway, Some(&ignored), PROMPT)).await;
    assert_eq!(reply.status, 200);
    assert_logs_clean(&gateway, &[&ignored]);
}

every_target!(
    first_requests_at_once_share_the_key_fetch,
    valid_id_token_is_accepted,
    valid_access_token_is_accepted,
    missing_token_is_401_with_a_bearer_challenge,
    garbage_tokens_are_401,
    expired_token_is_401,
    wrong_audience_and_issuer_are_401,
    token_from_another_key_is_401,
    unsigned_and_tampered_tokens_are_401,
);
