//! Several nodes as one server, on a Redis (or Valkey) stream: `--redis URL`,
//! built with `--features redis`.
//!
//! # The idea
//!
//! Every event a node accepts (an HTTP publish, a `--stdin` line, an embedder's
//! publish, a join or leave notice) is appended to one Redis stream, and every
//! node, the one that accepted it too, reads the stream and hands each entry to
//! its hub. So there is one path for events, and every node sends the same
//! events, in the same order, with the same ids: a client can resume on any
//! node. Ticks stay local: each node's ticker is aligned to the wall clock and
//! sends the same tick for the same instant (see `ticker`).
//!
//! ```text
//!  Publisher ── EVAL append ──▶ Redis  tickcast:events  ◀── XREAD BLOCK ── cluster-reader ──▶ frames_tx ──▶ hub
//!  hub ── presence_tx ──▶ cluster-keeper ── EVAL append ──▶     (stream)
//!                         cluster-keeper ── SET tickcast:node:N <clients> PX 5000, every second
//! ```
//!
//! # Threads
//!
//! - `cluster-reader` reads the stream with a blocking `XREAD` and sends each
//!   entry to the hub as a [`Broadcast`]. When it first connects it loads the
//!   newest `--history` entries into the hub's history, so that clients coming
//!   from another node can resume here. It ends at shutdown, when its socket is
//!   shut down from outside (see [`Cluster::stop`]).
//! - `cluster-keeper` appends the hub's join and leave notices, and once a
//!   second stores this node's client count under a key that expires in 5 s
//!   and reads the other nodes' counts: a node that dies stops being counted
//!   within 6 s. It ends when the stop channel is dropped, after deleting its
//!   key so that the others stop counting it at once.
//! - Publishers append on their own thread, through one shared connection
//!   ([`RedisLog`]); a publish waits for Redis's answer, which carries its id.
//!
//! # Ids
//!
//! A Lua script appends each entry, with the id `max(Redis's clock in µs, the
//! previous id + 1)` written as the stream id `ms-seq` (see `entry`). Ids thus
//! only grow, across restarts of nodes and of Redis, and stay close to the
//! single-node ids (also microseconds since 1970).
//!
//! # Faults
//!
//! While Redis cannot be reached, local clients keep their connections and
//! ticks, publishes fail with [`Error::ClusterDown`] (HTTP 503), joins and
//! leaves are announced to this node's clients only, and `/healthz` answers 503.
//! The reader reconnects with backoff and goes on from the last entry it read,
//! so what other nodes appended meanwhile arrives once and in order; if the
//! stream was trimmed past that entry meanwhile, every client of this node gets
//! a `reset` notice (each entry names the one before it, so the gap is exact).
//!
//! # Why not the `redis` crate
//!
//! It was measured: `redis` 1.8 with no default features adds 56 crates to the
//! tree (URL parsing pulls in Unicode tables and 7 proc-macro crates) and about
//! 720 KB to the binary. tickcast needs a dozen commands over one blocking
//! socket, which `resp` speaks in under 300 lines; the feature adds no crate.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, unbounded, Receiver, RecvTimeoutError, Sender};

use crate::hub::{Broadcast, ClusterLink, ClusterState, Publication};
use crate::metrics::Metrics;
use crate::publisher::EventLog;
use crate::shutdown::spawn_named;
use crate::wire::message::{self, ClientId};
use crate::Error;
use resp::{Connection, Reply, RespError, Stopper};
pub(crate) use url::RedisUrl;

mod entry;
mod resp;
mod url;

