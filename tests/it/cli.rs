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
