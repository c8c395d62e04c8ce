//! Lambda targets: the `agent-edge-lambda` function under `cargo lambda
//! watch` (installed by `scripts/setup.sh` in `target/cargo-lambda`), which
//! emulates the Lambda control plane and function URLs: requests to
//! `/lambda-url/agent-edge-lambda/<path>` become function URL events, and
//! the function's streamed answer goes back as it is written.
//!
//! The function is built first (`cargo build --bin agent-edge-lambda`, what
//! `cargo lambda watch` runs lazily on the first request), so that the
//! first request meets a process start, not a compilation. Up to
//! [`CONCURRENCY`] execution environments (processes) serve requests at
//! once, as Lambda would scale them; each keeps its own key cache and rate
//! limiter.
//!
//! Like `wrangler dev` ([`super::worker`]), `cargo lambda watch` runs under
//! the watchdog that stops it when this process exits or the
//! [`LambdaInstance`] is dropped; SIGTERM to it stops its function
//! processes too. Its output (with the function's log lines) is kept in
//! `target/tmp/conformance-lambda-<pid>-<name>/watch.log`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::stack::LogBuffer;
use super::worker;

/// Set to `1` to leave the Lambda target out.
pub const SKIP_VAR: &str = "AGENT_EDGE_SKIP_LAMBDA";
/// The function's binary, and its name in function URL paths.
pub const FUNCTION: &str = "agent-edge-lambda";
/// Execution environments `cargo lambda watch` may run at once: enough that
/// concurrent checks never queue behind each other's streams.
pub const CONCURRENCY: usize = 12;
/// Time allowed for building the function and starting the emulator.
const START_TIMEOUT: Duration = Duration::from_secs(900);

/// Whether the Lambda target was explicitly disabled.
pub fn skipped() -> bool {
    std::env::var(SKIP_VAR).is_ok_and(|v| v == "1")
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `cargo-lambda` that `scripts/setup.sh` installed.
pub fn cargo_lambda() -> Result<PathBuf, String> {
    let path = repository().join("target/cargo-lambda/bin/cargo-lambda");
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} is missing: run scripts/setup.sh (it installs cargo-lambda from PyPI)",
            path.display()
        ))
    }
}

/// `cargo build --bin agent-edge-lambda`, once per test process.
pub fn build() -> Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let output = Command::new(cargo)
                .args(["build", "--bin", FUNCTION])
                .current_dir(repository())
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("running cargo build: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
                Err(format!(
                    "cargo build --bin {FUNCTION} failed:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ))
            }
        })
        .clone()
}

/// A running `cargo lambda watch`. Dropping it stops it and its functions.
pub struct LambdaInstance {
    /// `http://127.0.0.1:<port>/lambda-url/agent-edge-lambda`.
    pub base_url: String,
    watchdog: Mutex<Child>,
}

impl LambdaInstance {
    /// Whether `cargo lambda watch` (with its watchdog) has stopped.
    pub fn exited(&self) -> bool {
        self.watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait()
            .is_ok_and(|status| status.is_some())
    }
}

impl Drop for LambdaInstance {
    fn drop(&mut self) {
        let watchdog = self.watchdog.get_mut().unwrap_or_else(|e| e.into_inner());
        drop(watchdog.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(watchdog.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts the suite's shared Lambda target with `vars` and waits until the
/// function answers `/ping` with 200. Blocking; it runs until the test
/// binary exits.
pub fn start(vars: &[(String, String)], logs: LogBuffer) -> Result<String, String> {
    static SHARED: OnceLock<LambdaInstance> = OnceLock::new();
    let instance = start_named("shared", vars, logs)?;
    let base_url = instance.base_url.clone();
    worker::keep_shared(&SHARED, instance, base_url, "the shared Lambda target")
}

/// Builds the function, starts a `cargo lambda watch` named `name` (unique
/// in this process) whose function sees exactly `vars` of the gateway's
/// variables, and waits until the function answers `GET /ping` (200, or its
/// JSON error). Everything it prints goes to `logs`. Blocking.
pub fn start_named(
    name: &str,
    vars: &[(String, String)],
    logs: LogBuffer,
) -> Result<LambdaInstance, String> {
    start_with_concurrency(name, vars, logs, CONCURRENCY)
}

/// [`start_named`], with at most `concurrency` execution environments.
pub fn start_with_concurrency(
    name: &str,
    vars: &[(String, String)],
    logs: LogBuffer,
    concurrency: usize,
) -> Result<LambdaInstance, String> {
    let cargo_lambda = cargo_lambda()?;
    build()?;
    let root = repository();
    let dir = root
        .join("target")
        .join("tmp")
        .join(format!("conformance-lambda-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let env_file = dir.join("vars.env");
    let mut env_text = String::new();
    for (name, value) in vars {
        // dotenv single quotes: the value as it is.
        if value.contains(['\n', '\'']) {
            return Err(format!("{name}: a value with a newline or a single quote"));
        }
        env_text.push_str(&format!("{name}='{value}'\n"));
    }
    std::fs::write(&env_file, env_text).map_err(|e| format!("writing the env file: {e}"))?;

    let addr = free_loopback_addr()?;
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(worker::WATCHDOG)
        .arg(&cargo_lambda)
        .args(["lambda", "watch", "--ignore-changes", "--disable-cors"])
        .args(["-A", &addr.ip().to_string(), "-P", &addr.port().to_string()])
        .args(["--bin", FUNCTION, "--concurrency", &concurrency.to_string()])
        .arg("--env-file")
        .arg(&env_file)
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The function sees the variables of the env file and nothing this
    // process happens to have (an operator's AWS_REGION, say).
    for variable in agent_edge::config::VARIABLES {
        command.env_remove(variable.name);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", cargo_lambda.display()))?;

    let transcript_path = dir.join("watch.log");
    let transcript = std::fs::File::create(&transcript_path)
        .map(|file| std::sync::Arc::new(Mutex::new(file)))
        .map_err(|e| format!("creating {}: {e}", transcript_path.display()))?;
    for output in [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let logs = logs.clone();
        let transcript = transcript.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let Ok(line) = line else { break };
                let line = worker::strip_ansi(&line);
                if let Ok(mut file) = transcript.lock() {
                    let _ = writeln!(file, "{line}");
                }
                logs.push(line);
            }
        });
    }
    // From here on, returning (even early) stops cargo lambda watch.
    let instance = LambdaInstance {
        base_url: format!("http://{addr}/lambda-url/{FUNCTION}"),
        watchdog: Mutex::new(child),
    };

    let deadline = Instant::now() + START_TIMEOUT;
    let describe = |why: &str| {
        std::thread::sleep(Duration::from_millis(500));
        let lines = logs.lines();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "cargo lambda watch ({name}) did not start: {why}; its last output \
             (all of it in {}):\n{tail}",
            transcript_path.display()
        )
    };
    // A TCP connect, not a request: a request would start a function.
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if instance.exited() {
            return Err(describe("it exited"));
        }
        if Instant::now() > deadline {
            return Err(describe(&format!("nothing listens on {addr}")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The first request starts the function (cargo run, up to date).
    loop {
        if worker::get_ping(&instance.base_url)
            .is_some_and(|(status, response)| worker::answered_by_the_gateway(status, &response))
        {
            return Ok(instance);
        }
        if instance.exited() {
            return Err(describe("it exited"));
        }
        if Instant::now() > deadline {
            return Err(describe(&format!(
                "{}/ping never answered",
                instance.base_url
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A loopback address nobody listens on now.
fn free_loopback_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))
}
