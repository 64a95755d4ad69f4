//! RFC 6455 conformance cases (Autobahn sections 1-7, 9), crafted over raw sockets.
//!
//! The Autobahn|Testsuite fuzzing client needs Python 2 and Docker, so these are
//! its server-side cases written out by hand: each test starts its own server,
//! does the opening handshake on a plain `TcpStream`, sends frames built byte by
//! byte (masked, as a client must, unless the case is about masking), and checks
//! the exact frames and the TCP ending that come back.
//!
//! Section numbers in the docs refer to Autobahn's case ids; "RFC" means RFC 6455.
//!
//! Most servers here run without the ticker (`interval = None`) so the only
//! frames on the wire are the welcome and the answers under test; the frame
//! reader still skips the server's own JSON notices (`{"type":"…`) wherever they
//! may legitimately appear.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tickcast::Server;

use crate::util::{start_with, tcp, Client, IO_TIMEOUT};

// ---------------------------------------------------------------------------
// Frame building (client side)
// ---------------------------------------------------------------------------

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The RSV1, RSV2 and RSV3 bits, as they sit in a frame's first byte.
const RSV1: u8 = 0x4;
const RSV2: u8 = 0x2;
const RSV3: u8 = 0x1;

/// The masking key our frames use. Any key will do; a fixed one keeps failures
/// reproducible byte for byte.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// How to encode one client frame. `Shape::default()` is what a well-behaved
/// client sends: final, no RSV bits, masked, the true payload length.
#[derive(Clone, Copy)]
struct Shape {
    fin: bool,
    /// RSV1..3 as a 3-bit number (`RSV1 | RSV3`, say).
    rsv: u8,
    mask: Option<[u8; 4]>,
    /// Put this in the length field instead of the payload's real length.
    length: Option<u64>,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape {
            fin: true,
            rsv: 0,
            mask: Some(MASK),
            length: None,
        }
    }
}

/// Encodes one client frame exactly as `shape` says, with the shortest length
/// encoding for the (possibly forced) length.
fn encode(opcode: u8, payload: &[u8], shape: Shape) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(u8::from(shape.fin) << 7 | (shape.rsv & 0x7) << 4 | (opcode & 0xF));
    let mask_bit = if shape.mask.is_some() { 0x80 } else { 0 };
    let len = shape.length.unwrap_or(payload.len() as u64);
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    match shape.mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A final, masked frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode(opcode, payload, Shape::default())
}

/// A masked frame that is final or not.
fn fragment(opcode: u8, payload: &[u8], fin: bool) -> Vec<u8> {
    encode(
        opcode,
        payload,
        Shape {
            fin,
            ..Shape::default()
        },
    )
}

/// A masked frame with some RSV bits set.
fn with_rsv(opcode: u8, payload: &[u8], rsv: u8) -> Vec<u8> {
    encode(
        opcode,
        payload,
        Shape {
            rsv,
            ..Shape::default()
        },
    )
}

/// A close frame's payload: the status code, big-endian, then the reason.
fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}

/// `len` bytes of printable ASCII, so a text payload is valid UTF-8 and cannot be
/// mistaken for one of the server's JSON notices.
fn ascii(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// `len` bytes covering every byte value.
fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

// ---------------------------------------------------------------------------
// Frame reading (server side)
// ---------------------------------------------------------------------------

/// One frame as the server sent it.
#[derive(Debug)]
struct Frame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: Vec<u8>,
}

impl Frame {
    /// One of the server's own JSON messages (welcome, tick, join, leave), which
    /// may arrive at any time while the connection is open.
    fn is_notice(&self) -> bool {
        self.opcode == TEXT && self.payload.starts_with(br#"{"type":""#)
    }

    fn describe(&self) -> String {
        let shown = &self.payload[..self.payload.len().min(60)];
        format!(
            "frame opcode {:#x} fin {} rsv {} with {} bytes {:?}",
            self.opcode,
            self.fin,
            self.rsv,
            self.payload.len(),
            String::from_utf8_lossy(shown)
        )
    }
}

/// How the byte stream from the server ended, when a frame was wanted.
#[derive(Debug)]
enum Ended {
    /// Orderly end of stream (FIN).
    Eof,
    /// The server reset the connection.
    Reset,
    /// Nothing arrived within the socket's read timeout.
    Timeout,
    /// Any other socket error.
    Other(io::Error),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Eof => write!(f, "end of stream"),
            Ended::Reset => write!(f, "connection reset"),
            Ended::Timeout => write!(f, "read timed out"),
            Ended::Other(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl From<io::Error> for Ended {
    fn from(e: io::Error) -> Ended {
        match e.kind() {
            ErrorKind::UnexpectedEof => Ended::Eof,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                Ended::Reset
            }
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Ended::Timeout,
            _ => Ended::Other(e),
        }
    }
}

/// A raw WebSocket client: a socket with timeouts plus whatever has been read
/// from it but not yet parsed.
struct Peer {
    stream: TcpStream,
    /// Bytes read from the socket; those before `start` are already parsed.
    buffer: Vec<u8>,
    /// Where the unparsed bytes begin. Parsed bytes are dropped in bulk before the
    /// next read, not frame by frame, so a flood of small frames stays cheap.
    start: usize,
}

impl Peer {
    /// Connects to `/echo`, does the opening handshake by hand and reads the
    /// welcome, which must be the first frame.
    fn connect(server: &Server) -> Peer {
        Peer::handshake(server, tcp(server.ws_addr()))
    }

