//! The demo AgentCore origin and a native gateway in front of it, on
//! loopback, with the gateway's log lines kept: what the tests of one
//! native configuration start (the conformance suite has its own stacks).

use std::sync::{Arc, Mutex};

use agent_edge::config::Config;
use agent_edge::demo::origin::{self, DemoOrigin, DemoOriginSettings};
use agent_edge::platform::native::{self, GatewayServer};
use serde_json::Value;
use tokio::net::TcpListener;

pub struct NativeStack {
    /// Serves while the stack lives.
    _origin: DemoOrigin,
    pub gateway: GatewayServer,
    logs: Arc<Mutex<Vec<String>>>,
}

impl NativeStack {
    /// The demo origin's variables (SigV4) and `PUBLIC_HOSTS=gateway.test`
    /// (the name raw-socket tests send), overridden by `vars`.
    pub async fn start(vars: &[(&'static str, &str)]) -> NativeStack {
        let origin = origin::spawn(
            DemoOriginSettings::demo(),
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await
        .unwrap();
        let mut all = origin.gateway_vars();
        all.push(("PUBLIC_HOSTS", "gateway.test".to_owned()));
        for (name, value) in vars {
            all.retain(|(n, _)| n != name);
            all.push((name, (*value).to_owned()));
        }
        let config = Config::from_lookup(|name| {
            all.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
        })
        .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let gateway = native::spawn(
            config,
            TcpListener::bind("127.0.0.1:0").await.unwrap(),
            Arc::new(move |line: &str| sink.lock().unwrap().push(line.to_owned())),
        )
        .await
        .unwrap();
        NativeStack {
            _origin: origin,
            gateway,
            logs,
        }
    }

    pub fn invocations_url(&self) -> String {
        format!("{}/invocations", self.gateway.url())
    }

    /// `POST /invocations` with this JSON body and these headers.
    pub async fn invoke(&self, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(self.invocations_url())
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("an answer")
    }

    /// Every log line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The parsed log line of the request whose answer carried this
    /// `X-Request-Id` (the client's, logged as `client_request_id`, or the
    /// gateway's own).
    pub fn request_log(&self, request_id: &str) -> Option<Value> {
        self.log_lines().iter().find_map(|line| {
            let line: Value = serde_json::from_str(line).ok()?;
            (line["request_id"] == request_id || line["client_request_id"] == request_id)
                .then_some(line)
        })
    }
}
