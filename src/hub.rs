//! The hub: one thread (`hub`) that owns the set of connected clients and fans every
//! broadcast out to them.
//!
//! Two crossbeam channels lead to the hub, and it sleeps in `select!` on both:
//!
//! - `events_tx` / `events_rx` carries [`HubEvent`]s: client threads send `Join`
//!   and `Leave`, [`crate::Server::shutdown`] sends `Shutdown`. It is unbounded on
//!   purpose: each connection sends at most one `Join` and one `Leave`, so it is
//!   bounded by the number of connections anyway; and when the hub stops, its
//!   queued events are dropped, which wakes any client thread still waiting for
//!   its id (a bounded crossbeam channel would keep them, and the thread waiting).
//! - `frames_tx` / `frames_rx` carries encoded frames from the ticker and every
//!   [`crate::Publisher`]. It is bounded ([`FRAME_QUEUE`]), so code that publishes
//!   in a tight loop is slowed to the hub's pace instead of filling memory.
//!
//! Because one thread owns the client map, there is no lock around it and no
//! question of who saw which client when.
//!
//! A broadcast arrives already encoded as one WebSocket frame; the hub writes the
//! same bytes into every client's [`Outbox`], which never blocks. A client whose
//! backlog overflows is cut off there and then, and announced as `too_slow`.
//!
//! Presence notices are gathered for [`Config::presence_window`](crate::Config)
//! after the first join or leave, then sent as one `join` notice and one `leave`
//! notice per reason. So when 15,000 clients vanish at once the hub sends a few
//! notices per window, not 15,000 × 15,000 frames.
//!
//! Every `--heartbeat` interval the hub also pings every client (one encoded ping
//! frame for all) and cuts off, with reason `timeout`, each client that has sent
//! nothing since the previous ping. Browsers answer pings by themselves.
//!
//! The hub sleeps in `select!` until an event, a frame, or the next deadline
//! (presence notices due, heartbeat due): no polling.
//!
//! The thread ends on `Shutdown` (or when every sender is gone), after sending close
//! 1001 "going away" to every client.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use tungstenite::protocol::frame::coding::CloseCode;

use crate::metrics::Metrics;
use crate::outbox::{clock_ms, Delivery, Outbox};
use crate::protocol::{self, ClientId, LeaveReason};

/// A message to the hub thread.
pub(crate) enum HubEvent {
    /// A client finished its handshake. The hub assigns its id, sends it the welcome
    /// frame, and answers on `id_tx` (a channel of capacity 1, so this never blocks).
    Join {
        outbox: Arc<Outbox>,
        peer: SocketAddr,
        id_tx: Sender<ClientId>,
    },
    /// A client's thread is ending. Ignored if the hub already removed the client
    /// (it cut it off, say).
    Leave { id: ClientId, reason: LeaveReason },
    /// Close every client with 1001 and end the thread.
    Shutdown,
}

/// How many published frames may wait for the hub before publishers block.
pub(crate) const FRAME_QUEUE: usize = 1024;

/// One connected client, as the hub sees it.
struct Client {
    outbox: Arc<Outbox>,
    /// For log lines only.
    peer: SocketAddr,
}

/// The hub thread's state.
pub(crate) struct Hub {
    /// Connected clients by id. A `BTreeMap` keeps them in join order, which makes
    /// "everyone who joined before the newest client" a range.
    clients: BTreeMap<ClientId, Client>,
    next_id: ClientId,
    presence: PendingPresence,
    presence_window: Duration,
    heartbeat: Option<Heartbeat>,
    metrics: Arc<Metrics>,
}

/// When to ping next, and when the last ping went out.
struct Heartbeat {
    every: Duration,
    next: Instant,
    /// [`clock_ms`] time of the previous ping: clients silent since then are dead.
    last_ping_ms: Option<u64>,
}

/// Joins and leaves seen since the last notice.
#[derive(Default)]
struct PendingPresence {
    joined: Vec<ClientId>,
    left: Vec<(ClientId, LeaveReason)>,
    /// When to send the notices; `None` while nothing is pending.
    due: Option<Instant>,
}

impl Hub {
    pub(crate) fn new(
        presence_window: Duration,
        heartbeat: Option<Duration>,
        metrics: Arc<Metrics>,
    ) -> Hub {
        Hub {
            clients: BTreeMap::new(),
            next_id: 1,
            presence: PendingPresence::default(),
            presence_window,
            heartbeat: heartbeat.map(|every| Heartbeat {
                every,
                next: Instant::now() + every,
                last_ping_ms: None,
            }),
            metrics,
        }
    }

    /// The hub thread's body: handle events and frames until shutdown.
    pub(crate) fn run(mut self, events_rx: Receiver<HubEvent>, frames_rx: Receiver<Vec<u8>>) {
        // Sleep until an event or a frame arrives, or until the next deadline. A
        // disconnected channel means the server is gone.
        let forever = Duration::from_secs(365 * 24 * 3600);
        loop {
            let next_deadline = [self.presence.due, self.heartbeat.as_ref().map(|h| h.next)]
                .into_iter()
                .flatten()
                .min();
            let wait =
                next_deadline.map_or(forever, |d| d.saturating_duration_since(Instant::now()));
            select! {
                recv(events_rx) -> event => match event {
                    Ok(HubEvent::Join { outbox, peer, id_tx }) => self.join(outbox, peer, &id_tx),
                    Ok(HubEvent::Leave { id, reason }) => self.remove(id, reason),
                    Ok(HubEvent::Shutdown) | Err(_) => break,
                },
                recv(frames_rx) -> frame => match frame {
                    Ok(frame) => self.broadcast(&frame),
                    Err(_) => break,
                },
                default(wait) => {}
            }
            if self.presence.due.is_some_and(|due| Instant::now() >= due) {
                self.send_presence();
            }
            if self
                .heartbeat
                .as_ref()
                .is_some_and(|h| Instant::now() >= h.next)
            {
                self.heartbeat();
            }
        }
        self.close_all();
    }