    /// Does the opening handshake over `stream`, a fresh connection to `server`.
    fn handshake(server: &Server, stream: TcpStream) -> Peer {
        let addr = server.ws_addr();
        stream.set_nodelay(true).unwrap();
        let mut peer = Peer {
            stream,
            buffer: Vec::new(),
            start: 0,
        };
        // The sample key and accept value from RFC 6455 section 1.3.
        let request = format!(
            "GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        peer.send(request.as_bytes());
        let end = loop {
            if let Some(end) = peer.unread().windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            peer.fill(peer.unread().len() + 1)
                .unwrap_or_else(|e| panic!("no complete handshake response: {e}"));
        };
        let head = String::from_utf8_lossy(&peer.unread()[..end]).to_lowercase();
        peer.start += end;
        assert!(
            head.starts_with("http/1.1 101"),
            "handshake refused: {head}"
        );
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "wrong accept key: {head}"
        );
        let welcome = peer.frame().expect("a welcome frame");
        assert!(
            welcome.opcode == TEXT && welcome.payload.starts_with(br#"{"type":"welcome""#),
            "first frame is not the welcome: {}",
            welcome.describe()
        );
        peer
    }

    /// Writes `bytes`; the server must take them.
    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("sending {} bytes: {e}", bytes.len()));
    }

