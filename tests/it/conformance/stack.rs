//! The servers every check shares, started once per test binary on a
//! runtime of their own (a thread that lives as long as the process):
//! the demo AgentCore origin behind the [`OriginTap`], the JWT issuer, the
//! native gateway, `wrangler dev` and `cargo lambda watch` with the same
//! configuration.
//!
//! The shared configuration (every target): `AUTH=jwt` (so sessions belong
//! to their subject), CORS for [`CORS_ORIGIN`], `KEEPALIVE_SECONDS=1`,
//! `MAX_BODY_BYTES=4096`, `MAX_BODY_KEYS=64` (so that a body over the key
//! cap fits in the byte cap), origin timeouts of 4 s, the rate limit of
//! `wrangler.toml`, and besides the demo's runtime (the `default` agent)
//! the agents of [`agents_var`].
//!
//! The native target is ready as soon as the stack is; the Worker and
//! Lambda targets become ready (or fail) later, so native checks do not
//! wait for their builds. [`Target::lacks`] names what a target cannot do
//! and why, for the checks that must skip it.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agent_edge::config::{Config, OriginConfig, Secret};
use agent_edge::demo::origin::{
    self as demo, DemoOrigin, DemoOriginSettings, DEMO_RUNTIME_ARN, DEMO_SECOND_RUNTIME_ARN,
};
use agent_edge::platform::native::{self, GatewayServer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::child::{self, Instance};
use super::tap::OriginTap;
use super::tokens::{self, Issuer};
use super::{lambda, worker};
use crate::issuer_support::jwt_gateway_vars;

/// Browser origin allowed by `CORS_ALLOW_ORIGINS`.
pub const CORS_ORIGIN: &str = "https://app.example.com";
/// `MAX_BODY_BYTES` of the shared stack.
pub const MAX_BODY_BYTES: usize = 4096;
/// `MAX_BODY_KEYS` of the shared stack: low, so that a body of more keys
/// still fits in [`MAX_BODY_BYTES`].
pub const MAX_BODY_KEYS: usize = 64;
/// `KEEPALIVE_SECONDS` of the shared stack.
pub const KEEPALIVE_SECONDS: u64 = 1;
/// Pause between the demo agent's words (prompts that are not `/events`).
const WORD_DELAY: Duration = Duration::from_millis(5);
/// `ORIGIN_TIMEOUT_SECONDS` of the shared stack (the demo answers at once,
/// unless told to wait).
pub const ORIGIN_TIMEOUT_SECONDS: u64 = 4;
/// `ORIGIN_IDLE_TIMEOUT_SECONDS` of the shared stack: longer than the
/// longest pause a check asks of the demo (2.5 s).
pub const ORIGIN_IDLE_TIMEOUT_SECONDS: u64 = 4;
/// The agent of the demo's second runtime, for everyone.
pub const SALES: &str = "sales";
/// The demo's first runtime again, for callers in the Cognito group
/// [`SUPPORT_GROUP`].
pub const SUPPORT: &str = "support";
pub const SUPPORT_GROUP: &str = "support";
/// The description of [`SALES`].
pub const SALES_DESCRIPTION: &str = "The second runtime of the demo";

/// `AGENTS` of the shared stack: [`SALES`] and [`SUPPORT`].
pub fn agents_var() -> String {
    serde_json::json!({
        SALES: {"arn": DEMO_SECOND_RUNTIME_ARN, "description": SALES_DESCRIPTION},
        SUPPORT: {"arn": DEMO_RUNTIME_ARN, "requireClaims": {"cognito:groups": [SUPPORT_GROUP]}},
    })
    .to_string()
}

/// `AWS_SESSION_TOKEN` of the shared stack (the demo requires it).
pub const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjConformanceSessionToken0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Native,
    Worker,
    Lambda,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Native => "native",
            TargetKind::Worker => "worker",
            TargetKind::Lambda => "lambda",
        }
    }

    /// The variable that leaves this target out when set to `1`.
    pub fn skip_var(self) -> Option<&'static str> {
        match self {
            TargetKind::Native => None,
            TargetKind::Worker => Some(worker::SKIP_VAR),
            TargetKind::Lambda => Some(lambda::SKIP_VAR),
        }
    }

    /// Whether this target was explicitly left out.
    pub fn skipped(self) -> bool {
        self.skip_var()
            .is_some_and(|var| std::env::var(var).is_ok_and(|v| v == "1"))
    }

    /// Whether this target is left out; if so, says so on stderr naming
    /// `test`, which returns early.
    pub fn left_out(self, test: &str) -> bool {
        let skipped = self.skipped();
        if skipped {
            eprintln!(
                "conformance: `{test}` SKIPPED on {} ({}=1)",
                self.name(),
                self.skip_var().unwrap_or_default()
            );
        }
        skipped
    }
}

