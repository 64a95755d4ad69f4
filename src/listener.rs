//! The WebSocket accept loop (thread `ws-listener`) and the registry of live
//! connections.
//!
//! The listener blocks in `accept` on a plain `std::net::TcpListener`. For each new
//! TCP connection it records the socket in the [`Registry`] and spawns one thread
//! (`ws-<n>`, with a small stack) that runs [`crate::connection::serve`]. That thread
//! removes its own entry when it ends.
//!
//! The registry is what makes shutdown complete: [`crate::Server::shutdown`] waits
//! for it to empty, and if some client never answers the close frame, it shuts
//! those sockets down (waking their threads) and joins every thread still running.
//!
//! The loop ends when [`Shared::stopping`] is set; `shutdown` then makes one
//! connection to the listener to wake it from `accept`.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::hub::HubEvent;
use crate::metrics::{Metrics, Rejection};
use crate::outbox::Outbox;
use crate::Config;

/// What the listener and every connection thread share. Built once by the server.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// tungstenite's settings for every client, derived from `config` once.
    pub(crate) ws_config: tungstenite::protocol::WebSocketConfig,
    /// Joins, leaves and shutdown, to the hub.
    pub(crate) events_tx: Sender<HubEvent>,
    /// The page's URL, for the 400 answer to plain HTTP requests on this port.
    pub(crate) page_url: Option<String>,
    /// The Flash policy document, if `--flash-policy-addr` is set: the WebSocket
    /// port answers an in-band policy request with it too.
    pub(crate) flash_policy: Option<Arc<[u8]>>,
    pub(crate) registry: Arc<Registry>,
    /// Counters; its `stopping` flag is set by `shutdown`, and the accept loop
    /// checks it after every `accept`.
    pub(crate) metrics: Arc<Metrics>,
}

/// Beyond `max_clients`, this many more connections still get a thread, only to be
/// answered `503`. Past that, new connections are closed at once: an overload must
/// not turn into unbounded threads.
const REFUSAL_SLACK: usize = 64;

/// The accept loop; runs on the `ws-listener` thread.
pub(crate) fn run(listener: TcpListener, shared: Arc<Shared>) {
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = listener.accept();
        if shared.metrics.stopping.load(Ordering::SeqCst) {
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
        shared.metrics.accepted.fetch_add(1, Ordering::Relaxed);
        if shared.registry.len() >= shared.config.max_clients + REFUSAL_SLACK {
            shared.metrics.rejected(Rejection::OverCapacity);
            log::debug!("{peer}: closed at once, far over --max-clients");
            continue;
        }
        let _ = socket.set_nodelay(true);
        #[cfg(not(unix))]
        let _ = socket.set_write_timeout(Some(crate::outbox::FALLBACK_WRITE_TIMEOUT));
        let socket = Arc::new(socket);
        // Made here rather than on the client's thread: every outbox then comes from
        // this one thread's allocator, packed together, instead of from one of
        // glibc's per-thread malloc arenas. The hub touches every outbox on every
        // broadcast; packed, they share cache lines and pages.
        let outbox = Arc::new(Outbox::new(socket.clone(), shared.config.max_backlog));
        let thread_shared = shared.clone();
        let spawned =
            shared
                .registry
                .spawn("ws", Some(socket.clone()), &shared.config, move || {
                    crate::connection::serve(socket, outbox, peer, &thread_shared);
                });
        if let Err(e) = spawned {
            shared.metrics.rejected(Rejection::NoThread);
            log::warn!("{peer}: cannot start a thread for this client: {e}");
        }
    }
    log::debug!("listener stopped");
}

/// Removes a connection from the registry when its thread ends.
struct Registered<'a> {
    registry: &'a Registry,
    conn: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.registry.remove(self.conn);
    }
}

/// Every connection whose thread is running, by connection number.
pub(crate) struct Registry {
    inner: Mutex<RegistryInner>,
    /// Its `connections` gauge follows the registry's size.
    metrics: Arc<Metrics>,
    /// Signalled whenever the registry becomes empty.
    emptied: Condvar,
}

struct RegistryInner {
    next: u64,
    live: HashMap<u64, Entry>,
}

struct Entry {
    /// The socket, for WebSocket connections; SSE streams live inside tiny_http
    /// and are ended through the hub instead.
    socket: Option<Arc<TcpStream>>,
    /// Filled in right after the spawn; `None` for a moment before.
    handle: Option<JoinHandle<()>>,
}

