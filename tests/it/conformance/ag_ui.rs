//! AG-UI agents (issue 17, item 5): the demo origin streams the recorded
//! AG-UI runs of `tests/data/sse/` (`/ag-ui`, `/ag-ui-error`). Original mode
//! relays their bytes unchanged; transformed mode prints the text of their
//! text messages, then the trailer: the run's usage, or the `RUN_ERROR` as
//! `agent_error` with its ARNs scrubbed.

use std::sync::Arc;

use super::client::{invoke, send, session_id, unique, SESSION_HEADER};
use super::every_target;
use super::modes::assert_stream_headers;
use super::stack::Target;
use super::tokens::token;

const RUN: &str = include_str!("../../data/sse/ag-ui-run.sse");
const RUN_ERROR: &str = include_str!("../../data/sse/ag-ui-run-error.sse");

/// The text of `ag-ui-run.sse`'s two text messages.
const RUN_TEXT: &str = "Let me check the weather in Z\u{fc}rich for you.\
    It is 18 \u{b0}C and partly cloudy in Z\u{fc}rich \
    (\u{30c1}\u{30e5}\u{30fc}\u{30ea}\u{30c3}\u{30d2}) \u{1f324}\u{fe0f}.\
    \n\nA \"light\" jacket should do.";

/// `prompt` in both modes, with a session id of its own each: the original
/// answer, then the transformed one with the session line expected at its end.
async fn both_modes(t: &Target, prompt: &str) -> (String, String, String) {
    let token = token(&unique("ag-ui"));
    let session = session_id("ag-ui-original");
    let original = send(
        invoke(t, Some(&token), format!(r#"{{"prompt":"{prompt}"}}"#))
            .header(SESSION_HEADER, &session),
    )
    .await;
    assert_eq!(original.status, 200, "{}", original.text());
    assert_stream_headers(&original, "text/event-stream", &session);

    let session = session_id("ag-ui-transformed");
    let transformed = send(
        invoke(
            t,
            Some(&token),
            format!(r#"{{"prompt":"{prompt}","response":"transformed"}}"#),
        )
        .header(SESSION_HEADER, &session),
    )
    .await;
    assert_eq!(transformed.status, 200, "{}", transformed.text());
    assert_stream_headers(&transformed, "text/plain; charset=utf-8", &session);
    // The run's end ends the answer, a complete one.
    let log = t
        .request_log(transformed.header("x-request-id").expect("request id"))
        .await;
    assert_eq!(log["outcome"], "complete", "{log}");
    assert!(log.get("error").is_none_or(|e| e.is_null()), "{log}");
    (
        original.text(),
        transformed.text(),
        format!(r#"{{"runtimeSessionId":"{session}"}}"#),
    )
}

async fn an_ag_ui_run_in_both_modes(t: Arc<Target>) {
    let (original, transformed, session_line) = both_modes(&t, "/ag-ui").await;
    assert_eq!(original, RUN, "original mode relays the AG-UI events");
    assert_eq!(
        transformed,
        format!(
            "{RUN_TEXT}\n----------\n{}\n{session_line}",
            r#"{"usage":{"inputTokens":1620,"outputTokens":74,"totalTokens":1694}}"#
        ),
        "the text messages, then the run's usage"
    );
}

async fn an_ag_ui_run_error_in_both_modes(t: Arc<Target>) {
    let (original, transformed, session_line) = both_modes(&t, "/ag-ui-error").await;
    assert_eq!(original, RUN_ERROR, "original mode relays the AG-UI events");
    let error = r#"{"error":{"code":"agent_error","message":"STRANDS_ERROR: An error occurred (AccessDeniedException) when calling the ConverseStream operation: User: [redacted] is not authorized to perform: bedrock:InvokeModelWithResponseStream on resource: [redacted] because no identity-based policy allows the bedrock:InvokeModelWithResponseStream action"}}"#;
    assert_eq!(
        transformed,
        format!("Looking up your order\u{2026}\n----------\n{error}\n{session_line}"),
        "the text, then RUN_ERROR as agent_error, scrubbed"
    );
}

every_target!(an_ag_ui_run_in_both_modes, an_ag_ui_run_error_in_both_modes,);
