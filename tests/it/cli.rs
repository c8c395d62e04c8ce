//! The `agent-edge` binary: configuration errors and the `dev` pipeline,
//! with the gateway natively, as the Worker under `wrangler dev` and as the
//! Lambda function under `cargo lambda watch`.

use std::io::{BufRead, BufReader};
use std::process::{ChildStdout, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_agent-edge");

/// Runs `agent-edge serve`, expecting it to exit on its own within 30 s.
fn serve_with(vars: &[(&str, &str)]) -> (i32, String) {
    let listen: &[&str] = if vars.iter().any(|(k, _)| *k == "LISTEN_ADDR") {
        &[]
    } else {
        &["--listen", "127.0.0.1:0"]
    };
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(listen)
        .env_clear()
        .envs(vars.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run agent-edge serve");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("agent-edge serve kept running with {vars:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn invalid_configuration_exits_non_zero_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "AGENT_RUNTIME_ARN"),
        (
            &[("AGENT_RUNTIME_ARN", "arn:aws:s3:::bucket")],
            "AGENT_RUNTIME_ARN",
        ),
        (
            &[
                (
                    "AGENT_RUNTIME_ARN",
                    "arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/a-1",
                ),
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
            ],
            "JWT_ISSUER",
        ),
        (
            &[
                ("ORIGIN_URL", "http://127.0.0.1:9"),
                ("ORIGIN_AUTH", "none"),
                ("AUTH", "none"),
                ("KEEPALIVE_SECONDS", "soon"),
            ],
            "KEEPALIVE_SECONDS",
        ),
        (
            &[
                ("ORIGIN_URL", "http://127.0.0.1:9"),
                ("ORIGIN_AUTH", "none"),
                ("AUTH", "none"),
                ("MAX_HEADER_BYTES", "1024"),
            ],
            "MAX_HEADER_BYTES",
        ),
        (
            &[
                ("ORIGIN_URL", "http://127.0.0.1:9"),
                ("ORIGIN_AUTH", "none"),
                ("AUTH", "none"),
                ("LISTEN_ADDR", "nowhere"),
            ],
            "",
        ),
    ];
    for (vars, variable) in cases {
        let (code, stderr) = serve_with(vars);
        assert_ne!(code, 0, "{vars:?} should fail: {stderr}");
        assert!(stderr.contains(variable), "{vars:?}: {stderr}");
        assert!(!stderr.contains("very-secret-value"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Kills the child when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `agent-edge dev` prints up to its "Press Ctrl-C" line, or `None`
/// when it does not get there within `timeout`.
async fn banner(stdout: ChildStdout, timeout: Duration) -> Option<String> {
    let printed = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("Press Ctrl-C") {
                return Some(text);
            }
        }
        None
    });
    tokio::time::timeout(timeout, printed).await.ok()?.unwrap()
}

/// The rest of the banner's line that starts with `prefix`.
fn banner_field(printed: &str, prefix: &str) -> String {
    printed
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {printed}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn dev_runs_the_whole_pipeline_and_prints_working_commands() {
    let mut child = Command::new(BIN)
        .args(["dev", "--listen", "127.0.0.1:0", "--word-delay-ms", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run agent-edge dev");
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let printed = banner(stdout, Duration::from_secs(60))
        .await
        .expect("dev prints its commands");
    let field = |prefix: &str| banner_field(&printed, prefix);
    let gateway = field("gateway");
    let token = field("export TOKEN='").trim_end_matches('\'').to_owned();
    let mint = field("export TOKEN=$(").trim_end_matches(')').to_owned();
    assert!(printed.contains("curl -N"), "{printed}");
    assert!(!printed.contains(agent_edge::demo::origin::DEMO_SECRET_ACCESS_KEY));

    let client = reqwest::Client::new();
    let (status, body) = ask_transformed(&client, &gateway, &token).await;
    assert_eq!(status, 200);
    assert!(body.contains("\n----------\n{\"usage\":"), "{body}");

    // The printed mint command: `curl -s -X POST <issuer>/token`.
    let issuer_token_url = mint.rsplit(' ').next().unwrap();
    let fresh = client
        .post(issuer_token_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let original = client
        .post(format!("{gateway}/invocations"))
        .bearer_auth(fresh.trim())
        .header("content-type", "application/json")
        .body(r#"{"prompt":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(original.status(), 200);
    assert!(original
        .text()
        .await
        .unwrap()
        .starts_with("data: {\"event\": {\"messageStart\""));

    let unauthenticated = client
        .post(format!("{gateway}/invocations"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);

    // The chat page, with the issuer's token endpoint for its sign-in button;
    // the issuer lets that page (and only it) read a token.
    let page = printed_page(&client, &printed, &gateway).await;
    let html = page.text().await.unwrap();
    let token_url = format!(r#"data-dev-token-url="{issuer_token_url}""#);
    assert!(html.contains(&token_url), "{html}");
    for (origin, allowed) in [(gateway.as_str(), true), ("http://evil.example", false)] {
        let answer = client
            .post(issuer_token_url)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let allow = answer
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(allow, allowed.then(|| origin.to_owned()), "{origin}");
    }
}

// ---- agent-edge dev --target worker | lambda ----

/// The conformance suite's switches: `1` leaves a target out.
const SKIP_WORKER: &str = "AGENT_EDGE_SKIP_WORKER";
const SKIP_LAMBDA: &str = "AGENT_EDGE_SKIP_LAMBDA";
/// Seconds allowed for `dev` to print its banner (default 900: a first build
/// of the Worker bundle takes minutes on two cores), as for the suite's
/// own Worker instances.
const START_TIMEOUT_VAR: &str = "AGENT_EDGE_WORKER_START_TIMEOUT";
/// Set in `dev`'s environment, which every process it starts inherits.
const MARK_VAR: &str = "AGENT_EDGE_DEV_TEST_MARK";

/// A running `agent-edge dev --target ...`; dropping it sends SIGTERM (so
/// that it stops its tool), then SIGKILL if it is still there after 30 s.
struct DevTarget {
    child: std::process::Child,
    /// Everything it printed on stderr (the tool's output included).
    log: std::path::PathBuf,
    mark: String,
}

impl DevTarget {
    fn start(target: &str) -> (DevTarget, ChildStdout) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
        std::fs::create_dir_all(&dir).unwrap();
        let mark = format!("{target}-{}", std::process::id());
        let log = dir.join(format!("cli-dev-{mark}.log"));
        let mut child = Command::new(BIN)
            .args(["dev", "--target", target, "--listen", "127.0.0.1:0"])
            .args(["--word-delay-ms", "1"])
            .env(MARK_VAR, &mark)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run agent-edge dev");
        let stdout = child.stdout.take().unwrap();
        (DevTarget { child, log, mark }, stdout)
    }

    fn terminate(&self) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Its exit status, waiting up to `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of its stderr, for a failure's message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The processes, other than `dev` itself, whose environment holds its
    /// mark: what it started and has not stopped.
    fn descendants(&self) -> Vec<String> {
        let needle = format!("{MARK_VAR}={}", self.mark).into_bytes();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(pid) = name.parse::<u32>() else {
                continue;
            };
            if pid == self.child.id() {
                continue;
            }
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ
                .split(|b| *b == 0)
                .any(|var| var == needle.as_slice())
            {
                let command = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let command = String::from_utf8_lossy(&command).replace('\0', " ");
                found.push(format!("{pid} {command}"));
            }
        }
        found
    }
}

impl Drop for DevTarget {
    fn drop(&mut self) {
        if self.child.try_wait().is_ok_and(|status| status.is_none()) {
            self.terminate();
            if self.wait(Duration::from_secs(30)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Whether something accepts connections on `addr` (`host:port`).
fn listening(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .unwrap()
        .any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
}

/// `host:port` of an `http://host:port[/path]` URL.
fn authority(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    rest.split('/').next().unwrap().to_owned()
}

/// Runs `agent-edge dev --target <target>`, reads its banner, sends the
/// printed transformed-mode request with the printed token, loads the chat
/// page (with the development issuer's token button), then stops it with
/// SIGTERM and checks that everything it started is gone.
async fn dev_target_end_to_end(target: &str) {
    let timeout = std::env::var(START_TIMEOUT_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(900), Duration::from_secs);
    let (mut dev, stdout) = DevTarget::start(target);
    let Some(printed) = banner(stdout, timeout).await else {
        panic!(
            "dev --target {target} printed no banner in {timeout:?}; its stderr ({}):\n{}",
            dev.log.display(),
            dev.log_tail()
        );
    };
    let field = |prefix: &str| banner_field(&printed, prefix);
    let gateway = field("gateway");
    let token = field("export TOKEN='").trim_end_matches('\'').to_owned();
    let issuer = field("development issuer")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let origin = field("demo agent")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(field("runs as").contains(match target {
        "worker" => "wrangler dev",
        _ => "cargo lambda watch",
    }));
    assert!(!printed.contains(agent_edge::demo::origin::DEMO_SECRET_ACCESS_KEY));

    // The printed transformed-mode curl, as it is written.
    let curl = printed
        .lines()
        .find(|l| l.contains(r#""response":"transformed""#))
        .unwrap_or_else(|| panic!("no transformed-mode curl in {printed}"));
    assert!(curl.contains(&format!("{gateway}/invocations")), "{curl}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (status, body) = ask_transformed(&client, &gateway, &token).await;
    assert_eq!(status, 200, "{}", dev.log_tail());
    assert!(body.contains("\n----------\n{\"usage\":"), "{body}");
    assert!(body.contains("{\"runtimeSessionId\":\""), "{body}");

    // The chat page, with the issuer's token endpoint for its button; the
    // issuer lets the page's origin read a token.
    let page = printed_page(&client, &printed, &gateway).await;
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("connect-src 'self' {issuer};")),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    let token_url = format!(r#"data-dev-token-url="{issuer}/token""#);
    assert!(html.contains(&token_url), "{html}");
    // The page's script and style, by the absolute paths it names.
    let page_origin = format!("http://{}", authority(&gateway));
    for asset in ["/app.js", "/app.css"] {
        let answer = client
            .get(format!("{page_origin}{asset}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{asset}");
    }
    let minted = client
        .post(format!("{issuer}/token"))
        .header("origin", &page_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(minted.status(), 200);
    assert_eq!(
        minted.headers()["access-control-allow-origin"],
        page_origin.as_str()
    );

    // SIGTERM: dev stops its tool's whole process group, then itself.
    assert!(!dev.descendants().is_empty(), "the tool runs with the mark");
    dev.terminate();
    let status = dev.wait(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "dev --target {target} after SIGTERM: {status:?}; its stderr:\n{}",
        dev.log_tail()
    );
    for addr in [authority(&gateway), authority(&issuer), authority(&origin)] {
        assert!(!listening(&addr), "{addr} still listens after dev stopped");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = dev.descendants();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after dev --target {target} stopped: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn dev_as_a_worker_answers_the_printed_curls_serves_the_page_and_stops() {
    if std::env::var(SKIP_WORKER).is_ok_and(|v| v == "1") {
        return;
    }
    dev_target_end_to_end("worker").await;
}

#[tokio::test]
async fn dev_as_a_lambda_function_answers_the_printed_curls_serves_the_page_and_stops() {
    if std::env::var(SKIP_LAMBDA).is_ok_and(|v| v == "1") {
        return;
    }
    dev_target_end_to_end("lambda").await;
}

#[test]
fn dev_names_the_command_that_installs_a_missing_tool() {
    let empty = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tmp")
        .join(format!("cli-dev-no-tools-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    for (target, tool) in [("worker", "wrangler"), ("lambda", "cargo-lambda")] {
        let output = Command::new(BIN)
            .args(["dev", "--target", target, "--listen", "127.0.0.1:0"])
            .arg("--repository")
            .arg(&empty)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{target}: {stderr}");
        assert!(
            stderr.contains(&format!("{tool} is not installed"))
                && stderr.contains("run scripts/setup.sh"),
            "{target}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{target}: started anyway");
    }
    std::fs::remove_dir_all(&empty).unwrap();
}

// ---- agent-edge transform ----

/// The recorded origin streams under `tests/data/sse/`.
fn recordings() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sse");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "sse"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    files
}

const SESSION: &str = "cli-0123456789abcdef0123456789abcdef";

/// `agent-edge transform` with `args`, `stdin` as its input; its stdout.
fn transform(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(BIN)
        .arg("transform")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run agent-edge transform");
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut input, &stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        output.status.success(),
        "transform {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// An origin answering every request with `body` as an event stream.
async fn serve_recording(body: Vec<u8>) -> std::net::SocketAddr {
    use http_body_util::Full;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = bytes::Bytes::from(body);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let response = http::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(Full::new(body.clone()));
                    async move { response }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[test]
fn transform_reads_a_file_or_stdin_and_defaults_to_transformed() {
    let seed = recordings()
        .into_iter()
        .find(|p| p.ends_with("strands-seed.sse"))
        .unwrap();
    let bytes = std::fs::read(&seed).unwrap();
    let path = seed.to_str().unwrap();
    let from_file = transform(&["--session-id", SESSION, path], b"");
    let from_stdin = transform(&["--session-id", SESSION], &bytes);
    let from_dash = transform(&["--session-id", SESSION, "-"], &bytes);
    let explicit = transform(
        &["--response", "transformed", "--session-id", SESSION, path],
        b"",
    );
    assert_eq!(from_file, from_stdin);
    assert_eq!(from_file, from_dash);
    assert_eq!(from_file, explicit);
    let text = String::from_utf8(from_file).unwrap();
    assert!(text.contains("\n----------\n{\"usage\":"), "{text}");
    assert!(
        text.ends_with(&format!("{{\"runtimeSessionId\":\"{SESSION}\"}}")),
        "{text}"
    );

    // Original mode is the recording itself; no keepalives.
    assert_eq!(transform(&["--response", "original", path], b""), bytes);

    // Without --session-id, a generated UUID, as the gateway's.
    let generated = String::from_utf8(transform(&[path], b"")).unwrap();
    let (_, session) = generated.rsplit_once("{\"runtimeSessionId\":\"").unwrap();
    assert_eq!(session.trim_end_matches("\"}").len(), 36, "{generated}");
}

#[test]
fn transform_prints_the_text_of_an_ag_ui_run() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sse");
    let session_line = format!("{{\"runtimeSessionId\":\"{SESSION}\"}}");
    let run = dir.join("ag-ui-run.sse");
    let printed = transform(&["--session-id", SESSION, run.to_str().unwrap()], b"");
    assert_eq!(
        String::from_utf8(printed).unwrap(),
        format!(
            "{}{}\n----------\n{}\n{session_line}",
            "Let me check the weather in Z\u{fc}rich for you.",
            "It is 18 \u{b0}C and partly cloudy in Z\u{fc}rich (\u{30c1}\u{30e5}\u{30fc}\u{30ea}\u{30c3}\u{30d2}) \u{1f324}\u{fe0f}.\n\nA \"light\" jacket should do.",
            r#"{"usage":{"inputTokens":1620,"outputTokens":74,"totalTokens":1694}}"#,
        )
    );
    let error = dir.join("ag-ui-run-error.sse");
    let printed = String::from_utf8(transform(
        &["--session-id", SESSION, error.to_str().unwrap()],
        b"",
    ))
    .unwrap();
    assert!(
        printed.starts_with(
            "Looking up your order\u{2026}\n----------\n{\"error\":{\"code\":\"agent_error\",\"message\":\"STRANDS_ERROR: An error occurred (AccessDeniedException)"
        ),
        "{printed}"
    );
    assert!(!printed.contains("111122223333"), "scrubbed: {printed}");
    assert!(printed.ends_with(&format!("\n{session_line}")), "{printed}");
    // Original mode is the recording itself.
    let bytes = std::fs::read(&run).unwrap();
    assert_eq!(
        transform(&["--response", "original", run.to_str().unwrap()], b""),
        bytes
    );
}

#[test]
fn transform_refuses_bad_arguments_without_panicking() {
    for args in [
        &["--response", "summary"][..],
        &["/nonexistent/recording.sse"],
        &["--session-id", "short"],
    ] {
        let output = Command::new(BIN)
            .arg("transform")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            !stderr.is_empty() && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

#[test]
fn transform_writes_each_text_as_its_event_arrives() {
    let mut child = Command::new(BIN)
        .args(["transform", "--session-id", SESSION])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run agent-edge transform");
    let mut input = child.stdin.take().unwrap();
    let mut output = child.stdout.take().unwrap();
    let _running = Running(child);
    let (sender, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 256];
        loop {
            match std::io::Read::read(&mut output, &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sender.send(buffer[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let event = |text: &str| {
        format!("data: {{\"event\": {{\"contentBlockDelta\": {{\"delta\": {{\"text\": \"{text}\"}}, \"contentBlockIndex\": 0}}}}}}\n\n")
    };
    // The first event, the input left open: its text must come out now.
    std::io::Write::write_all(&mut input, event("Hello").as_bytes()).unwrap();
    std::io::Write::flush(&mut input).unwrap();
    let first = received
        .recv_timeout(Duration::from_secs(20))
        .expect("the first text before the input ends");
    assert_eq!(first, b"Hello");
    std::io::Write::write_all(&mut input, event(" world").as_bytes()).unwrap();
    drop(input);
    let mut rest = Vec::new();
    while let Ok(chunk) = received.recv_timeout(Duration::from_secs(20)) {
        rest.extend_from_slice(&chunk);
    }
    let rest = String::from_utf8(rest).unwrap();
    assert!(
        rest.starts_with(" world\n----------\n{\"runtimeSessionId\""),
        "{rest}"
    );
}

#[tokio::test]
async fn transform_writes_what_the_gateway_sends_for_the_same_origin_stream() {
    for recording in recordings() {
        let bytes = std::fs::read(&recording).unwrap();
        let origin = serve_recording(bytes).await;
        let vars = [
            ("ORIGIN_URL", format!("http://{origin}")),
            ("ORIGIN_AUTH", "none".to_owned()),
            ("AUTH", "none".to_owned()),
            ("KEEPALIVE_SECONDS", "0".to_owned()),
        ];
        let config = agent_edge::config::Config::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let log: agent_edge::platform::native::LogSink = std::sync::Arc::new(|_: &str| {});
        let gateway = agent_edge::platform::native::spawn(config, listener, log)
            .await
            .unwrap();
        for mode in ["original", "transformed"] {
            let sent = reqwest::Client::new()
                .post(format!("http://{}/invocations", gateway.addr))
                .header("content-type", "application/json")
                .header("x-amzn-bedrock-agentcore-runtime-session-id", SESSION)
                .body(format!("{{\"response\":\"{mode}\"}}"))
                .send()
                .await
                .unwrap();
            assert_eq!(sent.status(), 200, "{recording:?} {mode}");
            let sent = sent.bytes().await.unwrap();
            let path = recording.to_str().unwrap().to_owned();
            let printed = tokio::task::spawn_blocking(move || {
                transform(&["--response", mode, "--session-id", SESSION, &path], b"")
            })
            .await
            .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&printed),
                String::from_utf8_lossy(&sent),
                "{recording:?} in {mode} mode"
            );
        }
        gateway.shutdown().await;
    }
}

/// The printed transformed-mode request: its status and body.
async fn ask_transformed(client: &reqwest::Client, gateway: &str, token: &str) -> (u16, String) {
    let answer = client
        .post(format!("{gateway}/invocations"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(r#"{"prompt":"hello","response":"transformed"}"#)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// The chat page the banner names: it is the gateway's, and served.
async fn printed_page(client: &reqwest::Client, printed: &str, gateway: &str) -> reqwest::Response {
    let page_line = printed
        .lines()
        .find(|l| l.starts_with("The chat page: open "))
        .unwrap_or_else(|| panic!("no chat page line in {printed}"));
    assert!(page_line.contains(&format!("{gateway}/")), "{page_line}");
    let page = client.get(format!("{gateway}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    page
}