/// What a check may need that not every target offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// One rate limiter sees every request of the target.
    OneRateLimiter,
    /// A response without a body goes out without a `Content-Type`.
    ResponseWithoutContentType,
    /// The gateway owns a loopback listener, so the `Host` rule against DNS
    /// rebinding applies (421 `misdirected_request`).
    LoopbackHostRule,
}

impl TargetKind {
    /// Why this target cannot run a check needing `capability`, or `None`
    /// when it can.
    pub fn lacks(self, capability: Capability) -> Option<&'static str> {
        match (self, capability) {
            (TargetKind::Lambda, Capability::OneRateLimiter) => Some(
                "the in-process limiter counts per execution environment, and the suite's \
                 function runs in several at once (the limit in one environment is checked \
                 by rate_limit::lambda_one_execution_environment_limits_like_native)",
            ),
            (TargetKind::Lambda, Capability::ResponseWithoutContentType) => Some(
                "lambda_runtime gives every streamed response a Content-Type, \
                 application/octet-stream when the function sets none",
            ),
            (TargetKind::Worker, Capability::LoopbackHostRule) => Some(
                "the listener is workerd's (Cloudflare's edge when deployed), not the \
                 gateway's: the Host rule applies only where the gateway listens on loopback",
            ),
            (TargetKind::Lambda, Capability::LoopbackHostRule) => Some(
                "the listener is the function URL's, not the gateway's: the Host rule \
                 applies only where the gateway listens on loopback",
            ),
            _ => None,
        }
    }
}

/// Log lines as a target wrote them (the native log sink; the output of
/// `wrangler dev`).
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<String>>>);

impl LogBuffer {
    pub fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One deployment of the gateway under test.
pub struct Target {
    pub kind: TargetKind,
    pub base_url: String,
    pub logs: LogBuffer,
    /// How the target answered its very first authenticated requests, sent
    /// all at once before any check ran (see [`cold_start_burst`]).
    pub cold_start: Vec<String>,
}

impl Target {
    /// A target of the calling test's own (no cold-start burst).
    pub fn new(kind: TargetKind, base_url: String, logs: LogBuffer) -> Target {
        Target {
            kind,
            base_url,
            logs,
            cold_start: Vec::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url)
    }

    /// Whether this target cannot run a check needing `capability`; if so,
    /// says so on stderr with the reason, and the check returns early.
    pub fn lacks(&self, capability: Capability, check: &str) -> bool {
        match self.kind.lacks(capability) {
            Some(reason) => {
                eprintln!(
                    "conformance: `{check}` SKIPPED on {}: {reason}",
                    self.name()
                );
                true
            }
            None => false,
        }
    }

    /// The JSON request log line of the request whose answer carried this
    /// `X-Request-Id` (the client's, logged as `client_request_id`, or the
    /// gateway's own), waiting up to 3 s for it (a stream's line is written
    /// when it ends).
    pub async fn request_log(&self, request_id: &str) -> Value {
        self.log_line(&format!("request_id {request_id}"), |line| {
            line["request_id"] == request_id || line["client_request_id"] == request_id
        })
        .await
    }

    /// The first JSON log line that `matches`, waiting up to 3 s for it;
    /// `what` names it in the failure.
    pub async fn log_line(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let lines = self
            .json_lines_until(&format!("a log line with {what}"), |lines| {
                lines.iter().any(&matches)
            })
            .await;
        lines.into_iter().find(matches).expect("waited for it")
    }

    /// The JSON log lines, once they are `enough` (waiting up to 3 s);
    /// `what` names what was awaited in the failure.
    pub async fn json_lines_until(
        &self,
        what: &str,
        enough: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let lines = self.json_lines();
            if enough(&lines) {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited 3 s for {what} in vain; the log:\n{}",
                self.logs.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many JSON log lines carry `request_id` as the gateway's own.
    pub fn request_lines(&self, request_id: &str) -> usize {
        self.json_lines()
            .iter()
            .filter(|line| line["request_id"] == request_id)
            .count()
    }

    /// Every log line so far that holds a JSON object (after any prefix
    /// wrangler gives console output).
    pub fn json_lines(&self) -> Vec<Value> {
        self.logs
            .lines()
            .iter()
            .filter_map(|line| {
                let json = &line[line.find('{')?..];
                serde_json::from_str::<Value>(json)
                    .ok()
                    .filter(Value::is_object)
            })
            .collect()
    }
}

/// A target that cannot run the checks.
pub struct Unavailable {
    pub reason: String,
}

/// The shared servers.
pub struct Stack {
    pub demo: DemoOrigin,
    pub tap: Arc<OriginTap>,
    pub issuer: Issuer,
    /// The variables both gateways are configured with.
    pub vars: Vec<(String, String)>,
    native: Arc<Target>,
    _native_server: GatewayServer,
    worker: Pending,
    lambda: Pending,
}

impl Stack {
    /// The origin configuration that calls the demo origin directly,
    /// bypassing the gateway (and the tap).
    pub fn direct_origin(&self) -> OriginConfig {
        self.demo.origin_config()
    }
}

/// The stack, started on first use.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let (ready, started) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("conformance-stack".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("the stack's runtime");
                runtime.block_on(async move {
                    let _ = ready.send(start().await);
                    std::future::pending::<()>().await
                })
            })
            .expect("the stack's thread");
        started.recv().expect("the stack started")
    })
}

