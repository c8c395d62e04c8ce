//! The Lambda function under `cargo lambda watch` beside the native server
//! (issue 11, "Figures"): the first request after start (cold) and the time
//! per request once warm, for the same answer, and the size of the
//! deployment zip.
//!
//! Both run as processes of their own, release builds, configured by the
//! same variables: `AUTH=jwt` against an issuer this bench serves, SigV4 to
//! the demo AgentCore origin ([`agent_edge::demo::origin`]),
//! `DEFAULT_RESPONSE_MODE=transformed`. The answer is the demo origin's
//! `/events 520 0 6`: `1 2 3 … 520` (1,971 bytes of text) in 87 events of six
//! numbers, the size of AgentCore's deltas (as in `benches/workers.rs`).
//!
//! - **cold**: a fresh process per round, timed from its start to the end
//!   of its first answer, for a fresh token: the process starts and reads
//!   its configuration, the gateway fetches the issuer's discovery document
//!   and key set, verifies the RS256 token, signs, streams. Native: the
//!   `agent-edge serve` process, asked as soon as its port accepts
//!   connections. Lambda: `cargo lambda watch --only-lambda-apis` runs the
//!   Runtime API and the function URL emulation for the whole bench, and
//!   each round starts a new `agent-edge-lambda` process (a new execution
//!   environment) with the variables Lambda sets, the request sent at once
//!   (the emulator holds it until the function asks for an invocation).
//!   Both are the binaries `cargo bench` built, so one release build.
//! - **warm**: then sequential requests on one keep-alive connection with
//!   one token (a hit in the verified-token cache): median and 90th
//!   percentile of the time to the first byte and to the end of the answer.
//!   The origin paces events on tokio's 1 ms timer, about 0.1 s for the 87.
//!
//! The zip is `cargo lambda build --release --arm64 --output-format zip`'s
//! (`target/lambda/agent-edge-lambda/bootstrap.zip`), reported when present.
//!
//! Run: `cargo bench --bench lambda` (needs `scripts/setup.sh`'s
//! cargo-lambda). On AWS the cold start adds what no emulator shows: the
//! download of the zip and the start of the microVM. `LAMBDA_BENCH_ROUNDS` (default 3) cold starts per target,
//! `LAMBDA_BENCH_WARM` (default 50) warm requests per round.

// A bench reads the clock.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_edge::config::VARIABLES;
use agent_edge::demo::origin::{self as demo_origin, DemoOrigin, DemoOriginSettings};
use tokio::net::TcpListener;

#[path = "../tests/support/issuer.rs"]
#[allow(dead_code)] // the bench needs only the issuer's half of it
mod issuer_support;
use issuer_support::{header, id_claims, jwt_gateway_vars, mint, Issuer, Signer};

