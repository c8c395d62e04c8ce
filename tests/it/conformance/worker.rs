//! Worker targets: `scripts/wrangler-dev.sh` (which builds the Worker if
//! needed and runs `wrangler dev` on a free port) with a configuration in
//! an env file and a fresh local-state directory. Several can run at once:
//! the suite's shared one ([`start`]) and the ones a test starts for a
//! configuration of its own ([`start_named`]). They may start together:
//! `scripts/build-worker.sh` builds one at a time and skips an up-to-date
//! build.
//!
//! No `wrangler dev` may outlive the test binary, whatever way it ends
//! (success, panic, Ctrl-C, SIGKILL): each runs under a small shell watchdog
//! that reads a pipe whose only writer is this process. When this process
//! exits, or the [`WorkerInstance`] is dropped, the pipe closes, the read
//! returns, and the watchdog sends SIGTERM to wrangler (which takes workerd
//! down with it).
//!
//! Each instance's state and output live in
//! `target/tmp/conformance-worker-<pid>-<name>/` (`vars.env`, `state/`, and
//! `wrangler.log`, everything it printed); [`start_with_state`] puts the
//! state elsewhere, to share it between instances.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
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
pub(super) const WATCHDOG: &str = r#"
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

/// A running `wrangler dev`. Dropping it stops wrangler.
pub struct WorkerInstance {
    pub base_url: String,
    /// `target/tmp/conformance-worker-<pid>-<name>/`.
    pub dir: PathBuf,
    /// The watchdog, with the write end of its pipe as its stdin.
    watchdog: Mutex<Child>,
}

impl WorkerInstance {
    /// Whether wrangler (with its watchdog) has stopped.
    pub fn exited(&self) -> bool {
        self.watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait()
            .is_ok_and(|status| status.is_some())
    }
}

