//! What token budgets and request limits cost per request (issue 16,
//! "Bench"): the latency and the gateway CPU added by the limit checks of
//! each store, against the same gateway without limits, in one run.
//!
//! Targets, each its own process:
//! - **native** (`agent-edge serve`, the release binary, configured by
//!   environment variables as in `benches/gateway.rs`): no limits;
//!   `LIMITS_STORE=memory`; `LIMITS_STORE=redis` on a `redis-server` this
//!   bench starts on a free loopback port (`--save "" --appendonly no`, no
//!   password; Debian's package, which `scripts/setup.sh` installs: without
//!   it the row is skipped, and says so).
//! - **workerd**: the Worker bundle (`scripts/build-worker.sh`, copied aside)
//!   in `workerd serve` alone, on a `workerd.capnp` this bench writes, as
//!   `benches/workers.rs` does: no limits; `LIMITS_STORE=durable_object`,
//!   the `LIMITS` binding to the bundle's `LimitsCounter` class with
//!   `enableSql` and `localDisk` storage in a directory of its own (SQLite
//!   files on disk, as `wrangler dev --persist-to` keeps them), without
//!   wrangler's proxy or Miniflare in front. The object runs in the same
//!   `workerd` process as the Worker.
//!
//! The limited targets set `TOKEN_BUDGET` and `RATE_LIMIT_PER_MINUTE` to
//! the largest values accepted (2^50 tokens, 1,000,000 requests), so that
//! nothing is refused but both are counted: per request, one store call
//! before the origin (the budget check and the request count) and one after
//! the stream (the charge, which lands before the answer's last byte).
//! `AUTH=none`, so every request is one subject, `anonymous`: one Redis key
//! pair and one Durable Object, which takes every call of the run; that is
//! the per-subject object at its busiest (one caller's requests all go to
//! it), and after the warm-up the object is live, so the figure is a call
//! to a running object, not the creation of one (a subject's first request
//! after the object was evicted is not measured).
//!
//! Each request is `POST /invocations` with `{"prompt":"/events 1 0"}` to
//! the demo AgentCore origin ([`agent_edge::demo::origin`], in this
//! process), answered in original mode: one text event and the closing
//! events with the usage, so that the two store calls are most of the
//! difference. Rounds send one request to each target, sequentially, in an
//! order shuffled per round, each target on a keep-alive connection of its
//! own: drift on the machine hits every target alike, and so does what a
//! target leaves behind (a `workerd` still writing after its answer), as
//! every target follows every other equally often. A sample is the time
//! from sending to the first body byte (the admission is in it) and to the
//! end of the body (the charge too). At the end, `GET /usage` of each
//! limited target shows that every answer was charged (the demo's usage is
//! 4 tokens per answer), and Redis's `INFO commandstats` how many script
//! calls it ran and their time inside Redis.
//!
//! CPU per request: `utime + stime` of the target's process
//! (`/proc/<pid>/stat`, clock ticks) over the measured rounds, divided by
//! the requests; `redis-server`'s is printed beside. Every figure is also
//! given as the difference to the same platform's no-limits target. Goal:
//! Redis adds at most 0.3 ms at the median (time to the end of the answer,
//! both calls; the time to first byte, the admission alone, is judged too).
//! Figures are printed as a table with PASS/MISS; a miss does not fail the
//! process.
//!
//! Run: `cargo bench --bench limits` (about a minute after the builds).
//! `LIMITS_BENCH_REQUESTS` (default 3000) and `LIMITS_BENCH_WARM_UP`
//! (default 300) are rounds; `AGENT_EDGE_SKIP_WORKER=1` leaves out the
//! `workerd` targets; `LIMITS_BENCH_DO_DIR` puts the objects' SQLite files
//! in another directory (`/dev/shm`: memory, no disk flush on commit).
//! Logs and state go to `target/tmp/limits-bench-<pid>/`. Without
//! `--bench` (as `cargo test --all-targets` runs bench targets) it prints a
//! note and exits.

