//! Loopback benchmark of the native gateway (issue 2, "Benchmarks"): what the
//! gateway costs in latency and in memory, in front of the demo AgentCore
//! origin, all on 127.0.0.1.
//!
//! 1. **Added time to first byte.** The demo origin
//!    ([`agent_edge::demo::origin`], prompt `/events 1 0`) is called directly,
//!    with a request signed by [`agent_edge::origin::build_request`] as the
//!    gateway signs it, and through the gateway: `AUTH=none` in original and
//!    transformed mode, and `AUTH=jwt` against the development issuer
//!    ([`agent_edge::demo::issuer`]) with one token for all requests, so that
//!    after the warm-up it is a verified-token cache hit. The calls are made
//!    round-robin (direct, gateway, gateway, ...) so that drift on the
//!    machine hits every path alike, with one keep-alive `reqwest` client,
//!    after a warm-up. A sample is the time from sending the request to the
//!    first body byte; the direct request is signed before its clock starts,
//!    so the gateway's signing counts as gateway time. Target: the gateway
//!    adds under 1 ms at the median. The time to the end of each answer is
//!    printed too, for information.
//! 2. **Resident memory per stream.** A fresh gateway process: its `VmRSS`
//!    (from `/proc/<pid>/status`) idle after one warm-up request, then with
//!    1,000 concurrent slow streams (`/events 30 1000`: 30 events 1 s apart)
//!    once every one of them has delivered its first bytes (the peak of a few
//!    samples over the following seconds). Target: under 100 KB per stream.
//!    The origin's view comes from the kernel: the ESTABLISHED sockets on the
//!    origin's port (`/proc/net/tcp`) while the streams are open, and again
//!    after the clients hang up (the gateway must cancel its origin requests).
//!
//! The gateway runs as its own process, the release binary
//! `agent-edge serve` configured by environment variables, so that its
//! memory is its own and the client is not competing inside it. The origin
//! and the client share this process on a single-threaded tokio runtime
//! (about 2,000 sockets at the peak, well under the usual open-files limit;
//! the limit is printed).
//!
//! Figures are printed as a table with the targets and PASS/MISS; a miss does
//! not fail the process (benchmarks report, they don't gate).
//!
//! Run: `cargo bench --bench gateway`. `GATEWAY_BENCH_REQUESTS` (default
//! 2000) and `GATEWAY_BENCH_STREAMS` (default 1000) scale the two parts.

