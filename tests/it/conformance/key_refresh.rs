//! The issuer's key set over time, each target with an issuer and a
//! gateway of its own; each check takes a minute, the shortest gap between
//! two fetches.
//!
//! - A slow issuer never delays a request that cached keys can serve: once
//!   the key set is stale (here at once: `Cache-Control: no-cache`) and a
//!   refresh is allowed again, the issuer answers only after 8 s, and
//!   requests are still answered at once, with the stale keys, while the
//!   refresh runs in the background (natively) or for at most
//!   `STALE_REFRESH_WAIT_MS` (Workers).
//! - A rotated key (native): a token naming the new key is refused until a
//!   fetch is allowed again, then accepted, and the old key is gone.

use std::time::{Duration, Instant};

use super::child;
use super::client::{invoke, send, unique};
use super::stack::{spawn_native, vars_with, Target, TargetKind};
use super::tokens::{header_of, id_claims_of, mint, token_of, Issuer, Signer};
use super::worker;

const PROMPT: &str = r#"{"prompt":"/events 1 1"}"#;

/// How long a request with a token never seen before takes, and its status.
async fn timed_request(target: &Target, issuer: &str) -> (u16, Duration) {
    let token = token_of(issuer, &unique("slow-issuer"));
    let started = Instant::now();
    let reply = send(invoke(target, Some(&token), PROMPT)).await;
    (reply.status, started.elapsed())
}

async fn check(target: &Target, issuer: &Issuer) {
    let name = target.name();
    let (status, _) = timed_request(target, &issuer.url).await;
    assert_eq!(status, 200, "[{name}] the first request fetches the keys");
    // From now on the issuer takes 8 s; a refresh is allowed a minute
    // after the first fetch.
    issuer.set_delay(Duration::from_secs(8));
    tokio::time::sleep(Duration::from_secs(61)).await;
    let before = issuer.requests().len();
    for _ in 0..3 {
        let (status, took) = timed_request(target, &issuer.url).await;
        assert_eq!(status, 200, "[{name}] served with the stale keys");
        assert!(
            took < Duration::from_secs(3),
            "[{name}] a request waited {took:?} for a slow issuer"
        );
    }
    assert!(
        issuer.requests().len() > before,
        "[{name}] the stale key set was refreshed (the issuer was asked)"
    );
}

/// An issuer whose key set is stale as soon as it is fetched.
async fn stale_issuer() -> Issuer {
    let issuer = Issuer::spawn().await;
    issuer.set_cache_control("no-cache");
    issuer
}

#[tokio::test]
async fn a_slow_issuer_never_delays_requests_that_stale_keys_can_serve() {
    let native = async {
        let issuer = stale_issuer().await;
        let (_server, gateway) = spawn_native(&vars_with(&[("JWT_ISSUER", &issuer.url)])).await;
        check(&gateway, &issuer).await;
    };
    let on_worker = async {
        if TargetKind::Worker.left_out("a_slow_issuer_never_delays_requests") {
            return;
        }
        let issuer = stale_issuer().await;
        let vars = vars_with(&[("JWT_ISSUER", &issuer.url)]);
        let worker = child::own(TargetKind::Worker, move |logs| {
            worker::start_named("slow-issuer", &vars, logs)
        })
        .await;
        check(&worker.target, &issuer).await;
    };
    futures::join!(native, on_worker);
}

#[tokio::test]
async fn native_a_rotated_key_is_fetched_once_a_fetch_is_allowed() {
    let issuer = Issuer::spawn().await;
    let (_server, gateway) = spawn_native(&vars_with(&[("JWT_ISSUER", &issuer.url)])).await;
    // A fresh subject each time: no verified-token cache.
    let status = |signer: Signer| {
        let claims = id_claims_of(&issuer.url, &unique("rotation"));
        let token = mint(signer, &header_of(signer), &claims);
        let gateway = &gateway;
        async move { send(invoke(gateway, Some(&token), PROMPT)).await.status }
    };
    assert_eq!(status(Signer::Issuer).await, 200, "the first key");
    issuer.rotate();
    let asked = issuer.requests().len();
    assert_eq!(
        status(Signer::Rotated).await,
        401,
        "a new key within a minute of the last fetch"
    );
    assert_eq!(
        issuer.requests().len(),
        asked,
        "the issuer was asked again within a minute"
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(status(Signer::Rotated).await, 200, "the new key, fetched");
    assert!(issuer.requests().len() > asked, "the issuer was asked");
    assert_eq!(status(Signer::Issuer).await, 401, "the old key is gone");
}
