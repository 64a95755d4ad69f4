//! Bursts of joins and leaves, against the real server started in this process:
//! nothing is lost (issue 9).
//!
//! [`bursts_lose_no_client_tick_or_count`] opens [`CLIENTS`] connections as fast as
//! the server accepts them, [`ROUNDS`] times in a row on one server, and checks in
//! every round that:
//!
//! 1. every client gets `101 Switching Protocols` and then its welcome as the very
//!    first frame, with an id no other client ever had. A client that gets the 101
//!    and then nothing was *lost*: the hub never took its `Join` (once the 101
//!    waits for the hub, such a client gets no 101 at all);
//! 2. every tick made after a client had its 101 reaches it, in order, none
//!    missing and none twice: a browser's `onopen` fires at the 101, so from that
//!    moment it must see every broadcast. Checked from each client's own 101,
//!    and so from T, when every client has had its 101, for all of them;
//! 3. `GET /metrics` counts exactly the clients there are, and every one that ever
//!    joined;
//! 4. after all of them leave at once, half with a close handshake and half by
//!    dropping the TCP connection, `/metrics` counts no client left and every one
//!    as gone. A `Leave` the hub lost would stay in the count as a ghost.
//!
//! A test binary of its own, so that this server's threads and sockets (one thread
//! per client, and 2 × [`CLIENTS`] sockets counting both ends) are the only ones
//! in the process and no other test's server competes for the process's limits.
//! Every test takes [`serial`]. `cargo test --test burst -- --nocapture` shows the
//! figures.
//!
//! A burst is a load test: how far the hub falls behind depends on the machine
//! and what else runs on it. [`CLIENTS`] is chosen so that a hub which loses
//! queued events is caught in every run on a 2-core machine; a faster machine may
//! need more clients to catch it.
//!
//! The clients speak raw bytes: the handshake request is written the moment the
//! connection is up, and frames are parsed by hand, so nothing in a client library
//! stands between the test and what the server sends, or when. Every socket has a
//! timeout and every loop a deadline, so a bug fails the test instead of hanging
//! it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tickcast::{Config, Server};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Clients in one burst. With the server's ends, twice as many sockets are open at
/// once (the process may open 20,000 files), and the server runs a thread for
/// each client (the machine may run 32,768). 6,000 rather than 3,000: how far the
/// hub's queue falls behind a burst grows with the clients every broadcast goes
/// to, and on a 2-core machine a hub that drops one queued event in 1,025 lost a
/// client in only some bursts of 3,000 (1 run in 5 once the 101 waits for the
/// hub), and in every burst of 6,000.
const CLIENTS: usize = 6_000;
/// Bursts in a row on one server: a later round shows that the earlier ones left
/// nothing behind (no ghost in the count, no id given twice).
const ROUNDS: usize = 2;
/// Threads opening the burst's connections (each with a thread reading their
/// 101s).
const CONNECTORS: usize = 64;
/// Threads reading the clients' frames, and ending them.
const READERS: usize = 4;
/// The tick interval: fast, so that many ticks fall in the window that is checked.
const INTERVAL: Duration = Duration::from_millis(10);
/// How long after T (every client has had its 101) the ticks are checked.
const WATCH: Duration = Duration::from_secs(1);
/// How long a connect, a read or a write may take. Long, because a burst may
/// still overflow the listen backlog, and the kernel retries a dropped SYN only
/// after 1 s, then 2 s more, then 4 s more.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading one round's welcomes and ticks from every client may take.
const READ_FOR: Duration = Duration::from_secs(30);
/// After every client has gone, how long the server may take to count them out.
/// There is no message to wait for from outside, so `/metrics` is polled.
const SETTLE: Duration = Duration::from_secs(30);
/// How many examples of one kind of failure a message lists.
const SHOW: usize = 8;

/// The status code of the clients' close frames.
const CLOSE_CODE: [u8; 2] = 1000u16.to_be_bytes();

/// A valid RFC 6455 handshake request.
const REQUEST: &[u8] = b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// Held by every test: one server at a time in this process.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next one can still run.
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Milliseconds since the Unix epoch, the clock tick times are written in.
fn ms_since_epoch(time: SystemTime) -> i128 {
    time.duration_since(UNIX_EPOCH).unwrap().as_millis() as i128
}

