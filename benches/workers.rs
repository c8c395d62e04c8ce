//! Cloudflare Worker vs native gateway on loopback (issue 4, "Benchmarks"):
//! throughput, time to first byte and CPU time per request of the same
//! pipeline in `wrangler dev` and as the native server, in one run.
//!
//! Every target gets the same configuration: `AUTH=jwt` against an issuer
//! this bench serves (discovery document and key set over HTTP), SigV4 to the
//! demo AgentCore origin ([`agent_edge::demo::origin`]),
//! `DEFAULT_RESPONSE_MODE=transformed`, no rate limit. The prompt
//! `/events 520 0` makes the origin stream 520 Strands `contentBlockDelta`
//! events (about one per token of an LLM answer) whose text `1 2 3 … 520` is
//! 1,971 bytes: the "short answer of about 2 KB", rewritten into text plus
//! the trailer. The origin paces them on tokio's 1 ms timer even at delay 0,
//! so each event reaches the gateway as a chunk of its own and a request
//! lasts at least about 0.55 s whatever the gateway does; hence
//! [`NATIVE`]`.connections` concurrent connections, enough to keep the
//! gateway busy.
//!
//! Tokens are RS256 (2048-bit `tests/data/jwt/rsa-a`) ID tokens minted up
//! front with `jwt-compact`. *Fresh* tokens are each sent once per target, so
//! every request pays for a full signature verification; the *cached* token
//! is one token repeated, a hit in the gateway's verified-token cache. Either
//! way the gateway SigV4-signs the origin request and transforms the stream.
//!
//! Targets, one after the other:
//! - **native**: [`agent_edge::platform::native::spawn`] in this process, on
//!   a tokio runtime of its own.
//! - **worker**: the Worker bundle in wrangler's dev server (its
//!   `unstable_startWorker` API: the same proxy worker, Miniflare and
//!   `workerd` as `wrangler dev`) with the devtools inspector off. `wrangler
//!   dev` itself always attaches the inspector and enables its `Network`
//!   domain, which reports every chunk of every subrequest to the devtools
//!   proxy: that costs more CPU than the Worker, its memory grows by hundreds
//!   of MB per minute under load, and it answers 503 ("Your worker restarted
//!   mid-request") or resets connections with 8 concurrent streams.
//! - **wrangler dev**: the same bundle under `scripts/wrangler-dev.sh` (with
//!   `AGENT_EDGE_WORKER_PREBUILT=1`), as the issue asks, on a light load
//!   ([`WRANGLER_DEV`]) so that it survives, to show what the devtools cost.
//! - **workerd**: the same bundle in `workerd serve` alone, on a
//!   `workerd.capnp` written by this bench (the same modules, variables and
//!   compatibility date): no proxy worker, no Miniflare entry worker in front
//!   of it, so nearest to what runs on Cloudflare.
//! - **js relay**: a baseline of what any streaming Worker costs in this
//!   `workerd` on this machine: a few lines of JavaScript that fetch the
//!   native gateway's original-mode stream (which checks the token and signs)
//!   and rewrite it into the same text and trailer with a `TransformStream`,
//!   in `workerd` alone.
//! - **js pipe**: the floor: a Worker returning the native gateway's
//!   transformed answer as it is, which `workerd` pipes to the client without
//!   running any JavaScript per chunk; what remains is the runtime's own HTTP
//!   and stream handling of the same 520 chunks in and out.
//!
//! Per target, after a warm-up (V8 tiers the Worker's wasm up while it runs):
//! 1. **Time to first byte**: sequential requests on one keep-alive
//!    connection, from sending to the first body byte (the first text).
//! 2. **Requests per second**: concurrent keep-alive connections, each
//!    reading whole responses, for a fixed time with the cached token, then
//!    with fresh tokens (until the time or the pool runs out), then with the
//!    cached token and `/events 1 0` (one event: the per-request part of the
//!    cost without the per-event part).
//! 3. **CPU time per request** over each of those loads: the server's
//!    `utime + stime` clock ticks (`/proc/<pid>/stat`, `getconf CLK_TCK`)
//!    after minus before, divided by the requests answered. For the Worker
//!    in the dev server, the `workerd` process that runs it (the one that
//!    does not own the listening port: that one runs wrangler's proxy worker,
//!    reported beside it with wrangler's node process); for `workerd` alone,
//!    its process. That is the whole runtime with its HTTP stack and its side
//!    of the loopback `fetch`es, not just the isolate's time, so an upper
//!    bound of what Cloudflare bills (the **js pipe** row shows the part no
//!    Worker code runs in); the Worker cannot time itself, its clock does not
//!    advance during computation. For
//!    the native gateway, the sum over its runtime's threads
//!    (`/proc/self/task/*/stat`); the client and the demo origin run on
//!    other threads.
//!
//! Cloudflare's free plan allows 10 ms of CPU per request; the table marks
//! each CPU figure against it.
//!
//! The Worker is built with `scripts/build-worker.sh` (a no-op when up to
//! date) and its bundle copied aside, so that a rebuild by someone else
//! during the run cannot reload it; the dev servers run on a copy of
//! `wrangler.toml` pointing at that copy, without the `[build]` step and the
//! `[[ratelimits]]` binding (one subject sends thousands of requests; the
//! native gateway has no limit either). Each dev server runs in a process
//! group of its own, killed when its target is done. Their output goes to
//! `target/tmp/workers-bench-<pid>/*.log`. `AGENT_EDGE_SKIP_WORKER=1` benches
//! the native gateway only; `AGENT_EDGE_BENCH_ONLY=workerd,js pipe` (target
//! names, comma-separated) runs only those Worker targets.
//!
//! Run: `cargo bench --bench workers`. Without `--bench` (as `cargo test
//! --all-targets` runs bench targets) it prints a note and exits.