// Only the core may not read the clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_edge::demo::origin::{self as demo_origin, DemoOrigin, DemoOriginSettings};
use tokio::net::TcpListener;

/// The release gateway binary, built by cargo for this bench.
const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_agent-edge");
const BODY: &str = r#"{"prompt":"/events 1 0"}"#;
const GOAL_REDIS_MS: f64 = 0.3;
/// The largest values the configuration accepts: nothing is refused.
const TOKEN_BUDGET: &str = "1125899906842624";
const RATE_LIMIT_PER_MINUTE: &str = "1000000";
const SKIP_WORKER_VAR: &str = "AGENT_EDGE_SKIP_WORKER";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("limits bench: not run (only under `cargo bench --bench limits`)");
        return;
    }
    let requests = env_number("LIMITS_BENCH_REQUESTS", 3000).max(1);
    let warm_up = env_number("LIMITS_BENCH_WARM_UP", 300);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(requests, warm_up));
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(requests: usize, warm_up: usize) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("limits-bench-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("the bench's directory");
    println!("limits bench: {GATEWAY_BIN} serve, and the Worker in workerd");
    println!(
        "cores: {}; load average at the start: {}; logs and state: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        dir.display()
    );

    let settings = DemoOriginSettings {
        word_delay: Duration::ZERO,
        ..DemoOriginSettings::demo()
    };
    let origin = demo_origin::spawn(settings, loopback_listener().await)
        .await
        .expect("the demo origin starts");
    let mut notes = Vec::new();
    let mut targets = Vec::new();
    // Kept alive until the end: dropping one stops its process.
    let mut gateways = Vec::new();
    let mut workerds = Vec::new();

    let base = base_vars(&origin);
    let limited = |store: &str, extra: &[(&str, String)]| {
        let mut vars = base.clone();
        vars.extend([
            ("LIMITS_STORE".to_owned(), store.to_owned()),
            ("TOKEN_BUDGET".to_owned(), TOKEN_BUDGET.to_owned()),
            (
                "RATE_LIMIT_PER_MINUTE".to_owned(),
                RATE_LIMIT_PER_MINUTE.to_owned(),
            ),
        ]);
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        vars
    };

    // Native.
    let redis = RedisServer::start(&dir);
    let mut native = vec![("no limits", "native-none", base.clone())];
    native.push(("memory", "native-memory", limited("memory", &[])));
    match &redis {
        Ok(redis) => native.push((
            "redis (loopback)",
            "native-redis",
            limited("redis", &[("REDIS_URL", redis.url())]),
        )),
        Err(why) => notes.push(format!("the Redis row is skipped: {why}")),
    }
    let baseline = targets.len();
    for (name, file, vars) in native {
        let gateway = GatewayProcess::start(&dir, file, &vars);
        targets.push(Target::new(
            "native",
            name,
            gateway.url(),
            gateway.pid(),
            baseline,
            name != "no limits",
        ));
        gateways.push(gateway);
    }

    // The Worker in workerd.
    if std::env::var(SKIP_WORKER_VAR).is_ok_and(|v| v == "1") {
        notes.push(format!(
            "the workerd rows are skipped ({SKIP_WORKER_VAR}=1)"
        ));
    } else {
        match WorkerBundle::prepare(&root, &dir) {
            Err(why) => notes.push(format!("the workerd rows are skipped: {why}")),
            Ok(bundle) => {
                let baseline = targets.len();
                let configs = [
                    ("no limits", "workerd-none", base.clone()),
                    (
                        "durable object",
                        "workerd-durable-object",
                        limited("durable_object", &[]),
                    ),
                ];
                for (name, file, vars) in configs {
                    match Workerd::start(&root, &bundle, file, &vars) {
                        Ok(workerd) => {
                            targets.push(Target::new(
                                "workerd",
                                name,
                                workerd.url.clone(),
                                workerd.child.id(),
                                baseline,
                                name != "no limits",
                            ));
                            workerds.push(workerd);
                        }
                        Err(why) => {
                            notes.push(format!("workerd, {name}: skipped: {why}"));
                            // Without its baseline the other row means nothing.
                            targets.truncate(baseline);
                            workerds.clear();
                            break;
                        }
                    }
                }
            }
        }
    }

    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .expect("a reqwest client");
    let ticks_per_second = clock_ticks_per_second();
    println!(
        "\n{warm_up} warm-up + {requests} measured rounds, one request to each of {} targets per round, \
         prompt {BODY}",
        targets.len()
    );
    let started = Instant::now();
    let mut order: Vec<usize> = (0..targets.len()).collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut cpu_before = Vec::new();
    let mut redis_before = 0;
    for round in 0..warm_up + requests {
        if round == warm_up {
            println!(
                "  warm-up done in {:.1} s; load average {}",
                started.elapsed().as_secs_f64(),
                load_average()
            );
            cpu_before = targets.iter().map(|t| process_ticks(t.pid)).collect();
            redis_before = redis.as_ref().map_or(0, |r| process_ticks(r.pid()));
        }
        shuffle(&mut order, &mut seed);
        for &i in &order {
            let target = &mut targets[i];
            let sample = one_request(&client, &target.url, target.limited).await;
            target.sent += 1;
            if round >= warm_up {
                target.record(sample);
            }
        }
    }
    let cpu_after: Vec<i64> = targets.iter().map(|t| process_ticks(t.pid)).collect();
    let redis_after = redis.as_ref().map_or(0, |r| process_ticks(r.pid()));
    let elapsed = started.elapsed();
    for ((target, before), after) in targets.iter_mut().zip(&cpu_before).zip(&cpu_after) {
        target.cpu_us =
            (after - before) as f64 * 1e6 / ticks_per_second / target.answered().max(1) as f64;
    }
    println!(
        "  {} requests in {:.1} s; load average at the end: {}",
        (warm_up + requests) * targets.len(),
        elapsed.as_secs_f64(),
        load_average()
    );

    // What the stores counted: every answer's tokens, in each store.
    for target in targets.iter().filter(|t| t.limited) {
        let counted = usage(&client, &target.url).await;
        println!(
            "  {}, {}: {} requests sent; /usage: {counted}",
            target.platform, target.name, target.sent
        );
    }
    if let Ok(redis) = &redis {
        println!("  redis-server: {}", redis.stats());
    }
    for gateway in &gateways {
        let unavailable = gateway.log_lines_with("limits_unavailable");
        if unavailable > 0 {
            notes.push(format!(
                "{}: {unavailable} limits_unavailable log lines (a store call over LIMITS_STORE_TIMEOUT_MS)",
                gateway.name
            ));
        }
    }
    for workerd in &workerds {
        let unavailable = log_lines_with(&workerd.log, "limits_unavailable");
        if unavailable > 0 {
            notes.push(format!(
                "{}: {unavailable} limits_unavailable log lines",
                workerd.name
            ));
        }
    }
    if redis.is_ok() {
        let answered = targets
            .iter()
            .find(|t| t.name.starts_with("redis"))
            .map_or(1, |t| t.answered().max(1));
        notes.push(format!(
            "beside the Redis row, redis-server used {:.1} µs of CPU per request (two script calls)",
            (redis_after - redis_before) as f64 * 1e6 / ticks_per_second / answered as f64
        ));
    }
    notes.push(format!(
        "CPU resolution: one clock tick ({:.0} ms) over the requests, {:.1} µs per request",
        1e3 / ticks_per_second,
        1e6 / ticks_per_second / requests as f64
    ));

    drop(gateways);
    drop(workerds);
    drop(redis);
    origin.shutdown().await;
    print_table(&targets, &notes);
}