// ---------------------------------------------------------------------------
// One raw client

/// Where a client's run went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// No `101 Switching Protocols`: refused, or lost by a hub that sends it.
    Upgrade,
    /// A 101, and then no welcome (no frame at all, or a close): the client was
    /// lost.
    Lost,
    /// A first frame that is not a welcome.
    Welcome,
    /// Welcomed, and then the connection failed while its ticks were read.
    Ticks,
}

/// One client of a burst: its socket, the bytes read but not yet parsed, and what
/// it saw.
struct Client {
    /// Its place in the burst, for failure messages.
    index: usize,
    stream: TcpStream,
    buf: Vec<u8>,
    /// Where the unparsed bytes in `buf` start.
    start: usize,
    /// When it read its 101, in ms since the epoch, rounded up: a tick stamped
    /// later was made after the 101 reached the client.
    upgraded_ms: Option<i128>,
    /// The id and the client count from its welcome.
    id: Option<u64>,
    welcome_clients: Option<u64>,
    /// Every tick it received, in order: (seq, time in ms since the epoch).
    ticks: Vec<(u64, i128)>,
    /// What went wrong, if anything did; it is then read no further.
    failure: Option<(Stage, String)>,
    /// What went wrong as it left, if anything did.
    left_badly: Option<String>,
}

impl Client {
    /// Connects and sends the handshake request at once. Every socket operation
    /// has a timeout, so a server that never answers fails the test.
    fn open(index: usize, addr: SocketAddr) -> io::Result<Client> {
        let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.write_all(REQUEST)?;
        Ok(Client {
            index,
            stream,
            buf: Vec::new(),
            start: 0,
            upgraded_ms: None,
            id: None,
            welcome_clients: None,
            ticks: Vec::new(),
            failure: None,
            left_badly: None,
        })
    }

    /// "client #12 (id 345)", for failure messages.
    fn name(&self) -> String {
        match self.id {
            Some(id) => format!("client #{} (id {id})", self.index),
            None => format!("client #{}", self.index),
        }
    }

    fn fail(&mut self, stage: Stage, what: String) {
        self.failure = Some((stage, what));
    }

