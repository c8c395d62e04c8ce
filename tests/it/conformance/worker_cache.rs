//! The Worker shares the issuer's key set across isolates through the Cache
//! API (issue 4, item 2: "the key set is fetched with Fetch and cached
//! across requests of an isolate, and across isolates with the Cache API").
//!
//! Two `wrangler dev` runs one after the other are two workerd processes,
//! hence two isolates with nothing in memory in common; what they share is
//! Miniflare's persisted Cache API (`--persist-to`, [`worker::start_with_state`]).
//! Instance A verifies a token, which makes it fetch the key set from the
//! issuer and put it in `caches.default`. Then the issuer fails every
//! request, and instance B, on A's state, must still accept a token without
//! asking the issuer anything: it adopted A's key set. Instance C, the same
//! but on an empty state, answers 503 `auth_unavailable`: without the cache
//! the issuer's failure does show, so B's 200 is the cache's doing.
//!
//! Left out with `AGENT_EDGE_SKIP_WORKER=1`. The demo origin and the issuer
//! are this test's own, so it does not start the suite's shared stack.
//!
//! Authentication: `docs/interface.md`, "The request".

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use agent_edge::demo::origin::{self as demo, DemoOriginSettings};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::client::{client, data_events, delta_texts, invoke, send, unique, Reply};
use super::stack::{bind, shared_vars, LogBuffer, Target, TargetKind};
use super::tap::OriginTap;
use super::tokens::{issuer_documents, token_of, Issuer};
use super::worker::{self, WorkerInstance};

/// Three numbered deltas, 1 ms apart.
const PROMPT: &str = r#"{"prompt":"/events 3 1"}"#;
/// Where the Worker keeps the key set in the Cache API
/// (`KEY_SET_CACHE_PREFIX` in `src/platform/workers.rs`).
const CACHE_KEY_PREFIX: &str = "https://agent-edge.internal/jwks?issuer=";
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const JWKS_PATH: &str = "/.well-known/jwks.json";

/// An issuer that serves its documents until it is switched down, then
/// answers 500 to everything; it notes every request.
struct SwitchableIssuer {
    url: String,
    down: Arc<AtomicBool>,
    /// Each request's path, and whether the issuer was down for it.
    requests: Arc<Mutex<Vec<(String, bool)>>>,
}

impl SwitchableIssuer {
    async fn spawn() -> SwitchableIssuer {
        let listener = bind().await;
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let documents = Arc::new(issuer_documents(&url));
        let down = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (is_down, log) = (down.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (documents, is_down, log) = (documents.clone(), is_down.clone(), log.clone());
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let path = request.uri().path().to_owned();
                    let down = is_down.load(Ordering::SeqCst);
                    log.lock().unwrap().push((path.clone(), down));
                    let document = documents
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map(|(_, body)| body.to_string());
                    let response = match document {
                        Some(body) if !down => http::Response::builder()
                            .header("content-type", "application/json")
                            .header("cache-control", "max-age=600")
                            .body(Full::new(Bytes::from(body))),
                        Some(_) => http::Response::builder()
                            .status(500)
                            .body(Full::new(Bytes::from_static(b"issuer down"))),
                        None => http::Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::new())),
                    };
                    async move { Ok::<_, Infallible>(response.expect("static response")) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        SwitchableIssuer {
            url,
            down,
            requests,
        }
    }

    fn set_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<(String, bool)> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests made while the issuer was down.
    fn requests_while_down(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter_map(|(path, down)| down.then_some(path))
            .collect()
    }
}