// Only the core may not read the clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use agent_edge::config::Config;
use agent_edge::demo::origin::{self as demo_origin, DemoOrigin, DemoOriginSettings};
use agent_edge::platform::native;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

#[path = "../tests/support/issuer.rs"]
#[allow(dead_code)] // the bench needs only the issuer's half of it
mod issuer_support;
use issuer_support::{header, id_claims, jwt_gateway_vars, mint, Issuer, Signer};

/// The demo origin streams `1 2 3 … 520` (1,971 bytes of text) in 520 events.
const ANSWER: Prompt = Prompt {
    body: r#"{"prompt":"/events 520 0"}"#,
    text_bytes: 1971,
};
/// The same text in deltas the size AgentCore sends (`002_*.txt`: 5 to 6
/// tokens, about 22 characters each): six numbers per delta, 87 events.
const ANSWER_IN_AGENTCORE_DELTAS: Prompt = Prompt {
    body: r#"{"prompt":"/events 520 0 6"}"#,
    text_bytes: 1971,
};
/// One event, `1`: what a request costs besides its events.
const ONE_EVENT: Prompt = Prompt {
    body: r#"{"prompt":"/events 1 0"}"#,
    text_bytes: 1,
};
const CPU_LIMIT_MS: f64 = 10.0;
const AUDIENCE: &str = "workers-bench";
const SKIP_WORKER_VAR: &str = "AGENT_EDGE_SKIP_WORKER";
/// Comma-separated names of the Worker targets to run (default: all).
const ONLY_VAR: &str = "AGENT_EDGE_BENCH_ONLY";
/// Thread name of the native gateway's runtime (at most 15 bytes: the kernel
/// truncates `comm`).
const GATEWAY_THREADS: &str = "bench-gateway";
/// Fresh tokens minted for the loads: enough for every target's 520-event
/// load; the native gateway may use up the one-event ones before the time is
/// up (a thousand requests still make a steady figure).
const FRESH_POOL: usize = 2000;
const FRESH_ONE_EVENT_POOL: usize = 1000;
const FRESH_AGENTCORE_DELTAS_POOL: usize = 1500;

/// How hard a target is driven.
struct Profile {
    connections: usize,
    /// Each of the cached and the fresh load.
    load: Duration,
    /// The one-event load.
    one_event_load: Duration,
    warm_up_cached: usize,
    warm_up_fresh: usize,
    /// Sequential requests, per token kind.
    ttfb_samples: usize,
    /// Whether the gateway checks the tokens (not the JS relay: the native
    /// gateway behind it does).
    fresh_tokens: bool,
}

/// The native gateway: 64 connections, as a request lasts at least 0.55 s.
const NATIVE: Profile = Profile {
    connections: 64,
    load: Duration::from_secs(10),
    one_event_load: Duration::from_secs(5),
    warm_up_cached: 200,
    warm_up_fresh: 100,
    ttfb_samples: 50,
    fresh_tokens: true,
};

/// The Worker in the dev server: 16 connections already keep its `workerd`
/// busy (it answers fewer than 16 requests a second), and with 64 the dev
/// server answers some of the first burst with 503.
const WORKER: Profile = Profile {
    connections: 16,
    ..NATIVE
};

/// `wrangler dev` with its devtools inspector, which cannot take more.
const WRANGLER_DEV: Profile = Profile {
    connections: 2,
    load: Duration::from_secs(10),
    one_event_load: Duration::from_secs(5),
    warm_up_cached: 10,
    warm_up_fresh: 10,
    ttfb_samples: 10,
    fresh_tokens: true,
};

