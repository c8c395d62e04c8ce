//! The chat page in real Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `tests/browser/chat.mjs`), against the native
//! server and the Worker under `wrangler dev` (issue 8, item 3).
//!
//! Each target gets its own servers on loopback: the demo agent, the
//! development issuer, a blank page on a second origin (allowed by
//! `CORS_ALLOW_ORIGINS`) and the gateway with `AUTH=jwt` (and the rate limit
//! of `wrangler.toml`). The script does
//! what a user does and checks what the page shows; this side then checks
//! what the demo agent saw: the second turn's session (the subject's: the
//! page shows its own id, the agent gets the scoped one), the stream Stop
//! ended (within a second of the click), the first session ended by "New
//! conversation", and the new conversation's fresh session. Screenshots go
//! to `target/browser/`. A third run, on a native gateway with `AUTH=none`,
//! checks that the page then asks for no sign-in.
//!
//! `chat_page_offers_the_callers_agents_in_chromium` (issue 17) runs
//! `tests/browser/agents.mjs` against a native gateway with `AGENTS`: the
//! picker, another agent chosen, and the sessions "New conversation" ends.
//!
//! The Worker target is left out with `AGENT_EDGE_SKIP_WORKER=1`.
//!
//! `a_cross_site_page_cannot_drive_an_open_gateway` (issue 14, item 2) runs
//! `tests/browser/cross_site.mjs`: a page on another site sends an
//! `AUTH=none` gateway every request it can send without a CORS preflight,
//! each refused with 415 before the agent is called, and pages reached
//! through DNS rebinding get 421 from the gateway and the development issuer.
//!
//! `chat_page_shows_the_token_budget_in_chromium` (issue 16) runs
//! `tests/browser/budget.mjs` against a native gateway with a small
//! `TOKEN_BUDGET`: the page's budget line after each answer, then the
//! exhausted message with the reset time.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use agent_edge::config::Config;
use agent_edge::demo::issuer::{self, DevIssuer, DevIssuerServer};
use agent_edge::demo::origin::{
    self as demo, DemoOrigin, DemoOriginSettings, StreamEnd, DEMO_RUNTIME_ARN,
    DEMO_SECOND_RUNTIME_ARN,
};
use agent_edge::gateway::scoped_session_id;
use agent_edge::platform::native;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::conformance::stack::{LogBuffer, TargetKind};
use crate::conformance::worker;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Longest a whole browser run may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What every target runs behind.
struct Servers {
    demo: DemoOrigin,
    issuer: DevIssuerServer,
    /// `http://127.0.0.1:<port>`, serving a blank page.
    cross_origin: String,
    _cross_origin_task: tokio::task::JoinHandle<()>,
}

impl Servers {
    async fn start(page_origins: Vec<String>) -> Servers {
        let mut settings = DemoOriginSettings::demo();
        settings.word_delay = Duration::from_millis(60);
        let demo = demo::spawn(settings, bind().await)
            .await
            .expect("demo agent");
        let issuer = issuer::spawn_for_pages(DevIssuer::generate(), bind().await, page_origins)
            .await
            .expect("development issuer");
        let listener = bind().await;
        let cross_origin = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(serve_blank_page(listener));
        Servers {
            demo,
            issuer,
            cross_origin,
            _cross_origin_task: task,
        }
    }

    /// The gateway's variables: the demo agent with SigV4, JWTs of the
    /// issuer, CORS for the second origin.
    fn vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = self
            .demo
            .gateway_vars()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        for (name, value) in [
            ("AUTH", "jwt".to_owned()),
            ("JWT_ISSUER", self.issuer.issuer_url()),
            ("JWT_AUDIENCE", issuer::DEV_AUDIENCE.to_owned()),
            ("CORS_ALLOW_ORIGINS", self.cross_origin.clone()),
            ("UI", "on".to_owned()),
            // The Worker's limit is its RATE_LIMITER binding.
            ("RATE_LIMIT_PER_MINUTE", "60".to_owned()),
        ] {
            vars.push((name.to_owned(), value));
        }
        vars
    }

    fn token(&self, subject: &str) -> String {
        self.issuer
            .mint(subject, Duration::from_secs(3600), SystemTime::now())
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback")
}