    fn join(&mut self, outbox: Arc<Outbox>, peer: SocketAddr, id_tx: &Sender<ClientId>) {
        let id = self.next_id;
        self.next_id += 1;
        // The welcome is the client's first frame: nothing else can reach its outbox
        // until it is in `clients`, and only this thread puts it there.
        let welcome = protocol::text_frame(protocol::welcome(id, self.clients.len() + 1));
        if self.send(&outbox, &welcome) != Delivery::Accepted {
            // Gone before it was welcomed: never announce it.
            return;
        }
        log::debug!("client {id} ({peer}) joined");
        self.clients.insert(id, Client { outbox, peer });
        self.metrics.joined.fetch_add(1, Ordering::Relaxed);
        self.count_clients();
        self.presence.joined.push(id);
        self.schedule_presence();
        // The client's thread is waiting for this; if it has gone, its Leave follows.
        let _ = id_tx.send(id);
    }

    fn remove(&mut self, id: ClientId, reason: LeaveReason) {
        if let Some(client) = self.clients.remove(&id) {
            log::debug!("client {id} ({}) left: {}", client.peer, reason.as_str());
            self.metrics.left(reason);
            self.count_clients();
            self.presence.left.push((id, reason));
            self.schedule_presence();
        }
    }

    /// Writes one frame to one client, counting it.
    fn send(&self, outbox: &Outbox, frame: &[u8]) -> Delivery {
        let delivery = outbox.write(frame);
        if delivery == Delivery::Accepted {
            self.metrics.frames_sent.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .bytes_sent
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
        }
        delivery
    }

    fn count_clients(&self) {
        let count = u64::try_from(self.clients.len()).unwrap_or(u64::MAX);
        self.metrics.clients.store(count, Ordering::Relaxed);
    }

    /// Cuts off clients silent since the previous ping, then pings everyone.
    fn heartbeat(&mut self) {
        let Some(heartbeat) = self.heartbeat.as_mut() else {
            return;
        };
        let now = Instant::now();
        heartbeat.next = now + heartbeat.every;
        let previous_ping = heartbeat.last_ping_ms.replace(clock_ms());
        if let Some(previous_ping) = previous_ping {
            let silent: Vec<ClientId> = self
                .clients
                .iter()
                .filter(|(_, c)| c.outbox.last_heard_ms() < previous_ping)
                .map(|(&id, _)| id)
                .collect();
            for id in silent {
                if let Some(client) = self.clients.get(&id) {
                    log::debug!("client {id} ({}) did not answer a ping", client.peer);
                    client.outbox.abort(LeaveReason::Timeout);
                }
                self.remove(id, LeaveReason::Timeout);
            }
        }
        self.broadcast(&protocol::ping_frame());
    }

    fn schedule_presence(&mut self) {
        if self.presence.due.is_none() {
            self.presence.due = Some(Instant::now() + self.presence_window);
        }
    }

    /// Writes one frame to every client; cuts off the ones that cannot keep up.
    fn broadcast(&mut self, frame: &[u8]) {
        let mut gone = Vec::new();
        for (&id, client) in &self.clients {
            match self.send(&client.outbox, frame) {
                Delivery::Accepted => {}
                Delivery::CutOff => gone.push((id, LeaveReason::TooSlow)),
                // Closed by its own thread (a close frame went out) or failed: the
                // outbox knows why.
                Delivery::Failed | Delivery::Closed => {
                    let reason = client.outbox.closed_reason();
                    gone.push((id, reason.unwrap_or(LeaveReason::Dropped)));
                }
            }
        }
        for (id, reason) in gone {
            if reason == LeaveReason::TooSlow {
                self.metrics.backlog_cutoffs.fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "client {id} cut off: its backlog passed --max-backlog (reading too slowly)"
                );
            }
            self.remove(id, reason);
        }
    }

    /// Sends the gathered join and leave notices.
    fn send_presence(&mut self) {
        let presence = std::mem::take(&mut self.presence);
        let count = self.clients.len();
        if let Some(&newest) = presence.joined.last() {
            // Everyone who can learn something from the notice hears it: all but the
            // newest client, which learned the count from its welcome. A client that
            // joined earlier in the same window finds its own id in the list too.
            let frame = protocol::text_frame(protocol::join(&presence.joined, count));
            let mut gone = Vec::new();
            for (&id, client) in self.clients.range(..newest) {
                if self.send(&client.outbox, &frame) == Delivery::CutOff {
                    gone.push(id);
                }
            }
            for id in gone {
                self.metrics.backlog_cutoffs.fetch_add(1, Ordering::Relaxed);
                self.remove(id, LeaveReason::TooSlow);
            }
        }
        for reason in LeaveReason::ALL {
            let ids: Vec<ClientId> = presence
                .left
                .iter()
                .filter(|(_, r)| *r == reason)
                .map(|(id, _)| *id)
                .collect();
            if !ids.is_empty() {
                let count = self.clients.len();
                self.broadcast(&protocol::text_frame(protocol::leave(&ids, count, reason)));
            }
        }
    }

    /// Shutdown: close 1001 to everyone. Each client's thread sees the peer's close
    /// reply (or end of stream) and ends.
    fn close_all(&mut self) {
        let frame = protocol::close_frame(CloseCode::Away, "server shutting down");
        for client in self.clients.values() {
            client.outbox.close(LeaveReason::Shutdown, &frame);
        }
        log::debug!("hub closed {} clients and stopped", self.clients.len());
        self.clients.clear();
    }
}
