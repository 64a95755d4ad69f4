//! HTTP/1.1 request heads and error answers, as both ports read and write them:
//! the WebSocket handshake is an HTTP request, and so is every request to the
//! page. No threads; [`read_request`] reads from whatever it is given.

use std::borrow::Cow;
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
/// first frame without waiting for our answer; those bytes belong to the WebSocket),
/// in the one buffer [`read_request`] read them into.
#[derive(Debug)]
pub(crate) struct RequestHead {
    /// The head, up to and including its blank line, then whatever followed it.
    bytes: Vec<u8>,
    /// Where the head ends in `bytes`.
    head_len: usize,
}

impl RequestHead {
    /// The request head, up to and including the blank line.
    pub(crate) fn head(&self) -> &[u8] {
        &self.bytes[..self.head_len]
    }

    /// Whatever the client sent after the head.
    pub(crate) fn leftover(&self) -> &[u8] {
        &self.bytes[self.head_len..]
    }

    /// Whatever the client sent after the head, in the buffer the request was
    /// read into, with room for at least `min_capacity` bytes.
    ///
    /// Performance: the WebSocket keeps this buffer as its read buffer. A
    /// buffer a client thread frees stays in that thread's malloc cache for
    /// the thread's life (see `docs/PERFORMANCE.md`), so handing the same one
    /// on costs nothing, where a new one would cost its size again. An unusually
    /// large head (cookies) is not kept for the connection's life: the buffer
    /// shrinks back.
    pub(crate) fn into_leftover(mut self, min_capacity: usize) -> Vec<u8> {
        self.bytes.drain(..self.head_len);
        let enough = min_capacity.max(self.bytes.len());
        if self.bytes.capacity() > 2 * enough {
            self.bytes.shrink_to(enough);
        }
        self.bytes
    }
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
    chunk: usize,
    deadline: Instant,
) -> Result<Option<Incoming>, Refusal> {
    // One buffer, on the heap, read into directly, `chunk` bytes at a time. Not
    // on the stack: a stack page touched once stays resident for the
    // connection's whole life, times thousands of connections.
    let chunk = chunk.max(1);
    let mut buf: Vec<u8> = Vec::with_capacity(chunk);
    loop {
        if Instant::now() >= deadline {
            return Err(timeout_refusal());
        }
        let start = buf.len();
        buf.resize(start + chunk, 0);
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
            return Ok(Some(Incoming::Http(RequestHead {
                bytes: buf,
                head_len: end,
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

/// Most header fields a request may have; more gets `431`.
const MAX_HEADERS: usize = 64;

/// A request head, parsed: the request line and the header fields, as the
/// WebSocket handshake and the HTTP port both read them. It borrows the bytes
/// it was parsed from.
///
/// Performance: nothing is copied out of the request. Every small string a
/// client thread allocates and frees during its handshake would stay in that
/// thread's malloc cache for the connection's life (about 0.8 KiB per client
/// when the header fields were copied into `String`s).
#[derive(Debug)]
pub(crate) struct Head<'a> {
    /// `GET`, `POST`, …
    pub(crate) method: &'a str,
    /// The request target as sent, e.g. `/echo?x=1`.
    pub(crate) target: &'a str,
    /// 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub(crate) minor_version: u8,
    /// The header fields, in order.
    headers: Vec<httparse::Header<'a>>,
}

impl<'a> Head<'a> {
    /// Parses a complete request head (as [`read_request`] returns it).
    ///
    /// # Errors
    ///
    /// A `400` for a malformed head, a `431` for more than 64 header fields.
    pub(crate) fn parse(head: &'a [u8]) -> Result<Head<'a>, Refusal> {
        let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(Refusal::new(400, "incomplete HTTP request"))
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Refusal::new(
                    431,
                    format!("more than {MAX_HEADERS} header fields"),
                ))
            }
            Err(e) => return Err(Refusal::new(400, format!("malformed HTTP request: {e}"))),
        }
        // A complete parse has all three; the defaults are never used.
        let method = request.method.unwrap_or("GET");
        let target = request.path.unwrap_or("/");
        let minor_version = request.version.unwrap_or(1);
        let count = request.headers.len();
        headers.truncate(count);
        Ok(Head {
            method,
            target,
            minor_version,
            headers,
        })
    }

    /// The value of the first header field called `name` (any case), without
    /// surrounding whitespace (httparse leaves it out). Bytes that are not UTF-8
    /// become U+FFFD, so such a value never equals what it is compared with (an
    /// `Origin`, a token).
    pub(crate) fn header(&self, name: &str) -> Option<Cow<'a, str>> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value))
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

    fn read_whole(bytes: &[u8], chunk: usize) -> RequestHead {
        let deadline = Instant::now() + Duration::from_secs(1);
        match read_request(bytes, 8192, chunk, deadline) {
            Ok(Some(Incoming::Http(read))) => read,
            _ => panic!("not an HTTP request"),
        }
    }

    #[test]
    fn head_and_leftover_are_split_at_the_blank_line() {
        let mut bytes = b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let head_len = bytes.len();
        bytes.extend_from_slice(&[0x81, 0x80]);
        let got = read_whole(&bytes, 1024);
        assert_eq!(got.head().len(), head_len);
        assert_eq!(got.leftover(), [0x81, 0x80]);
        // In chunks that split the terminator: the reading stops with the chunk
        // that ends the head, so the leftover is what that chunk held beyond it.
        for (chunk, leftover) in [(4, &[0x81][..]), (1, &[][..])] {
            let got = read_whole(&bytes, chunk);
            assert_eq!(got.head().len(), head_len, "chunk {chunk}");
            assert_eq!(got.leftover(), leftover, "chunk {chunk}");
        }
    }

    /// The WebSocket reads into the buffer the request was read into: the same
    /// allocation, with the bytes after the head at its start.
    #[test]
    fn the_leftover_keeps_the_request_buffer() {
        let mut bytes = b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0x81, 0x80]);
        let read = read_whole(&bytes, 512);
        let buffer = read.head().as_ptr();
        let leftover = read.into_leftover(512);
        assert_eq!(leftover, [0x81, 0x80]);
        assert_eq!(leftover.as_ptr(), buffer);
        assert!(leftover.capacity() >= 512);
    }

    /// A head far larger than the read buffer (cookies) does not keep its
    /// buffer for the connection's life.
    #[test]
    fn a_large_head_does_not_keep_its_buffer() {
        let cookie = "a".repeat(5000);
        let request = format!("GET /echo HTTP/1.1\r\nCookie: {cookie}\r\n\r\nxy");
        let read = read_whole(request.as_bytes(), 512);
        let leftover = read.into_leftover(512);
        assert_eq!(leftover, b"xy");
        assert!(leftover.capacity() < 1024, "{}", leftover.capacity());
    }

    #[test]
    fn header_values_are_trimmed_and_looked_up_in_any_case() {
        let head = b"GET /echo?x HTTP/1.1\r\nOrigin: \t http://a.example \t \r\nX: \xff\r\n\r\n";
        let head = Head::parse(head).unwrap();
        assert_eq!((head.method, head.target), ("GET", "/echo?x"));
        assert_eq!(head.header("origin").as_deref(), Some("http://a.example"));
        // Not UTF-8: still there (an `Origin` check must see it), as U+FFFD.
        assert_eq!(head.header("x").as_deref(), Some("\u{fffd}"));
        assert_eq!(head.header("Host"), None);
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
        let err = read_request(&bytes[..], 8192, 1024, deadline)
            .err()
            .unwrap();
        assert_eq!(err.status, 431);
    }
}
