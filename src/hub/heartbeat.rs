//! The heartbeat: how the hub tells a live client from a dead connection.
//!
//! Every `--heartbeat` interval the hub pings every WebSocket client (one encoded
//! ping frame for all) and cuts off, with reason `timeout`, each one that has sent
//! nothing at all since the previous ping; browsers answer pings by themselves.
//! The pings go out a sixteenth of the clients at a time, spread over the
//! interval, so their answers never arrive all together. SSE clients cannot
//! answer, so they get a `: heartbeat` comment that keeps proxies from closing the
//! stream.
//!
//! Runs on the hub thread, when [`Heartbeat::next`] is due: the hub asks for the
//! next [`Round`], cuts off the round's silent clients and pings the rest. Each
//! client's thread records when it last heard from its client in its outbox, in
//! [`clock_ms`] time.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::sink::Encoded;
use crate::wire::message::ClientId;
use crate::wire::{frame, sse};

/// Milliseconds on a monotonic clock shared by every thread of the process: the
/// time a client was last heard from, and a group was last pinged.
pub(crate) fn clock_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let elapsed = EPOCH.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// The heartbeat pings one of this many groups of clients at a time (a client's
/// group is its id modulo this), one group every `--heartbeat / HEARTBEAT_GROUPS`.
/// Pinging everyone at once would bring every answer back at once: 10,000 pongs
/// waking 10,000 threads in the same few milliseconds, and whatever broadcast
/// falls in that moment reaching its clients late.
const HEARTBEAT_GROUPS: u64 = 16;

/// Which group to ping next and when, and when each group was last pinged.
pub(super) struct Heartbeat {
    /// Time between two pings to the same client.
    every: Duration,
    /// When to ping the next group.
    pub(super) next: Instant,
    /// The group to ping next.
    group: u64,
    /// Per group, [`clock_ms`] time of its previous ping: clients of the group
    /// silent since then are dead.
    last_ping_ms: [Option<u64>; HEARTBEAT_GROUPS as usize],
}

impl Heartbeat {
    /// A heartbeat pinging every client once per `every`; the first group is due
    /// one step from now.
    pub(super) fn new(every: Duration) -> Heartbeat {
        let mut heartbeat = Heartbeat {
            every,
            next: Instant::now(),
            group: 0,
            last_ping_ms: [None; HEARTBEAT_GROUPS as usize],
        };
        heartbeat.next += heartbeat.step();
        heartbeat
    }

    /// Time between two groups' pings.
    fn step(&self) -> Duration {
        self.every / HEARTBEAT_GROUPS as u32
    }
}

/// One group's turn: who is pinged now, and since when a client must have been
/// heard from to be alive.
pub(super) struct Round {
    /// The group pinged in this round: the clients whose id is this modulo the groups.
    group: u64,
    /// The group's previous ping, in [`clock_ms`] time; `None` on its first turn.
    previous_ping_ms: Option<u64>,
}

impl Round {
    /// Whether the client `id` is pinged in this round.
    pub(super) fn includes(&self, id: ClientId) -> bool {
        id % HEARTBEAT_GROUPS == self.group
    }

    /// Whether a client of this round last heard from at `last_heard_ms` has
    /// stayed silent since the group's previous ping: dead, to be cut off.
    pub(super) fn is_silent(&self, last_heard_ms: u64) -> bool {
        self.previous_ping_ms
            .is_some_and(|previous| last_heard_ms < previous)
    }

    /// The ping, as a frame for WebSocket clients and a comment for SSE clients.
    pub(super) fn ping(&self) -> Encoded<'static> {
        static PING: OnceLock<Vec<u8>> = OnceLock::new();
        Encoded {
            frame: PING.get_or_init(frame::ping_frame),
            sse: Some(sse::chunk(": heartbeat\n\n")),
            messages: 1,
        }
    }
}

impl Heartbeat {
    /// Starts the next group's turn: the next one is due a step from now.
    pub(super) fn next_round(&mut self) -> Round {
        self.next = Instant::now() + self.step();
        let group = self.group;
        self.group = (group + 1) % HEARTBEAT_GROUPS;
        Round {
            group,
            previous_ping_ms: self.last_ping_ms[group as usize].replace(clock_ms()),
        }
    }
}