    /// Reads more bytes; an end of stream or a timeout is an error that says so.
    fn read_more(&mut self) -> Result<(), String> {
        self.buf.drain(..self.start);
        self.start = 0;
        let mut chunk = [0u8; 16 << 10];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err("the end of the connection (EOF)".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(format!("nothing for {IO_TIMEOUT:?} (read timeout)"))
            }
            Err(e) => Err(format!("a read error: {e}")),
        }
    }

    /// Reads the response head, which must be a 101.
    fn read_upgrade(&mut self) {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if self.buf.len() > 8 << 10 {
                return self.fail(Stage::Upgrade, "a response head over 8 KiB".into());
            }
            if let Err(e) = self.read_more() {
                return self.fail(Stage::Upgrade, format!("no response head, but {e}"));
            }
        };
        if !self.buf.starts_with(b"HTTP/1.1 101 ") {
            let head = String::from_utf8_lossy(&self.buf[..end]);
            let status = head.lines().next().unwrap_or_default().to_string();
            return self.fail(Stage::Upgrade, format!("{status:?} instead of a 101"));
        }
        self.upgraded_ms = Some(ms_since_epoch(SystemTime::now()) + 1);
        self.start = end;
    }

    /// The next server frame: (opcode, payload). Server frames here are never
    /// fragmented and never masked: anything else is an error.
    fn frame(&mut self) -> Result<(u8, Vec<u8>), String> {
        loop {
            let unread = &self.buf[self.start..];
            if let Some((header, len)) = frame_header(unread)? {
                if unread.len() >= header + len {
                    let opcode = unread[0] & 0x0f;
                    let payload = unread[header..header + len].to_vec();
                    self.start += header + len;
                    return Ok((opcode, payload));
                }
            }
            self.read_more()?;
        }
    }

    /// Reads the welcome, which must be the first frame, then every frame until a
    /// tick whose time is at or after `until_ms`, noting each tick. `t` is when
    /// every client had had its 101, for the failure messages.
    fn read_welcome_and_ticks(&mut self, t: Instant, until_ms: i128, deadline: Instant) {
        if self.failure.is_some() {
            return;
        }
        let welcome = match self.frame() {
            Ok((0x1, payload)) => payload,
            Ok((opcode, payload)) => {
                let what = describe_frame(opcode, &payload);
                return self.fail(
                    Stage::Lost,
                    format!("101, then {what} instead of a welcome"),
                );
            }
            Err(e) => {
                let after = t.elapsed().as_secs_f64();
                let what = format!("101, then {e} with no frame (read at T + {after:.1} s)");
                return self.fail(Stage::Lost, what);
            }
        };
        if let Err(e) = self.welcome(&welcome) {
            return self.fail(Stage::Welcome, e);
        }
        loop {
            if Instant::now() > deadline {
                let what = format!("no tick at or after T + {WATCH:?} within {READ_FOR:?}");
                return self.fail(Stage::Ticks, what);
            }
            let (opcode, payload) = match self.frame() {
                Ok(frame) => frame,
                Err(e) => {
                    let what = format!("{e} after {} ticks", self.ticks.len());
                    return self.fail(Stage::Ticks, what);
                }
            };
            match opcode {
                0x1 => {}
                // Pings and pongs (the heartbeat is off, but a ping is no error).
                0x9 | 0xa => continue,
                _ => {
                    let what = describe_frame(opcode, &payload);
                    let what = format!("{what} after {} ticks", self.ticks.len());
                    return self.fail(Stage::Ticks, what);
                }
            }
            // Presence notices (join, leave) are skipped unparsed: in a burst each
            // client gets every other client's id, and parsing them all would take
            // longer than the rest of the test. The server writes `type` first; a
            // tick written otherwise would show up as missed, not pass unseen.
            if !payload.starts_with(br#"{"type":"tick","#) {
                continue;
            }
            let msg: Value = match serde_json::from_slice(&payload) {
                Ok(msg) => msg,
                Err(e) => {
                    let what = format!("not JSON ({e}): {}", describe_frame(opcode, &payload));
                    return self.fail(Stage::Ticks, what);
                }
            };
            let seq = msg["seq"].as_u64();
            let time = msg["time"].as_str().and_then(parse_ms);
            let (Some(seq), Some(time)) = (seq, time) else {
                return self.fail(Stage::Ticks, format!("a malformed tick: {msg}"));
            };
            self.ticks.push((seq, time));
            if time >= until_ms {
                return;
            }
        }
    }

    /// Checks the welcome and notes the client's id.
    fn welcome(&mut self, payload: &[u8]) -> Result<(), String> {
        let shown = String::from_utf8_lossy(payload);
        let welcome: Value = serde_json::from_slice(payload)
            .map_err(|e| format!("a first frame that is not JSON ({e}): {shown}"))?;
        if welcome["type"] != "welcome" {
            return Err(format!("a first frame that is not the welcome: {shown}"));
        }
        let id = welcome["id"].as_u64();
        let clients = welcome["clients"].as_u64();
        let time = welcome["time"].as_str().and_then(parse_ms);
        let (Some(id), Some(clients), Some(_)) = (id, clients, time) else {
            return Err(format!("a malformed welcome: {shown}"));
        };
        self.id = Some(id);
        self.welcome_clients = Some(clients);
        Ok(())
    }

    /// Whether this client leaves with a close handshake (even indexes) rather
    /// than by dropping its TCP connection (odd ones, and any that failed).
    fn closes(&self) -> bool {
        self.index.is_multiple_of(2) && self.failure.is_none()
    }

    /// Starts leaving: sends a close frame (code 1000), or ends the TCP connection.
    /// Quick, so that every client of the burst is gone at about the same moment.
    fn hang_up(&mut self) {
        if !self.closes() {
            let _ = self.stream.shutdown(Shutdown::Both);
            return;
        }
        if let Err(e) = self.stream.write_all(&client_frame(0x8, &CLOSE_CODE)) {
            self.left_badly = Some(format!("{}: sending a close frame: {e}", self.name()));
        }
    }

    /// Reads until the server answers the close frame with the same code.
    fn await_close_answer(&mut self) {
        if !self.closes() || self.left_badly.is_some() {
            return;
        }
        // Ticks and notices may still come before the answer; skip them.
        let deadline = Instant::now() + IO_TIMEOUT;
        let problem = loop {
            if Instant::now() > deadline {
                break "no answer to its close frame".to_string();
            }
            match self.frame() {
                Ok((0x8, payload)) if payload.starts_with(&CLOSE_CODE) => return,
                Ok((0x8, payload)) => {
                    break format!(
                        "closed with 1000, answered {}",
                        describe_frame(0x8, &payload)
                    )
                }
                Ok(_) => {}
                Err(e) => break format!("closed with 1000, then {e} with no answer"),
            }
        };
        self.left_badly = Some(format!("{}: {problem}", self.name()));
    }
}

