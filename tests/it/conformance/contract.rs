//! The gateway contract on every target (issue 15, item 7;
//! `docs/interface.md`, "Routes", "Errors", "The response" and "Per
//! platform"): every error that can happen before the stream starts, sent
//! from the allowed browser origin, is the JSON error of its code and
//! carries `X-Request-Id` and that origin's CORS headers
//! (`Access-Control-Allow-Origin`, `Access-Control-Expose-Headers`,
//! `Vary: Origin`), and the request writes exactly one log line, found by
//! the id its answer carried. And `OPTIONS` (a preflight, or a plain
//! `OPTIONS`) and a 405 agree on `Allow` for every path of
//! [`routes::ROUTES`], which `Access-Control-Allow-Methods` repeats.
//!
//! What needs an instance of its own:
//! - 500 `invalid_configuration`: the native server refuses to start
//!   (`agent-edge serve`); a Worker and a Lambda function with one invalid
//!   variable (and a valid `CORS_ALLOW_ORIGINS`) answer it to every
//!   request, finished like any other answer, and log the
//!   `invalid_configuration` event once, not once per request;
//! - 429 on Lambda: the shared function runs in several execution
//!   environments, each with its own limiter
//!   ([`Capability::OneRateLimiter`]), so a function of its own with one.
//!
//! Every problem of a target is listed before the check fails.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_edge::gateway::routes::{self, ROUTES};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;

use super::child::{self, Own};
use super::client::{client, invoke, send, unique, Reply, SESSION_HEADER};
use super::routes::oversized_chunked;
use super::stack::{
    config_from, rate_limit, Capability, LogBuffer, TargetKind, CORS_ORIGIN, MAX_BODY_BYTES,
};
use super::tokens::{self, header, mint, token, Signer};
use super::worker_config::valid_vars;
use super::{every_target, lambda, stack, worker, Target};

/// The variable the misconfigured instances get wrong, and its value.
const INVALID: (&str, &str) = ("KEEPALIVE_SECONDS", "soon");

/// A checked answer: what was sent, and what must have come back.
struct Expected {
    what: String,
    status: u16,
    code: &'static str,
    /// A header the answer must carry, with its exact value when given.
    header: Option<(&'static str, Option<String>)>,
}

impl Expected {
    fn new(what: impl Into<String>, status: u16, code: &'static str) -> Self {
        Expected {
            what: what.into(),
            status,
            code,
            header: None,
        }
    }

    fn with_header(mut self, name: &'static str, value: Option<String>) -> Self {
        self.header = Some((name, value));
        self
    }
}

/// The paths of the route table, in its order.
fn paths() -> Vec<&'static str> {
    let mut paths: Vec<&'static str> = Vec::new();
    for route in ROUTES {
        if !paths.contains(&route.path) {
            paths.push(route.path);
        }
    }
    paths
}

/// The methods `path` has with `UI=on`, as `Allow` lists them.
fn allow(path: &str) -> String {
    routes::allow(path, true)
}

/// Methods a client might try; each path lacks some of them.
const TRIED: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

fn lacks(path: &str, method: &Method) -> bool {
    !allow(path).split(", ").any(|m| m == method.as_str())
}

/// A token of the trusted issuer that expired an hour ago.
fn expired_token() -> String {
    let mut claims = tokens::id_claims(&unique("contract-expired"));
    let now = tokens::unix_now();
    claims["iat"] = (now - 7200).into();
    claims["auth_time"] = (now - 7200).into();
    claims["exp"] = (now - 3600).into();
    mint(Signer::Issuer, &header(), &claims)
}