/// How long a command may take (reads that block in Redis get this on top).
const TIMEOUT: Duration = Duration::from_secs(1);
/// How long one `XREAD` blocks in Redis before asking again.
const BLOCK: Duration = Duration::from_secs(1);
/// How often a node reports its client count.
const BEAT: Duration = Duration::from_secs(1);
/// How long a node's count lives unless reported again: a dead node stops being
/// counted within this plus one beat.
const NODE_TTL: Duration = Duration::from_secs(5);
/// The stream keeps at least this many entries (`--history` if more), so that
/// a node cut off for a moment can catch up even when clients keep no history.
const MIN_STREAM_LEN: usize = 1000;
/// Node numbers are below this: a client id is the node number times 2^33 plus
/// a counter, which stays below 2^53, the largest integer JavaScript holds.
const NODES: u64 = 1 << 20;
const CLIENT_ID_BITS: u32 = 33;

/// Appends one entry: gives it the next id, and names the one before it.
/// KEYS: the stream, the newest id given. ARGV: the stream's MAXLEN, then the
/// entry's fields and values. Returns the id. (`%d`, because Lua's numbers are
/// doubles and print in exponent form past 14 digits; ids are below 2^53.)
// tour: cluster-append
const APPEND_SCRIPT: &str = "\
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local id = math.max(now, prev + 1)
redis.call('SET', KEYS[2], string.format('%d', id))
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1],
  string.format('%d-%d', math.floor(id / 1000), id % 1000),
  'prev', string.format('%d', prev), unpack(ARGV, 2))
return id
";

/// The Redis keys of one cluster, all under `--redis-key`.
#[derive(Clone)]
struct Keys {
    /// The stream of events.
    events: String,
    /// The newest id given (the append script's memory).
    last: String,
    /// The set of node numbers that have reported.
    nodes: String,
    /// The prefix of each node's count: `<key>:node:<n>`.
    prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            events: format!("{prefix}:events"),
            last: format!("{prefix}:last"),
            nodes: format!("{prefix}:nodes"),
            prefix: prefix.to_string(),
        }
    }

    fn node(&self, node: impl std::fmt::Display) -> String {
        format!("{}:node:{node}", self.prefix)
    }
}

/// A node about to join its cluster: connected (or retrying), with a number.
/// [`Node::start`] starts its threads once the hub runs.
pub(crate) struct Node {
    url: RedisUrl,
    keys: Keys,
    /// This node's number, part of every client id it gives.
    number: u32,
    /// Whether `number` was reserved in Redis (not when it was down at startup).
    reserved: bool,
    log: Arc<RedisLog>,
    state: Arc<ClusterState>,
    presence_tx: Sender<Publication>,
    presence_rx: Receiver<Publication>,
    metrics: Arc<Metrics>,
}

