//! One client's thread (`ws-<n>`), from the first byte of its handshake to the end.
//!
//! The thread is spawned by the listener for each accepted TCP connection and
//! runs [`serve`]:
//!
//! 1. **Handshake.** Read the HTTP request head under a deadline and check it
//!    (`handshake`). A bad one is answered with an HTTP error, and the thread ends.
//! 2. **Join.** Send `Join` to the hub, carrying the `101 Switching Protocols`
//!    answer, and wait for the client's id. The hub writes the `101` and the welcome
//!    frame together, at the moment it adds the client, so the client is in the hub
//!    before it learns its connection is open, and misses no broadcast. If the hub
//!    has stopped, the client gets `503` instead.
//! 3. **Read.** Block in `read` on the socket — the thread sleeps until the client
//!    sends something. Echo text and binary messages back; tungstenite answers
//!    pings and close frames itself. All writes go through the client's `Outbox`.
//! 4. **Leave.** On a close handshake, an error, or when the hub cuts the client off
//!    (which shuts the socket down and wakes the `read`), tell the hub why the
//!    client left. The thread then ends, and dropping the socket closes it.
//!
//! A bad frame ends this connection only, with the close code RFC 6455 asks for,
//! and is logged with the peer's address; nothing here can stop the server.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::Message;

use super::handshake::{self, Decision};
use super::outbox::{ClientStream, Outbox};
use crate::client_event::ClientEvent;
use crate::hub::heartbeat::clock_ms;
use crate::hub::sink::Sink;
use crate::hub::{answer, HubEvent, Joining};
use crate::metrics::JoinFailure;
use crate::shared::Shared;
use crate::shutdown::{linger, LINGER};
use crate::wire::frame;
use crate::wire::http::{read_request, Refusal};
use crate::wire::message::{ClientId, LeaveReason};
use crate::wire::subscription::Subscription;

/// Runs one client connection to the end. Called on the client's own thread.
///
/// Performance: the handshake, the join and the life of the connection are
/// three functions that are never inlined, called one after the other, so that
/// none of them sits on the stack under another's deepest call. A stack page
/// touched once stays in memory for the thread's life: with all three in one
/// frame, parsing the request reached a third 4 KiB page of every client's
/// stack (about 4 KiB more per client; see `docs/PERFORMANCE.md`).
pub(crate) fn serve(
    socket: Arc<TcpStream>,
    outbox: Arc<Outbox>,
    peer: SocketAddr,
    shared: &Shared,
) {
    let Some(accepted) = handshake(&socket, &outbox, shared) else {
        return;
    };
    if let Some((id, leftover)) = join(&socket, &outbox, peer, shared, accepted) {
        live(socket, outbox, peer, shared, id, leftover);
    }
}

/// Joins the hub: the client's id and the bytes it sent after its request, or
/// `None` if it never became a client (answered and counted here).
#[inline(never)]
fn join(
    socket: &TcpStream,
    outbox: &Arc<Outbox>,
    peer: SocketAddr,
    shared: &Shared,
    accepted: Accepted,
) -> Option<(ClientId, Vec<u8>)> {
    let Accepted {
        answer,
        subscription,
        leftover,
    } = accepted;

    // Join the hub. The hub itself writes our `101` answer, followed by the welcome,
    // at the moment it adds us, then answers with our id: from the first byte the
    // client sees, it receives every broadcast.
    let (id_tx, id_rx) = answer::channel();
    // tour: ws-join
    let join = HubEvent::Join(Joining {
        sink: Sink::WebSocket(outbox.clone()),
        subscription,
        greeting: answer,
        peer,
        id_tx,
    });
    let joined = shared.events_tx.send(join).ok().and_then(|()| id_rx.recv());
    let Some(id) = joined else {
        // No id: the hub could not write our answer (the client has gone; the hub
        // counted and logged it), or it had stopped before it read our Join.
        if outbox.closed_reason().is_none() {
            shared.metrics.joins_failed.add(JoinFailure::ShuttingDown);
            log::debug!("{peer}: refused, the server is shutting down");
            let refusal = Refusal::new(503, "tickcast is shutting down; try again in a moment");
            hang_up_with(socket, outbox, &refusal);
        }
        linger(socket);
        return None;
    };
    Some((id, leftover))
}

