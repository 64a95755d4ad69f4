//! loadgen's per-client delivery check (issue 9), end to end: the real loadgen
//! binary against a tiny fake tick server that can be told to lose a tick for
//! one client, or a whole client, in the ways the load probe saw. Each test
//! proves the check passes a server that loses nothing, or fails (exit 1, a
//! message naming the loss) one that does.
//!
//! The fake server is plain std: one thread per connection, one ticker thread,
//! and a registry of clients behind a mutex. Done right, a client's 101,
//! welcome and registration happen under the registry lock, so no tick can fall
//! between them; `Fault::RegisterLate` does it the way issue 9 found tickcast
//! doing it (101 first, registration later).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use tickcast_bench::run::RunResult;
use tickcast_bench::wallclock::rfc3339_millis;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The fake server's tick interval: short, so a run of well under a second
/// still holds dozens of ticks.
const TICK_EVERY: Duration = Duration::from_millis(20);

/// Every socket and the loadgen process get this long before the test fails
/// instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How the fake server misbehaves; `client` is the connection's accept order.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Loses nothing.
    None,
    /// Sends `client` every tick but one, a few ticks after its welcome.
    SkipOneTick { client: usize },
    /// Answers `client` with a 101, then closes the connection: no welcome.
    CloseAfter101 { client: usize },
    /// Registers `client` with the ticker `delay` after its 101 (issue 9's
    /// bug), so the ticks made in between never reach it.
    RegisterLate { client: usize, delay: Duration },
}

/// A connected client, as the ticker sees it.
struct Member {
    id: usize,
    stream: TcpStream,
    /// A seq the ticker must not send to this client (`Fault::SkipOneTick`).
    skip_seq: Option<u32>,
}

/// The fake tick server; stops (its ticker does, and its connections then end)
/// when dropped.
struct FakeServer {
    url: String,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl FakeServer {
    fn start(fault: Fault) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
        let stop = Arc::new(AtomicBool::new(false));
        let members: Arc<Mutex<Vec<Member>>> = Arc::default();
        let seq = Arc::new(AtomicU32::new(0));
        {
            let (members, seq, stop) = (members.clone(), seq.clone(), stop.clone());
            thread::spawn(move || ticker(&members, &seq, &stop));
        }
        thread::spawn(move || {
            let accepted = AtomicUsize::new(0);
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let id = accepted.fetch_add(1, Ordering::Relaxed);
                let (members, seq) = (members.clone(), seq.clone());
                thread::spawn(move || connection(id, stream, fault, &members, &seq));
            }
        });
        FakeServer { url, stop }
    }
}

/// Stamps and sends a tick every `TICK_EVERY` to every registered client.
fn ticker(members: &Mutex<Vec<Member>>, seq: &AtomicU32, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(TICK_EVERY);
        let n = seq.fetch_add(1, Ordering::Relaxed) + 1;
        let text = format!(
            r#"{{"type":"tick","seq":{n},"time":"{}"}}"#,
            rfc3339_millis(SystemTime::now())
        );
        let frame = text_frame(&text);
        let mut members = members.lock().expect("registry lock");
        members.retain_mut(|m| m.skip_seq == Some(n) || m.stream.write_all(&frame).is_ok());
    }
}

/// One connection: handshake, welcome and registration, then read until the
/// client closes.
fn connection(
    id: usize,
    mut stream: TcpStream,
    fault: Fault,
    members: &Mutex<Vec<Member>>,
    seq: &AtomicU32,
) {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let Some(key) = read_request_key(&mut stream) else {
        return;
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    let welcome = text_frame(&format!(
        r#"{{"type":"welcome","id":{id},"clients":1,"time":"{}"}}"#,
        rfc3339_millis(SystemTime::now())
    ));
    match fault {
        Fault::CloseAfter101 { client } if client == id => {
            let _ = stream.write_all(response.as_bytes());
            return; // Dropping the stream closes the connection.
        }
        Fault::RegisterLate { client, delay } if client == id => {
            let _ = stream.write_all(response.as_bytes());
            thread::sleep(delay);
            let mut members = members.lock().expect("registry lock");
            register(&mut members, id, &stream, &welcome, None);
        }
        _ => {
            // The right way: 101, welcome and registration with the lock held,
            // so every tick made after the 101 goes out after the welcome.
            let mut members = members.lock().expect("registry lock");
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
            let skip_seq = match fault {
                Fault::SkipOneTick { client } if client == id => {
                    Some(seq.load(Ordering::Relaxed) + 3)
                }
                _ => None,
            };
            register(&mut members, id, &stream, &welcome, skip_seq);
        }
    }
    read_until_close(id, stream, members);
}

fn register(
    members: &mut Vec<Member>,
    id: usize,
    stream: &TcpStream,
    welcome: &[u8],
    skip_seq: Option<u32>,
) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    if writer.write_all(welcome).is_ok() {
        members.push(Member {
            id,
            stream: writer,
            skip_seq,
        });
    }
}

