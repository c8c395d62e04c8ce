//! The Worker shares the issuer's key set across isolates through the Cache
//! API (issue 4, item 2: "the key set is fetched with Fetch and cached
//! across requests of an isolate, and across isolates with the Cache API").
//!
//! Two `wrangler dev` runs one after the other are two workerd processes,
//! hence two isolates with nothing in memory in common; what they share is
//! Miniflare's persisted Cache API (`--persist-to`,
//! [`worker::start_with_state`]).
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

use std::path::{Path, PathBuf};

use agent_edge::demo::origin::{self as demo, DemoOriginSettings};
use serde_json::Value;

use super::child::{self, Own};
use super::client::{client, data_events, delta_texts, invoke, send, unique, Reply};
use super::stack::{bind, shared_vars, TargetKind};
use super::tap::OriginTap;
use super::tokens::{token_of, Issuer};
use super::worker;
use crate::issuer_support::{DISCOVERY_PATH, JWKS_PATH};

/// Three numbered deltas, 1 ms apart.
const PROMPT: &str = r#"{"prompt":"/events 3 1"}"#;
/// Where the Worker keeps the key set in the Cache API
/// (`KEY_SET_CACHE_PREFIX` in `src/platform/workers/key_cache.rs`).
const CACHE_KEY_PREFIX: &str = "https://agent-edge.internal/jwks?issuer=";

/// Requests made while the issuer was down.
fn requests_while_down(issuer: &Issuer) -> Vec<String> {
    issuer
        .requests()
        .into_iter()
        .filter_map(|(path, down)| down.then_some(path))
        .collect()
}

#[tokio::test]
async fn a_new_isolate_adopts_the_key_set_another_put_in_the_cache_api() {
    if TargetKind::Worker.left_out("worker_cache") {
        return;
    }
    let origin = demo::spawn(DemoOriginSettings::demo(), bind().await)
        .await
        .expect("demo origin");
    let tap = OriginTap::spawn(origin.addr).await;
    let issuer = Issuer::spawn().await;
    let vars = shared_vars(&origin, &tap, &issuer);
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
    let (a, reply) = start_and_ask("a", &vars, Some(&shared_state), &issuer).await;
    assert_streamed_answer(
        &reply,
        &format!("A, issuer up ({})", a.instance.transcript()),
    );
    let fetched: Vec<String> = issuer.requests().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        fetched,
        [DISCOVERY_PATH, JWKS_PATH],
        "A fetches discovery, then the key set, once"
    );
    stop(a).await;
    let stored = files_containing(&shared_state, CACHE_KEY_PREFIX.as_bytes());
    assert!(
        !stored.is_empty(),
        "A's persisted state ({}) holds no Cache API entry under {CACHE_KEY_PREFIX}",
        shared_state.display()
    );

    issuer.set_down(true);

    // B: a new process on A's state; the issuer would fail it.
    let (b, reply) = start_and_ask("b", &vars, Some(&shared_state), &issuer).await;
    let transcript = b.instance.transcript();
    assert_streamed_answer(&reply, &format!("B, issuer down, A's cache ({transcript})"));
    let asked = requests_while_down(&issuer);
    assert!(
        asked.is_empty(),
        "B asked the issuer {asked:?} instead of adopting the cached key set ({transcript})"
    );
    stop(b).await;

    // C: the same with an empty state: nothing to adopt, the issuer fails.
    let (c, reply) = start_and_ask("c", &vars, None, &issuer).await;
    let transcript = c.instance.transcript();
    assert_eq!(reply.status, 503, "C: {} ({transcript})", reply.text());
    reply.assert_error(503, "auth_unavailable");
    assert!(
        !requests_while_down(&issuer).is_empty(),
        "C answered 503 without asking the issuer"
    );
    stop(c).await;
}

/// Starts `wrangler dev` named `jwks-cache-<label>`, on `state` or on a
/// fresh one, and sends it an invocation with a token of `issuer`.
async fn start_and_ask(
    label: &str,
    vars: &[(String, String)],
    state: Option<&Path>,
    issuer: &Issuer,
) -> (Own, Reply) {
    let name = format!("jwks-cache-{label}");
    let (vars, state) = (vars.to_vec(), state.map(Path::to_path_buf));
    let worker = child::own(TargetKind::Worker, move |logs| {
        worker::start_with_state(&name, &vars, logs, state.as_deref())
    })
    .await;
    let token = token_of(&issuer.url, &unique(label));
    let reply = send(invoke(&worker.target, Some(&token), PROMPT)).await;
    (worker, reply)
}

/// Stops wrangler and waits until its port is closed, so that the next
/// instance on the same state is alone with it.
pub(super) async fn stop(worker: Own) {
    let Own { instance, target } = worker;
    tokio::task::spawn_blocking(move || drop(instance))
        .await
        .expect("stopping wrangler");
    assert!(
        client().get(target.url("/ping")).send().await.is_err(),
        "{} still answers after its wrangler was stopped",
        target.base_url
    );
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