/// The header length and payload length of a server frame, once enough of the
/// header is there.
fn frame_header(bytes: &[u8]) -> Result<Option<(usize, usize)>, String> {
    if bytes.len() < 2 {
        return Ok(None);
    }
    if bytes[0] & 0xf0 != 0x80 || bytes[0] & 0x0f == 0 {
        return Err(format!("not a whole, final frame: {:02x?}", &bytes[..2]));
    }
    if bytes[1] & 0x80 != 0 {
        return Err("a masked server frame".into());
    }
    Ok(match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => Some((4, u16::from_be_bytes([bytes[2], bytes[3]]).into())),
        127 if bytes.len() >= 10 => {
            let len = u64::from_be_bytes(bytes[2..10].try_into().unwrap());
            let len = usize::try_from(len).map_err(|_| format!("a frame of {len} bytes"))?;
            Some((10, len))
        }
        126 | 127 => None,
        n => Some((2, usize::from(n))),
    })
}

/// A frame, for failure messages: the close code, or the start of the text.
fn describe_frame(opcode: u8, payload: &[u8]) -> String {
    match opcode {
        0x8 if payload.len() >= 2 => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            format!("a close frame ({code})")
        }
        0x8 => "a close frame (no code)".into(),
        0x1 => {
            let text = String::from_utf8_lossy(payload);
            let short: String = text.chars().take(120).collect();
            format!("text frame {short:?}")
        }
        _ => format!("a frame with opcode {opcode:#x}, {} bytes", payload.len()),
    }
}

/// One client frame, final and masked as RFC 6455 requires of clients.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125, "only short frames here");
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// An RFC 3339 time as milliseconds since the Unix epoch.
fn parse_ms(text: &str) -> Option<i128> {
    let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some(time.unix_timestamp_nanos() / 1_000_000)
}

// ---------------------------------------------------------------------------
// A burst of clients

/// Opens [`CLIENTS`] connections as fast as the server accepts them, each sending
/// its handshake request at once, and reads every 101.
///
/// [`CONNECTORS`] threads open the connections, all at once; each hands what it
/// opens to a reader thread of its own, which reads the 101s as they come, so
/// that a client's 101 is read about when it arrives. The server's listen backlog
/// (4,096) holds the connections it has not accepted yet.
///
/// Returns the clients, in order, and a message for each connection that could
/// not be opened.
fn connect_all(addr: SocketAddr) -> (Vec<Client>, Vec<String>) {
    let (index_tx, index_rx) = crossbeam_channel::unbounded::<usize>();
    let (mut clients, refused) = thread::scope(|scope| {
        let lanes: Vec<_> = (0..CONNECTORS)
            .map(|c| {
                let (opened_tx, opened_rx) = mpsc::channel::<Client>();
                let index_rx = index_rx.clone();
                let connector = thread::Builder::new()
                    .name(format!("connect-{c}"))
                    .spawn_scoped(scope, move || {
                        let mut refused = Vec::new();
                        for i in index_rx {
                            match Client::open(i, addr) {
                                // The reader ends only after this thread does.
                                Ok(client) => opened_tx.send(client).unwrap(),
                                Err(e) => refused.push(format!("client #{i}: {e}")),
                            }
                        }
                        refused
                    })
                    .unwrap();
                let reader = thread::Builder::new()
                    .name(format!("upgrade-{c}"))
                    .spawn_scoped(scope, move || {
                        let read = opened_rx.into_iter().map(|mut client: Client| {
                            client.read_upgrade();
                            client
                        });
                        read.collect::<Vec<_>>()
                    })
                    .unwrap();
                (connector, reader)
            })
            .collect();

        for i in 0..CLIENTS {
            index_tx.send(i).unwrap();
        }
        drop(index_tx);

        let mut clients = Vec::with_capacity(CLIENTS);
        let mut refused = Vec::new();
        for (connector, reader) in lanes {
            refused.extend(connector.join().expect("a connector thread"));
            clients.extend(reader.join().expect("a reader thread"));
        }
        (clients, refused)
    });
    clients.sort_by_key(|c| c.index);
    (clients, refused)
}

