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
