//! `LIMITS_STORE=redis` with real parts, really started: each test starts
//! its own `redis-server` (a temporary directory, a free loopback port, a
//! password; `scripts/setup.sh` installs it), the demo origin, the JWT
//! issuer, and `agent-edge serve` processes (and, for the fleet, the Lambda
//! function under `cargo lambda watch`) configured with a `REDIS_URL` that
//! holds the password.
//!
//! - [`fleet`]: a budget shared exactly by two `serve` processes and a
//!   Lambda function, the request limit across two processes, 500
//!   concurrent streams charged to the token;
//! - [`outage`]: Redis stopped and started again (`allow`, `deny`), a
//!   "Redis" that never answers, one that stalls and resumes, `rediss://`;
//! - [`script`]: the Lua script answers as `limits::apply` does.
//!
//! Every test ends by searching every log line it collected, and every
//! answer it read, for the password and the URL ([`Logs::assert_clean`]).
//!
//! Windows are computed from the wall clock, as the gateways compute them:
//! a check that needs one window retries when a boundary fell inside it.
//!
//! Run: `cargo test --test it limits_redis`.

mod fleet;
mod outage;
mod script;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_edge::demo::origin::{self as demo, DemoOrigin, DemoOriginSettings};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::conformance::stack::LogBuffer;
use crate::conformance::tokens::{self, Issuer};
use crate::issuer_support::jwt_gateway_vars;

const BIN: &str = env!("CARGO_BIN_EXE_agent-edge");

/// Unix time in seconds, with its fraction.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// The start of the window of `seconds` that holds `at` (as the gateway
/// computes it).
pub fn window_start(at: f64, seconds: u64) -> u64 {
    at as u64 / seconds * seconds
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `target/tmp/limits-redis-<pid>-<name>/`, created empty.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/tmp")
        .join(format!("limits-redis-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the test's directory");
    dir
}

/// A `redis-server` of the test's own, killed on drop.
pub struct RedisServer {
    pub port: u16,
    /// With an `@` in it: the URL holds it percent-encoded.
    pub password: String,
    dir: PathBuf,
    /// `--tls-port` and its files, when serving TLS (plain on `port` too).
    tls: Option<(u16, Vec<String>)>,
    process: Option<Child>,
}

impl RedisServer {
    /// Starts one and waits until it answers.
    pub async fn start(name: &str) -> RedisServer {
        Self::start_with(name, None).await
    }

    /// The same with TLS on a port of its own: `args` are the `--tls-*`
    /// options besides the port.
    pub async fn start_with(name: &str, tls: Option<Vec<String>>) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            password: format!("Rd-p@ss-{}", unique("pw")),
            dir: scratch_dir(name),
            tls: tls.map(|args| (free_port(), args)),
            process: None,
        };
        server.run().await;
        server
    }

    /// `redis://default:<password>@127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!(
            "redis://default:{}@127.0.0.1:{}/0",
            self.password.replace('@', "%40"),
            self.port
        )
    }

    /// The same over TLS.
    pub fn tls_url(&self) -> String {
        let (port, _) = self.tls.as_ref().expect("a TLS server");
        format!(
            "rediss://default:{}@127.0.0.1:{port}/0",
            self.password.replace('@', "%40")
        )
    }

    /// What no log line or answer may contain.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![
            self.password.clone(),
            self.password.replace('@', "%40"),
            self.url(),
        ];
        if self.tls.is_some() {
            secrets.push(self.tls_url());
        }
        secrets
    }

    async fn run(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--requirepass", &self.password])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"));
        if let Some((port, args)) = &self.tls {
            command.args(["--tls-port", &port.to_string()]).args(args);
        }
        let process = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting redis-server: {e} (scripts/setup.sh installs it)")
            });
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut connection) = self.connection().await {
                let pong: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer; its log: {}",
                self.port,
                self.dir.join("redis.log").display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Stops it at once (SIGKILL), as a crash would.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts it again on the same port (empty: nothing is saved).
    pub async fn restart(&mut self) {
        self.stop();
        self.run().await;
    }

    /// A connection of the test's own.
    pub async fn connection(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }

    /// The count under `key` (0 when absent).
    pub async fn count(&self, key: &str) -> u64 {
        let mut connection = self.connection().await.expect("the test's connection");
        let value: Option<u64> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("GET");
        value.unwrap_or(0)
    }

    /// The tokens of `subject` in every window of `seconds` from `from` to
    /// `to` (Unix seconds): a boundary may fall between them.
    pub async fn tokens(&self, subject: &str, seconds: u64, from: f64, to: f64) -> u64 {
        let mut total = 0;
        let mut start = window_start(from, seconds);
        while start <= window_start(to, seconds) {
            total += self
                .count(&format!("agent-edge:tokens:{seconds}:{start}:{subject}"))
                .await;
            start += seconds;
        }
        total
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every log line and answer body a test collected, to search for secrets.
#[derive(Clone, Default)]
pub struct Logs {
    buffers: std::sync::Arc<std::sync::Mutex<Vec<(String, LogBuffer)>>>,
}

impl Logs {
    pub fn buffer(&self, name: &str) -> LogBuffer {
        let buffer = LogBuffer::default();
        self.buffers
            .lock()
            .unwrap()
            .push((name.to_owned(), buffer.clone()));
        buffer
    }

    /// No line (log or answer) holds any of `secrets`; and there were lines.
    pub fn assert_clean(&self, secrets: &[String]) {
        let buffers = self.buffers.lock().unwrap();
        let mut lines = 0;
        for (name, buffer) in buffers.iter() {
            for line in buffer.lines() {
                lines += 1;
                for secret in secrets {
                    assert!(
                        !line.contains(secret.as_str()),
                        "{name} wrote a secret ({secret}): {line}"
                    );
                }
            }
        }
        assert!(lines > 0, "no log lines were collected");
    }
}

/// The demo origin (no pause between words unless a prompt asks) and the
/// JWT issuer.
pub struct Upstream {
    pub demo: DemoOrigin,
    pub issuer: Issuer,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let mut settings = DemoOriginSettings::demo();
        settings.word_delay = Duration::from_millis(1);
        let demo = demo::spawn(
            settings,
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        )
        .await
        .expect("the demo origin");
        Upstream {
            demo,
            issuer: Issuer::spawn().await,
        }
    }

    /// The gateway's variables: the demo origin, JWTs from the issuer,
    /// `LIMITS_STORE=redis` with `redis_url`, and `extra`.
    pub fn vars(&self, redis_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = vec![("LIMITS_STORE", "redis"), ("REDIS_URL", redis_url)];
        all.extend_from_slice(extra);
        jwt_gateway_vars(
            self.demo.gateway_vars(),
            &self.issuer.url,
            tokens::AUDIENCE,
            &all,
        )
    }

    pub fn token(&self, subject: &str) -> String {
        tokens::token_of(&self.issuer.url, subject)
    }

    /// Requests the origin received so far.
    pub fn origin_requests(&self) -> usize {
        self.demo.requests().len()
    }
}

/// An `agent-edge serve` process, killed on drop.
pub struct Serve {
    pub base_url: String,
    pub logs: LogBuffer,
    process: Child,
}

impl Serve {
    /// Starts `agent-edge serve` with exactly `vars` and waits for its
    /// `listening` line; its stderr goes to `logs`.
    pub async fn start(vars: &[(String, String)], logs: LogBuffer) -> Serve {
        let mut process = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_clear()
            .envs(vars.iter().map(|(n, v)| (n, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run agent-edge serve");
        let stderr = process.stderr.take().expect("piped");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if value["event"] == "listening" {
                        let _ = addr_tx.send(value["addr"].as_str().unwrap_or("").to_owned());
                    }
                }
                sink.push(line);
            }
        });
        let addr =
            tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(30)))
                .await
                .expect("the waiting thread");
        let addr = addr.unwrap_or_else(|_| {
            panic!(
                "agent-edge serve did not start; it wrote:\n{}",
                logs.lines().join("\n")
            )
        });
        Serve {
            base_url: format!("http://{addr}"),
            logs,
            process,
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Every JSON log line in `logs`.
pub fn json_lines(logs: &LogBuffer) -> Vec<Value> {
    logs.lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(&line[line.find('{')?..]).ok())
        .filter(Value::is_object)
        .collect()
}

