//! The RFC 6455 opening handshake, read and answered by hand.
//!
//! A WebSocket starts life as an HTTP/1.1 request:
//!
//! ```text
//! GET /echo HTTP/1.1
//! Host: 127.0.0.1:40132
//! Upgrade: websocket
//! Connection: Upgrade
//! Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
//! Sec-WebSocket-Version: 13
//! ```
//!
//! and the server agrees with `101 Switching Protocols`, proving it understood by
//! returning `Sec-WebSocket-Accept`: the SHA-1 of the key glued to a fixed GUID, in
//! base64. From the next byte on, both sides speak WebSocket frames.
//!
//! tungstenite can do this for us, but out of the box it answers some bad requests
//! by just closing the socket. A user deserves to know what went wrong, so this
//! module parses the request itself (with `httparse`) and turns every refusal into
//! a proper HTTP status with a one-line body. No threads here: the connection's own
//! thread calls [`read_request`] and [`check`], and the hub writes
//! [`switching_protocols`] as it adds the client. The HTTP port reads its request
//! heads with [`read_request`] too.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// What the connection thread should do with a request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Upgrade: send [`switching_protocols`] with this accept key.
    Accept {
        /// The `Sec-WebSocket-Accept` value.
        accept_key: String,
    },
    /// Refuse with an HTTP error response.
    Refuse(Refusal),
}

