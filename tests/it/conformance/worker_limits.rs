//! The Worker with `LIMITS_STORE=durable_object` (issue 16): token budgets
//! and `RATE_LIMIT_PER_MINUTE` counted in the `LimitsCounter` Durable Object
//! of the subject, which `wrangler dev` runs in workerd with its SQLite
//! storage under `--persist-to` ([`worker::start_with_state`]).
//!
//! One `wrangler dev` answers streams of known usage (the demo agent's
//! `/events N 1`: `3 + N` tokens, in its closing Strands metadata):
//! `GET /usage` reports them to the token, the RateLimit fields are on every
//! answer, the stream admitted under the budget overruns it, and then the
//! subject gets 429 `token_budget_exhausted` with the seconds left in the
//! window and no origin request; another subject runs into the request
//! limit, counted in its object. Then that `wrangler dev` stops, a second
//! one starts on the same state directory (a new workerd, nothing in
//! memory in common), and the counts are still there.
//!
//! The window is chosen so that the whole test falls inside one: at least
//! [`WINDOW_MARGIN_SECONDS`] left, more than the longest build-and-start.
//! Left out with `AGENT_EDGE_SKIP_WORKER=1`. The demo origin and the issuer
//! are this test's own, so it needs none of the shared stack.
//!
//! A second test sends the object what the gateway never would, through
//! Miniflare (`tests/workers/limits_object.mjs`): it answers 400, never
//! panics, and caps counts where JavaScript numbers stop being exact.
//!
//! Limits: `docs/interface.md`, "Token budgets and request limits".

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_edge::civil::rfc3339;
use agent_edge::demo::origin::{self as demo, DemoOrigin, DemoOriginSettings};
use agent_edge::gateway::limits::{Bounded, Counts, StoreCall, Window};
use serde_json::{json, Value};

use super::child::{self, Own};
use super::client::{client, data_events, delta_texts, invoke, send, unique, Reply};
use super::stack::{bind, shared_vars, Target, TargetKind};
use super::tap::OriginTap;
use super::tokens::{token_of, unix_now, Issuer};
use super::worker;
use super::worker_cache::stop;

const BUDGET: u64 = 20;
const REQUESTS_PER_MINUTE: u64 = 30;
/// Streams of one subject sent at once.
const CONCURRENT: usize = 24;
/// Long enough that a stalled stream ends only when its client leaves.
const ORIGIN_IDLE_TIMEOUT_SECONDS: u64 = 30;
/// Seconds the budget window has left when the test starts: more than
/// `wrangler dev` may take to build and start (900 s by default).
const WINDOW_MARGIN_SECONDS: u64 = 1000;