/// The JavaScript baselines: the native gateway behind them checks the tokens.
const JS: Profile = Profile {
    fresh_tokens: false,
    ..WORKER
};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("workers bench: not run (only under `cargo bench --bench workers`)");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ticks_per_second = clock_ticks_per_second();

    // The demo origin and the issuer; the client; the native gateway: one
    // runtime each, so the gateway's threads can be accounted on their own.
    let services = runtime("bench-services");
    let client_runtime = runtime("bench-client");
    let gateway_runtime = runtime(GATEWAY_THREADS);

    let (demo, issuer_url) = services.block_on(async {
        let mut settings = DemoOriginSettings::demo();
        settings.word_delay = Duration::ZERO;
        let demo = demo_origin::spawn(settings, bind().await)
            .await
            .expect("demo origin");
        (demo, Issuer::spawn().await.url)
    });
    let vars = gateway_vars(&demo, &issuer_url);

    let warm_up_fresh = NATIVE.warm_up_fresh;
    let ttfb_fresh = NATIVE.ttfb_samples;
    let count = 1
        + warm_up_fresh
        + ttfb_fresh
        + FRESH_POOL
        + FRESH_ONE_EVENT_POOL
        + FRESH_AGENTCORE_DELTAS_POOL;
    eprintln!("minting {count} RS256 tokens...");
    let mut minted = mint_tokens(&issuer_url, count);
    let tokens = Tokens {
        cached: minted.remove(0),
        warm_up: minted.drain(..warm_up_fresh).collect(),
        ttfb: minted.drain(..ttfb_fresh).collect(),
        one_event: Arc::new(minted.drain(..FRESH_ONE_EVENT_POOL).collect()),
        agentcore_deltas: Arc::new(minted.drain(..FRESH_AGENTCORE_DELTAS_POOL).collect()),
        load: Arc::new(minted),
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .build()
        .expect("reqwest client");
    let bench = |target: &str, base_url: &str, meters: Vec<(String, CpuMeter)>, profile| {
        client_runtime.block_on(bench_target(
            target,
            &client,
            base_url,
            &tokens,
            Meters {
                meters,
                ticks_per_second,
            },
            profile,
        ))
    };

    let mut rows = Vec::new();
    let mut notes = Vec::new();

    let server = gateway_runtime.block_on(async {
        native::spawn(config_from(&vars), bind().await, Arc::new(|_line: &str| {}))
            .await
            .expect("native gateway")
    });
    eprintln!("native gateway on {}", server.url());
    let meters = vec![(
        "gateway threads".to_owned(),
        CpuMeter::Threads(GATEWAY_THREADS),
    )];
    match bench("native", &server.url(), meters, &NATIVE) {
        Ok(row) => rows.push(row),
        Err(why) => notes.push(format!("native: {why}")),
    }

    if std::env::var(SKIP_WORKER_VAR).is_ok_and(|v| v == "1") {
        notes.push(format!("Worker skipped ({SKIP_WORKER_VAR}=1)"));
    } else {
        let only = std::env::var(ONLY_VAR).ok();
        let only: Option<Vec<&str>> = only.as_deref().map(|list| list.split(',').collect());
        match WorkDir::prepare(&root, &vars, &server.url()) {
            Err(why) => notes.push(format!("Worker not benchmarked: {why}")),
            Ok(work) => {
                for (target, launch, profile) in [
                    ("worker", Launch::DevServer(&work.worker_config), &WORKER),
                    ("wrangler dev", Launch::WranglerDev, &WRANGLER_DEV),
                    ("workerd", Launch::Workerd(&work.workerd_worker), &WORKER),
                    ("js relay", Launch::Workerd(&work.workerd_js_relay), &JS),
                    ("js pipe", Launch::Workerd(&work.workerd_js_pipe), &JS),
                ] {
                    if !only.as_ref().is_none_or(|only| only.contains(&target)) {
                        continue;
                    }
                    let outcome = DevServer::start(&root, &work, target, launch).and_then(|dev| {
                        eprintln!("{target}: {} (output: {})", dev.base_url, dev.log.display());
                        let meters = dev.meters();
                        bench(target, &dev.base_url, meters, profile)
                    });
                    match outcome {
                        Ok(row) => rows.push(row),
                        Err(why) => notes.push(format!("{target}: {why}")),
                    }
                }
            }
        }
    }
    gateway_runtime.block_on(server.shutdown());
    services.block_on(demo.shutdown());

    print_table(&rows, &notes);
}

/// A runtime of two worker threads named `name`.
fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// The configuration every target gets, as environment variables.
fn gateway_vars(demo: &DemoOrigin, issuer_url: &str) -> Vec<(String, String)> {
    let extra = [
        ("DEFAULT_RESPONSE_MODE", "transformed"),
        ("KEEPALIVE_SECONDS", "15"),
    ];
    jwt_gateway_vars(demo.gateway_vars(), issuer_url, AUDIENCE, &extra)
}

fn config_from(vars: &[(String, String)]) -> Config {
    Config::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.clone())
    })
    .expect("the bench configuration is valid")
}

// ---- the issuer's tokens ----

/// `count` distinct RS256 ID tokens (one subject each), valid for two hours,
/// signed on two threads.
fn mint_tokens(issuer_url: &str, count: usize) -> Vec<String> {
    let header = header();
    let mint_one = |i: usize| {
        let claims = id_claims(issuer_url, AUDIENCE, &format!("bench-user-{i}"));
        mint(Signer::Issuer, &header, &claims)
    };
    let half = count / 2;
    std::thread::scope(|scope| {
        let first = scope.spawn(|| (0..half).map(mint_one).collect::<Vec<_>>());
        let second: Vec<String> = (half..count).map(mint_one).collect();
        let mut all = first.join().expect("minting thread");
        all.extend(second);
        all
    })
}

struct Tokens {
    /// Repeated: a verified-token cache hit after its first use.
    cached: String,
    warm_up: Vec<String>,
    ttfb: Vec<String>,
    /// Each sent at most once per target: the 520-event and the one-event
    /// fresh loads.
    load: Arc<Vec<String>>,
    one_event: Arc<Vec<String>>,
    agentcore_deltas: Arc<Vec<String>>,
}

// ---- the client ----

struct Prompt {
    body: &'static str,
    text_bytes: usize,
}

/// One transformed stream read to its end.
struct Invocation {
    time_to_first_byte: Duration,
}

async fn invoke(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    prompt: &Prompt,
) -> Result<Invocation, String> {
    let started = Instant::now();
    let mut response = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(prompt.body)
        .send()
        .await
        .map_err(|e| format!("request: {}", error_chain(&e)))?;
    let status = response.status();
    if status != http::StatusCode::OK {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("status {status}: {body}"));
    }
    let mut body = Vec::with_capacity(4096);
    let mut time_to_first_byte = None;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("body: {}", error_chain(&e)))?
    {
        time_to_first_byte.get_or_insert_with(|| started.elapsed());
        body.extend_from_slice(&chunk);
    }
    let body = String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let (text, trailer) = body
        .rsplit_once("\n----------\n")
        .ok_or_else(|| format!("no trailer in {body:?}"))?;
    if trailer.contains("\"error\"") {
        return Err(format!("the stream failed: {trailer}"));
    }
    if text.len() != prompt.text_bytes {
        return Err(format!(
            "{} bytes of text, expected {}",
            text.len(),
            prompt.text_bytes
        ));
    }
    Ok(Invocation {
        time_to_first_byte: time_to_first_byte.unwrap_or_default(),
    })
}

