//! Streaming without buffering, measured by client-side arrival times;
//! keepalive comments; a stream failing mid-way; a client that goes away
//! (`docs/interface.md`, "Original mode", "Transformed mode").
//!
//! The timing checks run twice: as sent by a bare client, and with the
//! `Accept-Encoding` of a browser, which a platform that compresses
//! streams answers with a body buffered until the end (issue 8, item 1).

use std::sync::Arc;

use std::time::{Duration, Instant};

use super::client::{
    data_events, delta_texts, invoke, send, send_timed, session_id, split_transformed, unique,
    Timed, SESSION_HEADER,
};
use super::origin_errors::assert_no_leak;
use super::stack::{stack, TargetKind};
use super::tokens::token;
use super::{every_target, Target};

/// What Chromium sends with every `fetch`.
pub const BROWSER_ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

/// A stream request, with the browser's `Accept-Encoding` when asked.
fn stream_request(
    t: &Target,
    subject: &str,
    body: &str,
    accept_encoding: Option<&str>,
) -> reqwest::RequestBuilder {
    let request = invoke(t, Some(&token(&unique(subject))), body.to_owned());
    match accept_encoding {
        Some(value) => request.header("accept-encoding", value),
        None => request,
    }
}

/// Each timing check twice, a test for each: `$plain` runs `$check` as a
/// bare client asks, `$browser` with [`BROWSER_ACCEPT_ENCODING`].
macro_rules! plain_and_browser {
    ($($check:ident: $plain:ident, $browser:ident;)*) => {$(
        async fn $plain(t: Arc<Target>) {
            $check(&t, None).await;
        }

        async fn $browser(t: Arc<Target>) {
            $check(&t, Some(BROWSER_ACCEPT_ENCODING)).await;
        }
    )*};
}

plain_and_browser! {
    original_mode_arrivals:
        original_mode_events_arrive_as_they_are_sent,
        original_mode_events_arrive_as_they_are_sent_to_a_browser;
    transformed_mode_arrivals:
        transformed_mode_text_arrives_long_before_the_end,
        transformed_mode_text_arrives_long_before_the_end_in_a_browser;
    keepalives:
        keepalive_comments_only_between_events,
        keepalive_comments_reach_a_browser_as_they_are_sent;
}

/// Nothing but `identity` may reach the client: a compressed stream is a
/// buffered one.
fn assert_not_compressed(timed: &Timed) -> Result<(), String> {
    match timed.header("content-encoding") {
        None | Some("identity") => Ok(()),
        Some(other) => Err(format!(
            "the stream came compressed (Content-Encoding: {other}); reads: {:#?}",
            timeline(timed)
        )),
    }
}

/// Per read: its arrival time and how many complete delta events it
/// completed (an event split across reads counts where it ends).
fn delta_arrivals(timed: &Timed) -> Vec<(Duration, usize)> {
    let mut seen = Vec::new();
    let mut completed = 0;
    timed
        .chunks
        .iter()
        .map(|(at, chunk)| {
            seen.extend_from_slice(chunk);
            let text = String::from_utf8_lossy(&seen);
            let now = text
                .split_inclusive("\n\n")
                .filter(|event| event.ends_with("\n\n") && event.contains("contentBlockDelta"))
                .count();
            let new = now - completed;
            completed = now;
            (*at, new)
        })
        .collect()
}

/// Each read's arrival time and its first bytes, for failure messages.
fn timeline(timed: &Timed) -> Vec<String> {
    timed
        .chunks
        .iter()
        .map(|(at, chunk)| {
            let text = String::from_utf8_lossy(chunk);
            let head: String = text.chars().take(60).collect();
            format!("{:>5} ms {:>4} B {head:?}", at.as_millis(), chunk.len())
        })
        .collect()
}

async fn original_mode_arrivals(t: &Target, accept_encoding: Option<&str>) {
    let timed = send_timed(
        stream_request(
            t,
            "arrivals",
            r#"{"prompt":"/events 20 100"}"#,
            accept_encoding,
        ),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(timed.status, 200);
    assert_not_compressed(&timed).unwrap();
    assert_eq!(timed.header("content-type"), Some("text/event-stream"));
    let arrivals: Vec<(Duration, usize)> = delta_arrivals(&timed)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    let total: usize = arrivals.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 20, "all 20 events arrived: {arrivals:?}");
    let spread = arrivals.last().unwrap().0 - arrivals[0].0;
    assert!(
        spread >= Duration::from_millis(1500),
        "the 20 events, sent over 1.9 s, arrived within {spread:?} (buffered): {arrivals:?}"
    );
    let most = arrivals.iter().map(|(_, n)| *n).max().unwrap();
    assert!(
        most <= 5,
        "one read carried {most} of 20 events (buffered): {arrivals:?}"
    );
    assert!(
        arrivals.len() >= 10,
        "only {} separate arrivals: {arrivals:?}",
        arrivals.len()
    );
}

