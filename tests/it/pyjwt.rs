//! Interop (issue 3, item 7): tokens minted by an independent library,
//! PyJWT with `cryptography`, against a running native gateway. RS256 and
//! ES256, Cognito-shaped ID and access tokens must be accepted; each attack
//! token (alg none, HS256 keyed with the RSA public key, expired, wrong
//! iss/aud/client_id/token_use, unknown kid, another key, embedded jwk,
//! jku, x5u, crit, a flipped signature bit, altered claims, oversized) must
//! be refused with 401 for the reason the script names, which the gateway
//! writes to its log line's `detail`.
//!
//! `tests/data/pyjwt_tokens.py` generates fresh keys, prints their JWKS and
//! the tokens; the test issuer publishes that JWKS. PyJWT lives in the
//! virtualenv `target/pyenv` ([`crate::pyenv`]).

use std::path::PathBuf;

use serde_json::Value;

use crate::issuer_support::Issuer;
use crate::native_stack::NativeStack;

const AUDIENCE: &str = "pyjwt-client";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the minting script for `issuer`.
fn mint_with_pyjwt(issuer: &str) -> Value {
    let script = repo().join("tests/data/pyjwt_tokens.py");
    let args = [script.as_os_str(), issuer.as_ref(), AUDIENCE.as_ref()];
    crate::pyenv::run_json(&args, b"").unwrap_or_else(|why| panic!("pyjwt_tokens.py: {why}"))
}

#[tokio::test]
async fn pyjwt_tokens_against_the_native_gateway() {
    // The issuer's address is in the tokens: start it, mint, then publish
    // the script's keys.
    let issuer = Issuer::spawn().await;
    let minted = tokio::task::spawn_blocking({
        let issuer = issuer.url.clone();
        move || mint_with_pyjwt(&issuer)
    })
    .await
    .unwrap();
    issuer.publish(minted["jwks"].clone());

    let stack = NativeStack::start(&[
        ("AUTH", "jwt"),
        ("JWT_ISSUER", &issuer.url),
        ("JWT_AUDIENCE", AUDIENCE),
    ])
    .await;

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let call = |token: &str, request_id: String| {
        client
            .post(stack.invocations_url())
            .header("content-type", "application/json")
            .header("x-request-id", request_id)
            .bearer_auth(token)
            .body(r#"{"prompt":"/events 1 1"}"#)
            .send()
    };
    let log_detail = |request_id: &str| stack.request_log(request_id).map(|l| l["detail"].clone());

    let mut failures = Vec::new();
    let accepted = minted["accepted"].as_array().expect("accepted tokens");
    for case in accepted {
        let name = case["name"].as_str().unwrap();
        let request_id = format!("pyjwt-{name}");
        let response = call(case["token"].as_str().unwrap(), request_id.clone())
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status != 200 {
            failures.push(format!(
                "{name}: expected 200, got {status} {body} (log detail {:?})",
                log_detail(&request_id)
            ));
        }
    }
    let rejected = minted["rejected"].as_array().expect("attack tokens");
    for case in rejected {
        let name = case["name"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        let reason = case["reason"].as_str().unwrap();
        let request_id = format!("pyjwt-{name}");
        let response = call(token, request_id.clone()).await.unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.unwrap_or_default();
        let detail = log_detail(&request_id);
        if status != 401 {
            failures.push(format!("{name}: expected 401, got {status} {body}"));
        } else if !challenge.contains(r#"Bearer error="invalid_token""#) {
            failures.push(format!("{name}: WWW-Authenticate {challenge:?}"));
        } else if detail.as_ref().and_then(Value::as_str) != Some(reason) {
            failures.push(format!(
                "{name}: refused for {detail:?}, expected {reason:?}"
            ));
        }
        if body.contains(token) || challenge.contains(token) {
            failures.push(format!("{name}: the answer echoes the token"));
        }
    }
    for line in stack.log_lines().iter() {
        if line.contains("eyJ") {
            failures.push(format!("a log line holds a token: {line}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} PyJWT cases failed:\n{}",
        failures.len(),
        accepted.len() + rejected.len(),
        failures.join("\n")
    );
    assert!(accepted.len() >= 5 && rejected.len() >= 20);
}
