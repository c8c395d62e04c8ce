//! Graceful shutdown of `agent-edge serve`, as an operator does it: a real
//! process, streams in flight, SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_edge::demo::origin::{self, DemoOriginSettings};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_agent-edge");

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stream's text so far, read in the background.
struct Reading {
    text: Arc<Mutex<String>>,
    done: tokio::task::JoinHandle<Result<(), String>>,
}

async fn start_stream(gateway: &str, request_id: &str, body: &str) -> Reading {
    let mut response = reqwest::Client::new()
        .post(format!("{gateway}/invocations"))
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    let done = tokio::spawn(async move {
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    Reading { text, done }
}

impl Reading {
    async fn first_bytes(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.text.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "no first byte");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) -> (Result<(), String>, String) {
        let ended = tokio::time::timeout(Duration::from_secs(20), self.done)
            .await
            .expect("the stream ends")
            .unwrap();
        let text = self.text.lock().unwrap().clone();
        (ended, text)
    }
}

#[tokio::test]
async fn sigterm_lets_streams_finish_within_the_grace_and_ends_the_rest_in_band() {
    let demo = origin::spawn(
        DemoOriginSettings::demo(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
    .await
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .envs(demo.gateway_vars())
        .envs([("AUTH", "none"), ("SHUTDOWN_GRACE_SECONDS", "2")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run agent-edge serve");
    let stderr = child.stderr.take().unwrap();
    let pid = child.id();
    let mut running = Running(child);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn({
        let lines = lines.clone();
        move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if value["event"] == "listening" {
                        let _ = addr_tx.send(value["addr"].as_str().unwrap().to_owned());
                    }
                }
                lines.lock().unwrap().push(line);
            }
        }
    });
    let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("serve prints where it listens");
    let gateway = format!("http://{addr}");

    // Done within the grace: 10 deltas 100 ms apart. Outliving it: 100.
    let short = start_stream(
        &gateway,
        "shutdown-short",
        r#"{"prompt":"/events 10 100","response":"transformed"}"#,
    )
    .await;
    let long_transformed = start_stream(
        &gateway,
        "shutdown-long-transformed",
        r#"{"prompt":"/events 100 100","response":"transformed"}"#,
    )
    .await;
    let long_original = start_stream(
        &gateway,
        "shutdown-long-original",
        r#"{"prompt":"/events 100 100","response":"original"}"#,
    )
    .await;
    for stream in [&short, &long_transformed, &long_original] {
        stream.first_bytes().await;
    }

    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = TcpStream::connect(&addr).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted after SIGTERM"
    );

    let (ended, text) = short.finish().await;
    assert_eq!(ended, Ok(()));
    let numbers: Vec<String> = (1..=10).map(|n| n.to_string()).collect();
    assert!(
        text.starts_with(&format!("{}\n----------\n{{\"usage\":", numbers.join(" "))),
        "{text}"
    );
    assert!(!text.contains("error"), "{text}");

    let (ended, text) = long_transformed.finish().await;
    assert_eq!(ended, Ok(()));
    let trailer = text.rsplit_once("\n----------\n").expect("a trailer").1;
    assert!(
        trailer.starts_with(r#"{"error":{"code":"shutting_down","#),
        "{trailer}"
    );
    assert!(trailer.contains("\n{\"runtimeSessionId\":"), "{trailer}");

    let (ended, text) = long_original.finish().await;
    assert_eq!(ended, Ok(()));
    assert!(
        text.ends_with("\n\n")
            && text.rsplit("\n\n").nth(1).is_some_and(|last| last
                .starts_with("event: error\ndata: {\"error\":{\"code\":\"shutting_down\"")),
        "{text}"
    );
    let cut_after = signalled.elapsed();
    assert!(
        cut_after >= Duration::from_secs(2) && cut_after < Duration::from_secs(9),
        "streams ended {cut_after:?} after SIGTERM"
    );

    let exited = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = running.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap()
    .expect("serve exits after the grace");
    assert!(exited.success(), "{exited:?}");

    let lines = lines.lock().unwrap().clone();
    let outcome = |request_id: &str| {
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["client_request_id"] == request_id)
            .unwrap_or_else(|| panic!("no log line for {request_id}: {lines:#?}"))["outcome"]
            .clone()
    };
    assert_eq!(outcome("shutdown-short"), "complete");
    assert_eq!(outcome("shutdown-long-transformed"), "shutdown");
    assert_eq!(outcome("shutdown-long-original"), "shutdown");
}
