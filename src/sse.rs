//! Server-Sent Events: the same hub events over plain HTTP, for clients that cannot
//! speak WebSocket (old proxies, `curl -N`, `EventSource` in the page as a fallback).
//!
//! `GET /events` on the HTTP port turns that connection's thread (`http-<n>`) into
//! an SSE client's, which runs [`serve`]: it joins the hub like a WebSocket client
//! does — the hub writes the response head and the welcome together — then sleeps
//! in `recv` on its own queue and writes each event it receives, at once, so no
//! event waits in a buffer:
//!
//! ```text
//! id: 42
//! event: tick
//! data: {"type":"tick","seq":42,"time":"2026-11-24T14:00:01.000Z"}
//!
//! ```
//!
//! The hub reaches an SSE client through an [`SseSink`]: it queues the event (the
//! same bytes for every SSE client, encoded once per broadcast) without blocking.
//! The queue is bounded by `--max-backlog` bytes like a WebSocket outbox; a client
//! that falls behind is cut off (`too_slow`): the hub drops the sink, which ends the
//! thread's `recv`. Heartbeats arrive as `: heartbeat` comments, which keep proxies
//! from closing an idle stream. At shutdown the hub drops every sink the same way.
//!
//! The thread writes with a blocking write, bounded by the socket's write timeout
//! ([`crate::listener::HTTP_WRITE_TIMEOUT`]): a client that stopped reading makes
//! it fail after a few seconds, and the thread ends.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::hub::{HubEvent, Sink};
use crate::listener::Shared;
use crate::metrics::JoinFailure;
use crate::outbox::Delivery;
use crate::protocol::LeaveReason;

/// The hub's handle on one SSE client.
pub(crate) struct SseSink {
    /// Encoded events, to the client's thread. Dropping the sink disconnects it,
    /// which is how the hub ends the stream.
    events_tx: Sender<Arc<[u8]>>,
    shared: Arc<SseShared>,
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

/// The response head, then a first chunk asking clients to wait 2 s before they
/// reconnect. The body is chunked so the stream can *end* cleanly, with the empty
/// last chunk, before the connection closes: `curl` then exits and `EventSource`
/// reconnects. `X-Accel-Buffering: no` asks nginx not to buffer.
const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\
Transfer-Encoding: chunked\r\n\r\nd\r\nretry: 2000\n\n\r\n";

/// The answer to a stream asked for while the server shuts down.
const SHUTTING_DOWN: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 44\r\nConnection: close\r\n\r\n\
tickcast is shutting down; try again later.\n";

/// The last chunk: the end of the response.
const END: &[u8] = b"0\r\n\r\n";

/// Wraps SSE text as one HTTP chunk, ready to write. The hub does this once per
/// broadcast, for all SSE clients.
pub(crate) fn chunk(sse_text: &str) -> Arc<[u8]> {
    let mut bytes = format!("{:x}\r\n", sse_text.len()).into_bytes();
    bytes.extend_from_slice(sse_text.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    bytes.into()
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
    events_rx: Receiver<Arc<[u8]>>,
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
/// Runs one SSE client to the end, on its HTTP connection's thread, once the
/// request is known to be `GET /events`.
pub(crate) fn serve(socket: &TcpStream, peer: SocketAddr, shared: &Shared) {
    let (sink, queue) = channel(shared.config.max_backlog);
    let (id_tx, id_rx) = bounded(1);
    // The hub writes the response head together with the welcome, at the moment it
    // adds the client: `EventSource.onopen` fires at the head, and from then on
    // the client gets every event.
    let join = HubEvent::Join {
        sink: Sink::Sse(sink),
        greeting: HEAD.to_vec(),
        peer,
        id_tx,
    };
    let joined = shared
        .events_tx
        .send(join)
        .ok()
        .and_then(|()| id_rx.recv().ok());
    let mut writer = socket;
    let Some(id) = joined else {
        // The hub had stopped before it read our Join.
        shared.metrics.joins_failed.add(JoinFailure::ShuttingDown);
        log::debug!("{peer}: SSE stream refused, the server is shutting down");
        let _ = writer.write_all(SHUTTING_DOWN);
        return;
    };
    let reason = pump(&mut writer, &queue);
    if reason != LeaveReason::Dropped {
        let _ = writer.write_all(END);
    }
    let reason = queue.closed_reason().unwrap_or(reason);
    if shared
        .events_tx
        .send(HubEvent::Leave { id, reason })
        .is_err()
    {
        // The hub has stopped (shutdown); it counted every client as it went.
        log::debug!("{peer}: SSE client {id} ended after the hub");
    }
    log::debug!("{peer}: SSE client {id} done ({})", reason.as_str());
}

/// Writes events as they come until the hub ends the stream or the client goes.
fn pump(writer: &mut impl Write, queue: &SseQueue) -> LeaveReason {
    // Ends when the hub drops the sink (cut off, shutdown).
    while let Some(event) = queue.recv() {
        if writer.write_all(&event).is_err() {
            return LeaveReason::Dropped;
        }
    }
    LeaveReason::Closed
}