/// A Fisher-Yates shuffle on xorshift64: every target follows every other
/// equally often, so that what one leaves behind (a `workerd` still busy
/// after its answer) does not always fall on the same neighbour.
fn shuffle(order: &mut [usize], seed: &mut u64) {
    for i in (1..order.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        order.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
}

/// The variables of every target: the demo origin, `AUTH=none`.
fn base_vars(origin: &DemoOrigin) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = origin
        .gateway_vars()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    vars.push(("AUTH".to_owned(), "none".to_owned()));
    vars
}

async fn loopback_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port")
}

fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

// ---------------------------------------------------------------------------
// Requests and figures

struct Target {
    platform: &'static str,
    name: &'static str,
    url: String,
    pid: u32,
    /// The index of the same platform's no-limits target.
    baseline: usize,
    /// Whether its answers must carry the `RateLimit` field.
    limited: bool,
    ttfb: Vec<Duration>,
    total: Vec<Duration>,
    /// Answers that were not 200, or failed.
    failed: usize,
    /// Requests sent, the warm-up's included.
    sent: usize,
    first_failure: Option<String>,
    /// Limited answers without `RateLimit`: the store did not answer the
    /// admission in time.
    without_counts: usize,
    cpu_us: f64,
}

impl Target {
    fn new(
        platform: &'static str,
        name: &'static str,
        url: String,
        pid: u32,
        baseline: usize,
        limited: bool,
    ) -> Target {
        Target {
            platform,
            name,
            url,
            pid,
            baseline,
            limited,
            ttfb: Vec::new(),
            total: Vec::new(),
            failed: 0,
            sent: 0,
            first_failure: None,
            without_counts: 0,
            cpu_us: 0.0,
        }
    }