impl Registry {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Registry {
        Registry {
            metrics,
            inner: Mutex::new(RegistryInner {
                next: 1,
                live: HashMap::new(),
            }),
            emptied: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RegistryInner> {
        // The map stays consistent even if a holder panicked; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many connections are live (in their handshake or joined).
    pub(crate) fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Registers a connection and starts its thread (`<prefix>-<n>`, with the
    /// client stack size) running `body`. The thread removes its own entry when
    /// it ends, however it ends.
    ///
    /// # Errors
    ///
    /// The OS refused the thread; nothing stays registered.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        prefix: &str,
        socket: Option<Arc<TcpStream>>,
        config: &Config,
        body: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        let conn = self.add(socket);
        let registry = self.clone();
        let spawned = thread::Builder::new()
            .name(format!("{prefix}-{conn}"))
            .stack_size(config.client_stack_size)
            .spawn(move || {
                // Deregister on every way out, a panic included, so a bug in one
                // connection cannot leak a registry entry or block shutdown.
                let _registered = Registered {
                    registry: &registry,
                    conn,
                };
                body();
            });
        match spawned {
            Ok(handle) => {
                self.set_handle(conn, handle);
                Ok(())
            }
            Err(e) => {
                self.remove(conn);
                Err(e)
            }
        }
    }

    fn add(&self, socket: Option<Arc<TcpStream>>) -> u64 {
        let mut inner = self.lock();
        let conn = inner.next;
        inner.next += 1;
        inner.live.insert(
            conn,
            Entry {
                socket,
                handle: None,
            },
        );
        self.count(inner.live.len());
        conn
    }

    fn count(&self, live: usize) {
        let live = u64::try_from(live).unwrap_or(u64::MAX);
        self.metrics.connections.store(live, Ordering::Relaxed);
    }

    fn set_handle(&self, conn: u64, handle: JoinHandle<()>) {
        // If the thread already finished and removed itself, dropping the handle
        // just detaches a thread that has ended.
        if let Some(entry) = self.lock().live.get_mut(&conn) {
            entry.handle = Some(handle);
        }
    }

    fn remove(&self, conn: u64) {
        let mut inner = self.lock();
        inner.live.remove(&conn);
        self.count(inner.live.len());
        if inner.live.is_empty() {
            self.emptied.notify_all();
        }
    }

    /// Waits until no connection is live, or `timeout` passes. Returns whether the
    /// registry is empty.
    pub(crate) fn wait_empty(&self, timeout: Duration) -> bool {
        let inner = self.lock();
        let (inner, _) = self
            .emptied
            .wait_timeout_while(inner, timeout, |inner| !inner.live.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        inner.live.is_empty()
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
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// How long a test waits for something that should happen at once.
    const WAIT: Duration = Duration::from_secs(5);

    /// Starts a registered thread that answers every ping with a pong until its
    /// channel closes: proof that it is still running.
    fn steady(registry: &Arc<Registry>) -> (mpsc::Sender<()>, mpsc::Receiver<()>) {
        let (ping_tx, ping_rx) = mpsc::channel::<()>();
        let (pong_tx, pong_rx) = mpsc::channel();
        registry
            .spawn("steady", None, &Config::default(), move || {
                for () in ping_rx {
                    pong_tx.send(()).unwrap();
                }
            })
            .unwrap();
        (ping_tx, pong_rx)
    }

    /// Waits (bounded) for the registry to hold `n` connections. A thread removes
    /// its entry as the last step of its unwinding, after anything it could
    /// signal from, so this has to poll.
    fn wait_len(registry: &Registry, n: usize) {
        let deadline = Instant::now() + WAIT;
        while registry.len() != n {
            assert!(
                Instant::now() < deadline,
                "registry holds {} connections, expected {n}",
                registry.len()
            );
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// A connection thread that panics, on the real client stack size, still
    /// removes its entry: the registry empties and `wait_empty` returns.
    #[test]
    fn panicking_thread_leaves_the_registry() {
        let metrics = Arc::new(Metrics::default());
        let registry = Arc::new(Registry::new(metrics.clone()));
        registry
            .spawn("ws", None, &Config::default(), || {
                panic!("a bug in one connection (expected by this test)")
            })
            .unwrap();
        assert!(
            registry.wait_empty(WAIT),
            "the panicked thread stayed registered"
        );
        assert_eq!(registry.len(), 0);
        assert_eq!(metrics.connections.load(Ordering::Relaxed), 0);
    }

    /// A panic in one connection thread neither stops the others nor keeps
    /// shutdown waiting: the survivor still answers, and once it ends the
    /// registry is empty.
    #[test]
    fn other_threads_keep_running_after_a_panic() {
        let metrics = Arc::new(Metrics::default());
        let registry = Arc::new(Registry::new(metrics.clone()));
        let (ping_tx, pong_rx) = steady(&registry);
        let (panicking_tx, panicking_rx) = mpsc::channel::<()>();
        registry
            .spawn("ws", None, &Config::default(), move || {
                // Panic only once the steady thread is known to be registered too.
                panicking_rx.recv().unwrap();
                panic!("a bug in one connection (expected by this test)");
            })
            .unwrap();
        assert_eq!(registry.len(), 2);
        panicking_tx.send(()).unwrap();
        wait_len(&registry, 1);
        assert_eq!(metrics.connections.load(Ordering::Relaxed), 1);

        // The survivor still runs, and keeps shutdown waiting for it.
        ping_tx.send(()).unwrap();
        pong_rx
            .recv_timeout(WAIT)
            .expect("the steady thread answers");
        assert!(!registry.wait_empty(Duration::from_millis(20)));

        // Once it ends, the registry is empty and shutdown's joins return.
        drop(ping_tx);
        assert!(
            registry.wait_empty(WAIT),
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
        let registry = Arc::new(Registry::new(Arc::new(Metrics::default())));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        // Bounds the test if the shutdown never comes: the read then times out.
        server_side.set_read_timeout(Some(WAIT)).unwrap();
        let socket = Arc::new(server_side);
        let (read_tx, read_rx) = mpsc::channel();
        let reader = socket.clone();
        registry
            .spawn("ws", Some(socket), &Config::default(), move || {
                let read = (&*reader).read(&mut [0u8; 16]).map_err(|e| e.kind());
                read_tx.send(read).unwrap();
                panic!("woken from read (expected by this test)");
            })
            .unwrap();
        registry.abort_all_and_join();
        // Woken by the shutdown (end of stream), not by the read timeout.
        assert_eq!(read_rx.try_recv(), Ok(Ok(0)));
        assert!(registry.wait_empty(Duration::ZERO));
        drop(client);
    }
}
