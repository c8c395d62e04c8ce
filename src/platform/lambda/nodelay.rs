//! `TCP_NODELAY` on the runtime's connections to the Runtime API.
//!
//! `lambda_runtime` connects to the Runtime API with Nagle's algorithm on
//! and offers no setting for it: a chunk written while the previous one is
//! unacknowledged waits for the Runtime API's delayed ACK, so the first
//! text and every event after a pause would leave late. Each invocation
//! therefore finds the process's sockets to the Runtime API by scanning its
//! file descriptors, and sets the option on them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::OnceLock;

/// Sets `TCP_NODELAY` on every socket of this process connected to the
/// Runtime API (`AWS_LAMBDA_RUNTIME_API`, `host:port` on Lambda, a URL under
/// `cargo lambda watch`), the one that will carry this invocation's answer
/// included. Errors are ignored: at worst the answer leaves with delays.
pub(super) fn stream_without_delay() {
    static RUNTIME_API: OnceLock<Option<SocketAddr>> = OnceLock::new();
    let Some(runtime_api) = *RUNTIME_API.get_or_init(|| {
        let value = std::env::var("AWS_LAMBDA_RUNTIME_API").ok()?;
        let authority = value.trim_start_matches("http://");
        let authority = authority.split('/').next()?;
        authority.to_socket_addrs().ok()?.next()
    }) else {
        return;
    };
    let Ok(descriptors) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in descriptors.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: the descriptor was open when listed. Were it closed and
        // reused meanwhile, the calls below fail (not a socket) or set
        // TCP_NODELAY on another socket, which is harmless.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        if socket
            .peer_addr()
            .ok()
            .and_then(|peer| peer.as_socket())
            .is_some_and(|peer| peer == runtime_api)
        {
            let _ = socket.set_tcp_nodelay(true);
        }
    }
}
