//! The hub: one thread (`hub`) that owns the set of connected clients and fans every
//! broadcast out to them.
//!
//! Two crossbeam channels lead to the hub, and it sleeps in `select!` on both
//! ([`Hub::run`], below):
//!
//! - `events_tx` / `events_rx` carries [`HubEvent`]s: client threads send `Join`
//!   and `Leave`, [`crate::Server::shutdown`] sends `Shutdown`. It is unbounded on
//!   purpose: each connection sends at most one `Join` and one `Leave`, so it is
//!   bounded by the number of connections anyway; and when the hub stops, its
//!   queued events are dropped, which wakes any client thread still waiting for
//!   its id (a bounded crossbeam channel would keep them, and the thread waiting).
//! - `frames_tx` / `frames_rx` carries [`Broadcast`]s from the ticker and every
//!   [`crate::Publisher`], each already encoded as one WebSocket frame. It is
//!   bounded ([`FRAME_QUEUE`]), so code that publishes in a tight loop is slowed to
//!   the hub's pace instead of filling memory.
//!
//! Because one thread owns the client map, there is no lock around it and no
//! question of who saw which client when. A client joins in one step: the hub
//! writes its `101` (or SSE response head) and its welcome together as it adds it,
//! so from the first byte the client sees, it receives every broadcast.
//!
//! Joins and leaves already queued are all handled before the next broadcast, so a
//! newcomer never waits behind a stream of them. Broadcasts that queued up while
//! the previous one went out (ticks faster than a fan-out, a publisher in a loop)
//! are joined into one buffer and written with one `send` per client, whole frames
//! in order, so a hub that falls behind catches up instead of lagging further.
//!
//! The hub sleeps until an event, a frame, or the next deadline (presence notices
//! due, heartbeat due): no polling. The thread ends on `Shutdown` (or when every
//! sender is gone): it writes the broadcasts already queued, then sends close 1001
//! "going away" to every WebSocket client and ends every SSE stream.
//!
//! The rest of the hub, each in a file of its own:
//!
//! - [`sink`]: how the hub reaches one client (a WebSocket outbox, an SSE queue);
//! - `presence`: gathering joins and leaves into a few notices;
//! - `heartbeat`: pings, and cutting off the clients that stopped answering;
//! - `fan_out`: sharing a large broadcast between cores (performance: skip on
//!   first reading);
//! - `timeline`: where each fan-out's time went, in the trace log (performance
//!   too).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use tungstenite::protocol::frame::coding::CloseCode;

use crate::client_event::{ClientEvent, ClientEventsTx};
use crate::delivery::Delivery;
use crate::metrics::{JoinFailure, Metrics, ResumeOutcome};
use crate::wire::message::{self, ClientId, LeaveReason};
use crate::wire::subscription::Topic;
use crate::wire::{frame, sse};
pub(crate) use event::{Broadcast, HubEvent, Joining, Publication, FRAME_QUEUE};
use fan_out::{fan_out, FanOut};
use heartbeat::{clock_ms, Heartbeat};
use history::{History, Resume};
pub(crate) use link::{ClusterLink, ClusterState};
use presence::Presence;
use sink::{deliver_all, Encoded, Message, Sink};

pub(crate) mod answer;
mod event;
mod fan_out;
pub(crate) mod heartbeat;
mod history;
mod link;
mod presence;
pub(crate) mod sink;
#[cfg(test)]
mod tests;
mod timeline;

/// How long a client resuming in a cluster waits for this node to read the event
/// it names from the stream, before it is told it cannot resume (see
/// `Hub::parked`). Reading is normally a matter of milliseconds; a node that
/// has just started, or reconnected, may take a second.
const RESUME_WAIT: Duration = Duration::from_secs(2);

/// Most broadcasts joined into one write per client, when the hub has fallen
/// behind (ticks faster than a fan-out, a publisher in a loop).
const BROADCAST_BATCH: usize = 64;

