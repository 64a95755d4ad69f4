//! [`Server`]: starts every thread, reports what it bound, and stops it all again.
//!
//! [`Server::start`] runs on the caller's thread. It binds both listeners first (so
//! a taken port is an error before anything runs), then starts the `hub`, `ticker`,
//! `ws-listener` and `http-*` threads and returns. Client threads are started later,
//! by the listener, one per connection.
//!
//! [`Server::shutdown`] (also run on drop) stops them in an order that loses nothing:
//! stop accepting, stop ticking, let the hub send close 1001 to every client, give
//! clients a moment to answer, hang up on the rest, join every thread.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded, Sender};

use crate::client_event::{self, ClientEvents};
use crate::flash_policy::{self, FlashPolicyServer};
use crate::hub::{Broadcast, HistoryLimits, Hub, HubEvent, FRAME_QUEUE};
use crate::limits::{self, Capacity, Machine};
use crate::listener::{self, Acceptor, Port, REFUSAL_SLACK};
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::registry::Registry;
use crate::shared::Shared;
use crate::shutdown::{connectable, spawn_named, StopFlag};

use crate::{ticker, Config, Error};

/// How long shutdown waits for clients to answer the close frame before hanging up.
const CLOSE_GRACE: Duration = Duration::from_millis(1000);