/// Runs `each` on every client, `threads` threads at a time, each thread going
/// through its share of the clients in order.
fn for_each_in_parallel(clients: &mut [Client], threads: usize, each: impl Fn(&mut Client) + Sync) {
    let per_thread = clients.len().div_ceil(threads).max(1);
    thread::scope(|scope| {
        for (r, share) in clients.chunks_mut(per_thread).enumerate() {
            let each = &each;
            thread::Builder::new()
                .name(format!("client-{r}"))
                .spawn_scoped(scope, move || share.iter_mut().for_each(each))
                .unwrap();
        }
    });
}

/// Ends every client at about the same moment, as [`Client::hang_up`] says, then
/// reads the answers to the close frames. Returns what went wrong.
fn leave_all(mut clients: Vec<Client>) -> Vec<String> {
    // As many threads as opened them: the more at once, the harder the burst.
    for_each_in_parallel(&mut clients, CONNECTORS, Client::hang_up);
    for_each_in_parallel(&mut clients, READERS, Client::await_close_answer);
    clients.into_iter().filter_map(|c| c.left_badly).collect()
}

/// `what (N): first; second; … and M more`: a failure message listing examples.
fn listing(what: String, items: &[String]) -> String {
    let mut text = format!(
        "{what} ({}): {}",
        items.len(),
        items[..items.len().min(SHOW)].join("; ")
    );
    if items.len() > SHOW {
        let _ = write!(text, "; … and {} more", items.len() - SHOW);
    }
    text
}

// ---------------------------------------------------------------------------
// The server's own count, from /metrics

/// The figures of `GET /metrics` this test checks.
#[derive(Debug)]
struct Counts {
    /// `tickcast_clients`: connected and welcomed.
    clients: u64,
    /// `tickcast_connections`: WebSocket connections accepted and not yet ended.
    connections: u64,
    /// `tickcast_clients_joined_total`.
    joined: u64,
    /// `tickcast_clients_left_total`, by reason.
    left: BTreeMap<String, u64>,
    /// `tickcast_accept_errors_total` and the sum of
    /// `tickcast_handshake_failures_total`: why a client might get no 101.
    accept_errors: u64,
    refused: u64,
}

impl Counts {
    /// Reads `/metrics` (Prometheus text format) over a raw HTTP request.
    fn get(http: SocketAddr) -> Counts {
        let mut stream = TcpStream::connect_timeout(&http, IO_TIMEOUT).expect("connect to HTTP");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let request = b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        stream.write_all(request).expect("send GET /metrics");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("read /metrics");
        let response = String::from_utf8(response).expect("UTF-8 metrics");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP head");
        assert!(head.starts_with("HTTP/1.1 200 "), "GET /metrics: {head}");
        let (mut clients, mut joined) = (None, None);
        let mut counts = Counts {
            clients: 0,
            connections: 0,
            joined: 0,
            left: BTreeMap::new(),
            accept_errors: 0,
            refused: 0,
        };
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: u64 = value
                .parse()
                .unwrap_or_else(|e| panic!("/metrics: {line:?}: {e}"));
            let (name, labels) = name.split_once('{').unwrap_or((name, ""));
            match name {
                "tickcast_clients" => clients = Some(value),
                "tickcast_clients_joined_total" => joined = Some(value),
                "tickcast_connections" => counts.connections = value,
                "tickcast_clients_left_total" => {
                    // `{reason="closed"}` → `closed`.
                    let reason = labels.trim_start_matches("reason=\"");
                    let reason = reason.trim_end_matches("\"}");
                    counts.left.insert(reason.to_string(), value);
                }
                "tickcast_accept_errors_total" => counts.accept_errors = value,
                "tickcast_handshake_failures_total" => counts.refused += value,
                _ => {}
            }
        }
        let (Some(clients), Some(joined)) = (clients, joined) else {
            panic!("/metrics lacks tickcast_clients or tickcast_clients_joined_total: {body}");
        };
        assert!(
            !counts.left.is_empty(),
            "/metrics lacks tickcast_clients_left_total: {body}"
        );
        counts.clients = clients;
        counts.joined = joined;
        counts
    }

    fn left_total(&self) -> u64 {
        self.left.values().sum()
    }

    /// "joined 6000, left 5998 (closed 2999, dropped 2999)".
    fn totals(&self) -> String {
        let reasons: Vec<String> = self
            .left
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        format!(
            "joined {}, left {} ({})",
            self.joined,
            self.left_total(),
            reasons.join(", ")
        )
    }
}