#[tokio::test]
async fn a_new_isolate_adopts_the_key_set_another_put_in_the_cache_api() {
    if worker::skipped() {
        eprintln!("worker_cache: skipped ({}=1)", worker::SKIP_VAR);
        return;
    }
    let origin = demo::spawn(DemoOriginSettings::demo(), bind().await)
        .await
        .expect("demo origin");
    let tap = OriginTap::spawn(origin.addr).await;
    let issuer = SwitchableIssuer::spawn().await;
    let vars = shared_vars(
        &origin,
        &tap,
        &Issuer {
            url: issuer.url.clone(),
        },
    );
    let shared_state = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("tmp")
        .join(format!(
            "conformance-worker-{}-jwks-cache-state",
            std::process::id()
        ));
    // Left by an earlier process with the same id, it would spare A its fetch.
    let _ = std::fs::remove_dir_all(&shared_state);

    // A: verifying a token fetches the key set, and puts it in the cache.
    let a = start("jwks-cache-a", &vars, Some(&shared_state)).await;
    let reply = send(invoke(
        &a.target,
        Some(&token_of(&issuer.url, &unique("a"))),
        PROMPT,
    ))
    .await;
    assert_streamed_answer(&reply, &format!("A, issuer up ({})", a.transcript()));
    let fetched: Vec<String> = issuer.requests().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        fetched,
        [DISCOVERY_PATH, JWKS_PATH],
        "A fetches discovery, then the key set, once"
    );
    a.stop().await;
    let stored = files_containing(&shared_state, CACHE_KEY_PREFIX.as_bytes());
    assert!(
        !stored.is_empty(),
        "A's persisted state ({}) holds no Cache API entry under {CACHE_KEY_PREFIX}",
        shared_state.display()
    );

    issuer.set_down();

    // B: a new process on A's state; the issuer would fail it.
    let b = start("jwks-cache-b", &vars, Some(&shared_state)).await;
    let reply = send(invoke(
        &b.target,
        Some(&token_of(&issuer.url, &unique("b"))),
        PROMPT,
    ))
    .await;
    assert_streamed_answer(
        &reply,
        &format!("B, issuer down, A's cache ({})", b.transcript()),
    );
    let asked = issuer.requests_while_down();
    assert!(
        asked.is_empty(),
        "B asked the issuer {asked:?} instead of adopting the cached key set ({})",
        b.transcript()
    );
    b.stop().await;

    // C: the same with an empty state: nothing to adopt, the issuer fails.
    let c = start("jwks-cache-c", &vars, None).await;
    let reply = send(invoke(
        &c.target,
        Some(&token_of(&issuer.url, &unique("c"))),
        PROMPT,
    ))
    .await;
    assert_eq!(
        reply.status,
        503,
        "C: {} ({})",
        reply.text(),
        c.transcript()
    );
    reply.assert_error(503, "auth_unavailable");
    assert!(
        !issuer.requests_while_down().is_empty(),
        "C answered 503 without asking the issuer"
    );
    c.stop().await;
}

/// A running Worker of this test and the [`Target`] to send requests to.
struct Started {
    instance: WorkerInstance,
    target: Target,
}

impl Started {
    /// Everything its wrangler printed, for failure messages.
    fn transcript(&self) -> String {
        self.instance.dir.join("wrangler.log").display().to_string()
    }

    /// Stops wrangler and waits until its port is closed, so that the next
    /// instance on the same state is alone with it.
    async fn stop(self) {
        let Started { instance, target } = self;
        tokio::task::spawn_blocking(move || drop(instance))
            .await
            .expect("stopping wrangler");
        assert!(
            client().get(target.url("/ping")).send().await.is_err(),
            "{} still answers after its wrangler was stopped",
            target.base_url
        );
    }
}

/// Starts `wrangler dev` named `name`, on `state` or on a fresh one.
async fn start(name: &str, vars: &[(String, String)], state: Option<&Path>) -> Started {
    let logs = LogBuffer::default();
    let (name, vars, state, sink) = (
        name.to_owned(),
        vars.to_vec(),
        state.map(Path::to_path_buf),
        logs.clone(),
    );
    let instance = tokio::task::spawn_blocking(move || match state {
        Some(state) => worker::start_with_state(&name, &vars, sink, &state),
        None => worker::start_named(&name, &vars, sink),
    })
    .await
    .expect("the starting thread")
    .unwrap_or_else(|why| panic!("{why}"));
    let target = Target {
        kind: TargetKind::Worker,
        base_url: instance.base_url.clone(),
        logs,
        cold_start: Vec::new(),
    };
    Started { instance, target }
}

/// 200 with the demo agent's three deltas, streamed as SSE.
fn assert_streamed_answer(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", reply.text());
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream")),
        "{what}: content-type {:?}",
        reply.header("content-type")
    );
    let events: Vec<Value> = data_events(&reply.text());
    assert_eq!(
        delta_texts(&events),
        ["1", " 2", " 3"],
        "{what}: {events:?}"
    );
}

/// The files under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}
