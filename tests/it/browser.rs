//! The chat page in real Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `tests/browser/chat.mjs`), against the native
//! server and the Worker under `wrangler dev` (issue 8, item 3).
//!
//! Each target gets its own servers on loopback: the demo agent, the
//! development issuer, a blank page on a second origin (allowed by
//! `CORS_ALLOW_ORIGINS`) and the gateway with `AUTH=jwt` (and the rate limit
//! of `wrangler.toml`). The script does
//! what a user does and checks what the page shows; this side then checks
//! what the demo agent saw: the second turn's session, the stream Stop
//! ended (within a second of the click), and the new conversation's fresh
//! session. Screenshots go to `target/browser/`. A third run, on a native
//! gateway with `AUTH=none`, checks that the page then asks for no sign-in.
//!
//! The Worker target is left out with `AGENT_EDGE_SKIP_WORKER=1`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use agent_edge::config::Config;
use agent_edge::demo::issuer::{self, DevIssuer, DevIssuerServer};
use agent_edge::demo::origin::{self as demo, DemoOrigin, DemoOriginSettings, StreamEnd};
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
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                PAGE.len()
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
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/setup.sh"
    );
    let root = repository();
    let out = root.join("target").join("browser");
    let user_data = root
        .join("target")
        .join("tmp")
        .join(format!("chromium-{}-{target}", std::process::id()));
    let _ = std::fs::remove_dir_all(&user_data);
    std::fs::create_dir_all(&user_data).expect("the browser's profile directory");
    std::fs::create_dir_all(&out).expect("target/browser");
    let screenshot = out.join(format!("chat-{target}.png"));
    let mut child = Command::new("node")
        .arg(root.join("tests").join("browser").join("chat.mjs"))
        .current_dir(&root)
        .env("GATEWAY_URL", gateway)
        .env("CROSS_ORIGIN_URL", &servers.cross_origin)
        .env("TOKEN", servers.token("browser-user"))
        .env("LIMITED_TOKEN", servers.token("browser-rate-limited"))
        .env("SIGN_IN", sign_in)
        .env("TARGET", target)
        .env("SCREENSHOT", &screenshot)
        .env("USER_DATA_DIR", &user_data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node tests/browser/chat.mjs");
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
    assert!(screenshot.exists(), "[{target}] no screenshot");
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

/// What the demo agent saw, against what the page showed.
async fn check_the_agent_side(target: &str, servers: &Servers, events: &[Event]) {
    let demo = &servers.demo;
    let first = session_of(demo, &format!("/events 12 200 1 {target}-first"));
    assert_eq!(
        event(events, "first_answer").value["session"],
        first.as_str(),
        "[{target}] the page shows the session the agent got"
    );
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
    check_the_agent_side("native", &servers, &events).await;
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
    check_the_agent_side("native-open", &servers, &events).await;
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
    check_the_agent_side("worker", &servers, &events).await;
}