    /// Writes `bytes` where the server may rightly hang up before reading them
    /// all (a message over the limit, say); what it answers is checked after.
    fn send_lenient(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// The bytes read but not yet parsed.
    fn unread(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    /// Reads until at least `n` unparsed bytes are buffered.
    fn fill(&mut self, n: usize) -> Result<(), Ended> {
        let mut chunk = [0u8; 64 * 1024];
        while self.unread().len() < n {
            self.buffer.drain(..self.start);
            self.start = 0;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Ended::Eof),
                Ok(k) => self.buffer.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads exactly one frame. Panics on anything a server must never send:
    /// a masked frame, or a length not in its shortest encoding.
    fn frame(&mut self) -> Result<Frame, Ended> {
        self.fill(2)?;
        let (first, second) = (self.unread()[0], self.unread()[1]);
        assert_eq!(second & 0x80, 0, "the server sent a masked frame");
        let (len, header) = match second & 0x7F {
            126 => {
                self.fill(4)?;
                let len = u64::from(u16::from_be_bytes([self.unread()[2], self.unread()[3]]));
                assert!(len >= 126, "length {len} sent in the 16-bit form");
                (len, 4)
            }
            127 => {
                self.fill(10)?;
                let len = u64::from_be_bytes(self.unread()[2..10].try_into().unwrap());
                assert!(len > 0xFFFF, "length {len} sent in the 64-bit form");
                assert!(len >> 63 == 0, "64-bit length with its top bit set");
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        let total = header + usize::try_from(len).unwrap();
        self.fill(total)?;
        let payload = self.unread()[header..total].to_vec();
        self.start += total;
        Ok(Frame {
            fin: first & 0x80 != 0,
            rsv: (first >> 4) & 0x7,
            opcode: first & 0xF,
            payload,
        })
    }

    /// The next frame that is not one of the server's JSON notices.
    fn next(&mut self) -> Frame {
        loop {
            match self.frame() {
                Ok(f) if f.is_notice() => continue,
                Ok(f) => return f,
                Err(ended) => panic!("expected a frame, but the connection ended: {ended}"),
            }
        }
    }

    /// The next frame must be a single, final frame of `opcode` carrying `payload`.
    fn expect(&mut self, opcode: u8, payload: &[u8]) {
        let f = self.next();
        assert!(
            f.opcode == opcode && f.fin && f.rsv == 0 && f.payload == payload,
            "expected opcode {opcode:#x} with {} bytes, got {}",
            payload.len(),
            f.describe()
        );
    }

    /// Reads up to the server's close frame and returns its code (`None` for an
    /// empty close) and reason. Panics if anything else but notices comes first, or
    /// if the connection ends without a close frame.
    fn close(&mut self) -> (Option<u16>, Vec<u8>) {
        loop {
            match self.frame() {
                Ok(f) if f.is_notice() => continue,
                Ok(f) if f.opcode == CLOSE => {
                    assert!(f.fin && f.rsv == 0, "bad close frame: {}", f.describe());
                    return match f.payload.len() {
                        0 => (None, Vec::new()),
                        1 => panic!("the server sent a 1-byte close payload"),
                        _ => (
                            Some(u16::from_be_bytes([f.payload[0], f.payload[1]])),
                            f.payload[2..].to_vec(),
                        ),
                    };
                }
                Ok(f) => panic!("expected a close frame, got {}", f.describe()),
                Err(ended) => {
                    panic!("expected a close frame, but the connection ended first: {ended}")
                }
            }
        }
    }

    /// The server must answer with a close frame carrying `code` and a valid UTF-8
    /// reason, then close the TCP connection.
    fn expect_close(&mut self, code: u16) {
        let (got, reason) = self.close();
        assert_eq!(
            got,
            Some(code),
            "close code (reason {:?})",
            String::from_utf8_lossy(&reason)
        );
        assert!(
            std::str::from_utf8(&reason).is_ok(),
            "close reason is not UTF-8"
        );
        self.expect_tcp_closed();
    }

    /// After its close frame the server sends nothing more and ends the TCP
    /// connection (end of stream or reset) within the read timeout.
    fn expect_tcp_closed(&mut self) {
        match self.fill(1) {
            Err(Ended::Eof | Ended::Reset) => {}
            Err(Ended::Timeout) => panic!("the server did not close TCP after its close frame"),
            Err(other) => panic!("waiting for the server to close TCP: {other}"),
            Ok(()) => match self.frame() {
                Ok(f) => panic!("after its close frame the server sent {}", f.describe()),
                Err(e) => panic!("after its close frame the server sent part of a frame, then {e}"),
            },
        }
    }

    /// Our side of the close handshake: send a normal close and expect it back.
    fn close_cleanly(&mut self) {
        self.send(&frame(CLOSE, &close_payload(1000, b"")));
        self.expect_close(1000);
    }
}

/// A server without the ticker or the page: only the answers under test (and the
/// welcome) are on the wire.
fn quiet_server() -> Server {
    start_with(|c| {
        c.interval = None;
        c.http_addr = None;
    })
}

/// Connects to a fresh quiet server, sends `bytes`, and expects close `code`
/// followed by the end of the TCP connection.
fn bad_input_closes_with(bytes: &[u8], code: u16) {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    peer.send_lenient(bytes);
    peer.expect_close(code);
}

// ---------------------------------------------------------------------------
// 1.x Framing: text and binary echo at every length encoding
// ---------------------------------------------------------------------------

/// Echoes one message of each `len` on one connection, as `opcode`.
fn echo_lengths(opcode: u8, lens: &[usize]) {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    for &len in lens {
        let payload = if opcode == TEXT {
            ascii(len)
        } else {
            bytes(len)
        };
        peer.send(&frame(opcode, &payload));
        peer.expect(opcode, &payload);
    }
    peer.close_cleanly();
}

/// 1.1.1-1.1.6: text of 0, 125, 126, 127, 65535 and 65536 bytes is echoed with the
/// shortest length encoding (7-bit, 16-bit, 64-bit).
#[test]
fn text_echo_at_length_boundaries() {
    echo_lengths(TEXT, &[0, 125, 126, 127, 65535, 65536]);
}

/// 1.2.1-1.2.6: binary of 0, 125, 126, 127, 65535 and 65536 bytes is echoed with
/// the shortest length encoding.
#[test]
fn binary_echo_at_length_boundaries() {
    echo_lengths(BINARY, &[0, 125, 126, 127, 65535, 65536]);
}

/// 9.1.6-like: a text message just under the 1 MiB default limit comes back whole.
#[test]
fn text_echo_of_almost_one_mebibyte() {
    echo_lengths(TEXT, &[(1 << 20) - 100]);
}

/// 9.2.6-like: a binary message just under the 1 MiB default limit comes back whole.
#[test]
fn binary_echo_of_almost_one_mebibyte() {
    echo_lengths(BINARY, &[(1 << 20) - 100]);
}

/// 1.1.8: a 65536-byte text frame delivered in 997-byte chunks is still parsed.
#[test]
fn text_frame_sent_in_chunks_is_echoed() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let payload = ascii(65536);
    for chunk in frame(TEXT, &payload).chunks(997) {
        peer.send(chunk);
    }
    peer.expect(TEXT, &payload);
}

// ---------------------------------------------------------------------------
// 2.x Pings and pongs
// ---------------------------------------------------------------------------

/// 2.1: an empty ping is answered with an empty pong.
#[test]
fn empty_ping_gets_empty_pong() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    peer.send(&frame(PING, b""));
    peer.expect(PONG, b"");
}

/// 2.2 and 2.3: a ping's text or binary payload is echoed in the pong.
#[test]
fn ping_payload_is_echoed_in_pong() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    peer.send(&frame(PING, b"Hello, world!"));
    peer.expect(PONG, b"Hello, world!");
    let binary = [0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff];
    peer.send(&frame(PING, &binary));
    peer.expect(PONG, &binary);
}

/// 2.4: a ping with the largest control payload (125 bytes) gets it back in the pong.
#[test]
fn ping_of_125_bytes_gets_pong() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let payload = bytes(125);
    peer.send(&frame(PING, &payload));
    peer.expect(PONG, &payload);
}

/// 2.6: a 125-byte ping sent one byte per write is still answered.
#[test]
fn ping_sent_byte_by_byte_gets_pong() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let payload = bytes(125);
    for byte in frame(PING, &payload) {
        peer.send(&[byte]);
    }
    peer.expect(PONG, &payload);
}

/// 2.5: a 126-byte ping (control frames carry at most 125) fails the connection with 1002.
#[test]
fn ping_of_126_bytes_closes_with_1002() {
    bad_input_closes_with(&frame(PING, &bytes(126)), 1002);
}

/// 2.7 and 2.8: unsolicited pongs are ignored and the connection stays usable.
#[test]
fn unsolicited_pong_is_ignored() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    peer.send(&frame(PONG, b""));
    peer.send(&frame(PONG, b"unsolicited pong payload"));
    peer.send(&frame(TEXT, b"still here"));
    // If either pong had been answered, that answer would come before the echo.
    peer.expect(TEXT, b"still here");
    peer.close_cleanly();
}

/// 2.10 and 2.11: ten pings in a row (one write, then one write each) get ten pongs,
/// in order.
#[test]
fn ten_pings_get_ten_pongs() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let burst: Vec<u8> = (0..10)
        .flat_map(|i| frame(PING, format!("burst {i}").as_bytes()))
        .collect();
    peer.send(&burst);
    for i in 0..10 {
        peer.expect(PONG, format!("burst {i}").as_bytes());
    }
    for i in 0..10 {
        peer.send(&frame(PING, format!("single {i}").as_bytes()));
    }
    for i in 0..10 {
        peer.expect(PONG, format!("single {i}").as_bytes());
    }
    peer.close_cleanly();
}

/// 2.9: a ping after our close frame is not answered; the server just completes the close.
#[test]
fn ping_after_close_is_not_answered() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let mut bytes = frame(CLOSE, &close_payload(1000, b""));
    bytes.extend(frame(PING, b"too late"));
    peer.send_lenient(&bytes);
    peer.expect_close(1000);
}

