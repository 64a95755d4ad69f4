//! Faults and churn, against the real server started in this process.
//!
//! - [`churn`]: for [`CHURN_FOR`], workers open and end clients in every way a
//!   client can end — a close handshake, a TCP end or reset, half a handshake,
//!   half a frame — while a few staying clients must get every tick, on time.
//!   Afterwards the process must hold exactly the threads and file descriptors it
//!   held before, and the hub must count only the stayers.
//! - [`faults`]: clients killed mid-frame, a client that floods echo requests and
//!   never reads, a client that floods echo requests as fast as it can. In every
//!   case the other clients get every tick, on time.
//!
//! A test binary of its own, so that `/proc/self` counts this server and these
//! clients only. Every test takes [`serial`], so none runs while another is
//! counting. `cargo test --test churn -- --nocapture` shows the figures.
//!
//! No HTTP server is started: the WebSocket side is what churns here (the HTTP
//! port has its own flood test, `tests/http_flood.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tickcast::{Config, Server};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tungstenite::{Message, WebSocket};

/// How long any single socket operation or awaited message may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The tick interval: fast, so every test sees many ticks.
const INTERVAL: Duration = Duration::from_millis(100);
/// How late a tick may reach a well-behaved client, measured from the time it
/// carries. Loose on purpose: this is a check that nobody stalls the others, not a
/// performance test, and a loaded 2-core CI machine must pass it.
const MAX_LATENESS: Duration = Duration::from_secs(1);
/// After the clients have gone, how long the server may take to let go of their
/// threads and sockets (a thread lingers at most 2 s after a close it sends).
const SETTLE: Duration = Duration::from_secs(10);

/// How long the churn lasts.
const CHURN_FOR: Duration = Duration::from_secs(20);
/// Clients that stay connected through the churn and must get every tick.
const STAYERS: usize = 3;
/// Churn threads; each one holds [`BATCH`] clients at a time, for zero to
/// `HOLD_TICKS - 1` ticks. About 400 connections at once, and as many threads in
/// the server, well below the machine's limits.
const WORKERS: usize = 24;
const BATCH: usize = 16;
const HOLD_TICKS: usize = 8;
/// Fewer churned clients than this and the test did not test much.
const MIN_CHURNED: usize = 1_000;

/// How long the echo flooder floods, and the most messages it sends.
const FLOOD_FOR: Duration = Duration::from_secs(3);
const FLOOD_MAX: usize = 2_000_000;

/// A valid RFC 6455 handshake request.
const REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

type Ws = WebSocket<TcpStream>;

/// Held by every test: one server at a time in this process.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next one can still run.
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A server on a free loopback port, ticking every [`INTERVAL`], no HTTP.
fn start(adjust: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config {
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: None,
        interval: Some(INTERVAL),
        ..Config::default()
    };
    adjust(&mut config);
    Server::start(config).expect("server starts")
}

/// A TCP connection with read and write timeouts.
fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// A tungstenite client, welcomed; returns it with its welcome.
fn join(addr: SocketAddr) -> (Ws, Value) {
    let (mut ws, response) =
        tungstenite::client::client(format!("ws://{addr}/echo"), tcp(addr)).expect("handshake");
    assert_eq!(response.status(), 101);
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "welcome", "first message: {welcome}");
    assert!(welcome["id"].is_u64(), "{welcome}");
    (ws, welcome)
}

fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("read a message") {
            Message::Text(text) => {
                return serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

fn next_tick(ws: &mut Ws) {
    while next_json(ws)["type"] != "tick" {}
}

/// Makes the kernel end the connection with a reset (RST) instead of FIN when the
/// socket is closed: an aborted connection, as the server sees it.
fn reset(stream: &TcpStream) {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
}

/// One client frame, final and masked as RFC 6455 requires of clients.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// Milliseconds since the Unix epoch, the clock tick times are written in.
fn now_ms() -> i128 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    since.as_millis() as i128
}

/// Polls `condition` until it holds or `within` passes; for states no message
/// announces (a thread ending, say).
fn wait_for(what: &str, within: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}

// ---------------------------------------------------------------------------
// Well-behaved clients that watch the ticks

/// What a watching client saw of the ticks.
#[derive(Debug, Default)]
struct TickLog {
    ticks: u64,
    last_seq: Option<u64>,
    /// How late the latest tick was, after the time it carries, in ms.
    max_late_ms: i128,
    /// Missing or late ticks, unparsable messages (the first few).
    problems: Vec<String>,
    /// The status code of the server's close frame, if one came.
    close_code: Option<u16>,
    /// How the connection ended.
    end: String,
}

impl TickLog {
    fn problem(&mut self, what: String) {
        if self.problems.len() < 20 {
            self.problems.push(what);
        }
    }

    /// Checks one tick, received at `received_ms`: the next `seq`, and on time.
    fn tick(&mut self, tick: &Value, received_ms: i128) {
        let Some(seq) = tick["seq"].as_u64() else {
            return self.problem(format!("tick without seq: {tick}"));
        };
        if let Some(last) = self.last_seq {
            if seq != last + 1 {
                self.problem(format!("tick {seq} came after tick {last}"));
            }
        }
        self.last_seq = Some(seq);
        self.ticks += 1;
        let sent_ms = tick["time"]
            .as_str()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .map(|t| t.unix_timestamp_nanos() / 1_000_000);
        let Some(sent_ms) = sent_ms else {
            return self.problem(format!("tick with a bad time: {tick}"));
        };
        let late = received_ms - sent_ms;
        self.max_late_ms = self.max_late_ms.max(late);
        // Same clock on both ends; a few ms of slack for its granularity.
        if late > MAX_LATENESS.as_millis() as i128 || late < -50 {
            self.problem(format!("tick {seq} arrived {late} ms after its time"));
        }
    }

    /// Every tick, none late, at least `at_least` of them, and the server's
    /// shutdown (1001) at the end.
    fn assert_every_tick(&self, who: &str, at_least: u64) {
        assert!(self.problems.is_empty(), "{who}: {:?}", self.problems);
        assert!(
            self.ticks >= at_least,
            "{who}: only {} ticks, expected at least {at_least}",
            self.ticks
        );
        assert_eq!(
            self.close_code,
            Some(1001),
            "{who}: ended without the shutdown close ({})",
            self.end
        );
    }
}

/// A well-behaved client read by its own thread, which checks every tick and
/// passes every message on.
struct Watcher {
    id: u64,
    rx: mpsc::Receiver<Value>,
    reader: JoinHandle<TickLog>,
}

impl Watcher {
    fn connect(server: &Server, name: &str) -> Watcher {
        let (ws, welcome) = join(server.ws_addr());
        let id = welcome["id"].as_u64().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = thread::Builder::new()
            .name(name.into())
            .spawn(move || watch(ws, &tx))
            .unwrap();
        Watcher { id, rx, reader }
    }

    fn next(&self) -> Value {
        self.rx
            .recv_timeout(IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("watcher {}: no message: {e}", self.id))
    }

    /// The next message that satisfies `wanted`, skipping others.
    fn find(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "watcher {}: no {what}", self.id);
            let msg = self.next();
            if wanted(&msg) {
                return msg;
            }
        }
    }

    fn next_of_type(&self, kind: &str) -> Value {
        self.find(kind, |m| m["type"] == kind)
    }

    /// The watcher's log, once the server has closed the connection.
    fn finish(self) -> TickLog {
        self.reader.join().expect("the watcher's thread")
    }
}

/// The watcher's thread: reads until the connection ends.
fn watch(mut ws: Ws, tx: &mpsc::Sender<Value>) -> TickLog {
    let mut log = TickLog::default();
    loop {
        match ws.read() {
            Ok(Message::Text(text)) => {
                let received_ms = now_ms();
                match serde_json::from_str::<Value>(&text) {
                    Ok(msg) => {
                        if msg["type"] == "tick" {
                            log.tick(&msg, received_ms);
                        }
                        // The test may have stopped listening; that is fine.
                        let _ = tx.send(msg);
                    }
                    Err(e) => log.problem(format!("not JSON ({e}): {text}")),
                }
            }
            Ok(Message::Close(frame)) => {
                log.close_code = Some(frame.map_or(1005, |f| u16::from(f.code)));
            }
            Ok(_) => {}
            // After the close frame, tungstenite answers it and sees the TCP end.
            Err(tungstenite::Error::ConnectionClosed) => {
                log.end = "closed".into();
                return log;
            }
            Err(e) => {
                log.end = e.to_string();
                return log;
            }
        }
    }
}