/// A blank HTML page for every request: the second origin.
async fn serve_blank_page(listener: TcpListener) {
    const PAGE: &str = "<!doctype html><title>another origin</title><p>another origin</p>";
    serve_pages(
        listener,
        Arc::new(|_| ("text/html; charset=utf-8", PAGE.to_owned())),
    )
    .await
}

/// What a page server answers to a request head: its type and body.
type Answer = Arc<dyn Fn(&[u8]) -> (&'static str, String) + Send + Sync>;

/// A minimal HTTP/1.1 server on `listener`: reads each request's head and
/// answers 200 with `answer`'s type and body, then closes the connection.
async fn serve_pages(listener: TcpListener, answer: Answer) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let (content_type, body) = answer(&request);
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// One line the script printed, and when this process read it.
struct Event {
    at: Instant,
    value: Value,
}

/// Runs `tests/browser/chat.mjs` against `gateway`; panics with its output
/// when it fails.
fn run_script(target: &str, gateway: &str, servers: &Servers, sign_in: &str) -> Vec<Event> {
    let out = repository().join("target").join("browser");
    std::fs::create_dir_all(&out).expect("target/browser");
    let screenshot = out.join(format!("chat-{target}.png"));
    let events = run_node(
        "chat.mjs",
        target,
        vec![
            ("GATEWAY_URL", gateway.to_owned()),
            ("CROSS_ORIGIN_URL", servers.cross_origin.clone()),
            ("TOKEN", servers.token("browser-user")),
            ("LIMITED_TOKEN", servers.token("browser-rate-limited")),
            ("SIGN_IN", sign_in.to_owned()),
            ("TARGET", target.to_owned()),
            ("SCREENSHOT", screenshot.display().to_string()),
        ],
    );
    assert!(screenshot.exists(), "[{target}] no screenshot");
    events
}

/// Runs `tests/browser/<script>` with `env` and a fresh `USER_DATA_DIR`;
/// returns what it printed, or panics with its output when it fails.
fn run_node(script: &str, target: &str, env: Vec<(&str, String)>) -> Vec<Event> {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/setup.sh"
    );
    let root = repository();
    let user_data = root
        .join("target")
        .join("tmp")
        .join(format!("chromium-{}-{target}", std::process::id()));
    let _ = std::fs::remove_dir_all(&user_data);
    std::fs::create_dir_all(&user_data).expect("the browser's profile directory");
    let mut child = Command::new("node")
        .arg(root.join("tests").join("browser").join(script))
        .current_dir(&root)
        .envs(env)
        .env("USER_DATA_DIR", &user_data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run node tests/browser/{script}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let events = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .map(|line| Event {
                at: Instant::now(),
                value: serde_json::from_str(&line).unwrap_or(Value::String(line)),
            })
            .collect::<Vec<_>>()
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let events = events.join().expect("stdout reader");
    let errors = errors.join().expect("stderr reader");
    let printed: Vec<String> = events.iter().map(|e| e.value.to_string()).collect();
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!(
            "[{target}] the browser test failed ({status}):\n{errors}\nits steps:\n{}",
            printed.join("\n")
        ),
        None => panic!(
            "[{target}] the browser test took over {SCRIPT_TIMEOUT:?}:\n{errors}\nits steps:\n{}",
            printed.join("\n")
        ),
    }
    assert!(
        events.iter().any(|e| e.value["event"] == "done"),
        "[{target}] the script did not finish: {printed:?}"
    );
    events
}

fn event<'a>(events: &'a [Event], name: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.value["event"] == name)
        .unwrap_or_else(|| panic!("no {name:?} step"))
}

/// The session id the demo agent received with the prompt `prompt`.
fn session_of(demo: &DemoOrigin, prompt: &str) -> String {
    let requests = demo.requests();
    let request = requests
        .iter()
        .find(|r| {
            serde_json::from_slice::<Value>(&r.body).is_ok_and(|body| body["prompt"] == prompt)
        })
        .unwrap_or_else(|| panic!("the demo agent got no prompt {prompt:?}"));
    request.headers[agent_edge::gateway::SESSION_HEADER]
        .to_str()
        .expect("a text header")
        .to_owned()
}

