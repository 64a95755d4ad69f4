//! `scripts/handshake.sh`, the WebSocket client in plain bash: it completes the
//! handshake with the real server, decodes frames, closes cleanly, and fails with a
//! clear message (never a hang) when something is wrong.
#![cfg(unix)]

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::util::{start, start_with, Client};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/handshake.sh");

/// How long one run of the script may take before the test kills it and fails.
/// Its own reads give up after 5 s each, so a healthy run is far below this.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// What one run of the script printed, and how it ended.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Both streams, for assertion messages.
    fn dump(&self) -> String {
        format!(
            "status {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// The value after `prefix` on the first stdout line that starts with it.
    fn line_after(&self, prefix: &str) -> &str {
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?}\n{}", self.dump()))
    }
}

/// Runs `bash scripts/handshake.sh ARGS…` with `env` added to its environment.
/// Kills it and fails the test if it has not finished within `SCRIPT_TIMEOUT`.
fn run_script(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut child = Command::new("bash")
        .arg(SCRIPT)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bash");
    // stdout reaches its end when the script (and every command it started) has
    // exited: that is the signal to wait for, with a deadline.
    let mut stdout = child.stdout.take().unwrap();
    let (stdout_tx, stdout_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = stdout_tx.send(text);
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let Ok(stdout) = stdout_rx.recv_timeout(SCRIPT_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("scripts/handshake.sh {args:?} did not finish within {SCRIPT_TIMEOUT:?}");
    };
    let status = child.wait().expect("wait for bash");
    let stderr = stderr_reader.join().unwrap();
    Run {
        status,
        stdout,
        stderr,
    }
}

/// One `frame N: FIN text LEN bytes: PAYLOAD` line of the script's output.
struct TextFrame {
    number: u32,
    length: usize,
    payload: String,
}

/// Every decoded text frame the script printed, in order.
fn text_frames(run: &Run) -> Vec<TextFrame> {
    run.stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("frame ")?;
            let (number, rest) = rest.split_once(": FIN text ")?;
            let (length, payload) = rest.split_once(" bytes: ")?;
            Some(TextFrame {
                number: number.parse().ok()?,
                length: length.parse().ok()?,
                payload: payload.to_string(),
            })
        })
        .collect()
}

fn json(frame: &TextFrame) -> Value {
    serde_json::from_str(&frame.payload).unwrap_or_else(|e| {
        panic!(
            "frame {} is not JSON ({e}): {}",
            frame.number, frame.payload
        )
    })
}

/// A port on 127.0.0.1 where nothing listens: one the OS just handed out, released.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Against the real server: 101, an accept hash that matches (and is the right
/// one), a welcome and two consecutive ticks decoded, then a close answered 1000,
/// which the server counts as a clean close.
#[test]
fn script_completes_the_handshake_reads_frames_and_closes() {
    let server = start();
    // Connected first, so that it sees the script come and go, while the script
    // hears nothing about it.
    let mut observer = Client::connect(&server);
    observer.welcome();
    let port = server.ws_addr().port().to_string();
    let run = run_script(&["127.0.0.1", &port, "3"], &[]);
    assert_clean_session(&run);
    // Check the script's hash against tungstenite's, so that "matches" means right.
    let key = run.line_after("> Sec-WebSocket-Key: ");
    assert_eq!(
        run.line_after("expected Sec-WebSocket-Accept: "),
        tungstenite::handshake::derive_accept_key(key.as_bytes())
    );

    let frames = text_frames(&run);
    let numbers: Vec<u32> = frames.iter().map(|f| f.number).collect();
    assert!(numbers.starts_with(&[1, 2, 3]), "{}", run.dump());
    for frame in &frames {
        assert_eq!(frame.length, frame.payload.len(), "{}", run.dump());
    }
    let welcome = json(&frames[0]);
    assert_eq!(welcome["type"], "welcome", "{}", run.dump());
    assert!(
        welcome["id"].as_u64().is_some_and(|id| id >= 1),
        "{welcome}"
    );
    assert_eq!(welcome["clients"], 2, "{welcome}");
    // Nobody joins after the script, so everything after its welcome is a tick.
    let seqs: Vec<u64> = frames[1..3]
        .iter()
        .map(|frame| {
            let tick = json(frame);
            assert_eq!(tick["type"], "tick", "{}", run.dump());
            tick["seq"].as_u64().expect("a numeric seq")
        })
        .collect();
    assert_eq!(seqs[1], seqs[0] + 1, "{}", run.dump());
    assert!(
        run.stdout.contains("the server closed the TCP connection"),
        "{}",
        run.dump()
    );

    // The server saw the script join, and leave by the close handshake (not
    // `dropped`); the probe connection the script makes first is never a client.
    // (A join batches everyone within 50 ms, so it may list the observer too.)
    let join = observer.next_of_type("join");
    let joined = join["ids"].as_array().expect("ids");
    assert!(joined.contains(&welcome["id"]), "{join}");
    let leave = observer.next_of_type("leave");
    assert_eq!(leave["ids"], serde_json::json!([welcome["id"]]), "{leave}");
    assert_eq!(leave["reason"], "closed", "{leave}");
    server.shutdown();
}