/// The client's life after its welcome: read, echo and answer until it leaves.
#[inline(never)]
fn live(
    socket: Arc<TcpStream>,
    outbox: Arc<Outbox>,
    peer: SocketAddr,
    shared: &Shared,
    id: ClientId,
    leftover: Vec<u8>,
) {
    // From here on the hub must hear that we left, even if this thread panics.
    // tour: leave-guard
    let mut leave = LeaveOnDrop {
        shared,
        id,
        outbox: &outbox,
        reason: LeaveReason::Dropped,
    };
    let stream = ClientStream {
        socket: socket.clone(),
        outbox: outbox.clone(),
    };
    let mut ws =
        WebSocket::from_partially_read(stream, leftover, Role::Server, Some(shared.ws_config));
    let (reason, close_frame) = read_until_done(&mut ws, &outbox, id, peer, shared);
    leave.reason = reason;

    // Our close frame goes through the outbox, which then discards everything
    // else: the hub's next broadcast cannot follow it onto the wire.
    if let Some(frame) = close_frame {
        outbox.close(reason, &frame);
    }
    drop(leave);
    // Deliver the close frame (ours, or the hub's 1001) if the socket was too full
    // to take it at once, then wait for the client to hang up.
    outbox.finish_closing(LINGER);
    linger(&socket);
    log::debug!("{peer}: client {id} done");
}

/// Tells the hub a client left when dropped, on every path out of [`serve`],
/// unwinding included.
struct LeaveOnDrop<'a> {
    /// Where the hub's events channel is.
    shared: &'a Shared,
    /// The client that leaves.
    id: ClientId,
    /// Its outbox, whose close reason (if the hub closed it) wins.
    outbox: &'a Outbox,
    /// Why the connection ended, as far as this thread knows.
    reason: LeaveReason,
}

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        // If the hub closed the outbox first (cut off, shutdown), its reason wins.
        let reason = self.outbox.closed_reason().unwrap_or(self.reason);
        let leave = HubEvent::Leave {
            id: self.id,
            reason,
        };
        // tour: leave-send
        if self.shared.events_tx.send(leave).is_err() {
            // The hub has stopped (shutdown): it counted this client as it closed it.
            log::debug!("client {}: left after the hub stopped", self.id);
        }
    }
}

/// A handshake the server accepts: the `101` answer for the hub to write, and the
/// bytes that followed the request head (they belong to the WebSocket).
struct Accepted {
    /// The `101` answer, for the hub to write with the welcome.
    answer: Vec<u8>,
    /// The topics and resume point the URL asked for.
    subscription: Subscription,
    /// Bytes after the request head: the start of the WebSocket stream.
    leftover: Vec<u8>,
}

/// Reads the handshake request and acts on the [`Decision`]. Returns the accepted
/// handshake if the client may join, or `None` once the connection is over
/// (refused, answered with the Flash policy, or the client hung up). Every way out
/// is logged and counted.
#[inline(never)]
fn handshake(socket: &TcpStream, outbox: &Outbox, shared: &Shared) -> Option<Accepted> {
    let config = &shared.config;
    let deadline = Instant::now() + config.handshake_timeout;
    // A deadline, not a polling tick: the read wakes only if the client is silent
    // for the whole handshake timeout.
    if let Err(e) = socket.set_read_timeout(Some(config.handshake_timeout)) {
        return abandoned(socket, shared, &e.to_string());
    }
    let read = read_request(
        socket,
        config.max_handshake_size,
        config.read_buffer_size,
        deadline,
    );
    let context = handshake::Context {
        page_url: shared.page_url.as_deref(),
        allowed_origins: &config.allowed_origins,
        serves_flash_policy: shared.flash_policy.is_some(),
        // This connection counts too: full means more than the limit.
        full: (shared.registry.clients() > shared.max_clients).then_some(shared.max_clients),
    };
    // tour: handshake-decide
    match handshake::decide(read, &context) {
        Decision::Upgrade {
            answer,
            subscription,
            read,
        } => {
            // From here on the thread may sleep in `read` for as long as the
            // client is quiet.
            if let Err(e) = socket.set_read_timeout(None) {
                return abandoned(socket, shared, &e.to_string());
            }
            Some(Accepted {
                answer,
                subscription,
                leftover: read.into_leftover(config.read_buffer_size),
            })
        }
        Decision::FlashPolicy => {
            shared
                .metrics
                .flash_policy_answers
                .fetch_add(1, Ordering::Relaxed);
            log::debug!("{}: answered a Flash policy request", peer(socket));
            if let Some(document) = &shared.flash_policy {
                outbox.write(document);
            }
            let _ = socket.shutdown(Shutdown::Write);
            linger(socket);
            None
        }
        Decision::Refuse(refusal) => refuse(socket, outbox, &refusal, shared),
        Decision::HungUp => abandoned(socket, shared, "hung up"),
    }
}

