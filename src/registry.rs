//! The registry of live connection threads: who is running, of which kind, and
//! how to wake and join them all at shutdown.
//!
//! Every connection gets a thread of its own, started by [`Registry::spawn`] and
//! recorded here with its socket until it ends (on every way out, a panic
//! included). The registry is what the limits are checked against:
//!
//! - **clients** — WebSocket connections (in their handshake or joined) and SSE
//!   streams — against `--max-clients`;
//! - **HTTP connections** answering requests against `--max-http-connections`.
//!   When they are all taken, [`Registry::evict_idle_http`] closes the one that
//!   has waited longest for a request, to make room.
//!
//! It is also what makes shutdown complete: [`crate::Server::shutdown`] waits for
//! the clients to end, then shuts down every socket still open (waking its thread
//! from `read`) and joins every thread.
//!
//! No thread of its own: a mutex around a map, taken briefly by the listeners,
//! the connection threads and the server.

use std::collections::BTreeMap;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::metrics::Metrics;

/// What a registered connection is, for the limit that applies to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A WebSocket connection, in its handshake or joined: a client.
    WebSocket,
    /// An HTTP connection answering requests.
    Http,
    /// An HTTP connection that became a Server-Sent Events stream: a client.
    EventStream,
}

impl Kind {
    fn is_client(self) -> bool {
        matches!(self, Kind::WebSocket | Kind::EventStream)
    }
}

/// A connection's number in the registry, handed to its thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnId(u64);

/// Every connection whose thread is running. See the module docs.
pub(crate) struct Registry {
    inner: Mutex<Inner>,
    /// Its `connections` and `http_connections` gauges follow the counts here.
    metrics: Arc<Metrics>,
    /// Signalled whenever the last client ends.
    no_clients: Condvar,
}

struct Inner {
    next: u64,
    /// By connection number, which is also their age: oldest first.
    live: BTreeMap<ConnId, Entry>,
    clients: usize,
    http: usize,
}

struct Entry {
    kind: Kind,
    /// The socket, so that shutdown (and eviction) can wake the thread.
    socket: Option<Arc<TcpStream>>,
    /// Filled in right after the spawn; `None` for a moment before.
    handle: Option<JoinHandle<()>>,
    /// An HTTP connection waiting for its next request: it may be evicted.
    idle: bool,
    /// Evicted: its socket was shut down to make room.
    evicted: bool,
}

/// Removes a connection from the registry when its thread ends.
struct Registered<'a> {
    registry: &'a Registry,
    conn: ConnId,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.registry.remove(self.conn);
    }
}

impl Registry {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Registry {
        Registry {
            metrics,
            inner: Mutex::new(Inner {
                next: 1,
                live: BTreeMap::new(),
                clients: 0,
                http: 0,
            }),
            no_clients: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clients open: WebSocket connections (handshakes included) and SSE streams.
    pub(crate) fn clients(&self) -> usize {
        self.lock().clients
    }

    /// HTTP connections open (SSE streams and evicted connections whose threads
    /// are still ending not included).
    pub(crate) fn http(&self) -> usize {
        self.lock().http
    }

    /// Registers a connection of `kind` and starts its thread (`<prefix>-<n>`,
    /// with `stack_size`) running `body`, which gets the connection's number. The
    /// thread removes its own entry when it ends, however it ends.
    ///
    /// # Errors
    ///
    /// The OS refused the thread; nothing stays registered.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        prefix: &str,
        kind: Kind,
        socket: Option<Arc<TcpStream>>,
        stack_size: usize,
        body: impl FnOnce(ConnId) + Send + 'static,
    ) -> io::Result<()> {
        let conn = self.add(kind, socket);
        let registry = self.clone();
        let spawned = thread::Builder::new()
            .name(format!("{prefix}-{}", conn.0))
            .stack_size(stack_size)
            .spawn(move || {
                // Deregister on every way out, a panic included, so a bug in one
                // connection cannot leak a registry entry or block shutdown.
                let _registered = Registered {
                    registry: &registry,
                    conn,
                };
                body(conn);
            });
        match spawned {
            Ok(handle) => {
                if let Some(entry) = self.lock().live.get_mut(&conn) {
                    entry.handle = Some(handle);
                }
                // Else the thread already finished and removed itself: dropping the
                // handle just detaches a thread that has ended.
                Ok(())
            }
            Err(e) => {
                self.remove(conn);
                Err(e)
            }
        }
    }