// Only the core may not read the clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use agent_edge::demo::issuer::{self as dev_issuer, DevIssuer, DEV_AUDIENCE};
use agent_edge::demo::origin::{self as demo_origin, DemoOrigin, DemoOriginSettings};
use agent_edge::origin::{build_request, Invocation};
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The release gateway binary, built by cargo for this bench.
const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_agent-edge");
const WARM_UP_REQUESTS: usize = 200;
const TTFB_PROMPT: &str = "/events 1 0";
const SLOW_STREAM_PROMPT: &str = "/events 30 1000";
/// A valid AgentCore session id (33 to 256 characters).
const SESSION_ID: &str = "gateway-bench-session-0000000000000001";
const TTFB_TARGET_MS: f64 = 1.0;
const KB_PER_STREAM_TARGET: f64 = 100.0;

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: the
    // full run takes minutes, so only say how to run it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("gateway bench: run it with `cargo bench --bench gateway`");
        return;
    }
    let requests = env_number("GATEWAY_BENCH_REQUESTS", 2000);
    let streams = env_number("GATEWAY_BENCH_STREAMS", 1000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(requests, streams));
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(requests: usize, streams: usize) {
    println!("gateway loopback bench: {GATEWAY_BIN} serve");
    println!(
        "open-files limit: {} (about {} needed by this process, as many by the gateway)",
        open_files_limit(),
        2 * streams + 64
    );
    println!(
        "cores: {}; load average at the start: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    let ttfb = time_to_first_byte(requests).await;
    let memory = memory_per_stream(streams).await;
    println!("\nload average at the end: {}", load_average());

    println!();
    println!("| figure | value | target | result |");
    println!("|---|---|---|---|");
    for path in &ttfb.paths {
        println!(
            "| TTFB {}: median / p99 | {:.3} ms / {:.3} ms | | |",
            path.name,
            path.median_ms(),
            path.p99_ms()
        );
    }
    let direct = &ttfb.paths[0];
    for path in &ttfb.paths[1..] {
        let added = path.median_ms() - direct.median_ms();
        println!(
            "| added TTFB at the median, {} | {:.3} ms | < {TTFB_TARGET_MS} ms | {} |",
            path.name,
            added,
            verdict(added < TTFB_TARGET_MS)
        );
    }
    println!(
        "| gateway RSS idle / with {} streams | {:.1} MB / {:.1} MB | | |",
        memory.streams,
        memory.idle_kb as f64 / 1024.0,
        memory.during_kb as f64 / 1024.0
    );
    println!(
        "| resident memory per open stream | {:.1} KB | < {KB_PER_STREAM_TARGET} KB | {} |",
        memory.kb_per_stream(),
        verdict(memory.kb_per_stream() < KB_PER_STREAM_TARGET)
    );
    println!(
        "| streams open at once (clients / origin sockets) | {} / {} of {} | all | {} |",
        memory.clients_open,
        memory.origin_sockets_open,
        memory.streams,
        verdict(
            memory.clients_open == memory.streams && memory.origin_sockets_open == memory.streams
        )
    );
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

// ---------------------------------------------------------------------------
// Time to first byte

struct Path {
    name: &'static str,
    /// Time to first byte.
    samples: Vec<Duration>,
    /// Time to the end of the body.
    totals: Vec<Duration>,
}

impl Path {
    fn median_ms(&self) -> f64 {
        median_ms(&self.samples)
    }

    fn p99_ms(&self) -> f64 {
        p99_ms(&self.samples)
    }
}

fn sorted(samples: &[Duration]) -> Vec<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted
}

fn median_ms(samples: &[Duration]) -> f64 {
    let sorted = sorted(samples);
    let n = sorted.len();
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
    let rank = (sorted.len() * 99).div_ceil(100).max(1);
    sorted[rank - 1].as_secs_f64() * 1e3
}

struct Ttfb {
    /// The direct call first, then the gateway paths.
    paths: Vec<Path>,
}

/// How one path is called.
enum Target<'a> {
    Direct(&'a DemoOrigin),
    Gateway {
        url: String,
        body: String,
        bearer: Option<String>,
    },
}

async fn time_to_first_byte(requests: usize) -> Ttfb {
    let settings = DemoOriginSettings {
        word_delay: Duration::ZERO,
        ..DemoOriginSettings::demo()
    };
    let origin = demo_origin::spawn(settings, loopback_listener().await)
        .await
        .expect("the demo origin starts");
    let mut vars = origin.gateway_vars();
    vars.push(("AUTH", "none".to_owned()));
    let gateway = GatewayProcess::start("ttfb-auth-none", &vars);
    // AUTH=jwt: the development issuer's JWKS, and one token for every
    // request, so after the warm-up its verification is a cache hit.
    let issuer = dev_issuer::spawn(DevIssuer::generate(), loopback_listener().await)
        .await
        .expect("the development issuer starts");
    let mut jwt_vars = origin.gateway_vars();
    jwt_vars.extend([
        ("AUTH", "jwt".to_owned()),
        ("JWT_ISSUER", issuer.issuer_url()),
        ("JWT_AUDIENCE", DEV_AUDIENCE.to_owned()),
    ]);
    let jwt_gateway = GatewayProcess::start("ttfb-auth-jwt", &jwt_vars);
    let token = issuer.mint("bench-user", Duration::from_secs(3600), SystemTime::now());

    let original = format!(r#"{{"prompt":"{TTFB_PROMPT}"}}"#);
    let transformed = format!(r#"{{"prompt":"{TTFB_PROMPT}","response":"transformed"}}"#);
    let targets = [
        ("direct to the demo origin", Target::Direct(&origin)),
        (
            "gateway AUTH=none, original",
            Target::Gateway {
                url: format!("{}/invocations", gateway.url()),
                body: original.clone(),
                bearer: None,
            },
        ),
        (
            "gateway AUTH=none, transformed",
            Target::Gateway {
                url: format!("{}/invocations", gateway.url()),
                body: transformed,
                bearer: None,
            },
        ),
        (
            "gateway AUTH=jwt, original",
            Target::Gateway {
                url: format!("{}/invocations", jwt_gateway.url()),
                body: original,
                bearer: Some(token),
            },
        ),
    ];

    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("a reqwest client");
    let mut paths: Vec<Path> = targets
        .iter()
        .map(|(name, _)| Path {
            name,
            samples: Vec::with_capacity(requests),
            totals: Vec::with_capacity(requests),
        })
        .collect();
    println!(
        "\ntime to first byte: {WARM_UP_REQUESTS} warm-up + {requests} requests per path, round-robin, prompt `{TTFB_PROMPT}`"
    );
    let started = Instant::now();
    for round in 0..WARM_UP_REQUESTS + requests {
        for ((_, target), path) in targets.iter().zip(&mut paths) {
            let (first_byte, total) = one_request(&client, target).await;
            if round >= WARM_UP_REQUESTS {
                path.samples.push(first_byte);
                path.totals.push(total);
            }
        }
    }
    println!(
        "  {} requests in {:.1} s",
        (WARM_UP_REQUESTS + requests) * targets.len(),
        started.elapsed().as_secs_f64()
    );
    for path in &paths {
        println!(
            "  {}: first byte median {:.3} ms, p99 {:.3} ms; whole answer median {:.3} ms",
            path.name,
            path.median_ms(),
            path.p99_ms(),
            median_ms(&path.totals)
        );
    }
    let logged = gateway.log_lines_with("\"status\":200");
    let jwt_logged = jwt_gateway.log_lines_with("\"status\":200");
    println!("  gateway log lines with status 200: AUTH=none {logged}, AUTH=jwt {jwt_logged}");
    drop(gateway);
    drop(jwt_gateway);
    Ttfb { paths }
}

/// One request: the times from sending it to its first body byte and to the
/// end of its body (read to the end so the connection goes back to the pool).
async fn one_request(client: &reqwest::Client, target: &Target<'_>) -> (Duration, Duration) {
    let request = match target {
        Target::Direct(origin) => {
            let invocation = Invocation {
                payload: Bytes::from(format!(r#"{{"prompt":"{TTFB_PROMPT}"}}"#)),
                session_id: SESSION_ID,
                user_id: None,
                bearer_token: None,
            };
            let signed = build_request(&origin.origin_config(), invocation, SystemTime::now())
                .expect("the demo origin request");
            reqwest::Request::try_from(signed).expect("a valid request")
        }
        Target::Gateway { url, body, bearer } => {
            let mut request = client
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            request.build().expect("a valid request")
        }
    };
    let sent = Instant::now();
    let mut response = client.execute(request).await.expect("the request is sent");
    assert_eq!(
        response.status(),
        200,
        "path answered {}",
        response.status()
    );
    let first = response.chunk().await.expect("a body");
    let elapsed = sent.elapsed();
    assert!(first.is_some_and(|b| !b.is_empty()), "an empty body");
    while response
        .chunk()
        .await
        .expect("the rest of the body")
        .is_some()
    {}
    (elapsed, sent.elapsed())
}

// ---------------------------------------------------------------------------
// Resident memory per stream

struct Memory {
    streams: usize,
    idle_kb: u64,
    during_kb: u64,
    clients_open: usize,
    origin_sockets_open: usize,
}

impl Memory {
    fn kb_per_stream(&self) -> f64 {
        (self.during_kb as f64 - self.idle_kb as f64) / self.streams as f64
    }
}

async fn memory_per_stream(streams: usize) -> Memory {
    let origin = demo_origin::spawn(DemoOriginSettings::demo(), loopback_listener().await)
        .await
        .expect("the demo origin starts");
    let origin_port = origin.addr.port();
    let mut vars = origin.gateway_vars();
    vars.push(("AUTH", "none".to_owned()));
    let gateway = GatewayProcess::start("memory-auth-none", &vars);
    let url = format!("{}/invocations", gateway.url());
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .expect("a reqwest client");

    println!("\nresident memory: {streams} concurrent streams, prompt `{SLOW_STREAM_PROMPT}`");
    let warm_up = client
        .post(&url)
        .header("content-type", "application/json")
        .body(format!(r#"{{"prompt":"{TTFB_PROMPT}"}}"#))
        .send()
        .await
        .expect("the warm-up request");
    assert_eq!(warm_up.status(), 200);
    warm_up.bytes().await.expect("the warm-up body");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kb = gateway.rss_kb();
    println!("  gateway VmRSS idle: {idle_kb} kB");

    // Each stream: send, signal its first bytes, keep reading until released
    // or until it ends early (which the count below would show).
    let first_bytes = Arc::new(AtomicUsize::new(0));
    let ended_early = Arc::new(AtomicUsize::new(0));
    let (release, released) = watch::channel(false);
    let body = format!(r#"{{"prompt":"{SLOW_STREAM_PROMPT}"}}"#);
    let opening = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..streams {
        let request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        let first_bytes = first_bytes.clone();
        let ended_early = ended_early.clone();
        let mut released = released.clone();
        tasks.spawn(async move {
            let mut response = request.send().await.expect("a stream opens");
            assert_eq!(response.status(), 200);
            let mut counted = false;
            loop {
                tokio::select! {
                    chunk = response.chunk() => match chunk {
                        Ok(Some(_)) if !counted => {
                            counted = true;
                            first_bytes.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => {
                            ended_early.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    },
                    _ = released.changed() => return,
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(25);
    while first_bytes.load(Ordering::SeqCst) < streams && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_open_after = opening.elapsed();
    println!(
        "  {} of {streams} streams delivered their first bytes within {:.2} s",
        first_bytes.load(Ordering::SeqCst),
        all_open_after.as_secs_f64()
    );

    // The peak over a few seconds of streaming (events keep flowing 1 s apart).
    let mut during_kb = 0;
    let mut origin_sockets_open = usize::MAX;
    for _ in 0..6 {
        during_kb = during_kb.max(gateway.rss_kb());
        origin_sockets_open = origin_sockets_open.min(established_sockets(origin_port));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let clients_open = first_bytes.load(Ordering::SeqCst) - ended_early.load(Ordering::SeqCst);
    println!(
        "  gateway VmRSS with the streams open (peak of 6 samples over 3 s): {during_kb} kB; \
         gateway open fds: {}",
        gateway.open_fds()
    );
    println!(
        "  clients still streaming: {clients_open}; origin-side ESTABLISHED sockets (minimum over the samples): {origin_sockets_open}"
    );

    release.send(true).expect("the streams listen");
    while tasks.join_next().await.is_some() {}
    drop(client);
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "  after the clients hung up: gateway VmRSS {} kB, origin-side ESTABLISHED sockets {}",
        gateway.rss_kb(),
        established_sockets(origin_port)
    );
    drop(gateway);
    drop(origin);
    Memory {
        streams,
        idle_kb,
        during_kb,
        clients_open,
        origin_sockets_open,
    }
}

/// ESTABLISHED TCP sockets (IPv4) whose local port is `port`: the server
/// side of each open connection to a listener on `port`.
fn established_sockets(port: u16) -> usize {
    const ESTABLISHED: &str = "01";
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let mut inodes = HashSet::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
        else {
            continue;
        };
        let local_port = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if *state == ESTABLISHED && local_port == Some(port) {
            inodes.insert(inode.to_string());
        }
    }
    inodes.len()
}

/// The 1, 5 and 15 minute load averages: other work on the machine shows in
/// the tails.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn open_files_limit() -> String {
    fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| {
                    let fields: Vec<&str> = l.split_whitespace().collect();
                    format!("soft {}, hard {}", fields[3], fields[4])
                })
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

async fn loopback_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port")
}

// ---------------------------------------------------------------------------
// The gateway process

/// `agent-edge serve` as a child process, its log in `target/gateway-bench/`.
/// Dropping it kills it.
struct GatewayProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl GatewayProcess {
    fn start(name: &str, vars: &[(&'static str, String)]) -> GatewayProcess {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gateway-bench");
        fs::create_dir_all(&dir).expect("the log directory");
        let log = dir.join(format!("{name}.log"));
        let log_file = fs::File::create(&log).expect("the log file");
        let mut command = Command::new(GATEWAY_BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            // Only the variables given: nothing from the caller's shell.
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = command.spawn().expect("the gateway binary starts");
        let mut process = GatewayProcess {
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
            assert!(
                Instant::now() < deadline,
                "the gateway did not log `listening` within 20 s; its log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn rss_kb(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the gateway's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }

    fn open_fds(&self) -> usize {
        fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |dir| dir.count())
    }

    fn log_lines_with(&self, needle: &str) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
