//! Issue 14's findings, one check each, on every target where it applies
//! (this file): a body over `MAX_BODY_KEYS` (64 in the shared stack) and
//! the duplicates rule (what the origin received); a JSON `Content-Type` on
//! `POST` (no simple cross-site request reaches the agent); the gateway's
//! own request ids; `Vary: Origin` on every answer; 417 for an unknown
//! `Expect`; at most 32 usage keys in a log line (the demo's `/usage-keys`
//! prompt); the `Host` rule of a loopback listener (native only, through
//! [`Capability::LoopbackHostRule`]).
//!
//! [`native`]: what needs a native gateway (or issuer) of its own;
//! [`lambda`]: hand-made function URL events for the Lambda function.

mod lambda;
mod native;

use std::sync::Arc;

use serde_json::{json, Value};

use super::client::{
    client, invoke, send, session_id, split_transformed, unique, Reply, SESSION_HEADER,
};
use super::modes::received_payload;
use super::stack::{stack, Capability, CORS_ORIGIN, MAX_BODY_BYTES, MAX_BODY_KEYS};
use super::tokens::{origin_session, token};
use super::{every_target, Target};

const PROMPT: &str = r#"{"prompt":"/events 1 1"}"#;
const REFUSED_ORIGIN: &str = "https://evil.example.com";

/// Whether `id` is a UUID as the gateway writes them (8-4-4-4-12 hex digits).
fn is_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The items of a comma-separated header, lower case.
fn items(reply: &Reply, name: &str) -> Vec<String> {
    reply
        .headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or_default().split(','))
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

/// Keys of a JSON object, nested ones included.
fn count_keys(value: &Value) -> usize {
    value.as_object().map_or(0, |map| {
        map.len() + map.values().map(count_keys).sum::<usize>()
    })
}

/// `reply` is `expected`: 200, or the error `refusal`; the origin was
/// called (for `session`) exactly when it is 200.
fn assert_served_or_refused(
    reply: &Reply,
    origin_session: &str,
    expected: u16,
    refusal: (u16, &str),
    what: &str,
) {
    assert_eq!(reply.status, expected, "{what}: {}", shown(reply));
    if expected == refusal.0 {
        reply.assert_error(refusal.0, refusal.1);
    }
    assert_eq!(
        stack().tap.carried(origin_session),
        expected == 200,
        "{what}: whether the origin was called"
    );
}

/// Sends `request` from `origin` (no `Origin` when `None`) and checks its
/// status; the reply, and `what` with the origin.
async fn send_from(
    origin: Option<&str>,
    what: &str,
    request: reqwest::RequestBuilder,
    status: u16,
) -> (Reply, String) {
    let request = match origin {
        Some(origin) => request.header("origin", origin),
        None => request,
    };
    let reply = send(request).await;
    let what = format!("{what}, Origin {origin:?}");
    assert_eq!(reply.status, status, "{what}: {}", shown(&reply));
    (reply, what)
}

/// The status and body of `reply`, for a failure message.
fn shown(reply: &Reply) -> String {
    format!("{} {}", reply.status, String::from_utf8_lossy(&reply.body))
}
async fn a_post_needs_a_json_content_type(t: Arc<Target>) {
    let token = token(&unique("content-type"));
    // What a page on another site may send without a preflight (no type,
    // text/plain, a form) is refused; any JSON type is served.
    let cases = [
        ("/invocations", None, 415),
        ("/", None, 415),
        ("/invocations", Some("text/plain"), 415),
        ("/", Some("text/plain;charset=UTF-8"), 415),
        (
            "/invocations",
            Some("application/x-www-form-urlencoded"),
            415,
        ),
        ("/invocations", Some("multipart/form-data; boundary=x"), 415),
        ("/invocations", Some("application/json; charset=utf-8"), 200),
        ("/", Some("application/vnd.agent+json"), 200),
    ];
    for (path, content_type, expected) in cases {
        let session = session_id("content-type");
        let mut request = client()
            .post(t.url(path))
            .bearer_auth(&token)
            .header(SESSION_HEADER, &session)
            .body(PROMPT);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let reply = send(request).await;
        let refusal = (415, "unsupported_media_type");
        let what = format!("{path}, {content_type:?}");
        let sent = origin_session(&token, "default", &session);
        assert_served_or_refused(&reply, &sent, expected, refusal, &what);
    }
}

