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
//! The hub reaches an SSE client through an
//! [`SseSink`](crate::hub::sink::SseSink): it queues the event (the same bytes for
//! every SSE client, encoded once per broadcast) without blocking. The queue is
//! bounded by `--max-backlog` bytes like a WebSocket outbox; a client that falls
//! behind is cut off (`too_slow`): the hub drops the sink, which ends the thread's
//! `recv`. Heartbeats arrive as `: heartbeat` comments, which keep proxies
//! from closing an idle stream. At shutdown the hub drops every sink the same way.
//!
//! The thread writes with a blocking write, bounded by the socket's write timeout
//! ([`crate::listener::HTTP_WRITE_TIMEOUT`]): a client that stopped reading makes
//! it fail after a few seconds, and the thread ends.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use crate::hub::sink::{self, Sink, SseQueue};
use crate::hub::{answer, HubEvent, Joining};
use crate::metrics::JoinFailure;
use crate::shared::Shared;
use crate::wire::http::Refusal;
use crate::wire::message::LeaveReason;
use crate::wire::sse::{END, RESPONSE_HEAD};
use crate::wire::subscription::Subscription;

/// Runs one SSE client to the end, on its HTTP connection's thread, once the
/// request is known to be `GET /events`.
pub(crate) fn serve(
    socket: &TcpStream,
    peer: SocketAddr,
    subscription: Subscription,
    shared: &Shared,
) {
    let (sink, queue) = sink::channel(shared.config.max_backlog);
    let (id_tx, id_rx) = answer::channel();
    // The hub writes the response head together with the welcome, at the moment it
    // adds the client: `EventSource.onopen` fires at the head, and from then on
    // the client gets every event.
    // tour: sse-join
    let join = HubEvent::Join(Joining {
        sink: Sink::Sse(sink),
        subscription,
        greeting: RESPONSE_HEAD.to_vec(),
        peer,
        id_tx,
    });
    let joined = shared.events_tx.send(join).ok().and_then(|()| id_rx.recv());
    let mut writer = socket;
    let Some(id) = joined else {
        // The hub had stopped before it read our Join.
        shared.metrics.joins_failed.add(JoinFailure::ShuttingDown);
        log::debug!("{peer}: SSE stream refused, the server is shutting down");
        let refusal = Refusal::new(503, "tickcast is shutting down; try again later");
        let _ = writer.write_all(&refusal.to_http());
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
    // tour: sse-pump
    while let Some(event) = queue.recv() {
        if writer.write_all(&event).is_err() {
            return LeaveReason::Dropped;
        }
    }
    LeaveReason::Closed
}
