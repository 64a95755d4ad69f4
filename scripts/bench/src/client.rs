//! One load-generator client: a tokio task that connects, completes the WebSocket
//! handshake, records every frame the server sends, echoes now and then, and
//! closes cleanly when told to.
//!
//! # Why its own framing instead of tokio-tungstenite
//!
//! On a 2-core machine the load generator competes with the server for CPU, so a
//! timestamp taken when *loadgen* gets round to a frame measures loadgen as much as
//! the server. Instead every socket has `SO_TIMESTAMPNS` set, and every read is a
//! `recvmsg` that returns the kernel's receive time (CLOCK_REALTIME) of the data.
//! On loopback that is within microseconds of the server's `send`. tungstenite's
//! stream API cannot hand that back, so this module speaks the few parts of RFC 6455
//! a client needs: the handshake (key and accept check from tungstenite), reading
//! unmasked server frames, and writing masked client frames.
//!
//! When several frames arrive in one read they share its timestamp (the last
//! segment's), which can only make a frame look later, never earlier.
//!
//! # Phases
//!
//! The controller (loadgen's `main`) moves every client through [`Phase`]s on a
//! `watch` channel: during `Load` the echo clients send an echo every
//! `echo_every`; during `Drain` every client just keeps reading, so the ticks
//! made just before the measured window ended can still land; on `Close` each
//! client sends close 1000 and waits for the server's close frame.
//!
//! # What the per-client check needs
//!
//! Issue 9's rule is that every tick the server made after a client's 101
//! arrived must reach that client (see `crate::delivery_check`). So each client
//! records when its 101 arrived ([`Outcome::got_101_ns`], kept even if the
//! welcome then never comes), every tick's `seq` and `time`, and when its
//! connection ended if that was before loadgen closed it
//! ([`Outcome::ended_ns`]).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::rx_timestamp::{enable_rx_timestamps, recv_with_timestamp};
use crate::wallclock::{now_ns, parse_rfc3339_millis};

/// Where the run is; set by the controller, read by every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Clients are connecting; no echoes.
    Ramp,
    /// Everyone connected, ticks only.
    Rest,
    /// Ticks plus echoes from the echo clients.
    Load,
    /// The measured window has ended: no more echoes, keep reading ticks.
    Drain,
    /// Close now.
    Close,
}

/// Settings common to every client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub addr: SocketAddr,
    /// `Host` header value, e.g. `127.0.0.1:40132`.
    pub host: String,
    /// Request path, e.g. `/echo`.
    pub path: String,
    /// Time allowed for TCP connect + handshake + welcome.
    pub connect_timeout: Duration,
    /// Time allowed for the server's close frame after ours.
    pub close_timeout: Duration,
    /// How often an echo client sends an echo during `Load`.
    pub echo_every: Duration,
}

/// Counters the controller reads while the run goes on.
pub struct Progress {
    /// Clients that got their welcome.
    pub connected: AtomicUsize,
    /// Clients whose connect or handshake failed.
    pub failed: AtomicUsize,
    /// The newest tick seq any client has seen.
    pub max_seq: AtomicU64,
    /// Per client: the `time` stamp (ns since the epoch) of the newest tick it
    /// has seen, 0 before the first, or [`Progress::GONE`]. The controller's
    /// drain waits until every client has one made after the window ended.
    pub newest_stamp_ns: Vec<AtomicI64>,
}

impl Progress {
    /// In [`Progress::newest_stamp_ns`]: the client failed to connect or its
    /// connection ended, so the drain must not wait for it.
    pub const GONE: i64 = i64::MAX;

    pub fn new(clients: usize) -> Progress {
        Progress {
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            max_seq: AtomicU64::new(0),
            newest_stamp_ns: (0..clients).map(|_| AtomicI64::new(0)).collect(),
        }
    }
}

/// One tick as one client received it.
#[derive(Debug, Clone, Copy)]
pub struct TickRx {
    /// The tick's `seq` (tickcast's counts intervals since 1970, so it is large).
    pub seq: u64,
    /// How long after the kernel received it loadgen parsed it, µs (loadgen's own
    /// lag, reported so a saturated loadgen shows).
    pub lag_us: u32,
    /// Kernel receive time, ns since the epoch.
    pub kernel_ns: i64,
    /// The tick's `time` field, ns since the epoch.
    pub time_ns: i64,
}

