//! What only the Lambda function has to show, each case in a `cargo lambda
//! watch` of its own ([`child::own`]); left out with
//! `AGENT_EDGE_SKIP_LAMBDA=1`.
//!
//! - Invalid: it cannot refuse to start as the native server does (Lambda
//!   would retry the init on every request and answer a bare 502), so, like
//!   the Worker, it answers every request, `/ping` included, with 500
//!   `invalid_configuration` and the native server's message, and logs it,
//!   never echoing a secret.
//! - The Lambda environment (issue 11, item 2): the execution role's
//!   temporary credentials, with their session token, and `AWS_REGION` set
//!   to the function's own region are all SigV4 needs; the runtime's region
//!   comes from its ARN.
//! - State across invocations: the issuer's keys fetched by one invocation
//!   serve the next ones of the same execution environment.

use agent_edge::config::Secret;
use agent_edge::demo::origin::{self as demo, DemoOriginSettings};
use agent_edge::error::{error_json, Code};
use agent_edge::gateway::EventName;
use reqwest::StatusCode;

use super::stack::{bind, config_from, LogBuffer, Target, TargetKind};
use super::tokens::Issuer;
use super::worker_config::{valid_vars, ACCESS_KEY_ID, ACCOUNT_ID, SECRET_ACCESS_KEY};
use super::{child, lambda};
use crate::issuer_support::JWKS_PATH;

#[tokio::test]
async fn lambda_with_an_invalid_runtime_arn_answers_500_naming_it() {
    if TargetKind::Lambda.left_out("lambda_with_an_invalid_runtime_arn_answers_500_naming_it") {
        return;
    }
    let variable = "AGENT_RUNTIME_ARN";
    let mut vars = valid_vars();
    vars.retain(|(n, _)| n != variable);
    // Not a runtime, though it has the account id in it.
    vars.push((
        variable.to_owned(),
        format!("arn:aws:s3:us-east-1:{ACCOUNT_ID}:bucket/not-a-runtime"),
    ));
    let error = config_from(&vars).expect_err("the configuration is invalid");
    let expected_body = error_json(Code::InvalidConfiguration, &error.to_string());

    let function = {
        let vars = vars.clone();
        child::own(TargetKind::Lambda, move |logs| {
            lambda::start_with_concurrency("bad-arn", &vars, logs, lambda::CONCURRENCY)
        })
        .await
    };
    let client = super::client::client();
    for path in ["/ping", "/invocations", "/ping"] {
        let request = if path == "/ping" {
            client.get(function.target.url(path))
        } else {
            client
                .post(function.target.url(path))
                .header("content-type", "application/json")
                .body(r#"{"prompt":"hello"}"#)
        };
        let response = request.send().await.expect("an answer");
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{path}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{path}"
        );
        let body = response.text().await.expect("the body");
        assert_eq!(body, expected_body, "{path}: as the native server");
        assert!(body.contains(variable), "{path}: names {variable}: {body}");
    }

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let output = function.target.logs.lines();
    let logged: Vec<&String> = output
        .iter()
        .filter(|line| line.contains(EventName::InvalidConfiguration.as_str()))
        .filter(|line| line.contains("\"level\":\"error\""))
        .collect();
    assert!(
        !logged.is_empty(),
        "an error line about the configuration in:\n{}",
        output.join("\n")
    );
    for line in &output {
        for secret in [SECRET_ACCESS_KEY, ACCESS_KEY_ID, ACCOUNT_ID] {
            assert!(!line.contains(secret), "the output leaks {secret}: {line}");
        }
        assert!(!line.contains("panicked"), "the function panicked: {line}");
    }
    assert!(!function.instance.exited(), "cargo lambda watch exited");
}

