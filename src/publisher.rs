//! [`Publisher`]: how a program (and `POST /publish`, and `--stdin`) hands its own
//! messages to the hub.
//!
//! No thread of its own: a publish runs on the caller's thread. It encodes the
//! message once as a WebSocket frame, and sends it on the hub's bounded frames
//! channel; the hub writes those same bytes to every client. The channel is
//! bounded ([`FRAME_QUEUE`](crate::hub::FRAME_QUEUE)), so a publisher in a tight
//! loop is slowed to the hub's pace instead of filling memory.
//!
//! Published events (messages and lines) get an **id** that only grows, by one per
//! event. Ids are handed out under a lock that is held until the event is on the
//! channel, so the hub sees them in id order, with no gaps, whatever thread
//! published them.
//!
//! The first id of a run is the time the server started, in microseconds since
//! 1970 ([`first_id_now`]), not 1: ids then keep growing across restarts, so a
//! client that resumes with an id from before a restart is told it missed events
//! instead of being replayed the new run's events as if they came after its own.

use std::sync::{Arc, Mutex};

use crossbeam_channel::Sender;

use crate::hub::{Broadcast, Publication};
use crate::wire::json::is_json;
use crate::wire::message::{self, ClientId};
use crate::wire::subscription::Topic;
use crate::Error;

/// The first event id of a run: the time now, in microseconds since 1970 (about
/// 1.8 × 10^15 in 2026, well within the integers JavaScript holds exactly, 2^53).
pub(crate) fn first_id_now() -> u64 {
    let since_1970 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_1970.as_micros())
        .unwrap_or(u64::MAX / 2)
        .max(1)
}

/// A cloneable handle for broadcasting your own messages to every client, or to
/// the clients of a topic.
///
/// Each message is encoded into one WebSocket frame, then the hub writes that
/// frame to every client it is for, next to the ticks (SSE clients get it as an
/// event: unnamed for messages, `line` for lines). In a cluster it goes through
/// Redis first, and every node's hub writes it to its own clients.
#[derive(Clone)]
pub struct Publisher {
    /// Where publications go.
    route: Route,
}

/// Where a publisher's publications go.
#[derive(Clone)]
enum Route {
    /// Straight to this server's hub, on its bounded frames channel.
    Hub {
        frames_tx: Sender<Broadcast>,
        /// The id the next published event gets; locked until that event is on
        /// the channel, so ids reach the hub in order.
        next_id: Arc<Mutex<u64>>,
    },
    /// To a log every node reads (a Redis stream), which gives the id.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Log(Arc<dyn EventLog>),
}

/// A log shared by the nodes of a cluster: appending gives a publication its
/// event id, and every node (this one too) reads it back and sends it. See
/// `crate::cluster`.
pub(crate) trait EventLog: Send + Sync {
    /// Appends `publication`; returns its event id.
    ///
    /// # Errors
    ///
    /// [`Error::ClusterDown`] if the log cannot be reached: nothing was appended.
    fn append(&self, publication: Publication) -> Result<u64, Error>;
}

impl Publisher {
    /// A publisher to this server's hub, whose first event gets id `first_id`
    /// (see [`first_id_now`]).
    pub(crate) fn new(frames_tx: Sender<Broadcast>, first_id: u64) -> Publisher {
        Publisher {
            route: Route::Hub {
                frames_tx,
                next_id: Arc::new(Mutex::new(first_id)),
            },
        }
    }

    /// A publisher to a cluster's shared log.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn to_log(log: Arc<dyn EventLog>) -> Publisher {
        Publisher {
            route: Route::Log(log),
        }
    }

    /// Publishes `body` as `{"type":"message","id":…,"topic":…,"data":…}` to the
    /// clients of `topic`, or to every client with `None`, and returns its id. A
    /// `body` that is one JSON value goes out as that value; any other text, as a
    /// JSON string. This is what `POST /publish` does.
    ///
    /// Blocks only if the hub is a thousand messages behind, which slows a runaway
    /// publisher to the hub's pace (in a cluster, for a round trip to Redis).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] for a topic name outside the rules (see
    /// `docs/PROTOCOL.md`); [`Error::Stopped`] once the server has shut down;
    /// [`Error::ClusterDown`] in a cluster whose Redis cannot be reached.
    pub fn publish(&self, topic: Option<&str>, body: &str) -> Result<u64, Error> {
        let topic = topic
            .map(|name| Topic::new(name).map_err(Error::InvalidTopic))
            .transpose()?;
        let data = message_data(body);
        self.publish_event(Publication::Message { topic, data })
    }

    /// Sends `text` as one text frame to every connected client, as it is: no
    /// type, no id, not kept for clients that resume. For messages clients should
    /// not miss, use [`Publisher::publish`].
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish`], but for the topic.
    pub fn publish_text(&self, text: impl Into<String>) -> Result<(), Error> {
        self.publish_event(Publication::Raw { text: text.into() })
            .map(drop)
    }

    /// Sends `{"type":"line","id":…,"text":…}` to every client: one line of a log
    /// or a pipe, JSON-escaped (SSE event name `line`), and returns its id. See
    /// [`crate::publish_lines`].
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish`], but for the topic.
    pub fn publish_line(&self, line: &str) -> Result<u64, Error> {
        self.publish_event(Publication::Line {
            text: line.to_string(),
        })
    }

    /// Sends `text` as one text frame to client `id` alone (an SSE client gets it
    /// as an unnamed event), in order with the broadcasts published before it.
    ///
    /// The hub delivers it a moment later: if the client has gone by then, the
    /// message is dropped and counted (`tickcast_undeliverable_messages_total`).
    /// Ids come from [`ClientEvent::Joined`](crate::ClientEvent) or the client's
    /// welcome.
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish`], but for the topic.
    pub fn send_to(&self, id: ClientId, text: impl Into<String>) -> Result<(), Error> {
        self.publish_event(Publication::To {
            client: id,
            text: text.into(),
        })
        .map(drop)
    }

    /// Hands `publication` on, with the next id on this server, or the log's.
    /// Returns the id (meaningless for publications without one).
    pub(crate) fn publish_event(&self, publication: Publication) -> Result<u64, Error> {
        match &self.route {
            Route::Hub { frames_tx, next_id } => {
                let mut next_id = next_id.lock().unwrap_or_else(|p| p.into_inner());
                let id = *next_id;
                let counts = publication.has_id();
                let broadcast = publication.into_broadcast(id);
                frames_tx.send(broadcast).map_err(|_| Error::Stopped)?;
                if counts {
                    *next_id += 1;
                }
                Ok(id)
            }
            Route::Log(log) => log.append(publication),
        }
    }
}

/// The `data` clients get for a published `body`: the JSON value it is, or else
/// the text as a JSON string.
pub(crate) fn message_data(body: &str) -> String {
    if is_json(body) {
        body.trim().to_string()
    } else {
        message::json_string(body)
    }
}

/// The text clients get for a published `body`, as event `id`.
pub(crate) fn message_text(id: u64, topic: Option<&Topic>, body: &str) -> String {
    message::message(id, topic.map(Topic::as_str), &message_data(body))
}