    fn add(&self, kind: Kind, socket: Option<Arc<TcpStream>>) -> ConnId {
        let mut inner = self.lock();
        let conn = ConnId(inner.next);
        inner.next += 1;
        let entry = Entry {
            kind,
            socket,
            handle: None,
            // A new HTTP connection waits for its first request.
            idle: kind == Kind::Http,
            evicted: false,
        };
        inner.live.insert(conn, entry);
        if kind.is_client() {
            inner.clients += 1;
        } else {
            inner.http += 1;
        }
        self.count(&inner);
        conn
    }

    fn remove(&self, conn: ConnId) {
        let mut inner = self.lock();
        let Some(entry) = inner.live.remove(&conn) else {
            return;
        };
        if entry.kind.is_client() {
            inner.clients -= 1;
            if inner.clients == 0 {
                self.no_clients.notify_all();
            }
        } else if !entry.evicted {
            inner.http -= 1;
        }
        self.count(&inner);
    }

    fn count(&self, inner: &Inner) {
        let gauge = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let metrics = &self.metrics;
        metrics
            .connections
            .store(gauge(inner.clients), Ordering::Relaxed);
        metrics
            .http_connections
            .store(gauge(inner.http), Ordering::Relaxed);
    }

    /// Marks an HTTP connection as waiting for a request (`idle`), which makes it
    /// the first to go when the HTTP connections are all taken, or as busy.
    /// Returns `false` if the connection has been evicted.
    pub(crate) fn set_idle(&self, conn: ConnId, idle: bool) -> bool {
        let mut inner = self.lock();
        match inner.live.get_mut(&conn) {
            Some(entry) => {
                entry.idle = idle;
                !entry.evicted
            }
            None => false,
        }
    }

    /// Closes the oldest idle HTTP connection, to make room for a new one. Idle: its
    /// thread waits for a request, and none has arrived (no unread bytes). Returns
    /// `false` if none is idle.
    pub(crate) fn evict_idle_http(&self) -> bool {
        let mut inner = self.lock();
        // Oldest first; the first one checked is nearly always the one taken, so
        // this costs one `peek` per eviction, not one per connection.
        let oldest = inner
            .live
            .iter_mut()
            .filter(|(_, e)| e.kind == Kind::Http && e.idle && !e.evicted)
            .find(|(_, e)| !e.socket.as_deref().is_some_and(has_unread_input));
        let Some((_, entry)) = oldest else {
            return false;
        };
        entry.evicted = true;
        if let Some(socket) = &entry.socket {
            // Wakes its thread from the read it is waiting in.
            let _ = socket.shutdown(Shutdown::Both);
        }
        // No longer counted against the limit: its thread is on its way out.
        inner.http -= 1;
        self.count(&inner);
        true
    }

    /// Turns an HTTP connection into a client (an SSE stream), if fewer than
    /// `max_clients` clients are open. Returns whether it did.
    pub(crate) fn become_client(&self, conn: ConnId, max_clients: usize) -> bool {
        let mut inner = self.lock();
        if inner.clients >= max_clients {
            return false;
        }
        let Some(entry) = inner.live.get_mut(&conn) else {
            return false;
        };
        if entry.kind != Kind::Http {
            return false;
        }
        entry.kind = Kind::EventStream;
        inner.http -= 1;
        inner.clients += 1;
        self.count(&inner);
        true
    }

    /// Waits until no client is open, or `timeout` passes. Returns whether none is.
    pub(crate) fn wait_no_clients(&self, timeout: Duration) -> bool {
        let inner = self.lock();
        let (inner, _) = self
            .no_clients
            .wait_timeout_while(inner, timeout, |inner| inner.clients > 0)
            .unwrap_or_else(|p| p.into_inner());
        inner.clients == 0
    }

