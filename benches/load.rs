//! Load bench of the native gateway (issue 9, item 8): many concurrent
//! transformed streams through `agent-edge serve` on loopback, every byte of
//! every answer checked, then the same with slowloris connections held open
//! at the same time.
//!
//! Separate processes, so that each one's descriptors and the gateway's
//! memory and CPU are its own: this bench (the clients), the demo AgentCore
//! origin (this binary again, `LOAD_BENCH_ROLE=origin`), and the gateway
//! (`agent-edge serve`, fresh per run, `AUTH=none`, default client limits
//! except `MAX_CONNECTIONS`). A stream costs the gateway two descriptors
//! (client and origin socket) and a slowloris connection one; when that
//! exceeds one process's hard open-files limit (which an unprivileged bench
//! cannot raise), the gateway runs as as many `serve` processes as needed,
//! each on its own port, with streams and slowloris connections split
//! evenly between them, as one process per core would be deployed. The bench
//! prints how many it used and why.
//!
//! Per run: streams all started at once, each `/events 30 500` (30 text
//! deltas 500 ms apart, transformed); time to first byte from sending the
//! request; the gateway processes' VmRSS (summed) idle and at the peak with
//! every stream open, per stream; their CPU time (utime + stime, summed)
//! over the run, per stream. Each answer must be `1 2 … 30`, the separator, the metadata line
//! (only `latencyMs` may vary) and the session line, byte for byte. The
//! slowloris connections send a request head a line every 5 s, and open a
//! new connection when the gateway closes one at its header timeout.
//!
//! Run: `cargo bench --bench load`. `LOAD_BENCH_STREAMS` (default 10000)
//! and `LOAD_BENCH_SLOWLORIS` (default 2000) scale it. Without `--bench` (as
//! `cargo test --all-targets` runs it) a smoke run of 20 streams and 10
//! slowloris connections over two gateway processes checks that the bench
//! works.

// Only the core may not read the clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::{BufRead, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_edge::demo::origin::{self as demo_origin, DemoOriginSettings};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_agent-edge");
const ROLE_VARIABLE: &str = "LOAD_BENCH_ROLE";
const SESSION_ID: &str = "load-bench-session-000000000000000001";
/// Descriptors a gateway process keeps for everything but connections.
const DESCRIPTOR_MARGIN: u64 = 1_000;

struct Settings {
    streams: usize,
    slowloris: usize,
    deltas: usize,
    delta_ms: u64,
    /// The smoke run uses two processes so that the split is checked too.
    min_processes: usize,
}

fn main() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if std::env::var(ROLE_VARIABLE).as_deref() == Ok("origin") {
        run_origin();
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let settings = if full {
        Settings {
            streams: env_number("LOAD_BENCH_STREAMS", 10_000),
            slowloris: env_number("LOAD_BENCH_SLOWLORIS", 2_000),
            deltas: 30,
            delta_ms: 500,
            min_processes: 1,
        }
    } else {
        Settings {
            streams: 20,
            slowloris: 10,
            deltas: 3,
            delta_ms: 50,
            min_processes: 2,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(settings, full));
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The origin process: the demo origin on loopback; its variables on
/// stdout as one JSON line; it exits when stdin closes.
fn run_origin() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let origin = demo_origin::spawn(DemoOriginSettings::demo(), listener)
            .await
            .expect("the demo origin");
        let vars: serde_json::Map<String, serde_json::Value> = origin
            .gateway_vars()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        println!("{}", serde_json::Value::Object(vars));
        tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        })
        .await
        .ok();
        drop(origin);
    });
}