/// The ids a presence notice lists.
fn ids(notice: &Value) -> Vec<u64> {
    notice["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no ids in {notice}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// A client speaking raw bytes, for the clients that misbehave

/// A WebSocket client that writes bytes of its own choosing and parses the
/// server's frames by hand.
struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Where the unparsed bytes in `buf` start.
    start: usize,
}

impl RawClient {
    /// Connects and completes the handshake. `small_buffers` makes the kernel
    /// buffers tiny, so that a client that stops reading fills them fast.
    fn connect(addr: SocketAddr, small_buffers: bool) -> RawClient {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        if small_buffers {
            socket.set_recv_buffer_size(4096).unwrap();
            socket.set_send_buffer_size(16 << 10).unwrap();
        }
        socket.connect_timeout(&addr.into(), IO_TIMEOUT).unwrap();
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut client = RawClient {
            stream,
            buf: Vec::new(),
            start: 0,
        };
        client.stream.write_all(REQUEST).unwrap();
        let end = loop {
            if let Some(at) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            client.read_more();
        };
        assert!(client.buf.starts_with(b"HTTP/1.1 101"), "not upgraded");
        client.start = end;
        client
    }

    fn read_more(&mut self) {
        self.buf.drain(..self.start);
        self.start = 0;
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk).expect("read");
        assert!(n > 0, "the server ended the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next server frame: (opcode, payload). Server frames are never
    /// fragmented, never masked, and never interleaved: anything else fails here.
    fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            let unread = &self.buf[self.start..];
            if let Some((header, len)) = frame_header(unread) {
                if unread.len() >= header + len {
                    let opcode = unread[0] & 0x0f;
                    let payload = unread[header..header + len].to_vec();
                    self.start += header + len;
                    return (opcode, payload);
                }
            }
            self.read_more();
        }
    }

    /// Reads the welcome, which comes first, and returns the client's id.
    fn welcome_id(&mut self) -> u64 {
        let (opcode, payload) = self.frame();
        assert_eq!(opcode, 1, "the welcome is a text frame");
        let welcome: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(welcome["type"], "welcome");
        welcome["id"].as_u64().unwrap()
    }
}

/// The header length and payload length of a server frame, once enough of the
/// header is there.
fn frame_header(bytes: &[u8]) -> Option<(usize, usize)> {
    if bytes.len() < 2 {
        return None;
    }
    assert_eq!(
        bytes[0] & 0xf0,
        0x80,
        "not a whole, final frame: {bytes:02x?}"
    );
    assert_eq!(bytes[1] & 0x80, 0, "a server frame must not be masked");
    match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => Some((4, u16::from_be_bytes([bytes[2], bytes[3]]) as usize)),
        127 if bytes.len() >= 10 => {
            let len = u64::from_be_bytes(bytes[2..10].try_into().unwrap());
            Some((10, usize::try_from(len).unwrap()))
        }
        126 | 127 => None,
        n => Some((2, usize::from(n))),
    }
}

// ---------------------------------------------------------------------------
// Threads and file descriptors of this process

/// The process's threads (tid → name) and open file descriptors (fd → target).
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    threads: BTreeMap<u32, String>,
    fds: BTreeMap<u32, String>,
}

impl Snapshot {
    /// Leaves out the test harness's threads for the tests in [`faults`]: they
    /// come and go as those tests start and end, which they may do while `churn`
    /// measures, but they only wait for [`serial`] meanwhile.
    fn take() -> Snapshot {
        let mut threads = proc_entries("/proc/self/task", |tid| {
            fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .map(|name| name.trim_end().to_string())
        });
        threads.retain(|_, name| !name.starts_with("faults::"));
        Snapshot {
            threads,
            // Listing /proc/self/fd takes an fd of its own, closed by the time its
            // link is read, so it is left out.
            fds: proc_entries("/proc/self/fd", |fd| {
                fs::read_link(format!("/proc/self/fd/{fd}")).map(|t| t.display().to_string())
            }),
        }
    }

    /// What is in `self` and not in `other` (the first few), for failure messages.
    fn minus(&self, other: &Snapshot) -> String {
        let extra = |a: &BTreeMap<u32, String>, b: &BTreeMap<u32, String>| {
            let all: Vec<String> = a
                .iter()
                .filter(|(k, _)| !b.contains_key(k))
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            format!("{} {:?}", all.len(), &all[..all.len().min(10)])
        };
        format!(
            "threads {}, fds {}",
            extra(&self.threads, &other.threads),
            extra(&self.fds, &other.fds)
        )
    }
}

