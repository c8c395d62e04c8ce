//! Lambda targets: the `agent-edge-lambda` function under `cargo lambda
//! watch` (installed by `scripts/setup.sh` in `target/cargo-lambda`), which
//! emulates the Lambda control plane and function URLs: requests to
//! `/lambda-url/agent-edge-lambda/<path>` become function URL events, and
//! the function's streamed answer goes back as it is written. Started as a
//! [`child`](super::child) process; SIGTERM to `cargo lambda watch` stops
//! its function processes too. Its output (with the function's log lines)
//! is in the instance's `watch.log`.
//!
//! The function is built first (`cargo build --bin agent-edge-lambda`, what
//! `cargo lambda watch` runs lazily on the first request), so that the
//! first request meets a process start, not a compilation. Up to
//! [`CONCURRENCY`] execution environments (processes) serve requests at
//! once, as Lambda would scale them; each keeps its own key cache and rate
//! limiter.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::child::{self, Instance, Launch, Ready};
use super::stack::{LogBuffer, TargetKind};

/// Set to `1` to leave the Lambda target out.
pub const SKIP_VAR: &str = "AGENT_EDGE_SKIP_LAMBDA";
/// The function's binary, and its name in function URL paths.
pub const FUNCTION: &str = "agent-edge-lambda";
/// Execution environments `cargo lambda watch` may run at once: enough that
/// concurrent checks never queue behind each other's streams.
pub const CONCURRENCY: usize = 12;
/// Time allowed for building the function and starting the emulator.
const START_TIMEOUT: Duration = Duration::from_secs(900);

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

/// Builds the function and starts a `cargo lambda watch` named `name`
/// (unique in this process) whose function sees exactly `vars` of the
/// gateway's variables, with at most `concurrency` execution environments
/// ([`child::start`]). Blocking.
pub fn start_with_concurrency(
    name: &str,
    vars: &[(String, String)],
    logs: LogBuffer,
    concurrency: usize,
) -> Result<Instance, String> {
    let cargo_lambda = cargo_lambda()?;
    build()?;
    let dir = child::instance_dir(TargetKind::Lambda, name)?;
    let env_file = child::env_file(&dir, vars, |name, value| {
        // dotenv single quotes: the value as it is.
        if value.contains(['\n', '\'']) {
            return Err(format!("{name}: a value with a newline or a single quote"));
        }
        Ok(format!("{name}='{value}'\n"))
    })?;
    let addr = free_loopback_addr()?;
    let args = [
        "lambda",
        "watch",
        "--ignore-changes",
        "--disable-cors",
        "-A",
        &addr.ip().to_string(),
        "-P",
        &addr.port().to_string(),
        "--bin",
        FUNCTION,
        "--concurrency",
        &concurrency.to_string(),
        "--env-file",
    ]
    .map(Into::into);
    let launch = Launch {
        tool: "cargo lambda watch",
        name: name.to_owned(),
        dir,
        program: cargo_lambda,
        args: args.into_iter().chain([env_file.into()]).collect(),
        // The function sees the variables of the env file and nothing this
        // process happens to have (an operator's AWS_REGION, say).
        unset: agent_edge::config::VARIABLES
            .iter()
            .map(|v| v.name)
            .collect(),
        transcript: "watch.log",
        // The first request starts the function (cargo run, up to date).
        ready: Ready::Listening {
            addr,
            base_url: format!("http://{addr}/lambda-url/{FUNCTION}"),
        },
        timeout: START_TIMEOUT,
    };
    child::start(launch, logs)
}

/// A loopback address nobody listens on now.
fn free_loopback_addr() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))
}