#[tokio::test]
async fn lambda_signs_with_the_execution_role_session_in_the_runtime_region() {
    if TargetKind::Lambda.left_out("lambda_signs_with_the_execution_role_session") {
        return;
    }
    let session_token = "IQoJb3JpZ2luX2VjEXAMPLE/role-session+token==";
    let mut settings = DemoOriginSettings::demo();
    settings.word_delay = std::time::Duration::from_millis(1);
    // Temporary credentials, as Lambda gives the execution role's.
    settings.credentials.access_key_id = "ASIALAMBDAROLEEXAMPLE".to_owned();
    settings.credentials.session_token = Some(Secret::new(session_token));
    let runtime_region = settings.region.clone();
    let origin = demo::spawn(settings, bind().await)
        .await
        .expect("demo origin");
    let function_region = "eu-central-1";
    assert_ne!(function_region, runtime_region);
    let mut vars: Vec<(String, String)> = origin
        .gateway_vars()
        .into_iter()
        .filter(|(name, _)| *name != "AWS_REGION")
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    assert!(vars.iter().any(|(name, _)| name == "AWS_SESSION_TOKEN"));
    vars.push(("AWS_REGION".into(), function_region.into()));
    vars.push(("AUTH".into(), "none".into()));

    let function = child::own(TargetKind::Lambda, move |logs| {
        lambda::start_with_concurrency("role-credentials", &vars, logs, 1)
    })
    .await;
    let response = super::client::client()
        .post(function.target.url("/invocations"))
        .header("content-type", "application/json")
        .body(r#"{"prompt":"/events 3 1","response":"transformed"}"#)
        .send()
        .await
        .expect("an answer");
    let status = response.status();
    let body = response.text().await.expect("the body");
    assert_eq!(status, StatusCode::OK, "{body}");
    let signed = origin
        .requests()
        .into_iter()
        .last()
        .expect("the origin was called");
    assert_eq!(
        signed.headers["x-amz-security-token"], session_token,
        "the session token is sent"
    );
    let authorization = signed.headers["authorization"].to_str().unwrap_or_default();
    assert!(
        authorization.contains(&format!("/{runtime_region}/bedrock-agentcore/aws4_request")),
        "signed for the runtime's region, not the function's: {authorization}"
    );
    assert!(!body.contains(session_token));
    super::routes::assert_auth_disabled_logged_once(&function.target).await;
}

/// A plain test: the issuer runs on a runtime of its own, dropped midway.
#[test]
fn lambda_keeps_the_issuer_keys_across_invocations() {
    if TargetKind::Lambda.left_out("lambda_keeps_the_issuer_keys_across_invocations") {
        return;
    }
    let issuer_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("the issuer's runtime");
    let issuer = issuer_runtime.block_on(Issuer::spawn());
    let mut vars = super::stack::vars_with(&[("JWT_ISSUER", &issuer.url)]);
    vars.retain(|(name, _)| name != "RATE_LIMIT_PER_MINUTE");
    let instance = lambda::start_with_concurrency("keys", &vars, LogBuffer::default(), 1)
        .unwrap_or_else(|why| panic!("{why}"));
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the client's runtime");
    let target = Target::new(
        TargetKind::Lambda,
        instance.base_url.clone(),
        LogBuffer::default(),
    );
    let invoke = |subject: &str| {
        let token = super::tokens::token_of(&issuer.url, subject);
        let prompt = r#"{"prompt":"/events 2 1"}"#;
        let reply = client_runtime.block_on(async {
            super::client::send(super::client::invoke(&target, Some(&token), prompt)).await
        });
        (reply.status, reply.text())
    };
    let (status, body) = invoke("keys-first");
    assert_eq!(status, 200, "the first invocation fetches the keys: {body}");

    drop(issuer_runtime);
    let gone = client_runtime.block_on(async {
        super::client::client()
            .get(format!("{}{JWKS_PATH}", issuer.url))
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await
    });
    assert!(gone.is_err(), "the issuer still answers: {gone:?}");

    // New tokens (not in the verified-token cache), the issuer gone: only
    // keys kept from the first invocation can verify them.
    for subject in ["keys-second", "keys-third"] {
        let (status, body) = invoke(subject);
        assert_eq!(status, 200, "{subject}: {body}");
    }
}
