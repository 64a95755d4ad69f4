//! A model-based test of the hub.
//!
//! Random sequences of bursts — joins, leaves, broadcasts, each up to a few
//! thousand at once, far more than every batch constant of the hub
//! (`EVENT_BATCH`, `BROADCAST_BATCH`, `FRAME_QUEUE`) — go through the hub's real
//! channels to the real hub thread. After each burst the outcome is checked,
//! client by client, against a plain model (a map of who is connected):
//!
//! - every join is answered exactly once, with a fresh id, and the client's first
//!   event is its welcome, counting the clients the model counts and naming the
//!   newest event id;
//! - a client that joins asking to resume after an id gets, right after its
//!   welcome, every event after that id for its topics (or a `reset`, exactly when
//!   the history no longer holds the first of them);
//! - every leave is processed: the client's stream ends, and the `clients` gauge
//!   equals joins − leaves;
//! - every published event reaches every client present that it is for (everyone,
//!   or its topic's subscribers), once, in order, and no other client;
//! - shutdown ends the hub thread and every client's stream, after every
//!   broadcast published before it.
//!
//! The clients are SSE sinks: the hub writes to them exactly as to a browser's
//! `EventSource`, and the test reads the encoded events back from their queues.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::thread;

use crossbeam_channel::{bounded, unbounded, RecvTimeoutError, Sender};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use super::sink::{channel, SseQueue};
use super::*;
use crate::wire::sse;
use crate::wire::subscription::Subscription;

/// How long the hub may take to answer anything before the test fails. Generous:
/// a debug build on a loaded 2-core machine, bursts of thousands.
const WAIT: Duration = Duration::from_secs(20);

/// The largest burst of each kind. Every one can exceed the hub's batch sizes.
const MAX_JOINS: usize = 2_500;
const MAX_BROADCASTS: usize = 1_200;

/// The history the hub keeps in these tests: fewer events than two bursts of
/// broadcasts, so that resuming clients meet both replays and resets.
const HISTORY: usize = 1000;

/// The topics clients subscribe to and events go to.
const TOPICS: [&str; 3] = ["a", "b", "c"];

/// One step of a test case: a burst of one kind of event, sent as fast as the
/// channels take it.
#[derive(Debug, Clone)]
enum Burst {
    /// This many new clients join at once; `seed` chooses their topics, and which
    /// of them resume after which id.
    Join { n: usize, seed: u64 },
    /// About `percent` % of the connected clients (chosen by `seed`) leave at once.
    Leave { percent: u8, seed: u64 },
    /// This many events are published back to back; `seed` chooses their topics.
    Broadcast { n: usize, seed: u64 },
}

fn burst() -> impl Strategy<Value = Burst> {
    prop_oneof![
        (1..=MAX_JOINS, any::<u64>()).prop_map(|(n, seed)| Burst::Join { n, seed }),
        (1..=100u8, any::<u64>()).prop_map(|(percent, seed)| Burst::Leave { percent, seed }),
        (1..=MAX_BROADCASTS, any::<u64>()).prop_map(|(n, seed)| Burst::Broadcast { n, seed }),
    ]
}

/// A number from `seed` and `k` (a SplitMix64 step), for choices that must be the
/// same when proptest replays a case.
fn pick(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The topic of the `k`-th event of a burst: none (everyone) half of the time.
fn event_topic(seed: u64, k: u64) -> Option<Topic> {
    let r = pick(seed, k) % 6;
    TOPICS
        .get(usize::try_from(r).unwrap())
        .map(|t| Topic::new(t).unwrap())
}

/// Published event `id`, as a publisher hands it to the hub.
fn published(id: u64, topic: Option<Topic>) -> Broadcast {
    Broadcast {
        id: Some(id),
        topic,
        ..Broadcast::new(None, format!("b{id}"))
    }
}

/// One event as an `EventSource` would see it: its id, its name (`None` for a
/// plain message) and its data.
#[derive(Debug)]
struct Event {
    id: Option<u64>,
    name: Option<String>,
    data: String,
}

/// Decodes what the hub queued for an SSE client: HTTP chunks, each holding one
/// or more SSE events.
fn decode(mut bytes: &[u8]) -> Vec<Event> {
    let mut text = String::new();
    while !bytes.is_empty() {
        let line_end = bytes
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = std::str::from_utf8(&bytes[..line_end]).expect("ASCII chunk size");
        let size = usize::from_str_radix(size, 16).expect("a hex chunk size");
        let body = &bytes[line_end + 2..line_end + 2 + size];
        text.push_str(std::str::from_utf8(body).expect("UTF-8 events"));
        assert_eq!(&bytes[line_end + 2 + size..line_end + 4 + size], b"\r\n");
        bytes = &bytes[line_end + 4 + size..];
    }
    text.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            let mut id = None;
            let mut name = None;
            let mut data = Vec::new();
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("id: ") {
                    id = Some(value.parse().expect("a numeric id"));
                } else if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_string());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push(value);
                }
            }
            Event {
                id,
                name,
                data: data.join("\n"),
            }
        })
        .collect()
}

