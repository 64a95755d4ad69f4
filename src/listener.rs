//! The accept loops: one thread per listening port (`ws-listener`,
//! `http-listener`), each blocked in `accept` on a plain `std::net::TcpListener`.
//!
//! For each new TCP connection the loop checks the port's limit, records the
//! socket in the [`Registry`](crate::registry::Registry) and spawns one thread for
//! it, with a small stack:
//!
//! - on the WebSocket port, `ws-<n>` runs [`crate::ws::connection::serve`]. Up to
//!   [`REFUSAL_SLACK`] connections beyond `--max-clients` still get a thread, only
//!   to be answered `503`; past that, new connections are closed at once, so an
//!   overload never turns into unbounded threads.
//! - on the HTTP port, `http-<n>` runs [`crate::http::serve`]. When
//!   `--max-http-connections` are open, the oldest idle one is closed to make
//!   room; if none is idle, the newcomer gets `503` and is closed at once.
//!
//! Every connection is counted as it is accepted, and every way it ends is
//! counted too (see [`crate::metrics`]).
//!
//! A loop ends when its [`Acceptor`] is stopped: a stop flag, then one connection
//! to the port to wake the thread from `accept`.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::metrics::{HttpClose, Rejection};
use crate::registry::Kind;
use crate::shared::Shared;
use crate::shutdown::{wake_accept, StopFlag};
use crate::ws::outbox::Outbox;

/// Beyond `max_clients`, this many more connections still get a thread, only to be
/// answered `503`. Past that, new connections are closed at once: an overload must
/// not turn into unbounded threads.
pub(crate) const REFUSAL_SLACK: usize = 64;

/// How long one write to an HTTP client may block. It bounds how long a client
/// that stopped reading can hold its thread, page or SSE stream alike.
pub(crate) const HTTP_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections the kernel may hold for us, handshake done, before we `accept`
/// them. `std`'s `TcpListener::bind` asks for 128, which a burst of connects on a
/// busy 2-core machine overflows: every connect beyond it is dropped and retried by
/// the client a whole second later. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listening socket on `addr` with a backlog of [`LISTEN_BACKLOG`].
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std does: a restarted server can bind its port while old connections
    // from the previous run are still in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Which port a loop accepts on, and so what it does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// The WebSocket port: each connection is a client's thread.
    WebSocket,
    /// The HTTP port: each connection answers requests.
    Http,
}

/// A running accept loop, and how to stop it.
pub(crate) struct Acceptor {
    /// The address bound, for waking the loop at shutdown.
    addr: SocketAddr,
    /// Raised by [`Acceptor::stop`]; the loop checks it after every `accept`.
    stop: Arc<StopFlag>,
    /// The loop's thread, joined by [`Acceptor::stop`].
    thread: JoinHandle<()>,
}

impl Acceptor {
    /// Starts the accept loop for `port` on its own thread, named `name`.
    ///
    /// # Errors
    ///
    /// The OS refused the thread.
    pub(crate) fn start(
        name: &str,
        listener: TcpListener,
        port: Port,
        shared: Arc<Shared>,
    ) -> io::Result<Acceptor> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(StopFlag::default());
        let thread_stop = stop.clone();
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(&listener, port, &shared, &thread_stop))?;
        Ok(Acceptor { addr, stop, thread })
    }

    /// Stops accepting: sets the flag, wakes the thread from `accept` with a
    /// connection of our own, and joins it.
    pub(crate) fn stop(self) {
        self.stop.raise();
        wake_accept(self.addr);
        if self.thread.join().is_err() {
            log::error!("the listener on {} panicked", self.addr);
        }
    }
}

/// The accept loop; runs on the listener's thread until `stop` is set.
fn run(listener: &TcpListener, port: Port, shared: &Arc<Shared>, stop: &StopFlag) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        // tour: ws-accept
        let accepted = listener.accept();
        if stop.is_raised() {
            break;
        }
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue
            }
            Err(e) => {
                shared.metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
                // Usually "too many open files". Retrying at once would spin; wait a
                // little for clients to leave, and say so at most once a second.
                if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    log::warn!(
                        "accept failed: {e}; at the open-file limit? (see README, \
                         \"Limits of one machine\")"
                    );
                    last_error_log = Some(Instant::now());
                }
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        match port {
            Port::WebSocket => accept_websocket(socket, peer, shared),
            Port::Http => accept_http(socket, peer, shared),
        }
    }
    log::debug!("listener stopped");
}

