//! The fault suite: the demo agent's fault prompts, on every target and in
//! both response modes. Each ends in a clean error of its mode (a status
//! before the stream, the trailer's error line or a final `event: error`
//! after it) and exactly one log line naming it; what reaches the client
//! and the log is searched for secrets by the suite itself (see
//! [`super::client`] and [`super::on_every_target`]).

use std::sync::Arc;
use std::time::Duration;

use reqwest::RequestBuilder;
use serde_json::Value;

use super::client::{invoke, send, send_timed, split_transformed, unique, Reply, Timed};
use super::every_target;
use super::stack::{Target, ORIGIN_IDLE_TIMEOUT_SECONDS, ORIGIN_TIMEOUT_SECONDS};
use super::tokens::token;

const MODES: [&str; 2] = ["original", "transformed"];

/// A request for `prompt` in `mode`, and its request id.
fn request(t: &Target, prompt: &str, mode: &str) -> (RequestBuilder, String) {
    let request_id = unique("fault");
    let body = serde_json::json!({ "prompt": prompt, "response": mode }).to_string();
    let token = token(&unique("fault"));
    let request = invoke(t, Some(&token), body).header("x-request-id", &request_id);
    (request, request_id)
}

/// A whole answer to `prompt` in `mode`, with its request id.
async fn answer(t: &Target, prompt: &str, mode: &str) -> (Reply, String) {
    let (request, request_id) = request(t, prompt, mode);
    (send(request).await, request_id)
}

/// The same, read chunk by chunk.
async fn timed(t: &Target, prompt: &str, mode: &str, limit: Duration) -> (Timed, String) {
    let (request, request_id) = request(t, prompt, mode);
    (send_timed(request, limit).await, request_id)
}

/// The one log line of `request_id` (there must be exactly one), waiting
/// up to 10 s for it: a loaded Lambda runtime writes a large stream's line
/// late.
async fn logged_once(t: &Target, request_id: &str) -> Value {
    let needle = format!("\"client_request_id\":\"{request_id}\"");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline
        && !t.logs.lines().iter().any(|l| l.contains(&needle))
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = t.request_log(request_id).await;
    let count = t
        .logs
        .lines()
        .iter()
        .filter(|l| l.contains(&needle))
        .count();
    assert_eq!(count, 1, "one log line for {request_id}");
    line
}

fn bytes_of(timed: &Timed) -> Vec<u8> {
    timed.chunks.iter().flat_map(|(_, c)| c.to_vec()).collect()
}

/// The error of a started stream: the final `event: error` (original) or
/// the trailer's error line (transformed).
fn stream_error_code(mode: &str, body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let json = if mode == "original" {
        let at = text.rfind("event: error\ndata: ")?;
        let data = &text[at + "event: error\ndata: ".len()..];
        assert!(
            data.ends_with("\n\n"),
            "the error event ends the stream: {text:?}"
        );
        data.trim_end().to_owned()
    } else {
        let trailer = split_transformed(&text).trailer;
        trailer
            .iter()
            .find(|line| line.starts_with("{\"error\""))?
            .clone()
    };
    let value: Value = serde_json::from_str(&json).expect("the error is JSON");
    value["error"]["code"].as_str().map(str::to_owned)
}

/// An error answered before the stream: this status and code in both
/// modes, logged once with the code.
async fn assert_answered_error(t: &Target, prompt: &str, status: u16, code: &str) {
    for mode in MODES {
        let (reply, request_id) = answer(t, prompt, mode).await;
        reply.assert_error(status, code);
        let line = logged_once(t, &request_id).await;
        assert_eq!(line["status"], status, "{prompt} ({mode}): {line}");
        assert_eq!(line["error"], code, "{prompt} ({mode}): {line}");
    }
}

/// A stream that ended with `code` in both modes, logged once as an
/// origin error with the code.
async fn assert_stream_error(t: &Target, prompt: &str, code: &str, limit: Duration) {
    let runs = MODES.map(|mode| async move {
        let (timed, request_id) = timed(t, prompt, mode, limit).await;
        assert_eq!(timed.status, 200, "{prompt} ({mode})");
        let body = bytes_of(&timed);
        assert_eq!(
            stream_error_code(mode, &body).as_deref(),
            Some(code),
            "{prompt} ({mode}): {:?}",
            String::from_utf8_lossy(&body)
        );
        let line = logged_once(t, &request_id).await;
        assert_eq!(line["outcome"], "origin_error", "{prompt} ({mode}): {line}");
        assert_eq!(line["error"], code, "{prompt} ({mode}): {line}");
        (timed, line)
    });
    futures::future::join_all(runs).await;
}

async fn a_reset_before_headers_is_502_origin_unreachable(t: Arc<Target>) {
    assert_answered_error(&t, "/reset", 502, "origin_unreachable").await;
}

async fn origin_5xx_json_and_html_are_502_origin_error(t: Arc<Target>) {
    assert_answered_error(&t, "/origin-error 500", 502, "origin_error").await;
    assert_answered_error(&t, "/origin-html 503", 502, "origin_error").await;
}