pub fn issuer_url() -> &'static str {
    &stack().issuer.url
}

/// The configuration shared by every target.
pub fn shared_vars(demo: &DemoOrigin, tap: &OriginTap, issuer: &Issuer) -> Vec<(String, String)> {
    let extra = [
        ("ORIGIN_URL", tap.url()),
        ("DEFAULT_RESPONSE_MODE", "original".to_owned()),
        ("CORS_ALLOW_ORIGINS", CORS_ORIGIN.to_owned()),
        ("KEEPALIVE_SECONDS", KEEPALIVE_SECONDS.to_string()),
        ("MAX_BODY_BYTES", MAX_BODY_BYTES.to_string()),
        ("MAX_BODY_KEYS", MAX_BODY_KEYS.to_string()),
        ("ORIGIN_TIMEOUT_SECONDS", ORIGIN_TIMEOUT_SECONDS.to_string()),
        (
            "ORIGIN_IDLE_TIMEOUT_SECONDS",
            ORIGIN_IDLE_TIMEOUT_SECONDS.to_string(),
        ),
        ("RATE_LIMIT_PER_MINUTE", rate_limit().to_string()),
        ("AGENTS", agents_var()),
    ];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
    jwt_gateway_vars(demo.gateway_vars(), &issuer.url, tokens::AUDIENCE, &extra)
}

/// The per-minute limit of the Worker's `RATE_LIMITER` binding in
/// `wrangler.toml`; the native gateway is given the same.
pub fn rate_limit() -> u32 {
    static LIMIT: OnceLock<u32> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/wrangler.toml");
        let text = std::fs::read_to_string(path).expect("wrangler.toml");
        let line = text
            .lines()
            .skip_while(|l| !l.contains("name = \"RATE_LIMITER\""))
            .find(|l| l.trim_start().starts_with("simple"))
            .expect("wrangler.toml: a [[ratelimits]] RATE_LIMITER with simple = {...}");
        assert!(
            line.contains("period = 60"),
            "the RATE_LIMITER period must be 60 s to compare with RATE_LIMIT_PER_MINUTE: {line}"
        );
        let limit = line.split("limit").nth(1).expect("limit = N");
        let digits: String = limit
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(|c| c.is_ascii_digit())
            .collect();
        digits.parse().expect("a numeric limit")
    })
}

async fn start() -> Stack {
    let mut settings = DemoOriginSettings::demo();
    settings.word_delay = WORD_DELAY;
    settings.credentials.session_token = Some(Secret::new(SESSION_TOKEN));
    let demo = demo::spawn(settings, bind().await)
        .await
        .expect("demo origin");
    let tap = OriginTap::spawn(demo.addr).await;
    let issuer = Issuer::spawn().await;
    let vars = shared_vars(&demo, &tap, &issuer);

    let (native_server, mut native) = spawn_native(&vars).await;
    native.cold_start = cold_start_burst(&native.base_url, &issuer.url).await;

    let worker = start_in_background(TargetKind::Worker, &vars, &issuer.url);
    let lambda = start_in_background(TargetKind::Lambda, &vars, &issuer.url);

    Stack {
        demo,
        tap,
        issuer,
        vars,
        native: Arc::new(native),
        _native_server: native_server,
        worker,
        lambda,
    }
}

/// A target started in the background: `None` while it starts (and for
/// good when skipped), then the target or why it could not start.
type Pending = watch::Receiver<Option<Result<Arc<Target>, String>>>;
/// Starts an instance named by the first argument with these variables,
/// its output to the buffer; blocks until it answers.
type StartNamed = fn(&str, &[(String, String)], LogBuffer) -> Result<Instance, String>;