async fn run(settings: Settings, full: bool) {
    let hard_limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(_, hard)| hard);
    let streams = settings.streams;
    // The gateway holds two descriptors per stream, one per slowloris.
    let descriptors = (streams * 2 + settings.slowloris) as u64;
    let per_process = hard_limit.saturating_sub(DESCRIPTOR_MARGIN).max(1);
    let needed = descriptors.div_ceil(per_process) as usize;
    let processes = needed.max(settings.min_processes);
    println!("load bench: {GATEWAY_BIN} serve");
    println!(
        "cores: {}; open-files hard limit {hard_limit}; load average at the start: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "gateway processes: {processes}; {needed} needed: {streams} streams x 2 descriptors + {} slowloris x 1 = {descriptors} descriptors, \
         one process may hold {per_process} (the hard limit less {DESCRIPTOR_MARGIN} for everything else){}; \
         streams and slowloris connections split evenly, figures summed over all of them",
        settings.slowloris,
        if processes > needed { "; the smoke run uses two to check the split" } else { "" }
    );
    let origin = OriginProcess::start();
    let plain = one_run(&origin, &settings, processes, 0).await;
    let attacked = one_run(&origin, &settings, processes, settings.slowloris).await;
    println!("load average at the end: {}", load_average());
    println!();
    println!(
        "| figure | {streams} streams, {processes} gateway processes | same, {} slowloris connections open |",
        settings.slowloris
    );
    println!("|---|---|---|");
    let row = |name: &str, a: String, b: String| println!("| {name} | {a} | {b} |");
    row(
        "answers correct, byte for byte",
        format!("{} / {streams}", plain.correct),
        format!("{} / {streams}", attacked.correct),
    );
    row(
        "time to first byte, p50",
        ms(plain.ttfb_p50),
        ms(attacked.ttfb_p50),
    );
    row(
        "time to first byte, p99",
        ms(plain.ttfb_p99),
        ms(attacked.ttfb_p99),
    );
    row(
        "all streams open after",
        secs(plain.all_open),
        secs(attacked.all_open),
    );
    row(
        "gateway VmRSS idle (sum)",
        kb(plain.idle_kb),
        kb(attacked.idle_kb),
    );
    row(
        "gateway VmRSS, every stream open (peak, sum)",
        kb(plain.peak_kb),
        kb(attacked.peak_kb),
    );
    row(
        "resident memory per stream",
        format!("{:.1} KB", plain.kb_per_stream(streams)),
        format!("{:.1} KB", attacked.kb_per_stream(streams)),
    );
    row(
        "gateway CPU (utime + stime, sum) per stream",
        format!("{:.2} ms", plain.cpu_ms / streams as f64),
        format!("{:.2} ms", attacked.cpu_ms / streams as f64),
    );
    row(
        "slowloris connections held at the peak",
        "-".to_owned(),
        attacked.slowloris_open.to_string(),
    );
    let failures = (streams - plain.correct) + (streams - attacked.correct);
    if failures > 0 {
        for sample in plain.wrong.iter().chain(&attacked.wrong).take(3) {
            println!("wrong answer: {sample}");
        }
        panic!("{failures} answers were wrong or missing");
    }
    if !full {
        println!("(smoke run; `cargo bench --bench load` for the figures)");
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn kb(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

struct RunFigures {
    correct: usize,
    wrong: Vec<String>,
    ttfb_p50: Duration,
    ttfb_p99: Duration,
    all_open: Duration,
    idle_kb: u64,
    peak_kb: u64,
    cpu_ms: f64,
    slowloris_open: usize,
}

impl RunFigures {
    fn kb_per_stream(&self, streams: usize) -> f64 {
        (self.peak_kb as f64 - self.idle_kb as f64) / streams as f64
    }
}

async fn one_run(
    origin: &OriginProcess,
    settings: &Settings,
    processes: usize,
    slowloris: usize,
) -> RunFigures {
    let streams = settings.streams;
    let mut vars = origin.vars.clone();
    vars.push(("AUTH".to_owned(), "none".to_owned()));
    vars.push((
        "MAX_CONNECTIONS".to_owned(),
        (streams.div_ceil(processes) + slowloris.div_ceil(processes) + 100).to_string(),
    ));
    let gateway = Gateways(
        (0..processes)
            .map(|index| GatewayProcess::start(&vars, index))
            .collect(),
    );
    println!(
        "\nrun: {streams} streams, {slowloris} slowloris connections, {processes} gateway processes"
    );
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .build()
        .expect("a reqwest client");
    let urls: Vec<String> = gateway
        .0
        .iter()
        .map(|process| format!("{}/invocations", process.url()))
        .collect();
    let prompt = format!("/events {} {}", settings.deltas, settings.delta_ms);
    let body = format!(
        r#"{{"prompt":"{prompt}","response":"transformed","runtimeSessionId":"{SESSION_ID}"}}"#
    );

    // Warm-up: one answer per process; they give the expected input token count.
    let mut expected = None;
    for url in &urls {
        let reference = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("the warm-up request")
            .text()
            .await
            .expect("the warm-up answer");
        expected = Some(Expected::from_reference(&reference, settings.deltas));
    }
    let expected = expected.expect("at least one gateway process");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kb = gateway.rss_kb();

    let stop_slowloris = Arc::new(AtomicBool::new(false));
    let slowloris_open = Arc::new(AtomicUsize::new(0));
    for index in 0..slowloris {
        tokio::spawn(slowloris_connection(
            gateway.0[index % processes].addr,
            stop_slowloris.clone(),
            slowloris_open.clone(),
        ));
    }
    if slowloris > 0 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while slowloris_open.load(Ordering::Relaxed) < slowloris && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "  slowloris connections open: {}",
            slowloris_open.load(Ordering::Relaxed)
        );
    }

    let cpu_before = gateway.cpu_ms();
    let first_bytes = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..streams {
        let request = client
            .post(&urls[index % processes])
            .header("content-type", "application/json")
            .body(body.clone());
        let first_bytes = first_bytes.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let mut response = request.send().await.map_err(|e| e.to_string())?;
            let mut text = Vec::new();
            let mut ttfb = None;
            while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
                if ttfb.is_none() {
                    ttfb = Some(sent.elapsed());
                    first_bytes.fetch_add(1, Ordering::Relaxed);
                }
                text.extend_from_slice(&chunk);
            }
            Ok::<_, String>((ttfb.unwrap_or_default(), text))
        });
    }
    // The peak: every stream has its first bytes (sampled a few times).
    let mut all_open = Duration::ZERO;
    let mut peak_kb = idle_kb;
    let mut peak_slowloris = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if first_bytes.load(Ordering::Relaxed) >= streams {
            all_open = started.elapsed();
            for _ in 0..4 {
                peak_kb = peak_kb.max(gateway.rss_kb());
                peak_slowloris = peak_slowloris.max(slowloris_open.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "  first bytes: {} of {streams} after {:.1} s",
        first_bytes.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );

    let mut ttfbs = Vec::with_capacity(streams);
    let mut correct = 0;
    let mut wrong = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("a stream task") {
            Ok((ttfb, text)) => {
                if expected.matches(&text) {
                    correct += 1;
                    ttfbs.push(ttfb);
                } else if wrong.len() < 3 {
                    wrong.push(String::from_utf8_lossy(&text).into_owned());
                }
            }
            Err(e) => {
                if wrong.len() < 3 {
                    wrong.push(e);
                }
            }
        }
    }
    let cpu_ms = gateway.cpu_ms() - cpu_before;
    stop_slowloris.store(true, Ordering::Relaxed);
    println!(
        "  {correct} of {streams} correct in {:.1} s; gateway CPU {:.0} ms",
        started.elapsed().as_secs_f64(),
        cpu_ms
    );
    ttfbs.sort_unstable();
    let percentile = |p: usize| {
        ttfbs
            .get((ttfbs.len() * p).div_ceil(100).max(1) - 1)
            .copied()
            .unwrap_or_default()
    };
    RunFigures {
        correct,
        wrong,
        ttfb_p50: percentile(50),
        ttfb_p99: percentile(99),
        all_open,
        idle_kb,
        peak_kb,
        cpu_ms,
        slowloris_open: peak_slowloris,
    }
}