// ---------------------------------------------------------------------------
// The test

/// Bursts of [`CLIENTS`] joins and then as many leaves, twice on one server, lose
/// no client, no tick made after a client's 101, and no join or leave in the count.
#[test]
fn bursts_lose_no_client_tick_or_count() {
    let _serial = serial();
    let server = Server::start(Config {
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        interval: Some(INTERVAL),
        heartbeat: None,
        ..Config::default()
    })
    .expect("server starts");
    let http = server.http_addr().expect("an HTTP port");
    // Every id ever given, with the client it went to.
    let mut ids = BTreeMap::new();
    for round in 1..=ROUNDS {
        let mut problems = Vec::new();
        let started = Instant::now();

        // 1. The burst of joins: every connection opened, every 101 read.
        let (mut clients, refused) = connect_all(server.ws_addr());
        // T: every client has had its 101, so every tick made from now on is theirs.
        let t = Instant::now();
        // Rounded up, so that a tick stamped after `t_ms` was surely made after T.
        let t_ms = ms_since_epoch(SystemTime::now()) + 1;
        let upgraded = started.elapsed();
        let until_ms = t_ms + WATCH.as_millis() as i128;
        for_each_in_parallel(&mut clients, READERS, |c| {
            c.read_welcome_and_ticks(t, until_ms, t + READ_FOR)
        });
        let watched = t.elapsed();
        let counts = Counts::get(http);
        problems.extend(check_clients(&clients, &refused, &counts));
        problems.extend(check_ids(&clients, round, &mut ids));

        // 2. Every tick made after T, to every client.
        let (window, tick_problems) = check_ticks(&clients, t_ms, until_ms);
        problems.extend(tick_problems);

        // 3. The server's count: every client of this round, and every join so far.
        let expected_joined = (CLIENTS * round) as u64;
        let lost = clients.iter().filter(|c| c.id.is_none()).count();
        if counts.clients != CLIENTS as u64 {
            problems.push(format!(
                "after the joins, tickcast_clients is {}, expected {CLIENTS} \
                 ({lost} clients not welcomed)",
                counts.clients
            ));
        }
        if counts.joined != expected_joined {
            problems.push(format!(
                "after the joins, tickcast_clients_joined_total is {}, expected \
                 {expected_joined} ({CLIENTS} x round {round})",
                counts.joined
            ));
        }

        // 4. The burst of leaves, then the count down to zero.
        let leaving = Instant::now();
        let (left, leave_problems) = leave_and_count(clients, http);
        problems.extend(leave_problems);
        if left.clients != 0 {
            problems.push(format!(
                "{SETTLE:?} after the leaves, tickcast_clients is still {}: ghosts of lost \
                 leaves ({})",
                left.clients,
                left.totals()
            ));
        }
        if left.connections != 0 {
            problems.push(format!(
                "{SETTLE:?} after the leaves, tickcast_connections is still {}: connection \
                 threads that never ended",
                left.connections
            ));
        }
        if left.left_total() != expected_joined {
            problems.push(format!(
                "after the leaves, tickcast_clients_left_total sums to {}, expected \
                 {expected_joined} ({CLIENTS} x round {round}); {}",
                left.left_total(),
                left.totals()
            ));
        }

        eprintln!(
            "burst round {round}: {CLIENTS} clients upgraded in {:.2} s; ticks {window} \
             checked {:.2} s after T; counted {} clients ({lost} not welcomed); \
             {:.2} s after the hang-ups {} clients, {}",
            upgraded.as_secs_f64(),
            watched.as_secs_f64(),
            counts.clients,
            leaving.elapsed().as_secs_f64(),
            left.clients,
            left.totals()
        );
        assert!(
            problems.is_empty(),
            "round {round} of {CLIENTS} clients, {} problems:\n- {}",
            problems.len(),
            problems.join("\n- ")
        );
    }
}