// ---------------------------------------------------------------------------
// 3.x Reserved bits
// ---------------------------------------------------------------------------

/// 3.1: RSV1 on a text frame (no extension negotiated) fails with 1002.
#[test]
fn rsv1_on_text_closes_with_1002() {
    bad_input_closes_with(&with_rsv(TEXT, b"Hello, world!", RSV1), 1002);
}

/// 3.2: RSV2 on a text frame after a good echo fails with 1002, and the ping after
/// it is not answered.
#[test]
fn rsv2_on_text_after_echo_closes_with_1002() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let mut bytes = frame(TEXT, b"Hello, world!");
    bytes.extend(with_rsv(TEXT, b"Hello, world!", RSV2));
    bytes.extend(frame(PING, b"Hello, world!"));
    peer.send_lenient(&bytes);
    peer.expect(TEXT, b"Hello, world!");
    peer.expect_close(1002);
}

/// 3.3: RSV1|RSV2 on a text frame fails with 1002.
#[test]
fn rsv1_rsv2_on_text_closes_with_1002() {
    bad_input_closes_with(&with_rsv(TEXT, b"Hello, world!", RSV1 | RSV2), 1002);
}

/// 3.4: RSV3 on a text frame fails with 1002.
#[test]
fn rsv3_on_text_closes_with_1002() {
    bad_input_closes_with(&with_rsv(TEXT, b"Hello, world!", RSV3), 1002);
}

/// 3.5: RSV1|RSV3 on a binary frame fails with 1002.
#[test]
fn rsv1_rsv3_on_binary_closes_with_1002() {
    bad_input_closes_with(&with_rsv(BINARY, &bytes(8), RSV1 | RSV3), 1002);
}

/// 3.6: RSV2|RSV3 on a ping fails with 1002 (and no pong).
#[test]
fn rsv2_rsv3_on_ping_closes_with_1002() {
    bad_input_closes_with(&with_rsv(PING, b"Hello, world!", RSV2 | RSV3), 1002);
}

/// 3.7: all three RSV bits on a close frame fail with 1002.
#[test]
fn rsv_all_on_close_closes_with_1002() {
    bad_input_closes_with(
        &with_rsv(CLOSE, &close_payload(1000, b""), RSV1 | RSV2 | RSV3),
        1002,
    );
}

// ---------------------------------------------------------------------------
// 4.x Opcodes
// ---------------------------------------------------------------------------

/// Sends an echo, then a frame with reserved `opcode`, then a ping: the echo comes
/// back, then close 1002 and no pong.
fn reserved_opcode_closes_with_1002(opcode: u8) {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let mut bytes = frame(TEXT, b"before");
    bytes.extend(frame(opcode, b"reserved"));
    bytes.extend(frame(PING, b"after"));
    peer.send_lenient(&bytes);
    peer.expect(TEXT, b"before");
    peer.expect_close(1002);
}

/// 4.1.1-4.1.5: the reserved data opcodes 3 to 7 fail the connection with 1002.
#[test]
fn reserved_data_opcodes_close_with_1002() {
    for opcode in 3..=7 {
        reserved_opcode_closes_with_1002(opcode);
    }
}

/// 4.2.1-4.2.5: the reserved control opcodes 11 to 15 fail the connection with 1002.
#[test]
fn reserved_control_opcodes_close_with_1002() {
    for opcode in 11..=15 {
        reserved_opcode_closes_with_1002(opcode);
    }
}

// ---------------------------------------------------------------------------
// Masking
// ---------------------------------------------------------------------------

/// RFC 5.1: an unmasked client frame fails the connection with 1002.
#[test]
fn unmasked_client_frame_closes_with_1002() {
    let unmasked = encode(
        TEXT,
        b"not masked",
        Shape {
            mask: None,
            ..Shape::default()
        },
    );
    bad_input_closes_with(&unmasked, 1002);
}

// ---------------------------------------------------------------------------
// 5.x Fragmentation
// ---------------------------------------------------------------------------

/// 5.1: a ping split into two fragments fails with 1002.
#[test]
fn fragmented_ping_closes_with_1002() {
    let mut bytes = fragment(PING, b"fragment1", false);
    bytes.extend(fragment(CONTINUATION, b"fragment2", true));
    bad_input_closes_with(&bytes, 1002);
}

/// 5.2: a pong split into two fragments fails with 1002.
#[test]
fn fragmented_pong_closes_with_1002() {
    let mut bytes = fragment(PONG, b"fragment1", false);
    bytes.extend(fragment(CONTINUATION, b"fragment2", true));
    bad_input_closes_with(&bytes, 1002);
}

/// 5.3 and 5.4: a text message in two fragments comes back as one message, whether
/// the fragments arrive together or one at a time.
#[test]
fn text_in_two_fragments_is_echoed_whole() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let mut bytes = fragment(TEXT, b"fragment1", false);
    bytes.extend(fragment(CONTINUATION, b"fragment2", true));
    peer.send(&bytes);
    peer.expect(TEXT, b"fragment1fragment2");
    peer.send(&fragment(TEXT, b"first half, ", false));
    peer.send(&fragment(CONTINUATION, b"second half", true));
    peer.expect(TEXT, b"first half, second half");
    peer.close_cleanly();
}

/// 5.5-like: text in many fragments, including empty ones, is echoed as one message.
#[test]
fn text_in_many_fragments_is_echoed_whole() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let payload = ascii(1000);
    let mut pieces = payload.chunks(97).peekable();
    let mut bytes = fragment(TEXT, b"", false);
    while let Some(piece) = pieces.next() {
        bytes.extend(fragment(CONTINUATION, piece, false));
        if pieces.peek().is_none() {
            bytes.extend(fragment(CONTINUATION, b"", true));
        }
    }
    peer.send(&bytes);
    peer.expect(TEXT, &payload);
}