/// The connection ended before its handshake request did: counted and logged.
fn abandoned(socket: &TcpStream, shared: &Shared, why: &str) -> Option<Accepted> {
    shared
        .metrics
        .handshakes_abandoned
        .fetch_add(1, Ordering::Relaxed);
    log::debug!("{}: gone during its handshake ({why})", peer(socket));
    None
}

/// Sends an HTTP error, counted by status, and hangs up politely.
fn refuse(
    socket: &TcpStream,
    outbox: &Outbox,
    refusal: &Refusal,
    shared: &Shared,
) -> Option<Accepted> {
    shared.metrics.handshake_failed(refusal.status);
    log::debug!(
        "{}: handshake refused: {} {}",
        peer(socket),
        refusal.status,
        refusal.body
    );
    hang_up_with(socket, outbox, refusal);
    linger(socket);
    None
}

/// Writes `refusal` and ends our half of the connection.
fn hang_up_with(socket: &TcpStream, outbox: &Outbox, refusal: &Refusal) {
    outbox.write(&refusal.to_http());
    let _ = socket.shutdown(Shutdown::Write);
}

/// The peer's address for a log line.
fn peer(socket: &TcpStream) -> String {
    socket
        .peer_addr()
        .map_or_else(|_| "client".to_string(), |a| a.to_string())
}

