//! The Worker target: `scripts/wrangler-dev.sh` (which builds the Worker if
//! needed and runs `wrangler dev` on a free port) with the suite's
//! configuration in an env file and a fresh local-state directory.
//!
//! The process must not outlive the test binary, whatever way it ends
//! (success, panic, Ctrl-C, SIGKILL): it runs under a small shell watchdog
//! that reads a pipe whose only writer is this process. When this process
//! exits, the kernel closes the pipe, the read returns, and the watchdog
//! sends SIGTERM to wrangler (which takes workerd down with it).
//!
//! Its state and output live in `target/tmp/conformance-worker-<pid>/`
//! (`vars.env`, `state/`, and `wrangler.log`, everything it printed).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::stack::LogBuffer;

/// Set to `1` to leave the Worker target out.
pub const SKIP_VAR: &str = "AGENT_EDGE_SKIP_WORKER";
/// Seconds allowed for building and starting (default 900: a first
/// build of the wasm bundle takes minutes on two cores).
pub const START_TIMEOUT_VAR: &str = "AGENT_EDGE_WORKER_START_TIMEOUT";

/// Whether the Worker target was explicitly disabled.
pub fn skipped() -> bool {
    std::env::var(SKIP_VAR).is_ok_and(|v| v == "1")
}

/// Runs `$0 "$@"` (the script and its arguments) and stops it with SIGTERM
/// when stdin (our pipe, kept on fd 3) reaches end of file; exits with its
/// status when it stops by itself.
const WATCHDOG: &str = r#"
exec 3<&0
"$0" "$@" </dev/null 3<&- &
wrangler=$!
{ read -r _ <&3; kill -TERM "$wrangler" 2>/dev/null; } &
watcher=$!
wait "$wrangler"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

/// The watchdog's handle; kept (with its stdin pipe) until the process exits.
static PROCESS: OnceLock<Mutex<Child>> = OnceLock::new();

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts `wrangler dev` with `vars` and waits until it answers `/ping`.
/// Everything it prints goes to `logs`. Blocking; returns its base URL.
pub fn start(vars: &[(String, String)], logs: LogBuffer) -> Result<String, String> {
    let root = repository();
    let state = root
        .join("target")
        .join("tmp")
        .join(format!("conformance-worker-{}", std::process::id()));
    std::fs::create_dir_all(&state).map_err(|e| format!("creating {}: {e}", state.display()))?;
    let env_file = state.join("vars.env");
    let mut env_text = String::new();
    for (name, value) in vars {
        // dotenv double quotes: backslash and quote escaped.
        let value = value.replace('\\', "\\\\").replace('"', "\\\"");
        env_text.push_str(&format!("{name}=\"{value}\"\n"));
    }
    std::fs::write(&env_file, env_text).map_err(|e| format!("writing the env file: {e}"))?;

    let script = root.join("scripts").join("wrangler-dev.sh");
    if !script.exists() {
        return Err(format!("{} is missing", script.display()));
    }
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(&script)
        .arg("--env-file")
        .arg(&env_file)
        .arg("--persist-to")
        .arg(state.join("state"))
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", script.display()))?;

    // Everything wrangler prints, also kept on disk for after the run.
    let transcript_path = state.join("wrangler.log");
    let transcript = std::fs::File::create(&transcript_path)
        .map(|file| std::sync::Arc::new(Mutex::new(file)))
        .map_err(|e| format!("creating {}: {e}", transcript_path.display()))?;
    let (ready_tx, ready_rx) = mpsc::channel::<String>();
    for output in [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let logs = logs.clone();
        let ready_tx = ready_tx.clone();
        let transcript = transcript.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if let Some(url) = ready_url(&line) {
                    let _ = ready_tx.send(url);
                }
                if let Ok(mut file) = transcript.lock() {
                    let _ = writeln!(file, "{line}");
                }
                logs.push(line);
            }
        });
    }
    drop(ready_tx);
    let _ = PROCESS.set(Mutex::new(child));

    let timeout = std::env::var(START_TIMEOUT_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(900), Duration::from_secs);
    let deadline = Instant::now() + timeout;
    let describe = |why: &str| {
        // Let the readers collect what it printed last.
        std::thread::sleep(Duration::from_millis(500));
        let lines = logs.lines();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("wrangler dev did not start: {why}; its last output:\n{tail}")
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let url = match ready_rx.recv_timeout(left) {
        Ok(url) => url,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            return Err(describe(&format!("no \"Ready on\" line in {timeout:?}")))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => return Err(describe("it exited")),
    };
    // The build runs twice at start (a watcher artefact): wait until the
    // Worker itself answers.
    loop {
        if ping(&url) {
            return Ok(url);
        }
        if Instant::now() > deadline {
            return Err(describe(&format!("{url}/ping never answered 200")));
        }
        if exited() {
            return Err(describe("it exited"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn exited() -> bool {
    PROCESS.get().is_some_and(|child| {
        child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait()
            .is_ok_and(|status| status.is_some())
    })
}

/// A blocking `GET /ping` that is 200.
fn ping(base_url: &str) -> bool {
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
    let mut status_line = String::new();
    let _ = BufReader::new(stream).read_line(&mut status_line);
    status_line.starts_with("HTTP/1.1 200")
}

/// `http://127.0.0.1:<port>` from wrangler's "Ready on http://..." line.
fn ready_url(line: &str) -> Option<String> {
    let rest = &line[line.find("Ready on ")? + "Ready on ".len()..];
    let url = rest.split_whitespace().next()?.trim_end_matches('/');
    url.starts_with("http://").then(|| url.to_owned())
}

/// Removes ANSI escape sequences (colours) from a line of output.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[test]
fn wrangler_ready_line() {
    assert_eq!(
        ready_url(&strip_ansi(
            "\u{1b}[32m[wrangler:info]\u{1b}[0m Ready on http://127.0.0.1:41234"
        )),
        Some("http://127.0.0.1:41234".to_owned())
    );
    assert_eq!(ready_url("Starting local server..."), None);
}
