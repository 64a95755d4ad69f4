//! A model-based test of the hub.
//!
//! Random sequences of bursts — joins, leaves, broadcasts, each up to a few
//! thousand at once, far more than every batch constant of the hub
//! (`EVENT_BATCH`, `BROADCAST_BATCH`, `FRAME_QUEUE`) — go through the hub's real
//! channels to the real hub thread. After each burst the outcome is checked,
//! client by client, against a plain model (a map of who is connected):
//!
//! - every join is answered exactly once, with a fresh id, and the client's first
//!   event is its welcome, counting the clients the model counts;
//! - every leave is processed: the client's stream ends, and the `clients` gauge
//!   equals joins − leaves;
//! - every broadcast reaches every client present, once, in order;
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

/// One step of a test case: a burst of one kind of event, sent as fast as the
/// channels take it.
#[derive(Debug, Clone)]
enum Burst {
    /// This many new clients join at once.
    Join(usize),
    /// About `percent` % of the connected clients (chosen by `seed`) leave at once.
    Leave { percent: u8, seed: u64 },
    /// This many broadcasts are published back to back.
    Broadcast(usize),
}

fn burst() -> impl Strategy<Value = Burst> {
    prop_oneof![
        (1..=MAX_JOINS).prop_map(Burst::Join),
        (1..=100u8, any::<u64>()).prop_map(|(percent, seed)| Burst::Leave { percent, seed }),
        (1..=MAX_BROADCASTS).prop_map(Burst::Broadcast),
    ]
}

/// One event as an `EventSource` would see it: its name (`None` for a plain
/// message) and its data.
#[derive(Debug)]
struct Event {
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
            let mut name = None;
            let mut data = Vec::new();
            for line in event.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = Some(value.to_string());
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push(value);
                }
            }
            Event {
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
    /// Number of the next broadcast (its text is `b<number>`).
    next_broadcast: u64,
    /// Messages the hub must have counted in `frames_sent` (welcomes and
    /// broadcasts; presence notices come on top).
    messages_delivered: u64,
}

impl Harness {
    fn start() -> Harness {
        let (events_tx, events_rx) = unbounded();
        let (frames_tx, frames_rx) = bounded(FRAME_QUEUE);
        let metrics = Arc::new(Metrics::default());
        let hub = Hub::new(Duration::from_millis(50), None, None, metrics.clone());
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
            next_broadcast: 1,
            messages_delivered: 0,
        }
    }

    fn run(&mut self, burst: &Burst) {
        match *burst {
            Burst::Join(n) => self.join(n),
            Burst::Leave { percent, seed } => self.leave(percent, seed),
            Burst::Broadcast(n) => self.broadcast(n),
        }
    }

    /// `n` clients join at once; each must be answered once, welcomed first, and
    /// counted.
    fn join(&mut self, n: usize) {
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let before = self.clients.len();
        let waiting: Vec<_> = (0..n)
            .map(|k| {
                let (sink, queue) = channel(usize::MAX);
                let (id_tx, id_rx) = bounded(1);
                let greeting = greeting(k);
                let join = HubEvent::Join(Joining {
                    sink: Sink::Sse(sink),
                    subscription: Subscription::default(),
                    greeting: greeting.clone(),
                    peer,
                    id_tx,
                });
                self.events_tx.send(join).expect("the hub is running");
                (queue, id_rx, greeting)
            })
            .collect();
        let mut last_id = self.clients.keys().next_back().copied().unwrap_or(0);
        for (k, (queue, id_rx, greeting)) in waiting.into_iter().enumerate() {
            let id = id_rx.recv_timeout(WAIT).unwrap_or_else(|e| {
                panic!(
                    "join {k} of a burst of {n} ({before} clients before) was never answered: {e}"
                )
            });
            assert_eq!(
                id_rx.recv_timeout(WAIT),
                Err(RecvTimeoutError::Disconnected),
                "join {k} of {n} was answered twice"
            );
            assert!(
                id > last_id,
                "join {k} of {n} got id {id}, not above {last_id}"
            );
            last_id = id;
            let client = ModelClient { queue };
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
            self.clients.insert(id, client);
        }
        self.joins += n as u64;
        self.messages_delivered += n as u64;
        self.check_counters();
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
        self.join(1);
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

    /// `n` broadcasts back to back; every connected client must receive each one,
    /// once, in order.
    fn broadcast(&mut self, n: usize) {
        let first = self.next_broadcast;
        let last = first + n as u64 - 1;
        self.next_broadcast = last + 1;
        for number in first..=last {
            let broadcast = Broadcast::new(None, format!("b{number}"));
            self.frames_tx.send(broadcast).expect("the hub is running");
        }
        self.messages_delivered += n as u64 * self.clients.len() as u64;
        for (&id, client) in &self.clients {
            let mut expected = first;
            while expected <= last {
                for event in client.next_events(id, &format!("broadcast b{expected}")) {
                    if event.name.is_some() {
                        continue; // a join or leave notice
                    }
                    assert_eq!(
                        event.data,
                        format!("b{expected}"),
                        "client {id} expected broadcast b{expected} of b{first}..=b{last}"
                    );
                    expected += 1;
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

    /// `broadcasts` broadcasts, then shutdown: every client gets each of them before
    /// its stream ends, and the hub thread ends.
    fn shut_down(self, broadcasts: usize) {
        let first = self.next_broadcast;
        let last = first + broadcasts as u64;
        for number in first..last {
            let broadcast = Broadcast::new(None, format!("b{number}"));
            self.frames_tx.send(broadcast).expect("the hub is running");
        }
        self.events_tx
            .send(HubEvent::Shutdown)
            .expect("the hub is running");
        assert_eq!(
            self.hub_done_rx.recv_timeout(WAIT),
            Err(RecvTimeoutError::Disconnected),
            "the hub thread did not end after Shutdown"
        );
        let delivered = self.messages_delivered + broadcasts as u64 * self.clients.len() as u64;
        let counted = self.metrics.frames_sent.load(Ordering::Relaxed);
        assert!(
            counted >= delivered,
            "frames_sent counts {counted}, but {delivered} messages were delivered"
        );
        for (id, client) in self.clients {
            let mut expected = first;
            loop {
                match client.queue.recv_timeout(Duration::ZERO) {
                    Ok(chunk) => {
                        for event in decode(&chunk).into_iter().filter(|e| e.name.is_none()) {
                            assert_eq!(
                                event.data,
                                format!("b{expected}"),
                                "client {id}: broadcasts before the shutdown"
                            );
                            expected += 1;
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        panic!("client {id}'s stream outlived the hub")
                    }
                }
            }
            assert_eq!(
                expected, last,
                "client {id} got b{first}..b{expected} of the broadcasts sent before the \
                 shutdown, not all up to b{last} (exclusive)"
            );
        }
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
    ) {
        let mut harness = Harness::start();
        harness.join(first_joins);
        for burst in &bursts {
            harness.run(burst);
        }
        harness.shut_down(last_broadcasts);
    }
}