/// Everything one client saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub index: usize,
    pub connected: bool,
    /// TCP connect until the welcome frame arrived.
    pub connect_ms: f64,
    /// Why the connect or handshake failed.
    pub connect_error: Option<String>,
    /// Why the connection ended before the controller said `Close`, if it did.
    pub ended_early: Option<String>,
    /// When the `101 Switching Protocols` response arrived (the kernel's
    /// receive timestamp, ns since the epoch), or `None` if it never did. Set
    /// even if the welcome then never comes: a client the server accepted and
    /// then forgot is exactly what the per-client check must see.
    pub got_101_ns: Option<i64>,
    /// When the connection ended, ns since the epoch, if that was before the
    /// controller said `Close` (a failed connect after the 101 included).
    pub ended_ns: Option<i64>,
    pub welcome_id: u64,
    pub ticks: Vec<TickRx>,
    pub joins: u32,
    pub leaves: u32,
    pub others: u32,
    pub protocol_errors: u32,
    pub pings: u32,
    pub echo_sent: u32,
    pub echo_rtt_us: Vec<u32>,
    /// The server answered our close with its own close frame.
    pub clean_close: bool,
    /// The close code the server sent, if any.
    pub close_code: Option<u16>,
}

/// Runs one client to the end. `permit` (a ramp slot) is released once the client
/// is connected or has failed.
pub async fn run(
    index: usize,
    config: &ClientConfig,
    progress: &Progress,
    mut phase_rx: watch::Receiver<Phase>,
    echo: bool,
    permit: OwnedSemaphorePermit,
) -> Outcome {
    let mut out = Outcome {
        index,
        ..Outcome::default()
    };
    let started = Instant::now();
    let connected = tokio::time::timeout(config.connect_timeout, connect(config, &mut out)).await;
    drop(permit);
    let mut conn = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return failed(out, progress, e.to_string()),
        Err(_) => return failed(out, progress, "timed out".into()),
    };
    out.connected = true;
    out.connect_ms = started.elapsed().as_secs_f64() * 1e3;
    progress.connected.fetch_add(1, Ordering::Relaxed);

    let mut rng =
        XorShift(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut echo_n: u64 = 0;
    let mut pending_echo: VecDeque<(u64, i64)> = VecDeque::new();
    // Stagger the echo clients over one period so they do not fire together.
    let mut next_echo: Option<Instant> = None;
    let mut closing = false;

    'outer: loop {
        let phase = *phase_rx.borrow();
        if phase == Phase::Close {
            break;
        }
        if echo && phase == Phase::Load && next_echo.is_none() {
            let offset = config
                .echo_every
                .mul_f64((rng.next() % 1000) as f64 / 1000.0);
            next_echo = Some(Instant::now() + offset);
        }
        tokio::select! {
            read = conn.read_some() => {
                match read {
                    Ok((0, _)) => {
                        out.ended_early = Some("connection closed by the server (EOF)".into());
                        break 'outer;
                    }
                    Ok((_, kernel_ns)) => {
                        let user_ns = now_ns();
                        let kernel_ns = kernel_ns.unwrap_or(user_ns);
                        let lag_us = ((user_ns - kernel_ns).max(0) / 1000) as u32;
                        loop {
                            match handle_frame(&mut conn, &mut out, progress, &mut pending_echo, kernel_ns, lag_us, &mut rng).await {
                                Ok(FrameResult::More) => {}
                                Ok(FrameResult::NeedData) => break,
                                Ok(FrameResult::Closed) => {
                                    closing = true;
                                    break 'outer;
                                }
                                Err(e) => {
                                    out.ended_early = Some(e.to_string());
                                    break 'outer;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        out.ended_early = Some(format!("read failed: {e}"));
                        break 'outer;
                    }
                }
            }
            changed = phase_rx.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            // Echoes belong to the load phase only: the drain measures nothing.
            _ = sleep_until_opt(next_echo.filter(|_| phase == Phase::Load)) => {
                echo_n += 1;
                let payload = format!(r#"{{"echo":{echo_n}}}"#);
                pending_echo.push_back((echo_n, now_ns()));
                if let Err(e) = conn.send(0x1, payload.as_bytes(), &mut rng).await {
                    out.ended_early = Some(format!("echo write failed: {e}"));
                    break 'outer;
                }
                out.echo_sent += 1;
                next_echo = next_echo.map(|t| t + config.echo_every);
            }
        }
    }
    if closing || out.ended_early.is_some() {
        out.ended_ns = Some(now_ns());
        // Gone early: the controller must not wait for this client to catch up.
        progress.newest_stamp_ns[index].store(Progress::GONE, Ordering::Relaxed);
    }
    if closing {
        // The server sent a close frame first; we answered it in handle_frame.
        if out.ended_early.is_none() {
            out.ended_early = Some(format!(
                "server closed with code {}",
                out.close_code.unwrap_or(0)
            ));
        }
        return out;
    }
    if out.ended_early.is_some() {
        return out;
    }
    // Our close: code 1000, then wait for the server's close frame.
    let close_payload = 1000u16.to_be_bytes();
    if conn.send(0x8, &close_payload, &mut rng).await.is_err() {
        return out;
    }
    let wait = async {
        loop {
            match conn.read_some().await {
                Ok((0, _)) | Err(_) => return,
                Ok((_, ts)) => loop {
                    let ts = ts.unwrap_or_else(now_ns);
                    match handle_frame(
                        &mut conn,
                        &mut out,
                        progress,
                        &mut pending_echo,
                        ts,
                        0,
                        &mut rng,
                    )
                    .await
                    {
                        Ok(FrameResult::More) => {}
                        Ok(FrameResult::NeedData) => break,
                        Ok(FrameResult::Closed) => {
                            out.clean_close = true;
                            return;
                        }
                        Err(_) => return,
                    }
                },
            }
        }
    };
    let _ = tokio::time::timeout(config.close_timeout, wait).await;
    out
}

fn failed(mut out: Outcome, progress: &Progress, error: String) -> Outcome {
    progress.failed.fetch_add(1, Ordering::Relaxed);
    progress.newest_stamp_ns[out.index].store(Progress::GONE, Ordering::Relaxed);
    out.connect_error = Some(error);
    // If the 101 had arrived, this is when the server's accepted connection
    // was given up on, before the window ended: a lost client.
    out.ended_ns = Some(now_ns());
    out
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// TCP connect, handshake, and the welcome frame.
async fn connect(config: &ClientConfig, out: &mut Outcome) -> io::Result<Conn> {
    let stream = TcpStream::connect(config.addr).await?;
    stream.set_nodelay(true)?;
    enable_rx_timestamps(stream.as_raw_fd())?;
    let mut conn = Conn {
        stream,
        buf: vec![0; 4096],
        start: 0,
        end: 0,
        close_sent: false,
    };
    let key = generate_key();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        config.path, config.host
    );
    conn.stream.write_all(request.as_bytes()).await?;
    // Read the response head, keeping the kernel's receive time of the read
    // that completed it: when the 101 arrived.
    let mut head_read_ns = 0;
    let head_end = loop {
        if let Some(i) = find(&conn.buf[conn.start..conn.end], b"\r\n\r\n") {
            break conn.start + i + 4;
        }
        if conn.end - conn.start > 8192 {
            return Err(io::Error::other("handshake response head too long"));
        }
        let (n, kernel_ns) = conn.read_some().await?;
        if n == 0 {
            return Err(io::Error::other("connection closed during the handshake"));
        }
        // Without a kernel timestamp, now is later than the arrival: that can
        // only make fewer ticks owed, never a tick wrongly owed.
        head_read_ns = kernel_ns.unwrap_or_else(now_ns);
    };
    let head = String::from_utf8_lossy(&conn.buf[conn.start..head_end]).into_owned();
    conn.start = head_end;
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 101") {
        return Err(io::Error::other(format!("handshake refused: {status}")));
    }
    let expected = derive_accept_key(key.as_bytes());
    let accept_ok = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
        })
    });
    if !accept_ok {
        return Err(io::Error::other(
            "handshake: wrong or missing Sec-WebSocket-Accept",
        ));
    }
    // If the head came in the same read as later bytes (the welcome, a tick),
    // the timestamp is the last segment's: later than the 101, so again only
    // ever fewer ticks owed.
    out.got_101_ns = Some(head_read_ns);
    // The first frame must be the welcome.
    loop {
        if let Some((opcode, s, e)) = conn.next_frame()? {
            let text = std::str::from_utf8(&conn.buf[s..e]).unwrap_or("");
            if opcode != 0x1 || !text.starts_with(r#"{"type":"welcome","#) {
                return Err(io::Error::other(format!(
                    "first frame was not a welcome: {text:.80}"
                )));
            }
            out.welcome_id = json_u64(text, "\"id\":").unwrap_or(0);
            conn.start = e;
            return Ok(conn);
        }
        let (n, _) = conn.read_some().await?;
        if n == 0 {
            return Err(io::Error::other("connection closed before the welcome"));
        }
    }
}

