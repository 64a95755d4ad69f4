//! What travels to the hub on its two channels: [`HubEvent`]s (joins, leaves,
//! shutdown) from the connection threads and the server, and [`Broadcast`]s from
//! the ticker and every publisher. No thread of its own.

use std::net::SocketAddr;

use super::answer::IdSender;
use super::sink::Sink;
use crate::wire::frame;
use crate::wire::message::{self, ClientId, LeaveReason};
use crate::wire::subscription::{Subscription, Topic};

/// A client asking to join: everything the hub needs to add it.
pub(crate) struct Joining {
    /// How the hub will reach the client.
    pub(crate) sink: Sink,
    /// The topics it subscribes to (`?topic=`), besides what goes to everyone,
    /// and where it resumes (`?since=`, `Last-Event-ID`).
    pub(crate) subscription: Subscription,
    /// The `101` or the SSE response head, written with the welcome.
    pub(crate) greeting: Vec<u8>,
    /// The client's address, for log lines.
    pub(crate) peer: SocketAddr,
    /// Where the client's thread waits for its id.
    pub(crate) id_tx: IdSender,
}

/// A message to the hub thread.
pub(crate) enum HubEvent {
    /// A client has passed its handshake. The hub assigns its id, writes
    /// `greeting` and the welcome to it in one write, and answers on `id_tx` (a
    /// one-shot, so this never blocks).
    ///
    /// `greeting` is what tells the client its connection is open: the
    /// `101 Switching Protocols` answer, or the SSE response head. A browser fires
    /// `onopen` the moment it reads it, so the hub writes it itself, at the moment
    /// it adds the client: from the first byte the client sees, it is in the hub
    /// and receives every broadcast. Nothing can fall between the two.
    ///
    /// If the greeting cannot be written (the client has gone), the hub drops
    /// `id_tx` without an answer.
    Join(Joining),
    /// A client's thread is ending. Ignored if the hub already removed the client
    /// (it cut it off, say).
    Leave {
        /// The client that left.
        id: ClientId,
        /// Why, as its thread knows it (the hub's own reason wins if it cut the
        /// client off first).
        reason: LeaveReason,
    },
    /// Close every client and end the thread.
    Shutdown,
}

/// One message for every client (or, from `Publisher::send_to`, for one), as it
/// travels to the hub.
pub(crate) struct Broadcast {
    /// The message as one complete WebSocket frame, encoded by the publisher.
    pub(crate) frame: Vec<u8>,
    /// The message text, for SSE clients.
    pub(crate) text: String,
    /// The SSE event name (`tick`, `line`), or `None` for a plain message.
    pub(crate) event: Option<&'static str>,
    /// The one client it is for, or `None` for every client.
    pub(crate) to: Option<ClientId>,
    /// Its event id, for published events (messages, lines); ticks and notices
    /// have none. SSE clients see it as the event's `id:`.
    pub(crate) id: Option<u64>,
    /// The topic whose subscribers get it; `None` for every client.
    pub(crate) topic: Option<Topic>,
    /// Clients it is not for: the newest client a `join` notice announces, which
    /// knows from its welcome.
    pub(crate) not_to: Vec<ClientId>,
    /// Kept in the history without being sent: events a cluster node finds in
    /// the stream when it joins, which its clients may resume from.
    pub(crate) history_only: bool,
    /// Events up to this id were missed (a cluster node was cut off from Redis
    /// for longer than the stream kept them): the history cannot replay them.
    pub(crate) missed_up_to: Option<u64>,
}

impl Broadcast {
    /// Encodes `text` once as a WebSocket text frame.
    pub(crate) fn new(event: Option<&'static str>, text: String) -> Broadcast {
        Broadcast {
            // tour: frame-encoded-once
            frame: frame::text_frame(text.clone()),
            text,
            event,
            to: None,
            id: None,
            topic: None,
            not_to: Vec::new(),
            history_only: false,
            missed_up_to: None,
        }
    }

    /// Encodes `text` once, for client `id` alone.
    pub(crate) fn to(id: ClientId, text: String) -> Broadcast {
        Broadcast {
            to: Some(id),
            ..Broadcast::new(None, text)
        }
    }
}

/// Something published, before it has its event id: what a [`crate::Publisher`]
/// hands to the hub (through the frames channel on one node, or through Redis
/// in a cluster, where every node turns it into the same [`Broadcast`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Publication {
    /// `{"type":"message",…}`; `data` is already JSON (a value or a string).
    Message {
        /// Its topic, or `None` for everyone.
        topic: Option<Topic>,
        /// The `data` field, as JSON.
        data: String,
    },
    /// `{"type":"line",…}`: a line of `--stdin`, or `Publisher::publish_line`.
    Line {
        /// The line.
        text: String,
    },
    /// Text sent as it is, with no id (`Publisher::publish_text`).
    Raw {
        /// The frame's text.
        text: String,
    },
    /// Text for one client (`Publisher::send_to`).
    To {
        /// The client.
        client: ClientId,
        /// The frame's text.
        text: String,
    },
    /// A `join` notice, for every client but the newest one it names.
    Join {
        /// Who joined.
        ids: Vec<ClientId>,
        /// How many clients there are now.
        clients: u64,
    },
    /// A `leave` notice, for everyone still connected.
    Leave {
        /// Who left.
        ids: Vec<ClientId>,
        /// How many clients there are now.
        clients: u64,
        /// Why they left.
        reason: LeaveReason,
    },
}

impl Publication {
    /// Whether it gets an event id that clients see and may resume from.
    pub(crate) fn has_id(&self) -> bool {
        matches!(self, Publication::Message { .. } | Publication::Line { .. })
    }

    /// The broadcast the hub sends for it, as event `id` (ignored for those
    /// without [`Publication::has_id`]).
    pub(crate) fn into_broadcast(self, id: u64) -> Broadcast {
        match self {
            Publication::Message { topic, data } => {
                let text = message::message(id, topic.as_ref().map(Topic::as_str), &data);
                Broadcast {
                    id: Some(id),
                    topic,
                    ..Broadcast::new(None, text)
                }
            }
            Publication::Line { text } => Broadcast {
                id: Some(id),
                ..Broadcast::new(Some("line"), message::line(id, &text))
            },
            Publication::Raw { text } => Broadcast::new(None, text),
            Publication::To { client, text } => Broadcast::to(client, text),
            // The newest joiner learned the count from its welcome; everyone who
            // joined before it, in the same window too, hears the notice.
            Publication::Join { ids, clients } => Broadcast {
                not_to: ids.last().copied().into_iter().collect(),
                ..Broadcast::new(Some("join"), message::join(&ids, clients_usize(clients)))
            },
            Publication::Leave {
                ids,
                clients,
                reason,
            } => Broadcast::new(
                Some("leave"),
                message::leave(&ids, clients_usize(clients), reason),
            ),
        }
    }
}

fn clients_usize(clients: u64) -> usize {
    usize::try_from(clients).unwrap_or(usize::MAX)
}

/// How many broadcasts may wait for the hub before publishers block.
pub(crate) const FRAME_QUEUE: usize = 1024;