/// A message longer than 125 bytes carries its length in the 16-bit extended field
/// (length byte 126), and the script decodes it.
#[test]
fn script_decodes_a_16_bit_length() {
    let server = start_with(|config| config.interval = None);
    let publisher = server.publisher();
    let message = format!(r#"{{"type":"big","pad":"{}"}}"#, "x".repeat(300));
    // Publish it every 20 ms until the script is done: whenever it connects, the
    // frames after its welcome are this message. The wait on the channel is both the
    // pause and the stop signal.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let publishing = {
        let message = message.clone();
        thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stop_rx.recv_timeout(Duration::from_millis(20))
            {
                publisher.publish_text(message.clone()).unwrap();
            }
        })
    };
    let port = server.ws_addr().port().to_string();
    let run = run_script(&["127.0.0.1", &port, "2"], &[]);
    drop(stop_tx);
    publishing.join().unwrap();

    assert!(run.status.success(), "{}", run.dump());
    let frames = text_frames(&run);
    assert_eq!(frames[1].number, 2, "{}", run.dump());
    assert_eq!(frames[1].payload, message, "{}", run.dump());
    assert_eq!(frames[1].length, message.len(), "{}", run.dump());
    // 0x81 (FIN, text), 0x7e (126: a 16-bit length follows), then the length.
    let header = format!(
        "    header 81 7e {:02x} {:02x}: ",
        message.len() >> 8,
        message.len() & 0xff
    );
    assert!(run.stdout.contains(&header), "{header:?}\n{}", run.dump());
    server.shutdown();
}

/// Nothing listening: a non-zero exit and a message that says what to check.
#[test]
fn script_says_when_nothing_listens() {
    let port = closed_port().to_string();
    let run = run_script(&["127.0.0.1", &port, "3"], &[]);
    assert_eq!(run.status.code(), Some(1), "{}", run.dump());
    assert!(
        run.stderr
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        run.dump()
    );
    assert!(
        run.stderr.contains("is tickcast running?"),
        "{}",
        run.dump()
    );
}

/// A server that accepts but never answers: the script gives up after its timeout
/// instead of hanging.
#[test]
fn script_gives_up_on_a_silent_server() {
    // The kernel completes the TCP handshake for a listening socket even if nobody
    // calls accept, so this listener is a server that says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let run = run_script(&["127.0.0.1", &port, "3"], &[("HANDSHAKE_TIMEOUT", "1")]);
    assert_eq!(run.status.code(), Some(1), "{}", run.dump());
    assert!(run.stderr.contains("no answer from"), "{}", run.dump());
    drop(silent);
}

/// The HTTP port is not the WebSocket port: the script shows the refusal it got
/// and fails.
#[test]
fn script_fails_on_a_refusal() {
    let server = start();
    let port = server.http_addr().unwrap().port().to_string();
    let run = run_script(&["127.0.0.1", &port, "3"], &[]);
    assert_eq!(run.status.code(), Some(1), "{}", run.dump());
    assert!(run.stdout.contains("\n< HTTP/1.1 404 "), "{}", run.dump());
    assert!(
        run.stderr
            .contains("expected 'HTTP/1.1 101 Switching Protocols'"),
        "{}",
        run.dump()
    );
    server.shutdown();
}

/// A bad argument: exit status 2 and the usage line.
#[test]
fn script_rejects_bad_arguments() {
    for args in [
        &["127.0.0.1", "http"][..],
        &["127.0.0.1", "70000"],
        &["127.0.0.1", "40132", "some"],
        &["127.0.0.1", "40132", "3", "extra"],
    ] {
        let run = run_script(args, &[]);
        assert_eq!(run.status.code(), Some(2), "{args:?}\n{}", run.dump());
        assert!(run.stderr.contains("usage: "), "{args:?}\n{}", run.dump());
    }
}

