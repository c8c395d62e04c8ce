//! A slow issuer never delays a request that cached keys can serve: once
//! the key set is stale (here at once: `Cache-Control: no-cache`) and a
//! refresh is allowed again (a minute after the last fetch), the issuer
//! answers only after 8 s, and requests are still answered at once, with
//! the stale keys, while the refresh runs in the background (natively) or
//! for at most `STALE_REFRESH_WAIT_MS` (Workers). Each target gets an
//! issuer and a gateway of its own; the check takes a minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::client::{invoke, send, unique};
use super::stack::{spawn_native, vars_with, LogBuffer, Target, TargetKind};
use super::tokens::{issuer_documents, token_of};
use super::worker;

/// An issuer whose answers can be delayed, counting what it served.
struct SlowIssuer {
    url: String,
    delay_ms: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
}

async fn slow_issuer() -> SlowIssuer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind issuer");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let documents = Arc::new(issuer_documents(&url));
    let delay_ms = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let (delay, count) = (delay_ms.clone(), served.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (documents, delay, count) = (documents.clone(), delay.clone(), count.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let found = documents
                        .iter()
                        .find(|(path, _)| path == request.uri().path())
                        .map(|(_, body)| body.to_string());
                    let (delay, count) = (delay.clone(), count.clone());
                    async move {
                        count.fetch_add(1, Ordering::SeqCst);
                        let wait = delay.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        let response = match found {
                            Some(body) => http::Response::builder()
                                .header("content-type", "application/json")
                                .header("cache-control", "no-cache")
                                .body(Full::new(Bytes::from(body))),
                            None => http::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::new())),
                        };
                        Ok::<_, std::convert::Infallible>(response.expect("static response"))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    SlowIssuer {
        url,
        delay_ms,
        served,
    }
}

/// How long a request with a token never seen before takes, and its status.
async fn timed_request(target: &Target, issuer: &str) -> (u16, Duration) {
    let token = token_of(issuer, &unique("slow-issuer"));
    let started = Instant::now();
    let reply = send(invoke(target, Some(&token), r#"{"prompt":"/events 1 1"}"#)).await;
    (reply.status, started.elapsed())
}

async fn check(target: &Target, issuer: &SlowIssuer) {
    let name = target.name();
    let (status, _) = timed_request(target, &issuer.url).await;
    assert_eq!(status, 200, "[{name}] the first request fetches the keys");
    // From now on the issuer takes 8 s; a refresh is allowed a minute
    // after the first fetch.
    issuer.delay_ms.store(8_000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(61)).await;
    let before = issuer.served.load(Ordering::SeqCst);
    for _ in 0..3 {
        let (status, took) = timed_request(target, &issuer.url).await;
        assert_eq!(status, 200, "[{name}] served with the stale keys");
        assert!(
            took < Duration::from_secs(3),
            "[{name}] a request waited {took:?} for a slow issuer"
        );
    }
    assert!(
        issuer.served.load(Ordering::SeqCst) > before,
        "[{name}] the stale key set was refreshed (the issuer was asked)"
    );
}

#[tokio::test]
async fn a_slow_issuer_never_delays_requests_that_stale_keys_can_serve() {
    let native = async {
        let issuer = slow_issuer().await;
        let (_server, gateway) = spawn_native(&vars_with(&[("JWT_ISSUER", &issuer.url)])).await;
        check(&gateway, &issuer).await;
    };
    let on_worker = async {
        if worker::skipped() {
            return;
        }
        let issuer = slow_issuer().await;
        let vars = vars_with(&[("JWT_ISSUER", &issuer.url)]);
        let logs = LogBuffer::default();
        let started = {
            let logs = logs.clone();
            tokio::task::spawn_blocking(move || worker::start_named("slow-issuer", &vars, logs))
                .await
                .expect("the Worker's start")
        };
        let instance = started.unwrap_or_else(|why| panic!("[worker] {why}"));
        let target = Target {
            kind: TargetKind::Worker,
            base_url: instance.base_url.clone(),
            logs,
            cold_start: Vec::new(),
        };
        check(&target, &issuer).await;
        drop(instance);
    };
    futures::join!(native, on_worker);
}