async fn a_body_over_max_body_keys_is_400_invalid_body(t: Arc<Target>) {
    let token = token(&unique("body-keys"));
    let members = |n: usize, name: fn(usize) -> String| -> String {
        (1..=n).map(|i| format!(r#","{}":0"#, name(i))).collect()
    };
    let body = |members: String| format!(r#"{{"prompt":"/events 1 1"{members}}}"#);
    let nested: Vec<String> = (1..=200).map(|i| format!(r#""n{i}":0"#)).collect();
    // (what, body, status): the prompt is a key too.
    let cases = [
        (
            "MAX_BODY_KEYS keys",
            body(members(MAX_BODY_KEYS - 1, |i| format!("k{i}"))),
            200,
        ),
        (
            "one key more",
            body(members(MAX_BODY_KEYS, |i| format!("k{i}"))),
            400,
        ),
        (
            "one key more, all duplicates",
            body(members(MAX_BODY_KEYS, |_| "k".to_owned())),
            400,
        ),
        (
            "two keys, one an object of 200",
            body(format!(r#","nested":{{{}}}"#, nested.join(","))),
            200,
        ),
    ];
    for (what, body, expected) in cases {
        assert!(body.len() <= MAX_BODY_BYTES, "{what}: over MAX_BODY_BYTES");
        let session = session_id("body-keys");
        let reply = send(invoke(&t, Some(&token), body).header(SESSION_HEADER, &session)).await;
        let sent = origin_session(&token, "default", &session);
        assert_served_or_refused(&reply, &sent, expected, (400, "invalid_body"), what);
    }
}

/// How the session id of a duplicates case is sent.
enum SessionIn {
    Header,
    /// Twice in the body: `runtimeSessionId` with the placeholders `{1}`
    /// and `{2}`, the second of which must win.
    BodyTwice,
}

async fn the_last_control_field_wins_and_the_rest_is_forwarded_as_written(t: Arc<Target>) {
    let token = token(&unique("duplicates"));
    // (query, body, where the session goes, mode answered, payload forwarded)
    let cases = [
        (
            "",
            r#"{"response":"original","prompt":"/events 2 1", "x":1,"x":"\u0032" ,"response":"transformed"}"#,
            SessionIn::Header,
            "transformed",
            r#"{"prompt":"/events 2 1", "x":1,"x":"\u0032"}"#,
        ),
        (
            "?response=original&response=transformed",
            " {\"prompt\":\"/events 2 1\",\"x\":1,\"x\":2}\n",
            SessionIn::Header,
            "transformed",
            " {\"prompt\":\"/events 2 1\",\"x\":1,\"x\":2}\n",
        ),
        (
            "?response=transformed&response=original",
            r#"{"prompt":"/events 2 1","x":1,"x":2}"#,
            SessionIn::Header,
            "original",
            r#"{"prompt":"/events 2 1","x":1,"x":2}"#,
        ),
        (
            "?response=original",
            r#"{"runtimeSessionId":"{1}","x":1,"prompt":"/events 2 1","x":2,"runtimeSessionId":"{2}","response":"transformed"}"#,
            SessionIn::BodyTwice,
            "transformed",
            r#"{"x":1,"prompt":"/events 2 1","x":2}"#,
        ),
    ];
    for (query, body, session_in, mode, forwarded) in cases {
        let (first, session) = (session_id("duplicate-first"), session_id("duplicates"));
        let mut request = client()
            .post(t.url(&format!("/invocations{query}")))
            .bearer_auth(&token)
            .header("content-type", "application/json");
        request = match session_in {
            SessionIn::Header => request.header(SESSION_HEADER, &session).body(body),
            SessionIn::BodyTwice => {
                request.body(body.replace("{1}", &first).replace("{2}", &session))
            }
        };
        let reply = send(request).await;
        assert_eq!(reply.status, 200, "{query} {body}: {}", shown(&reply));
        let content_type = reply.header("content-type").unwrap_or_default();
        let expected = match mode {
            "transformed" => "text/plain",
            _ => "text/event-stream",
        };
        assert!(
            content_type.starts_with(expected),
            "{query} {body}: {mode} mode, not {content_type}"
        );
        assert_eq!(
            reply.header(SESSION_HEADER),
            Some(session.as_str()),
            "{query} {body}: the session"
        );
        assert!(
            !stack()
                .tap
                .carried(&origin_session(&token, "default", &first)),
            "{body}: the first session went out"
        );
        assert_eq!(
            String::from_utf8_lossy(&received_payload(&token, &session)),
            forwarded,
            "{query} {body}: what the origin received"
        );
    }
}

async fn the_log_request_id_is_the_gateways_own(t: Arc<Target>) {
    // A request without an id gets the gateway's, echoed and logged.
    let reply = send(client().get(t.url("/ping"))).await;
    let ours = reply.header("x-request-id").unwrap_or_default().to_owned();
    assert!(is_uuid(&ours), "a generated id: {ours:?}");
    let line = t
        .log_line(&format!("request_id {ours}"), |l| l["request_id"] == ours)
        .await;
    assert!(line.get("client_request_id").is_none(), "{line}");

    // A client naming its request with that id (to pass for it in the log),
    // and one with an id of its own: echoed, logged beside the gateway's.
    for claimed in [ours.clone(), unique("client-request-id")] {
        let reply = send(
            client()
                .get(t.url("/ping"))
                .header("x-request-id", &claimed),
        )
        .await;
        assert_eq!(
            reply.header("x-request-id"),
            Some(claimed.as_str()),
            "echoed"
        );
        let line = t
            .log_line(&format!("client_request_id {claimed}"), |l| {
                l["client_request_id"] == claimed
            })
            .await;
        let id = line["request_id"].as_str().unwrap_or_default();
        assert!(is_uuid(id) && id != claimed, "the gateway's own id: {line}");
    }
    assert_eq!(t.request_lines(&ours), 1, "lines with request_id {ours}");

    // An id the gateway does not take is neither echoed nor logged.
    for unusable in ["has space".to_owned(), "x".repeat(129)] {
        let reply = send(
            client()
                .get(t.url("/ping"))
                .header("x-request-id", &unusable),
        )
        .await;
        let echoed = reply.header("x-request-id").unwrap_or_default().to_owned();
        assert!(
            is_uuid(&echoed),
            "{unusable:?}: a generated id, not {echoed:?}"
        );
        let line = t
            .log_line(&format!("request_id {echoed}"), |l| {
                l["request_id"] == echoed
            })
            .await;
        assert!(line.get("client_request_id").is_none(), "{line}");
    }
}

async fn every_answer_varies_on_origin_with_a_cors_list(t: Arc<Target>) {
    let token = token(&unique("vary"));
    for origin in [None, Some(REFUSED_ORIGIN), Some(CORS_ORIGIN)] {
        let answers = [
            ("a 404", client().get(t.url("/nope")), 404),
            ("a 401", invoke(&t, None, PROMPT), 401),
            (
                "a 415",
                client()
                    .post(t.url("/invocations"))
                    .bearer_auth(&token)
                    .header("content-type", "text/plain")
                    .body(PROMPT),
                415,
            ),
            ("a stream", invoke(&t, Some(&token), PROMPT), 200),
        ];
        for (what, request, status) in answers {
            let (reply, what) = send_from(origin, what, request, status).await;
            assert!(
                items(&reply, "vary").contains(&"origin".to_owned()),
                "{what}: Vary {:?}",
                items(&reply, "vary")
            );
            let allowed = origin.filter(|o| *o == CORS_ORIGIN);
            assert_eq!(
                reply.header("access-control-allow-origin"),
                allowed,
                "{what}"
            );
        }
    }
}

async fn an_unknown_expectation_is_417(t: Arc<Target>) {
    let token = token(&unique("expect"));
    let session = session_id("expect");
    let reply = send(
        invoke(&t, Some(&token), PROMPT)
            .header("expect", "something-else")
            .header(SESSION_HEADER, &session),
    )
    .await;
    reply.assert_error(417, "expectation_failed");
    assert!(
        !stack()
            .tap
            .carried(&origin_session(&token, "default", &session)),
        "the origin was called"
    );
    let reply = send(
        client()
            .get(t.url("/ping"))
            .header("expect", "something-else"),
    )
    .await;
    reply.assert_error(417, "expectation_failed");

    let reply = send(invoke(&t, Some(&token), PROMPT).header("expect", "100-continue")).await;
    assert_eq!(reply.status, 200, "100-continue: {}", shown(&reply));
}

async fn a_logged_usage_keeps_at_most_32_keys(t: Arc<Target>) {
    let token = token(&unique("usage-keys"));
    // 3 token counts, `nested` with 100 keys, then 100 more: 204 in all.
    let body = r#"{"prompt":"/usage-keys 100","response":"transformed"}"#;
    let reply = send(invoke(&t, Some(&token), body)).await;
    assert_eq!(reply.status, 200, "{}", shown(&reply));
    let trailer = split_transformed(&reply.text()).trailer;
    let metadata: Value = serde_json::from_str(&trailer[0]).expect("the metadata line");
    assert_eq!(
        count_keys(&metadata["usage"]),
        204,
        "the client gets the origin's usage whole"
    );

    let id = reply.header("x-request-id").unwrap_or_default();
    let line = t.request_log(id).await;
    let usage = &line["usage"];
    assert!(
        count_keys(usage) <= 32,
        "{} keys: {usage}",
        count_keys(usage)
    );
    assert_eq!(
        (
            &usage["inputTokens"],
            &usage["outputTokens"],
            &usage["totalTokens"]
        ),
        (&json!(1), &json!(1), &json!(2)),
        "the token counts come first and are kept: {usage}"
    );
}
/// The port of a target's base URL.
fn port(t: &Target) -> u16 {
    let url: http::Uri = t.base_url.parse().expect("a base URL");
    url.port_u16().expect("a port")
}

/// `GET /ping` and an invocation with this `Host`; the invocation's session.
async fn with_host(t: &Target, host: &str, token: Option<&str>) -> (Reply, Reply, String) {
    let ping = send(client().get(t.url("/ping")).header("host", host)).await;
    let session = session_id("host");
    let invocation = send(
        invoke(t, token, PROMPT)
            .header("host", host)
            .header(SESSION_HEADER, &session),
    )
    .await;
    (ping, invocation, session)
}

async fn a_forged_host_is_421_on_a_loopback_listener(t: Arc<Target>) {
    if t.lacks(
        Capability::LoopbackHostRule,
        "a_forged_host_is_421_on_a_loopback_listener",
    ) {
        return;
    }
    let port = port(&t);
    let token = token(&unique("host"));
    let ours = [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "LocalHost".to_owned(),
        "127.0.0.1:1".to_owned(),
    ];
    for host in ours {
        let (ping, invocation, _) = with_host(&t, &host, Some(&token)).await;
        assert_eq!(ping.status, 200, "GET /ping, Host {host}: {}", shown(&ping));
        assert_eq!(
            invocation.status,
            200,
            "Host {host}: {}",
            shown(&invocation)
        );
    }
    let forged = [
        "rebound.example".to_owned(),
        format!("rebound.example:{port}"),
        format!("127.0.0.2:{port}"),
        "localhost.rebound.example".to_owned(),
    ];
    for host in forged {
        let (ping, invocation, session) = with_host(&t, &host, Some(&token)).await;
        ping.assert_error(421, "misdirected_request");
        invocation.assert_error(421, "misdirected_request");
        assert!(
            !stack()
                .tap
                .carried(&origin_session(&token, "default", &session)),
            "Host {host}: the origin was called"
        );
        assert!(
            items(&invocation, "vary").contains(&"origin".to_owned()),
            "Host {host}: Vary on a 421 too"
        );
    }
}

every_target!(
    a_post_needs_a_json_content_type,
    a_body_over_max_body_keys_is_400_invalid_body,
    the_last_control_field_wins_and_the_rest_is_forwarded_as_written,
    the_log_request_id_is_the_gateways_own,
    every_answer_varies_on_origin_with_a_cors_list,
    an_unknown_expectation_is_417,
    a_logged_usage_keeps_at_most_32_keys,
    a_forged_host_is_421_on_a_loopback_listener,
);