/// The numeric entries of a /proc directory, each with `describe`'s answer; an
/// entry that has gone by the time it is described is left out.
fn proc_entries(dir: &str, describe: impl Fn(u32) -> io::Result<String>) -> BTreeMap<u32, String> {
    let numbers: Vec<u32> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    numbers
        .into_iter()
        .filter_map(|n| Some((n, describe(n).ok()?)))
        .collect()
}

fn thread_count() -> usize {
    fs::read_dir("/proc/self/task").unwrap().count()
}

// ---------------------------------------------------------------------------
// Churn

/// Every way a churning client ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// Echo a message, then a full close handshake, read to the end.
    Close,
    /// Send a close frame, then reset without waiting for the answer.
    CloseThenReset,
    /// End the TCP connection (FIN) without a close frame; read to the end.
    Fin,
    /// Reset the TCP connection.
    Reset,
    /// Send the first byte of a frame header, then FIN.
    HalfHeaderFin,
    /// Send a frame header and half its payload, then reset.
    HalfPayloadReset,
    /// Connect and hang up without a byte.
    Silent,
    /// Send half the handshake request, then FIN.
    HalfRequestFin,
    /// Send half the handshake request, then reset.
    HalfRequestReset,
    /// Send the whole request, then reset before reading the answer.
    RequestThenReset,
}

const EXITS: [Exit; 10] = [
    Exit::Close,
    Exit::CloseThenReset,
    Exit::Fin,
    Exit::Reset,
    Exit::HalfHeaderFin,
    Exit::HalfPayloadReset,
    Exit::Silent,
    Exit::HalfRequestFin,
    Exit::HalfRequestReset,
    Exit::RequestThenReset,
];

impl Exit {
    /// Whether the client completes the handshake and joins before it ends.
    fn joins(self) -> bool {
        !matches!(
            self,
            Exit::Silent | Exit::HalfRequestFin | Exit::HalfRequestReset | Exit::RequestThenReset
        )
    }
}

/// A churning client, between its start and its end.
enum Churner {
    Joined(Box<Ws>),
    /// Still in (or before) its handshake.
    Raw(TcpStream),
}

impl Churner {
    fn open(addr: SocketAddr, exit: Exit) -> Churner {
        if exit.joins() {
            return Churner::Joined(Box::new(join(addr).0));
        }
        let mut stream = tcp(addr);
        match exit {
            Exit::HalfRequestFin | Exit::HalfRequestReset => {
                stream.write_all(&REQUEST[..REQUEST.len() / 2]).unwrap()
            }
            Exit::RequestThenReset => stream.write_all(REQUEST).unwrap(),
            _ => {}
        }
        Churner::Raw(stream)
    }

    /// Ends the client as `exit` says; `n` makes its echo unique.
    fn end(self, exit: Exit, n: usize) {
        let half_frame = client_frame(0x1, &[b'x'; 100]);
        match (exit, self) {
            (Exit::Close, Churner::Joined(mut ws)) => {
                let text = format!("bye {n}");
                ws.send(Message::text(text.clone())).expect("send");
                loop {
                    match ws.read().expect("read the echo") {
                        Message::Text(echo) if echo.as_str() == text => break,
                        _ => {}
                    }
                }
                ws.close(None).expect("send close");
                let mut answered = false;
                loop {
                    match ws.read() {
                        Ok(Message::Close(_)) => answered = true,
                        Ok(_) => {}
                        Err(tungstenite::Error::ConnectionClosed) => break,
                        Err(e) => panic!("close handshake: {e}"),
                    }
                }
                assert!(answered, "the server did not answer the close frame");
            }
            (Exit::CloseThenReset, Churner::Joined(mut ws)) => {
                ws.close(None).expect("send close");
                reset(ws.get_ref());
            }
            (Exit::Fin, Churner::Joined(mut ws)) => {
                let stream = ws.get_mut();
                stream.shutdown(Shutdown::Write).unwrap();
                // The server must end its side too: read (and ignore) what is
                // left, up to the end.
                let mut sink = [0u8; 4096];
                while stream.read(&mut sink).expect("the end of the stream") > 0 {}
            }
            (Exit::Reset, Churner::Joined(ws)) => reset(ws.get_ref()),
            (Exit::HalfHeaderFin, Churner::Joined(mut ws)) => {
                ws.get_mut().write_all(&half_frame[..1]).unwrap();
                ws.get_mut().shutdown(Shutdown::Write).unwrap();
            }
            (Exit::HalfPayloadReset, Churner::Joined(mut ws)) => {
                // Header 2 + mask 4 + 50 of the 100 payload bytes.
                ws.get_mut().write_all(&half_frame[..56]).unwrap();
                reset(ws.get_ref());
            }
            (Exit::Silent | Exit::HalfRequestFin, Churner::Raw(_)) => {}
            (Exit::HalfRequestReset | Exit::RequestThenReset, Churner::Raw(stream)) => {
                reset(&stream)
            }
            (exit, _) => unreachable!("{exit:?} opened the wrong way"),
        }
    }
}

