//! How the server stops: one stop flag, one way to wake a thread blocked in
//! `accept`, and how a connection ends politely.
//!
//! Every thread blocks in something, and shutdown must wake each one:
//!
//! | thread | blocks in | how shutdown wakes it |
//! |---|---|---|
//! | `ws-listener`, `http-listener`, `flash-listener` | `accept` | its [`StopFlag`] goes up, then [`wake_accept`] connects to its port |
//! | `ticker` | `recv_timeout` on its stop channel | the server drops the other end |
//! | `hub` | `select!` on its two channels | `HubEvent::Shutdown` |
//! | `ws-<n>` (a WebSocket client) | `read` on its socket | the hub sends close 1001; the client answers, or the registry shuts the socket down |
//! | `http-<n>` (an HTTP connection) | `read` on its socket | the registry shuts the socket down |
//! | `http-<n>` serving `/events` | `recv` on its event queue | the hub drops the queue's other end |
//! | `hub-fan-out` | nothing | ends with each broadcast |
//! | `flash-<n>` | `read`, under a 3 s deadline | ends by itself; the flash listener joins it |
//! | `stdin` (binary, `--stdin`) | `read` on standard input | not woken: the process exits |
//! | `cluster-reader` (with `--redis`) | `XREAD BLOCK` on its Redis socket, or a backoff on its stop channel | the cluster shuts its socket down and drops the channel's other end |
//! | `cluster-keeper` (with `--redis`) | `select!` on the hub's notices and its stop channel | the cluster drops the channel's other end, after the hub has ended |
//!
//! [`crate::Server::shutdown`] does it in this order: stop accepting WebSocket
//! clients, stop the ticker, let the hub close every client, wait up to a second
//! for them to answer, then stop the HTTP port (which answers `/healthz` with 503
//! meanwhile) and hang up on every connection left, joining every thread.

use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::Error;

/// Starts a thread named `name` (the name shows in logs and debuggers), for
/// the server to join at shutdown.
pub(crate) fn spawn_named(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, Error> {
    thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map_err(|source| Error::Spawn {
            thread: name.to_string(),
            source,
        })
}

/// A flag that goes up once and stays up: "stop".
#[derive(Debug, Default)]
pub(crate) struct StopFlag(AtomicBool);

impl StopFlag {
    /// Raises the flag. Returns whether it was already up.
    pub(crate) fn raise(&self) -> bool {
        self.0.swap(true, Ordering::SeqCst)
    }

    /// Whether the flag is up.
    pub(crate) fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Wakes the thread blocked in `accept` on `addr` by connecting to it: the
/// listener sees the connection, checks its [`StopFlag`], and ends. (A blocking
/// `accept` cannot be interrupted otherwise without `unsafe` signal handling.)
pub(crate) fn wake_accept(addr: SocketAddr) {
    // A listener that has already gone refuses; nothing is left to wake then.
    // tour: wake-accept
    let _ = TcpStream::connect_timeout(&connectable(addr), Duration::from_secs(1));
}

/// The address to connect to for `addr`: an unspecified address (0.0.0.0, ::)
/// becomes loopback, which reaches a listener on all interfaces.
pub(crate) fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
        other => other,
    }
}

/// After the server sends its last answer (an HTTP error, a close frame) on a
/// connection it will not read to the end, how long it keeps reading and
/// discarding before hanging up.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// Reads and discards until the peer hangs up or [`LINGER`] passes. Closing a
/// socket with unread input makes the kernel send a reset, which can destroy the
/// server's last answer before the peer reads it.
pub(crate) fn linger(mut socket: &TcpStream) {
    let deadline = Instant::now() + LINGER;
    let mut sink = vec![0u8; 1024];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match socket.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}