impl Node {
    /// Connects to Redis and picks a node number. A Redis that cannot be reached
    /// is not an error (the node starts, and retries); one that refuses the
    /// password, or is not a Redis, is.
    pub(crate) fn join(
        url: &str,
        key: &str,
        history: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Node, Error> {
        let url =
            RedisUrl::parse(url).map_err(|e| Error::InvalidConfig(format!("--redis: {e}")))?;
        let keys = Keys::new(key);
        let mut connection = match Connection::open(&url, TIMEOUT) {
            Ok(connection) => Some(connection),
            Err(RespError::Io(e)) => {
                log::warn!(
                    "cluster: Redis at {url} cannot be reached ({e}); serving this node's \
                     clients alone, and retrying (/healthz answers 503 meanwhile)"
                );
                None
            }
            Err(e) => {
                return Err(Error::InvalidConfig(format!(
                    "--redis {url}: {}",
                    explain(&e)
                )))
            }
        };
        let (number, reserved) = match &mut connection {
            Some(connection) => (reserve_number(connection, &keys)?, true),
            None => (random_number(), false),
        };
        log::info!("cluster: node {number}, on {url} under {key}:*");
        let maxlen = history.max(MIN_STREAM_LEN).to_string();
        let (presence_tx, presence_rx) = unbounded();
        Ok(Node {
            log: Arc::new(RedisLog {
                url: url.clone(),
                keys: keys.clone(),
                number,
                maxlen,
                connection: Mutex::new(connection),
                stopped: AtomicBool::new(false),
                metrics: metrics.clone(),
            }),
            url,
            keys,
            number,
            reserved,
            state: Arc::new(ClusterState::default()),
            presence_tx,
            presence_rx,
            metrics,
        })
    }

    /// The hub's end of the cluster, and the first client id this node gives.
    pub(crate) fn link(&self) -> (ClusterLink, ClientId) {
        let link = ClusterLink {
            state: self.state.clone(),
            presence_tx: self.presence_tx.clone(),
        };
        (link, (u64::from(self.number) << CLIENT_ID_BITS) + 1)
    }

    /// What `/healthz` and `/metrics` read.
    pub(crate) fn state(&self) -> Arc<ClusterState> {
        self.state.clone()
    }

    /// Where publishers append.
    pub(crate) fn log(&self) -> Arc<RedisLog> {
        self.log.clone()
    }

    /// Starts `cluster-reader` and `cluster-keeper`, which hand events to the hub
    /// on `frames_tx`; `history` is how many entries to load for resuming clients.
    pub(crate) fn start(
        self,
        frames_tx: Sender<Broadcast>,
        history: usize,
    ) -> Result<Cluster, Error> {
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let stopper = Arc::new(Mutex::new(None));
        let reader = Reader {
            url: self.url.clone(),
            log: self.log.clone(),
            keys: self.keys.clone(),
            history,
            frames_tx: frames_tx.clone(),
            state: self.state.clone(),
            metrics: self.metrics.clone(),
            stop_rx: stop_rx.clone(),
            stopper: stopper.clone(),
            cursor: None,
            last_id: 0,
        };
        let keeper = Keeper {
            log: self.log.clone(),
            keys: self.keys.clone(),
            number: self.number,
            reserved: self.reserved,
            state: self.state.clone(),
            metrics: self.metrics.clone(),
            presence_rx: self.presence_rx,
            frames_tx,
            stop_rx,
        };
        let mut cluster = Cluster {
            log: self.log,
            state: self.state,
            stop_tx: Some(stop_tx),
            stopper,
            threads: Vec::new(),
        };
        // If the keeper cannot start, dropping `cluster` stops the reader.
        let reader = spawn_named("cluster-reader", move || reader.run())?;
        cluster.threads.push(("cluster-reader", reader));
        let keeper = spawn_named("cluster-keeper", move || keeper.run())?;
        cluster.threads.push(("cluster-keeper", keeper));
        Ok(cluster)
    }
}

/// The running cluster threads of a node; [`Cluster::stop`] ends them.
pub(crate) struct Cluster {
    log: Arc<RedisLog>,
    state: Arc<ClusterState>,
    /// Dropping it wakes both threads wherever they wait on a channel.
    stop_tx: Option<Sender<()>>,
    /// The reader's connection, to wake it from a blocking read.
    stopper: Arc<Mutex<Option<Stopper>>>,
    threads: Vec<(&'static str, JoinHandle<()>)>,
}

impl Cluster {
    /// Shutdown's first step: publishes fail with [`Error::Stopped`] from now on.
    /// The threads go on, to carry the hub's last leave notice to the others.
    pub(crate) fn stop_publishing(&self) {
        self.log.stopped.store(true, Ordering::Relaxed);
    }

