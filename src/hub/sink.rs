//! How the hub reaches one client: a [`Sink`], and the message it writes there.
//!
//! A WebSocket client is reached through its [`Outbox`] (the write side of its
//! socket); an SSE client through an [`SseSink`]: a queue of encoded events that
//! the client's own thread writes out (see `crate::http::sse`). Neither ever
//! blocks the hub, and both are bounded by `--max-backlog`: a client whose backlog
//! would pass it is cut off there and then ([`Delivery::CutOff`]).
//!
//! No thread of its own: the hub and its fan-out helpers call [`deliver_all`];
//! each SSE queue is read by its client's thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{unbounded, Receiver, Sender};

use super::fan_out::FanOut;
use crate::delivery::Delivery;
use crate::wire::message::{ClientId, LeaveReason};
use crate::wire::{frame, sse};
use crate::ws::outbox::Outbox;

/// How the hub reaches one client.
pub(crate) enum Sink {
    /// A WebSocket client: frames go into its outbox.
    WebSocket(Arc<Outbox>),
    /// A Server-Sent Events client: encoded events go to its thread.
    Sse(SseSink),
}

/// One message in both encodings; the SSE one only exists if an SSE client does.
pub(super) struct Encoded<'a> {
    /// The WebSocket frame(s), for WebSocket clients.
    pub(super) frame: &'a [u8],
    /// The SSE event(s) as HTTP chunks, for SSE clients.
    pub(super) sse: Option<Arc<[u8]>>,
    /// How many messages the bytes hold: more than one when queued broadcasts are
    /// joined into one write. `frames_sent` counts messages, not writes.
    pub(super) messages: u64,
}

/// One message not yet encoded, with what SSE needs besides the text.
pub(super) struct Message<'a> {
    /// The SSE `id:` field, which a reconnecting `EventSource` sends back.
    pub(super) id: Option<u64>,
    /// The SSE event name, or `None` for a plain message.
    pub(super) event: Option<&'static str>,
    /// The text: the frame's payload, the event's data.
    pub(super) text: &'a str,
}

impl Sink {
    /// Writes `message` in this client's encoding. Never blocks.
    pub(super) fn send(&self, message: &Encoded<'_>) -> Delivery {
        // tour: sink-send
        match (self, &message.sse) {
            (Sink::WebSocket(outbox), _) => outbox.write(message.frame),
            (Sink::Sse(sink), Some(event)) => sink.send(event),
            (Sink::Sse(_), None) => Delivery::Accepted,
        }
    }