/// Gives a new WebSocket connection its thread, unless the server is far over
/// `--max-clients`.
fn accept_websocket(socket: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    shared.metrics.accepted.fetch_add(1, Ordering::Relaxed);
    if shared.registry.clients() >= shared.max_clients + REFUSAL_SLACK {
        shared.metrics.rejected.add(Rejection::OverCapacity);
        log::debug!("{peer}: closed at once, far over --max-clients");
        return;
    }
    let _ = socket.set_nodelay(true);
    #[cfg(not(unix))]
    let _ = socket.set_write_timeout(Some(crate::ws::outbox::FALLBACK_WRITE_TIMEOUT));
    let socket = Arc::new(socket);
    // Made here rather than on the client's thread: every outbox then comes from
    // this one thread's allocator, packed together, instead of from one of
    // glibc's per-thread malloc arenas. The hub touches every outbox on every
    // broadcast; packed, they share cache lines and pages.
    let outbox = Arc::new(Outbox::new(socket.clone(), shared.config.max_backlog));
    let thread_shared = shared.clone();
    // tour: ws-thread
    let spawned = shared.registry.spawn(
        "ws",
        Kind::WebSocket,
        Some(socket.clone()),
        shared.config.client_stack_size,
        move |_| crate::ws::connection::serve(socket, outbox, peer, &thread_shared),
    );
    if let Err(e) = spawned {
        shared.metrics.rejected.add(Rejection::NoThread);
        log::warn!("{peer}: cannot start a thread for this client: {e}");
    }
}

/// The answer to an HTTP connection beyond `--max-http-connections` when none can
/// be evicted.
const HTTP_FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 62\r\nConnection: close\r\n\
Retry-After: 1\r\n\r\ntickcast has too many HTTP connections open; try again later.\n";

/// Answers `response` and closes the connection, without ever waiting on it: the
/// listener thread must stay free to accept.
///
/// A new connection's send buffer is empty, so the whole answer fits at once.
/// Whatever the client has sent already is read and discarded first, because
/// closing a socket with unread input makes the kernel send a reset, which can
/// destroy the answer before the client reads it.
fn refuse_at_once(socket: &TcpStream, response: &[u8]) {
    let mut socket = socket;
    if socket.set_nonblocking(true).is_err() {
        return;
    }
    let _ = socket.write(response);
    let _ = socket.shutdown(std::net::Shutdown::Write);
    let mut discard = [0u8; 1024];
    while matches!(io::Read::read(&mut socket, &mut discard), Ok(n) if n > 0) {}
}

/// Gives a new HTTP connection its thread, making room if the HTTP connections
/// are all taken.
fn accept_http(socket: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    let metrics = &shared.metrics;
    metrics.http_accepted.fetch_add(1, Ordering::Relaxed);
    if shared.registry.http() >= shared.config.max_http_connections
        && !shared.registry.evict_idle_http()
    {
        metrics.http_closed.add(HttpClose::Full);
        log::debug!("{peer}: HTTP connection refused, --max-http-connections are all busy");
        refuse_at_once(&socket, HTTP_FULL);
        return;
    }
    let _ = socket.set_nodelay(true);
    if let Err(e) = socket.set_write_timeout(Some(HTTP_WRITE_TIMEOUT)) {
        metrics.http_closed.add(HttpClose::Failed);
        log::debug!("{peer}: HTTP connection failed at once: {e}");
        return;
    }
    let socket = Arc::new(socket);
    let thread_shared = shared.clone();
    let spawned = shared.registry.spawn(
        "http",
        Kind::Http,
        Some(socket.clone()),
        shared.config.client_stack_size,
        move |conn| crate::http::serve(&socket, peer, &thread_shared, conn),
    );
    if let Err(e) = spawned {
        metrics.http_closed.add(HttpClose::NoThread);
        log::warn!("{peer}: cannot start a thread for this HTTP connection: {e}");
    }
}