/// The answer every stream must get.
struct Expected {
    /// Text, separator and the metadata line up to the latency's digits.
    head: Vec<u8>,
    /// After the latency's digits.
    tail: Vec<u8>,
}

impl Expected {
    fn from_reference(reference: &str, deltas: usize) -> Self {
        let numbers: Vec<String> = (1..=deltas).map(|n| n.to_string()).collect();
        let input_tokens = reference
            .split_once(r#""inputTokens":"#)
            .and_then(|(_, rest)| rest.split(',').next())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no usage in the warm-up answer: {reference}"));
        let head = format!(
            "{}\n----------\n{{\"usage\":{{\"inputTokens\":{input_tokens},\"outputTokens\":{deltas},\"totalTokens\":{}}},\"metrics\":{{\"latencyMs\":",
            numbers.join(" "),
            input_tokens + deltas
        );
        let tail = format!("}}}}\n{{\"runtimeSessionId\":\"{SESSION_ID}\"}}");
        let expected = Expected {
            head: head.into_bytes(),
            tail: tail.into_bytes(),
        };
        assert!(
            expected.matches(reference.as_bytes()),
            "warm-up answer: {reference}"
        );
        expected
    }

    fn matches(&self, text: &[u8]) -> bool {
        let Some(rest) = text.strip_prefix(self.head.as_slice()) else {
            return false;
        };
        let Some(digits) = rest.strip_suffix(self.tail.as_slice()) else {
            return false;
        };
        !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
    }
}

/// Holds a connection with an unfinished request head, a line every 5 s;
/// reconnects when the gateway closes it.
async fn slowloris_connection(addr: SocketAddr, stop: Arc<AtomicBool>, open: Arc<AtomicUsize>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        if stream
            .write_all(b"POST /invocations HTTP/1.1\r\nHost: gateway.test\r\n")
            .await
            .is_err()
        {
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let mut line = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            line += 1;
            if stream
                .write_all(format!("X-Slow-{line}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// This binary as the demo origin. Dropping it ends it.
struct OriginProcess {
    child: Child,
    vars: Vec<(String, String)>,
}

impl OriginProcess {
    fn start() -> OriginProcess {
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .env(ROLE_VARIABLE, "origin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the origin process");
        let stdout: ChildStdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the origin's variables");
        let vars: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&line).expect("a JSON object of variables");
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
            .collect();
        OriginProcess { child, vars }
    }
}

impl Drop for OriginProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `agent-edge serve` as a child process, its log in the target directory.
struct GatewayProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl GatewayProcess {
    fn start(vars: &[(String, String)], index: usize) -> GatewayProcess {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("load-bench");
        fs::create_dir_all(&dir).expect("the log directory");
        let log = dir.join(format!("gateway-{index}.log"));
        let log_file = fs::File::create(&log).expect("the log file");
        let child = Command::new(GATEWAY_BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("the gateway binary starts");
        let mut process = GatewayProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = fs::read_to_string(&process.log).unwrap_or_default();
            let addr = text
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|line| line["event"] == "listening")
                .and_then(|line| line["addr"].as_str()?.parse().ok());
            if let Some(addr) = addr {
                process.addr = addr;
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("the gateway exited ({status}); its log:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn rss_kb(&self) -> u64 {
        fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// utime + stime from `/proc/<pid>/stat`, in milliseconds.
    fn cpu_ms(&self) -> f64 {
        let stat =
            fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces), from field 3.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        // USER_HZ is 100 on Linux.
        ticks as f64 * 10.0
    }
}

/// The gateway's processes; memory and CPU are their sums.
struct Gateways(Vec<GatewayProcess>);

impl Gateways {
    fn rss_kb(&self) -> u64 {
        self.0.iter().map(GatewayProcess::rss_kb).sum()
    }

    fn cpu_ms(&self) -> f64 {
        self.0.iter().map(GatewayProcess::cpu_ms).sum()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
