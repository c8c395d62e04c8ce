//! `agent-edge dev --target worker|lambda`: the gateway of `dev` as the
//! Cloudflare Worker under `wrangler dev` (through `scripts/wrangler-dev.sh`,
//! whose `[build]` step rebuilds the bundle when the sources changed) or as
//! the Lambda function under `cargo lambda watch`, both installed in the
//! checkout by `scripts/setup.sh`. The tool is a child process given the
//! variables `dev` gives the native gateway, in an env file of a private
//! temporary directory (with the Worker's local state), removed at the end.
//!
//! The child runs in a process group of its own, so that a terminal's
//! Ctrl-C reaches this process only. Stopping sends SIGTERM to the whole
//! group (wrangler, workerd, a build in progress; cargo-lambda, which stops
//! its function processes itself), waits for the group to empty and kills
//! what is left after [`STOP_GRACE`]. Should this process die without
//! stopping it, the kernel sends the child SIGTERM (`PR_SET_PDEATHSIG`).

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Where `agent-edge dev` runs the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The native server, in this process.
    Native,
    /// The Cloudflare Worker, under `wrangler dev`.
    Worker,
    /// The AWS Lambda function, under `cargo lambda watch`.
    Lambda,
}

/// The Lambda function's binary, and its name in function URL paths.
const FUNCTION: &str = "agent-edge-lambda";
/// Execution environments `cargo lambda watch` may run at once: the page
/// and a few curls need not queue behind each other's streams.
const LAMBDA_CONCURRENCY: &str = "4";
/// Time the tool's process group has to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Ctrl-C or SIGTERM, caught from the moment this is made (before any child
/// starts, so that none is left behind by a signal's default action).
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    pub fn listen() -> Result<StopSignals, String> {
        let listen = |kind| signal(kind).map_err(|e| format!("cannot catch signals: {e}"));
        Ok(StopSignals {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
        })
    }

    pub async fn received(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// The tool that runs the gateway for a target, found in a checkout.
pub struct Tool {
    target: Target,
    repository: PathBuf,
    program: PathBuf,
}

impl Tool {
    /// The tool of `target` (the Worker or Lambda) in `repository`, or what
    /// is missing and the command that installs it.
    pub fn find(target: Target, repository: &Path) -> Result<Tool, String> {
        let (relative, installs) = match target {
            Target::Worker => (
                "node_modules/.bin/wrangler",
                "wrangler and workerd, with npm ci",
            ),
            Target::Lambda => (
                "target/cargo-lambda/bin/cargo-lambda",
                "cargo-lambda, from PyPI",
            ),
            Target::Native => unreachable!("the native gateway runs in this process"),
        };
        let program = repository.join(relative);
        let name = program
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned());
        if !program.is_file() {
            return Err(format!(
                "{name} is not installed ({} is missing): run scripts/setup.sh in {}, which installs {installs}",
                program.display(),
                repository.display()
            ));
        }
        if target == Target::Worker && !on_path("node") {
            return Err("node is not on PATH: wrangler runs on Node.js; install Node.js 20 or later, then run scripts/setup.sh".to_owned());
        }
        Ok(Tool {
            target,
            repository: repository.to_owned(),
            program,
        })
    }

    /// What runs the gateway, for the banner.
    pub fn describe(&self) -> &'static str {
        match self.target {
            Target::Worker => "the Cloudflare Worker, under wrangler dev",
            _ => "the Lambda function, under cargo lambda watch",
        }
    }

    /// The gateway's base URL when the tool listens on `addr`: the
    /// function URL's path under `cargo lambda watch`.
    pub fn url(&self, addr: SocketAddr) -> String {
        match self.target {
            Target::Lambda => format!("http://{addr}/lambda-url/{FUNCTION}"),
            _ => format!("http://{addr}"),
        }
    }

    /// Starts the tool on `addr` with the gateway's `vars`. Its output goes
    /// to this process's standard error.
    pub fn start(&self, addr: SocketAddr, vars: &HashMap<&str, String>) -> Result<Running, String> {
        let dir = private_dir()?;
        let env_file = dir.join("vars.env");
        if let Err(e) = write_env_file(&env_file, vars) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let (ip, port) = (addr.ip().to_string(), addr.port().to_string());
        let mut command = match self.target {
            Target::Worker => {
                let mut command = Command::new("bash");
                command
                    .arg(self.repository.join("scripts/wrangler-dev.sh"))
                    .args(["--ip", &ip, "--port", &port, "--env-file"])
                    .arg(&env_file)
                    // A fresh Cache API: no key set of an earlier run's issuer.
                    .arg("--persist-to")
                    .arg(dir.join("state"));
                command
            }
            _ => {
                let mut command = Command::new(&self.program);
                command
                    .args(["lambda", "watch", "--ignore-changes", "--disable-cors"])
                    .args(["-A", &ip, "-P", &port, "--bin", FUNCTION])
                    .args(["--concurrency", LAMBDA_CONCURRENCY, "--env-file"])
                    .arg(&env_file);
                // The function in this binary's profile: `cargo run --release`
                // builds both alike.
                if !cfg!(debug_assertions) {
                    command.arg("--release");
                }
                // The function sees the env file's variables, not whatever
                // this shell has (an AWS_REGION, say).
                for variable in agent_edge::config::VARIABLES {
                    command.env_remove(variable.name);
                }
                command
            }
        };
        let parent = std::process::id();
        command
            .current_dir(&self.repository)
            .stdin(Stdio::null())
            .stdout(Stdio::from(io::stderr()))
            .stderr(Stdio::inherit())
            .process_group(0);
        // SAFETY: prctl and getppid are async-signal-safe, and the closure
        // allocates nothing.
        unsafe {
            command.pre_exec(move || {
                // SIGTERM to the child when this process dies. The child is
                // spawned from the main thread (`dev` runs in `block_on`),
                // which lives as long as the process.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    // This process is already gone.
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        match command.spawn() {
            Ok(child) => Ok(Running {
                child,
                dir,
                name: match self.target {
                    Target::Worker => "wrangler dev",
                    _ => "cargo lambda watch",
                },
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(format!("cannot start {}: {e}", self.program.display()))
            }
        }
    }
}

/// A running tool. Dropping it stops its whole process group.
pub struct Running {
    child: Child,
    /// The private directory of its env file and state.
    dir: PathBuf,
    name: &'static str,
}

impl Running {
    /// Waits until the gateway answers `GET <url>/ping` with 200 (the first
    /// start builds the Worker bundle or the function: minutes); an error
    /// when the tool stops first or the gateway answers with an error (an
    /// invalid configuration).
    pub async fn wait_until_ready(&mut self, url: &str) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "{} stopped before the gateway answered ({status}); its output is above",
                    self.name
                ));
            }
            if let Ok(response) = client.get(format!("{url}/ping")).send().await {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if status == 200 {
                    return Ok(());
                }
                // The gateway's own errors are JSON; the tool's (while it
                // builds or starts) are not.
                if body.contains(r#"{"error":{"code":""#) {
                    return Err(format!(
                        "the gateway answered GET /ping with {status}: {body}"
                    ));
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the tool stops by itself; how it ended.
    pub async fn exited(&mut self) -> String {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(e) => return e.to_string(),
            }
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // The child leads its group: its pid is the group's id.
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory effects.
        let signal_group = |signal| unsafe { libc::kill(-group, signal) };
        signal_group(libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        loop {
            // Reaped, the leader no longer counts as a member.
            let _ = self.child.try_wait();
            if signal_group(0) != 0 {
                break;
            }
            if Instant::now() > deadline {
                signal_group(libc::SIGKILL);
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new directory only this user can read, under the system's temporary
/// directory: outside the checkout, gone when the tool stops.
fn private_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("agent-edge-dev-{}", std::process::id()));
    // A leftover of an earlier process that had this pid.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// `NAME='value'` lines, which wrangler's and cargo-lambda's dotenv
/// parsers both take as they are.
fn write_env_file(path: &Path, vars: &HashMap<&str, String>) -> Result<(), String> {
    let mut names: Vec<&&str> = vars.keys().collect();
    names.sort();
    let mut text = String::new();
    for name in names {
        let value = &vars[*name];
        if value.contains(['\'', '\n', '\r']) {
            return Err(format!(
                "{name}: a value with a quote or a line break cannot go in an env file"
            ));
        }
        text.push_str(&format!("{name}='{value}'\n"));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Whether an executable `program` is in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_hold_values_as_they_are() {
        let dir = private_dir().unwrap();
        let path = dir.join("vars.env");
        let vars = HashMap::from([("B", "x y=\"z\"".to_owned()), ("A", String::new())]);
        write_env_file(&path, &vars).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "A=''\nB='x y=\"z\"'\n"
        );
        let quoted = HashMap::from([("A", "it's".to_owned())]);
        assert!(write_env_file(&dir.join("other.env"), &quoted).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
