//! `POST /publish`: any program, in any language, publishes a message with one
//! HTTP request. Runs on the HTTP connection's thread (`http-<n>`).
//!
//! ```text
//! POST /publish?topic=prices HTTP/1.1
//! Authorization: Bearer <--publish-token>
//! Content-Length: 12
//!
//! {"price":42}
//! ```
//!
//! is answered `202 Accepted` with `{"id":7}`, and every subscriber of `prices`
//! (every client, without `?topic=`) receives
//! `{"type":"message","id":7,"topic":"prices","data":{"price":42}}`. A body that
//! is one JSON value goes out as that value; any other UTF-8 text as a string.
//!
//! Who may publish: with `--publish-token`, whoever sends it as a bearer token
//! (compared in constant time); without one, clients on this machine (loopback)
//! only, and not through a proxy that says it forwards for someone; with
//! `--publish off`, nobody. Everything else is refused before a byte of
//! the body is read, and nothing reaches a client:
//!
//! | request | answer |
//! |---|---|
//! | a method other than `POST` | `405`, `Allow: POST` |
//! | publishing off | `403` |
//! | no token or a wrong one | `401`, `WWW-Authenticate: Bearer` |
//! | not from loopback (or forwarded by a proxy), no `--publish-token` set | `403` |
//! | no `Content-Length` (e.g. a chunked body) | `411` |
//! | a body over `--max-message-size` | `413` |
//! | a bad topic name, two topics | `400`, naming the rule |
//! | a body that is not UTF-8 | `400` |
//! | a body that does not arrive within `--http-request-timeout` | `408` |

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Instant;

use crate::shared::Shared;
use crate::wire::http::{query_values, Head, Refusal};
use crate::{Config, Error};

/// What came of a publish request.
pub(super) enum Published {
    /// Published with this id: answer `202`; the connection may stay open.
    Accepted(u64),
    /// Refused, and nothing published: answer, then close the connection (the body
    /// may not have been read, so the connection is out of step).
    Refused(Refusal),
}

/// Handles `POST /publish`: checks who asks, reads the body (`pending` holds what
/// came after the head, and keeps what comes after the body), and publishes.
pub(super) fn publish(
    socket: &TcpStream,
    peer: SocketAddr,
    head: &Head,
    pending: &mut Vec<u8>,
    shared: &Shared,
) -> Published {
    let request = match judge(peer, head, &shared.config) {
        Ok(request) => request,
        Err(refusal) => return Published::Refused(refusal),
    };
    let body = match read_body(socket, pending, request.length, shared) {
        Ok(body) => body,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            let why = "the message did not arrive in time (--http-request-timeout)";
            return Published::Refused(Refusal::new(408, why));
        }
        Err(e) => {
            let why = format!("the message could not be read: {e}");
            return Published::Refused(Refusal::new(400, why));
        }
    };
    let body = match text(body) {
        Ok(body) => body,
        Err(refusal) => return Published::Refused(refusal),
    };
    match shared.publisher.publish(request.topic.as_deref(), &body) {
        Ok(id) => {
            log::debug!("{peer}: published event {id} ({} bytes)", body.len());
            Published::Accepted(id)
        }
        Err(Error::InvalidTopic(why)) => Published::Refused(Refusal::new(400, why)),
        Err(e @ Error::ClusterDown) => Published::Refused(Refusal::new(503, e.to_string())),
        Err(_) => Published::Refused(Refusal::new(503, "tickcast is shutting down")),
    }
}

/// A publish request that passed every check of its head.
#[derive(Debug)]
pub(crate) struct PublishRequest {
    /// The topic it names (`?topic=`), not yet checked against the rule.
    pub(crate) topic: Option<String>,
    /// The body's length, from `Content-Length`, at most `--max-message-size`.
    pub(crate) length: usize,
}

