//! A transparent TCP proxy between the gateways and the demo origin that
//! notes, per connection, which session ids it carried and when the gateway
//! hung up. That is how the suite sees, on any target, that a client
//! disconnecting mid-stream cancels the origin request: the gateway closes
//! its origin connection long before the origin's stream would have ended.
//! (A finished response leaves the connection open in the gateway's pool, so
//! an early close is the cancellation.)
//!
//! It forwards bytes untouched, so SigV4 (signed for the proxy's `Host`)
//! still verifies at the origin.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SESSION_HEADER: &[u8] = b"x-amzn-bedrock-agentcore-runtime-session-id:";
/// A header line longer than this is not a header we look for.
const MAX_LINE: usize = 8 * 1024;

pub struct OriginTap {
    pub addr: SocketAddr,
    connections: Mutex<Vec<Arc<Mutex<Connection>>>>,
}

#[derive(Debug, Default)]
struct Connection {
    sessions: Vec<String>,
    /// When the gateway side closed (EOF or error) its half.
    gateway_closed_at: Option<Instant>,
}

impl OriginTap {
    /// Listens on 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn spawn(upstream: SocketAddr) -> Arc<OriginTap> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind tap");
        let tap = Arc::new(OriginTap {
            addr: listener.local_addr().expect("tap address"),
            connections: Mutex::new(Vec::new()),
        });
        let accepting = tap.clone();
        tokio::spawn(async move {
            loop {
                let Ok((downstream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let record = Arc::new(Mutex::new(Connection::default()));
                accepting.connections.lock().unwrap().push(record.clone());
                tokio::spawn(forward(downstream, upstream, record));
            }
        });
        tap
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// When the gateway closed the origin connection that carried `session`,
    /// if it has.
    pub fn gateway_closed(&self, session: &str) -> Option<Instant> {
        let connections = self.connections.lock().unwrap();
        connections.iter().find_map(|c| {
            let c = c.lock().unwrap();
            c.sessions
                .iter()
                .any(|s| s == session)
                .then_some(c.gateway_closed_at)
                .flatten()
        })
    }

    /// Whether any connection carried `session`.
    pub fn carried(&self, session: &str) -> bool {
        let connections = self.connections.lock().unwrap();
        connections
            .iter()
            .any(|c| c.lock().unwrap().sessions.iter().any(|s| s == session))
    }
}

async fn forward(downstream: TcpStream, upstream: SocketAddr, record: Arc<Mutex<Connection>>) {
    let Ok(upstream) = TcpStream::connect(upstream).await else {
        record.lock().unwrap().gateway_closed_at = Some(Instant::now());
        return;
    };
    let _ = downstream.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut from_gateway, mut to_gateway) = downstream.into_split();
    let (mut from_origin, mut to_origin) = upstream.into_split();

    let requests = async {
        let mut buffer = vec![0u8; 16 * 1024];
        let mut line = Vec::new();
        loop {
            let n = match from_gateway.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            sniff_sessions(&buffer[..n], &mut line, &record);
            if to_origin.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        record.lock().unwrap().gateway_closed_at = Some(Instant::now());
        let _ = to_origin.shutdown().await;
    };
    let responses = async {
        let _ = tokio::io::copy(&mut from_origin, &mut to_gateway).await;
        let _ = to_gateway.shutdown().await;
    };
    tokio::join!(requests, responses);
}

/// Collects the values of session headers in the request bytes.
fn sniff_sessions(bytes: &[u8], line: &mut Vec<u8>, record: &Mutex<Connection>) {
    for &byte in bytes {
        if byte == b'\n' {
            if line.len() > SESSION_HEADER.len()
                && line[..SESSION_HEADER.len()].eq_ignore_ascii_case(SESSION_HEADER)
            {
                let value = String::from_utf8_lossy(&line[SESSION_HEADER.len()..]);
                let value = value.trim().to_owned();
                record.lock().unwrap().sessions.push(value);
            }
            line.clear();
        } else if line.len() < MAX_LINE {
            line.push(byte);
        }
    }
}
