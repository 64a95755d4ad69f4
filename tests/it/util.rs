//! Helpers shared by the integration tests: start a server on free ports, connect
//! clients with timeouts on every socket, read JSON messages.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use tickcast::{Config, Server};
use tungstenite::{Message, WebSocket};

/// How long any single socket operation in a test may take before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A config on free loopback ports with a fast ticker, so tests run quickly.
pub fn test_config() -> Config {
    Config {
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        interval: Some(Duration::from_millis(100)),
        ..Config::default()
    }
}

/// Starts a server with `test_config()` changed by `adjust`.
pub fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
    let mut config = test_config();
    adjust(&mut config);
    Server::start(config).expect("server starts")
}

/// Starts a server with `test_config()`.
pub fn start() -> Server {
    start_with(|_| {})
}

/// Waits (at most [`IO_TIMEOUT`]) until `condition` holds, for what the test can
/// only see by looking again (a count the server updates a moment later); fails
/// the test, saying `what`, otherwise.
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::yield_now();
    }
}

/// A TCP connection to `addr` with read and write timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// A real WebSocket client (tungstenite's) connected to the server's `/echo`.
pub struct Client {
    pub ws: WebSocket<TcpStream>,
}

impl Client {
    pub fn connect(server: &Server) -> Client {
        Client::connect_path(server, "/echo")
    }

    pub fn connect_path(server: &Server, path: &str) -> Client {
        let addr = server.ws_addr();
        let url = format!("ws://{addr}{path}");
        let (ws, response) = tungstenite::client::client(url, tcp(addr)).expect("handshake");
        assert_eq!(response.status(), 101);
        Client { ws }
    }

    /// The next message of any kind; panics on timeout or error.
    pub fn next_message(&mut self) -> Message {
        loop {
            match self.ws.read() {
                Ok(message) => return message,
                // A stray signal may interrupt the read (it once did in CI): read
                // again.
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("read a message: {e}"),
            }
        }
    }

    /// The next text message, parsed as JSON (pings and pongs are skipped).
    pub fn next_json(&mut self) -> Value {
        loop {
            match self.next_message() {
                Message::Text(text) => {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// The next JSON message whose `type` is `kind`, skipping others.
    pub fn next_of_type(&mut self, kind: &str) -> Value {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "no {kind} message in time");
            let msg = self.next_json();
            if msg["type"] == kind {
                return msg;
            }
        }
    }

    /// Reads the welcome message, which must come first, and returns it.
    pub fn welcome(&mut self) -> Value {
        let msg = self.next_json();
        assert_eq!(msg["type"], "welcome", "first message: {msg}");
        msg
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).expect("send");
    }
}

/// The next message a WebSocket client gets that is not a presence notice.
pub fn next_event(client: &mut Client) -> Value {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no message in time");
        let msg = client.next_json();
        if !matches!(msg["type"].as_str(), Some("join" | "leave")) {
            return msg;
        }
    }
}

/// A raw HTTP/1.1 GET; returns (status, lowercased head, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
}

/// A GET's status, or `None` if nothing answers at `addr` (a server not yet up).
pub fn http_get_maybe(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let head = String::from_utf8_lossy(&response);
    head.split(' ').nth(1)?.parse().ok()
}

/// Sends `request` as-is and reads the whole response until the server closes.
pub fn http_raw(addr: SocketAddr, request: &str) -> (u16, String, Vec<u8>) {
    let mut stream = tcp(addr);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    split_response(&response)
}

pub fn split_response(response: &[u8]) -> (u16, String, Vec<u8>) {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete HTTP head");
    let head = String::from_utf8_lossy(&response[..end]).to_lowercase();
    let status = head[9..12].parse().expect("a status code");
    (status, head, response[end + 4..].to_vec())
}