async fn transformed_mode_arrivals(t: &Target, accept_encoding: Option<&str>) {
    let timed = send_timed(
        stream_request(
            t,
            "arrivals-text",
            r#"{"prompt":"/events 20 100","response":"transformed"}"#,
            accept_encoding,
        ),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(timed.status, 200);
    assert_not_compressed(&timed).unwrap();
    let (first_text, first_chunk) = timed.chunks.first().cloned().expect("some text");
    assert!(first_chunk.starts_with(b"1"), "{first_chunk:?}");
    assert!(
        timed.ended - first_text >= Duration::from_millis(1500),
        "the first text came at {first_text:?}, the end at {:?}: buffered",
        timed.ended
    );
    assert!(
        first_text < Duration::from_secs(1),
        "first text only at {first_text:?}"
    );
    let text_reads = timed
        .chunks
        .iter()
        .filter(|(at, _)| *at < timed.ended - Duration::from_millis(150))
        .count();
    assert!(
        text_reads >= 10,
        "only {text_reads} reads before the end: {:?}",
        timed.chunks
    );
    let body = timed.body();
    let parts = split_transformed(&body);
    assert_eq!(
        parts.text,
        (1..=20)
            .map(|i| if i == 1 {
                "1".to_owned()
            } else {
                format!(" {i}")
            })
            .collect::<String>()
    );
}

async fn keepalives(t: &Arc<Target>, accept_encoding: Option<&'static str>) {
    // KEEPALIVE_SECONDS=1; the origin is silent 2.5 s after each of its
    // two deltas. Several streams at once: a keepalive that only sometimes
    // goes out shows up.
    let streams = (0..4).map(|_| {
        let t = t.clone();
        async move {
            let timed = send_timed(
                stream_request(
                    &t,
                    "keepalive",
                    r#"{"prompt":"/events 2 2500"}"#,
                    accept_encoding,
                ),
                Duration::from_secs(20),
            )
            .await;
            assert_not_compressed(&timed)?;
            check_keepalives(&timed).map_err(|why| format!("{why}; reads: {:#?}", timeline(&timed)))
        }
    });
    let failures: Vec<String> = futures::future::join_all(streams)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 4 streams:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Keepalive comments in each silence of `/events 2 2500`, only between
/// events, and nothing else added.
fn check_keepalives(timed: &Timed) -> Result<(), String> {
    const KEEPALIVE: &str = ": keepalive\n\n";
    if timed.status != 200 {
        return Err(format!("status {}", timed.status));
    }
    let body = timed.body();
    for (at, _) in body.match_indices(KEEPALIVE) {
        if at != 0 && !body[..at].ends_with("\n\n") {
            return Err(format!("a keepalive inside an event at byte {at}"));
        }
    }
    // Without the comments: the origin's events, unchanged.
    let events = body.replace(KEEPALIVE, "");
    if delta_texts(&data_events(&events)) != ["1", " 2"] || events.contains("\n:") {
        return Err(format!("events changed: {events:?}"));
    }
    // When each delta and the closing events arrived, and the comments.
    let mut seen = String::new();
    let mut arrived = |needle: &str| {
        seen.clear();
        timed.chunks.iter().find_map(|(at, chunk)| {
            seen.push_str(&String::from_utf8_lossy(chunk));
            seen.contains(needle).then_some(*at)
        })
    };
    let first = arrived("\"text\": \"1\"").ok_or("no first delta")?;
    let second = arrived("\"text\": \" 2\"").ok_or("no second delta")?;
    let closing = arrived("contentBlockStop").ok_or("no closing events")?;
    let keepalives: Vec<Duration> = timed
        .chunks
        .iter()
        .filter(|(_, chunk)| String::from_utf8_lossy(chunk).contains(": keepalive"))
        .map(|(at, _)| *at)
        .collect();
    for (from, to, silence) in [(first, second, "first"), (second, closing, "second")] {
        if !keepalives.iter().any(|at| *at > from && *at < to) {
            return Err(format!(
                "no keepalive in the {silence} silence ({from:?} to {to:?}); keepalives at {keepalives:?}"
            ));
        }
    }
    Ok(())
}

/// The transformed answer to `prompt`, a stream that fails after three
/// deltas: 200, the text `1 2 3`, then a trailer whose first line is the
/// error `code` and whose last is the session line, and nothing leaked.
/// The trailer.
async fn failed_after_three(t: &Target, token: &str, prompt: &str, code: &str) -> Vec<String> {
    let session = session_id("failed-after-three");
    let body = serde_json::json!({ "prompt": prompt, "response": "transformed" }).to_string();
    let reply = send(invoke(t, Some(token), body).header(SESSION_HEADER, &session)).await;
    assert_eq!(reply.status, 200, "{prompt}");
    let text = reply.text();
    let parts = split_transformed(&text);
    assert_eq!(parts.text, "1 2 3", "{prompt}");
    let error: serde_json::Value = serde_json::from_str(&parts.trailer[0]).expect("error line");
    assert_eq!(error["error"]["code"], code, "{prompt}: {text:?}");
    assert!(error["error"]["message"].is_string(), "{prompt}: {error}");
    assert_eq!(
        parts.trailer.last(),
        Some(&format!(r#"{{"runtimeSessionId":"{session}"}}"#)),
        "{prompt}"
    );
    assert_no_leak(&reply, token, prompt);
    parts.trailer
}

async fn agent_error_mid_stream_is_the_trailer_error_line(t: Arc<Target>) {
    let token = token(&unique("agent-error"));
    let trailer = failed_after_three(&t, &token, "/error-after 3", "agent_error").await;
    assert_eq!(trailer.len(), 2, "error and session lines: {trailer:?}");
}

async fn origin_cut_mid_stream_ends_with_an_error_not_a_hang(t: Arc<Target>) {
    let token = token(&unique("abort"));
    let timed = send_timed(
        invoke(&t, Some(&token), r#"{"prompt":"/abort-after 3"}"#),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(timed.status, 200);
    assert_eq!(
        timed.error, None,
        "the gateway should end its stream cleanly"
    );
    let body = timed.body();
    assert_eq!(delta_texts(&data_events(&body)), ["1", " 2", " 3"]);
    let last_event = body.trim_end_matches("\n\n").rsplit("\n\n").next().unwrap();
    assert!(
        last_event.starts_with(
            "event: error\ndata: {\"error\":{\"code\":\"origin_stream_failed\",\"message\":"
        ),
        "the final event: {body:?}"
    );
    assert!(body.ends_with("\n\n"));

    failed_after_three(&t, &token, "/abort-after 3", "origin_stream_failed").await;
}

async fn client_disconnect_cancels_the_origin_request(t: Arc<Target>) {
    let session = session_id("disconnect");
    let request_id = unique("conformance-disconnect");
    let token = token(&unique("disconnect"));
    // 40 events 100 ms apart: 4 s if nobody hangs up.
    let mut response = invoke(&t, Some(&token), r#"{"prompt":"/events 40 100"}"#)
        .header(SESSION_HEADER, &session)
        .header("x-request-id", &request_id)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let mut seen = Vec::new();
    while String::from_utf8_lossy(&seen)
        .matches("contentBlockDelta")
        .count()
        < 3
    {
        let chunk = tokio::time::timeout(Duration::from_secs(5), response.chunk())
            .await
            .expect("events within 5 s")
            .expect("a chunk")
            .expect("not the end yet");
        seen.extend_from_slice(&chunk);
    }
    drop(response);
    let hung_up = Instant::now();

    let tap = &stack().tap;
    let closed = loop {
        let sent = super::tokens::origin_session(&token, "default", &session);
        if let Some(at) = tap.gateway_closed(&sent) {
            break at;
        }
        assert!(
            hung_up.elapsed() < Duration::from_secs(3),
            "the gateway kept the origin request open 3 s after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let delay = closed.saturating_duration_since(hung_up);
    assert!(
        delay < Duration::from_millis(1500),
        "origin request cancelled only after {delay:?}"
    );

    // The Lambda function learns of it when the Runtime API closes the
    // response stream, which `cargo lambda watch` does.
    if t.kind != TargetKind::Worker {
        let line = t.request_log(&request_id).await;
        assert_eq!(line["outcome"], "client_closed", "{line}");
    }
}

every_target!(
    original_mode_events_arrive_as_they_are_sent,
    original_mode_events_arrive_as_they_are_sent_to_a_browser,
    transformed_mode_text_arrives_long_before_the_end,
    transformed_mode_text_arrives_long_before_the_end_in_a_browser,
    keepalive_comments_only_between_events,
    keepalive_comments_reach_a_browser_as_they_are_sent,
    agent_error_mid_stream_is_the_trailer_error_line,
    origin_cut_mid_stream_ends_with_an_error_not_a_hang,
    client_disconnect_cancels_the_origin_request,
);