/// One churn thread: until `until`, opens [`BATCH`] clients, holds them for a few
/// ticks (the ones still in their handshake sit there meanwhile), and ends
/// each in its own way. Returns how many clients ended each way.
fn churn_worker(addr: SocketAddr, worker: usize, until: Instant) -> [usize; EXITS.len()] {
    let mut ended = [0; EXITS.len()];
    // Workers start at different exits, so every kind runs at every moment.
    let mut n = worker;
    let mut round = worker;
    while Instant::now() < until {
        let mut batch: Vec<(Exit, usize, Churner)> = (0..BATCH)
            .map(|_| {
                n += 1;
                let exit = EXITS[n % EXITS.len()];
                (exit, n, Churner::open(addr, exit))
            })
            .collect();
        round += 1;
        for _ in 0..round % HOLD_TICKS {
            for (_, _, churner) in &mut batch {
                if let Churner::Joined(ws) = churner {
                    next_tick(ws);
                }
            }
        }
        for (exit, n, churner) in batch {
            churner.end(exit, n);
            ended[EXITS.iter().position(|e| *e == exit).unwrap()] += 1;
        }
    }
    ended
}

/// Many clients come and go in every way a client can go, while a few stay and
/// get every tick on time; afterwards the process is back to the threads and
/// file descriptors it had, and the hub counts only the stayers.
#[test]
fn churn() {
    let _serial = serial();
    let server = start(|_| {});
    let stayers: Vec<Watcher> = (1..=STAYERS)
        .map(|i| Watcher::connect(&server, &format!("stayer-{i}")))
        .collect();
    for stayer in &stayers {
        stayer.next_of_type("tick");
    }

    // The baseline: the same twice, a tick apart, so that nothing started before
    // (the last test's server, say) is still on its way out.
    let mut baseline = Snapshot::take();
    let mut tries = 0;
    loop {
        stayers[0].next_of_type("tick");
        let again = Snapshot::take();
        if again == baseline {
            break;
        }
        tries += 1;
        assert!(tries < 20, "threads and fds never settled: {again:?}");
        baseline = again;
    }
    eprintln!(
        "churn: baseline {} threads, {} fds, {} connections",
        baseline.threads.len(),
        baseline.fds.len(),
        server.connections()
    );

    let started = Instant::now();
    let until = started + CHURN_FOR;
    let addr = server.ws_addr();
    let workers: Vec<JoinHandle<_>> = (0..WORKERS)
        .map(|w| {
            thread::Builder::new()
                .name(format!("churn-{w}"))
                .spawn(move || churn_worker(addr, w, until))
                .unwrap()
        })
        .collect();
    // Meanwhile, at every tick a stayer receives, note the high-water marks.
    let (mut peak_connections, mut peak_threads) = (0, 0);
    while Instant::now() < until {
        if stayers[0].next()["type"] == "tick" {
            peak_connections = peak_connections.max(server.connections());
            peak_threads = peak_threads.max(thread_count());
        }
    }
    let mut ended = [0; EXITS.len()];
    let mut failed = 0;
    for worker in workers {
        match worker.join() {
            Ok(counts) => {
                for (total, n) in ended.iter_mut().zip(counts) {
                    *total += n;
                }
            }
            Err(_) => failed += 1,
        }
    }
    let churn_took = started.elapsed();
    let churned: usize = ended.iter().sum();
    assert_eq!(failed, 0, "{failed} churn workers failed: see their panics");
    eprintln!(
        "churn: {churned} clients in {:.1} s ({:.0}/s, {WORKERS} workers x {BATCH}), \
         peak {peak_connections} connections and {peak_threads} threads",
        churn_took.as_secs_f64(),
        churned as f64 / churn_took.as_secs_f64()
    );
    for (exit, n) in EXITS.iter().zip(ended) {
        eprintln!("churn:   {n:6} {exit:?}");
    }
    assert!(churned >= MIN_CHURNED, "only {churned} clients churned");

    // Every churning client has ended on its side; the server lets go of them.
    let settled = wait_for("churn connections gone", SETTLE, || {
        server.connections() == STAYERS
    });
    // A Leave is sent before a connection's thread ends, and the hub takes events
    // in order, so a client joining now is welcomed by a hub that has processed
    // every churner's Leave: its welcome counts the stayers and itself.
    let (mut probe, welcome) = join(addr);
    assert_eq!(
        welcome["clients"],
        STAYERS + 1,
        "hub count after the churn: {welcome}"
    );
    let probe_id = welcome["id"].as_u64().unwrap();
    probe.close(None).unwrap();
    while probe.read().is_ok() {}
    drop(probe);
    for stayer in &stayers {
        let leave = stayer.find("the probe's leave", |m| {
            m["type"] == "leave" && ids(m).contains(&probe_id)
        });
        assert_eq!(
            leave["clients"], STAYERS,
            "hub count after the churn: {leave}"
        );
        assert_eq!(leave["reason"], "closed");
    }
    wait_for("the probe's connection gone", SETTLE, || {
        server.connections() == STAYERS
    });

    // Threads end a moment after they leave the registry: poll, bounded.
    let deadline = Instant::now() + SETTLE;
    let after = loop {
        let now = Snapshot::take();
        if now == baseline || Instant::now() >= deadline {
            break now;
        }
        thread::sleep(Duration::from_millis(5));
    };
    eprintln!(
        "churn: after {} threads, {} fds ({} connections; server settled in {} ms)",
        after.threads.len(),
        after.fds.len(),
        server.connections(),
        settled.as_millis()
    );
    assert_eq!(
        after.threads.len(),
        baseline.threads.len(),
        "threads: new {}; gone {}",
        after.minus(&baseline),
        baseline.minus(&after)
    );
    assert_eq!(
        after.fds.len(),
        baseline.fds.len(),
        "fds: new {}; gone {}",
        after.minus(&baseline),
        baseline.minus(&after)
    );
    assert_eq!(
        after,
        baseline,
        "same counts, other threads or fds: new {}; gone {}",
        after.minus(&baseline),
        baseline.minus(&after)
    );

    server.shutdown();
    let at_least = (CHURN_FOR.as_millis() / INTERVAL.as_millis() / 2) as u64;
    for (i, stayer) in stayers.into_iter().enumerate() {
        let log = stayer.finish();
        eprintln!(
            "churn: stayer {} got {} ticks, consecutive, the latest {} ms after its time",
            i + 1,
            log.ticks,
            log.max_late_ms
        );
        log.assert_every_tick(&format!("stayer {}", i + 1), at_least);
    }
}

