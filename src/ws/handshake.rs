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

#[cfg(doc)]
use crate::wire::http::read_request;
use crate::wire::http::{origin_allowed, Head, Incoming, Refusal, RequestHead};
use crate::wire::subscription::Subscription;

/// What the connection thread should do with a request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Upgrade: send [`switching_protocols`] with this accept key.
    Accept {
        /// The `Sec-WebSocket-Accept` value.
        accept_key: String,
        /// The topics and resume point the URL asks for.
        subscription: Subscription,
    },
    /// Refuse with an HTTP error response.
    Refuse(Refusal),
}

/// What the server knows that the decision depends on, besides the request.
pub(crate) struct Context<'a> {
    /// The page's URL, to point lost HTTP clients at it; `None` if no HTTP server.
    pub(crate) page_url: Option<&'a str>,
    /// `--allowed-origin` values; empty allows every origin.
    pub(crate) allowed_origins: &'a [String],
    /// Whether a Flash policy is served (`--flash-policy-addr`): the WebSocket
    /// port then answers an in-band policy request too.
    pub(crate) serves_flash_policy: bool,
    /// `Some(--max-clients)` when the server is full.
    pub(crate) full: Option<usize>,
}

/// What to do with a new connection once its request has been read.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Join the hub, which writes `answer` (the `101`) with the welcome.
    Upgrade {
        /// The `101 Switching Protocols` answer.
        answer: Vec<u8>,
        /// The topics and resume point the URL asks for.
        subscription: Subscription,
        /// What was read: the bytes that followed the request head (the client may
        /// send its first frame without waiting for our answer, and they belong
        /// to the WebSocket), in the buffer the WebSocket will read into.
        read: RequestHead,
    },
    /// Send the Flash policy document, then hang up.
    FlashPolicy,
    /// Answer with this HTTP error, then hang up.
    Refuse(Refusal),
    /// The client went before its request was whole: nothing to answer.
    HungUp,
}

/// Decides what to do with what [`read_request`] read off a new connection: the
/// whole of the handshake's logic, with no I/O, so that the fuzz targets run
/// exactly what the connection thread runs.
pub(crate) fn decide(read: Result<Option<Incoming>, Refusal>, ctx: &Context<'_>) -> Decision {
    let request = match read {
        Ok(Some(Incoming::Http(request))) => request,
        Ok(Some(Incoming::FlashPolicyRequest)) if ctx.serves_flash_policy => {
            return Decision::FlashPolicy
        }
        Ok(Some(Incoming::FlashPolicyRequest)) => {
            let refusal = Refusal::new(400, "a Flash policy request, but no policy is served");
            return Decision::Refuse(refusal);
        }
        Ok(None) => return Decision::HungUp,
        Err(refusal) => return Decision::Refuse(refusal),
    };
    if let Some(max_clients) = ctx.full {
        return Decision::Refuse(Refusal::new(
            503,
            format!("tickcast is full ({max_clients} clients, see --max-clients); try again later"),
        ));
    }
    match check(request.head(), ctx) {
        Verdict::Accept {
            accept_key,
            subscription,
        } => Decision::Upgrade {
            answer: switching_protocols(&accept_key),
            subscription,
            read: request,
        },
        Verdict::Refuse(refusal) => Decision::Refuse(refusal),
    }
}

/// Decides whether a request head is a valid WebSocket upgrade to our endpoint.
fn check(head: &[u8], ctx: &Context<'_>) -> Verdict {
    let request = match Head::parse(head) {
        Ok(request) => request,
        Err(refusal) => return Verdict::Refuse(refusal),
    };
    let header = |name: &str| request.header(name);
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
    let path = request.target.split('?').next().unwrap_or(request.target);
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
    let subscription = match Subscription::from_target(request.target) {
        Ok(subscription) => subscription,
        Err(why) => return Verdict::Refuse(Refusal::new(400, why)),
    };
    Verdict::Accept {
        accept_key: tungstenite::handshake::derive_accept_key(key.as_bytes()),
        subscription,
    }
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

    const CTX: Context<'static> = Context {
        page_url: Some("http://127.0.0.1:8080/"),
        allowed_origins: &[],
        serves_flash_policy: false,
        full: None,
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
            Verdict::Accept { accept_key, .. } => {
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
            serves_flash_policy: false,
            full: None,
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
}