#[tokio::test]
async fn worker_counts_limits_in_a_durable_object_that_survives_a_restart() {
    if TargetKind::Worker.left_out("worker_limits") {
        return;
    }
    let origin = demo::spawn(DemoOriginSettings::demo(), bind().await)
        .await
        .expect("demo origin");
    let tap = OriginTap::spawn(origin.addr).await;
    let issuer = Issuer::spawn().await;
    let window = budget_window(unix_now());
    let mut vars = shared_vars(&origin, &tap, &issuer);
    vars.retain(|(name, _)| {
        !["RATE_LIMIT_PER_MINUTE", "ORIGIN_IDLE_TIMEOUT_SECONDS"].contains(&name.as_str())
    });
    for (name, value) in [
        (
            "ORIGIN_IDLE_TIMEOUT_SECONDS",
            ORIGIN_IDLE_TIMEOUT_SECONDS.to_string(),
        ),
        ("LIMITS_STORE", "durable_object".to_owned()),
        ("TOKEN_BUDGET", BUDGET.to_string()),
        ("TOKEN_BUDGET_WINDOW_SECONDS", window.seconds.to_string()),
        ("RATE_LIMIT_PER_MINUTE", REQUESTS_PER_MINUTE.to_string()),
    ] {
        vars.push((name.to_owned(), value));
    }
    let state = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("tmp")
        .join(format!(
            "conformance-worker-{}-limits-state",
            std::process::id()
        ));
    let _ = std::fs::remove_dir_all(&state);
    let spender = token_of(&issuer.url, &unique("budget"));
    let caller = token_of(&issuer.url, &unique("requests"));
    let policy = format!(
        "\"tokens\";q={BUDGET};w={}, \"requests\";q={REQUESTS_PER_MINUTE};w=60",
        window.seconds
    );

    let first = start("first", &vars, &state).await;
    let t = &first.target;
    // Each stream is admitted while the tokens used are under the budget,
    // and charged its origin's usage (`/events N 1`: 3 + N) when it ends.
    let mut used = 0;
    for n in [3, 10, 1] {
        let reply = send(invoke(t, Some(&spender), prompt(n))).await;
        assert_eq!(reply.status, 200, "/events {n}: {}", reply.text());
        assert_eq!(delta_texts(&data_events(&reply.text())).len(), n as usize);
        assert_eq!(reply.header("ratelimit-policy"), Some(policy.as_str()));
        assert_remaining(&reply, "tokens", BUDGET - used, Some(window));
        let log = t.request_log(reply.header("x-request-id").unwrap()).await;
        assert_eq!(log["tokens_charged"], 3 + n, "{log}");
        used += 3 + n;
        assert_tokens_used(t, &spender, used, window).await;
    }
    assert!(used > BUDGET, "the last stream overran the budget: {used}");
    assert_exhausted(t, &origin, &spender, window).await;
    let racer = token_of(&issuer.url, &unique("racer"));
    let raced = concurrent_charges_add_up(t, &racer, window).await;
    let requests_minute = requests_run_into_their_limit(t, &caller).await;
    let leaver = token_of(&issuer.url, &unique("leaver"));
    let estimate = leaving_early_is_charged_the_estimate(t, &leaver, window).await;
    stop(first).await;

    // A new workerd on the same state: the objects' counts are still there.
    let second = start("second", &vars, &state).await;
    let t = &second.target;
    assert_tokens_used(t, &spender, used, window).await;
    assert_exhausted(t, &origin, &spender, window).await;
    assert_tokens_used(t, &leaver, estimate, window).await;
    assert_tokens_used(t, &racer, raced, window).await;
    let before = unix_now() / 60;
    let usage = usage(t, &caller).await;
    if before == requests_minute && unix_now() / 60 == requests_minute {
        assert_eq!(usage["requests"]["used"], REQUESTS_PER_MINUTE, "{usage}");
        let reply = send(invoke(t, Some(&caller), "not json")).await;
        reply.assert_error(429, "rate_limited");
    } else if before > requests_minute {
        // The restart took us into the next minute: its window is fresh.
        assert_eq!(usage["requests"]["used"], 0, "{usage}");
    }
    assert_eq!(
        Window::containing(unix_now(), window.seconds),
        window,
        "the test outlasted its window"
    );
    stop(second).await;
}

/// A window of 30 to 60 minutes with [`WINDOW_MARGIN_SECONDS`] left at `now`.
fn budget_window(now: u64) -> Window {
    (1800..=3600)
        .map(|seconds| Window::containing(now, seconds))
        .find(|w| w.end() - now >= WINDOW_MARGIN_SECONDS)
        .expect("a window length with enough time left")
}

fn prompt(n: u64) -> String {
    json!({ "prompt": format!("/events {n} 1") }).to_string()
}

/// Starts `wrangler dev` named `limits-<label>` on `state`.
async fn start(label: &str, vars: &[(String, String)], state: &Path) -> Own {
    let name = format!("limits-{label}");
    let (vars, state) = (vars.to_vec(), state.to_path_buf());
    child::own(TargetKind::Worker, move |logs| {
        worker::start_with_state(&name, &vars, logs, Some(&state))
    })
    .await
}

/// `RateLimit` says `remaining` of `quota` is left (tokens: before this
/// request's own), resetting when `window` ends if given.
fn assert_remaining(reply: &Reply, quota: &str, remaining: u64, window: Option<Window>) {
    let field = reply.header("ratelimit").expect("a RateLimit field");
    let item = field
        .split(", ")
        .find(|item| item.starts_with(&format!("\"{quota}\";")))
        .unwrap_or_else(|| panic!("no {quota} in RateLimit: {field}"));
    assert!(
        item.starts_with(&format!("\"{quota}\";r={remaining};t=")),
        "RateLimit: {field}; {remaining} {quota} left expected"
    );
    if let Some(window) = window {
        let t: u64 = item.rsplit("t=").next().unwrap().parse().unwrap();
        assert_near(t, window.seconds_left(unix_now()), "RateLimit t");
    }
}

