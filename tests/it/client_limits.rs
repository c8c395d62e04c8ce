//! The native server's client connections, as attackers and real clients
//! use them, over raw loopback sockets: slow and oversized heads, idle
//! sockets, slow bodies, the connection cap, and request fields that must
//! not blow up a log line.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::native_stack::NativeStack;

/// Waits up to `within` for the server to close `stream`; what it sent
/// before closing.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, String> {
    let mut received = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    match tokio::time::timeout(within, read_all).await {
        Ok(()) => Ok(received),
        Err(_) => Err(format!(
            "still open after {within:?}, received {:?}",
            String::from_utf8_lossy(&received)
        )),
    }
}

/// A native stack with `AUTH=none` and these `CLIENT_HEADER_TIMEOUT_SECONDS`
/// and `CLIENT_IDLE_TIMEOUT_SECONDS`.
async fn with_timeouts(header: &str, idle: &str) -> NativeStack {
    NativeStack::start(&[
        ("AUTH", "none"),
        ("CLIENT_HEADER_TIMEOUT_SECONDS", header),
        ("CLIENT_IDLE_TIMEOUT_SECONDS", idle),
    ])
    .await
}

async fn connect(stack: &NativeStack) -> TcpStream {
    TcpStream::connect(stack.gateway.addr).await.unwrap()
}

/// Reads one response head (through the blank line).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_at_the_header_timeout() {
    let stack = with_timeouts("1", "1").await;
    let mut stream = connect(&stack).await;
    stream
        .write_all(b"POST /invocations HTTP/1.1\r\nHost: gateway.test\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let trickle = async {
        // A byte every 100 ms, for longer than any timeout here.
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream.write_all(b"a").await.is_err() {
                return;
            }
        }
    };
    trickle.await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "the trickling connection was served for {elapsed:?}"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_idles_is_closed() {
    let stack = with_timeouts("30", "1").await;
    // Nothing at all.
    let mut silent = connect(&stack).await;
    let received = closed_within(&mut silent, Duration::from_secs(4))
        .await
        .unwrap();
    assert!(received.is_empty(), "{received:?}");

    // Kept alive after an answer, then idle.
    let mut kept = connect(&stack).await;
    kept.write_all(b"GET /ping HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(&mut kept).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    closed_within(&mut kept, Duration::from_secs(4))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_gets_408_at_the_body_timeout() {
    let stack = NativeStack::start(&[("AUTH", "none"), ("CLIENT_BODY_TIMEOUT_SECONDS", "1")]).await;
    let mut stream = connect(&stack).await;
    stream
        .write_all(
            b"POST /invocations HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let answer = async {
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&received).into_owned()
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::select! {
            answer = answer => answer,
            () = trickle => panic!("the body was read for 10 s"),
        }
    })
    .await
    .expect("an answer within 5 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");
}

/// A head over `MAX_HEADER_BYTES` gets a real 431 and the connection closed.
#[tokio::test]
async fn a_head_over_the_size_cap_gets_431() {
    for (vars, header_bytes) in [
        (vec![("AUTH", "none")], 64 * 1024),
        (vec![("AUTH", "none"), ("MAX_HEADER_BYTES", "8192")], 10_000),
    ] {
        let stack = NativeStack::start(&vars).await;
        let mut stream = connect(&stack).await;
        let request = format!(
            "GET /ping HTTP/1.1\r\nHost: gateway.test\r\nX-Big: {}\r\n\r\n",
            "b".repeat(header_bytes)
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let received = closed_within(&mut stream, Duration::from_secs(5))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 431"), "{vars:?}: {text}");
    }
}

/// At `MAX_CONNECTIONS`, a new connection waits (it is not refused, and
/// nothing open is disturbed) and is served once another closes.
#[tokio::test]
async fn at_the_connection_cap_new_connections_wait_and_streams_go_on() {
    let stack = NativeStack::start(&[("AUTH", "none"), ("MAX_CONNECTIONS", "2")]).await;
    let client = reqwest::Client::new();
    // A stream of 20 deltas 100 ms apart on the first connection.
    let mut stream = client
        .post(stack.invocations_url())
        .header("content-type", "application/json")
        .body(r#"{"prompt":"/events 20 100","response":"transformed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // The second connection: idle.
    let idle = connect(&stack).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let ping = tokio::spawn({
        let url = format!("{}/ping", stack.gateway.url());
        async move {
            let started = Instant::now();
            let status = reqwest::Client::new()
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16());
            (status, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !ping.is_finished(),
        "a third connection was served at the cap"
    );
    drop(idle);
    let (status, waited) = tokio::time::timeout(Duration::from_secs(5), ping)
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert_eq!(status.unwrap(), 200);
    assert!(waited >= Duration::from_millis(1000), "{waited:?}");

    let mut text = String::new();
    while let Some(chunk) = stream.chunk().await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let expected: Vec<String> = (1..=20).map(|n| n.to_string()).collect();
    assert!(
        text.starts_with(&format!("{}\n----------\n", expected.join(" "))),
        "{text}"
    );
    assert!(stack
        .log_lines()
        .iter()
        .any(|line| line.contains(r#""event":"connection_limit_reached""#)));
}

/// A 350,000-byte method token (under a raised head cap) is answered, and
/// its log line stays small.
#[tokio::test]
async fn a_huge_method_gives_a_small_log_line() {
    let stack = NativeStack::start(&[("AUTH", "none"), ("MAX_HEADER_BYTES", "1048576")]).await;
    let mut stream = connect(&stack).await;
    let request = format!(
        "{} /invocations HTTP/1.1\r\nHost: gateway.test\r\nX-Request-Id: huge-method\r\nConnection: close\r\n\r\n",
        "M".repeat(350_000)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    let line = stack
        .log_lines()
        .into_iter()
        .find(|line| line.contains("huge-method"))
        .expect("the request's log line");
    assert!(line.len() < 2048, "a {}-byte log line", line.len());
}

/// RFC 9112 section 3.2: no `Host`, or two, is a 400.
#[tokio::test]
async fn a_request_without_exactly_one_host_is_400() {
    let stack = NativeStack::start(&[("AUTH", "none")]).await;
    for (request, expected) in [
        ("GET /ping HTTP/1.1\r\n\r\n", "HTTP/1.1 400"),
        (
            "GET /ping HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            "GET /ping HTTP/1.1\r\nHost: gateway.test\r\n\r\n",
            "HTTP/1.1 200",
        ),
    ] {
        let mut stream = connect(&stack).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        assert!(head.starts_with(expected), "{request:?}: {head}");
    }
}