const ANSWER: &str = r#"{"prompt":"/events 520 0 6"}"#;
const ANSWER_TEXT_BYTES: usize = 1971;
const AUDIENCE: &str = "lambda-bench";
const FUNCTION: &str = "agent-edge-lambda";

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("lambda bench: not run (only under `cargo bench --bench lambda`)");
        return;
    }
    let rounds = env_number("LAMBDA_BENCH_ROUNDS", 3);
    let warm = env_number("LAMBDA_BENCH_WARM", 50);
    let cargo_lambda = repository().join("target/cargo-lambda/bin/cargo-lambda");
    assert!(
        cargo_lambda.exists(),
        "{} is missing: run scripts/setup.sh",
        cargo_lambda.display()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (demo, issuer_url) = runtime.block_on(async {
        let mut settings = DemoOriginSettings::demo();
        settings.word_delay = Duration::ZERO;
        let demo = demo_origin::spawn(settings, bind().await)
            .await
            .expect("demo origin");
        (demo, Issuer::spawn().await.url)
    });
    let vars = gateway_vars(&demo, &issuer_url);

    let client = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .expect("reqwest client");
    let mut tokens = (0..).map(|i| token(&issuer_url, &format!("bench-{i}")));
    let mut rows = Vec::new();
    let (mut emulator, emulator_addr) = start_emulator(&cargo_lambda);
    for target in [Target::Native, Target::Lambda] {
        let mut colds = Vec::new();
        let mut warm_samples = Vec::new();
        for round in 0..rounds {
            let cold_token = tokens.next().expect("a token");
            let started = Instant::now();
            let (mut process, base_url) = target.start(&vars, emulator_addr);
            let cold = runtime.block_on(invoke(&client, &base_url, &cold_token, started));
            let cached = tokens.next().expect("a token");
            for _ in 0..warm {
                let sent = Instant::now();
                warm_samples.push(runtime.block_on(invoke(&client, &base_url, &cached, sent)));
            }
            stop(&mut process);
            eprintln!(
                "{} round {round}: cold {:?} (first byte {:?})",
                target.name(),
                cold.total,
                cold.first_byte
            );
            colds.push(cold);
        }
        rows.push((target, colds, warm_samples));
    }
    stop(&mut emulator);

    println!();
    println!(
        "87-event answer ({ANSWER_TEXT_BYTES} bytes of text, transformed), {rounds} cold starts and {warm} warm requests each:"
    );
    println!(
        "{:<34} {:>22} {:>22} {:>14} {:>14} {:>14} {:>14}",
        "target",
        "cold: first byte (ms)",
        "cold: whole (ms)",
        "warm TTFB p50",
        "warm TTFB p90",
        "warm whole p50",
        "warm whole p90"
    );
    for (target, colds, warm_samples) in &rows {
        let list = |pick: fn(&Invocation) -> Duration| {
            colds
                .iter()
                .map(|c| format!("{:.0}", ms(pick(c))))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut first_bytes: Vec<Duration> = warm_samples.iter().map(|s| s.first_byte).collect();
        let mut totals: Vec<Duration> = warm_samples.iter().map(|s| s.total).collect();
        println!(
            "{:<34} {:>22} {:>22} {:>14.1} {:>14.1} {:>14.1} {:>14.1}",
            target.name(),
            list(|c| c.first_byte),
            list(|c| c.total),
            ms(percentile(&mut first_bytes, 0.5)),
            ms(percentile(&mut first_bytes, 0.9)),
            ms(percentile(&mut totals, 0.5)),
            ms(percentile(&mut totals, 0.9)),
        );
    }
    println!("(cold: from the process start to the end of its first answer)");
    let zip = repository()
        .join("target/lambda")
        .join(FUNCTION)
        .join("bootstrap.zip");
    match std::fs::metadata(&zip) {
        Ok(meta) => println!(
            "deployment zip {}: {} bytes ({:.2} MiB){}",
            zip.display(),
            meta.len(),
            meta.len() as f64 / 1_048_576.0,
            zip_architecture(&zip)
        ),
        Err(_) => println!(
            "deployment zip: none yet (cargo lambda build --release --arm64 --bin {FUNCTION} --output-format zip)"
        ),
    }
    drop(demo);
}

#[derive(Clone, Copy)]
enum Target {
    Native,
    Lambda,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Native => "native (agent-edge serve)",
            Target::Lambda => "lambda (cargo lambda watch)",
        }
    }

    /// Starts a fresh gateway process; returns it and its base URL, ready
    /// for a request (native: once its port accepts connections).
    fn start(self, vars: &[(String, String)], emulator: SocketAddr) -> (Child, String) {
        let mut command = match self {
            Target::Native => Command::new(env!("CARGO_BIN_EXE_agent-edge")),
            Target::Lambda => Command::new(env!("CARGO_BIN_EXE_agent-edge-lambda")),
        };
        for variable in VARIABLES {
            command.env_remove(variable.name);
        }
        command.envs(vars.iter().map(|(n, v)| (n, v)));
        let native_addr = free_addr();
        match self {
            Target::Native => {
                command.args(["serve", "--listen", &native_addr.to_string()]);
            }
            Target::Lambda => {
                // What Lambda sets for every function (as `cargo lambda
                // watch --only-lambda-apis` asks).
                command
                    .env("AWS_LAMBDA_RUNTIME_API", format!("http://{emulator}/.rt"))
                    .env("AWS_LAMBDA_FUNCTION_NAME", EMULATED_FUNCTION)
                    .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
                    .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256");
            }
        }
        let child = spawn_quiet(&mut command);
        let base_url = match self {
            Target::Native => {
                wait_for_port(native_addr);
                format!("http://{native_addr}")
            }
            Target::Lambda => format!("http://{emulator}/lambda-url/{EMULATED_FUNCTION}"),
        };
        (child, base_url)
    }
}

