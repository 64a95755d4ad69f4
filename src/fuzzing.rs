//! Entry points into the parsers tickcast wrote itself, for the fuzz targets in
//! `scripts/fuzz` and the property tests in `tests/fuzz_smoke.rs`. Each calls the
//! very function the server calls. Not part of the stable API (hidden from the
//! docs).
use std::ffi::OsString;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use crate::flash_policy::{parse_allow, policy_document};
pub use crate::wire::message::{json_string, line};
pub use crate::wire::sse::sse_event;

use crate::wire::http::{read_request, Head, Incoming};
use crate::wire::subscription::{Subscription, Topic};
use crate::ws::handshake::{decide, Context, Decision};

/// Reads a handshake request from `bytes` (as if they came off a socket) and
/// judges it: `Ok(())` to upgrade, `Err(status)` for an HTTP refusal, and
/// `Err(0)` if the bytes end before the request head does.
pub fn handshake(bytes: &[u8], allowed_origins: &[String]) -> Result<(), u16> {
    judge(bytes, allowed_origins)
}

/// [`handshake`], with the bytes arriving at most `max_read` at a time, as
/// from a client that trickles its request (`max_read` 0 counts as 1).
pub fn handshake_trickled(
    bytes: &[u8],
    allowed_origins: &[String],
    max_read: usize,
) -> Result<(), u16> {
    let trickle = Trickle {
        bytes,
        max_read: max_read.max(1),
    };
    judge(trickle, allowed_origins)
}

/// A reader that hands out at most `max_read` bytes per `read`.
struct Trickle<'a> {
    bytes: &'a [u8],
    max_read: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.max_read.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// The size of the steps a connection thread reads its request in, as the
/// server reads it by default.
fn read_chunk() -> usize {
    crate::Config::default().read_buffer_size
}

/// The server's own handshake steps ([`decide`]) on what [`read_request`] reads
/// from `socket`, as a server with no Flash policy and room for the client sees
/// them.
fn judge(socket: impl Read, allowed_origins: &[String]) -> Result<(), u16> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let read = read_request(socket, 8 << 10, read_chunk(), deadline);
    let context = Context {
        page_url: Some("http://127.0.0.1:8080/"),
        allowed_origins,
        serves_flash_policy: false,
        full: None,
    };
    match decide(read, &context) {
        Decision::Upgrade { .. } | Decision::FlashPolicy => Ok(()),
        Decision::Refuse(refusal) => Err(refusal.status),
        Decision::HungUp => Err(0),
    }
}

/// Maps a URL path onto a relative file path for `--public`, or refuses it.
pub fn static_path(url_path: &str) -> Option<PathBuf> {
    crate::http::safe_relative_path(url_path)
}

/// Whether a browser `Origin` passes an `--allowed-origin` list.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    crate::wire::http::origin_allowed(origin, allowed)
}

/// [`crate::cli::parse_args`] without the system resolver: an `ADDR` must be
/// `IP:PORT`, and a host name is refused as if it did not resolve.
///
/// # Errors
///
/// As [`crate::cli::parse_args`].
pub fn parse_args(args: Vec<OsString>) -> Result<crate::cli::Command, crate::cli::UsageError> {
    crate::cli::parse_args_resolving(args, |_| None)
}

/// Splits `input` into lines exactly as [`crate::publish_lines`] does, and
/// returns them with its summary.
pub fn lines(input: &[u8], max_line: usize) -> (Vec<String>, crate::LinesPublished) {
    let mut lines = Vec::new();
    let summary = crate::lines::read_lines(input, max_line, |text| {
        lines.push(text.to_string());
        Ok(true)
    })
    .expect("reading from a slice cannot fail");
    (lines, summary)
}

/// What a publish request gets, start to end.
#[derive(Debug)]
pub struct Publish {
    /// The topic, as the request named it.
    pub topic: Option<String>,
    /// The body, as text.
    pub body: String,
    /// What subscribers receive (as event id 1).
    pub message: String,
}

/// What `POST /publish` makes of `bytes` as they come off the socket of a
/// loopback peer, with `token` as `--publish-token` and `max_message_size`, up to
/// the message clients would get: the same steps as the server, in the same order.
///
/// # Errors
///
/// The refusal's HTTP status; 0 if the bytes end before the head or the body.
pub fn publish_request(
    bytes: &[u8],
    token: Option<&str>,
    max_message_size: usize,
) -> Result<Publish, u16> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let read = match read_request(bytes, 8 << 10, read_chunk(), deadline) {
        Ok(Some(Incoming::Http(read))) => read,
        Ok(Some(Incoming::FlashPolicyRequest)) => return Err(400),
        Ok(None) => return Err(0),
        Err(refusal) => return Err(refusal.status),
    };
    let head = Head::parse(read.head()).map_err(|r| r.status)?;
    let config = crate::Config {
        publish_token: token.map(String::from),
        max_message_size,
        ..crate::Config::default()
    };
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 50_000));
    let request = crate::http::publish::judge(peer, &head, &config).map_err(|r| r.status)?;
    let Some(body) = read.leftover().get(..request.length) else {
        return Err(0);
    };
    let body = crate::http::publish::text(body.to_vec()).map_err(|r| r.status)?;
    let topic = match &request.topic {
        Some(name) => Some(Topic::new(name).map_err(|_| 400_u16)?),
        None => None,
    };
    let message = crate::publisher::message_text(1, topic.as_ref(), &body);
    Ok(Publish {
        topic: request.topic,
        body,
        message,
    })
}

/// What a client's URL asks for (`?topic=`, repeatable, and `?since=`), as the
/// WebSocket handshake and `/events` read it: the topics and the id.
///
/// # Errors
///
/// The message of the `400` answer.
pub fn subscription(target: &str) -> Result<(Vec<String>, Option<u64>), String> {
    let Subscription { topics, since } = Subscription::from_target(target)?;
    Ok((
        topics.iter().map(|t| t.as_str().to_string()).collect(),
        since,
    ))
}

/// Checks a topic name against the rule; the error message states it.
///
/// # Errors
///
/// The `400` answer's message.
pub fn topic(name: &str) -> Result<String, String> {
    Topic::new(name).map(|t| t.as_str().to_string())
}

/// Whether `text` is one JSON value (RFC 8259, nested at most 64 deep), as
/// `POST /publish` judges a body.
pub fn is_json(text: &str) -> bool {
    crate::wire::json::is_json(text)
}