fn assert_near(actual: u64, expected: u64, what: &str) {
    assert!(
        actual.abs_diff(expected) <= 2,
        "{what}: {actual}, expected about {expected}"
    );
}

async fn usage(t: &Target, token: &str) -> Value {
    let reply = send(client().get(t.url("/usage")).bearer_auth(token)).await;
    assert_eq!(reply.status, 200, "/usage: {}", reply.text());
    assert!(reply.header("ratelimit").is_some(), "RateLimit on /usage");
    reply.json()
}

/// `GET /usage` reports `used` tokens in `window`.
async fn assert_tokens_used(t: &Target, token: &str, used: u64, window: Window) {
    let usage = usage(t, token).await;
    assert_eq!(
        usage["tokens"],
        json!({
            "limit": BUDGET,
            "used": used,
            "remaining": BUDGET.saturating_sub(used),
            "resetsAt": rfc3339(window.end()),
        }),
        "{usage}"
    );
}

/// A spent budget: 429 `token_budget_exhausted`, `Retry-After` the seconds
/// left in the window, nothing left in `RateLimit`, no origin request.
async fn assert_exhausted(t: &Target, origin: &DemoOrigin, token: &str, window: Window) {
    let before = origin.requests().len();
    let reply = send(invoke(t, Some(token), prompt(1))).await;
    reply.assert_error(429, "token_budget_exhausted");
    let retry_after: u64 = reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert_near(retry_after, window.seconds_left(unix_now()), "Retry-After");
    assert_remaining(&reply, "tokens", 0, Some(window));
    assert_eq!(origin.requests().len(), before, "the origin was asked");
}

/// `RATE_LIMIT_PER_MINUTE` requests pass (each counted, then refused for
/// its body), the next one is 429 `rate_limited`; the minute they were
/// counted in (Unix minutes).
async fn requests_run_into_their_limit(t: &Target, token: &str) -> u64 {
    // Not across a minute's end, which would start a fresh count.
    if 60 - unix_now() % 60 < 5 {
        tokio::time::sleep(Duration::from_secs(6)).await;
    }
    let minute = unix_now() / 60;
    for left in (0..REQUESTS_PER_MINUTE).rev() {
        let reply = send(invoke(t, Some(token), "not json")).await;
        reply.assert_error(400, "invalid_json");
        assert_remaining(&reply, "requests", left, None);
    }
    let reply = send(invoke(t, Some(token), "not json")).await;
    reply.assert_error(429, "rate_limited");
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert_near(retry_after, 60 - unix_now() % 60, "Retry-After");
    assert_eq!(unix_now() / 60, minute, "counted within one minute");
    minute
}

