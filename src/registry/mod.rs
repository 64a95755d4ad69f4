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
    /// The map and its counts, behind one short-held lock.
    inner: Mutex<Inner>,
    /// Its `connections` and `http_connections` gauges follow the counts here.
    metrics: Arc<Metrics>,
    /// Signalled whenever the last client ends.
    no_clients: Condvar,
}

/// The registry's state, guarded by its mutex.
struct Inner {
    /// The number the next connection gets.
    next: u64,
    /// By connection number, which is also their age: oldest first.
    live: BTreeMap<ConnId, Entry>,
    /// Live client connections (WebSocket and SSE), for `--max-clients`.
    clients: usize,
    /// Live HTTP connections not evicted, for `--max-http-connections`.
    http: usize,
}

/// One live connection thread.
struct Entry {
    /// Which limit it counts against.
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
    /// The registry to leave.
    registry: &'a Registry,
    /// The entry to remove.
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
mod tests;