/// An error with its causes, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Which tokens a load sends, until its deadline.
enum TokenSource {
    /// One token, repeatedly.
    Repeat(String),
    /// Each token of the pool once, until the pool runs out.
    Pool(Arc<Vec<String>>, AtomicUsize),
}

impl TokenSource {
    fn pool(tokens: &[String]) -> TokenSource {
        TokenSource::Pool(Arc::new(tokens.to_vec()), AtomicUsize::new(0))
    }

    fn next(&self) -> Option<&str> {
        match self {
            TokenSource::Repeat(token) => Some(token),
            TokenSource::Pool(tokens, next) => tokens
                .get(next.fetch_add(1, Ordering::Relaxed))
                .map(String::as_str),
        }
    }
}

#[derive(Default)]
struct LoadResult {
    answered: usize,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

/// `connections` concurrent request loops until the deadline or the tokens
/// run out.
async fn load(
    client: &reqwest::Client,
    url: &str,
    prompt: &'static Prompt,
    tokens: TokenSource,
    connections: usize,
    duration: Duration,
) -> LoadResult {
    let tokens = Arc::new(tokens);
    let url: Arc<str> = url.into();
    let started = Instant::now();
    let deadline = started + duration;
    let mut loops = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, url, tokens) = (client.clone(), url.clone(), tokens.clone());
        loops.spawn(async move {
            let mut result = LoadResult::default();
            while Instant::now() < deadline {
                let Some(token) = tokens.next() else { break };
                match invoke(&client, &url, token, prompt).await {
                    Ok(_) => result.answered += 1,
                    Err(why) => {
                        result.errors += 1;
                        result.first_error.get_or_insert(why);
                    }
                }
            }
            result
        });
    }
    let mut total = LoadResult::default();
    while let Some(result) = loops.join_next().await {
        let result = result.expect("a load loop");
        total.answered += result.answered;
        total.errors += result.errors;
        if total.first_error.is_none() {
            total.first_error = result.first_error;
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// A load's figures.
struct Measure {
    answered: usize,
    rps: f64,
    /// ms per answered request, one per meter.
    cpu_ms: Vec<f64>,
}

struct Row {
    target: String,
    connections: usize,
    ttfb_cached_ms: Option<f64>,
    ttfb_fresh_ms: Option<f64>,
    cached: Measure,
    fresh: Option<Measure>,
    one_event: Measure,
    one_event_fresh: Option<Measure>,
    /// Fresh tokens where the target verifies them, else the cached one.
    agentcore_deltas: Measure,
    meter_names: Vec<String>,
    failures: Failures,
}

struct Meters {
    /// The first is the target's; the others are reported beside it.
    meters: Vec<(String, CpuMeter)>,
    ticks_per_second: f64,
}

impl Meters {
    fn ticks(&self) -> Vec<i64> {
        self.meters.iter().map(|(_, m)| m.ticks()).collect()
    }

    /// Runs `load` and measures it.
    async fn measure(
        &self,
        load: impl std::future::Future<Output = LoadResult>,
    ) -> (Measure, usize, Option<String>) {
        let before = self.ticks();
        let result = load.await;
        let after = self.ticks();
        let cpu_ms = before
            .iter()
            .zip(&after)
            .map(|(b, a)| ticks_to_ms(a - b, self.ticks_per_second) / result.answered.max(1) as f64)
            .collect();
        let measure = Measure {
            answered: result.answered,
            rps: result.answered as f64 / result.elapsed.as_secs_f64(),
            cpu_ms,
        };
        (measure, result.errors, result.first_error)
    }
}

async fn bench_target(
    target: &str,
    client: &reqwest::Client,
    base_url: &str,
    tokens: &Tokens,
    meters: Meters,
    profile: &Profile,
) -> Result<Row, String> {
    let url = format!("{base_url}/invocations");
    invoke(client, &url, &tokens.cached, &ANSWER)
        .await
        .map_err(|why| format!("the first request failed: {why}"))?;
    let connections = profile.connections;
    let mut failures = Failures::default();

    eprintln!("{target}: warming up");
    let forever = Duration::from_secs(3600);
    let warm_up = vec![tokens.cached.clone(); profile.warm_up_cached];
    let mut warm_ups = vec![TokenSource::pool(&warm_up)];
    if profile.fresh_tokens {
        warm_ups.push(TokenSource::pool(&tokens.warm_up[..profile.warm_up_fresh]));
    }
    for source in warm_ups {
        let result = load(client, &url, &ANSWER, source, connections, forever).await;
        failures.add(result.errors, result.first_error);
    }

    eprintln!("{target}: time to first byte");
    let mut cached_samples = Vec::new();
    let mut fresh_samples = Vec::new();
    for i in 0..profile.ttfb_samples {
        let mut kinds = vec![(&tokens.cached, &mut cached_samples)];
        if profile.fresh_tokens {
            kinds.push((&tokens.ttfb[i], &mut fresh_samples));
        }
        for (token, samples) in kinds {
            match invoke(client, &url, token, &ANSWER).await {
                Ok(invocation) => samples.push(invocation.time_to_first_byte),
                Err(why) => failures.add(1, Some(why)),
            }
        }
    }

    let mut measure = async |what: &str, prompt: &'static Prompt, tokens: TokenSource, time| {
        eprintln!("{target}: {what} for {time:?}");
        let (measure, errors, first_error) = meters
            .measure(load(client, &url, prompt, tokens, connections, time))
            .await;
        failures.add(errors, first_error);
        measure
    };
    let repeat = || TokenSource::Repeat(tokens.cached.clone());
    let pool = |tokens: &Arc<Vec<String>>| TokenSource::Pool(tokens.clone(), AtomicUsize::new(0));
    let cached = measure("520 events, cached token", &ANSWER, repeat(), profile.load).await;
    let mut fresh = None;
    if profile.fresh_tokens {
        let source = pool(&tokens.load);
        fresh = Some(measure("520 events, fresh tokens", &ANSWER, source, profile.load).await);
    }
    let time = profile.one_event_load;
    // The issue's case: a fresh token (where the target verifies tokens) and
    // a 2 KB answer as AgentCore would send it.
    let source = if profile.fresh_tokens {
        pool(&tokens.agentcore_deltas)
    } else {
        repeat()
    };
    let what = "87 events (AgentCore-sized deltas), fresh tokens";
    let agentcore_deltas = measure(what, &ANSWER_IN_AGENTCORE_DELTAS, source, time).await;
    let one_event = measure("1 event, cached token", &ONE_EVENT, repeat(), time).await;
    let mut one_event_fresh = None;
    if profile.fresh_tokens {
        let source = pool(&tokens.one_event);
        one_event_fresh = Some(measure("1 event, fresh tokens", &ONE_EVENT, source, time).await);
    }

    Ok(Row {
        target: target.to_owned(),
        connections,
        ttfb_cached_ms: median_ms(cached_samples),
        ttfb_fresh_ms: median_ms(fresh_samples),
        cached,
        fresh,
        one_event,
        one_event_fresh,
        agentcore_deltas,
        meter_names: meters.meters.iter().map(|(name, _)| name.clone()).collect(),
        failures,
    })
}

/// Failed requests in every phase of a target, warm-up included.
#[derive(Default)]
struct Failures {
    count: usize,
    first: Option<String>,
}

impl Failures {
    fn add(&mut self, count: usize, first: Option<String>) {
        self.count += count;
        if self.first.is_none() {
            self.first = first;
        }
    }
}

fn median_ms(mut samples: Vec<Duration>) -> Option<f64> {
    samples.sort_unstable();
    let median = samples.get(samples.len() / 2)?;
    Some(median.as_secs_f64() * 1e3)
}

fn print_table(rows: &[Row], notes: &[String]) {
    let ms = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.2}"));
    let cpu = |measure: Option<&Measure>| {
        measure.map_or("-".to_owned(), |m| {
            let verdict = if m.cpu_ms[0] <= CPU_LIMIT_MS {
                "ok"
            } else {
                "OVER"
            };
            format!("{:.2} {verdict:>4}", m.cpu_ms[0])
        })
    };
    let rps =
        |measure: Option<&Measure>| measure.map_or("-".to_owned(), |m| format!("{:.1}", m.rps));
    println!();
    println!(
        "AUTH=jwt (RS256, 2048-bit), SigV4 to the demo origin, transformed mode, loopback; \
         the answer: {} bytes of text in 520 events, or in 87 (AgentCore-sized deltas)",
        ANSWER.text_bytes
    );
    println!(
        "{:<12} {:>5} | {:>7} {:>7} | {:>8} {:>8} | {:>12} {:>12} {:>12} {:>12} {:>12} | {:>6}",
        "",
        "",
        "rps",
        "rps",
        "TTFB p50",
        "TTFB p50",
        "CPU ms/req",
        "CPU ms/req",
        "CPU ms/req",
        "CPU ms/req",
        "CPU ms/req",
        ""
    );
    println!(
        "{:<12} {:>5} | {:>7} {:>7} | {:>8} {:>8} | {:>12} {:>12} {:>12} {:>12} {:>12} | {:>6}",
        "target",
        "conns",
        "cached",
        "fresh",
        "cached",
        "fresh",
        "fresh",
        "cached",
        "87 ev fresh",
        "1 ev fresh",
        "1 ev cached",
        "failed"
    );
    for row in rows {
        println!(
            "{:<12} {:>5} | {:>7} {:>7} | {:>8} {:>8} | {:>12} {:>12} {:>12} {:>12} {:>12} | {:>6}",
            row.target,
            row.connections,
            rps(Some(&row.cached)),
            rps(row.fresh.as_ref()),
            ms(row.ttfb_cached_ms),
            ms(row.ttfb_fresh_ms),
            cpu(row.fresh.as_ref()),
            cpu(Some(&row.cached)),
            cpu(Some(&row.agentcore_deltas)),
            cpu(row.one_event_fresh.as_ref()),
            cpu(Some(&row.one_event)),
            row.failures.count,
        );
    }
    println!(
        "TTFB in ms; rps and CPU per answered request; fresh = a token never seen (RS256 verified), \
         cached = one token repeated (also for the 87-event load of targets that do not verify \
         tokens: the JS baselines); 87 ev = the same answer in AgentCore-sized deltas; \
         1 ev = the one-event stream"
    );
    println!("limit: {CPU_LIMIT_MS} ms of CPU per request (Cloudflare Workers free plan)");
    println!();
    for row in rows {
        let answered = |m: Option<&Measure>| m.map_or("-".to_owned(), |m| m.answered.to_string());
        println!(
            "{}: answered {} fresh, {} cached, {} 87-event, {} 1-event fresh, {} 1-event cached; CPU of {}",
            row.target,
            answered(row.fresh.as_ref()),
            answered(Some(&row.cached)),
            answered(Some(&row.agentcore_deltas)),
            answered(row.one_event_fresh.as_ref()),
            answered(Some(&row.one_event)),
            row.meter_names[0]
        );
        for (i, name) in row.meter_names.iter().enumerate().skip(1) {
            let cpu =
                |m: Option<&Measure>| m.map_or("-".to_owned(), |m| format!("{:.2}", m.cpu_ms[i]));
            println!(
                "  beside it, {name}: {} fresh, {} cached, {} 87-event, {} 1-event fresh, {} 1-event cached (ms/req)",
                cpu(row.fresh.as_ref()),
                cpu(Some(&row.cached)),
                cpu(Some(&row.agentcore_deltas)),
                cpu(row.one_event_fresh.as_ref()),
                cpu(Some(&row.one_event)),
            );
        }
        if let Some(error) = &row.failures.first {
            println!("  first failure: {error}");
        }
    }
    for note in notes {
        println!("note: {note}");
    }
}