enum FrameResult {
    /// A frame was handled; there may be more in the buffer.
    More,
    /// No complete frame is buffered.
    NeedData,
    /// The server sent a close frame (answered, if we had not sent ours).
    Closed,
}

/// Handles the next complete frame in the buffer, if there is one.
async fn handle_frame(
    conn: &mut Conn,
    out: &mut Outcome,
    progress: &Progress,
    pending_echo: &mut VecDeque<(u64, i64)>,
    kernel_ns: i64,
    lag_us: u32,
    rng: &mut XorShift,
) -> io::Result<FrameResult> {
    let Some((opcode, s, e)) = conn.next_frame()? else {
        return Ok(FrameResult::NeedData);
    };
    conn.start = e;
    match opcode {
        0x1 => {
            let text = std::str::from_utf8(&conn.buf[s..e]).unwrap_or("");
            if text.starts_with(r#"{"type":"tick","#) {
                let seq = json_u64(text, "\"seq\":");
                let time = text
                    .find("\"time\":\"")
                    .and_then(|i| text.get(i + 8..i + 32))
                    .and_then(parse_rfc3339_millis);
                match (seq, time) {
                    (Some(seq), Some(time_ns)) => {
                        out.ticks.push(TickRx {
                            seq,
                            lag_us,
                            kernel_ns,
                            time_ns,
                        });
                        progress.newest_stamp_ns[out.index].store(time_ns, Ordering::Relaxed);
                        progress.max_seq.fetch_max(seq, Ordering::Relaxed);
                    }
                    _ => out.protocol_errors += 1,
                }
            } else if text.starts_with(r#"{"type":"join","#) {
                out.joins += 1;
            } else if text.starts_with(r#"{"type":"leave","#) {
                out.leaves += 1;
            } else if text.starts_with(r#"{"echo":"#) {
                let n = json_u64(text, "{\"echo\":").unwrap_or(0);
                while let Some(&(sent_n, sent_ns)) = pending_echo.front() {
                    pending_echo.pop_front();
                    if sent_n == n {
                        out.echo_rtt_us
                            .push(((kernel_ns - sent_ns).max(0) / 1000) as u32);
                        break;
                    }
                }
            } else {
                out.others += 1;
            }
        }
        0x8 => {
            let payload = &conn.buf[s..e];
            out.close_code =
                (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            if !conn.close_sent {
                // Answer with the same code, as RFC 6455 asks; ignore failures.
                let code = out.close_code.unwrap_or(1000).to_be_bytes();
                let _ = conn.send(0x8, &code, rng).await;
            }
            return Ok(FrameResult::Closed);
        }
        0x9 => {
            out.pings += 1;
            let payload = conn.buf[s..e].to_vec();
            conn.send(0xA, &payload, rng).await?;
        }
        0xA => {}
        _ => out.protocol_errors += 1,
    }
    Ok(FrameResult::More)
}

/// The socket and its read buffer: bytes `buf[start..end]` are unparsed.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// We sent a close frame: send nothing more.
    close_sent: bool,
}

