//! What an embedding program hears of its clients: [`ClientEvent`]s, read from
//! [`ClientEvents`] on a thread of the program's own.
//!
//! Off unless [`Config::client_events`](crate::Config::client_events) gives the
//! queue a size. Then:
//!
//! - the **hub** thread sends [`ClientEvent::Joined`] as it welcomes a client, and
//!   [`ClientEvent::Left`] as it removes one. The hub never waits: if the queue is
//!   full, the event is dropped, counted (`tickcast_client_events_dropped_total`)
//!   and logged;
//! - each **client's own thread** sends the messages its client sends
//!   ([`ClientEvent::Text`], [`ClientEvent::Binary`]). It waits for room: a
//!   program that reads slowly slows down only the clients that talk, each one
//!   waiting on its own messages, which is the natural back-pressure of a thread
//!   per client. It waits no longer than the client stays connected or the server
//!   runs; a message it gives up on is dropped, counted and logged the same way.
//!
//! So memory stays bounded by the queue's size whatever the program does, and a
//! program that never reads can never stall the hub or the other clients.
//!
//! For one client the events arrive in order: `Joined`, its messages, `Left`
//! (unless one was dropped). The queue ends ([`ClientEvents::recv`] returns `None`)
//! once the server has shut down and every event has been read.

use std::net::SocketAddr;
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TrySendError};

use crate::metrics::{ClientEventKind, Label, Metrics};
use crate::wire::message::{ClientId, LeaveReason};

/// Something that happened to one client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The client was welcomed: it receives every broadcast from now on, and
    /// [`Publisher::send_to`](crate::Publisher::send_to) can reach it.
    Joined {
        /// The id its welcome carried.
        id: ClientId,
        /// Where it connected from.
        peer: SocketAddr,
    },
    /// The client sent a text message.
    Text {
        /// Who sent it.
        id: ClientId,
        /// The message.
        text: String,
    },
    /// The client sent a binary message.
    Binary {
        /// Who sent it.
        id: ClientId,
        /// The message.
        data: Vec<u8>,
    },
    /// The client is gone.
    Left {
        /// Who left.
        id: ClientId,
        /// Why, as its `leave` notice says.
        reason: LeaveReason,
    },
}

impl ClientEvent {
    /// The client the event is about.
    pub fn id(&self) -> ClientId {
        match self {
            ClientEvent::Joined { id, .. }
            | ClientEvent::Text { id, .. }
            | ClientEvent::Binary { id, .. }
            | ClientEvent::Left { id, .. } => *id,
        }
    }

    /// Its kind, for the dropped-events counter.
    pub(crate) fn kind(&self) -> ClientEventKind {
        match self {
            ClientEvent::Joined { .. } => ClientEventKind::Joined,
            ClientEvent::Text { .. } | ClientEvent::Binary { .. } => ClientEventKind::Message,
            ClientEvent::Left { .. } => ClientEventKind::Left,
        }
    }
}

/// The program's end of the event queue: see the module docs. Cloning it gives
/// another reader of the same queue (each event goes to one of them).
#[derive(Debug, Clone)]
pub struct ClientEvents {
    /// The queue's receiving end; every sender is the server's.
    events_rx: Receiver<ClientEvent>,
}

impl ClientEvents {
    /// Waits for the next event. `None` once the server has shut down and every
    /// event has been read.
    pub fn recv(&self) -> Option<ClientEvent> {
        self.events_rx.recv().ok()
    }

    /// Waits at most `timeout` for the next event. `None` if none came in time, or
    /// the server has shut down and every event has been read.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<ClientEvent> {
        self.events_rx.recv_timeout(timeout).ok()
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&self) -> Option<ClientEvent> {
        self.events_rx.try_recv().ok()
    }
}

impl Iterator for ClientEvents {
    type Item = ClientEvent;

    /// Waits for the next event; ends once the server has shut down and every
    /// event has been read.
    fn next(&mut self) -> Option<ClientEvent> {
        self.recv()
    }
}

/// The server's end of the queue, with the rules for each sending thread.
#[derive(Debug, Clone)]
pub(crate) struct ClientEventsTx {
    events_tx: Sender<ClientEvent>,
}

/// A new queue holding at most `capacity` events.
pub(crate) fn channel(capacity: usize) -> (ClientEventsTx, ClientEvents) {
    let (events_tx, events_rx) = crossbeam_channel::bounded(capacity);
    (ClientEventsTx { events_tx }, ClientEvents { events_rx })
}

/// How long a client's thread waits for room at a time before it looks again
/// whether it should give up (its client gone, the server stopping).
const WAIT_STEP: Duration = Duration::from_millis(100);

impl ClientEventsTx {
    /// Queues `event` without waiting, for the hub: if the queue is full, the event
    /// is dropped, counted and logged. A program that stopped reading is not an
    /// error: the queue's other end may be gone.
    pub(crate) fn send_now(&self, event: ClientEvent, metrics: &Metrics) {
        if let Err(TrySendError::Full(event)) = self.events_tx.try_send(event) {
            dropped(&event, metrics);
        }
    }

    /// Queues `event`, waiting for room while `keep_waiting()` says so, for a
    /// client's own thread. Returns whether it was queued; if not, it was dropped,
    /// counted and logged.
    pub(crate) fn send_waiting(
        &self,
        mut event: ClientEvent,
        metrics: &Metrics,
        keep_waiting: impl Fn() -> bool,
    ) -> bool {
        loop {
            match self.events_tx.send_timeout(event, WAIT_STEP) {
                Ok(()) => return true,
                // Nobody will ever read it: the program dropped every reader.
                Err(SendTimeoutError::Disconnected(_)) => return false,
                Err(SendTimeoutError::Timeout(back)) if keep_waiting() => event = back,
                Err(SendTimeoutError::Timeout(back)) => {
                    dropped(&back, metrics);
                    return false;
                }
            }
        }
    }
}

/// Counts and logs an event the queue had no room for. Logged at the 1st, 2nd,
/// 4th, 8th… drop, so that a program that stopped reading cannot flood the log.
fn dropped(event: &ClientEvent, metrics: &Metrics) {
    metrics.client_events_dropped.add(event.kind());
    let total = metrics.client_events_dropped.total();
    if total.is_power_of_two() {
        log::warn!(
            "client event dropped ({} of client {}; {total} so far): the program reads \
             its ClientEvents more slowly than they come (Config::client_events)",
            event.kind().as_str(),
            event.id()
        );
    }
}