// ---- CPU accounting from /proc ----

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

fn ticks_to_ms(ticks: i64, ticks_per_second: f64) -> f64 {
    ticks as f64 * 1e3 / ticks_per_second
}

/// `(comm, ppid, utime + stime)` of a `/proc/.../stat` file.
fn read_stat(path: &Path) -> Option<(String, u32, i64)> {
    let text = std::fs::read_to_string(path).ok()?;
    // comm is in parentheses and may hold spaces or parentheses itself.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    // From field 3 (state) on: ppid is field 4, utime 14, stime 15.
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: i64 = fields.get(11)?.parse().ok()?;
    let stime: i64 = fields.get(12)?.parse().ok()?;
    Some((comm, ppid, utime + stime))
}

/// Whose CPU time counts.
enum CpuMeter {
    /// This process's threads whose name starts with the prefix.
    Threads(&'static str),
    /// These processes.
    Processes(Vec<u32>),
}

impl CpuMeter {
    fn ticks(&self) -> i64 {
        match self {
            CpuMeter::Threads(prefix) => std::fs::read_dir("/proc/self/task")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|task| read_stat(&task.path().join("stat")))
                .filter(|(comm, _, _)| comm.starts_with(prefix))
                .map(|(_, _, ticks)| ticks)
                .sum(),
            CpuMeter::Processes(pids) => pids
                .iter()
                .filter_map(|pid| read_stat(&PathBuf::from(format!("/proc/{pid}/stat"))))
                .map(|(_, _, ticks)| ticks)
                .sum(),
        }
    }
}