    /// Leaves the cluster, once the hub has ended: the keeper appends the notices
    /// the hub left (its clients' leave) and deletes this node's count, and both
    /// threads end and are joined.
    pub(crate) fn stop(&mut self) {
        self.stop_publishing();
        self.stop_tx = None;
        if let Some(stopper) = lock(&self.stopper).as_ref() {
            stopper.stop();
        }
        for (name, handle) in self.threads.drain(..) {
            if handle.join().is_err() {
                log::error!("thread {name} panicked");
            }
        }
        // The hub announces its last notices itself.
        self.state.set_up(false);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The stream, as publishers see it: one connection shared by every thread that
/// publishes (and the keeper), opened again after a failure.
pub(crate) struct RedisLog {
    url: RedisUrl,
    keys: Keys,
    /// This node's number, stored in each entry (for whoever reads the stream).
    number: u32,
    /// The stream's `MAXLEN ~`.
    maxlen: String,
    connection: Mutex<Option<Connection>>,
    /// Set at shutdown: publishing then fails with [`Error::Stopped`].
    stopped: AtomicBool,
    metrics: Arc<Metrics>,
}

impl RedisLog {
    /// Drops the shared connection: the reader lost its own, so this one (on
    /// the same path to Redis) is most likely dead too, and the next publish
    /// should open a fresh one rather than fail on it.
    fn drop_connection(&self) {
        *lock(&self.connection) = None;
    }

    /// Runs `f` on the connection, opening it first if needed; a connection that
    /// failed is dropped, to be opened again next time.
    fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, RespError>,
    ) -> Result<T, RespError> {
        let mut guard = lock(&self.connection);
        let connection = match guard.take() {
            Some(connection) => connection,
            None => Connection::open(&self.url, TIMEOUT)?,
        };
        let connection = guard.insert(connection);
        let result = f(connection);
        if matches!(result, Err(RespError::Io(_) | RespError::Protocol(_))) {
            *guard = None;
        }
        result
    }
}

impl EventLog for RedisLog {
    fn append(&self, publication: Publication) -> Result<u64, Error> {
        if self.stopped.load(Ordering::Relaxed) {
            return Err(Error::Stopped);
        }
        self.append_entry(&publication)
    }
}

impl RedisLog {
    /// Appends, shutdown or not (the keeper's last notices).
    fn append_entry(&self, publication: &Publication) -> Result<u64, Error> {
        let fields = entry::fields(publication, self.number);
        let mut args: Vec<&[u8]> = vec![
            b"EVAL",
            APPEND_SCRIPT.as_bytes(),
            b"2",
            self.keys.events.as_bytes(),
            self.keys.last.as_bytes(),
            self.maxlen.as_bytes(),
        ];
        for (name, value) in &fields {
            args.push(name.as_bytes());
            args.push(value.as_bytes());
        }
        let failure = match self.with_connection(|c| c.command(&args)) {
            Ok(Reply::Int(id)) => match u64::try_from(id) {
                Ok(id) if id > 0 => return Ok(id),
                _ => format!("the append script returned {id}"),
            },
            Ok(other) => format!("the append script returned {other:?}"),
            Err(e) => explain(&e),
        };
        self.metrics
            .cluster_appends_failed
            .fetch_add(1, Ordering::Relaxed);
        log::warn!("cluster: could not append an event to the stream: {failure}");
        Err(Error::ClusterDown)
    }
}

/// `cluster-reader`: the stream, read into the hub.
struct Reader {
    url: RedisUrl,
    /// The publishers' connection, dropped when the reader loses its own.
    log: Arc<RedisLog>,
    keys: Keys,
    history: usize,
    frames_tx: Sender<Broadcast>,
    state: Arc<ClusterState>,
    metrics: Arc<Metrics>,
    stop_rx: Receiver<()>,
    stopper: Arc<Mutex<Option<Stopper>>>,
    /// The stream id of the last entry read: `XREAD` goes on after it. `None`
    /// until the history is loaded.
    cursor: Option<String>,
    /// The event id of the last entry this node's append script gave, as read:
    /// the next entry's `prev` should be it.
    last_id: u64,
}

/// Why the reader stopped reading.
enum ReadEnd {
    /// Shutdown, or the hub is gone: the thread ends.
    Stop,
    /// The connection failed: connect again.
    Lost(RespError),
}

impl From<RespError> for ReadEnd {
    fn from(e: RespError) -> ReadEnd {
        ReadEnd::Lost(e)
    }
}

impl Reader {
    fn run(mut self) {
        let mut backoff = Backoff::default();
        let mut was_up = false;
        loop {
            let end = self.connect_and_read(&mut was_up, &mut backoff);
            self.state.set_up(false);
            match end {
                ReadEnd::Stop => break,
                ReadEnd::Lost(_) if self.stopping() => break,
                ReadEnd::Lost(e) => {
                    self.log.drop_connection();
                    let wait = backoff.next();
                    if backoff.first_failure() {
                        log::warn!(
                            "cluster: Redis at {} cannot be reached ({}); serving this node's \
                             clients alone, publishes answer 503; retrying",
                            self.url,
                            explain(&e)
                        );
                    } else {
                        log::debug!(
                            "cluster: still no Redis ({}); next try in {wait:?}",
                            explain(&e)
                        );
                    }
                    if self.stop_rx.recv_timeout(wait) != Err(RecvTimeoutError::Timeout) {
                        break;
                    }
                }
            }
        }
        log::debug!("cluster-reader: stopped");
    }