    /// Shuts down every live socket (waking its thread) and joins every thread.
    pub(crate) fn abort_all_and_join(&self) {
        let handles: Vec<JoinHandle<()>> = {
            let mut inner = self.lock();
            for socket in inner.live.values().filter_map(|e| e.socket.as_ref()) {
                let _ = socket.shutdown(Shutdown::Both);
            }
            inner
                .live
                .values_mut()
                .filter_map(|e| e.handle.take())
                .collect()
        };
        for handle in handles {
            // A thread that panicked has been logged by the panic hook already.
            let _ = handle.join();
        }
    }
}

/// Whether the client has sent bytes its thread has not read yet: a request that
/// has arrived, even if the thread has not woken up for it.
#[cfg(unix)]
fn has_unread_input(socket: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    matches!(
        socket2::SockRef::from(socket).recv_with_flags(&mut byte, flags),
        Ok(n) if n > 0
    )
}

/// Without a non-blocking peek, only the thread's own mark counts.
#[cfg(not(unix))]
fn has_unread_input(_socket: &TcpStream) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Instant;

    /// How long a test waits for something that should happen at once.
    const WAIT: Duration = Duration::from_secs(5);

    /// The client stack size the server uses.
    const STACK: usize = 128 << 10;

    fn registry() -> (Arc<Registry>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::default());
        (Arc::new(Registry::new(metrics.clone())), metrics)
    }

    /// Starts a registered thread that answers every ping with a pong until its
    /// channel closes: proof that it is still running.
    fn steady(registry: &Arc<Registry>) -> (mpsc::Sender<()>, mpsc::Receiver<()>) {
        let (ping_tx, ping_rx) = mpsc::channel::<()>();
        let (pong_tx, pong_rx) = mpsc::channel();
        registry
            .spawn("steady", Kind::WebSocket, None, STACK, move |_| {
                for () in ping_rx {
                    pong_tx.send(()).unwrap();
                }
            })
            .unwrap();
        (ping_tx, pong_rx)
    }

    /// Waits (bounded) for the registry to hold `n` clients. A thread removes its
    /// entry as the last step of its unwinding, after anything it could signal
    /// from, so this has to poll.
    fn wait_clients(registry: &Registry, n: usize) {
        let deadline = Instant::now() + WAIT;
        while registry.clients() != n {
            assert!(
                Instant::now() < deadline,
                "registry holds {} clients, expected {n}",
                registry.clients()
            );
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// A loopback connection: (server side, client side).
    fn connection() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        (server_side, client)
    }

    /// A connection thread that panics, on the real client stack size, still
    /// removes its entry: the registry empties and `wait_no_clients` returns.
    #[test]
    fn panicking_thread_leaves_the_registry() {
        let (registry, metrics) = registry();
        registry
            .spawn("ws", Kind::WebSocket, None, STACK, |_| {
                panic!("a bug in one connection (expected by this test)")
            })
            .unwrap();
        assert!(
            registry.wait_no_clients(WAIT),
            "the panicked thread stayed registered"
        );
        assert_eq!(registry.clients(), 0);
        assert_eq!(metrics.connections.load(Ordering::Relaxed), 0);
    }

    /// A panic in one connection thread neither stops the others nor keeps
    /// shutdown waiting: the survivor still answers, and once it ends the
    /// registry is empty.
    #[test]
    fn other_threads_keep_running_after_a_panic() {
        let (registry, metrics) = registry();
        let (ping_tx, pong_rx) = steady(&registry);
        let (panicking_tx, panicking_rx) = mpsc::channel::<()>();
        registry
            .spawn("ws", Kind::WebSocket, None, STACK, move |_| {
                // Panic only once the steady thread is known to be registered too.
                panicking_rx.recv().unwrap();
                panic!("a bug in one connection (expected by this test)");
            })
            .unwrap();
        assert_eq!(registry.clients(), 2);
        panicking_tx.send(()).unwrap();
        wait_clients(&registry, 1);
        assert_eq!(metrics.connections.load(Ordering::Relaxed), 1);

        // The survivor still runs, and keeps shutdown waiting for it.
        ping_tx.send(()).unwrap();
        pong_rx
            .recv_timeout(WAIT)
            .expect("the steady thread answers");
        assert!(!registry.wait_no_clients(Duration::from_millis(20)));

        // Once it ends, the registry is empty and shutdown's joins return.
        drop(ping_tx);
        assert!(
            registry.wait_no_clients(WAIT),
            "the steady thread stayed registered"
        );
        assert_eq!(metrics.connections.load(Ordering::Relaxed), 0);
        registry.abort_all_and_join();
    }

    /// `abort_all_and_join` wakes a thread blocked reading its socket, and returns
    /// even though that thread then panics.
    #[test]
    fn abort_all_and_join_survives_a_panicked_thread() {
        use std::io::Read;
        let (registry, _) = registry();
        let (server_side, client) = connection();
        // Bounds the test if the shutdown never comes: the read then times out.
        server_side.set_read_timeout(Some(WAIT)).unwrap();
        let socket = Arc::new(server_side);
        let (read_tx, read_rx) = mpsc::channel();
        let reader = socket.clone();
        registry
            .spawn("ws", Kind::WebSocket, Some(socket), STACK, move |_| {
                let read = (&*reader).read(&mut [0u8; 16]).map_err(|e| e.kind());
                read_tx.send(read).unwrap();
                panic!("woken from read (expected by this test)");
            })
            .unwrap();
        registry.abort_all_and_join();
        // Woken by the shutdown (end of stream), not by the read timeout.
        assert_eq!(read_rx.try_recv(), Ok(Ok(0)));
        assert!(registry.wait_no_clients(Duration::ZERO));
        drop(client);
    }

    /// Eviction picks the HTTP connection idle the longest, never a busy one or a
    /// client, and wakes its thread.
    #[test]
    fn eviction_takes_the_oldest_idle_http_connection() {
        use std::io::Read;
        let (registry, metrics) = registry();
        let mut clients = Vec::new();
        let mut reads = Vec::new();
        let mut conns = Vec::new();
        for kind in [Kind::WebSocket, Kind::Http, Kind::Http, Kind::Http] {
            let (server_side, client) = connection();
            server_side.set_read_timeout(Some(WAIT)).unwrap();
            clients.push(client);
            let socket = Arc::new(server_side);
            let reader = socket.clone();
            let (read_tx, read_rx) = mpsc::channel();
            let (conn_tx, conn_rx) = mpsc::channel();
            registry
                .spawn("t", kind, Some(socket), STACK, move |conn| {
                    conn_tx.send(conn).unwrap();
                    let read = (&*reader).read(&mut [0u8; 16]).map_err(|e| e.kind());
                    read_tx.send(read).unwrap();
                })
                .unwrap();
            conns.push(conn_rx.recv_timeout(WAIT).unwrap());
            reads.push(read_rx);
        }
        assert_eq!(metrics.http_connections.load(Ordering::Relaxed), 3);
        // The first HTTP connection is busy; the second and third are idle.
        assert!(registry.set_idle(conns[1], false));
        assert!(registry.set_idle(conns[2], true));
        assert!(registry.set_idle(conns[3], true));
        assert!(registry.evict_idle_http());
        assert_eq!(
            reads[2].recv_timeout(WAIT),
            Ok(Ok(0)),
            "the oldest idle one"
        );
        assert!(
            !registry.set_idle(conns[2], false),
            "it knows it was evicted"
        );
        assert!(reads[1].try_recv().is_err(), "the busy one stays");
        assert!(registry.evict_idle_http());
        assert_eq!(reads[3].recv_timeout(WAIT), Ok(Ok(0)));
        assert!(!registry.evict_idle_http(), "nothing idle is left");
        assert!(reads[0].try_recv().is_err(), "a client is never evicted");
        registry.abort_all_and_join();
    }

    /// An HTTP connection that becomes an SSE stream moves from the HTTP count to
    /// the client count, only while there is room.
    #[test]
    fn event_streams_count_as_clients() {
        let (registry, _) = registry();
        let (conn_tx, conn_rx) = mpsc::channel();
        // Both threads wait until `done_tx` is dropped.
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let hold = Arc::new(Mutex::new(done_rx));
        let mut conns = Vec::new();
        for _ in 0..2 {
            let (conn_tx, hold) = (conn_tx.clone(), hold.clone());
            registry
                .spawn("http", Kind::Http, None, STACK, move |conn| {
                    conn_tx.send(conn).unwrap();
                    let _ = hold.lock().unwrap().recv();
                })
                .unwrap();
            conns.push(conn_rx.recv_timeout(WAIT).unwrap());
        }
        assert_eq!((registry.clients(), registry.http()), (0, 2));
        assert!(registry.become_client(conns[0], 1));
        assert_eq!((registry.clients(), registry.http()), (1, 1));
        assert!(!registry.become_client(conns[1], 1), "no room for a second");
        assert_eq!((registry.clients(), registry.http()), (1, 1));
        drop(done_tx);
        registry.abort_all_and_join();
        assert_eq!((registry.clients(), registry.http()), (0, 0));
    }
}