impl Conn {
    /// Reads what the socket has. Returns the byte count (0 at EOF) and the kernel
    /// receive timestamp of the data, if the kernel gave one.
    async fn read_some(&mut self) -> io::Result<(usize, Option<i64>)> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let len = self.buf.len();
                self.buf.resize(len * 2, 0);
            }
        }
        let fd = self.stream.as_raw_fd();
        loop {
            self.stream.readable().await?;
            let end = self.end;
            let buf = &mut self.buf[end..];
            match self
                .stream
                .try_io(Interest::READABLE, || recv_with_timestamp(fd, buf))
            {
                Ok((n, ts)) => {
                    self.end += n;
                    return Ok((n, ts));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next complete frame in the buffer as (opcode, payload start, payload
    /// end), without consuming it.
    ///
    /// # Errors
    ///
    /// A masked frame, a fragmented one, or a payload over 16 MiB: servers in
    /// this benchmark send none of these.
    fn next_frame(&self) -> io::Result<Option<(u8, usize, usize)>> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        let opcode = b[0] & 0x0F;
        if b[1] & 0x80 != 0 {
            return Err(io::Error::other("the server sent a masked frame"));
        }
        if !fin || opcode == 0 {
            return Err(io::Error::other("the server sent a fragmented message"));
        }
        let (len, header) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(be) as usize, 10)
            }
            126 | 127 => return Ok(None),
            n => (n as usize, 2),
        };
        if len > 16 << 20 {
            return Err(io::Error::other("frame over 16 MiB"));
        }
        if b.len() < header + len {
            return Ok(None);
        }
        let s = self.start + header;
        Ok(Some((opcode, s, s + len)))
    }

    /// Writes one masked client frame.
    async fn send(&mut self, opcode: u8, payload: &[u8], rng: &mut XorShift) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if opcode == 0x8 {
            self.close_sent = true;
        }
        let mask = (rng.next() as u32).to_ne_bytes();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The unsigned integer right after `key` in a JSON text (no full parse: the
/// messages are small and fixed).
fn json_u64(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// Masking keys only need to be unpredictable to intermediaries, of which there are
/// none on loopback; a tiny PRNG keeps loadgen cheap.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields() {
        let t = r#"{"type":"tick","seq":42,"time":"2026-11-24T14:00:01.000Z"}"#;
        assert_eq!(json_u64(t, "\"seq\":"), Some(42));
        assert_eq!(json_u64(r#"{"echo":7}"#, "{\"echo\":"), Some(7));
        assert_eq!(json_u64(t, "\"nope\":"), None);
    }
}
