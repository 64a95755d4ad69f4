//! HTTP/1.1 request heads and error answers, as both ports read and write them:
//! the WebSocket handshake is an HTTP request, and so is every request to the
//! page. No threads; [`read_request`] reads from whatever it is given.

use std::io::{self, Read};
use std::time::Instant;

/// An HTTP error answer, with a one-line body saying what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The HTTP status, 4xx or 5xx.
    pub(crate) status: u16,
    /// One line saying what went wrong and what to do.
    pub(crate) body: String,
    /// One extra header line, without CRLF (e.g. `Sec-WebSocket-Version: 13`).
    pub(crate) extra_header: Option<&'static str>,
}

impl Refusal {
    pub(crate) fn new(status: u16, body: impl Into<String>) -> Refusal {
        Refusal {
            status,
            body: body.into(),
            extra_header: None,
        }
    }

    /// The complete HTTP response. `Connection: close`: we hang up after it.
    pub(crate) fn to_http(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason_phrase(self.status),
            self.body.len() + 1
        );
        if let Some(header) = self.extra_header {
            head.push_str(header);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        head.push_str(&self.body);
        head.push('\n');
        head.into_bytes()
    }
}

/// The standard reason phrase for the statuses tickcast sends.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// What arrived on a new connection.
pub(crate) enum Incoming {
    /// An HTTP request (a WebSocket handshake, we hope).
    Http(RequestHead),
    /// A Flash player's `<policy-file-request/>`, sent here because port 843 did
    /// not answer.
    FlashPolicyRequest,
}

/// The request head and any bytes the client sent after it (a client may send its
/// first frame without waiting for our answer; those bytes belong to the WebSocket).
pub(crate) struct RequestHead {
    /// The request head, up to and including the blank line.
    pub(crate) head: Vec<u8>,
    /// Whatever the client sent after it.
    pub(crate) leftover: Vec<u8>,
}

/// Reads until the blank line that ends the request head.
///
/// The caller has set a read timeout on the socket; `deadline` bounds the whole
/// read, so a client trickling one byte at a time cannot hold the thread forever.
///
/// # Errors
///
/// A [`Refusal`] to send (408, 431, 400), or `Ok(None)` if the client hung up.
pub(crate) fn read_request(
    mut socket: impl Read,
    max_size: usize,
    deadline: Instant,
) -> Result<Option<Incoming>, Refusal> {
    // One buffer, on the heap, read into directly. Not on the stack: a stack page
    // touched once stays resident for the connection's whole life, times
    // thousands of connections. And only one: memory a client thread frees
    // stays in that thread's malloc cache for good, unless the thread
    // allocates the same size again (as tungstenite's read buffer does, once).
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if Instant::now() >= deadline {
            return Err(timeout_refusal());
        }
        let start = buf.len();
        buf.resize(start + 1024, 0);
        let read = socket.read(&mut buf[start..]);
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timeout_refusal())
            }
            Err(_) => return Ok(None),
        };
        // Only the new bytes (and the 3 before them) can complete the terminator.
        let search_from = start.saturating_sub(3);
        let policy = crate::flash_policy::POLICY_REQUEST;
        if buf.len() >= policy.len() && buf.starts_with(policy) {
            return Ok(Some(Incoming::FlashPolicyRequest));
        }
        if let Some(end) = find_head_end(&buf[search_from..]) {
            let end = search_from + end;
            if end > max_size {
                return Err(too_large(max_size));
            }
            let leftover = buf.split_off(end);
            return Ok(Some(Incoming::Http(RequestHead {
                head: buf,
                leftover,
            })));
        }
        if buf.len() > max_size {
            return Err(too_large(max_size));
        }
    }
}

fn timeout_refusal() -> Refusal {
    Refusal::new(408, "the request head did not arrive in time")
}

fn too_large(max_size: usize) -> Refusal {
    Refusal::new(
        431,
        format!("the request head is larger than {max_size} bytes"),
    )
}

/// Returns the index just past `\r\n\r\n`.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// A request head, parsed: the request line and the header fields, as the
/// WebSocket handshake and the HTTP port both read them.
#[derive(Debug)]
pub(crate) struct Head {
    /// `GET`, `POST`, …
    pub(crate) method: String,
    /// The request target as sent, e.g. `/echo?x=1`.
    pub(crate) target: String,
    /// 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub(crate) minor_version: u8,
    /// (name, value with surrounding whitespace trimmed), in order.
    headers: Vec<(String, String)>,
}