/// What the `k`-th client of a burst asks the hub to write before its welcome (an
/// SSE comment, so that it decodes like the rest).
fn greeting(k: usize) -> Vec<u8> {
    sse::chunk(&format!(": hello {k}\n\n")).to_vec()
}

/// A connected client, as the model knows it.
struct ModelClient {
    queue: SseQueue,
    /// The topics it subscribed to.
    topics: Vec<Topic>,
}

impl ModelClient {
    /// Whether an event to `topic` is for this client.
    fn wants(&self, topic: Option<&Topic>) -> bool {
        topic.is_none_or(|t| self.topics.contains(t))
    }
}

impl ModelClient {
    /// The next event queued for this client, waiting at most [`WAIT`] for it.
    fn next_events(&self, id: ClientId, waiting_for: &str) -> Vec<Event> {
        match self.queue.recv_timeout(WAIT) {
            Ok(chunk) => decode(&chunk),
            Err(e) => {
                panic!("client {id}: nothing more arrived while waiting for {waiting_for} ({e})")
            }
        }
    }
}

/// The real hub on its own thread, its channels, and the model to check it by.
struct Harness {
    events_tx: Sender<HubEvent>,
    frames_tx: Sender<Broadcast>,
    metrics: Arc<Metrics>,
    /// Disconnected when the hub thread has returned.
    hub_done_rx: Receiver<()>,
    /// The model: who is connected.
    clients: BTreeMap<ClientId, ModelClient>,
    joins: u64,
    leaves: u64,
    /// The topic of every event published so far: event `id` is at `id - 1` (its
    /// text is `b<id>`).
    published: Vec<Option<Topic>>,
    /// Messages the hub must have counted in `frames_sent` (welcomes and
    /// broadcasts; presence notices come on top).
    messages_delivered: u64,
}

impl Harness {
    fn start() -> Harness {
        let (events_tx, events_rx) = unbounded();
        let (frames_tx, frames_rx) = bounded(FRAME_QUEUE);
        let metrics = Arc::new(Metrics::default());
        let history = HistoryLimits {
            events: HISTORY,
            bytes: 1 << 20,
            newest: 0,
        };
        let hub = Hub::new(
            Duration::from_millis(50),
            None,
            history,
            None,
            None,
            metrics.clone(),
        );
        let (hub_done_tx, hub_done_rx) = bounded::<()>(0);
        thread::Builder::new()
            .name("hub".into())
            .spawn(move || {
                let _done = hub_done_tx;
                hub.run(events_rx, frames_rx);
            })
            .expect("start the hub thread");
        Harness {
            events_tx,
            frames_tx,
            metrics,
            hub_done_rx,
            clients: BTreeMap::new(),
            joins: 0,
            leaves: 0,
            published: Vec::new(),
            messages_delivered: 0,
        }
    }

    fn run(&mut self, burst: &Burst) {
        match *burst {
            Burst::Join { n, seed } => self.join(n, seed),
            Burst::Leave { percent, seed } => self.leave(percent, seed),
            Burst::Broadcast { n, seed } => self.broadcast(n, seed),
        }
    }

    /// The newest event id published.
    fn newest(&self) -> u64 {
        self.published.len() as u64
    }

    /// What the `k`-th client of a join burst asks for: a few topics, and, for
    /// one in three, to resume after an id up to 1.5 histories back.
    fn subscription(&self, seed: u64, k: u64) -> Subscription {
        let r = pick(seed, k);
        let topics = TOPICS
            .iter()
            .enumerate()
            .filter(|(i, _)| r >> i & 1 == 1)
            .map(|(_, t)| Topic::new(t).unwrap())
            .collect();
        let since = (r >> 8 & 3 == 0).then(|| {
            let back = (r >> 16) % (HISTORY as u64 * 3 / 2 + 1);
            self.newest().saturating_sub(back)
        });
        Subscription { topics, since }
    }