/// The function name `cargo lambda watch --only-lambda-apis` serves.
const EMULATED_FUNCTION: &str = "_";

/// `cargo lambda watch --only-lambda-apis`: the Runtime API and the function
/// URL emulation, without starting any function.
fn start_emulator(cargo_lambda: &Path) -> (Child, SocketAddr) {
    let addr = free_addr();
    let mut command = Command::new(cargo_lambda);
    command
        .args(["lambda", "watch", "--only-lambda-apis", "--disable-cors"])
        .args(["-A", &addr.ip().to_string(), "-P", &addr.port().to_string()])
        .current_dir(repository());
    let child = spawn_quiet(&mut command);
    wait_for_port(addr);
    (child, addr)
}

/// Spawns with stdin closed and stdout dropped; stderr lines that report
/// errors are shown.
fn spawn_quiet(command: &mut Command) -> Child {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting a target");
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("\"level\":\"error\"") || line.contains("rror") {
                eprintln!("  target: {line}");
            }
        }
    });
    child
}

fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGTERM (cargo lambda watch stops its function processes on it), then
/// waits.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

struct Invocation {
    first_byte: Duration,
    total: Duration,
}

/// One answer read to its end, timed from `started`.
async fn invoke(
    client: &reqwest::Client,
    base_url: &str,
    token: &str,
    started: Instant,
) -> Invocation {
    let mut response = client
        .post(format!("{base_url}/invocations"))
        .header("content-type", "application/json")
        .bearer_auth(token)
        .body(ANSWER)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200, "{base_url}");
    let mut first_byte = None;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("the body") {
        first_byte.get_or_insert_with(|| started.elapsed());
        body.extend_from_slice(&chunk);
    }
    let total = started.elapsed();
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.starts_with("1 2 3 ") && text.contains(" 520"),
        "the transformed answer: {text:?}"
    );
    Invocation {
        first_byte: first_byte.unwrap_or(total),
        total,
    }
}

fn gateway_vars(demo: &DemoOrigin, issuer_url: &str) -> Vec<(String, String)> {
    let extra = [("DEFAULT_RESPONSE_MODE", "transformed")];
    jwt_gateway_vars(demo.gateway_vars(), issuer_url, AUDIENCE, &extra)
}

fn token(issuer_url: &str, subject: &str) -> String {
    mint(
        Signer::Issuer,
        &header(),
        &id_claims(issuer_url, AUDIENCE, subject),
    )
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn percentile(samples: &mut [Duration], at: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * at).round() as usize]
}

/// `, arm64` or `, x86_64`, from the ELF header of the zip's `bootstrap`
/// (`unzip -p`), when it can be read.
fn zip_architecture(zip: &Path) -> String {
    let Ok(output) = Command::new("unzip")
        .arg("-p")
        .arg(zip)
        .arg("bootstrap")
        .output()
    else {
        return String::new();
    };
    // e_machine, a little-endian u16 at offset 18: 0xB7 aarch64, 0x3E x86-64.
    match output.stdout.get(18..20) {
        Some([0xB7, 0]) => ", arm64".into(),
        Some([0x3E, 0]) => ", x86_64".into(),
        _ => String::new(),
    }
}