// ---------------------------------------------------------------------------
// Faults

/// One misbehaving client at a time, next to a well-behaved watcher.
mod faults {
    use super::*;

    /// Waits for the leave notices of every id in `gone`; returns them.
    fn leaves_of(watcher: &Watcher, gone: &BTreeSet<u64>) -> Vec<Value> {
        let mut notices = Vec::new();
        let mut missing = gone.clone();
        while !missing.is_empty() {
            let leave = watcher.find("a leave notice", |m| m["type"] == "leave");
            for id in ids(&leave) {
                assert!(missing.remove(&id), "unexpected leave of {id}: {leave}");
            }
            notices.push(leave);
        }
        notices
    }

    /// After a fault: the server holds only the watcher's connection, ticks go on,
    /// and after shutdown the watcher has had every one of them, on time.
    fn assert_others_unharmed(server: Server, watcher: Watcher, test: &str) {
        wait_for("the faulty connections gone", SETTLE, || {
            server.connections() == 1
        });
        for _ in 0..3 {
            watcher.next_of_type("tick");
        }
        server.shutdown();
        let log = watcher.finish();
        eprintln!(
            "{test}: the watcher got {} ticks, consecutive, the latest {} ms after its time",
            log.ticks, log.max_late_ms
        );
        log.assert_every_tick("the watcher", 3);
    }

