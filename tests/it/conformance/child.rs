//! Targets in a child process: `wrangler dev` ([`super::worker`]) and
//! `cargo lambda watch` ([`super::lambda`]) describe how they start as a
//! [`Launch`]; starting one, keeping its output, waiting until the gateway
//! answers and stopping it are written here once. Several may run at once:
//! the suite's shared ones ([`keep`]) and those a test starts for a
//! configuration of its own ([`own`]).
//!
//! No child may outlive the test binary, whatever way it ends (success,
//! panic, Ctrl-C, SIGKILL): each runs under a small shell watchdog that
//! reads a pipe whose only writer is this process. When this process
//! exits, or the [`Instance`] is dropped, the pipe closes, the read
//! returns, and the watchdog sends SIGTERM to the tool (which stops what it
//! started: workerd, the function processes).
//!
//! Each instance's files are in `target/tmp/conformance-<target>-<pid>-<name>/`
//! ([`instance_dir`]): `vars.env`, the tool's whole output (its
//! [`Launch::transcript`]), and whatever else the tool keeps there.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::stack::{LogBuffer, Target, TargetKind};

/// Runs `$0 "$@"` (the tool and its arguments) and stops it with SIGTERM
/// when stdin (our pipe, kept on fd 3) reaches end of file; exits with its
/// status when it stops by itself.
const WATCHDOG: &str = r#"
exec 3<&0
"$0" "$@" </dev/null 3<&- &
tool=$!
{ read -r _ <&3; kill -TERM "$tool" 2>/dev/null; } &
watcher=$!
wait "$tool"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

/// How one tool starts a target, and how its base URL becomes known.
pub struct Launch {
    /// The tool, for messages: `wrangler dev`.
    pub tool: &'static str,
    /// This instance's name, unique in the process.
    pub name: String,
    /// From [`instance_dir`].
    pub dir: PathBuf,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Variables of this process the tool must not pass on.
    pub unset: Vec<&'static str>,
    /// The file in `dir` that keeps everything the tool prints.
    pub transcript: &'static str,
    pub ready: Ready,
    /// For building and starting.
    pub timeout: Duration,
}

/// Where the base URL comes from.
pub enum Ready {
    /// A line the tool prints (colours removed), read by this function.
    Printed(fn(&str) -> Option<String>),
    /// Known before the start: the tool listens on `addr`, checked with a
    /// TCP connect, not a request (a request to `cargo lambda watch` starts
    /// a function).
    Listening { addr: SocketAddr, base_url: String },
}

/// A running tool. Dropping it stops the tool.
pub struct Instance {
    pub base_url: String,
    transcript: PathBuf,
    /// The watchdog, with the write end of its pipe as its stdin.
    watchdog: Mutex<Child>,
}

impl Instance {
    /// Whether the tool (with its watchdog) has stopped.
    pub fn exited(&self) -> bool {
        self.watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_wait()
            .is_ok_and(|status| status.is_some())
    }