/// 5.6-5.9-like: binary in fragments is echoed as one binary message.
#[test]
fn binary_in_fragments_is_echoed_whole() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let payload = bytes(70_000);
    let (a, b) = payload.split_at(30_000);
    let mut bytes = fragment(BINARY, a, false);
    bytes.extend(fragment(CONTINUATION, b, true));
    peer.send(&bytes);
    peer.expect(BINARY, &payload);
}

/// 5.6 and 5.7: a ping between two fragments is answered at once, and the message
/// is still echoed whole after it.
#[test]
fn ping_between_fragments_is_answered_and_message_echoed() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let mut bytes = fragment(TEXT, b"fragment1", false);
    bytes.extend(frame(PING, b"ping payload"));
    bytes.extend(fragment(CONTINUATION, b"fragment2", true));
    peer.send(&bytes);
    peer.expect(PONG, b"ping payload");
    peer.expect(TEXT, b"fragment1fragment2");

    // 5.7: the same, one frame per write; the pong comes before the message ends.
    peer.send(&fragment(TEXT, b"one", false));
    peer.send(&frame(PING, b"between"));
    peer.expect(PONG, b"between");
    peer.send(&fragment(CONTINUATION, b"two", true));
    peer.expect(TEXT, b"onetwo");
    peer.close_cleanly();
}

/// 5.8-like: an unsolicited pong between fragments is ignored and the message echoed.
#[test]
fn pong_between_fragments_is_ignored() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let mut bytes = fragment(TEXT, b"fragment1", false);
    bytes.extend(frame(PONG, b"pong payload"));
    bytes.extend(fragment(CONTINUATION, b"fragment2", true));
    peer.send(&bytes);
    peer.expect(TEXT, b"fragment1fragment2");
}

/// 5.9: a final continuation frame with no message started fails with 1002.
#[test]
fn final_continuation_without_start_closes_with_1002() {
    bad_input_closes_with(&fragment(CONTINUATION, b"fragment", true), 1002);
}

/// 5.10-like: a non-final continuation frame with no message started fails with 1002.
#[test]
fn continuation_without_start_closes_with_1002() {
    let mut bytes = fragment(CONTINUATION, b"fragment1", false);
    bytes.extend(fragment(CONTINUATION, b"fragment2", true));
    bad_input_closes_with(&bytes, 1002);
}

/// 5.18: a new text frame while a fragmented message is still open fails with 1002.
#[test]
fn text_frame_inside_fragmented_message_closes_with_1002() {
    let mut bytes = fragment(TEXT, b"fragment1", false);
    bytes.extend(fragment(TEXT, b"fragment2", true));
    bad_input_closes_with(&bytes, 1002);
}

/// 5.19-like: a binary frame starting inside an open text message fails with 1002.
#[test]
fn binary_frame_inside_fragmented_text_closes_with_1002() {
    let mut bytes = fragment(TEXT, b"fragment1", false);
    bytes.extend(fragment(BINARY, b"fragment2", false));
    bad_input_closes_with(&bytes, 1002);
}

/// 5.15: after a complete fragmented message, a further continuation fails with 1002.
#[test]
fn continuation_after_finished_message_closes_with_1002() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let mut bytes = fragment(TEXT, b"fragment1", false);
    bytes.extend(fragment(CONTINUATION, b"fragment2", true));
    bytes.extend(fragment(CONTINUATION, b"fragment3", false));
    bytes.extend(fragment(TEXT, b"fragment4", true));
    peer.send_lenient(&bytes);
    peer.expect(TEXT, b"fragment1fragment2");
    peer.expect_close(1002);
}

// ---------------------------------------------------------------------------
// 6.x UTF-8
// ---------------------------------------------------------------------------

/// Multi-byte UTF-8 for the 6.x cases: 2-, 3- and 4-byte sequences.
const GREEK: &str = "κόσμε";
const MIXED: &str = "Hello-µ@ßöäüàá-UTF-8!! €𝄞 ✓";

/// 6.2 and 6.5: valid multi-byte UTF-8 text is echoed unchanged.
#[test]
fn valid_multibyte_text_is_echoed() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    for text in [GREEK, MIXED, "\u{7f}\u{7ff}\u{ffff}\u{10ffff}"] {
        peer.send(&frame(TEXT, text.as_bytes()));
        peer.expect(TEXT, text.as_bytes());
    }
    peer.close_cleanly();
}

/// 6.2.3-like: valid UTF-8 split inside a code point across fragments is echoed fine.
#[test]
fn valid_utf8_split_mid_code_point_is_echoed() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let text = MIXED.as_bytes();
    // Cut inside the 4-byte 𝄞 (U+1D11E) and inside the 3-byte €.
    let clef = MIXED.find('𝄞').unwrap();
    let euro = MIXED.find('€').unwrap();
    let mut bytes = fragment(TEXT, &text[..euro + 1], false);
    bytes.extend(fragment(CONTINUATION, &text[euro + 1..clef + 2], false));
    bytes.extend(fragment(CONTINUATION, &text[clef + 2..], true));
    peer.send(&bytes);
    peer.expect(TEXT, text);

    // 6.2.4-like: one byte per fragment.
    peer.send(&fragment(TEXT, &text[..1], false));
    for (i, byte) in text.iter().enumerate().skip(1) {
        peer.send(&fragment(CONTINUATION, &[*byte], i == text.len() - 1));
    }
    peer.expect(TEXT, text);
    peer.close_cleanly();
}