/// What every successful run shows: the 101, a matching accept hash, a welcome
/// as frame 1, and the close handshake answered 1000.
fn assert_clean_session(run: &Run) {
    assert!(run.status.success(), "{}", run.dump());
    assert!(run.stderr.is_empty(), "{}", run.dump());
    assert!(
        run.stdout
            .contains("\n< HTTP/1.1 101 Switching Protocols\n"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout.contains("\nSec-WebSocket-Accept matches"),
        "{}",
        run.dump()
    );
    let frames = text_frames(run);
    assert_eq!(frames.first().map(|f| f.number), Some(1), "{}", run.dump());
    assert_eq!(json(&frames[0])["type"], "welcome", "{}", run.dump());
    assert!(
        run.stdout
            .contains("\nclose reply: FIN close 2 bytes: code 1000 (normal closure)\n"),
        "{}",
        run.dump()
    );
}

/// A `ws://HOST:PORT/echo` URL, as wscat takes it: the script connects to that
/// port, asks for `/echo`, sends `Host: HOST:PORT`, and completes the session.
#[test]
fn script_takes_a_ws_url() {
    let server = start();
    let port = server.ws_addr().port();
    let url = format!("ws://127.0.0.1:{port}/echo");
    let run = run_script(&[&url, "2"], &[]);
    assert_clean_session(&run);
    assert_eq!(run.line_after("> "), "GET /echo HTTP/1.1", "{}", run.dump());
    assert_eq!(
        run.line_after("> Host: "),
        format!("127.0.0.1:{port}"),
        "{}",
        run.dump()
    );
    // FRAMES, the URL's second argument, is obeyed: frame 2 is read, frame 3 not.
    let numbers: Vec<u32> = text_frames(&run).iter().map(|f| f.number).collect();
    assert_eq!(&numbers[..2], &[1, 2], "{}", run.dump());
    assert!(!run.stdout.contains("\nframe 3: "), "{}", run.dump());
    server.shutdown();
}

/// The URL's path is the request's: `ws://localhost:PORT/` and a URL with no path
/// at all both ask for `/`, which tickcast also serves, and keep the host as written.
#[test]
fn script_asks_for_the_urls_root_path() {
    let server = start();
    let port = server.ws_addr().port();
    for (url, host) in [
        (
            format!("ws://localhost:{port}/"),
            format!("localhost:{port}"),
        ),
        (
            format!("ws://127.0.0.1:{port}"),
            format!("127.0.0.1:{port}"),
        ),
    ] {
        let run = run_script(&[&url, "1"], &[]);
        assert_clean_session(&run);
        assert_eq!(
            run.line_after("> "),
            "GET / HTTP/1.1",
            "{url}\n{}",
            run.dump()
        );
        assert_eq!(run.line_after("> Host: "), host, "{url}\n{}", run.dump());
    }
    server.shutdown();
}

/// An IPv6 URL, `ws://[::1]:PORT/echo`: the script connects to `::1` (without the
/// brackets) and sends the brackets in `Host`.
#[test]
fn script_takes_an_ipv6_url() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: this machine has no IPv6 loopback");
        return;
    }
    let server = start_with(|config| config.ws_addr = "[::1]:0".parse().unwrap());
    let port = server.ws_addr().port();
    let url = format!("ws://[::1]:{port}/echo");
    let run = run_script(&[&url, "1"], &[]);
    assert_clean_session(&run);
    assert_eq!(
        run.line_after("> Host: "),
        format!("[::1]:{port}"),
        "{}",
        run.dump()
    );
    server.shutdown();
}

/// A URL whose path tickcast does not serve: the request asks for that path, and the
/// server's 404 and its reason are reported, with exit status 1.
#[test]
fn script_reports_a_404_for_a_wrong_path() {
    let server = start();
    let port = server.ws_addr().port();
    let url = format!("ws://127.0.0.1:{port}/nope");
    let run = run_script(&[&url], &[]);
    assert_eq!(run.status.code(), Some(1), "{}", run.dump());
    assert_eq!(run.line_after("> "), "GET /nope HTTP/1.1", "{}", run.dump());
    assert!(
        run.stdout.contains("\n< HTTP/1.1 404 Not Found\n"),
        "{}",
        run.dump()
    );
    // The reason is the server's own, so it proves the path reached the server.
    assert_eq!(
        run.stderr,
        "handshake.sh: expected 'HTTP/1.1 101 Switching Protocols', got 'HTTP/1.1 404 Not \
         Found': no WebSocket endpoint at /nope; connect to /echo\n",
        "{}",
        run.dump()
    );
    server.shutdown();
}