/// Judges a publish request by its head, before a byte of the body is read: the
/// method, who asks, the topic and the length. No I/O, so the fuzz target can
/// call it.
pub(crate) fn judge(
    peer: SocketAddr,
    head: &Head,
    config: &Config,
) -> Result<PublishRequest, Refusal> {
    if head.method != "POST" {
        let mut refusal = Refusal::new(405, "publish with POST /publish");
        refusal.extra_header = Some("Allow: POST");
        return Err(refusal);
    }
    check_allowed(peer, head, config)?;
    let topics = query_values(head.target, "topic").map_err(|why| Refusal::new(400, why))?;
    let topic = match topics.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        _ => {
            let why = "one topic per publish: give ?topic= once";
            return Err(Refusal::new(400, why));
        }
    };
    let Some(length) = head.header("Content-Length") else {
        let why = "send the message with a Content-Length (chunked bodies are not read here)";
        return Err(Refusal::new(411, why));
    };
    let Ok(length) = length.parse::<usize>() else {
        let why = format!("Content-Length {length:?} is not a number");
        return Err(Refusal::new(400, why));
    };
    let max = config.max_message_size;
    if length > max {
        let why = format!("a message of {length} bytes; the most is {max} (--max-message-size)");
        return Err(Refusal::new(413, why));
    }
    Ok(PublishRequest { topic, length })
}

/// The body as text.
pub(crate) fn text(body: Vec<u8>) -> Result<String, Refusal> {
    String::from_utf8(body).map_err(|_| Refusal::new(400, "the message is not UTF-8 text"))
}

/// Whether this request may publish: publishing on, and the token if one is set,
/// else a loopback peer.
fn check_allowed(peer: SocketAddr, head: &Head, config: &Config) -> Result<(), Refusal> {
    if !config.publish {
        return Err(Refusal::new(
            403,
            "publishing is switched off (--publish off)",
        ));
    }
    match &config.publish_token {
        Some(token) => {
            let authorization = head.header("Authorization");
            let offered = authorization
                .as_deref()
                .and_then(|value| value.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
                .map(|(_, offered)| offered.trim());
            if offered.is_some_and(|offered| constant_time_eq(offered.as_bytes(), token.as_bytes()))
            {
                return Ok(());
            }
            let mut refusal = Refusal::new(
                401,
                "publishing needs the token: send Authorization: Bearer <--publish-token>",
            );
            refusal.extra_header = Some("WWW-Authenticate: Bearer");
            Err(refusal)
        }
        // A reverse proxy on this machine makes every request look local; one that
        // says whom it forwards for is taken at its word that it is not.
        None if is_loopback(peer.ip()) && !forwarded(head) => Ok(()),
        None if is_loopback(peer.ip()) => Err(Refusal::new(
            403,
            "this request came through a proxy (it carries Forwarded, X-Forwarded-For or \
             X-Real-IP); without --publish-token, only clients on the server's own machine \
             may publish",
        )),
        None => Err(Refusal::new(
            403,
            "without --publish-token, only clients on the server's own machine may publish",
        )),
    }
}

/// Whether a proxy says it forwarded this request for someone.
fn forwarded(head: &Head) -> bool {
    ["Forwarded", "X-Forwarded-For", "X-Real-IP"]
        .iter()
        .any(|name| head.header(name).is_some())
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Compares a secret without leaking, through the time it takes, how much of it
/// matched: every byte is looked at whatever the earlier ones were.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut differ = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        differ |= x ^ y;
    }
    differ == 0
}

/// Reads exactly `length` body bytes: first from `pending`, then from the socket,
/// within `--http-request-timeout`. What follows the body stays in `pending`.
fn read_body(
    mut socket: &TcpStream,
    pending: &mut Vec<u8>,
    length: usize,
    shared: &Shared,
) -> io::Result<Vec<u8>> {
    if pending.len() >= length {
        let rest = pending.split_off(length);
        return Ok(std::mem::replace(pending, rest));
    }
    let mut body = std::mem::take(pending);
    let timeout = shared.config.http_request_timeout;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 16 << 10];
    while body.len() < length {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))?;
        socket.set_read_timeout(Some(left))?;
        let want = (length - body.len()).min(buf.len());
        match socket.read(&mut buf[..want]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn loopback_includes_mapped_addresses() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    }
}