/// 6.3.1-like: invalid UTF-8 in a single text frame fails with 1007.
#[test]
fn invalid_utf8_in_one_frame_closes_with_1007() {
    let mut text = GREEK.as_bytes().to_vec();
    text.extend_from_slice(&[0xed, 0xa0, 0x80]); // an encoded surrogate, U+D800
    text.extend_from_slice(b"edited");
    bad_input_closes_with(&frame(TEXT, &text), 1007);
}

/// 6.6-6.21: malformed sequences from Markus Kuhn's UTF-8 stress test, each
/// after a valid prefix in one text frame, fail with 1007; the server survives all.
#[test]
fn invalid_utf8_sequences_close_with_1007() {
    let cases: [(&str, &[u8]); 15] = [
        ("lone continuation byte", &[0x80]),
        ("two continuation bytes", &[0x80, 0xbf]),
        ("start byte then space", &[0xc0, 0x20]),
        ("overlong 2-byte slash", &[0xc0, 0xaf]),
        ("overlong 3-byte slash", &[0xe0, 0x80, 0xaf]),
        ("overlong 4-byte slash", &[0xf0, 0x80, 0x80, 0xaf]),
        ("overlong NUL", &[0xc0, 0x80]),
        ("5-byte sequence", &[0xf8, 0x88, 0x80, 0x80, 0x80]),
        ("6-byte sequence", &[0xfc, 0x84, 0x80, 0x80, 0x80, 0x80]),
        ("byte 0xfe", &[0xfe]),
        ("byte 0xff", &[0xff]),
        ("high surrogate U+D800", &[0xed, 0xa0, 0x80]),
        ("low surrogate U+DFFF", &[0xed, 0xbf, 0xbf]),
        ("code point past U+10FFFF", &[0xf4, 0x90, 0x80, 0x80]),
        ("3-byte sequence cut short at the end", &[0xe2, 0x82]),
    ];
    let server = quiet_server();
    for (what, bad) in cases {
        let mut text = b"ok ".to_vec();
        text.extend_from_slice(bad);
        let mut peer = Peer::connect(&server);
        peer.send_lenient(&frame(TEXT, &text));
        let (code, _) = peer.close();
        assert_eq!(code, Some(1007), "{what}");
        peer.expect_tcp_closed();
    }
    let mut peer = Peer::connect(&server);
    peer.send(&frame(TEXT, "still ✓".as_bytes()));
    peer.expect(TEXT, "still ✓".as_bytes());
}

/// 6.23: noncharacters (U+FFFE, U+FFFF, U+10FFFE) are valid UTF-8 and are echoed.
#[test]
fn noncharacters_are_valid_utf8() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let text = "\u{fffe}\u{ffff}\u{fdd0}\u{10fffe}\u{10ffff}";
    peer.send(&frame(TEXT, text.as_bytes()));
    peer.expect(TEXT, text.as_bytes());
}

/// 6.3.2-like: invalid UTF-8 split across fragments (each valid-looking on its own
/// edge) fails with 1007.
#[test]
fn invalid_utf8_across_fragments_closes_with_1007() {
    // 0xf4 0x90 starts a 4-byte sequence past U+10FFFF; the cut hides it in the
    // first fragment's tail.
    let mut bytes = fragment(TEXT, &[b'a', b'b', 0xf4], false);
    bytes.extend(fragment(CONTINUATION, &[0x90, 0x80, 0x80, b'c'], true));
    bad_input_closes_with(&bytes, 1007);
}

/// 6.4.1-like (fail fast): invalid UTF-8 in the first fragment fails with 1007
/// before the message is finished.
#[test]
fn invalid_utf8_fails_fast_before_the_last_fragment() {
    // No final fragment is ever sent: the server must judge what it has.
    let bytes = fragment(TEXT, &[b'o', b'k', 0xed, 0xa0, 0x80, b'x'], false);
    bad_input_closes_with(&bytes, 1007);
}

/// 6.x: invalid UTF-8 in a binary message is fine (binary is not text).
#[test]
fn invalid_utf8_in_binary_is_echoed() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let payload = [0xed, 0xa0, 0x80, 0xff, 0xfe];
    peer.send(&frame(BINARY, &payload));
    peer.expect(BINARY, &payload);
}

// ---------------------------------------------------------------------------
// 7.x Close handling
// ---------------------------------------------------------------------------

/// 7.1.1: after an echo, our normal close is echoed with 1000 and TCP is closed.
#[test]
fn close_after_echo_completes_handshake() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    peer.send(&frame(TEXT, b"Hello World!"));
    peer.expect(TEXT, b"Hello World!");
    peer.close_cleanly();
}

/// 7.1.2 and 7.1.3: after our close, a second close and a ping are ignored.
#[test]
fn frames_after_close_are_ignored() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let mut bytes = frame(CLOSE, &close_payload(1000, b""));
    bytes.extend(frame(CLOSE, &close_payload(1000, b"")));
    bytes.extend(frame(PING, b""));
    peer.send_lenient(&bytes);
    peer.expect_close(1000);
}

/// 7.1.4-7.1.6: data sent after our close frame is not echoed; only the close comes back.
#[test]
fn data_after_close_is_not_echoed() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let mut bytes = frame(CLOSE, &close_payload(1000, b""));
    bytes.extend(frame(TEXT, b"after close"));
    bytes.extend(fragment(TEXT, b"frag", false));
    peer.send_lenient(&bytes);
    peer.expect_close(1000);
}

