//! The `agent-edge` binary: configuration errors and the `dev` pipeline.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
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
    let printed = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
        text
    });
    let printed = tokio::time::timeout(Duration::from_secs(60), printed)
        .await
        .expect("dev prints its commands")
        .unwrap();
    let field = |prefix: &str| {
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {printed}"))
            .trim()
            .to_owned()
    };
    let gateway = field("gateway");
    let token = field("export TOKEN='").trim_end_matches('\'').to_owned();
    let mint = field("export TOKEN=$(").trim_end_matches(')').to_owned();
    assert!(printed.contains("curl -N"), "{printed}");
    assert!(!printed.contains(agent_edge::demo::origin::DEMO_SECRET_ACCESS_KEY));

    let client = reqwest::Client::new();
    let answer = client
        .post(format!("{gateway}/invocations"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"prompt":"hello","response":"transformed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body = answer.text().await.unwrap();
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
    let page_line = printed
        .lines()
        .find(|l| l.starts_with("The chat page: open "))
        .unwrap_or_else(|| panic!("no chat page line in {printed}"));
    assert!(page_line.contains(&format!("{gateway}/")), "{page_line}");
    let page = client.get(format!("{gateway}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
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
