//! Interop: botocore recomputes the SigV4 signature of origin requests that
//! the demo origin actually received, and must find the same one.
//!
//! The requests go client → native gateway → demo origin over real HTTP
//! (and once straight from `origin::build_request`, to cover the user-id
//! header the gateway only sends with JWT auth). `scripts/botocore_sign.py`
//! rebuilds each received request from its signed headers and signs it with
//! botocore's `SigV4Auth`, the signer boto3 uses for bedrock-agentcore; it
//! also reports the path botocore's own `InvokeAgentRuntime` would use.
//!
//! botocore lives in the virtualenv `target/pyenv` ([`crate::pyenv`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use agent_edge::config::{Config, Secret};
use agent_edge::demo::origin::{self as demo, DemoOrigin, DemoOriginSettings, RecordedRequest};
use agent_edge::origin::{build_request, Invocation};
use agent_edge::platform::native;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::net::TcpListener;

#[tokio::test]
async fn botocore_computes_the_same_signature_as_the_gateway() {
    // The virtualenv first, once, before any origin starts.
    crate::pyenv::python();
    let cases = [
        ("through the gateway", None, false),
        (
            "through the gateway, session token",
            Some("demo-session-token/ABC+=="),
            false,
        ),
        (
            "build_request with user id and session token",
            Some("tok"),
            true,
        ),
    ];
    let mut failures = Vec::new();
    for (name, session_token, direct) in cases {
        let mut settings = DemoOriginSettings::demo();
        settings.credentials.session_token = session_token.map(Secret::new);
        let origin = demo::spawn(settings, TcpListener::bind("127.0.0.1:0").await.unwrap())
            .await
            .unwrap();
        let status = if direct {
            send_direct(&origin).await
        } else {
            send_through_gateway(&origin).await
        };
        assert_eq!(status, 200, "{name}: the demo origin rejected the request");
        let received = origin.requests().pop().expect("the origin got a request");
        if let Err(why) = check_with_botocore(&origin, &received) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn send_through_gateway(origin: &DemoOrigin) -> u16 {
    let mut vars = origin.gateway_vars();
    vars.push(("AUTH", "none".into()));
    let config = Config::from_lookup(|name| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .unwrap();
    let gateway = native::spawn(
        config,
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Arc::new(|_: &str| {}),
    )
    .await
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/invocations", gateway.url()))
        .header("content-type", "application/json")
        .body(r#"{"prompt":"héllo, botocore","response":"original"}"#)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    gateway.shutdown().await;
    status
}

async fn send_direct(origin: &DemoOrigin) -> u16 {
    let request = build_request(
        &origin.origin_config(),
        Invocation {
            payload: Bytes::from_static(br#"{"prompt":"direct"}"#),
            session_id: "botocore-interop-session-0123456789abcdef",
            user_id: Some("user@example.com"),
            bearer_token: None,
        },
        SystemTime::now(),
    )
    .unwrap();
    let request = reqwest::Request::try_from(request).unwrap();
    let response = reqwest::Client::new().execute(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    status
}

fn check_with_botocore(origin: &DemoOrigin, received: &RecordedRequest) -> Result<(), String> {
    let settings = origin.settings();
    let header = |name: &str| {
        received
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .ok_or(format!("no {name} header received"))
    };
    let spec = json!({
        "method": received.method.as_str(),
        "url": format!("http://{}{}", header("host")?, received.uri),
        "headers": received.headers.iter()
            .map(|(k, v)| [k.as_str(), v.to_str().unwrap()])
            .collect::<Vec<_>>(),
        "body_base64": base64::engine::general_purpose::STANDARD.encode(&received.body),
        "access_key_id": settings.credentials.access_key_id,
        "secret_access_key": settings.credentials.secret_access_key.expose(),
        "session_token": settings.credentials.session_token.as_ref().map(Secret::expose),
        "region": settings.region,
        "service": "bedrock-agentcore",
        "runtime_arn": settings.runtime_arn,
        "qualifier": settings.qualifier,
    });
    let botocore = run_script(&spec)?;

    let sent = header("authorization")?;
    if botocore["authorization"] != sent.as_str() {
        return Err(format!(
            "signatures differ\n  sent:     {sent}\n  botocore: {}\n  botocore canonical request:\n{}",
            botocore["authorization"],
            botocore["canonical_request"].as_str().unwrap_or_default()
        ));
    }
    if botocore["body_sha256"] != header("x-amz-content-sha256")?.as_str() {
        return Err("x-amz-content-sha256 is not the SHA-256 of the body received".into());
    }
    let path = received.uri.to_string();
    if botocore["invoke_agent_runtime_path"] != path.as_str() {
        return Err(format!(
            "path differs from botocore's InvokeAgentRuntime\n  sent:     {path}\n  botocore: {}",
            botocore["invoke_agent_runtime_path"]
        ));
    }
    // The ARN path segment was signed re-encoded, as AWS verifies it.
    let canonical = botocore["canonical_request"].as_str().unwrap_or_default();
    if !canonical.contains("/runtimes/arn%253Aaws%253Abedrock-agentcore%253A") {
        return Err(format!("unexpected canonical path:\n{canonical}"));
    }
    let signed = sent.split("SignedHeaders=").nth(1).unwrap_or_default();
    for required in ["host;", "x-amz-content-sha256;", "x-amz-date;"] {
        if !signed.contains(required) {
            return Err(format!("{required} not signed: {sent}"));
        }
    }
    Ok(())
}

fn run_script(spec: &Value) -> Result<Value, String> {
    let script = repo().join("scripts/botocore_sign.py");
    crate::pyenv::run_json(&[script], spec.to_string().as_bytes())
        .map_err(|why| format!("botocore_sign.py: {why}"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