    /// The file with everything the tool printed, for failure messages.
    pub fn transcript(&self) -> String {
        self.transcript.display().to_string()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let watchdog = self.watchdog.get_mut().unwrap_or_else(|e| e.into_inner());
        // End of file on the pipe: the watchdog stops the tool.
        drop(watchdog.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(watchdog.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `target/tmp/conformance-<target>-<pid>-<name>/`, created.
pub fn instance_dir(kind: TargetKind, name: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("tmp")
        .join(format!(
            "conformance-{}-{}-{name}",
            kind.name(),
            std::process::id()
        ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Writes `vars` to `<dir>/vars.env`, each line as `line` spells it; its
/// path.
pub fn env_file(
    dir: &std::path::Path,
    vars: &[(String, String)],
    line: fn(&str, &str) -> Result<String, String>,
) -> Result<PathBuf, String> {
    let path = dir.join("vars.env");
    let text = vars
        .iter()
        .map(|(name, value)| line(name, value))
        .collect::<Result<String, String>>()?;
    std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// Starts `launch`, everything it prints going to `logs` (and its
/// transcript), and waits until the gateway itself answers `GET /ping`:
/// 200, or its JSON error (an invalid configuration answers 500).
/// Blocking.
pub fn start(launch: Launch, logs: LogBuffer) -> Result<Instance, String> {
    let Launch {
        tool,
        name,
        dir,
        program,
        args,
        unset,
        transcript,
        ready,
        timeout,
    } = launch;
    let mut command = Command::new("bash");
    command.arg("-c").arg(WATCHDOG).arg(&program).args(args);
    for variable in unset {
        command.env_remove(variable);
    }
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command.stdin(Stdio::piped());
    command.stdout(Stdio::piped());
    command.stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting {}: {e}", program.display()))?;

    let transcript = dir.join(transcript);
    let file = std::fs::File::create(&transcript)
        .map(|file| Arc::new(Mutex::new(file)))
        .map_err(|e| format!("creating {}: {e}", transcript.display()))?;
    let printed_url = match ready {
        Ready::Printed(read) => Some(read),
        Ready::Listening { .. } => None,
    };
    let (url_tx, url_rx) = mpsc::channel::<String>();
    let outputs: [Option<Box<dyn Read + Send>>; 2] = [
        child.stdout.take().map(|o| Box::new(o) as _),
        child.stderr.take().map(|o| Box::new(o) as _),
    ];
    for output in outputs.into_iter().flatten() {
        let (logs, url_tx, file) = (logs.clone(), url_tx.clone(), file.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if let Some(url) = printed_url.and_then(|read| read(&line)) {
                    let _ = url_tx.send(url);
                }
                if let Ok(mut file) = file.lock() {
                    let _ = writeln!(file, "{line}");
                }
                logs.push(line);
            }
        });
    }
    drop(url_tx);
    // From here on, returning (even early) stops the tool.
    let mut instance = Instance {
        base_url: String::new(),
        transcript,
        watchdog: Mutex::new(child),
    };

    let deadline = Instant::now() + timeout;
    let all_of_it = instance.transcript();
    let describe = |why: &str| {
        // Let the readers collect what it printed last.
        std::thread::sleep(Duration::from_millis(500));
        let lines = logs.lines();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "{tool} ({name}) did not start: {why}; its last output (all of it in \
             {all_of_it}):\n{tail}"
        )
    };
    instance.base_url = match ready {
        Ready::Printed(_) => {
            let left = deadline.saturating_duration_since(Instant::now());
            match url_rx.recv_timeout(left) {
                Ok(url) => url,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(describe(&format!("no base URL printed in {timeout:?}")))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(describe("it exited")),
            }
        }
        Ready::Listening { addr, base_url } => {
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if instance.exited() {
                    return Err(describe("it exited"));
                }
                if Instant::now() > deadline {
                    return Err(describe(&format!("nothing listens on {addr}")));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            base_url
        }
    };
    // wrangler answers by itself while it builds; the Lambda emulator starts
    // the function on the first request: wait until the gateway answers.
    loop {
        if get_ping(&instance.base_url)
            .is_some_and(|(status, response)| answered_by_the_gateway(status, &response))
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

/// Checks that a shared instance answers `/ping` with 200, then keeps it
/// running until the test binary exits; its base URL.
pub fn keep(instance: Instance) -> Result<String, String> {
    static SHARED: Mutex<Vec<Instance>> = Mutex::new(Vec::new());
    let base_url = instance.base_url.clone();
    let (status, response) =
        get_ping(&base_url).ok_or_else(|| format!("{base_url}/ping stopped answering"))?;
    if status != 200 {
        return Err(format!("{base_url}/ping answered {status}: {response}"));
    }
    SHARED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(instance);
    Ok(base_url)
}

/// A target of the calling test's own, and the instance that serves it
/// (dropping it stops the tool).
pub struct Own {
    pub target: Target,
    pub instance: Instance,
}

/// Runs `start` (blocking: [`super::worker::start_named`] and the like)
/// off the runtime with a fresh log buffer, and makes the instance a
/// target of `kind`; panics with the reason when it cannot start.
pub async fn own(
    kind: TargetKind,
    start: impl FnOnce(LogBuffer) -> Result<Instance, String> + Send + 'static,
) -> Own {
    let logs = LogBuffer::default();
    let sink = logs.clone();
    let instance = tokio::task::spawn_blocking(move || start(sink))
        .await
        .expect("the starting thread")
        .unwrap_or_else(|why| panic!("[{}] {why}", kind.name()));
    let target = Target::new(kind, instance.base_url.clone(), logs);
    Own { target, instance }
}

/// Whether a `/ping` answer comes from the gateway: 200, or one of its
/// JSON errors (wrangler's own are not JSON).
fn answered_by_the_gateway(status: u16, response: &str) -> bool {
    status == 200 || response.contains(r#"{"error":{"code":""#)
}

/// A blocking `GET /ping`: its status and the whole response after the
/// status line (headers and body), or `None` without an answer.
fn get_ping(base_url: &str) -> Option<(u16, String)> {
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

/// Removes ANSI escape sequences (colours) from a line of output.
pub fn strip_ansi(line: &str) -> String {
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