    /// Clients that die in the middle of a frame — in its header, in its extended
    /// length, in its payload; with FIN or with a reset — are announced as `dropped`,
    /// their threads end, and the others get every tick.
    #[test]
    fn client_killed_mid_frame_is_dropped() {
        let _serial = serial();
        let server = start(|_| {});
        let watcher = Watcher::connect(&server, "watcher");
        watcher.next_of_type("tick");
        let text = client_frame(0x1, &[b'x'; 200]); // header 2 + mask 4 + 200
        let binary = client_frame(0x2, &vec![7; 70_000]); // header 10 + mask 4 + 70,000
        let cuts: [(&[u8], bool); 5] = [
            (&text[..1], false),             // half the 2-byte header, FIN
            (&binary[..5], true),            // half the 64-bit length, reset
            (&text[..4], false),             // half the masking key, FIN
            (&text[..106], true),            // half the payload, reset
            (&binary[..14 + 30_000], false), // part of a large payload, FIN
        ];
        let mut killed = BTreeSet::new();
        for (bytes, with_reset) in cuts {
            let (mut ws, welcome) = join(server.ws_addr());
            killed.insert(welcome["id"].as_u64().unwrap());
            ws.get_mut().write_all(bytes).unwrap();
            if with_reset {
                reset(ws.get_ref());
            } else {
                ws.get_mut().shutdown(Shutdown::Write).unwrap();
            }
        }
        let notices = leaves_of(&watcher, &killed);
        for leave in &notices {
            assert_eq!(leave["reason"], "dropped", "{leave}");
        }
        assert_eq!(notices.last().unwrap()["clients"], 1);
        assert_others_unharmed(server, watcher, "mid-frame");
    }

    /// How [`stuck_echo_flooder`] expects the server to get rid of the client.
    enum CutOff {
        /// Broadcasts are published until its backlog overflows: `too_slow`.
        Backlog,
        /// Nothing big is broadcast; the heartbeat finds it silent: `timeout`.
        Heartbeat,
    }

