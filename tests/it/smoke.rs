//! Smoke test of the native pipeline: demo origin, gateway, transformed answer.

use std::sync::{Arc, Mutex};

use agent_edge::config::Config;
use agent_edge::demo::origin::{self, DemoOriginSettings};
use agent_edge::platform::native;
use tokio::net::TcpListener;

#[tokio::test]
async fn transformed_answer_through_the_native_gateway() {
    let demo = origin::spawn(
        DemoOriginSettings::demo(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let mut vars = demo.gateway_vars();
    vars.push(("AUTH", "none".into()));
    let config =
        Config::from_lookup(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
            .unwrap();
    let logs = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = logs.clone();
    let gateway = native::spawn(
        config,
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Arc::new(move |l: &str| sink.lock().unwrap().push(l.to_owned())),
    )
    .await
    .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/invocations", gateway.url()))
        .header("content-type", "application/json")
        .body(r#"{"prompt":"hello there","response":"transformed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session = response
        .headers()
        .get("x-amzn-bedrock-agentcore-runtime-session-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.text().await.unwrap();
    println!("{body}");
    assert!(
        body.ends_with(&format!("{{\"runtimeSessionId\":\"{session}\"}}")),
        "{body}"
    );
    assert!(body.contains("\n----------\n{\"usage\":"), "{body}");
    println!("{:?}", logs.lock().unwrap());
}

/// An event over `MAX_EVENT_BYTES` ends the stream with the error in the
/// trailer, and the log line says so (not `complete`).
#[tokio::test]
async fn an_event_over_the_limit_is_logged_as_an_origin_error() {
    let demo = origin::spawn(
        DemoOriginSettings::demo(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let mut vars = demo.gateway_vars();
    vars.push(("AUTH", "none".into()));
    vars.push(("MAX_EVENT_BYTES", "1024".into()));
    let config =
        Config::from_lookup(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
            .unwrap();
    let logs = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = logs.clone();
    let gateway = native::spawn(
        config,
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Arc::new(move |l: &str| sink.lock().unwrap().push(l.to_owned())),
    )
    .await
    .unwrap();
    // One delta of 400 numbers: an event of about 1.5 KB.
    let response = reqwest::Client::new()
        .post(format!("{}/invocations", gateway.url()))
        .header("content-type", "application/json")
        .header("x-request-id", "smoke-event-too-large")
        .body(r#"{"prompt":"/events 400 0 400","response":"transformed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("\n----------\n{\"error\":{\"code\":\"event_too_large\""),
        "{body}"
    );
    let line: serde_json::Value = logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|l: &serde_json::Value| l["request_id"] == "smoke-event-too-large")
        .expect("the request's log line");
    assert_eq!(line["outcome"], "origin_error", "{line}");
    assert_eq!(line["error"], "event_too_large", "{line}");
}