async fn slow_headers_are_504_origin_timeout(t: Arc<Target>) {
    let runs = MODES.map(|mode| {
        let t = t.clone();
        async move {
            let prompt = format!("/slow-headers {}", ORIGIN_TIMEOUT_SECONDS * 2000);
            let (timed, request_id) = timed(&t, &prompt, mode, Duration::from_secs(20)).await;
            assert_eq!(timed.status, 504, "{mode}: {}", timed.body());
            assert!(
                timed.ended >= Duration::from_secs(ORIGIN_TIMEOUT_SECONDS)
                    && timed.ended < Duration::from_secs(ORIGIN_TIMEOUT_SECONDS * 2),
                "{mode}: answered after {:?}",
                timed.ended
            );
            let line = logged_once(&t, &request_id).await;
            assert_eq!(line["error"], "origin_timeout", "{line}");
        }
    });
    futures::future::join_all(runs).await;
}

async fn a_stall_after_headers_gets_keepalives_then_the_idle_error(t: Arc<Target>) {
    let idle = Duration::from_secs(ORIGIN_IDLE_TIMEOUT_SECONDS);
    let (original, _) = futures::join!(
        timed(&t, "/stall-after 2", "original", idle * 4),
        assert_stream_error(&t, "/stall-after 2", "origin_idle_timeout", idle * 4),
    );
    let (timed, _) = original;
    assert!(timed.ended >= idle, "ended after {:?}", timed.ended);
    let keepalives = timed.body().matches(": keepalive\n\n").count();
    assert!(
        keepalives as u64 >= ORIGIN_IDLE_TIMEOUT_SECONDS - 2,
        "keepalives while the origin was silent: {:?}",
        timed.body()
    );
    assert_eq!(
        stream_error_code("original", &bytes_of(&timed)).as_deref(),
        Some("origin_idle_timeout")
    );
}

async fn a_drop_mid_event_ends_with_origin_stream_failed(t: Arc<Target>) {
    let limit = Duration::from_secs(10);
    assert_stream_error(&t, "/drop-mid-event", "origin_stream_failed", limit).await;
}

async fn an_event_over_the_limit_ends_with_event_too_large(t: Arc<Target>) {
    // Over the default MAX_EVENT_BYTES (1 MiB).
    let prompt = "/big-event 1100000";
    assert_stream_error(&t, prompt, "event_too_large", Duration::from_secs(20)).await;
}

/// A complete answer to `prompt` in both modes, each logged once as
/// `complete`: the transformed text (its trailer without an error, ending
/// with the session line) and the original bytes.
async fn complete_in_both_modes(t: &Target, prompt: &str) -> (String, Vec<u8>) {
    let (reply, request_id) = answer(t, prompt, "transformed").await;
    assert_eq!(reply.status, 200, "{prompt} (transformed)");
    let body = split_transformed(&reply.text());
    assert!(
        !body.trailer.iter().any(|l| l.starts_with("{\"error\""))
            && body
                .trailer
                .last()
                .is_some_and(|l| l.starts_with("{\"runtimeSessionId\"")),
        "{prompt} (transformed): {:?}",
        body.trailer
    );
    assert_eq!(logged_once(t, &request_id).await["outcome"], "complete");
    let (timed, request_id) = timed(t, prompt, "original", Duration::from_secs(10)).await;
    assert_eq!(timed.status, 200, "{prompt} (original)");
    assert_eq!(logged_once(t, &request_id).await["outcome"], "complete");
    (body.text, bytes_of(&timed))
}

async fn invalid_utf8_in_a_delta_is_replaced_or_relayed(t: Arc<Target>) {
    let (text, original) = complete_in_both_modes(&t, "/invalid-utf8").await;
    // Transformed: decoded as the WHATWG algorithm does, with U+FFFD.
    assert_eq!(text, "valid bad \u{FFFD}\u{FFFD} bytes");
    // Original: the origin's bytes, unchanged.
    let relayed = original.windows(8).any(|w| w == b"\xff\xfe bytes");
    assert!(relayed, "{original:?}");
}

async fn garbage_bytes_end_cleanly(t: Arc<Target>) {
    let (text, original) = complete_in_both_modes(&t, "/garbage").await;
    // Transformed: no event in it, so no text; the trailer still closes it.
    assert_eq!(text, "");
    // Original: relayed byte for byte (4 KiB).
    assert_eq!(original.len(), 4096);
}

async fn a_wrong_content_type_is_502_origin_error(t: Arc<Target>) {
    assert_answered_error(&t, "/content-type text/html", 502, "origin_error").await;
    assert_answered_error(
        &t,
        "/content-type application/octet-stream",
        502,
        "origin_error",
    )
    .await;
}

async fn a_gzip_encoded_body_is_502_origin_encoding_unsupported(t: Arc<Target>) {
    assert_answered_error(&t, "/gzip", 502, "origin_encoding_unsupported").await;
}

every_target!(
    a_reset_before_headers_is_502_origin_unreachable,
    origin_5xx_json_and_html_are_502_origin_error,
    slow_headers_are_504_origin_timeout,
    a_stall_after_headers_gets_keepalives_then_the_idle_error,
    a_drop_mid_event_ends_with_origin_stream_failed,
    an_event_over_the_limit_ends_with_event_too_large,
    invalid_utf8_in_a_delta_is_replaced_or_relayed,
    garbage_bytes_end_cleanly,
    a_wrong_content_type_is_502_origin_error,
    a_gzip_encoded_body_is_502_origin_encoding_unsupported,
);