/// A batch stops growing once it holds this many bytes.
const BROADCAST_BATCH_BYTES: usize = 64 << 10;

/// Most joins and leaves handled in a row before the hub looks at broadcasts again.
const EVENT_BATCH: usize = 1024;

/// How much history the hub keeps (`--history`, `--history-bytes`), and the id of
/// the newest event published before it started.
pub(crate) struct HistoryLimits {
    pub(crate) events: usize,
    pub(crate) bytes: usize,
    pub(crate) newest: u64,
}

/// One connected client, as the hub sees it.
struct Client {
    /// How the hub writes to it.
    sink: Sink,
    /// For log lines only.
    peer: SocketAddr,
    /// The topics it chose (`?topic=`): it gets their messages, besides what goes
    /// to everyone.
    topics: Vec<Topic>,
}

/// The hub thread's state.
pub(crate) struct Hub {
    /// Connected clients by id. A `BTreeMap` keeps them in join order, which makes
    /// "everyone who joined before the newest client" a range.
    clients: BTreeMap<ClientId, Client>,
    /// The id the next client gets: ids are never reused while the server runs
    /// (nor, in a cluster, by another node: see `Hub::new`).
    next_id: ClientId,
    /// How many of `clients` are SSE clients: with none, no SSE encoding is done.
    sse_clients: usize,
    /// Who is subscribed to each topic: a message to a topic costs work in
    /// proportion to its subscribers, not to every client.
    subscribers: HashMap<Topic, BTreeSet<ClientId>>,
    /// Recent published events, for clients that resume.
    history: History,
    /// Joins and leaves waiting to be announced.
    presence: Presence,
    /// Whose turn it is to be pinged, and when; `None` with `--heartbeat off`.
    heartbeat: Option<Heartbeat>,
    /// The counters: clients, joins, leaves, frames and bytes sent.
    metrics: Arc<Metrics>,
    /// Joins and leaves, to the embedding program, if it asked for them.
    client_events: Option<ClientEventsTx>,
    /// The cluster this node is part of, if any.
    link: Option<ClusterLink>,
    /// In a cluster: clients resuming after an event this node has not read
    /// from the stream yet (it was just published on another node), waiting up
    /// to [`RESUME_WAIT`] for the node to catch up rather than get a `reset`.
    parked: Vec<(Instant, Joining)>,
    /// How many threads share a large broadcast: the number of cores, at most 4.
    fan_out_threads: usize,
}