/// Step 1: every connection opened, upgraded and welcomed first thing.
fn check_clients(clients: &[Client], refused: &[String], counts: &Counts) -> Vec<String> {
    let failed = |stage: Stage| -> Vec<String> {
        clients
            .iter()
            .filter_map(|c| match &c.failure {
                Some((s, what)) if *s == stage => Some(format!("{}: {what}", c.name())),
                _ => None,
            })
            .collect()
    };
    let mut problems = Vec::new();
    let mut report = |what: String, items: Vec<String>| {
        if !items.is_empty() {
            problems.push(listing(what, &items));
        }
    };
    report(
        "connections that could not be opened".into(),
        refused.to_vec(),
    );
    report(
        format!(
            "clients with no 101: lost by the hub, if the 101 waits for it, or refused \
             (the server counts {} accept errors, {} refused handshakes)",
            counts.accept_errors, counts.refused
        ),
        failed(Stage::Upgrade),
    );
    report(
        format!("LOST clients, 101 and then no welcome, of {CLIENTS}"),
        failed(Stage::Lost),
    );
    report(
        "clients whose first frame was not a welcome".into(),
        failed(Stage::Welcome),
    );
    report(
        "clients that failed while their ticks were read".into(),
        failed(Stage::Ticks),
    );
    problems
}

/// Welcome ids are never given twice, in this round or an earlier one; a welcome
/// never counts more clients than there are (more would count ghosts).
fn check_ids(clients: &[Client], round: usize, ids: &mut BTreeMap<u64, String>) -> Vec<String> {
    let mut twice = Vec::new();
    let mut overcounted = Vec::new();
    for client in clients {
        let (Some(id), Some(counted)) = (client.id, client.welcome_clients) else {
            continue;
        };
        let who = format!("client #{} of round {round}", client.index);
        if let Some(before) = ids.insert(id, who.clone()) {
            twice.push(format!("id {id} went to {before} and to {who}"));
        }
        if counted > CLIENTS as u64 {
            overcounted.push(format!("{}: clients {counted}", client.name()));
        }
    }
    let mut problems = Vec::new();
    if !twice.is_empty() {
        problems.push(listing("ids given twice".into(), &twice));
    }
    if !overcounted.is_empty() {
        let what = format!("welcomes that counted more than the {CLIENTS} clients there are");
        problems.push(listing(what, &overcounted));
    }
    problems
}

