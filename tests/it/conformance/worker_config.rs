//! The Worker with an invalid configuration (issue 4, item 1): it is
//! validated on the first request, and every request, `/ping` included,
//! answers 500 `invalid_configuration` with the message the native server
//! prints when it refuses to start (`tests/it/cli.rs` checks that side):
//! naming the variable, never echoing a secret, and never a panic.
//!
//! Each case starts a `wrangler dev` of its own ([`child::own`]),
//! so it runs beside the shared Worker target; left out with
//! `AGENT_EDGE_SKIP_WORKER=1`. The configuration is self-contained (no
//! request reaches an origin or an issuer).
//!
//! The variables: `docs/interface.md`, "Configuration".

use agent_edge::error::error_json;

use super::child::{self, Own};
use super::client::{client, send};
use super::stack::{config_from, TargetKind};
use super::worker;

pub(super) const ACCESS_KEY_ID: &str = "AKIAWORKERCONFIGTEST";
pub(super) const SECRET_ACCESS_KEY: &str = "worker-config-secret/KEY+never-shown";
pub(super) const ACCOUNT_ID: &str = "210987654321";

/// A valid configuration, every variable that `wrangler.toml`'s `[vars]`
/// gives a value set here, so that the Worker sees the same as
/// [`config_from`].
pub(super) fn valid_vars() -> Vec<(String, String)> {
    [
        (
            "AGENT_RUNTIME_ARN",
            format!(
                "arn:aws:bedrock-agentcore:us-east-1:{ACCOUNT_ID}:runtime/config_check-AbCdEf1234"
            ),
        ),
        ("AGENT_QUALIFIER", "DEFAULT".into()),
        ("ORIGIN_AUTH", "sigv4".into()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
        ("AUTH", "jwt".into()),
        ("JWT_ISSUER", "https://issuer.example.com".into()),
        ("JWT_AUDIENCE", "config-check".into()),
        ("JWT_TOKEN_USE", "any".into()),
        ("JWT_LEEWAY_SECONDS", "60".into()),
        ("DEFAULT_RESPONSE_MODE", "original".into()),
        ("MAX_BODY_BYTES", "1048576".into()),
        ("KEEPALIVE_SECONDS", "15".into()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

#[tokio::test]
async fn worker_with_an_invalid_runtime_arn_answers_500_naming_it() {
    check_invalid(
        "bad-arn",
        "AGENT_RUNTIME_ARN",
        // Not a runtime, though it has the account id in it.
        &format!("arn:aws:s3:us-east-1:{ACCOUNT_ID}:bucket/not-a-runtime"),
    )
    .await;
}

#[tokio::test]
async fn worker_with_a_non_numeric_keepalive_answers_500_naming_it() {
    check_invalid("bad-keepalive", "KEEPALIVE_SECONDS", "soon").await;
}

/// Starts a Worker with the valid configuration but `variable = value`,
/// and checks its answers and its output.
async fn check_invalid(name: &str, variable: &str, value: &str) {
    if TargetKind::Worker.left_out(name) {
        return;
    }
    let valid = valid_vars();
    assert!(
        config_from(&valid).is_ok(),
        "the base configuration is valid"
    );
    let mut vars = valid;
    vars.retain(|(n, _)| n != variable);
    vars.push((variable.to_owned(), value.to_owned()));
    let error = config_from(&vars).expect_err("the configuration is invalid");
    assert_eq!(
        error.variable, variable,
        "the native side blames {variable}"
    );
    let expected_body = error_json(
        agent_edge::error::Code::InvalidConfiguration,
        &error.to_string(),
    );

    let Own { target, instance } = {
        let name = name.to_owned();
        child::own(TargetKind::Worker, move |logs| {
            worker::start_named(&name, &vars, logs)
        })
        .await
    };
    let invoke = || {
        client()
            .post(target.url("/invocations"))
            .header("content-type", "application/json")
            .body(r#"{"prompt":"hello"}"#)
    };
    let ping = || client().get(target.url("/ping"));
    let mut answers = Vec::new();
    for (what, request) in [
        ("POST /invocations", invoke()),
        ("GET /ping", ping()),
        ("POST /invocations, again", invoke()),
        ("GET /ping, again", ping()),
    ] {
        answers.push((what, send(request).await));
    }

    // Let the readers collect what wrangler printed for these requests.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let output = target.logs.lines();
    for (what, reply) in &answers {
        let body = reply.text();
        assert_eq!(reply.status, 500, "{name}: {what}: {body}");
        let content_type = reply.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{name}: {what}: content-type {content_type:?}"
        );
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{name}: {what}: not JSON ({e}): {body}"));
        assert_eq!(json["error"]["code"], "invalid_configuration", "{body}");
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(variable),
            "{name}: {what}: the message does not name {variable}: {message}"
        );
        assert_eq!(body, expected_body, "{name}: {what}: as the native server");
        for secret in [SECRET_ACCESS_KEY, ACCESS_KEY_ID, ACCOUNT_ID] {
            assert!(
                !body.contains(secret),
                "{name}: {what}: leaks {secret}: {body}"
            );
        }
    }
    let panics: Vec<&String> = output
        .iter()
        .filter(|line| line.contains("panicked"))
        .collect();
    assert!(
        panics.is_empty(),
        "{name}: the Worker panicked (see {}):\n{}",
        instance.transcript(),
        panics
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !instance.exited(),
        "{name}: wrangler dev exited; its output:\n{}",
        output.join("\n")
    );
    tokio::task::spawn_blocking(move || drop(instance))
        .await
        .expect("stopping wrangler");
    assert!(
        ping().send().await.is_err(),
        "{name}: {} still answers after the instance was dropped",
        target.base_url
    );
}