    /// `n` clients join at once; each must be answered once, welcomed first,
    /// counted, and handed what it missed if it resumes.
    fn join(&mut self, n: usize, seed: u64) {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let before = self.clients.len();
        let waiting: Vec<_> = (0..n)
            .map(|k| {
                let (sink, queue) = channel(usize::MAX);
                let (id_tx, id_rx) = answer::channel();
                let greeting = greeting(k);
                let subscription = self.subscription(seed, k as u64);
                let join = HubEvent::Join(Joining {
                    sink: Sink::Sse(sink),
                    subscription: subscription.clone(),
                    greeting: greeting.clone(),
                    peer,
                    id_tx,
                });
                self.events_tx.send(join).expect("the hub is running");
                (queue, id_rx, greeting, subscription)
            })
            .collect();
        let mut last_id = self.clients.keys().next_back().copied().unwrap_or(0);
        let mut replayed = 0;
        for (k, (queue, id_rx, greeting, subscription)) in waiting.into_iter().enumerate() {
            // One answer at most: the hub's end is used up by `send`.
            let id = id_rx.recv_timeout(WAIT).unwrap_or_else(|e| {
                panic!(
                    "join {k} of a burst of {n} ({before} clients before) was never answered: {e}"
                )
            });
            assert!(
                id > last_id,
                "join {k} of {n} got id {id}, not above {last_id}"
            );
            last_id = id;
            let client = ModelClient {
                queue,
                topics: subscription.topics,
            };
            // The greeting and the welcome arrive together, before anything else.
            let first = client
                .queue
                .recv_timeout(WAIT)
                .unwrap_or_else(|e| panic!("client {id}: no greeting and welcome ({e})"));
            assert!(
                first.starts_with(&greeting),
                "client {id}: its first bytes are not its greeting"
            );
            let first = decode(&first[greeting.len()..]);
            let welcome = &first[0];
            assert_eq!(
                welcome.name.as_deref(),
                Some("welcome"),
                "client {id}'s first event"
            );
            let welcome: serde_json::Value = serde_json::from_str(&welcome.data).unwrap();
            assert_eq!(welcome["id"], id, "client {id}'s welcome");
            assert_eq!(
                welcome["clients"],
                before + k + 1,
                "client {id} (join {k} of {n}) was told the wrong count"
            );
            assert_eq!(welcome["last_id"], self.newest(), "client {id}'s welcome");
            let after_welcome: Vec<&Event> = first[1..].iter().collect();
            replayed += self.check_resume(id, &client, subscription.since, &after_welcome);
            self.clients.insert(id, client);
        }
        self.joins += n as u64;
        self.messages_delivered += n as u64 + replayed;
        self.check_counters();
    }

    /// Checks what client `id` got right after its welcome: nothing if it did not
    /// resume; if it did, the events after `since` for its topics, or a `reset`
    /// exactly when the first of them has left the history. Returns how many
    /// messages that was.
    fn check_resume(
        &self,
        id: ClientId,
        client: &ModelClient,
        since: Option<u64>,
        got: &[&Event],
    ) -> u64 {
        let Some(since) = since else {
            assert!(
                got.is_empty(),
                "client {id} did not resume, yet got {got:?}"
            );
            return 0;
        };
        let newest = self.newest();
        let oldest_kept = newest.saturating_sub(HISTORY as u64) + 1;
        if since + 1 < oldest_kept {
            assert!(
                matches!(got, [reset] if reset.name.as_deref() == Some("reset")),
                "client {id} resumed after {since}, but the history starts at {oldest_kept}: \
                 expected a reset, got {got:?}"
            );
            return 1;
        }
        let want: Vec<u64> = (since + 1..=newest)
            .filter(|&e| client.wants(self.published[e as usize - 1].as_ref()))
            .collect();
        let ids: Vec<Option<u64>> = got.iter().map(|e| e.id).collect();
        let want_ids: Vec<Option<u64>> = want.iter().map(|&e| Some(e)).collect();
        assert_eq!(
            ids, want_ids,
            "client {id} (topics {:?}) resumed after {since} (newest {newest})",
            client.topics
        );
        for (event, e) in got.iter().zip(&want) {
            assert_eq!(event.data, format!("b{e}"), "client {id}'s replay");
        }
        want.len() as u64
    }