/// A client that leaves before the usage event: its stream is charged the
/// estimate `ceil(request bytes / 4) + ceil(text bytes / 4)` after it left
/// (`waitUntil`), well before the origin's idle timeout would end the
/// stream (`wrangler dev` notices a client gone in about 3 s). The estimate.
async fn leaving_early_is_charged_the_estimate(t: &Target, token: &str, window: Window) -> u64 {
    // Two deltas ("1", " 2": 3 text bytes), then silence.
    let body = r#"{"prompt":"/stall-after 2"}"#;
    let request_id = unique("limits-leaver");
    let mut response = invoke(t, Some(token), body)
        .header("x-request-id", &request_id)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let mut seen = Vec::new();
    while String::from_utf8_lossy(&seen)
        .matches("contentBlockDelta")
        .count()
        < 2
    {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("events within 5 s")
            .expect("a chunk")
            .expect("not the end yet");
        seen.extend_from_slice(&chunk);
    }
    drop(response);
    let left = Instant::now();
    let estimate = (body.len() as u64).div_ceil(4) + 3u64.div_ceil(4);
    loop {
        let usage = usage(t, token).await;
        if usage["tokens"]["used"] == estimate {
            break;
        }
        assert!(
            left.elapsed() < Duration::from_secs(ORIGIN_IDLE_TIMEOUT_SECONDS / 2),
            "not charged {estimate} tokens after the client left: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Written before the charge was sent.
    let log = t.request_log(&request_id).await;
    assert_eq!(log["outcome"], "client_closed", "{log}");
    assert_eq!(log["usage_estimated"], true, "{log}");
    assert_eq!(log["tokens_charged"], estimate, "{log}");
    assert_tokens_used(t, token, estimate, window).await;
    estimate
}

/// [`CONCURRENT`] streams of one subject at once (`/events 1 1`: 4 tokens
/// each): those admitted (at least the budget's worth) are all charged, none
/// lost, the others refused. The tokens used.
async fn concurrent_charges_add_up(t: &Target, token: &str, window: Window) -> u64 {
    let replies =
        futures::future::join_all((0..CONCURRENT).map(|_| send(invoke(t, Some(token), prompt(1)))))
            .await;
    let mut admitted = 0;
    for reply in &replies {
        if reply.status == 429 {
            reply.assert_error(429, "token_budget_exhausted");
        } else {
            assert_eq!(reply.status, 200, "{}", reply.text());
            admitted += 1;
        }
    }
    assert!(admitted * 4 >= BUDGET, "only {admitted} admitted");
    let used = admitted * 4;
    assert_tokens_used(t, token, used, window).await;
    used
}

/// Bodies that are not calls answer 400; calls answer the counts of
/// `limits::apply`, a count capped at 2^53 - 1. On the bundle that
/// `wrangler dev` runs, built first if needed.
#[tokio::test]
async fn the_limits_object_answers_400_to_what_is_not_a_call() {
    if TargetKind::Worker.left_out("worker_limits_object") {
        return;
    }
    let malformed = [
        "",
        "not json",
        "[]",
        r#"{"charge":{}}"#,
        r#"{"drop":{"subject":"s"}}"#,
        r#"{"charge":{"subject":"s","window":{"start":-1,"seconds":60},"tokens":1}}"#,
        r#"{"charge":{"subject":"s","window":{"start":0,"seconds":60},"tokens":1e999}}"#,
    ];
    let window = Window::containing(unix_now(), 60);
    let subject = "s".to_owned();
    let bounded = Some(Bounded { window, limit: 10 });
    let calls = [
        StoreCall::Admit {
            subject: subject.clone(),
            tokens: bounded,
            requests: bounded,
        },
        StoreCall::Charge {
            subject: subject.clone(),
            window,
            tokens: 7,
        },
        StoreCall::Charge {
            subject: subject.clone(),
            window,
            tokens: u64::MAX,
        },
        StoreCall::Read {
            subject,
            tokens: Some(window),
            requests: Some(window),
        },
    ];
    let max = (1u64 << 53) - 1;
    let expected = [
        (0, 1, true),
        (7, 0, false),
        (max, 0, false),
        (max, 1, false),
    ];
    let mut bodies: Vec<String> = malformed.iter().map(|b| (*b).to_owned()).collect();
    bodies.extend(calls.iter().map(|c| serde_json::to_string(c).unwrap()));

    let answers = tokio::task::spawn_blocking(move || object_answers(&bodies))
        .await
        .expect("the script's thread");
    let (refused, counted) = answers.split_at(malformed.len());
    for (body, answer) in malformed.iter().zip(refused) {
        assert_eq!(answer["status"], 400, "{body:?}: {answer}");
    }
    for ((call, answer), (tokens, requests, admitted)) in calls.iter().zip(counted).zip(expected) {
        assert_eq!(answer["status"], 200, "{call:?}: {answer}");
        let counts: Counts = serde_json::from_str(answer["body"].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{call:?}: {e}: {answer}"));
        assert_eq!(
            counts,
            Counts {
                tokens,
                requests,
                admitted
            },
            "{call:?}"
        );
    }
}

/// Builds the bundle (`scripts/build-worker.sh` skips an up-to-date one)
/// and runs `tests/workers/limits_object.mjs` on `bodies`: its answers.
/// Blocking.
fn object_answers(bodies: &[String]) -> Vec<Value> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new(root.join("scripts/build-worker.sh"))
        .current_dir(root)
        .output()
        .expect("scripts/build-worker.sh");
    assert!(
        built.status.success(),
        "scripts/build-worker.sh failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let mut node = Command::new("node")
        .arg(root.join("tests/workers/limits_object.mjs"))
        .arg(root.join("build"))
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node tests/workers/limits_object.mjs");
    let input = serde_json::to_vec(bodies).unwrap();
    node.stdin.take().unwrap().write_all(&input).unwrap();
    let output = node.wait_with_output().expect("the script's output");
    assert!(
        output.status.success(),
        "tests/workers/limits_object.mjs failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not the script's JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}