/// `(pid, comm)` of `root` and every process below it.
fn descendants(root: u32) -> Vec<(u32, String)> {
    let processes: Vec<(u32, String, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let (comm, ppid, _) = read_stat(&entry.path().join("stat"))?;
            Some((pid, comm, ppid))
        })
        .collect();
    let mut tree = HashSet::from([root]);
    // Parents do not always have lower pids: iterate to a fixpoint.
    loop {
        let before = tree.len();
        for (pid, _, ppid) in &processes {
            if tree.contains(ppid) {
                tree.insert(*pid);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    processes
        .into_iter()
        .filter(|(pid, ..)| tree.contains(pid))
        .map(|(pid, comm, _)| (pid, comm))
        .collect()
}

/// Whether `pid` has the IPv4 socket listening on 127.0.0.1:`port` open.
fn listens_on(pid: u32, port: u16) -> bool {
    // /proc/net/tcp: "sl local_address rem_address st ... inode", hex
    // addresses, state 0A = LISTEN.
    let wanted = format!("0100007F:{port:04X}");
    let inodes: HashSet<String> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode = fields.get(9)?;
            (fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A"))
                .then(|| format!("socket:[{inode}]"))
        })
        .collect();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|link| inodes.contains(link.to_string_lossy().as_ref()))
}

// ---- the Worker in wrangler's dev server ----

/// The files the dev servers run on, under `target/tmp/workers-bench-<pid>`.
struct WorkDir {
    dir: PathBuf,
    /// `wrangler.toml` for the copied Worker bundle.
    worker_config: PathBuf,
    /// The gateway's variables, KEY="VALUE" lines.
    env_file: PathBuf,
    /// `workerd` configurations (`workerd.capnp` files): the Worker bundle,
    /// and the two JavaScript baselines in front of the native gateway.
    workerd_worker: PathBuf,
    workerd_js_relay: PathBuf,
    workerd_js_pipe: PathBuf,
}