/// A URL without a port means port 80, as the URL standard says for `ws://`, not
/// tickcast's 40132; a failed connect says so and shows the URL with 40132.
#[test]
fn script_reads_a_url_without_a_port_as_port_80() {
    let run = run_script(&["ws://127.0.0.1/echo"], &[("HANDSHAKE_TIMEOUT", "1")]);
    assert!(
        run.stdout.contains(
            "\nconnecting to host 127.0.0.1, port 80; request target /echo; Host: 127.0.0.1\n"
        ),
        "{}",
        run.dump()
    );
    // Whatever this machine has on port 80 answers; if nothing does, the hint shows.
    if run.stderr.contains("cannot connect") {
        assert_eq!(run.status.code(), Some(1), "{}", run.dump());
        assert!(
            run.stderr.contains(
                "cannot connect to 127.0.0.1:80 (Connection refused): is tickcast running? \
                 (the URL names no port, so 80, the ws:// default; tickcast's is 40132: \
                 ws://127.0.0.1:40132/echo)"
            ),
            "{}",
            run.dump()
        );
    }
}

/// `wss://` is refused at once with exit status 2, one line that says this script
/// speaks no TLS and what to use instead, and no connection, even with a server
/// listening there.
#[test]
fn script_refuses_wss() {
    let server = start();
    let port = server.ws_addr().port();
    for url in [
        format!("wss://127.0.0.1:{port}/echo"),
        format!("WSS://127.0.0.1:{port}/"),
    ] {
        let run = run_script(&[&url], &[]);
        assert_eq!(run.status.code(), Some(2), "{url}\n{}", run.dump());
        assert!(run.stdout.is_empty(), "{url}\n{}", run.dump());
        assert_eq!(run.stderr.lines().count(), 1, "{url}\n{}", run.dump());
        for needle in ["does not speak", "TLS", "plain ws:// URL", "nginx"] {
            assert!(run.stderr.contains(needle), "{needle:?}\n{}", run.dump());
        }
    }
    server.shutdown();
}

/// A malformed URL (no host, a port out of range or not a number, an IPv6 address
/// without brackets, a fragment, another scheme): exit status 2 and one line that
/// names the URL and the fault, before any connection.
#[test]
fn script_rejects_malformed_urls() {
    for (url, fault) in [
        ("ws://", "has no host"),
        ("ws:///echo", "has no host"),
        ("ws://:40132/echo", "has no host"),
        (
            "ws://h:99999/",
            "the port must be a number from 1 to 65535, not '99999'",
        ),
        (
            "ws://h:abc/",
            "the port must be a number from 1 to 65535, not 'abc'",
        ),
        (
            "ws://h:0/",
            "the port must be a number from 1 to 65535, not '0'",
        ),
        ("ws://::1:40132/echo", "an IPv6 address goes in brackets"),
        ("ws://[::1/echo", "is not an IPv6 address in brackets"),
        ("ws://h:40132/echo#top", "#fragment"),
        ("ws:/h/echo", "is not a ws:// URL"),
        ("http://127.0.0.1:40132/echo", "is not a ws:// URL"),
    ] {
        let run = run_script(&[url], &[]);
        assert_eq!(run.status.code(), Some(2), "{url}\n{}", run.dump());
        assert!(run.stdout.is_empty(), "{url}\n{}", run.dump());
        assert_eq!(run.stderr.lines().count(), 1, "{url}\n{}", run.dump());
        let prefix = format!("handshake.sh: '{url}'");
        assert!(run.stderr.starts_with(&prefix), "{url}\n{}", run.dump());
        assert!(
            run.stderr.contains(fault),
            "{url}: {fault:?}\n{}",
            run.dump()
        );
    }
}

/// After a URL the only argument is FRAMES: a third is a usage error (exit 2),
/// not silently ignored.
#[test]
fn script_rejects_arguments_after_url_and_frames() {
    let run = run_script(&["ws://127.0.0.1:40132/echo", "3", "40132"], &[]);
    assert_eq!(run.status.code(), Some(2), "{}", run.dump());
    assert!(
        run.stderr.starts_with(
            "handshake.sh: too many arguments: after a URL comes only FRAMES\nusage: "
        ),
        "{}",
        run.dump()
    );
    assert!(run.stdout.is_empty(), "{}", run.dump());
}