    fn record(&mut self, sample: Result<Sample, String>) {
        match sample {
            Ok(sample) => {
                self.ttfb.push(sample.first_byte);
                self.total.push(sample.total);
                if !sample.counted {
                    self.without_counts += 1;
                }
            }
            Err(why) => {
                self.failed += 1;
                self.first_failure.get_or_insert(why);
            }
        }
    }

    fn answered(&self) -> usize {
        self.ttfb.len() + self.failed
    }
}

struct Sample {
    first_byte: Duration,
    total: Duration,
    /// The answer carried `RateLimit` (the store answered the admission).
    counted: bool,
}

/// One request, read to the end of its body.
async fn one_request(
    client: &reqwest::Client,
    base_url: &str,
    limited: bool,
) -> Result<Sample, String> {
    let sent = Instant::now();
    let mut response = client
        .post(format!("{base_url}/invocations"))
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status();
    if status != 200 {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("status {status}: {body}"));
    }
    let counted = !limited || response.headers().contains_key("ratelimit");
    let mut first_byte = None;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("body: {e}"))? {
        first_byte.get_or_insert_with(|| sent.elapsed());
        body.extend_from_slice(&chunk);
    }
    let total = sent.elapsed();
    if !body.windows(7).any(|w| w == b"\"usage\"") {
        return Err("the answer has no usage".to_owned());
    }
    Ok(Sample {
        first_byte: first_byte.unwrap_or(total),
        total,
        counted,
    })
}

/// `GET /usage`: the tokens and requests counted, in a line.
async fn usage(client: &reqwest::Client, base_url: &str) -> String {
    let answer = async {
        let body = client
            .get(format!("{base_url}/usage"))
            .send()
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
        Some(format!(
            "tokens used {} in the window, requests {} in this minute",
            value["tokens"]["used"], value["requests"]["used"]
        ))
    };
    answer.await.unwrap_or_else(|| "no answer".to_owned())
}

fn sorted(samples: &[Duration]) -> Vec<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted
}

fn median_ms(samples: &[Duration]) -> f64 {
    let sorted = sorted(samples);
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let middle = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    };
    middle.as_secs_f64() * 1e3
}