/// A running tickcast server. Dropping it shuts it down.
pub struct Server {
    /// The WebSocket address bound (the real port if 0 was asked).
    ws_addr: SocketAddr,
    /// The HTTP address bound, if there is an HTTP port.
    http_addr: Option<SocketAddr>,
    /// The WebSocket accept loop; taken (stopped) first at shutdown.
    ws_listener: Option<Acceptor>,
    /// The HTTP accept loop; stopped last, so `/healthz` answers during shutdown.
    http_listener: Option<Acceptor>,
    /// The Flash policy server, with `--flash-policy-addr`.
    flash: Option<FlashPolicyServer>,
    /// What every connection thread shares: the registry, the stop flag, the counters.
    shared: Arc<Shared>,
    /// The program's end of the client event queue, if it asked for one.
    client_events: Option<ClientEvents>,
    /// Dropping this wakes the ticker, which then ends.
    stop_ticker_tx: Option<Sender<()>>,
    /// Keeps the hub's frames channel open until the hub has ended. On one node
    /// the publisher holds it too, but in a cluster publishers append to Redis,
    /// and once the cluster's threads and the ticker are gone, the hub would see
    /// the channel close and end before it is told to shut down.
    _frames_tx: Sender<Broadcast>,
    /// The cluster's threads, with `--redis`; stopped before the hub.
    #[cfg(feature = "redis")]
    cluster: Option<crate::cluster::Cluster>,
    /// `hub` and `ticker`, in the order they are joined at shutdown.
    threads: Vec<(&'static str, JoinHandle<()>)>,
}

impl Server {
    /// Binds the listeners and starts every thread.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] if `config` does not validate, [`Error::Bind`] if a
    /// listener cannot bind, [`Error::Spawn`] if a thread cannot start.
    pub fn start(config: Config) -> Result<Server, Error> {
        config.validate()?;
        let bind = |what: &'static str, flag: &'static str, addr: SocketAddr| {
            let bind_error = |source| Error::Bind {
                what,
                flag,
                addr,
                source,
            };
            let listener = listener::bind(addr).map_err(bind_error)?;
            let bound = listener.local_addr().map_err(bind_error)?;
            Ok::<_, Error>((listener, bound))
        };
        // Both ports are tried before either fails, so that a user learns of every
        // port to change at once, not one per attempt.
        let ws = bind("WebSocket", "--ws-addr", config.ws_addr);
        let http = config
            .http_addr
            .map(|addr| bind("HTTP", "--http-addr", addr))
            .transpose();
        let (ws_listener, ws_addr, http_listener) = match (ws, http) {
            (Ok((listener, addr)), Ok(http)) => (listener, addr, http),
            (Err(ws), Err(http)) => {
                log::error!("{http}");
                return Err(ws);
            }
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
        };
        let http_addr = http_listener.as_ref().map(|(_, addr)| *addr);
        let max_clients = max_clients(&config);
        let metrics = Arc::new(Metrics::default());
        let flash_policy: Option<Arc<[u8]>> = config.flash_policy_addr.map(|_| {
            let mut rules: Vec<(String, String)> = config
                .flash_policy_allow
                .iter()
                .filter_map(|rule| flash_policy::parse_allow(rule).ok())
                .collect();
            if rules.is_empty() {
                rules.push(("*".into(), ws_addr.port().to_string()));
            }
            flash_policy::policy_document(&rules).into()
        });

        let (events_tx, events_rx) = unbounded();
        let (client_events_tx, client_events) = match config.client_events {
            Some(capacity) => {
                let (tx, rx) = client_event::channel(capacity);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let (frames_tx, frames_rx) = bounded(FRAME_QUEUE);
        // In a cluster, ids come from Redis, and the history starts empty until
        // the node has read the stream; on one node, from the clock.
        #[cfg(feature = "redis")]
        let node = match &config.redis {
            Some(url) => Some(crate::cluster::Node::join(
                url,
                &config.redis_key,
                config.history,
                metrics.clone(),
            )?),
            None => None,
        };
        #[cfg(not(feature = "redis"))]
        let node: Option<std::convert::Infallible> = None;
        let first_id = match &node {
            Some(_) => 1,
            None => crate::publisher::first_id_now(),
        };
        #[cfg(feature = "redis")]
        let (publisher, cluster_state, link) = match &node {
            Some(node) => (
                Publisher::to_log(node.log()),
                Some(node.state()),
                Some(node.link()),
            ),
            None => (Publisher::new(frames_tx.clone(), first_id), None, None),
        };
        #[cfg(not(feature = "redis"))]
        let (publisher, cluster_state, link) =
            (Publisher::new(frames_tx.clone(), first_id), None, None);
        let ws_config = tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(config.read_buffer_size)
            // Write every frame into the outbox at once; the outbox does the buffering.
            .write_buffer_size(0)
            .max_message_size(Some(config.max_message_size))
            .max_frame_size(Some(config.max_message_size));
        let shared = Arc::new(Shared {
            page_url: http_addr.map(|addr| url("http", addr, "/")),
            flash_policy: flash_policy.clone(),
            ws_port: ws_addr.port(),
            stopping: StopFlag::default(),
            config,
            max_clients,
            ws_config,
            events_tx,
            client_events_tx: client_events_tx.clone(),
            registry: Arc::new(Registry::new(metrics.clone())),
            publisher,
            metrics: metrics.clone(),
            cluster: cluster_state,
        });

        let mut server = Server {
            ws_addr,
            http_addr,
            ws_listener: None,
            http_listener: None,
            flash: None,
            shared: shared.clone(),
            client_events,
            stop_ticker_tx: None,
            _frames_tx: frames_tx.clone(),
            #[cfg(feature = "redis")]
            cluster: None,
            threads: Vec::new(),
        };
        // From here on an error drops `server`, which stops whatever did start.
        let hub = Hub::new(
            shared.config.presence_window,
            shared.config.heartbeat,
            HistoryLimits {
                events: shared.config.history,
                bytes: shared.config.history_byte_cap(),
                newest: first_id - 1,
            },
            client_events_tx,
            link,
            metrics.clone(),
        );
        server.spawn("hub", move || hub.run(events_rx, frames_rx))?;
        #[cfg(feature = "redis")]
        if let Some(node) = node {
            server.cluster = Some(node.start(frames_tx.clone(), shared.config.history)?);
        }
        if let Some(interval) = shared.config.interval {
            let (stop_tx, stop_rx) = bounded(0);
            server.stop_ticker_tx = Some(stop_tx);
            let metrics = metrics.clone();
            server.spawn("ticker", move || {
                ticker::run(interval, frames_tx, stop_rx, metrics)
            })?;
        }
        if let (Some(addr), Some(document)) = (shared.config.flash_policy_addr, &flash_policy) {
            server.flash = Some(FlashPolicyServer::start(addr, document.to_vec())?);
        }
        let spawn_error = |thread: &str| {
            let thread = thread.to_string();
            move |source| Error::Spawn { thread, source }
        };
        if let Some((listener, _)) = http_listener {
            let acceptor = Acceptor::start("http-listener", listener, Port::Http, shared.clone())
                .map_err(spawn_error("http-listener"))?;
            server.http_listener = Some(acceptor);
        }
        let acceptor = Acceptor::start("ws-listener", ws_listener, Port::WebSocket, shared)
            .map_err(spawn_error("ws-listener"))?;
        server.ws_listener = Some(acceptor);

        if let Some(page) = server.page_url() {
            log::info!("page: {page}");
            let config = &server.shared.config;
            match (config.publish, &config.publish_token) {
                (false, _) => log::info!("publishing: off (--publish off)"),
                (true, Some(_)) => log::info!(
                    "publishing: POST {page}publish with Authorization: Bearer <the token>"
                ),
                (true, None) => log::info!(
                    "publishing: POST {page}publish, from this machine (loopback) only: \
                     set --publish-token to publish from elsewhere"
                ),
            }
        }
        log::info!("WebSocket: {}", server.ws_url());
        Ok(server)
    }

    fn spawn(
        &mut self,
        name: &'static str,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<(), Error> {
        let handle = spawn_named(name, body)?;
        self.threads.push((name, handle));
        Ok(())
    }

    /// The address WebSocket clients connect to, with the real port if 0 was asked.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// The address the page is served on, or `None` without an HTTP server.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The most clients the server takes at once: `--max-clients`, or what this
    /// machine can hold when it was not given (see [`Config::max_clients`]).
    pub fn max_clients(&self) -> usize {
        self.shared.max_clients
    }

    /// `ws://…/echo`, with a connectable host if the server listens on all interfaces.
    pub fn ws_url(&self) -> String {
        url("ws", self.ws_addr, "/echo")
    }

    /// `http://…/`, the page, or `None` without an HTTP server.
    pub fn page_url(&self) -> Option<String> {
        self.http_addr().map(|addr| url("http", addr, "/"))
    }

    /// The address the Flash policy server bound, if `flash_policy_addr` was set.
    pub fn flash_policy_addr(&self) -> Option<SocketAddr> {
        self.flash.as_ref().map(FlashPolicyServer::addr)
    }

    /// A handle for broadcasting your own text messages to every client.
    pub fn publisher(&self) -> Publisher {
        self.shared.publisher.clone()
    }

    /// How many client connections are open: WebSocket connections, counting
    /// those still in their handshake, and SSE streams. For the clients that can
    /// already receive a message, see [`Server::clients`].
    pub fn connections(&self) -> usize {
        self.shared.registry.clients()
    }

    /// How many clients are welcomed and not yet gone: every one of them receives
    /// what is published from now on.
    pub fn clients(&self) -> usize {
        usize::try_from(self.shared.metrics.clients.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// The queue of [`ClientEvent`](crate::ClientEvent)s (joins, messages, leaves)
    /// to read on a thread of your own, if [`Config::client_events`] asked for one;
    /// `None` otherwise. Every call gives a reader of the same queue.
    pub fn client_events(&self) -> Option<ClientEvents> {
        self.client_events.clone()
    }

    /// Closes every client with 1001 "going away" and joins every thread.
    ///
    /// Clients get up to a second to answer the close frame; the rest are hung up
    /// on. Returns when every thread the server started has ended.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if self.shared.stopping.raise() {
            return;
        }
        // 1. Stop accepting WebSocket clients. The HTTP port goes on answering, so
        // that /healthz can say 503 while the clients leave.
        // tour: stop-1-listener
        if let Some(listener) = self.ws_listener.take() {
            listener.stop();
        }
        // 2. Stop ticking.
        // tour: stop-2-ticker
        self.stop_ticker_tx = None;
        // 2b. In a cluster, stop publishing.
        #[cfg(feature = "redis")]
        if let Some(cluster) = &self.cluster {
            cluster.stop_publishing();
        }
        // 3. The hub sends close 1001 to every client, then ends.
        // tour: stop-3-hub
        if self.shared.events_tx.send(HubEvent::Shutdown).is_err() {
            log::error!("the hub had already stopped");
        }
        for (name, handle) in self.threads.drain(..) {
            if handle.join().is_err() {
                log::error!("thread {name} panicked");
            }
        }
        // 3b. Leave the cluster, once the hub has handed over its clients' leave:
        // the other nodes announce it, and stop counting this node at once.
        #[cfg(feature = "redis")]
        if let Some(mut cluster) = self.cluster.take() {
            cluster.stop();
        }
        // 4. Clients answer the close frame and their threads end; give them a
        // moment before hanging up on the rest.
        // tour: stop-4-grace
        if !self.shared.registry.wait_no_clients(CLOSE_GRACE) {
            let n = self.shared.registry.clients();
            log::debug!(
                "{n} client{} did not answer the close frame; hanging up",
                if n == 1 { "" } else { "s" }
            );
        }
        // 5. Stop the HTTP port, hang up on every connection left, join every thread.
        if let Some(listener) = self.http_listener.take() {
            listener.stop();
        }
        // tour: stop-5-abort
        self.shared.registry.abort_all_and_join();
        if let Some(flash) = self.flash.take() {
            flash.shutdown();
        }
        log::info!("shut down");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A URL for an address; an unspecified address (0.0.0.0, ::) becomes loopback so
/// the URL can be opened on this machine.
fn url(scheme: &str, addr: SocketAddr, path: &str) -> String {
    format!("{scheme}://{}{path}", connectable(addr))
}

/// `--max-clients`, or what this machine can hold; logged either way.
fn max_clients(config: &Config) -> usize {
    let others = config.max_http_connections + REFUSAL_SLACK;
    let capacity = Capacity::of(&Machine::read(), others);
    match config.max_clients {
        Some(n) => {
            log::info!(
                "max clients: {} (--max-clients)",
                limits::thousands(n as u64)
            );
            if n > capacity.max_clients {
                log::warn!(
                    "--max-clients {} is more than this process can hold ({}: {}); \
                     connections beyond it will fail (see README, \"Limits of one machine\")",
                    limits::thousands(n as u64),
                    limits::thousands(capacity.max_clients as u64),
                    capacity.reason
                );
            }
            n
        }
        None => {
            log::info!(
                "max clients: {} ({}); --max-clients changes it",
                limits::thousands(capacity.max_clients as u64),
                capacity.reason
            );
            capacity.max_clients
        }
    }
}