/// Every error before the stream but 429 and 500: the request, and what
/// must come back.
fn refusals(t: &Target) -> Vec<(RequestBuilder, Expected)> {
    let token = token(&unique("contract"));
    let json = |body: &str| invoke(t, Some(&token), body);
    let mut cases = vec![(
        client().get(t.url("/nope")),
        Expected::new("GET /nope", 404, "not_found"),
    )];
    for path in paths() {
        for method in TRIED.iter().filter(|m| lacks(path, m)) {
            cases.push((
                client().request(method.clone(), t.url(path)),
                Expected::new(format!("{method} {path}"), 405, "method_not_allowed")
                    .with_header("allow", Some(allow(path))),
            ));
        }
    }
    let over = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
    cases.extend([
        (
            json(&over),
            Expected::new(
                "a declared length over MAX_BODY_BYTES",
                413,
                "body_too_large",
            ),
        ),
        (
            oversized_chunked(t, &token),
            Expected::new("a chunked body over MAX_BODY_BYTES", 413, "body_too_large"),
        ),
        (
            client()
                .post(t.url("/invocations"))
                .bearer_auth(&token)
                .header("content-type", "text/plain")
                .body(r#"{"prompt":"hi"}"#),
            Expected::new("Content-Type: text/plain", 415, "unsupported_media_type"),
        ),
        (
            json("not json"),
            Expected::new("a body that is not JSON", 400, "invalid_json"),
        ),
        (
            json("[1, 2]"),
            Expected::new("a JSON array", 400, "invalid_body"),
        ),
        (
            json(r#"{"prompt":"hi","response":1}"#),
            Expected::new("a number for response", 400, "invalid_field"),
        ),
        (
            json(r#"{"prompt":"hi","response":"loud"}"#),
            Expected::new("response: loud", 400, "invalid_response_mode"),
        ),
        (
            json(r#"{"prompt":"hi","runtimeSessionId":"too-short"}"#),
            Expected::new("a short runtimeSessionId", 400, "invalid_session_id"),
        ),
        (
            invoke(t, None, r#"{"prompt":"hi"}"#)
                .header("authorization", format!("Bearer {token} extra")),
            Expected::new(
                "Authorization: Bearer <token> extra",
                400,
                "invalid_request",
            )
            .with_header("www-authenticate", None),
        ),
        (
            json(r#"{"prompt":"hi"}"#).header("expect", "something-else"),
            Expected::new("Expect: something-else", 417, "expectation_failed"),
        ),
        (
            invoke(t, None, r#"{"prompt":"hi"}"#),
            Expected::new("no Authorization", 401, "missing_token")
                .with_header("www-authenticate", None),
        ),
        (
            invoke(t, Some(&expired_token()), r#"{"prompt":"hi"}"#),
            Expected::new("an expired token", 401, "invalid_token")
                .with_header("www-authenticate", None),
        ),
    ]);
    // A function URL joins the two values with a comma (no JSON type), but
    // `cargo lambda watch` puts only one of them in the event: the function
    // cannot see the other.
    if t.kind != TargetKind::Lambda {
        cases.push((
            json(r#"{"prompt":"hi"}"#).header("content-type", "text/plain"),
            Expected::new(
                "two Content-Types, JSON and text/plain",
                415,
                "unsupported_media_type",
            ),
        ));
    }
    cases
}

/// What is wrong with `reply`, the answer to a request from the allowed
/// origin: the error of `expected`, `X-Request-Id` and the CORS headers.
fn problems(reply: &Reply, expected: &Expected) -> Vec<String> {
    let mut wrong = Vec::new();
    let header = |name: &str| {
        reply
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let items = |name: &str| -> Vec<String> {
        header(name)
            .split(',')
            .map(|item| item.trim().to_ascii_lowercase())
            .filter(|item| !item.is_empty())
            .collect()
    };
    if reply.status != expected.status {
        wrong.push(format!(
            "status {} (expected {})",
            reply.status, expected.status
        ));
    }
    if header("content-type") != "application/json" {
        wrong.push(format!("Content-Type {:?}", header("content-type")));
    }
    match serde_json::from_slice::<Value>(&reply.body) {
        Ok(body) => {
            let shape_ok = body["error"]["code"] == expected.code
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
                && body.as_object().map(|o| o.len()) == Some(1)
                && body["error"].as_object().map(|o| o.len()) == Some(2);
            if !shape_ok {
                wrong.push(format!(
                    "body {body} (expected the error {})",
                    expected.code
                ));
            }
        }
        Err(_) => wrong.push(format!("body not JSON: {:?}", shown(&reply.body))),
    }
    if header("x-request-id").is_empty() {
        wrong.push("no X-Request-Id".to_owned());
    }
    if header("access-control-allow-origin") != CORS_ORIGIN {
        wrong.push(format!(
            "Access-Control-Allow-Origin {:?}",
            header("access-control-allow-origin")
        ));
    }
    let exposed = items("access-control-expose-headers");
    for needed in ["x-request-id", SESSION_HEADER] {
        if !exposed.iter().any(|e| e == needed) {
            wrong.push(format!(
                "Access-Control-Expose-Headers {exposed:?} without {needed}"
            ));
        }
    }
    if !items("vary").iter().any(|v| v == "origin") {
        wrong.push(format!("Vary {:?} without Origin", header("vary")));
    }
    if let Some((name, value)) = &expected.header {
        let got = header(name);
        match value {
            _ if got.is_empty() => wrong.push(format!("no {name}")),
            Some(value) if got != *value => {
                wrong.push(format!("{name}: {got:?} (expected {value:?})"))
            }
            _ => {}
        }
    }
    wrong
}

/// The start of a body, for a failure message.
fn shown(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// Whether a JSON log line is the request line of `id` (the gateway's own,
/// or the client's `X-Request-Id`), as [`Target::request_log`] finds it.
fn is_line_of(line: &Value, id: &str) -> bool {
    line["request_id"] == id || line["client_request_id"] == id
}

/// Checks each answer (sent from the allowed origin) against its
/// expectation, and that each request wrote exactly one log line, with the
/// answer's status and code; panics listing every problem.
async fn check_answers(t: &Target, answers: Vec<(Reply, Expected)>) {
    let mut wrong = Vec::new();
    let mut ids = Vec::new();
    for (reply, expected) in &answers {
        for problem in problems(reply, expected) {
            wrong.push(format!("{}: {problem}", expected.what));
        }
        match reply.headers.get("x-request-id").map(|v| v.to_str()) {
            Some(Ok(id)) if !id.is_empty() => ids.push((id.to_owned(), expected)),
            _ => wrong.push(format!(
                "{}: no request id to find its log line by",
                expected.what
            )),
        }
    }
    // Each line, then a moment for a second one.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let lines = t.json_lines();
        if ids
            .iter()
            .all(|(id, _)| lines.iter().any(|l| is_line_of(l, id)))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = t.json_lines();
    for (id, expected) in &ids {
        let of_it: Vec<&Value> = lines.iter().filter(|l| is_line_of(l, id)).collect();
        match of_it.as_slice() {
            [line] => {
                if line["status"] != expected.status || line["error"] != expected.code {
                    wrong.push(format!(
                        "{}: the log line says status {} error {}: {line}",
                        expected.what, line["status"], line["error"]
                    ));
                }
            }
            more => wrong.push(format!(
                "{}: {} request log lines with id {id} (expected 1){}",
                expected.what,
                more.len(),
                more.iter()
                    .map(|l| format!("\n    {l}"))
                    .collect::<String>()
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} problem(s) with {} answers:\n{}",
        wrong.len(),
        answers.len(),
        wrong.join("\n")
    );
}

/// Requests of a fresh subject until one is limited (after the limit, or
/// up to twice it where the windows need not start at the first request);
/// that answer, from the allowed origin.
async fn rate_limited(t: &Target) -> (Reply, Expected) {
    let limit = rate_limit() as usize;
    let token = token(&unique(&format!("contract-rate-limit-{}", t.name())));
    for sent in 1..=2 * limit + 1 {
        let reply = send(invoke(t, Some(&token), "not json").header("origin", CORS_ORIGIN)).await;
        if reply.status == 429 {
            let expected = Expected::new(
                format!("request {sent} of one subject (limit {limit}/min)"),
                429,
                "rate_limited",
            )
            .with_header("retry-after", None);
            return (reply, expected);
        }
        assert_eq!(
            reply.status,
            400,
            "request {sent} of one subject: {}",
            shown(&reply.body)
        );
    }
    panic!(
        "no 429 after {} requests of one subject (limit {limit}/min)",
        2 * limit + 1
    );
}

async fn every_error_before_the_stream_is_finished_and_logged_once(t: Arc<Target>) {
    let mut answers = Vec::new();
    for (request, expected) in refusals(&t) {
        answers.push((send(request.header("origin", CORS_ORIGIN)).await, expected));
    }
    if !t.lacks(
        Capability::OneRateLimiter,
        "every_error_before_the_stream_is_finished_and_logged_once (its 429; see \
         lambda_rate_limited_in_one_execution_environment_is_finished_and_logged_once)",
    ) {
        answers.push(rate_limited(&t).await);
    }
    check_answers(&t, answers).await;
}

/// The Lambda function's 429, in a `cargo lambda watch` of its own with one
/// execution environment (one limiter), configured as the shared stack.
#[tokio::test]
async fn lambda_rate_limited_in_one_execution_environment_is_finished_and_logged_once() {
    let vars = stack::stack().vars.clone();
    let Some(Own { target, instance }) = own(
        TargetKind::Lambda,
        "contract-rate-limit",
        vars,
        one_environment,
    )
    .await
    else {
        return;
    };
    let answer = rate_limited(&target).await;
    check_answers(&target, vec![answer]).await;
    stop(instance).await;
}

/// How a test starts an instance of its own: name, variables, log buffer.
type Start = fn(&str, &[(String, String)], LogBuffer) -> Result<child::Instance, String>;

/// A Lambda function in one execution environment: one limiter, one init.
fn one_environment(
    name: &str,
    vars: &[(String, String)],
    logs: LogBuffer,
) -> Result<child::Instance, String> {
    lambda::start_with_concurrency(name, vars, logs, 1)
}

/// An instance of `kind` named `name`, of the calling test's own, with
/// `vars`; `None` when the target is left out.
async fn own(
    kind: TargetKind,
    name: &'static str,
    vars: Vec<(String, String)>,
    start: Start,
) -> Option<Own> {
    if kind.left_out(name) {
        return None;
    }
    Some(child::own(kind, move |logs| start(name, &vars, logs)).await)
}

/// Stops an instance off the runtime: dropping it waits for the tool.
async fn stop(instance: child::Instance) {
    tokio::task::spawn_blocking(move || drop(instance))
        .await
        .expect("stopping the tool");
}

async fn options_and_405_agree_on_allow_for_every_route(t: Arc<Target>) {
    let mut wrong = Vec::new();
    for path in paths() {
        let allow = allow(path);
        let preflighted = ROUTES
            .iter()
            .any(|r| r.path == path && r.method == "OPTIONS");
        let options = || client().request(Method::OPTIONS, t.url(path));
        let lacking = TRIED
            .iter()
            .find(|m| lacks(path, m))
            .expect("every path lacks a method tried");
        let answers = [
            ("OPTIONS without Origin".to_owned(), send(options()).await),
            (
                "OPTIONS from the allowed origin (a preflight)".to_owned(),
                send(
                    options()
                        .header("origin", CORS_ORIGIN)
                        .header("access-control-request-method", "GET"),
                )
                .await,
            ),
            (
                format!("{lacking} (a 405)"),
                send(client().request(lacking.clone(), t.url(path))).await,
            ),
        ];
        for (i, (what, reply)) in answers.iter().enumerate() {
            let what = format!("{what} {path}");
            let status = match (i, preflighted) {
                (0 | 1, true) => 204,
                _ => 405,
            };
            if reply.status != status {
                wrong.push(format!(
                    "{what}: status {} (expected {status}): {}",
                    reply.status,
                    shown(&reply.body)
                ));
            }
            let got = reply.header("allow");
            if got != Some(allow.as_str()) {
                wrong.push(format!("{what}: Allow {got:?} (expected {allow:?})"));
            }
            if i == 1 {
                let methods = reply.header("access-control-allow-methods");
                let expected = preflighted.then_some(allow.as_str());
                if methods != expected {
                    wrong.push(format!(
                        "{what}: Access-Control-Allow-Methods {methods:?} (expected {expected:?})"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} problem(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

every_target!(
    every_error_before_the_stream_is_finished_and_logged_once,
    options_and_405_agree_on_allow_for_every_route,
);

/// A self-contained configuration (no request reaches an origin or an
/// issuer) with [`INVALID`] and CORS for [`CORS_ORIGIN`].
fn misconfigured_vars() -> Vec<(String, String)> {
    let (variable, value) = INVALID;
    let mut vars = valid_vars();
    vars.retain(|(name, _)| name != variable && name != "CORS_ALLOW_ORIGINS");
    vars.push(("CORS_ALLOW_ORIGINS".into(), CORS_ORIGIN.into()));
    assert!(config_from(&vars).is_ok(), "valid but for {variable}");
    vars.push((variable.into(), value.into()));
    let error = config_from(&vars).expect_err("an invalid configuration");
    assert_eq!(error.variable, variable);
    vars
}

/// The `invalid_configuration` event lines among `lines`.
fn configuration_events(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["event"] == "invalid_configuration")
        .cloned()
        .collect()
}

#[test]
fn native_refuses_to_start_with_an_invalid_variable() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agent-edge"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .envs(misconfigured_vars())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent-edge serve");
    let mut stderr = child.stderr.take().expect("its stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("its status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agent-edge serve started with {}={}", INVALID.0, INVALID.1);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().expect("the reader");
    assert!(!status.success(), "exited with {status}: {stderr}");
    assert!(stderr.contains(INVALID.0), "names {}: {stderr}", INVALID.0);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect();
    let events = configuration_events(&lines);
    assert_eq!(events.len(), 1, "one invalid_configuration line: {stderr}");
    assert_eq!(events[0]["level"], "error", "{stderr}");
    assert!(
        events[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(INVALID.0)),
        "the line names {}: {stderr}",
        INVALID.0
    );
    assert!(
        !lines.iter().any(|l| l["event"] == "listening"),
        "it listened: {stderr}"
    );
}

#[tokio::test]
async fn worker_with_an_invalid_variable_answers_500_finished_and_logged_once() {
    check_misconfigured(TargetKind::Worker, worker::start_named).await;
}

#[tokio::test]
async fn lambda_with_an_invalid_variable_answers_500_finished_and_logged_once() {
    check_misconfigured(TargetKind::Lambda, one_environment).await;
}

/// Starts an instance of `kind` with [`misconfigured_vars`] (`start` as
/// [`worker::start_named`], which asks `/ping` once), then checks it: every
/// request, whatever its route, is 500 `invalid_configuration` naming the
/// variable, finished and logged like any answer; the event is logged once
/// for the instance, not once per request.
async fn check_misconfigured(kind: TargetKind, start: Start) {
    let vars = misconfigured_vars();
    let Some(Own { target, instance }) = own(kind, "contract-misconfigured", vars, start).await
    else {
        return;
    };
    let t = &target;
    let before = t
        .json_lines_until("the invalid_configuration event", |lines| {
            !configuration_events(lines).is_empty()
        })
        .await;
    let before = configuration_events(&before);
    let named = |what: &str| Expected::new(what, 500, "invalid_configuration");
    let requests = [
        (client().get(t.url("/ping")), named("GET /ping")),
        (
            invoke(t, Some("not-checked"), r#"{"prompt":"hi"}"#),
            named("POST /invocations"),
        ),
        (
            client()
                .request(Method::OPTIONS, t.url("/invocations"))
                .header("access-control-request-method", "POST"),
            named("a preflight of /invocations"),
        ),
        (client().get(t.url("/nope")), named("GET /nope")),
        (client().put(t.url("/ping")), named("PUT /ping")),
        (client().get(t.url("/ping")), named("GET /ping, again")),
    ];
    let mut answers = Vec::new();
    for (request, expected) in requests {
        let reply = send(request.header("origin", CORS_ORIGIN)).await;
        let message = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|b| b["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        assert!(
            message.contains(INVALID.0),
            "{}: the message names {}: {}",
            expected.what,
            INVALID.0,
            shown(&reply.body)
        );
        answers.push((reply, expected));
    }
    check_answers(t, answers).await;
    let after = configuration_events(&t.json_lines());
    assert_eq!(
        after.len(),
        before.len(),
        "invalid_configuration logged again by the requests: {after:?}"
    );
    assert_eq!(
        after.len(),
        1,
        "invalid_configuration logged once for the instance: {after:?}"
    );
    let event = &after[0];
    assert_eq!(event["level"], "error", "{event}");
    assert!(
        event["detail"]
            .as_str()
            .is_some_and(|d| d.contains(INVALID.0)),
        "the event names {}: {event}",
        INVALID.0
    );
    stop(instance).await;
}