    /// Whether shutdown has begun (the stop channel is dropped).
    fn stopping(&self) -> bool {
        matches!(
            self.stop_rx.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    fn connect_and_read(&mut self, was_up: &mut bool, backoff: &mut Backoff) -> ReadEnd {
        let mut connection = match Connection::open(&self.url, TIMEOUT) {
            Ok(connection) => connection,
            Err(e) => return ReadEnd::Lost(e),
        };
        match connection.stopper() {
            Ok(stopper) => *lock(&self.stopper) = Some(stopper),
            Err(e) => return ReadEnd::Lost(e.into()),
        }
        // Shutdown may have looked for the stopper just before it was stored.
        if self.stopping() {
            return ReadEnd::Stop;
        }
        if self.cursor.is_none() {
            if let Err(end) = self.load_history(&mut connection) {
                return end;
            }
        }
        self.state.set_up(true);
        if *was_up {
            self.metrics
                .cluster_reconnects
                .fetch_add(1, Ordering::Relaxed);
        }
        *was_up = true;
        if backoff.reset() {
            log::info!(
                "cluster: Redis is back; reading the stream after event {}",
                self.last_id
            );
        } else {
            log::info!(
                "cluster: in the cluster, reading the stream after event {}",
                self.last_id
            );
        }
        loop {
            let cursor = self.cursor.clone().unwrap_or_else(|| "0-0".into());
            // tour: cluster-xread
            let reply = match connection.blocking_command(
                &[
                    b"XREAD",
                    b"COUNT",
                    b"1000",
                    b"BLOCK",
                    BLOCK.as_millis().to_string().as_bytes(),
                    b"STREAMS",
                    self.keys.events.as_bytes(),
                    cursor.as_bytes(),
                ],
                BLOCK,
                TIMEOUT,
            ) {
                Ok(reply) => reply,
                Err(e) => return ReadEnd::Lost(e),
            };
            // One stream asked for: [[key, entries]], or nil on timeout.
            let entries = reply
                .items()
                .and_then(|streams| streams.first())
                .and_then(|stream| stream.items())
                .and_then(|pair| pair.get(1))
                .and_then(Reply::items)
                .unwrap_or(&[]);
            for entry in entries {
                if let Err(end) = self.hand_over(entry, false) {
                    return end;
                }
            }
        }
    }

    /// The first connection: the newest `history` entries go into the hub's
    /// history (not to clients), and reading starts after them.
    fn load_history(&mut self, connection: &mut Connection) -> Result<(), ReadEnd> {
        // The newest id first: an entry appended after this read names it as
        // `prev`, so it is not taken for a gap.
        let last = match connection.command(&[b"GET", self.keys.last.as_bytes()])? {
            Reply::Nil => 0,
            reply => reply.text().and_then(|t| t.parse().ok()).unwrap_or(0),
        };
        let mut entries = if self.history == 0 {
            Vec::new()
        } else {
            let count = self.history.to_string();
            let reply = connection.command(&[
                b"XREVRANGE",
                self.keys.events.as_bytes(),
                b"+",
                b"-",
                b"COUNT",
                count.as_bytes(),
            ])?;
            reply.items().unwrap_or(&[]).to_vec()
        };
        entries.reverse();
        // Events up to the one before the oldest loaded are gone for resuming
        // clients; with nothing loaded, up to the newest id given.
        let floor = entries
            .first()
            .and_then(|e| parse_entry(e).ok())
            .map_or(last, |entry| entry.prev);
        self.last_id = floor;
        self.send(Broadcast {
            history_only: true,
            missed_up_to: Some(floor),
            ..Broadcast::new(None, String::new())
        })?;
        for entry in &entries {
            self.hand_over(entry, true)?;
        }
        log::info!(
            "cluster: loaded {} event(s) of history from the stream",
            entries.len()
        );
        // With nothing loaded, read the stream from its start: whatever is there
        // now was appended after `GET`.
        self.cursor.get_or_insert_with(|| "0-0".into());
        Ok(())
    }

    /// Hands one stream entry to the hub (`history_only`: for its history alone).
    fn hand_over(&mut self, entry: &Reply, history_only: bool) -> Result<(), ReadEnd> {
        let Entry {
            stream_id,
            prev,
            fields,
        } = match parse_entry(entry) {
            Ok(parsed) => parsed,
            Err(why) => {
                if let Some(id) = entry_stream_id(entry) {
                    self.cursor = Some(id);
                }
                self.skip(&format!("an entry that is not tickcast's: {why}"));
                return Ok(());
            }
        };
        self.cursor = Some(stream_id.clone());
        // tour: cluster-gap
        if prev > self.last_id && !history_only {
            // Entries between the last one read and this one's predecessor were
            // trimmed while this node was cut off.
            let reason = "this node was cut off from the cluster for longer than the \
                          stream keeps events: reload";
            self.send(Broadcast {
                missed_up_to: Some(prev),
                ..Broadcast::new(Some("reset"), message::reset(self.last_id, prev, reason))
            })?;
            log::warn!(
                "cluster: events after {} up to {prev} were trimmed from the stream before \
                 this node read them; its clients were sent a reset notice",
                self.last_id
            );
        }
        let Some(id) = entry::event_id(&stream_id) else {
            self.skip(&format!("entry {stream_id}: not an id tickcast gives"));
            return Ok(());
        };
        // Read, even if it cannot be sent (a kind from a newer tickcast): the next
        // entry names it as `prev`, which must not look like a gap.
        self.last_id = self.last_id.max(id);
        let publication = match entry::publication(&fields) {
            Ok(publication) => publication,
            Err(why) => {
                self.skip(&format!("entry {stream_id}: {why}"));
                return Ok(());
            }
        };
        self.metrics
            .cluster_events_read
            .fetch_add(1, Ordering::Relaxed);
        self.send(Broadcast {
            history_only,
            ..publication.into_broadcast(id)
        })
    }

    /// Counts and logs an entry that is not sent.
    fn skip(&self, what: &str) {
        self.metrics
            .cluster_entries_invalid
            .fetch_add(1, Ordering::Relaxed);
        log::warn!("cluster: skipped {what}");
    }

    fn send(&self, broadcast: Broadcast) -> Result<(), ReadEnd> {
        self.frames_tx.send(broadcast).map_err(|_| ReadEnd::Stop)
    }
}

/// `cluster-keeper`: presence notices into the stream, and the node counts.
struct Keeper {
    log: Arc<RedisLog>,
    keys: Keys,
    number: u32,
    /// Whether the number is known to be this node's alone.
    reserved: bool,
    state: Arc<ClusterState>,
    metrics: Arc<Metrics>,
    presence_rx: Receiver<Publication>,
    /// For notices that cannot reach the stream: announced locally instead.
    frames_tx: Sender<Broadcast>,
    stop_rx: Receiver<()>,
}

impl Keeper {
    fn run(mut self) {
        let mut next_beat = Instant::now();
        loop {
            let wait = next_beat.saturating_duration_since(Instant::now());
            select! {
                recv(self.presence_rx) -> notice => match notice {
                    Ok(notice) => self.announce(notice),
                    // The hub has ended.
                    Err(_) => break,
                },
                recv(self.stop_rx) -> _ => break,
                default(wait) => {
                    self.beat();
                    next_beat = Instant::now() + BEAT;
                }
            }
        }
        // The hub has ended (shutdown stops the cluster after it): what it left,
        // its clients' leave, goes to the other nodes.
        for notice in self.presence_rx.try_iter() {
            if let Err(e) = self.log.append_entry(&notice) {
                log::info!("cluster: the other nodes will not hear this node's last notice: {e}");
            }
        }
        let node = self.keys.node(self.number);
        let number = self.number.to_string();
        let left = self.log.with_connection(|c| {
            c.command(&[b"DEL", node.as_bytes()])?;
            c.command(&[b"SREM", self.keys.nodes.as_bytes(), number.as_bytes()])
        });
        if let Err(e) = left {
            log::info!(
                "cluster: could not remove this node's count ({}); the others stop counting \
                 it within {NODE_TTL:?}",
                explain(&e)
            );
        }
        log::debug!("cluster-keeper: stopped");
    }

    /// Appends a join or leave notice; if the stream cannot be reached, this
    /// node's clients hear it anyway.
    fn announce(&self, notice: Publication) {
        if self.log.append_entry(&notice).is_err()
            && self.frames_tx.send(notice.into_broadcast(0)).is_err()
        {
            log::debug!("cluster-keeper: the hub stopped before a notice");
        }
    }

    /// Reports this node's count and reads the others'.
    fn beat(&mut self) {
        let clients = self.metrics.clients.load(Ordering::Relaxed).to_string();
        let node = self.keys.node(self.number);
        let ttl = NODE_TTL.as_millis().to_string();
        let number = self.number.to_string();
        let keys = &self.keys;
        let reserved = &mut self.reserved;
        let counted = self.log.with_connection(|c| {
            if !*reserved {
                // Redis was down at startup: claim the number now, if no one has.
                let claimed = c.command(&[
                    b"SET",
                    node.as_bytes(),
                    clients.as_bytes(),
                    b"NX",
                    b"PX",
                    ttl.as_bytes(),
                ])?;
                if claimed == Reply::Nil {
                    log::error!(
                        "cluster: another node also took number {number} while Redis was \
                         down, so client ids may clash: restart this node"
                    );
                }
                *reserved = true;
            }
            c.command(&[
                b"SET",
                node.as_bytes(),
                clients.as_bytes(),
                b"PX",
                ttl.as_bytes(),
            ])?;
            c.command(&[b"SADD", keys.nodes.as_bytes(), number.as_bytes()])?;
            let members = c.command(&[b"SMEMBERS", keys.nodes.as_bytes()])?;
            let others: Vec<String> = members
                .items()
                .unwrap_or(&[])
                .iter()
                .filter_map(|m| m.text().map(str::to_string))
                .filter(|m| *m != number)
                .collect();
            if others.is_empty() {
                return Ok((0, 1));
            }
            let others_keys: Vec<String> = others.iter().map(|m| keys.node(m)).collect();
            let mut mget: Vec<&[u8]> = vec![b"MGET"];
            mget.extend(others_keys.iter().map(|k| k.as_bytes()));
            let counts = c.command(&mget)?;
            let (mut elsewhere, mut nodes) = (0u64, 1u64);
            for (member, count) in others.iter().zip(counts.items().unwrap_or(&[])) {
                match count.text().and_then(|t| t.parse::<u64>().ok()) {
                    Some(n) => {
                        elsewhere += n;
                        nodes += 1;
                    }
                    // Its count expired: it is gone.
                    None => {
                        c.command(&[b"SREM", keys.nodes.as_bytes(), member.as_bytes()])?;
                    }
                }
            }
            Ok((elsewhere, nodes))
        });
        match counted {
            Ok((elsewhere, nodes)) => {
                self.state.set_clients_elsewhere(elsewhere);
                self.metrics.cluster_nodes.store(nodes, Ordering::Relaxed);
            }
            // The reader says so in the log; the counts stay as last known.
            Err(e) => log::debug!("cluster-keeper: {}", explain(&e)),
        }
    }
}

/// Reserves a free node number: `SET <key>:node:<n> 0 NX`, for a random `n`.
fn reserve_number(connection: &mut Connection, keys: &Keys) -> Result<u32, Error> {
    let ttl = NODE_TTL.as_millis().to_string();
    for _ in 0..32 {
        let number = random_number();
        let key = keys.node(number);
        let reply = connection
            .command(&[b"SET", key.as_bytes(), b"0", b"NX", b"PX", ttl.as_bytes()])
            .map_err(|e| Error::InvalidConfig(format!("--redis: {}", explain(&e))))?;
        if reply != Reply::Nil {
            return Ok(number);
        }
    }
    Err(Error::InvalidConfig(
        "--redis: found no free node number in 32 tries; is the key prefix shared with \
         something else? Try another --redis-key"
            .into(),
    ))
}

/// A random node number in 1..2^20, from std's randomly seeded hasher.
fn random_number() -> u32 {
    let random = RandomState::new().hash_one(Instant::now());
    u32::try_from(random % (NODES - 1) + 1).unwrap_or(1)
}

/// A stream entry, as read.
struct Entry {
    /// Its stream id, `ms-seq`.
    stream_id: String,
    /// The event id of the entry appended before it.
    prev: u64,
    /// Its fields and values, `prev` included.
    fields: Vec<(String, String)>,
}

/// An entry `[id, [field, value, …]]`.
fn parse_entry(entry: &Reply) -> Result<Entry, String> {
    let id = entry_stream_id(entry).ok_or("an entry without an id")?;
    let items = entry
        .items()
        .and_then(|pair| pair.get(1))
        .and_then(Reply::items)
        .ok_or("an entry without fields")?;
    let mut fields = Vec::with_capacity(items.len() / 2);
    for pair in items.chunks(2) {
        match pair {
            [name, value] => {
                let name = name.text().ok_or("a field name that is not UTF-8")?;
                let value = value.text().ok_or("a field value that is not UTF-8")?;
                fields.push((name.to_string(), value.to_string()));
            }
            _ => return Err("an odd number of fields".into()),
        }
    }
    let prev = fields
        .iter()
        .find(|(name, _)| name == "prev")
        .and_then(|(_, value)| value.parse().ok())
        .ok_or("no prev field")?;
    Ok(Entry {
        stream_id: id,
        prev,
        fields,
    })
}

fn entry_stream_id(entry: &Reply) -> Option<String> {
    entry.items()?.first()?.text().map(str::to_string)
}

/// A failure as one line a user can act on.
fn explain(e: &RespError) -> String {
    match e {
        RespError::Redis(message) if message.starts_with("NOAUTH") => {
            "Redis wants a password: put it in the URL, redis://:PASSWORD@HOST:PORT".into()
        }
        RespError::Redis(message)
            if message.starts_with("WRONGPASS") || message.contains("invalid password") =>
        {
            "Redis refused the password (or user) in the URL".into()
        }
        RespError::Redis(message) if message.contains("without any password configured") => {
            "Redis has no password set: leave it out of the URL".into()
        }
        e => e.to_string(),
    }
}

/// Waits between reconnects: 100 ms, doubling up to 5 s.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        self.failures += 1;
        Duration::from_millis(100 << self.failures.min(6)).min(Duration::from_secs(5))
    }

    /// Whether the last failure was the first of a run.
    fn first_failure(&self) -> bool {
        self.failures == 1
    }

    /// Starts over after a success; returns whether there had been failures.
    fn reset(&mut self) -> bool {
        std::mem::take(&mut self.failures) > 0
    }
}

/// A lock whose data stays valid if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