    /// About `percent` % of the clients leave at once; the hub must forget every
    /// one of them.
    fn leave(&mut self, percent: u8, seed: u64) {
        let leaving: Vec<ClientId> = self
            .clients
            .keys()
            .copied()
            .filter(|id| (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed) % 100 < u64::from(percent))
            .collect();
        for &id in &leaving {
            let leave = HubEvent::Leave {
                id,
                reason: LeaveReason::Closed,
            };
            self.events_tx.send(leave).expect("the hub is running");
        }
        let gone: Vec<_> = leaving
            .iter()
            .map(|id| (*id, self.clients.remove(id).expect("a connected client")))
            .collect();
        self.leaves += gone.len() as u64;
        // Events are handled in order: once a client that joins after the leaves
        // is answered, every leave before it has been handled.
        self.join(1, seed);
        for (id, client) in gone {
            loop {
                match client.queue.recv_timeout(Duration::ZERO) {
                    Ok(_) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        panic!("client {id} left, but the hub still holds its stream")
                    }
                }
            }
        }
    }

    /// Publishes `n` events back to back, each to everyone or to a topic
    /// (`seed`); returns the ids.
    fn publish(&mut self, n: usize, seed: u64) -> std::ops::RangeInclusive<u64> {
        let first = self.newest() + 1;
        for k in 0..n as u64 {
            let topic = event_topic(seed, k);
            self.published.push(topic.clone());
            let broadcast = published(first + k, topic);
            self.frames_tx.send(broadcast).expect("the hub is running");
        }
        first..=self.newest()
    }

    /// The ids among `ids` that are for `client`.
    fn wanted(&self, client: &ModelClient, ids: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        ids.filter(|&e| client.wants(self.published[e as usize - 1].as_ref()))
            .collect()
    }

    /// `n` events back to back; every connected client must receive each one that
    /// is for it, once, in order, and no other.
    fn broadcast(&mut self, n: usize, seed: u64) {
        let ids = self.publish(n, seed);
        for (&id, client) in &self.clients {
            let want = self.wanted(client, ids.clone());
            self.messages_delivered += want.len() as u64;
            let mut next = want.iter().peekable();
            // A client with nothing to get has nothing to wait for; the next
            // burst's checks would see a stray event.
            while let Some(&&expected) = next.peek() {
                for event in client.next_events(id, &format!("event b{expected}")) {
                    if event.name.is_some() {
                        continue; // a join or leave notice
                    }
                    let expected = next.next().copied();
                    assert_eq!(
                        (event.id, Some(event.data.as_str())),
                        (expected, expected.map(|e| format!("b{e}")).as_deref()),
                        "client {id} (topics {:?}): events {ids:?}",
                        client.topics
                    );
                }
            }
        }
    }

    /// The hub's counters agree with the model.
    fn check_counters(&self) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(
            get(&self.metrics.clients),
            self.clients.len() as u64,
            "the clients gauge (joins {} − leaves {})",
            self.joins,
            self.leaves
        );
        assert_eq!(get(&self.metrics.joined), self.joins, "clients joined");
        assert_eq!(self.metrics.left.total(), self.leaves, "clients left");
    }

    /// `broadcasts` events, then shutdown: every client gets each of them that is
    /// for it before its stream ends, and the hub thread ends.
    fn shut_down(mut self, broadcasts: usize, seed: u64) {
        let ids = self.publish(broadcasts, seed);
        self.events_tx
            .send(HubEvent::Shutdown)
            .expect("the hub is running");
        assert_eq!(
            self.hub_done_rx.recv_timeout(WAIT),
            Err(RecvTimeoutError::Disconnected),
            "the hub thread did not end after Shutdown"
        );
        let mut delivered = self.messages_delivered;
        for (&id, client) in &self.clients {
            let want = self.wanted(client, ids.clone());
            delivered += want.len() as u64;
            let mut got = Vec::new();
            loop {
                match client.queue.recv_timeout(Duration::ZERO) {
                    Ok(chunk) => {
                        let events = decode(&chunk).into_iter().filter(|e| e.name.is_none());
                        got.extend(events.map(|e| e.id.expect("a published event's id")));
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        panic!("client {id}'s stream outlived the hub")
                    }
                }
            }
            assert_eq!(
                got, want,
                "client {id} (topics {:?}): the events {ids:?} published before the shutdown",
                client.topics
            );
        }
        let counted = self.metrics.frames_sent.load(Ordering::Relaxed);
        assert!(
            counted >= delivered,
            "frames_sent counts {counted}, but {delivered} messages were delivered"
        );
    }
}

proptest! {
    // Each case sends thousands of events; a few dozen cases cover the sizes.
    // PROPTEST_CASES=200 runs more.
    #![proptest_config(ProptestConfig {
        cases: 12,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The hub loses nothing in bursts larger than its batches: see the module docs.
    #[test]
    fn hub_matches_the_model_in_bursts(
        first_joins in 1..=MAX_JOINS,
        bursts in proptest::collection::vec(burst(), 1..=6),
        last_broadcasts in 0..=MAX_BROADCASTS,
        seed in any::<u64>(),
    ) {
        let mut harness = Harness::start();
        harness.join(first_joins, seed);
        for burst in &bursts {
            harness.run(burst);
        }
        harness.shut_down(last_broadcasts, seed);
    }
}