/// Starts the shared instance of a target that needs its own process
/// ([`child::keep`]) on a thread of its own, then sends its cold-start
/// burst; the receiver gets the target, or why it could not start (`None`
/// while starting, and for good when the target is skipped).
fn start_in_background(kind: TargetKind, vars: &[(String, String)], issuer_url: &str) -> Pending {
    let (tx, rx) = watch::channel(None);
    let start: StartNamed = match kind {
        TargetKind::Native => unreachable!("the native target runs in this process"),
        TargetKind::Worker => worker::start_named,
        TargetKind::Lambda => {
            |name, vars, logs| lambda::start_with_concurrency(name, vars, logs, lambda::CONCURRENCY)
        }
    };
    if kind.skipped() {
        return rx;
    }
    let vars = vars.to_vec();
    let issuer_url = issuer_url.to_owned();
    std::thread::spawn(move || {
        let logs = LogBuffer::default();
        let started = start("shared", &vars, logs.clone()).and_then(child::keep);
        let result = started.map(|base_url| {
            let burst = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the first requests")
                .block_on(cold_start_burst(&base_url, &issuer_url));
            Arc::new(Target {
                kind,
                base_url,
                logs,
                cold_start: burst,
            })
        });
        let _ = tx.send(Some(result));
    });
    rx
}

/// Requests in the cold-start burst.
const COLD_START_REQUESTS: usize = 6;

/// Sends the first authenticated requests a target sees, all at once, so
/// that they all need the issuer's keys that nobody has fetched yet (as
/// after a deploy, or in a fresh isolate). Returns `"200"` for each that
/// succeeded, else its status and body. Done once at start, before any
/// check, so the other checks never meet a cold key cache.
async fn cold_start_burst(base_url: &str, issuer_url: &str) -> Vec<String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client");
    let requests = (0..COLD_START_REQUESTS).map(|i| {
        let request = client
            .post(format!("{base_url}/invocations"))
            .header("content-type", "application/json")
            .bearer_auth(tokens::token_of(issuer_url, &format!("cold-start-{i}")))
            .body(r#"{"prompt":"/events 1 1"}"#)
            .timeout(Duration::from_secs(30));
        async move {
            match request.send().await {
                Ok(response) if response.status() == 200 => match response.text().await {
                    Ok(_) => "200".to_owned(),
                    Err(e) => format!("200, then the body failed: {e}"),
                },
                Ok(response) => {
                    let status = response.status().as_u16();
                    format!("{status} {}", response.text().await.unwrap_or_default())
                }
                Err(e) => format!("no answer: {e}"),
            }
        }
    });
    futures::future::join_all(requests).await
}

pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// A gateway configuration from `(name, value)` pairs.
pub fn config_from(vars: &[(String, String)]) -> Result<Config, agent_edge::config::ConfigError> {
    Config::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.clone())
    })
}

/// The targets the checks run on: native, the Worker unless
/// `AGENT_EDGE_SKIP_WORKER=1`, and the Lambda function unless
/// `AGENT_EDGE_SKIP_LAMBDA=1`.
pub fn kinds() -> Vec<TargetKind> {
    static ANNOUNCED: OnceLock<()> = OnceLock::new();
    let all = [TargetKind::Native, TargetKind::Worker, TargetKind::Lambda];
    let (skipped, kinds): (Vec<_>, Vec<_>) = all.into_iter().partition(|kind| kind.skipped());
    if !skipped.is_empty() {
        let skipped: Vec<String> = skipped
            .iter()
            .map(|kind| {
                let var = kind.skip_var().unwrap_or_default();
                format!("the {} target ({var}=1)", kind.name())
            })
            .collect();
        ANNOUNCED.get_or_init(|| {
            eprintln!("conformance: SKIPPED {}", skipped.join(" and "));
        });
    }
    kinds
}

/// A target, once it is ready.
pub async fn target(kind: TargetKind) -> Result<Arc<Target>, Unavailable> {
    let stack = stack();
    let mut pending = match kind {
        TargetKind::Native => return Ok(stack.native.clone()),
        TargetKind::Worker => stack.worker.clone(),
        TargetKind::Lambda => stack.lambda.clone(),
    };
    let ready = pending
        .wait_for(Option::is_some)
        .await
        .map_err(|_| Unavailable {
            reason: format!("the {} target was not started", kind.name()),
        })?;
    match ready.as_ref().expect("waited for Some") {
        Ok(target) => Ok(target.clone()),
        Err(reason) => Err(Unavailable {
            reason: reason.clone(),
        }),
    }
}

/// The shared configuration with some variables replaced (an empty value
/// unsets one), for checks that need a gateway of their own.
pub fn vars_with(changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars = stack().vars.clone();
    for (name, value) in changes {
        vars.retain(|(n, _)| n != name);
        if !value.is_empty() {
            vars.push(((*name).to_owned(), (*value).to_owned()));
        }
    }
    vars
}

/// A native gateway of the calling test's own, with its log lines.
pub async fn spawn_native(vars: &[(String, String)]) -> (GatewayServer, Target) {
    let config = config_from(vars).expect("a valid configuration");
    let logs = LogBuffer::default();
    let sink = logs.clone();
    let server = native::spawn(
        config,
        bind().await,
        Arc::new(move |line: &str| sink.push(line.to_owned())),
    )
    .await
    .expect("native gateway");
    let target = Target::new(TargetKind::Native, server.url(), logs);
    (server, target)
}