impl Hub {
    pub(crate) fn new(
        presence_window: Duration,
        heartbeat: Option<Duration>,
        history: HistoryLimits,
        client_events: Option<ClientEventsTx>,
        cluster: Option<(ClusterLink, ClientId)>,
        metrics: Arc<Metrics>,
    ) -> Hub {
        // In a cluster, client ids start where the cluster module says (each node
        // has a range of its own); on one node, at 1.
        let (link, first_client_id) = match cluster {
            Some((link, first)) => (Some(link), first),
            None => (None, 1),
        };
        Hub {
            link,
            parked: Vec::new(),
            history: History::new(history.events, history.bytes, history.newest),
            client_events,
            clients: BTreeMap::new(),
            next_id: first_client_id,
            sse_clients: 0,
            subscribers: HashMap::new(),
            presence: Presence::new(presence_window),
            heartbeat: heartbeat.map(Heartbeat::new),
            metrics,
            // tour: fan-out-threads
            fan_out_threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4),
        }
    }

    /// The hub thread's body: handle events and broadcasts until shutdown.
    pub(crate) fn run(mut self, events_rx: Receiver<HubEvent>, frames_rx: Receiver<Broadcast>) {
        // Sleep until an event or a broadcast arrives, or until the next deadline.
        // A disconnected channel means the server is gone.
        let forever = Duration::from_secs(365 * 24 * 3600);
        'serve: loop {
            let next_deadline = [
                self.presence.due(),
                self.heartbeat.as_ref().map(|h| h.next),
                self.parked.iter().map(|(deadline, _)| *deadline).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            let wait =
                next_deadline.map_or(forever, |d| d.saturating_duration_since(Instant::now()));
            // tour: hub-select
            select! {
                recv(events_rx) -> event => {
                    let Ok(event) = event else { break 'serve };
                    if !self.handle(event) {
                        break 'serve;
                    }
                    // Joins and leaves are cheap, and a client waits for its welcome:
                    // take the ones already queued (up to a batch) before the next
                    // broadcast. `take` stops before fetching one event too many, so
                    // none is ever fetched and then dropped.
                    // tour: hub-event-batch
                    for event in events_rx.try_iter().take(EVENT_BATCH - 1) {
                        if !self.handle(event) {
                            break 'serve;
                        }
                    }
                },
                recv(frames_rx) -> broadcast => match broadcast {
                    Ok(first) => {
                        // Broadcasts that queued up while the last one went out go
                        // out together: one write per client for all of them.
                        let mut bytes = first.frame.len();
                        let mut batch = vec![first];
                        // tour: hub-batch
                        while batch.len() < BROADCAST_BATCH && bytes < BROADCAST_BATCH_BYTES {
                            match frames_rx.try_recv() {
                                Ok(next) => {
                                    bytes += next.frame.len();
                                    batch.push(next);
                                }
                                Err(_) => break,
                            }
                        }
                        self.deliver(&batch);
                        let published = self.history.keep(batch);
                        self.metrics.published.fetch_add(published, Ordering::Relaxed);
                        self.unpark();
                    }
                    // The server holds a sender until the hub has ended: this is a
                    // bug, but the clients still get their close frame.
                    Err(_) => {
                        log::error!("hub: the frames channel closed before shutdown");
                        break;
                    }
                },
                default(wait) => {}
            }
            if !self.parked.is_empty() {
                self.unpark();
            }
            if self.presence.due().is_some_and(|due| Instant::now() >= due) {
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
        // What was published before shutdown began still goes out, ahead of the
        // close frame: a publisher whose `publish` returned Ok loses nothing.
        let queued: Vec<Broadcast> = frames_rx.try_iter().take(FRAME_QUEUE).collect();
        for batch in queued.chunks(BROADCAST_BATCH) {
            self.deliver(batch);
        }
        self.close_all();
    }

    /// Handles one join, leave or shutdown. Returns `false` on shutdown.
    fn handle(&mut self, event: HubEvent) -> bool {
        match event {
            HubEvent::Join(joining) => self.join(joining),
            HubEvent::Leave { id, reason } => self.remove(id, reason),
            HubEvent::Shutdown => return false,
        }
        true
    }

    fn join(&mut self, joining: Joining) {
        // In a cluster, an id newer than any this node has read may be one that
        // another node has just published: wait for the stream a moment.
        if let (Some(_), Some(since)) = (&self.link, joining.subscription.since) {
            if since > self.history.newest() {
                self.parked.push((Instant::now() + RESUME_WAIT, joining));
                return;
            }
        }
        self.add(joining);
    }

    /// Joins the parked clients whose event has arrived, and those that have
    /// waited long enough (they get a `reset`).
    fn unpark(&mut self) {
        let now = Instant::now();
        let newest = self.history.newest();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(deadline, joining)| {
                *deadline <= now || joining.subscription.since.is_none_or(|s| s <= newest)
            });
        self.parked = waiting;
        for (_, joining) in ready {
            self.add(joining);
        }
    }

    /// Adds a client: writes its greeting, welcome and replay, and announces it.
    fn add(&mut self, joining: Joining) {
        let Joining {
            sink,
            subscription,
            greeting,
            peer,
            id_tx,
        } = joining;
        let topics = subscription.topics;
        let id = self.next_id;
        self.next_id += 1;
        // The greeting, the welcome and what the client missed (if it resumes) are
        // its first bytes, written together: nothing else can reach its sink until
        // it is in `clients`, and only this thread puts it there. So the replay and
        // the live stream meet with no gap and no duplicate.
        let last_id = self.history.newest();
        let clients = self.clients.len() as u64 + 1 + self.clients_elsewhere();
        let text = message::welcome(
            id,
            usize::try_from(clients).unwrap_or(usize::MAX),
            last_id,
            time::OffsetDateTime::now_utc(),
        );
        let resume = subscription
            .since
            .map(|since| (since, self.history.after(since, &topics)));
        let reset;
        // The welcome's SSE id is where this stream resumes from, should it break
        // during the replay: the client's own id, or the newest.
        let mut first = vec![Message {
            id: Some(match &resume {
                Some((since, Resume::Replay(_))) => *since,
                _ => last_id,
            }),
            event: Some("welcome"),
            text: &text,
        }];
        match &resume {
            None => {}
            // tour: join-replay
            Some((_, Resume::Replay(missed))) => {
                self.metrics.resumes.add(ResumeOutcome::Replayed);
                first.extend(missed.iter().map(|kept| Message {
                    id: Some(kept.id),
                    event: kept.event,
                    text: &kept.text,
                }));
            }
            Some((since, Resume::Missed(why))) => {
                self.metrics.resumes.add(ResumeOutcome::Reset);
                log::debug!("{peer} cannot resume after {since}: {why}");
                reset = message::reset(*since, last_id, why);
                first.push(Message {
                    id: Some(last_id),
                    event: Some("reset"),
                    text: &reset,
                });
            }
        }
        let (delivery, first_len) = sink.greet(greeting, &first);
        if delivery != Delivery::Accepted {
            // Gone before it was welcomed: never announce it. Its thread sees the
            // answer channel close and ends.
            log::debug!("{peer}: gone before its welcome could be written");
            self.metrics.joins_failed.add(JoinFailure::ClientGone);
            return;
        }
        self.metrics
            .frames_sent
            .fetch_add(first.len() as u64, Ordering::Relaxed);
        self.metrics
            .bytes_sent
            .fetch_add(first_len as u64, Ordering::Relaxed);
        match &sink {
            Sink::Sse(_) => self.sse_clients += 1,
            // The heartbeat judges a client on the pings it was sent: count the join
            // as hearing from it, or pings to its group while it was still in its
            // handshake would count against it.
            Sink::WebSocket(outbox) => outbox.heard_from_client(clock_ms()),
        }
        // tour: join-insert
        for topic in &topics {
            self.subscribers
                .entry(topic.clone())
                .or_default()
                .insert(id);
        }
        self.clients.insert(id, Client { sink, peer, topics });
        self.metrics.joined.fetch_add(1, Ordering::Relaxed);
        self.count_clients();
        self.presence.joined(id);
        log::debug!("client {id} ({peer}) joined");
        if let Some(events) = &self.client_events {
            events.send_now(ClientEvent::Joined { id, peer }, &self.metrics);
        }
        if id_tx.send(id).is_err() {
            // Its thread ended while waiting (a panic): nobody will ever send its
            // Leave, so remove it here rather than keep a ghost.
            log::warn!("client {id} ({peer}): its thread ended before it joined");
            self.remove(id, LeaveReason::Dropped);
        }
    }

    fn remove(&mut self, id: ClientId, reason: LeaveReason) {
        if let Some(client) = self.clients.remove(&id) {
            log::debug!("client {id} ({}) left: {}", client.peer, reason.as_str());
            for topic in &client.topics {
                if let Some(ids) = self.subscribers.get_mut(topic) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.subscribers.remove(topic);
                    }
                }
            }
            if let Sink::Sse(sink) = &client.sink {
                // Dropping the sink below ends the stream; say why first.
                sink.close(reason);
                self.sse_clients -= 1;
            }
            self.metrics.left.add(reason);
            if let Some(events) = &self.client_events {
                events.send_now(ClientEvent::Left { id, reason }, &self.metrics);
            }
            self.count_clients();
            self.presence.left(id, reason);
        }
    }

    fn count_clients(&self) {
        let count = u64::try_from(self.clients.len()).unwrap_or(u64::MAX);
        self.metrics.clients.store(count, Ordering::Relaxed);
    }

    /// Encodes an SSE event, once, for every SSE client it goes to. Its `id:` is
    /// the event id of a published event (messages, lines), which a reconnecting
    /// `EventSource` sends back as `Last-Event-ID`; ticks and notices have none.
    fn sse_event(id: Option<u64>, event: Option<&str>, text: &str) -> Arc<[u8]> {
        sse::chunk(&sse::sse_event(id, event, text))
    }

    /// Pings the next group of clients (SSE clients get a comment instead), after
    /// cutting off the WebSocket clients of the group silent since its previous ping.
    fn heartbeat(&mut self) {
        let Some(heartbeat) = self.heartbeat.as_mut() else {
            return;
        };
        let round = heartbeat.next_round();
        let silent: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(&id, _)| round.includes(id))
            .filter_map(|(&id, c)| match &c.sink {
                Sink::WebSocket(outbox) if round.is_silent(outbox.last_heard_ms()) => {
                    log::debug!("client {id} ({}) did not answer a ping", c.peer);
                    outbox.abort(LeaveReason::Timeout);
                    Some(id)
                }
                _ => None,
            })
            .collect();
        for id in silent {
            self.remove(id, LeaveReason::Timeout);
        }
        self.send_to(&round.ping(), |id| round.includes(id));
    }

    /// Writes a batch from the frames channel, in order: a message for one client
    /// to that client alone, a join notice to everyone but its newest joiner, and
    /// each run of broadcasts between such messages with one write per client.
    fn deliver(&mut self, batch: &[Broadcast]) {
        let plain = |b: &Broadcast| b.to.is_none() && b.not_to.is_empty() && !b.history_only;
        for run in batch.chunk_by(|a, b| plain(a) && plain(b)) {
            match run {
                // Only for the history (see `Broadcast::history_only`).
                [one] if one.history_only => {}
                [one] if one.to.is_some() => self.send_one(one),
                [one] if !one.not_to.is_empty() => self.send_except(one),
                _ if run.iter().all(|b| b.topic.is_none()) => self.broadcast(run),
                _ => self.broadcast_by_topic(run),
            }
        }
    }

    /// Writes a broadcast to every client but those it names.
    fn send_except(&mut self, broadcast: &Broadcast) {
        let sse = (self.sse_clients > 0)
            .then(|| Hub::sse_event(broadcast.id, broadcast.event, &broadcast.text));
        let message = Encoded {
            frame: &broadcast.frame,
            sse,
            messages: 1,
        };
        self.send_to(&message, |id| !broadcast.not_to.contains(&id));
    }

    /// Writes a message for one client (`Publisher::send_to`), if it is still here.
    /// It carries no SSE id: ids count the events every client gets.
    fn send_one(&mut self, message: &Broadcast) {
        let Some(id) = message.to else { return };
        let Some(client) = self.clients.get(&id) else {
            self.metrics.undeliverable.fetch_add(1, Ordering::Relaxed);
            log::debug!("a message for client {id}, which has gone, was dropped");
            return;
        };
        let sse = matches!(client.sink, Sink::Sse(_))
            .then(|| sse::chunk(&sse::sse_event(None, message.event, &message.text)));
        let encoded = Encoded {
            frame: &message.frame,
            sse,
            messages: 1,
        };
        let outcome = deliver_all(&[(id, &client.sink)], &encoded);
        self.settle(outcome);
    }

    /// Sends broadcasts, in order, to every client, both encodings made once: the
    /// frames of a batch are joined into one buffer, written with one `send` per
    /// client. Every frame stays whole, so the bytes on the wire are the same as
    /// if each had been sent alone.
    fn broadcast(&mut self, batch: &[Broadcast]) {
        let frames = match batch {
            [one] => std::borrow::Cow::Borrowed(&one.frame[..]),
            _ => std::borrow::Cow::Owned(
                batch.iter().flat_map(|b| b.frame.iter().copied()).collect(),
            ),
        };
        let sse = if self.sse_clients > 0 {
            let mut chunks = Vec::new();
            for b in batch {
                // tour: broadcast-sse-once
                chunks.extend_from_slice(&Hub::sse_event(b.id, b.event, &b.text));
            }
            Some(Arc::from(chunks))
        } else {
            None
        };
        let message = Encoded {
            frame: &frames,
            sse,
            messages: batch.len() as u64,
        };
        self.send_to_all(&message);
    }

    /// Sends a run of broadcasts of which some go to topics, still with one write
    /// per client. Clients that get the same broadcasts (those subscribed to the
    /// same of the run's topics: say, everyone on `prices`) form a group and share
    /// one buffer, built once; each group is written like a broadcast. Only the
    /// run's topics' subscribers are looked at, unless something in the run goes
    /// to everyone.
    fn broadcast_by_topic(&mut self, run: &[Broadcast]) {
        let mut topics: Vec<&Topic> = run.iter().filter_map(|b| b.topic.as_ref()).collect();
        topics.sort();
        topics.dedup();
        let to_everyone = run.iter().any(|b| b.topic.is_none());
        // A client's group: which of the run's topics it subscribes to (indices
        // into `topics`).
        let group_of = |client: &Client| -> Vec<usize> {
            (0..topics.len())
                .filter(|&i| client.topics.contains(topics[i]))
                .collect()
        };
        let mut groups: HashMap<Vec<usize>, Vec<ClientId>> = HashMap::new();
        if to_everyone {
            for (&id, client) in &self.clients {
                groups.entry(group_of(client)).or_default().push(id);
            }
        } else {
            let subscribers: BTreeSet<ClientId> = topics
                .iter()
                .filter_map(|t| self.subscribers.get(*t))
                .flatten()
                .copied()
                .collect();
            for id in subscribers {
                if let Some(client) = self.clients.get(&id) {
                    groups.entry(group_of(client)).or_default().push(id);
                }
            }
        }
        let sse_events: Option<Vec<Arc<[u8]>>> = (self.sse_clients > 0).then(|| {
            run.iter()
                .map(|b| Hub::sse_event(b.id, b.event, &b.text))
                .collect()
        });
        for (group, ids) in groups {
            let members: Vec<usize> = (0..run.len())
                .filter(|&i| {
                    run[i]
                        .topic
                        .as_ref()
                        .is_none_or(|t| group.iter().any(|&g| topics[g] == t))
                })
                .collect();
            if members.is_empty() {
                continue;
            }
            let frames: Vec<u8> = members
                .iter()
                .flat_map(|&i| run[i].frame.iter().copied())
                .collect();
            let sse = sse_events.as_ref().map(|events| {
                let chunks: Vec<u8> = members
                    .iter()
                    .flat_map(|&i| events[i].iter().copied())
                    .collect();
                Arc::from(chunks)
            });
            let message = Encoded {
                frame: &frames,
                sse,
                messages: members.len() as u64,
            };
            self.send_to_ids(&message, &ids);
        }
    }

    /// Writes to every client; cuts off the ones that cannot keep up.
    fn send_to_all(&mut self, message: &Encoded<'_>) {
        self.send_to(message, |_| true);
    }

    /// Writes to the clients whose id `wanted` accepts; cuts off the ones that
    /// cannot keep up.
    fn send_to(&mut self, message: &Encoded<'_>, wanted: impl Fn(ClientId) -> bool) {
        let targets: Vec<(ClientId, &Sink)> = self
            .clients
            .iter()
            .filter(|(&id, _)| wanted(id))
            .map(|(&id, c)| (id, &c.sink))
            .collect();
        // tour: fan-out
        let outcome = fan_out(&targets, self.fan_out_threads, |part| {
            deliver_all(part, message)
        });
        self.settle(outcome);
    }

    /// Writes to the clients `ids` (in order; those that have gone are skipped);
    /// cuts off the ones that cannot keep up.
    fn send_to_ids(&mut self, message: &Encoded<'_>, ids: &[ClientId]) {
        let targets: Vec<(ClientId, &Sink)> = ids
            .iter()
            .filter_map(|id| self.clients.get(id).map(|c| (*id, &c.sink)))
            .collect();
        let outcome = fan_out(&targets, self.fan_out_threads, |part| {
            deliver_all(part, message)
        });
        self.settle(outcome);
    }

    /// Counts what a fan-out sent and removes the clients it lost.
    fn settle(&mut self, mut outcome: FanOut) {
        self.metrics
            .frames_sent
            .fetch_add(outcome.frames, Ordering::Relaxed);
        self.metrics
            .bytes_sent
            .fetch_add(outcome.bytes, Ordering::Relaxed);
        let gone = std::mem::take(&mut outcome.gone);
        for (id, reason) in gone {
            // tour: hub-settle
            if reason == LeaveReason::TooSlow {
                self.metrics.backlog_cutoffs.fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "client {id} cut off: its backlog passed --max-backlog (reading too slowly)"
                );
            }
            self.remove(id, reason);
        }
    }

    /// Sends the gathered join and leave notices: to this node's clients or, in a
    /// cluster whose Redis can be reached, to the cluster, which announces them on
    /// every node (see `link`). The count is the cluster's.
    fn send_presence(&mut self) {
        let notices = self.presence.take_notices();
        let clients = self.clients.len() as u64 + self.clients_elsewhere();
        let mut publications = Vec::new();
        if !notices.joined.is_empty() {
            let ids = notices.joined;
            publications.push(Publication::Join { ids, clients });
        }
        for (reason, ids) in notices.left {
            publications.push(Publication::Leave {
                ids,
                clients,
                reason,
            });
        }
        for publication in publications {
            match &self.link {
                // tour: hub-presence-link
                Some(link) if link.state.is_up() => {
                    // Only if the cluster's keeper thread has died: announce it
                    // here rather than lose it.
                    if let Err(returned) = link.presence_tx.send(publication) {
                        log::warn!(
                            "the cluster's presence thread has stopped; a notice goes to \
                             this node's clients only"
                        );
                        self.deliver(&[returned.0.into_broadcast(0)]);
                    }
                }
                // Notices have no event id.
                _ => self.deliver(&[publication.into_broadcast(0)]),
            }
        }
    }

    /// How many clients the other nodes of the cluster have (0 on one node).
    fn clients_elsewhere(&self) -> u64 {
        self.link
            .as_ref()
            .map_or(0, |link| link.state.clients_elsewhere())
    }

    /// Shutdown: close 1001 to every WebSocket client, and the end of every SSE
    /// stream. Each client's thread sees the peer's answer (or end of stream) and
    /// ends.
    fn close_all(&mut self) {
        // The other nodes of a cluster hear that these clients have gone.
        if let Some(link) = self.link.as_ref().filter(|link| link.state.is_up()) {
            if !self.clients.is_empty() {
                let leave = Publication::Leave {
                    ids: self.clients.keys().copied().collect(),
                    clients: self.clients_elsewhere(),
                    reason: LeaveReason::Shutdown,
                };
                if link.presence_tx.send(leave).is_err() {
                    log::warn!("the cluster's presence thread has stopped; no leave notice");
                }
            }
        }
        let frame = frame::close_frame(CloseCode::Away, "server shutting down");
        for client in self.clients.values() {
            match &client.sink {
                Sink::WebSocket(outbox) => {
                    // tour: close-all-1001
                    outbox.close(LeaveReason::Shutdown, &frame);
                }
                Sink::Sse(sink) => sink.close(LeaveReason::Shutdown),
            }
        }
        let n = self.clients.len();
        log::debug!(
            "hub closed {n} client{} and stopped",
            if n == 1 { "" } else { "s" }
        );
        // Dropping the SSE sinks wakes their threads.
        self.clients.clear();
    }
}