/// 7.1.5: a close in the middle of a fragmented message (control frames may
/// interleave) is echoed, and the unfinished message is dropped.
#[test]
fn close_inside_fragmented_message_is_echoed() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    let mut bytes = fragment(TEXT, b"fragment1", false);
    bytes.extend(frame(CLOSE, &close_payload(1000, b"")));
    bytes.extend(fragment(CONTINUATION, b"fragment2", true));
    peer.send_lenient(&bytes);
    peer.expect_close(1000);
}

/// 7.3.1: an empty close (no status code) is answered with a close, then TCP closes.
#[test]
fn empty_close_is_answered() {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    peer.send(&frame(CLOSE, b""));
    let (code, reason) = peer.close();
    // An empty close may be answered empty or with 1000 (RFC 7.4.1 and 5.5.1).
    assert!(
        code.is_none() || code == Some(1000),
        "an empty close was answered with {code:?} {:?}",
        String::from_utf8_lossy(&reason)
    );
    peer.expect_tcp_closed();
}

/// 7.3.2: a 1-byte close payload (half a status code) fails with 1002.
#[test]
fn one_byte_close_payload_closes_with_1002() {
    bad_input_closes_with(&frame(CLOSE, &[0x03]), 1002);
}

/// 7.3.3 and 7.3.4: a close with a code and a reason (up to the 123 bytes that fit)
/// is echoed with the same code.
#[test]
fn close_with_reason_is_echoed() {
    for reason in [&b"Bye"[..], &ascii(123)] {
        let server = quiet_server();
        let mut peer = Peer::connect(&server);
        peer.send(&frame(CLOSE, &close_payload(1000, reason)));
        let (code, _) = peer.close();
        assert_eq!(code, Some(1000));
        peer.expect_tcp_closed();
    }
}

/// 7.3.5: a close payload of 126 bytes (too long for a control frame) fails with 1002.
#[test]
fn close_payload_over_125_bytes_closes_with_1002() {
    bad_input_closes_with(&frame(CLOSE, &close_payload(1000, &ascii(124))), 1002);
}

/// 7.5.1: a close reason that is not valid UTF-8 fails with 1007.
#[test]
fn close_reason_with_invalid_utf8_closes_with_1007() {
    let mut reason = GREEK.as_bytes().to_vec();
    reason.extend_from_slice(&[0xed, 0xa0, 0x80]);
    bad_input_closes_with(&frame(CLOSE, &close_payload(1000, &reason)), 1007);
}

/// Sends a close with `code` and expects the server to echo `code` (RFC 5.5.1: the
/// endpoint "typically echos the status code it received").
fn valid_close_code_is_echoed(code: u16) {
    let server = quiet_server();
    let mut peer = Peer::connect(&server);
    peer.send(&frame(CLOSE, &close_payload(code, b"")));
    peer.expect_close(code);
}

macro_rules! valid_close_codes {
    ($($name:ident: $code:expr,)*) => {$(
        #[doc = concat!("7.7.x: a close with the valid code ", stringify!($code), " is echoed with the same code.")]
        #[test]
        fn $name() {
            valid_close_code_is_echoed($code);
        }
    )*};
}

valid_close_codes! {
    close_code_1000_is_echoed: 1000,
    close_code_1001_is_echoed: 1001,
    close_code_1002_is_echoed: 1002,
    close_code_1003_is_echoed: 1003,
    close_code_1007_is_echoed: 1007,
    close_code_1008_is_echoed: 1008,
    close_code_1009_is_echoed: 1009,
    close_code_1010_is_echoed: 1010,
    close_code_1011_is_echoed: 1011,
    close_code_3000_is_echoed: 3000,
    close_code_3999_is_echoed: 3999,
    close_code_4000_is_echoed: 4000,
    close_code_4999_is_echoed: 4999,
}

macro_rules! invalid_close_codes {
    ($($name:ident: $code:expr,)*) => {$(
        #[doc = concat!("7.9.x: a close with the invalid code ", stringify!($code), " fails with 1002.")]
        #[test]
        fn $name() {
            bad_input_closes_with(&frame(CLOSE, &close_payload($code, b"")), 1002);
        }
    )*};
}

invalid_close_codes! {
    close_code_0_closes_with_1002: 0,
    close_code_999_closes_with_1002: 999,
    close_code_1004_closes_with_1002: 1004,
    close_code_1005_closes_with_1002: 1005,
    close_code_1006_closes_with_1002: 1006,
    close_code_1015_closes_with_1002: 1015,
    close_code_1016_closes_with_1002: 1016,
    close_code_1100_closes_with_1002: 1100,
    close_code_2000_closes_with_1002: 2000,
    close_code_2999_closes_with_1002: 2999,
    close_code_5000_closes_with_1002: 5000,
    close_code_65535_closes_with_1002: 65535,
}

// ---------------------------------------------------------------------------
// 9.x Limits
// ---------------------------------------------------------------------------

/// The limit the 9.x cases run against.
const LIMIT: usize = 64 * 1024;

/// A quiet server whose messages may be at most [`LIMIT`] bytes.
fn limited_server() -> Server {
    start_with(|c| {
        c.interval = None;
        c.http_addr = None;
        c.max_message_size = LIMIT;
        c.max_backlog = 1 << 20;
    })
}

/// 9.x: a message of exactly the limit, as one frame and in fragments, is echoed.
#[test]
fn message_at_the_limit_is_echoed() {
    let server = limited_server();
    let mut peer = Peer::connect(&server);
    let payload = ascii(LIMIT);
    peer.send(&frame(TEXT, &payload));
    peer.expect(TEXT, &payload);
    let (a, b) = payload.split_at(LIMIT / 2);
    peer.send(&fragment(TEXT, a, false));
    peer.send(&fragment(CONTINUATION, b, true));
    peer.expect(TEXT, &payload);
    peer.close_cleanly();
}