/// How a dev server is started.
#[derive(Clone, Copy)]
enum Launch<'a> {
    /// wrangler's `unstable_startWorker` on this configuration, inspector off.
    DevServer(&'a Path),
    /// `scripts/wrangler-dev.sh` on the Worker's configuration.
    WranglerDev,
    /// `workerd serve` on this `workerd.capnp`: the runtime alone, without
    /// wrangler's proxy worker and Miniflare's entry worker.
    Workerd(&'a Path),
}

/// Starts a Worker with wrangler's dev server API, without the devtools
/// inspector; prints "Ready on <url>". Arguments: configuration, env file,
/// state directory.
const START_WORKER_JS: &str = include_str!("workers/start-worker.mjs");

/// The baseline: the native gateway's original-mode stream, rewritten into
/// the transformed text and trailer by a `TransformStream`.
const JS_RELAY_WORKER: &str = include_str!("workers/js-relay.js");

/// The floor of a streaming Worker: the native gateway's answer returned as
/// is, so `workerd` pipes it to the client without running JavaScript per
/// chunk. What is left is the runtime's own HTTP and stream handling.
const JS_PIPE_WORKER: &str = include_str!("workers/js-pipe.js");

/// The `workerd` configuration of [`workerd_capnp`], with `{modules}`,
/// `{compatibility_date}` and `{bindings}` to fill in.
const WORKERD_CAPNP: &str = include_str!("workers/workerd.capnp");

/// A `workerd.capnp` serving ES `modules` (name, file relative to the
/// configuration) with text `bindings` on a socket named `http` (its address
/// is given on the command line), fetching anything, loopback included.
fn workerd_capnp(
    modules: &[(&str, &str)],
    bindings: &[(String, String)],
    compatibility_date: &str,
) -> String {
    let quote = |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
    let modules: Vec<String> = modules
        .iter()
        .map(|(name, file)| {
            let kind = if name.ends_with(".wasm") {
                "wasm"
            } else {
                "esModule"
            };
            format!("(name = {}, {kind} = embed {})", quote(name), quote(file))
        })
        .collect();
    let bindings: Vec<String> = bindings
        .iter()
        .map(|(name, value)| format!("(name = {}, text = {})", quote(name), quote(value)))
        .collect();
    WORKERD_CAPNP
        .replace("{modules}", &modules.join(", "))
        .replace("{compatibility_date}", &quote(compatibility_date))
        .replace("{bindings}", &bindings.join(", "))
}

impl WorkDir {
    /// Builds the Worker and writes the dev servers' files.
    fn prepare(
        root: &Path,
        vars: &[(String, String)],
        native_url: &str,
    ) -> Result<WorkDir, String> {
        if !root.join("node_modules/.bin/wrangler").exists() {
            return Err("node_modules/.bin/wrangler is missing (run scripts/setup.sh)".into());
        }
        eprintln!("building the Worker (scripts/build-worker.sh)...");
        let built = Command::new(root.join("scripts/build-worker.sh"))
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("scripts/build-worker.sh: {e}"))?;
        if !built.success() {
            return Err(format!("scripts/build-worker.sh failed ({built})"));
        }

        let dir = root
            .join("target/tmp")
            .join(format!("workers-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bundle = dir.join("build");
        std::fs::create_dir_all(&bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
        // Under the build's lock, so a concurrent build cannot be half copied.
        let copied = Command::new("bash")
            .arg("-c")
            .arg(r#"exec 9>build/.agent-edge-build.lock && flock 9 && cp -r build/* "$0"/"#)
            .arg(&bundle)
            .current_dir(root)
            .status()
            .map_err(|e| format!("copying build/: {e}"))?;
        if !copied.success() || !bundle.join("worker/shim.mjs").exists() {
            return Err("copying build/ failed".into());
        }

        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
        };
        let manifest = std::fs::read_to_string(root.join("wrangler.toml"))
            .map_err(|e| format!("wrangler.toml: {e}"))?;
        let worker_config = dir.join("wrangler.toml");
        write(&worker_config, &bench_manifest(&manifest))?;
        let env_file = dir.join("vars.env");
        let env_text: String = vars
            .iter()
            .map(|(name, value)| {
                let value = value.replace('\\', "\\\\").replace('"', "\\\"");
                format!("{name}=\"{value}\"\n")
            })
            .collect();
        write(&env_file, &env_text)?;
        write(&dir.join("start-worker.mjs"), START_WORKER_JS)?;

        // The same bundle and variables for `workerd` alone; the baselines
        // get the native gateway's URL.
        let compatibility_date = manifest
            .lines()
            .find_map(|line| {
                let value = line.trim_start().strip_prefix("compatibility_date")?;
                Some(
                    value
                        .trim_start()
                        .strip_prefix('=')?
                        .trim()
                        .trim_matches('"'),
                )
            })
            .unwrap_or("2026-04-20");
        let workerd_config =
            |name: &str, modules: &[(&str, &str)], bindings: &[(String, String)]| {
                let path = dir.join(format!("{name}.capnp"));
                write(&path, &workerd_capnp(modules, bindings, compatibility_date))?;
                Ok::<PathBuf, String>(path)
            };
        let workerd_worker = workerd_config(
            "workerd-worker",
            &[
                ("index.js", "build/index.js"),
                ("index_bg.wasm", "build/index_bg.wasm"),
            ],
            vars,
        )?;
        write(&dir.join("js-relay.js"), JS_RELAY_WORKER)?;
        write(&dir.join("js-pipe.js"), JS_PIPE_WORKER)?;
        let upstream = [("UPSTREAM".to_owned(), native_url.to_owned())];
        let workerd_js_relay = workerd_config(
            "workerd-js-relay",
            &[("worker.js", "js-relay.js")],
            &upstream,
        )?;
        let workerd_js_pipe =
            workerd_config("workerd-js-pipe", &[("worker.js", "js-pipe.js")], &upstream)?;
        Ok(WorkDir {
            dir,
            worker_config,
            env_file,
            workerd_worker,
            workerd_js_relay,
            workerd_js_pipe,
        })
    }
}

/// A dev server in a process group of its own, killed on drop.
struct DevServer {
    child: Child,
    pid: u32,
    base_url: String,
    log: PathBuf,
    /// `workerd` alone: its one process is the target.
    runtime_only: bool,
}

impl DevServer {
    fn start(
        root: &Path,
        work: &WorkDir,
        target: &str,
        launch: Launch<'_>,
    ) -> Result<DevServer, String> {
        let name = target.replace(' ', "-");
        let state = work.dir.join(format!("state-{name}"));
        let mut known_url = None;
        let mut command = match launch {
            Launch::DevServer(config) => {
                let mut command = Command::new("node");
                command
                    .args(["--no-warnings", "--experimental-vm-modules"])
                    .arg(work.dir.join("start-worker.mjs"))
                    .arg(config)
                    .arg(&work.env_file)
                    .arg(&state)
                    .env("WRANGLER_SEND_METRICS", "false")
                    .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
                    .env("CI", "true");
                command
            }
            Launch::Workerd(config) => {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|listener| listener.local_addr())
                    .map_err(|e| format!("finding a free port: {e}"))?
                    .port();
                known_url = Some(format!("http://127.0.0.1:{port}"));
                let mut command = Command::new(root.join("node_modules/.bin/workerd"));
                command
                    .arg("serve")
                    .arg(config)
                    .arg(format!("--socket-addr=http=127.0.0.1:{port}"));
                command
            }
            Launch::WranglerDev => {
                let mut command = Command::new(root.join("scripts/wrangler-dev.sh"));
                command
                    .arg("--config")
                    .arg(&work.worker_config)
                    .arg("--env-file")
                    .arg(&work.env_file)
                    .arg("--persist-to")
                    .arg(&state)
                    .env("AGENT_EDGE_WORKER_PREBUILT", "1");
                command
            }
        };
        let mut child = command
            .current_dir(root)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the dev server: {e}"))?;
        let pid = child.id();

        // Drain both pipes for the whole run (the Worker logs every request)
        // into a file, keeping the tail for errors.
        let log = work.dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let file = Arc::new(Mutex::new(file));
        let tail = Arc::new(Mutex::new(Vec::<String>::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let outputs: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().expect("piped stdout")),
            Box::new(child.stderr.take().expect("piped stderr")),
        ];
        for output in outputs {
            let (tail, ready_tx, file) = (tail.clone(), ready_tx.clone(), file.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(file.lock().unwrap_or_else(|e| e.into_inner()), "{line}");
                    if let Some(url) = ready_url(&line) {
                        let _ = ready_tx.send(url);
                    }
                    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if tail.len() >= 30 {
                        tail.remove(0);
                    }
                    tail.push(line);
                }
            });
        }
        drop(ready_tx);
        let mut server = DevServer {
            child,
            pid,
            base_url: String::new(),
            log,
            runtime_only: matches!(launch, Launch::Workerd(_)),
        };
        let fail = |why: &str| {
            let tail = tail.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
            format!("the dev server did not start: {why}; its last output:\n{tail}")
        };
        server.base_url = match known_url {
            Some(url) => url,
            None => ready_rx
                .recv_timeout(Duration::from_secs(180))
                .map_err(|_| fail("no \"Ready on\" line"))?,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ping(&server.base_url) {
            if Instant::now() > deadline || server.child.try_wait().ok().flatten().is_some() {
                return Err(fail("/ping never answered"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(server)
    }

    /// The `workerd` running the Worker (the one not listening on the
    /// public port), then wrangler's proxy `workerd` and its node processes.
    fn meters(&self) -> Vec<(String, CpuMeter)> {
        if self.runtime_only {
            return vec![(
                format!("workerd (pid {})", self.pid),
                CpuMeter::Processes(vec![self.pid]),
            )];
        }
        let port: u16 = self
            .base_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let processes = descendants(self.pid);
        let named = |name: &str| -> Vec<u32> {
            processes
                .iter()
                .filter(|(_, comm)| comm == name)
                .map(|(pid, _)| *pid)
                .collect()
        };
        let (proxy, runtime): (Vec<u32>, Vec<u32>) = named("workerd")
            .into_iter()
            .partition(|pid| listens_on(*pid, port));
        vec![
            (
                format!("the Worker's workerd (pid {runtime:?})"),
                CpuMeter::Processes(runtime),
            ),
            (
                format!("wrangler's proxy workerd (pid {proxy:?})"),
                CpuMeter::Processes(proxy),
            ),
            (
                "wrangler's node".to_owned(),
                CpuMeter::Processes(named("node")),
            ),
        ]
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        // The whole group: node, workerd and esbuild.
        let group = format!("-{}", self.pid);
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// The repository's `wrangler.toml` for the bench: `main` on the copied
/// bundle, without the `[build]` step and the `[[ratelimits]]` binding.
fn bench_manifest(manifest: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in manifest.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            skipping = trimmed.starts_with("[build]") || trimmed.starts_with("[[ratelimits]]");
        }
        if skipping {
            continue;
        }
        if trimmed.starts_with("main ") || trimmed.starts_with("main=") {
            out.push_str("main = \"build/worker/shim.mjs\"\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `http://127.0.0.1:<port>` from a "Ready on http://..." line.
fn ready_url(line: &str) -> Option<String> {
    let rest = &line[line.find("Ready on ")? + "Ready on ".len()..];
    let url: String = rest
        .split_whitespace()
        .next()?
        .chars()
        .take_while(|c| *c != '\u{1b}')
        .collect();
    let url = url.trim_end_matches('/');
    url.starts_with("http://").then(|| url.to_owned())
}

/// A blocking `GET /ping` that answers 200.
fn ping(base_url: &str) -> bool {
    use std::io::Read;
    let Some(authority) = base_url.strip_prefix("http://") else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect(authority) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /ping HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