/// An HTTP error answer to a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
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
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// After the server sends its last answer (an HTTP error, a close frame) on a
/// connection it will not read to the end, how long it keeps reading and
/// discarding before hanging up.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// Reads and discards until the peer hangs up or [`LINGER`] passes. Closing a
/// socket with unread input makes the kernel send a reset, which can destroy the
/// server's last answer before the peer reads it.
pub(crate) fn linger(mut socket: &TcpStream) {
    let deadline = Instant::now() + LINGER;
    let mut sink = vec![0u8; 1024];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match socket.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
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
    pub(crate) head: Vec<u8>,
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
    // Buffers live on the heap, not the stack: a stack page touched once stays
    // resident for the connection's whole life, times thousands of connections.
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 1024];
    loop {
        if Instant::now() >= deadline {
            return Err(timeout_refusal());
        }
        let n = match socket.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => n,
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
        let search_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
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
pub(crate) struct Head {
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

/// What the listener knows that a refusal may need to tell the client.
pub(crate) struct Context<'a> {
    /// The page's URL, to point lost HTTP clients at it; `None` if no HTTP server.
    pub(crate) page_url: Option<&'a str>,
    /// `--allowed-origin` values; empty allows every origin.
    pub(crate) allowed_origins: &'a [String],
}

/// Decides whether a request head is a valid WebSocket upgrade to our endpoint.
pub(crate) fn check(head: &[u8], ctx: &Context<'_>) -> Verdict {
    let request = match Head::parse(head) {
        Ok(request) => request,
        Err(refusal) => return Verdict::Refuse(refusal),
    };
    let header = |name: &str| request.header(name).map(str::to_string);
    let has_token = |name: &str, token: &str| request.has_token(name, token);

    // Plain HTTP (a browser pointed at the wrong port, curl, a health checker).
    if header("Upgrade").is_none() {
        let body = match ctx.page_url {
            Some(url) => {
                format!("this is tickcast's WebSocket port (ws://…/echo); the page is at {url}")
            }
            None => "this is tickcast's WebSocket port; connect with a WebSocket client to /echo"
                .to_string(),
        };
        return Verdict::Refuse(Refusal::new(400, body));
    }
    if request.method != "GET" {
        return Verdict::Refuse(Refusal::new(405, "a WebSocket handshake must use GET"));
    }
    if request.minor_version != 1 {
        return Verdict::Refuse(Refusal::new(400, "a WebSocket handshake needs HTTP/1.1"));
    }
    let path = request.target.as_str();
    let path = path.split('?').next().unwrap_or(path);
    if path != "/echo" && path != "/" {
        return Verdict::Refuse(Refusal::new(
            404,
            format!("no WebSocket endpoint at {path}; connect to /echo"),
        ));
    }
    if !has_token("Upgrade", "websocket") || !has_token("Connection", "upgrade") {
        return Verdict::Refuse(Refusal::new(
            400,
            "a WebSocket handshake needs `Upgrade: websocket` and `Connection: Upgrade`",
        ));
    }
    let Some(key) = header("Sec-WebSocket-Key") else {
        // The 2010 tutorial's browsers spoke draft-75/76: no key, no version.
        return Verdict::Refuse(Refusal {
            status: 426,
            body: "missing Sec-WebSocket-Key: this looks like a pre-standard (draft-75/76) \
                   handshake; tickcast speaks RFC 6455 (version 13) only"
                .to_string(),
            extra_header: Some("Sec-WebSocket-Version: 13"),
        });
    };
    if header("Sec-WebSocket-Version").as_deref() != Some("13") {
        return Verdict::Refuse(Refusal {
            status: 426,
            body: "unsupported Sec-WebSocket-Version; tickcast speaks version 13 (RFC 6455)"
                .to_string(),
            extra_header: Some("Sec-WebSocket-Version: 13"),
        });
    }
    if let Some(origin) = header("Origin") {
        if !origin_allowed(&origin, ctx.allowed_origins) {
            return Verdict::Refuse(Refusal::new(
                403,
                format!("origin {origin} is not allowed to connect (see --allowed-origin)"),
            ));
        }
    }
    if !is_valid_key(&key) {
        return Verdict::Refuse(Refusal::new(
            400,
            "Sec-WebSocket-Key must be 16 random bytes in base64 (24 characters)",
        ));
    }
    Verdict::Accept {
        accept_key: tungstenite::handshake::derive_accept_key(key.as_bytes()),
    }
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

/// A key is 16 bytes in base64: 22 significant characters and `==`.
fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// The `101 Switching Protocols` answer that completes the handshake.
pub(crate) fn switching_protocols(accept_key: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept_key}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const CTX: Context<'static> = Context {
        page_url: Some("http://127.0.0.1:8080/"),
        allowed_origins: &[],
    };

    fn request(lines: &[&str]) -> Vec<u8> {
        let mut s = lines.join("\r\n");
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }

    fn refusal(head: &[u8]) -> Refusal {
        match check(head, &CTX) {
            Verdict::Refuse(r) => r,
            Verdict::Accept { .. } => panic!("accepted"),
        }
    }

    const GOOD: [&str; 6] = [
        "GET /echo HTTP/1.1",
        "Host: x",
        "Upgrade: websocket",
        "Connection: keep-alive, Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];

    #[test]
    fn rfc_example_key_is_accepted() {
        match check(&request(&GOOD), &CTX) {
            Verdict::Accept { accept_key } => {
                assert_eq!(accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            }
            Verdict::Refuse(r) => panic!("refused: {r:?}"),
        }
    }

    #[test]
    fn plain_http_points_at_the_page() {
        let r = refusal(&request(&["GET / HTTP/1.1", "Host: x"]));
        assert_eq!(r.status, 400);
        assert!(r.body.contains("http://127.0.0.1:8080/"), "{}", r.body);
    }

    #[test]
    fn wrong_path_is_404() {
        let mut lines = GOOD;
        lines[0] = "GET /other HTTP/1.1";
        assert_eq!(refusal(&request(&lines)).status, 404);
    }

    #[test]
    fn draft75_handshake_gets_426() {
        let r = refusal(&request(&[
            "GET /echo HTTP/1.1",
            "Upgrade: WebSocket",
            "Connection: Upgrade",
            "Host: x",
            "Origin: http://x",
        ]));
        assert_eq!(r.status, 426);
        assert!(String::from_utf8(r.to_http())
            .unwrap()
            .contains("Sec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn origins_outside_the_list_are_403() {
        let allowed = ["https://example.com".to_string()];
        let ctx = Context {
            page_url: None,
            allowed_origins: &allowed,
        };
        let mut lines = GOOD.to_vec();
        lines.push("Origin: https://evil.example");
        assert!(matches!(
            check(&request(&lines), &ctx),
            Verdict::Refuse(Refusal { status: 403, .. })
        ));
        *lines.last_mut().unwrap() = "Origin: HTTPS://Example.com";
        assert!(matches!(
            check(&request(&lines), &ctx),
            Verdict::Accept { .. }
        ));
        // No Origin at all (not a browser): let through.
        assert!(matches!(
            check(&request(&GOOD), &ctx),
            Verdict::Accept { .. }
        ));
    }

    #[test]
    fn bad_key_is_400() {
        let mut lines = GOOD;
        lines[4] = "Sec-WebSocket-Key: short";
        assert_eq!(refusal(&request(&lines)).status, 400);
    }

    #[test]
    fn head_and_leftover_are_split_at_the_blank_line() {
        let mut bytes = request(&GOOD);
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
    fn oversized_head_is_431() {
        let bytes = vec![b'a'; 10_000];
        let deadline = Instant::now() + Duration::from_secs(1);
        let err = read_request(&bytes[..], 8192, deadline).err().unwrap();
        assert_eq!(err.status, 431);
    }
}