impl Head {
    /// Parses a complete request head (as [`read_request`] returns it).
    ///
    /// # Errors
    ///
    /// A `400` for a malformed head, a `431` for more than 64 header fields.
    pub(crate) fn parse(head: &[u8]) -> Result<Head, Refusal> {
        let mut headers = vec![httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(Refusal::new(400, "incomplete HTTP request"))
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Refusal::new(431, "more than 64 header fields"))
            }
            Err(e) => return Err(Refusal::new(400, format!("malformed HTTP request: {e}"))),
        }
        Ok(Head {
            // A complete parse has both; the defaults are never used.
            method: request.method.unwrap_or("GET").to_string(),
            target: request.path.unwrap_or("/").to_string(),
            minor_version: request.version.unwrap_or(1),
            headers: request
                .headers
                .iter()
                .map(|h| {
                    let value = String::from_utf8_lossy(h.value).trim().to_string();
                    (h.name.to_string(), value)
                })
                .collect(),
        })
    }

    /// The value of the first header field called `name` (any case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the header field `name` lists `token` (comma-separated, any case),
    /// as in `Connection: keep-alive, Upgrade`.
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// The values of `key` in a request target's query (`/echo?topic=a&topic=b`), in
/// order, percent-decoded (`room%3A42` is `room:42`, as browsers send it).
/// `Err` names a value that does not decode to UTF-8 text.
pub(crate) fn query_values(target: &str, key: &str) -> Result<Vec<String>, String> {
    let Some((_, query)) = target.split_once('?') else {
        return Ok(Vec::new());
    };
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then_some(v)
        })
        .map(|value| {
            percent_decode(value, true)
                .ok_or_else(|| format!("{key}={value:?} is not percent-encoded UTF-8 text"))
        })
        .collect()
}

/// Decodes `%XX` escapes, and `+` as a space if `plus_is_space` (as HTML forms
/// send query strings; in a URL's user and password `+` is itself). `None` for a
/// `%` not followed by two hex digits, or text that is not UTF-8 once decoded.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        match b {
            b'%' => {
                let hex = tail.get(..2)?;
                let hex = std::str::from_utf8(hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            }
            b'+' if plus_is_space => {
                bytes.push(b' ');
                rest = tail;
            }
            _ => {
                bytes.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

/// Whether a browser's `Origin` is on the list (empty list: everything is).
/// Scheme and host are case-insensitive; a trailing slash is ignored.
pub(crate) fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    allowed.is_empty()
        || allowed
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every status the server answers has its reason phrase (a `202 Error`
    /// status line once told publishers their event was refused).
    #[test]
    fn every_status_sent_has_its_reason_phrase() {
        for status in [
            200, 202, 400, 401, 403, 404, 405, 408, 411, 413, 426, 431, 503,
        ] {
            assert_ne!(reason_phrase(status), "Error", "{status}");
        }
        assert_eq!(reason_phrase(202), "Accepted");
    }
    use std::time::Duration;

    #[test]
    fn head_and_leftover_are_split_at_the_blank_line() {
        let mut bytes = b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let head_len = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x80]);
        let deadline = Instant::now() + Duration::from_secs(1);
        let Some(Incoming::Http(got)) = read_request(&bytes[..], 8192, deadline).unwrap() else {
            panic!("not an HTTP request");
        };
        assert_eq!(got.head.len(), head_len);
        assert_eq!(got.leftover, [0x81, 0x80]);
    }

    #[test]
    fn query_values_are_found_and_decoded() {
        let target = "/echo?topic=prices&since=4&topic=room%3A42&x&topic=a+b#frag";
        assert_eq!(
            query_values(target, "topic"),
            Ok(vec!["prices".into(), "room:42".into(), "a b".into()])
        );
        assert_eq!(query_values(target, "since"), Ok(vec!["4".into()]));
        assert_eq!(query_values("/echo", "topic"), Ok(vec![]));
        assert!(query_values("/echo?topic=%zz", "topic").is_err());
        assert!(query_values("/echo?topic=%ff", "topic").is_err());
    }

    #[test]
    fn oversized_head_is_431() {
        let bytes = vec![b'a'; 10_000];
        let deadline = Instant::now() + Duration::from_secs(1);
        let err = read_request(&bytes[..], 8192, deadline).err().unwrap();
        assert_eq!(err.status, 431);
    }
}