/// 9.x: a single frame one byte over the message limit fails with 1009.
#[test]
fn message_over_the_limit_closes_with_1009() {
    let server = limited_server();
    let mut peer = Peer::connect(&server);
    peer.send_lenient(&frame(BINARY, &bytes(LIMIT + 1)));
    peer.expect_close(1009);
}

/// 9.x: fragments that are each small but sum past the limit fail with 1009.
#[test]
fn fragments_over_the_limit_close_with_1009() {
    let server = limited_server();
    let mut peer = Peer::connect(&server);
    let piece = ascii(LIMIT / 4);
    let mut bytes = fragment(TEXT, &piece, false);
    for _ in 0..4 {
        bytes.extend(fragment(CONTINUATION, &piece, false));
    }
    bytes.extend(fragment(CONTINUATION, b"end", true));
    peer.send_lenient(&bytes);
    peer.expect_close(1009);
}

/// 9.x: a frame header announcing a huge length (2^62) fails with 1009 at once,
/// without the server waiting for (or allocating) the payload.
#[test]
fn huge_announced_length_closes_with_1009() {
    let server = limited_server();
    let mut peer = Peer::connect(&server);
    let header = encode(
        BINARY,
        b"",
        Shape {
            length: Some(1 << 62),
            ..Shape::default()
        },
    );
    peer.send_lenient(&header);
    peer.expect_close(1009);
}

// ---------------------------------------------------------------------------
// The server survives all of it
// ---------------------------------------------------------------------------

/// After a run of bad clients against one server, a fresh tungstenite client still
/// gets its welcome and an echo.
#[test]
fn server_still_serves_after_bad_clients() {
    let server = start_with(|c| c.http_addr = None);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (frame(PING, &bytes(126)), 1002),
        (with_rsv(TEXT, b"rsv", RSV1), 1002),
        (frame(5, b"reserved opcode"), 1002),
        (frame(13, b"reserved opcode"), 1002),
        (fragment(CONTINUATION, b"no start", true), 1002),
        (frame(CLOSE, &[0x03]), 1002),
        (frame(CLOSE, &close_payload(1005, b"")), 1002),
        (frame(TEXT, &[0xed, 0xa0, 0x80]), 1007),
        (
            encode(
                TEXT,
                b"unmasked",
                Shape {
                    mask: None,
                    ..Shape::default()
                },
            ),
            1002,
        ),
    ];
    for (bytes, code) in &cases {
        let mut peer = Peer::connect(&server);
        peer.send_lenient(bytes);
        peer.expect_close(*code);
    }
    // Clients that vanish mid-frame or mid-handshake, without any close.
    {
        let mut peer = Peer::connect(&server);
        peer.send(&frame(TEXT, &ascii(1000))[..500]);
    }
    {
        let mut half = tcp(server.ws_addr());
        half.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
    }

    let mut client = Client::connect(&server);
    client.welcome();
    client.send_text("still serving");
    loop {
        match client.next_message() {
            tungstenite::Message::Text(text) if text.starts_with(r#"{"type":""#) => continue,
            tungstenite::Message::Text(text) => {
                assert_eq!(text.as_str(), "still serving");
                break;
            }
            other => panic!("expected the echo, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Through the outbox: large echoes and the end of the stream
// ---------------------------------------------------------------------------
//
// Every frame the server sends goes through the client's outbox, shared with the
// hub's broadcasts. These cases check that the outbox delivers a large echo to a
// slow reader, and lets nothing follow a close frame.

/// A connection to `server` whose receive buffer is `size` bytes from the start, so
/// the server can put only a few kilobytes in flight and must wait for us to read.
fn small_window_tcp(server: &Server, size: usize) -> TcpStream {
    let addr = server.ws_addr();
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .expect("a socket");
    // Before connecting, so the window the server sees is small from the first segment.
    socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .expect("connect");
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// 9.1.6: with the limit raised, a 16 MiB text message is echoed whole to a client
/// with a 4 KiB receive window, with no other traffic to push the echo out.
#[test]
fn sixteen_mebibyte_echo_reaches_a_slow_reader() {
    let server = start_with(|c| {
        c.interval = None;
        c.http_addr = None;
        c.max_message_size = 16 << 20;
        c.max_backlog = 40 << 20;
    });
    let mut peer = Peer::handshake(&server, small_window_tcp(&server, 4 << 10));
    let payload = ascii(16 << 20);
    peer.send(&frame(TEXT, &payload));
    peer.expect(TEXT, &payload);
    peer.close_cleanly();
}

/// Stops a helper thread when dropped, also when the test panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// RFC 5.5.1: after its close reply the server sends nothing more, even while
/// broadcasts are queued for the client (ten clients in turn close mid-flood).
#[test]
fn nothing_follows_the_close_reply_during_broadcasts() {
    const FLOOD: &[u8] = br#"{"type":"flood"}"#;
    let server = quiet_server();
    let publisher = server.publisher();
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let flood = {
        let stop = stop.0.clone();
        // Bounded in time too, so nothing can keep it running after the test.
        let deadline = Instant::now() + 4 * IO_TIMEOUT;
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if publisher
                    .publish_text(std::str::from_utf8(FLOOD).unwrap())
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    for _ in 0..10 {
        let mut peer = Peer::connect(&server);
        // Wait until the broadcasts reach this client.
        while peer.frame().expect("a broadcast").payload != FLOOD {}
        peer.send(&frame(CLOSE, &close_payload(1000, b"")));
        peer.expect_close(1000);
    }
    drop(stop);
    flood.join().unwrap();
}