/// The request head's `Sec-WebSocket-Key`.
fn read_request_key(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 || head.len() > 8192 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_string())
    })
}

/// Reads the client's (masked) frames until its close, which it answers, and
/// leaves the registry.
fn read_until_close(id: usize, mut stream: TcpStream, members: &Mutex<Vec<Member>>) {
    let mut header = [0u8; 2];
    while stream.read_exact(&mut header).is_ok() {
        let opcode = header[0] & 0x0F;
        let len = match header[1] & 0x7F {
            126 => {
                let mut ext = [0u8; 2];
                if stream.read_exact(&mut ext).is_err() {
                    break;
                }
                usize::from(u16::from_be_bytes(ext))
            }
            127 => break, // loadgen never sends one this large.
            n => usize::from(n),
        };
        let mut masked = vec![0u8; 4 + len];
        if stream.read_exact(&mut masked).is_err() {
            break;
        }
        if opcode == 0x8 {
            // Under the lock, so the close frame cannot interleave with a tick.
            let mut members = members.lock().expect("registry lock");
            members.retain(|m| m.id != id);
            let _ = stream.write_all(&[0x88, 0x02, 0x03, 0xE8]);
            return;
        }
    }
    members
        .lock()
        .expect("registry lock")
        .retain(|m| m.id != id);
}

/// An unmasked server text frame (payloads here are all under 126 bytes).
fn text_frame(text: &str) -> Vec<u8> {
    assert!(text.len() < 126, "the fake server only sends short frames");
    let mut frame = vec![0x81, text.len() as u8];
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// What one loadgen run returned.
struct Run {
    status: ExitStatus,
    result: RunResult,
    stderr: String,
}

/// Runs loadgen with `--require-full-delivery` against `server`: 8 clients,
/// phases of a few hundred milliseconds.
fn loadgen(server: &FakeServer) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", &server.url, "--clients", "8", "--ramp-rate", "100"])
        .args([
            "--settle",
            "100ms",
            "--rest",
            "200ms",
            "--duration",
            "400ms",
        ])
        .args(["--after", "10ms", "--drain", "2s", "--echo-clients", "0"])
        .args(["--interval", "20ms", "--server", "fake", "--mode", "smoke"])
        .arg("--require-full-delivery")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loadgen");
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for loadgen") {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("loadgen ran over {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    // Shown with `--nocapture`, and under a failing test.
    eprint!("{stderr}");
    let result = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("loadgen's JSON: {e}\nstderr:\n{stderr}"));
    Run {
        status,
        result,
        stderr,
    }
}

/// A server that loses nothing passes, and the summary says so.
#[test]
fn a_server_that_loses_nothing_passes() {
    let server = FakeServer::start(Fault::None);
    let run = loadgen(&server);
    let check = &run.result.delivery.check;
    assert!(run.status.success(), "{}", run.stderr);
    assert!(check.is_clean(), "{check:?}");
    assert_eq!(check.clients_checked, 8);
    assert!(check.ticks_owed > 8 * 20, "{check:?}");
    assert!(run
        .stderr
        .contains("every client got every tick after its 101"));
}

/// One tick missing for one client fails the run, and the message says so.
#[test]
fn one_tick_skipped_for_one_client_fails() {
    let server = FakeServer::start(Fault::SkipOneTick { client: 2 });
    let run = loadgen(&server);
    let check = &run.result.delivery.check;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!((check.clients_missing, check.ticks_missing), (1, 1));
    assert!(
        run.stderr
            .contains("FAILED: LOSS: 1 of 8 clients missed 1 of the"),
        "{}",
        run.stderr
    );
}

/// A client that gets its 101 and then nothing is a lost client: the run fails.
#[test]
fn a_client_closed_after_its_101_fails() {
    let server = FakeServer::start(Fault::CloseAfter101 { client: 5 });
    let run = loadgen(&server);
    let check = &run.result.delivery.check;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!((check.clients_checked, check.clients_lost), (8, 1));
    assert!(check.ticks_missing > 0, "{check:?}");
    assert!(check.worst[0].lost);
    assert!(run.stderr.contains("1 client lost"), "{}", run.stderr);
}

/// Issue 9's bug: ticks made between a client's 101 and its registration are
/// missed, and the worst-client entry shows them right before its first tick.
#[test]
fn ticks_before_a_late_registration_fail() {
    let delay = TICK_EVERY * 5;
    let server = FakeServer::start(Fault::RegisterLate { client: 7, delay });
    let run = loadgen(&server);
    let check = &run.result.delivery.check;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!(check.clients_missing, 1, "{check:?}");
    let worst = &check.worst[0];
    assert!(worst.missed >= 3, "{worst:?}");
    let last_missed = *worst.missed_seqs.last().expect("missed seqs");
    assert_eq!(Some(last_missed + 1), worst.first_seq_received, "{worst:?}");
}
