//! Worker targets: `scripts/wrangler-dev.sh` (which builds the Worker if
//! needed and runs `wrangler dev` on a free port) with a configuration in
//! an env file and a fresh local-state directory, started as a
//! [`child`](super::child) process. They may start together:
//! `scripts/build-worker.sh` builds one at a time and skips an up-to-date
//! build.
//!
//! The state is in the instance's directory (`state/`, beside `vars.env`
//! and `wrangler.log`); [`start_with_state`] puts it elsewhere, to share it
//! between instances.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::child::{self, Instance, Launch, Ready};
use super::stack::{LogBuffer, TargetKind};

/// Set to `1` to leave the Worker target out.
pub const SKIP_VAR: &str = "AGENT_EDGE_SKIP_WORKER";
/// Seconds allowed for building and starting (default 900: a first
/// build of the wasm bundle takes minutes on two cores).
pub const START_TIMEOUT_VAR: &str = "AGENT_EDGE_WORKER_START_TIMEOUT";

/// Starts a `wrangler dev` named `name` (unique in this process) with
/// `vars` ([`child::start`]). Blocking.
pub fn start_named(
    name: &str,
    vars: &[(String, String)],
    logs: LogBuffer,
) -> Result<Instance, String> {
    start_with_state(name, vars, logs, None)
}

/// [`start_named`], with its local state (the Cache API) in `state`
/// when given instead of a fresh directory: instances started one after
/// another on the same `state` find what the previous ones stored.
pub fn start_with_state(
    name: &str,
    vars: &[(String, String)],
    logs: LogBuffer,
    state: Option<&Path>,
) -> Result<Instance, String> {
    let dir = child::instance_dir(TargetKind::Worker, name)?;
    let state = state.map_or_else(|| dir.join("state"), Path::to_path_buf);
    let env_file = child::env_file(&dir, vars, |name, value| {
        // dotenv single quotes: the value as it is. wrangler's dotenv does
        // not unescape `\"` in double quotes, which a JSON value (AGENTS)
        // needs; double quotes, backslash and quote escaped, only for a
        // value with a single quote.
        if !value.contains(['\n', '\'']) {
            return Ok(format!("{name}='{value}'\n"));
        }
        let value = value.replace('\\', "\\\\").replace('"', "\\\"");
        Ok(format!("{name}=\"{value}\"\n"))
    })?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/wrangler-dev.sh");
    if !script.exists() {
        return Err(format!("{} is missing", script.display()));
    }
    let timeout = std::env::var(START_TIMEOUT_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(900), Duration::from_secs);
    let launch = Launch {
        tool: "wrangler dev",
        name: name.to_owned(),
        dir,
        program: script,
        args: vec![
            "--env-file".into(),
            env_file.into(),
            "--persist-to".into(),
            OsString::from(state),
        ],
        unset: Vec::new(),
        transcript: "wrangler.log",
        // The build runs twice at start (a watcher artefact), and wrangler
        // answers by itself meanwhile: [`child::start`] waits for the
        // gateway.
        ready: Ready::Printed(ready_url),
        timeout,
    };
    child::start(launch, logs)
}

/// `http://127.0.0.1:<port>` from wrangler's "Ready on http://..." line.
fn ready_url(line: &str) -> Option<String> {
    let rest = &line[line.find("Ready on ")? + "Ready on ".len()..];
    let url = rest.split_whitespace().next()?.trim_end_matches('/');
    url.starts_with("http://").then(|| url.to_owned())
}

#[test]
fn wrangler_ready_line() {
    assert_eq!(
        ready_url(&child::strip_ansi(
            "\u{1b}[32m[wrangler:info]\u{1b}[0m Ready on http://127.0.0.1:41234"
        )),
        Some("http://127.0.0.1:41234".to_owned())
    );
    assert_eq!(ready_url("Starting local server..."), None);
}
