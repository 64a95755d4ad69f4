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

use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::Sender;

use crate::hub::Broadcast;
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

/// The text clients get for a published `body`: `{"type":"message",…}` with the
/// body as its `data`, as the JSON value it is, or else as a JSON string.
pub(crate) fn message_text(id: u64, topic: Option<&Topic>, body: &str) -> String {
    let data = if is_json(body) {
        body.trim().to_string()
    } else {
        message::json_string(body)
    };
    message::message(id, topic.map(Topic::as_str), &data)
}

/// A cloneable handle for broadcasting your own messages to every client, or to
/// the clients of a topic.
///
/// Each message is encoded into one WebSocket frame on the calling thread, then the
/// hub writes that frame to every client it is for, next to the ticks (SSE clients
/// get it as an event: unnamed for messages, `line` for lines).
#[derive(Clone)]
pub struct Publisher {
    /// The hub's bounded frames channel.
    frames_tx: Sender<Broadcast>,
    /// The id the next published event gets; locked until that event is on the
    /// channel, so ids reach the hub in order.
    next_id: Arc<Mutex<u64>>,
}

impl Publisher {
    /// A publisher whose first event gets id `first_id` (see [`first_id_now`]).
    pub(crate) fn new(frames_tx: Sender<Broadcast>, first_id: u64) -> Publisher {
        Publisher {
            frames_tx,
            next_id: Arc::new(Mutex::new(first_id)),
        }
    }

    /// Publishes `body` as `{"type":"message","id":…,"topic":…,"data":…}` to the
    /// clients of `topic`, or to every client with `None`, and returns its id. A
    /// `body` that is one JSON value goes out as that value; any other text, as a
    /// JSON string. This is what `POST /publish` does.
    ///
    /// Blocks only if the hub is a thousand messages behind, which slows a runaway
    /// publisher to the hub's pace.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] for a topic name outside the rules (see
    /// `docs/PROTOCOL.md`); [`Error::Stopped`] once the server has shut down.
    pub fn publish(&self, topic: Option<&str>, body: &str) -> Result<u64, Error> {
        let topic = topic
            .map(|name| Topic::new(name).map_err(Error::InvalidTopic))
            .transpose()?;
        self.publish_event(topic, None, |id, topic| message_text(id, topic, body))
    }

    /// Sends `text` as one text frame to every connected client, as it is: no
    /// type, no id, not kept for clients that resume. For messages clients should
    /// not miss, use [`Publisher::publish`].
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] once the server has shut down.
    pub fn publish_text(&self, text: impl Into<String>) -> Result<(), Error> {
        self.send(Broadcast::new(None, text.into()))
    }

    /// Sends `{"type":"line","id":…,"text":…}` to every client: one line of a log
    /// or a pipe, JSON-escaped (SSE event name `line`), and returns its id. See
    /// [`crate::publish_lines`].
    ///
    /// # Errors
    ///
    /// [`Error::Stopped`] once the server has shut down.
    pub fn publish_line(&self, line: &str) -> Result<u64, Error> {
        self.publish_event(None, Some("line"), |id, _| message::line(id, line))
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
    /// [`Error::Stopped`] once the server has shut down.
    pub fn send_to(&self, id: ClientId, text: impl Into<String>) -> Result<(), Error> {
        self.send(Broadcast::to(id, text.into()))
    }

    /// Gives the next id to the event `encode` writes, and sends it to the hub
    /// before any later id.
    fn publish_event(
        &self,
        topic: Option<Topic>,
        event: Option<&'static str>,
        encode: impl FnOnce(u64, Option<&Topic>) -> String,
    ) -> Result<u64, Error> {
        let mut next_id = self.ids();
        let id = *next_id;
        let text = encode(id, topic.as_ref());
        let broadcast = Broadcast {
            id: Some(id),
            topic,
            ..Broadcast::new(event, text)
        };
        self.send(broadcast)?;
        *next_id += 1;
        Ok(id)
    }

    fn send(&self, broadcast: Broadcast) -> Result<(), Error> {
        self.frames_tx.send(broadcast).map_err(|_| Error::Stopped)
    }

    fn ids(&self) -> MutexGuard<'_, u64> {
        // A counter stays a valid counter even if a holder panicked.
        self.next_id.lock().unwrap_or_else(|p| p.into_inner())
    }
}