/// Step 2: every tick made after a client had its 101 reached it, in order, once.
///
/// A browser's `onopen` fires at the 101, so from then on it must get every
/// broadcast. Ticks are the same frame for every client, so a tick any client got
/// and stamped after the moment this client read its 101 (`upgraded_ms`) is one
/// it must have got too. That holds from T (`t_ms`), when every client had had its
/// 101, and, earlier, from each client's own 101: checking from there catches a
/// client the hub added late anywhere in the burst, not only one still waiting at
/// T. Ticks are checked up to the first one stamped at or after `until_ms`.
/// Returns the window after T, for the figures.
fn check_ticks(clients: &[Client], t_ms: i128, until_ms: i128) -> (String, Vec<String>) {
    let watched: Vec<&Client> = clients.iter().filter(|c| c.failure.is_none()).collect();
    let mut problems = Vec::new();
    // Every tick any client got: seq → the time it carries.
    let mut made: BTreeMap<u64, i128> = BTreeMap::new();
    let mut two_times = Vec::new();
    for client in &watched {
        for &(seq, time) in &client.ticks {
            if let Some(other) = made.insert(seq, time).filter(|other| *other != time) {
                two_times.push(format!("tick {seq} came stamped {other} and {time} ms"));
            }
        }
    }
    if !two_times.is_empty() {
        problems.push(listing("ticks with two times".into(), &two_times));
    }
    let last = watched
        .iter()
        .filter_map(|c| c.ticks.iter().find(|(_, time)| *time >= until_ms))
        .map(|(seq, _)| *seq)
        .min();
    let Some(last) = last else {
        if !watched.is_empty() {
            problems.push(format!(
                "no client got a tick stamped T + {WATCH:?} or later"
            ));
        }
        return ("none".into(), problems);
    };
    let after_t: Vec<u64> = made
        .range(..=last)
        .filter(|(_, time)| **time > t_ms)
        .map(|(seq, _)| *seq)
        .collect();

    let mut missed = Vec::new();
    let mut missed_after_t = 0;
    let mut disordered = Vec::new();
    for client in &watched {
        let had: BTreeSet<u64> = client.ticks.iter().map(|(seq, _)| *seq).collect();
        let upgraded_ms = client.upgraded_ms.unwrap_or(i128::MAX);
        let missing: Vec<(u64, i128)> = made
            .range(..=last)
            .filter(|(seq, time)| **time > upgraded_ms && !had.contains(seq))
            .map(|(seq, time)| (*seq, *time))
            .collect();
        if !missing.is_empty() {
            let seqs: Vec<u64> = missing.iter().map(|(seq, _)| *seq).collect();
            let after = missing.iter().filter(|(_, time)| *time > t_ms).count();
            missed_after_t += usize::from(after > 0);
            let what = format!(
                "{} missed ticks {:?}{} ({} of them, {after} made after T; its 101 was \
                 read {} ms before T)",
                client.name(),
                &seqs[..seqs.len().min(SHOW)],
                if seqs.len() > SHOW { " …" } else { "" },
                seqs.len(),
                t_ms - upgraded_ms
            );
            missed.push((after == 0, what));
        }
        let out_of_order: Vec<String> = client
            .ticks
            .windows(2)
            .filter(|w| w[1].0 <= w[0].0)
            .map(|w| format!("tick {} after tick {}", w[1].0, w[0].0))
            .collect();
        if !out_of_order.is_empty() {
            disordered.push(format!("{}: {}", client.name(), out_of_order.join(", ")));
        }
    }
    if !missed.is_empty() {
        // Those that missed ticks made after T first: the plainest evidence.
        missed.sort_by_key(|(none_after_t, _)| *none_after_t);
        let missed: Vec<String> = missed.into_iter().map(|(_, what)| what).collect();
        let what = format!(
            "clients that missed ticks made after their 101 ({missed_after_t} of them missed \
             ticks made after T, when every client had had its 101), of {}",
            watched.len()
        );
        problems.push(listing(what, &missed));
    }
    if !disordered.is_empty() {
        let what = "clients with a tick twice or out of order".into();
        problems.push(listing(what, &disordered));
    }
    let window = match (after_t.first(), after_t.last()) {
        (Some(first), Some(last)) => format!("{first}..={last} ({} ticks)", after_t.len()),
        _ => "none".into(),
    };
    if after_t.is_empty() {
        problems.push(format!(
            "no tick stamped after T reached any client (up to tick {last})"
        ));
    }
    (window, problems)
}

/// Step 4: every client leaves at once, then `/metrics` is polled until it counts
/// no client and no connection (or [`SETTLE`] passes). Returns the last figures,
/// and what went wrong with the close handshakes.
fn leave_and_count(clients: Vec<Client>, http: SocketAddr) -> (Counts, Vec<String>) {
    let unanswered = leave_all(clients);
    let mut problems = Vec::new();
    if !unanswered.is_empty() {
        problems.push(listing(
            "close handshakes that went wrong".into(),
            &unanswered,
        ));
    }
    let settle_by = Instant::now() + SETTLE;
    let counts = loop {
        let counts = Counts::get(http);
        if (counts.clients == 0 && counts.connections == 0) || Instant::now() > settle_by {
            break counts;
        }
        // Nothing announces the count from outside: poll, bounded.
        thread::sleep(Duration::from_millis(20));
    };
    (counts, problems)
}