    /// A client sends large echo requests and never reads. Its connection thread
    /// blocks writing an echo nobody reads (the server stops reading it, so the
    /// client's writes stall), which must not delay anyone else; and the client must
    /// still be cut off, its thread woken from that blocked write and ended.
    fn stuck_echo_flooder(cut_off: &CutOff) {
        let _serial = serial();
        let server = start(|c| {
            c.max_message_size = 64 << 10;
            c.max_backlog = 128 << 10;
            if let CutOff::Heartbeat = cut_off {
                c.heartbeat = Some(Duration::from_millis(300));
            }
        });
        let watcher = Watcher::connect(&server, "watcher");
        let mut stuck = RawClient::connect(server.ws_addr(), true);
        let stuck_id = stuck.welcome_id();

        // Flood until the server stops taking echo requests for a while: its thread
        // is then blocked in the echo's write. Written as one endless stream of
        // frames, so a partial write never cuts a frame short.
        let frame = client_frame(0x2, &vec![7; 60 << 10]);
        stuck
            .stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut sent = 0;
        let flooding_ended = loop {
            assert!(
                sent < 1 << 30,
                "the server took {sent} bytes and never stalled"
            );
            match stuck.stream.write(&frame[sent % frame.len()..]) {
                Ok(n) => sent += n,
                Err(e) => break e.kind(),
            }
        };
        eprintln!(
            "stuck flooder: the server stopped reading after {} KiB ({flooding_ended:?})",
            sent >> 10
        );
        // Stalled (the server stopped reading), or already cut off by the heartbeat.
        assert!(
            matches!(
                flooding_ended,
                io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
            ),
            "{flooding_ended:?}"
        );

        let (leave, reason) = match cut_off {
            CutOff::Backlog => {
                // Broadcasts queue up behind the blocked echo. The watcher reads each
                // one before the next is published, so only the stuck client lags.
                let publisher = server.publisher();
                let bulk = format!(r#"{{"type":"bulk","pad":"{}"}}"#, "p".repeat(8 << 10));
                let mut leave = None;
                for _ in 0..64 {
                    publisher.publish_text(bulk.clone()).unwrap();
                    loop {
                        let msg = watcher.next();
                        match msg["type"].as_str() {
                            Some("bulk") => break,
                            Some("leave") => leave = Some(msg),
                            _ => {}
                        }
                    }
                    if leave.is_some() {
                        break;
                    }
                }
                let leave = leave.unwrap_or_else(|| watcher.next_of_type("leave"));
                (leave, "too_slow")
            }
            CutOff::Heartbeat => (watcher.next_of_type("leave"), "timeout"),
        };
        assert_eq!(ids(&leave), [stuck_id], "{leave}");
        assert_eq!(leave["reason"], reason, "{leave}");
        assert_eq!(leave["clients"], 1, "{leave}");
        // Its thread was blocked in a write; the cut-off must have woken it.
        assert_others_unharmed(server, watcher, &format!("stuck flooder ({reason})"));
        drop(stuck);
    }

    /// A client that sends large echo requests and never reads is cut off as
    /// `too_slow` once broadcasts overflow its backlog; nobody else waits for it.
    #[test]
    fn echo_flooder_that_never_reads_is_cut_off_as_too_slow() {
        stuck_echo_flooder(&CutOff::Backlog);
    }

    /// With nothing big broadcast, the same client is found by the heartbeat: its
    /// thread, blocked in the echo's write, reads nothing, so it is cut off as
    /// `timeout` instead of staying blocked for good.
    #[test]
    fn echo_flooder_that_never_reads_is_cut_off_by_the_heartbeat() {
        stuck_echo_flooder(&CutOff::Heartbeat);
    }

    /// A client that sends echo requests as fast as it can (and reads its echoes)
    /// gets every echo, whole and in order, between whole tick frames; meanwhile
    /// another client gets every tick on time.
    #[test]
    fn echo_flood_does_not_delay_the_others() {
        let _serial = serial();
        let server = start(|_| {});
        let watcher = Watcher::connect(&server, "watcher");
        let mut flooder = RawClient::connect(server.ws_addr(), false);
        flooder.welcome_id();
        let mut writer = flooder.stream.try_clone().unwrap();

        let reader = thread::Builder::new()
            .name("flood-reader".into())
            .spawn(move || {
                let mut echoes = 0;
                let mut ticks = TickLog::default();
                loop {
                    let (opcode, payload) = flooder.frame();
                    assert_eq!(opcode, 1, "only text frames expected");
                    let text = String::from_utf8(payload).expect("UTF-8");
                    if text == "flood end" {
                        return (echoes, ticks);
                    }
                    if let Some(n) = text.strip_prefix("flood ") {
                        assert_eq!(n, echoes.to_string(), "echoes out of order");
                        echoes += 1;
                        continue;
                    }
                    let msg: Value = serde_json::from_str(&text).expect("JSON");
                    if msg["type"] == "tick" {
                        ticks.tick(&msg, now_ms());
                    }
                }
            })
            .unwrap();

        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < FLOOD_FOR && sent < FLOOD_MAX {
            let mut batch = Vec::new();
            for _ in 0..64 {
                batch.extend(client_frame(0x1, format!("flood {sent}").as_bytes()));
                sent += 1;
            }
            writer.write_all(&batch).expect("send echo requests");
        }
        writer.write_all(&client_frame(0x1, b"flood end")).unwrap();
        let (echoes, mut ticks) = reader.join().expect("the flooder's reader");
        let took = started.elapsed();
        eprintln!(
            "echo flood: {echoes} echoes in {:.1} s ({:.0}/s); the flooder got {} ticks, \
             the latest {} ms after its time",
            took.as_secs_f64(),
            echoes as f64 / took.as_secs_f64(),
            ticks.ticks,
            ticks.max_late_ms
        );
        assert_eq!(echoes, sent);
        // The flooder's own ticks: whole frames, none missing. (Their lateness is
        // reported, not asserted: this client chose to queue echoes ahead of them.)
        ticks.problems.retain(|p| !p.contains("after its time"));
        assert!(ticks.problems.is_empty(), "flooder: {:?}", ticks.problems);
        let expected = (FLOOD_FOR.as_millis() / INTERVAL.as_millis() / 2) as u64;
        assert!(ticks.ticks >= expected, "flooder: {} ticks", ticks.ticks);

        writer.shutdown(Shutdown::Both).unwrap();
        assert_others_unharmed(server, watcher, "echo flood");
    }
}