/// Whether the demo agent got a `StopRuntimeSession` for `session`.
fn stopped(demo: &DemoOrigin, session: &str) -> bool {
    demo.requests().iter().any(|r| {
        r.uri.path().ends_with("/stopruntimesession")
            && r.headers[agent_edge::gateway::SESSION_HEADER] == session
    })
}

/// What the demo agent saw, against what the page showed; `subject` is the
/// signed-in caller's (`None` with `AUTH=none`: sessions are not scoped).
async fn check_the_agent_side(
    target: &str,
    servers: &Servers,
    events: &[Event],
    subject: Option<&str>,
) {
    let demo = &servers.demo;
    let first = session_of(demo, &format!("/events 12 200 1 {target}-first"));
    let shown = event(events, "first_answer").value["session"]
        .as_str()
        .expect("the page shows a session")
        .to_owned();
    let sent = subject.map_or(shown.clone(), |sub| {
        scoped_session_id(sub, "default", &shown)
    });
    assert_eq!(
        sent, first,
        "[{target}] the page shows the session whose scoped id the agent got"
    );
    // "New conversation" ended it (after Stop), with StopRuntimeSession.
    assert!(
        stopped(demo, &first),
        "[{target}] the first session was not ended"
    );
    assert!(!demo.session_open(DEMO_RUNTIME_ARN, &first));
    assert_eq!(
        session_of(demo, &format!("{target} second turn")),
        first,
        "[{target}] the second turn reuses the session"
    );
    let fresh = session_of(demo, &format!("/events 2 10 1 {target}-fresh"));
    assert_ne!(fresh, first, "[{target}] a new conversation, a new session");

    // Stop: the agent saw its caller go away, within a second of the click.
    let clicked = event(events, "stop_clicked").at;
    let stop_session = session_of(demo, &format!("/events 80 100 1 {target}-stop"));
    assert_eq!(stop_session, first, "[{target}] the stopped turn's session");
    let deadline = Instant::now() + Duration::from_secs(5);
    let record = loop {
        let record = demo.streams().into_iter().find(|s| {
            s.session_id == stop_session && s.end == StreamEnd::CallerLeft && s.started < clicked
        });
        if let Some(record) = record {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "[{target}] the demo agent never saw the stopped stream's caller leave: {:?}",
            demo.streams()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let after = record.ended.saturating_duration_since(clicked);
    assert!(
        after < Duration::from_secs(1),
        "[{target}] the origin request ended {after:?} after Stop"
    );
    // The stream would have run 8 s: it ended because of Stop.
    assert!(record.ended.duration_since(record.started) < Duration::from_secs(7));
    let first = &event(events, "first_answer").value;
    eprintln!(
        "[{target}] the first answer grew in {} steps over {} ms; Stop ended the origin request {after:?} after the click",
        first["steps"], first["spread_ms"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_page_in_chromium_on_the_native_server() {
    // The gateway's address first: the issuer lets its page fetch tokens.
    let gateway_listener = bind().await;
    let gateway_url = format!("http://{}", gateway_listener.local_addr().unwrap());
    let servers = Servers::start(vec![gateway_url.clone()]).await;
    let vars = servers.vars();
    let mut config =
        Config::from_lookup(|name| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
            .expect("a valid configuration");
    config.dev_token_url = Some(format!("{}/token", servers.issuer.issuer_url()));
    let logs = LogBuffer::default();
    let sink = logs.clone();
    let _gateway = native::spawn(
        config,
        gateway_listener,
        Arc::new(move |line: &str| sink.push(line.to_owned())),
    )
    .await
    .expect("native gateway");

    let events = {
        let servers = &servers;
        let gateway_url = gateway_url.clone();
        tokio::task::block_in_place(move || {
            run_script("native", &gateway_url, servers, "dev-button")
        })
    };
    // The development issuer's button gives tokens of `demo-user`.
    check_the_agent_side("native", &servers, &events, Some("demo-user")).await;
}

/// Issue 17: the page offers the caller's agents (`GET /agents`), sends
/// each prompt to the one chosen, and "New conversation" (or another
/// agent) ends the session with it (`tests/browser/agents.mjs`). This side
/// checks which runtime got which session, and that the demo agent saw
/// each ended session stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_page_offers_the_callers_agents_in_chromium() {
    let servers = Servers::start(Vec::new()).await;
    let mut vars = servers.vars();
    let agents = serde_json::json!({
        "sales": {"arn": DEMO_SECOND_RUNTIME_ARN, "description": "The second runtime"},
        "support": {"arn": DEMO_RUNTIME_ARN, "requireClaims": {"cognito:groups": ["support"]}},
    });
    vars.push(("AGENTS".to_owned(), agents.to_string()));
    let config =
        Config::from_lookup(|name| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
            .expect("a valid configuration");
    let gateway = native::spawn(config, bind().await, Arc::new(|_: &str| {}))
        .await
        .expect("native gateway");
    let out = repository().join("target").join("browser");
    std::fs::create_dir_all(&out).expect("target/browser");
    let screenshot = out.join("agents-native.png");
    let subject = "browser-agents-user";
    let env = vec![
        ("GATEWAY_URL", gateway.url()),
        ("TOKEN", servers.token(subject)),
        ("TARGET", "agents".to_owned()),
        ("SCREENSHOT", screenshot.display().to_string()),
    ];
    let events = tokio::task::block_in_place(|| run_node("agents.mjs", "agents", env));
    assert!(screenshot.exists(), "no screenshot");

    let demo = &servers.demo;
    let shown = |name: &str| {
        event(&events, name).value["session"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: a session"))
            .to_owned()
    };
    let first = scoped_session_id(subject, "default", &shown("default_answer"));
    let sales = scoped_session_id(subject, "sales", &shown("sales_answer"));
    let after = scoped_session_id(subject, "sales", &shown("new_conversation"));
    // Each prompt reached its agent's runtime with the scoped id.
    let reached = |session: &str, runtime: &str| {
        let path = format!(
            "/runtimes/{}/invocations",
            agent_edge::origin::encode_path_segment(runtime)
        );
        demo.requests().iter().any(|r| {
            r.uri.path() == path && r.headers[agent_edge::gateway::SESSION_HEADER] == session
        })
    };
    assert!(
        reached(&first, DEMO_RUNTIME_ARN),
        "the default agent's prompt"
    );
    assert!(reached(&sales, DEMO_SECOND_RUNTIME_ARN), "sales's prompts");
    assert!(
        reached(&after, DEMO_SECOND_RUNTIME_ARN),
        "the new conversation's"
    );
    // Both ended sessions were stopped; the last one is still open.
    for (session, runtime) in [
        (&first, DEMO_RUNTIME_ARN),
        (&sales, DEMO_SECOND_RUNTIME_ARN),
    ] {
        assert!(stopped(demo, session), "{session} was not stopped");
        assert!(
            !demo.session_open(runtime, session),
            "{session} is still open"
        );
    }
    assert!(demo.session_open(DEMO_SECOND_RUNTIME_ARN, &after));
}

/// With `AUTH=none` the page asks for no sign-in and streams all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_page_in_chromium_without_sign_in() {
    let servers = Servers::start(Vec::new()).await;
    let mut vars = servers.vars();
    vars.retain(|(name, _)| name != "AUTH");
    vars.push(("AUTH".to_owned(), "none".to_owned()));
    let config =
        Config::from_lookup(|name| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
            .expect("a valid configuration");
    let gateway = native::spawn(config, bind().await, Arc::new(|_: &str| {}))
        .await
        .expect("native gateway");
    let events =
        tokio::task::block_in_place(|| run_script("native-open", &gateway.url(), &servers, "none"));
    check_the_agent_side("native-open", &servers, &events, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_page_in_chromium_on_the_worker() {
    if TargetKind::Worker.left_out("chat_page_in_chromium_on_the_worker") {
        return;
    }
    let servers = Servers::start(Vec::new()).await;
    let vars = servers.vars();
    let instance =
        tokio::task::block_in_place(|| worker::start_named("browser", &vars, LogBuffer::default()))
            .unwrap_or_else(|why| panic!("{why}"));
    let events =
        tokio::task::block_in_place(|| run_script("worker", &instance.base_url, &servers, "paste"));
    check_the_agent_side("worker", &servers, &events, Some("browser-user")).await;
}

/// Issue 14, item 2: a page on another site cannot drive an `AUTH=none`
/// gateway on loopback (as `agent-edge dev` runs it), in real Chromium
/// (`tests/browser/cross_site.mjs`).
///
/// The attacker's page is served on a second loopback port under the name
/// `attacker.test` (Chromium's `--host-resolver-rules`), another site than
/// `127.0.0.1`. Every request it can send without a CORS preflight (fetch in
/// no-cors mode with an untyped Blob, a JSON-typed Blob and a JSON header,
/// both dropped by the browser, `text/plain`, form-encoded and multipart
/// bodies; a `text/plain` CORS request; a beacon; three HTML form posts, one
/// of them `enctype="text/plain"` shaped into a JSON body) must reach the
/// gateway and be answered 415 `unsupported_media_type`, the demo agent
/// receiving nothing. The control, the gateway's own page posting
/// `Content-Type: application/json`, reaches the agent (so the test can
/// fail). DNS rebinding: `evil.test` resolves to 127.0.0.1, and a page under
/// that name gets 421 `misdirected_request` from the gateway and from the
/// development issuer (no answer, no token), while `localhost` still works.
///
/// The script checks each request's log line as it comes (through
/// `/report` on the attacker's server, for the script only); this side
/// checks the whole log and the demo agent's requests again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_page_cannot_drive_an_open_gateway() {
    let demo = Arc::new(
        demo::spawn(DemoOriginSettings::demo(), bind().await)
            .await
            .expect("demo agent"),
    );
    let issuer = issuer::spawn(DevIssuer::generate(), bind().await)
        .await
        .expect("development issuer");
    let mut vars: Vec<(String, String)> = demo
        .gateway_vars()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    vars.push(("AUTH".to_owned(), "none".to_owned()));
    vars.push(("UI".to_owned(), "on".to_owned()));
    let config =
        Config::from_lookup(|name| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
            .expect("a valid configuration");
    let logs = LogBuffer::default();
    let sink = logs.clone();
    let gateway = native::spawn(
        config,
        bind().await,
        Arc::new(move |line: &str| sink.push(line.to_owned())),
    )
    .await
    .expect("native gateway");
    let gateway_url = gateway.url();
    let gateway_port = gateway_url.rsplit(':').next().unwrap().to_owned();
    assert!(
        gateway_url.starts_with("http://127.0.0.1:"),
        "{gateway_url}"
    );

    let attacker = bind().await;
    let attacker_port = attacker.local_addr().unwrap().port();
    let report: Report = {
        let (logs, demo) = (logs.clone(), demo.clone());
        Arc::new(move || {
            serde_json::json!({
                "gateway": logs.lines(),
                "origin_requests": demo.requests().len(),
            })
            .to_string()
        })
    };
    let _attacker_task = tokio::spawn(serve_attacker(attacker, report));
    let issuer_port = issuer.issuer_url().rsplit(':').next().unwrap().to_owned();

    let events = tokio::task::block_in_place(|| {
        run_node(
            "cross_site.mjs",
            "cross-site",
            vec![
                ("GATEWAY_URL", gateway_url.clone()),
                (
                    "ATTACKER_URL",
                    format!("http://attacker.test:{attacker_port}"),
                ),
                (
                    "REPORT_URL",
                    format!("http://127.0.0.1:{attacker_port}/report"),
                ),
                (
                    "REBOUND_GATEWAY_URL",
                    format!("http://evil.test:{gateway_port}"),
                ),
                ("ISSUER_URL", issuer.issuer_url()),
                (
                    "REBOUND_ISSUER_URL",
                    format!("http://evil.test:{issuer_port}"),
                ),
                (
                    "HOST_RULES",
                    "MAP attacker.test 127.0.0.1, MAP evil.test 127.0.0.1".to_owned(),
                ),
            ],
        )
    });

    // What the script saw, step by step.
    let probes: Vec<&Value> = events
        .iter()
        .filter(|e| e.value["event"] == "probe")
        .map(|e| &e.value)
        .collect();
    for probe in &probes {
        eprintln!(
            "cross-site {}: sent with Content-Type {}, the page saw {}, the gateway answered {} {}",
            probe["name"],
            probe["content_type"],
            probe["page_saw"],
            probe["log"]["status"],
            probe["log"]["error"]
        );
    }
    assert_eq!(probes.len(), 11, "one step per cross-site request");

    // The gateway's log: every cross-site request arrived and was refused
    // before the agent was called; then the one control request got through.
    let lines: Vec<Value> = logs
        .lines()
        .iter()
        .map(|line| serde_json::from_str(line).expect("every log line is JSON"))
        .filter(|line: &Value| line.get("status").is_some())
        .collect();
    let invocations: Vec<&Value> = lines
        .iter()
        .filter(|line| line["method"] == "POST" && line["path"] == "/invocations")
        .collect();
    let (refused, rest) = invocations.split_at(probes.len().min(invocations.len()));
    assert_eq!(refused.len(), probes.len(), "log lines: {lines:#?}");
    for (line, probe) in refused.iter().zip(&probes) {
        assert_eq!(
            (line["status"].as_u64(), line["error"].as_str()),
            (Some(415), Some("unsupported_media_type")),
            "{}: {line}",
            probe["name"]
        );
        assert_eq!(line["request_id"], probe["log"]["request_id"]);
    }
    // The control, then the rebound page's POST: Chromium sends a request
    // answered 421 once more on a new connection, so one or two lines.
    let statuses: Vec<u64> = rest.iter().filter_map(|l| l["status"].as_u64()).collect();
    assert!(
        matches!(statuses[..], [200, 421] | [200, 421, 421]),
        "after the attack: {rest:#?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["status"] == 200 && l["path"] == "/invocations")
            .count(),
        1,
        "one request reached the agent"
    );
    let misdirected: Vec<&Value> = lines.iter().filter(|l| l["status"] == 421).collect();
    assert!(
        misdirected.len() >= 2
            && misdirected
                .iter()
                .all(|l| l["error"] == "misdirected_request"),
        "the rebound page's requests: {misdirected:#?}"
    );

    // The demo agent: the control request only.
    let received = demo.requests();
    assert_eq!(received.len(), 1, "the demo agent received {received:?}");
    let prompt = serde_json::from_slice::<Value>(&received[0].body).expect("a JSON payload")
        ["prompt"]
        .clone();
    assert_eq!(prompt, "/events 3 0 1 same-origin control");
    for step in [
        "attack_refused",
        "control",
        "localhost",
        "rebinding_gateway",
        "rebinding_issuer",
    ] {
        event(&events, step);
    }
}

/// What `/report` on the attacker's server answers.
type Report = Arc<dyn Fn() -> String + Send + Sync>;

/// The attacker's page (any path), and `/report` for the script.
async fn serve_attacker(listener: TcpListener, report: Report) {
    const PAGE: &str = "<!doctype html><title>another site</title><p>another site</p>";
    let answer: Answer = Arc::new(move |request| {
        if request.starts_with(b"GET /report ") {
            ("application/json", report())
        } else {
            ("text/html; charset=utf-8", PAGE.to_owned())
        }
    });
    serve_pages(listener, answer).await
}

/// `TOKEN_BUDGET` of the budget test: spent by the third answer of
/// `tests/browser/budget.mjs` (405, 805 and 1205 tokens).
const BUDGET: u64 = 2000;

/// Issue 16: the chat page's token budget line, in Chromium
/// (`tests/browser/budget.mjs`), on a native gateway with a small
/// `TOKEN_BUDGET` (a daily window, the memory store). The script checks what
/// the page shows: the whole budget after sign-in, the budget less each
/// answer's tokens (the demo agent's usage, as the page's status shows it,
/// and as `/usage` counts them), then "spent" and, for one more prompt, the
/// exhausted message with the reset time (00:00 UTC), and a `Retry-After`
/// to that time. This side checks the gateway charged what the page showed
/// and that the refused prompt never reached the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_page_shows_the_token_budget_in_chromium() {
    // A daily window: a run across midnight UTC would start a new one.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let to_midnight = Duration::from_secs(86_400 - now % 86_400);
    if to_midnight < SCRIPT_TIMEOUT {
        tokio::time::sleep(to_midnight + Duration::from_secs(1)).await;
    }
    let servers = Servers::start(Vec::new()).await;
    let mut vars = servers.vars();
    vars.push(("TOKEN_BUDGET".to_owned(), BUDGET.to_string()));
    let config =
        Config::from_lookup(|name| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
            .expect("a valid configuration");
    let logs = LogBuffer::default();
    let sink = logs.clone();
    let gateway = native::spawn(
        config,
        bind().await,
        Arc::new(move |line: &str| sink.push(line.to_owned())),
    )
    .await
    .expect("native gateway");
    let out = repository().join("target").join("browser");
    std::fs::create_dir_all(&out).expect("target/browser");
    let screenshot = out.join("chat-budget.png");
    let events = tokio::task::block_in_place(|| {
        run_node(
            "budget.mjs",
            "budget",
            vec![
                ("GATEWAY_URL", gateway.url()),
                ("TOKEN", servers.token("browser-budget")),
                ("BUDGET", BUDGET.to_string()),
                ("SCREENSHOT", screenshot.display().to_string()),
            ],
        )
    });
    assert!(screenshot.exists(), "[budget] no screenshot");

    // The page's answers, in order, with the tokens their usage showed.
    let shown: Vec<u64> = events
        .iter()
        .filter(|e| e.value["event"] == "answer")
        .map(|e| e.value["total"].as_u64().expect("a token count"))
        .collect();
    let exhausted = &event(&events, "exhausted").value;
    assert!(
        shown.len() >= 2 && shown.iter().sum::<u64>() >= BUDGET,
        "answers: {shown:?}"
    );
    assert_eq!(exhausted["spent"], shown.iter().sum::<u64>());

    // The gateway charged each answer what the page showed, from the
    // origin's usage; then refused one prompt with 429.
    let lines: Vec<Value> = logs
        .lines()
        .iter()
        .map(|line| serde_json::from_str(line).expect("every log line is JSON"))
        .filter(|line: &Value| line["method"] == "POST" && line["path"] == "/invocations")
        .collect();
    let charged: Vec<u64> = lines
        .iter()
        .filter(|l| l["status"] == 200)
        .map(|l| {
            assert!(l.get("usage_estimated").is_none(), "an estimate: {l}");
            l["tokens_charged"].as_u64().expect("tokens_charged")
        })
        .collect();
    assert_eq!(charged, shown, "log lines: {lines:#?}");
    let refused: Vec<&Value> = lines.iter().filter(|l| l["status"] != 200).collect();
    assert!(
        matches!(refused[..], [line] if line["status"] == 429 && line["error"] == "token_budget_exhausted"),
        "refused: {refused:#?}"
    );
    // The refused prompt never reached the agent.
    let prompts: Vec<Value> = servers
        .demo
        .requests()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).expect("a JSON payload")["prompt"].clone()
        })
        .collect();
    assert_eq!(prompts.len(), shown.len(), "the demo agent got {prompts:?}");
    assert!(
        prompts
            .iter()
            .all(|p| p.as_str().is_some_and(|p| p.starts_with("/events "))),
        "the demo agent got {prompts:?}"
    );
    eprintln!(
        "[budget] {} answers of {shown:?} tokens spent {BUDGET}; then: {}",
        shown.len(),
        exhausted["error"]
    );
}