/// Nearest-rank 99th percentile.
fn p99_ms(samples: &[Duration]) -> f64 {
    let sorted = sorted(samples);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (sorted.len() * 99).div_ceil(100).max(1);
    sorted[rank - 1].as_secs_f64() * 1e3
}

fn print_table(targets: &[Target], notes: &[String]) {
    let figures = |t: &Target| {
        [
            median_ms(&t.ttfb),
            p99_ms(&t.ttfb),
            median_ms(&t.total),
            p99_ms(&t.total),
            t.cpu_us,
        ]
    };
    println!();
    println!(
        "| target | TTFB p50 | TTFB p99 | end p50 | end p99 | CPU/req | added TTFB p50 / p99 | added end p50 / p99 | added CPU/req | failed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for target in targets {
        let [ttfb50, ttfb99, end50, end99, cpu] = figures(target);
        let added = if target.limited {
            let [b_ttfb50, b_ttfb99, b_end50, b_end99, b_cpu] = figures(&targets[target.baseline]);
            format!(
                "{:+.3} / {:+.3} ms | {:+.3} / {:+.3} ms | {:+.1} µs",
                ttfb50 - b_ttfb50,
                ttfb99 - b_ttfb99,
                end50 - b_end50,
                end99 - b_end99,
                cpu - b_cpu
            )
        } else {
            "| |".to_owned()
        };
        println!(
            "| {}, {} | {ttfb50:.3} ms | {ttfb99:.3} ms | {end50:.3} ms | {end99:.3} ms | {cpu:.1} µs | {added} | {} |",
            target.platform,
            target.name,
            target.failed + target.without_counts,
        );
    }
    println!(
        "TTFB: sending to the first body byte; end: to the end of the body; CPU: the target process's \
         utime + stime per request; added: minus the same platform's no-limits row; failed: answers \
         not 200, or limited answers without RateLimit (the store did not answer in time)"
    );
    if let Some(redis) = targets.iter().find(|t| t.name.starts_with("redis")) {
        let baseline = &targets[redis.baseline];
        println!();
        println!("| goal | added | target | result |");
        println!("|---|---|---|---|");
        for (what, added) in [
            (
                "Redis on loopback, time to the end of the answer (admission + charge), median",
                median_ms(&redis.total) - median_ms(&baseline.total),
            ),
            (
                "Redis on loopback, time to first byte (admission), median",
                median_ms(&redis.ttfb) - median_ms(&baseline.ttfb),
            ),
        ] {
            println!(
                "| {what} | {added:.3} ms | ≤ {GOAL_REDIS_MS} ms | {} |",
                verdict(added <= GOAL_REDIS_MS)
            );
        }
    }
    for target in targets {
        if let Some(failure) = &target.first_failure {
            println!(
                "{}, {}: first failure: {failure}",
                target.platform, target.name
            );
        }
    }
    for note in notes {
        println!("note: {note}");
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows in
/// the tails.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

// ---------------------------------------------------------------------------
// CPU from /proc

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `utime + stime` of process `pid` (all its threads, those ended included).
fn process_ticks(pid: u32) -> i64 {
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // comm is in parentheses and may hold spaces or parentheses itself; from
    // field 3 (state) on, utime is field 14 and stime 15.
    let Some(close) = text.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |i: usize| -> i64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0) };
    field(11) + field(12)
}

fn log_lines_with(log: &Path, needle: &str) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

// ---------------------------------------------------------------------------
// The native gateway