/// The request line of the request sent with this `X-Request-Id`, waiting
/// up to 5 s for it (a stream's line is written when it ends).
pub async fn request_line(logs: &LogBuffer, request_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = json_lines(logs)
            .into_iter()
            .find(|l| l["client_request_id"] == request_id && l["path"].is_string())
        {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no request line for {request_id}; the log:\n{}",
            logs.lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A whole answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error code of a JSON error answer.
    pub fn error_code(&self) -> Option<String> {
        let body: Value = serde_json::from_str(&self.body).ok()?;
        body["error"]["code"].as_str().map(str::to_owned)
    }

    pub fn retry_after(&self) -> u64 {
        self.header("retry-after")
            .unwrap_or_else(|| panic!("no Retry-After: {self:?}"))
            .parse()
            .expect("Retry-After in seconds")
    }

    /// `r` of the `"tokens"` item of `RateLimit`.
    pub fn tokens_remaining(&self) -> Option<u64> {
        let field = self.header("ratelimit")?;
        let item = field
            .split(',')
            .find(|i| i.trim_start().starts_with("\"tokens\""))?;
        item.split(';')
            .find_map(|p| p.trim().strip_prefix("r="))?
            .parse()
            .ok()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
}

/// `POST /invocations` with `body` as `subject`'s token; the whole answer,
/// also kept in `answers` (searched for secrets like the logs).
pub async fn invoke(
    client: &reqwest::Client,
    base_url: &str,
    token: &str,
    request_id: &str,
    body: &str,
    answers: &LogBuffer,
) -> Reply {
    let request = client
        .post(format!("{base_url}/invocations"))
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .bearer_auth(token)
        .body(body.to_owned())
        .timeout(Duration::from_secs(30));
    read(request, answers).await
}

/// `GET /usage` as the token's subject.
pub async fn usage(
    client: &reqwest::Client,
    base_url: &str,
    token: &str,
    answers: &LogBuffer,
) -> Value {
    let reply = read(
        client
            .get(format!("{base_url}/usage"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(10)),
        answers,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    serde_json::from_str(&reply.body).expect("JSON")
}

async fn read(request: reqwest::RequestBuilder, answers: &LogBuffer) -> Reply {
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("the whole body");
    for (name, value) in &headers {
        answers.push(format!(
            "{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    answers.push(body.clone());
    Reply {
        status,
        headers,
        body,
    }
}

/// A streamed prompt and the tokens the demo origin reports for it: the
/// prompt's words in, one per delta out.
pub fn events(numbers: u64, delay_ms: u64) -> (String, u64) {
    (format!("/events {numbers} {delay_ms}"), 3 + numbers)
}

/// A JSON body for `prompt`, in `mode` when given.
pub fn body(prompt: &str, mode: Option<&str>) -> String {
    match mode {
        Some(mode) => serde_json::json!({"prompt": prompt, "response": mode}).to_string(),
        None => serde_json::json!({ "prompt": prompt }).to_string(),
    }
}