/// Reads messages and echoes them until the connection ends. Returns why it ended
/// and, if the server must send one, the encoded close frame.
fn read_until_done(
    ws: &mut WebSocket<ClientStream>,
    outbox: &Outbox,
    id: ClientId,
    peer: SocketAddr,
    shared: &Shared,
) -> (LeaveReason, Option<Vec<u8>>) {
    loop {
        // tour: echo-read
        let message = ws.read();
        if message.is_ok() {
            // Any frame at all proves the client is alive, for the heartbeat.
            outbox.heard_from_client(clock_ms());
        }
        let result = match message {
            // The tutorial's message listener, made useful: hand the message to the
            // embedding program, if it listens, and echo it to the sender only.
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                shared
                    .metrics
                    .messages_received
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(events) = &shared.client_events_tx {
                    let event = match &message {
                        Message::Binary(data) => ClientEvent::Binary {
                            id,
                            data: data.to_vec(),
                        },
                        _ => ClientEvent::Text {
                            id,
                            text: message.to_text().unwrap_or_default().to_string(),
                        },
                    };
                    // Waits for room while the client is here and the server runs:
                    // a program that reads slowly slows this client alone.
                    events.send_waiting(event, &shared.metrics, || {
                        outbox.closed_reason().is_none() && !shared.stopping.is_raised()
                    });
                }
                if shared.config.echo {
                    shared
                        .metrics
                        .messages_echoed
                        .fetch_add(1, Ordering::Relaxed);
                    // tour: echo-send
                    ws.send(message)
                } else {
                    Ok(())
                }
            }
            // The client closes: answer with its status code (tungstenite has already
            // turned a code that is not allowed into 1002), then wait for it to hang up.
            Ok(Message::Close(close)) => {
                return (LeaveReason::Closed, Some(frame::close_reply(close)));
            }
            // tungstenite queued the pong; the next `read` sends it.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Ok(()),
            Err(e) => Err(e),
        };
        let Err(error) = result else { continue };
        let (reason, close) = match &error {
            WsError::ConnectionClosed | WsError::AlreadyClosed => (LeaveReason::Closed, None),
            WsError::Io(_) | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                (LeaveReason::Dropped, None)
            }
            WsError::Capacity(CapacityError::MessageTooLong { .. }) => (
                LeaveReason::Closed,
                Some((CloseCode::Size, "message too big")),
            ),
            WsError::Capacity(_) => (LeaveReason::Closed, Some((CloseCode::Size, "too big"))),
            WsError::Utf8(_) => (
                LeaveReason::Closed,
                Some((CloseCode::Invalid, "invalid UTF-8")),
            ),
            WsError::Protocol(_) => (
                LeaveReason::Closed,
                Some((CloseCode::Protocol, "protocol error")),
            ),
            _ => (
                LeaveReason::Dropped,
                Some((CloseCode::Error, "internal error")),
            ),
        };
        if let Some((code, _)) = close {
            log::debug!("{peer}: client {id}: {error}");
            shared.metrics.closed_for_bad_frame(u16::from(code));
        }
        return (
            reason,
            close.map(|(code, text)| frame::close_frame(code, text)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    use crossbeam_channel::{unbounded, Receiver};

    use crate::metrics::Metrics;
    use crate::registry::Registry;
    use crate::Config;

    /// What a connection thread shares, with the hub's end of the events channel.
    fn shared() -> (Shared, Receiver<HubEvent>) {
        let (events_tx, events_rx) = unbounded();
        let metrics = Arc::new(Metrics::default());
        let shared = Shared {
            config: Config::default(),
            max_clients: 10,
            ws_port: 1,
            stopping: crate::shutdown::StopFlag::default(),
            client_events_tx: None,
            publisher: crate::publisher::Publisher::new(crossbeam_channel::bounded(1).0, 1),
            ws_config: tungstenite::protocol::WebSocketConfig::default(),
            events_tx,
            page_url: None,
            flash_policy: None,
            registry: Arc::new(Registry::new(metrics.clone())),
            metrics,
            cluster: None,
        };
        (shared, events_rx)
    }

    /// An outbox on a real loopback connection, and the client's end, which keeps
    /// the connection open.
    fn outbox() -> (Outbox, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        (Outbox::new(Arc::new(socket), 1 << 20), client)
    }

    /// The one event the hub received, which must be a `Leave`.
    fn only_leave(events_rx: &Receiver<HubEvent>) -> (ClientId, LeaveReason) {
        let leave = match events_rx.try_recv() {
            Ok(HubEvent::Leave { id, reason }) => (id, reason),
            Ok(_) => panic!("expected a Leave, got another event"),
            Err(e) => panic!("no Leave reached the hub: {e}"),
        };
        assert!(events_rx.try_recv().is_err(), "more than one event");
        leave
    }

    /// Runs `body` on a thread holding a `LeaveOnDrop` for client 7, as `serve`
    /// does, and returns whether that thread panicked.
    fn serve_client_7(
        shared: &Shared,
        outbox: &Outbox,
        body: impl FnOnce(&mut LeaveOnDrop<'_>) + Send,
    ) -> bool {
        thread::scope(|s| {
            s.spawn(|| {
                let mut leave = LeaveOnDrop {
                    shared,
                    id: 7,
                    outbox,
                    reason: LeaveReason::Dropped,
                };
                body(&mut leave);
            })
            .join()
            .is_err()
        })
    }

    /// A panic while serving a joined client still tells the hub it left, so the
    /// hub never keeps (and keeps writing to) a client whose thread is gone.
    #[test]
    fn leave_reaches_the_hub_when_the_thread_panics() {
        let (shared, events_rx) = shared();
        let (outbox, _client) = outbox();
        let panicked = serve_client_7(&shared, &outbox, |_| {
            panic!("a bug while serving client 7 (expected by this test)")
        });
        assert!(panicked);
        assert_eq!(only_leave(&events_rx), (7, LeaveReason::Dropped));
    }

    /// On a normal way out the thread's own reason is sent, once.
    #[test]
    fn leave_carries_the_threads_reason() {
        let (shared, events_rx) = shared();
        let (outbox, _client) = outbox();
        let panicked = serve_client_7(&shared, &outbox, |leave| {
            leave.reason = LeaveReason::Closed;
        });
        assert!(!panicked);
        assert_eq!(only_leave(&events_rx), (7, LeaveReason::Closed));
    }

    /// If the hub cut the client off first, its reason wins, on unwind too.
    #[test]
    fn hubs_reason_wins_on_unwind() {
        let (shared, events_rx) = shared();
        let (outbox, _client) = outbox();
        let panicked = serve_client_7(&shared, &outbox, |leave| {
            leave.reason = LeaveReason::Closed;
            leave.outbox.abort(LeaveReason::TooSlow);
            panic!("a bug after the cut-off (expected by this test)");
        });
        assert!(panicked);
        assert_eq!(only_leave(&events_rx), (7, LeaveReason::TooSlow));
    }
}