    /// Writes a new client's first bytes in one write: `greeting` (the `101`, or the
    /// SSE response head), then `first` (its welcome, and what it missed if it
    /// resumes), in this client's encoding. Returns what came of it, and the size
    /// of `first` in bytes (the greeting is HTTP, not a frame).
    pub(super) fn greet(&self, mut greeting: Vec<u8>, first: &[Message<'_>]) -> (Delivery, usize) {
        let greeting_len = greeting.len();
        let delivery = match self {
            Sink::WebSocket(outbox) => {
                for message in first {
                    // tour: join-greeting-ws
                    greeting.extend_from_slice(&frame::text_frame(message.text));
                }
                outbox.write(&greeting)
            }
            Sink::Sse(sse) => {
                for message in first {
                    let event = sse::sse_event(message.id, message.event, message.text);
                    // tour: join-greeting-sse
                    greeting.extend_from_slice(&sse::chunk(&event));
                }
                sse.send(&Arc::from(greeting.as_slice()))
            }
        };
        (delivery, greeting.len() - greeting_len)
    }

    /// Why the client's connection was closed, if it was.
    pub(super) fn closed_reason(&self) -> Option<LeaveReason> {
        match self {
            Sink::WebSocket(outbox) => outbox.closed_reason(),
            Sink::Sse(sink) => sink.closed_reason(),
        }
    }
}

/// Writes `message` to each of `targets`, never blocking; runs on the hub thread
/// or a fan-out helper.
pub(super) fn deliver_all(targets: &[(ClientId, &Sink)], message: &Encoded<'_>) -> FanOut {
    let mut outcome = FanOut::default();
    for &(id, sink) in targets {
        // tour: deliver-each
        match sink.send(message) {
            Delivery::Accepted => {
                outcome.frames += message.messages;
                outcome.bytes += match (sink, &message.sse) {
                    (Sink::Sse(_), Some(event)) => event.len(),
                    _ => message.frame.len(),
                } as u64;
            }
            Delivery::CutOff => outcome.gone.push((id, LeaveReason::TooSlow)),
            // Closed by its own thread (a close frame went out) or failed: the sink
            // knows why.
            Delivery::Failed | Delivery::Closed => {
                let reason = sink.closed_reason().unwrap_or(LeaveReason::Dropped);
                outcome.gone.push((id, reason));
            }
        }
    }
    outcome
}

/// The hub's handle on one SSE client.
pub(crate) struct SseSink {
    /// Encoded events, to the client's thread. Dropping the sink disconnects it,
    /// which is how the hub ends the stream.
    events_tx: Sender<Arc<[u8]>>,
    /// The backlog and close reason, shared with the client's thread.
    shared: Arc<SseShared>,
    /// Cut the client off when more than this many bytes wait (`--max-backlog`).
    max_backlog: usize,
}

/// What the hub and the client's thread both see.
struct SseShared {
    /// Bytes queued and not yet written by the thread.
    queued: AtomicUsize,
    /// Why the hub ended the stream, if it did.
    closed: Mutex<Option<LeaveReason>>,
}

impl SseSink {
    /// Queues one encoded event. Never blocks.
    pub(crate) fn send(&self, event: &Arc<[u8]>) -> Delivery {
        if self.closed_reason().is_some() {
            return Delivery::Closed;
        }
        let queued = self.shared.queued.fetch_add(event.len(), Ordering::Relaxed);
        // tour: sse-sink-queue
        if queued + event.len() > self.max_backlog {
            self.close(LeaveReason::TooSlow);
            return Delivery::CutOff;
        }
        match self.events_tx.send(event.clone()) {
            Ok(()) => Delivery::Accepted,
            Err(_) => Delivery::Failed,
        }
    }

    /// Marks the stream closed for `reason`; the hub then drops the sink, which
    /// wakes the thread.
    pub(crate) fn close(&self, reason: LeaveReason) {
        let mut closed = self.shared.closed.lock().unwrap_or_else(|p| p.into_inner());
        closed.get_or_insert(reason);
    }

    pub(crate) fn closed_reason(&self) -> Option<LeaveReason> {
        *self.shared.closed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new SSE client's two ends: the [`SseSink`] the hub writes to, and the
/// [`SseQueue`] the client's thread reads.
pub(crate) fn channel(max_backlog: usize) -> (SseSink, SseQueue) {
    let (events_tx, events_rx) = unbounded();
    let shared = Arc::new(SseShared {
        queued: AtomicUsize::new(0),
        closed: Mutex::new(None),
    });
    let sink = SseSink {
        events_tx,
        shared: shared.clone(),
        max_backlog,
    };
    (sink, SseQueue { events_rx, shared })
}

/// The client thread's end of an SSE client: the encoded events the hub queued.
pub(crate) struct SseQueue {
    /// Encoded events from the hub; disconnected when the hub drops the sink.
    events_rx: Receiver<Arc<[u8]>>,
    /// The backlog and close reason, shared with the hub's sink.
    shared: Arc<SseShared>,
}

impl SseQueue {
    /// The next encoded event, or `None` once the hub has dropped the sink (it
    /// cut the client off, or the server is shutting down).
    pub(crate) fn recv(&self) -> Option<Arc<[u8]>> {
        let event = self.events_rx.recv().ok()?;
        self.shared.queued.fetch_sub(event.len(), Ordering::Relaxed);
        Some(event)
    }

    /// Why the hub ended the stream, if it did.
    pub(crate) fn closed_reason(&self) -> Option<LeaveReason> {
        *self.shared.closed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`SseQueue::recv`] that gives up after `timeout`, for tests.
    #[cfg(test)]
    pub(crate) fn recv_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Arc<[u8]>, crossbeam_channel::RecvTimeoutError> {
        let event = self.events_rx.recv_timeout(timeout)?;
        self.shared.queued.fetch_sub(event.len(), Ordering::Relaxed);
        Ok(event)
    }
}