/// `agent-edge serve` as a child process, its log beside the others.
/// Dropping it kills it.
struct GatewayProcess {
    name: String,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl GatewayProcess {
    fn start(dir: &Path, name: &str, vars: &[(String, String)]) -> GatewayProcess {
        let log = dir.join(format!("{name}.log"));
        let log_file = fs::File::create(&log).expect("the log file");
        let child = Command::new(GATEWAY_BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            // Only the variables given: nothing from the caller's shell.
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("the gateway binary starts");
        let mut process = GatewayProcess {
            name: name.to_owned(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        process.addr = process
            .wait_listening()
            .unwrap_or_else(|log| panic!("`{GATEWAY_BIN} serve` did not start; its log:\n{log}"));
        process
    }

    /// The address from the gateway's `listening` log line, or its log if it
    /// exited first.
    fn wait_listening(&mut self) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read_to_string(&self.log).unwrap_or_default();
            let addr = text
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|line| line["event"] == "listening")
                .and_then(|line| line["addr"].as_str()?.parse().ok());
            if let Some(addr) = addr {
                return Ok(addr);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{text}\nexited: {status}"));
            }
            if Instant::now() > deadline {
                return Err(format!("{text}\nno `listening` line within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_lines_with(&self, needle: &str) -> usize {
        log_lines_with(&self.log, needle)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` of the bench's own on a free loopback port, nothing
/// saved; killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start(dir: &Path) -> Result<RedisServer, String> {
        let port = free_port().map_err(|e| format!("a free port: {e}"))?;
        let data = dir.join("redis");
        fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&data)
            .arg("--logfile")
            .arg(data.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("redis-server does not start ({e}); scripts/setup.sh installs it")
            })?;
        let mut server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.pong() {
            if Instant::now() > deadline || server.child.try_wait().ok().flatten().is_some() {
                return Err(format!(
                    "redis-server did not answer PING; its log: {}",
                    data.join("redis.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let version = Command::new("redis-server")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        println!("redis-server on 127.0.0.1:{port}: {version}");
        Ok(server)
    }

    fn pong(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `INFO`'s figures on the script calls (the time Redis spent in them)
    /// and the connections it accepted: the gateway's, the bench's `PING`
    /// and this one.
    fn stats(&self) -> String {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return "no answer".to_owned();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let _ = stream.write_all(b"INFO all\r\n");
        // A bulk string (`$<length>`, the text, a blank line): read until
        // its end, or until the server has nothing more to say.
        let mut text = Vec::new();
        let mut buffer = [0u8; 16384];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buffer[..n]);
            if text.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let wanted = [
            "cmdstat_evalsha:",
            "cmdstat_eval:",
            "cmdstat_script|load:",
            "total_connections_received:",
        ];
        String::from_utf8_lossy(&text)
            .lines()
            .filter(|l| wanted.iter().any(|w| l.starts_with(w)))
            .map(|l| l.trim().replace(",rejected_calls=0,failed_calls=0", ""))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The Worker in workerd

/// The `workerd.capnp` of a target: the Worker bundle's modules, the
/// variables as text bindings and the `LIMITS` Durable Object namespace,
/// SQLite-backed, its storage on disk in `{storage}`.
const WORKERD_CAPNP: &str = r#"using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = (
      modules = [
        (name = "index.js", esModule = embed "build/index.js"),
        (name = "index_bg.wasm", wasm = embed "build/index_bg.wasm"),
      ],
      compatibilityDate = {compatibility_date},
      bindings = [{bindings}, (name = "LIMITS", durableObjectNamespace = "LimitsCounter")],
      durableObjectNamespaces = [
        (className = "LimitsCounter", uniqueKey = "agent-edge-limits-bench", enableSql = true),
      ],
      durableObjectStorage = (localDisk = "limits-storage"),
    )),
    (name = "limits-storage", disk = (path = {storage}, writable = true)),
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:0", http = (), service = "main")],
);
"#;

/// The Worker bundle, copied aside so that a rebuild during the run cannot
/// reload it.
struct WorkerBundle {
    dir: PathBuf,
    compatibility_date: String,
}

impl WorkerBundle {
    fn prepare(root: &Path, dir: &Path) -> Result<WorkerBundle, String> {
        if !root.join("node_modules/.bin/workerd").exists() {
            return Err("node_modules/.bin/workerd is missing (run scripts/setup.sh)".into());
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
        let bundle = dir.join("build");
        fs::create_dir_all(&bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
        // Under the build's lock, so a concurrent build cannot be half copied.
        let copied = Command::new("bash")
            .arg("-c")
            .arg(r#"exec 9>build/.agent-edge-build.lock && flock 9 && cp build/index.js build/index_bg.wasm "$0"/"#)
            .arg(&bundle)
            .current_dir(root)
            .status()
            .map_err(|e| format!("copying build/: {e}"))?;
        if !copied.success() || !bundle.join("index_bg.wasm").exists() {
            return Err("copying build/ failed".into());
        }
        let manifest = fs::read_to_string(root.join("wrangler.toml"))
            .map_err(|e| format!("wrangler.toml: {e}"))?;
        let compatibility_date = manifest
            .lines()
            .find_map(|line| {
                let value = line.trim_start().strip_prefix("compatibility_date")?;
                Some(
                    value
                        .trim_start()
                        .strip_prefix('=')?
                        .trim()
                        .trim_matches('"')
                        .to_owned(),
                )
            })
            .ok_or("no compatibility_date in wrangler.toml")?;
        Ok(WorkerBundle {
            dir: dir.to_owned(),
            compatibility_date,
        })
    }
}

/// `workerd serve` on a configuration of its own; killed on drop, and its
/// objects' storage deleted.
struct Workerd {
    name: String,
    child: Child,
    url: String,
    log: PathBuf,
    storage: PathBuf,
}

impl Workerd {
    fn start(
        root: &Path,
        bundle: &WorkerBundle,
        name: &str,
        vars: &[(String, String)],
    ) -> Result<Workerd, String> {
        let quote = |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
        let storage = std::env::var("LIMITS_BENCH_DO_DIR")
            .ok()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| bundle.dir.clone())
            .join(format!("{name}-storage-{}", std::process::id()));
        fs::create_dir_all(&storage).map_err(|e| format!("{}: {e}", storage.display()))?;
        let bindings: Vec<String> = vars
            .iter()
            .map(|(k, v)| format!("(name = {}, text = {})", quote(k), quote(v)))
            .collect();
        let config = WORKERD_CAPNP
            .replace("{compatibility_date}", &quote(&bundle.compatibility_date))
            .replace("{bindings}", &bindings.join(", "))
            .replace("{storage}", &quote(&storage.to_string_lossy()));
        let config_path = bundle.dir.join(format!("{name}.capnp"));
        fs::write(&config_path, config).map_err(|e| format!("{}: {e}", config_path.display()))?;
        let port = free_port().map_err(|e| format!("a free port: {e}"))?;
        let log = bundle.dir.join(format!("{name}.log"));
        let out = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(root.join("node_modules/.bin/workerd"))
            .arg("serve")
            .arg(&config_path)
            .arg(format!("--socket-addr=http=127.0.0.1:{port}"))
            .current_dir(&bundle.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting workerd: {e}"))?;
        let mut workerd = Workerd {
            name: name.to_owned(),
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            storage: storage.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ping(port) {
            if Instant::now() > deadline || workerd.child.try_wait().ok().flatten().is_some() {
                let text = fs::read_to_string(&workerd.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!(
                    "/ping never answered; its log:\n{}",
                    tail.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "workerd, {name}: {}; Durable Object storage in {} ({})",
            workerd.url,
            storage.display(),
            filesystem_of(&storage)
        );
        Ok(workerd)
    }
}

impl Drop for Workerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.storage);
    }
}

/// The type of the filesystem holding `path` (`/proc/mounts`, the longest
/// mount point that is a prefix of it).
fn filesystem_of(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (point, kind) = (*fields.get(1)?, *fields.get(2)?);
            path.starts_with(point)
                .then(|| (point.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "filesystem unknown".to_owned(), |(_, kind)| kind)
}

/// A blocking `GET /ping` that answers 200.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request =
        format!("GET /ping HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