impl Drop for WorkerInstance {
    fn drop(&mut self) {
        let watchdog = self.watchdog.get_mut().unwrap_or_else(|e| e.into_inner());
        // End of file on the pipe: the watchdog stops wrangler.
        drop(watchdog.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(watchdog.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the suite's shared `wrangler dev` with `vars` and waits until it
/// answers `/ping` with 200. Everything it prints goes to `logs`. Blocking;
/// returns its base URL. It runs until the test binary exits.
pub fn start(vars: &[(String, String)], logs: LogBuffer) -> Result<String, String> {
    static SHARED: OnceLock<WorkerInstance> = OnceLock::new();
    let instance = start_named("shared", vars, logs)?;
    let base_url = instance.base_url.clone();
    keep_shared(&SHARED, instance, base_url, "the shared Worker")
}

/// Checks that a target's shared instance answers `/ping` with 200, then
/// keeps it in `slot` (alive until the test binary exits); its base URL.
pub(super) fn keep_shared<I: Send + Sync>(
    slot: &'static OnceLock<I>,
    instance: I,
    base_url: String,
    what: &str,
) -> Result<String, String> {
    let (status, response) =
        get_ping(&base_url).ok_or_else(|| format!("{base_url}/ping stopped answering"))?;
    if status != 200 {
        return Err(format!("{base_url}/ping answered {status}: {response}"));
    }
    slot.set(instance)
        .map_err(|_| format!("{what} was started twice"))?;
    Ok(base_url)
}

/// Starts a `wrangler dev` named `name` (unique in this process) with
/// `vars`, and waits until the gateway itself answers `GET /ping`: 200, or
/// its JSON error (an invalid configuration answers 500). Everything it
/// prints goes to `logs`. Blocking.
pub fn start_named(
    name: &str,
    vars: &[(String, String)],
    logs: LogBuffer,
) -> Result<WorkerInstance, String> {
    start_in(name, vars, logs, None)
}

/// [`start_named`], with its local state (the Cache API) in `state`
/// instead of a fresh directory: instances started one after another on
/// the same `state` find what the previous ones stored.
pub fn start_with_state(
    name: &str,
    vars: &[(String, String)],
    logs: LogBuffer,
    state: &Path,
) -> Result<WorkerInstance, String> {
    start_in(name, vars, logs, Some(state))
}

fn start_in(
    name: &str,
    vars: &[(String, String)],
    logs: LogBuffer,
    state: Option<&Path>,
) -> Result<WorkerInstance, String> {
    let root = repository();
    let dir = root
        .join("target")
        .join("tmp")
        .join(format!("conformance-worker-{}-{name}", std::process::id()));
    let state = state.map_or_else(|| dir.join("state"), Path::to_path_buf);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let env_file = dir.join("vars.env");
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
        .arg(&state)
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", script.display()))?;

    // Everything wrangler prints, also kept on disk for after the run.
    let transcript_path = dir.join("wrangler.log");
    let transcript = std::fs::File::create(&transcript_path)
        .map(|file| std::sync::Arc::new(Mutex::new(file)))
        .map_err(|e| format!("creating {}: {e}", transcript_path.display()))?;
    let (ready_tx, ready_rx) = mpsc::channel::<String>();
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
    // From here on, returning (even early) stops wrangler.
    let mut instance = WorkerInstance {
        base_url: String::new(),
        dir,
        watchdog: Mutex::new(child),
    };

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
        format!("wrangler dev ({name}) did not start: {why}; its last output:\n{tail}")
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let url = match ready_rx.recv_timeout(left) {
        Ok(url) => url,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            return Err(describe(&format!("no \"Ready on\" line in {timeout:?}")))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => return Err(describe("it exited")),
    };
    // The build runs twice at start (a watcher artefact), and wrangler
    // answers by itself meanwhile: wait until the gateway answers.
    loop {
        if get_ping(&url)
            .is_some_and(|(status, response)| answered_by_the_gateway(status, &response))
        {
            instance.base_url = url;
            return Ok(instance);
        }
        if Instant::now() > deadline {
            return Err(describe(&format!("{url}/ping never answered")));
        }
        if instance.exited() {
            return Err(describe("it exited"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a `/ping` answer comes from the gateway: 200, or one of its
/// JSON errors (wrangler's own are not JSON).
pub(super) fn answered_by_the_gateway(status: u16, response: &str) -> bool {
    status == 200 || response.contains(r#"{"error":{"code":""#)
}

/// A blocking `GET /ping`: its status and the whole response after the
/// status line (headers and body), or `None` without an answer.
pub(super) fn get_ping(base_url: &str) -> Option<(u16, String)> {
    let rest = base_url.strip_prefix("http://")?;
    // A base URL may have a path (the Lambda target's function URL prefix).
    let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(authority).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request =
        format!("GET {prefix}/ping HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    // wrangler keeps the connection open despite `Connection: close`: read
    // the head, then `Content-Length` bytes, rather than to the end (which
    // would wait for the read timeout).
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while !complete_response(&response) {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
        }
    }
    let response = String::from_utf8_lossy(&response);
    let (status_line, rest) = response.split_once("\r\n")?;
    let status = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    Some((status, rest.to_owned()))
}

/// Whether `response` holds a whole HTTP/1.1 response with a
/// `Content-Length` body (all `/ping` answers and errors have one).
fn complete_response(response: &[u8]) -> bool {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .is_some_and(|length| body.len() >= length)
}

/// `http://127.0.0.1:<port>` from wrangler's "Ready on http://..." line.
fn ready_url(line: &str) -> Option<String> {
    let rest = &line[line.find("Ready on ")? + "Ready on ".len()..];
    let url = rest.split_whitespace().next()?.trim_end_matches('/');
    url.starts_with("http://").then(|| url.to_owned())
}

/// Removes ANSI escape sequences (colours) from a line of output.
pub(super) fn strip_ansi(line: &str) -> String {
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

#[test]
fn gateway_answers_are_told_from_wrangler_ones() {
    assert!(answered_by_the_gateway(200, "content-length: 2\r\n\r\nok"));
    assert!(answered_by_the_gateway(
        500,
        "content-type: application/json\r\n\r\n{\"error\":{\"code\":\"invalid_configuration\",\"message\":\"x\"}}"
    ));
    assert!(!answered_by_the_gateway(
        503,
        "content-type: text/plain\r\n\r\nService Unavailable"
    ));
}
