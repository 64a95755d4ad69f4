//! The real `tickcast` binary: help, version, bad flags, and a graceful SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn tickcast() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tickcast"))
}

/// `--help` lists every flag with its default and exits 0.
#[test]
fn help_lists_flags_and_defaults() {
    let out = tickcast().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--ws-addr",
        "--http-addr",
        "--interval",
        "--public",
        "--max-clients",
        "--max-message-size",
        "--max-backlog",
        "[default: 127.0.0.1:40132]",
        "[default: 127.0.0.1:8080]",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

/// `--version` prints the crate version.
#[test]
fn version_prints_the_version() {
    let out = tickcast().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("tickcast {}", env!("CARGO_PKG_VERSION"))
    );
}

/// An unknown flag or a bad value: one line naming the flag, exit code 2.
#[test]
fn bad_flags_exit_2_naming_the_flag() {
    for (args, needle) in [
        (&["--frobnicate"][..], "--frobnicate"),
        (&["--interval", "soon"][..], "--interval"),
        (&["--max-backlog", "1KiB"][..], "--max-backlog"),
        (&["--ws-addr", "not-an-address"][..], "--ws-addr"),
    ] {
        let out = tickcast().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// Without the `redis` feature, `--redis` says how to build with it.
#[cfg(not(feature = "redis"))]
#[test]
fn redis_without_the_feature_says_how_to_build_it() {
    let out = tickcast()
        .args([
            "--redis",
            "redis://127.0.0.1:6379",
            "--ws-addr",
            "127.0.0.1:0",
        ])
        .args(["--http-addr", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cargo build --release --features redis"),
        "{err}"
    );
}

/// The real binary on free ports, with its log lines on a channel.
#[cfg(unix)]
struct Running {
    child: std::process::Child,
    log_rx: mpsc::Receiver<String>,
    /// The log lines up to the one announcing the WebSocket URL.
    startup: Vec<String>,
    ws: tungstenite::WebSocket<std::net::TcpStream>,
}

#[cfg(unix)]
impl Running {
    fn start(extra: &[&str], stdin: Stdio) -> Running {
        let mut child = tickcast()
            .args(["--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(stdin)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read the log on a thread so a missing line fails by timeout, not a hang.
        let stderr = child.stderr.take().unwrap();
        let (log_tx, log_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = log_tx.send(line);
            }
        });
        let mut startup = Vec::new();
        let ws_url = loop {
            let line = log_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("the server logs its WebSocket URL");
            if let Some(url) = line.split("WebSocket: ").nth(1) {
                break url.trim().to_string();
            }
            startup.push(line);
        };
        let addr = ws_url
            .trim_start_matches("ws://")
            .trim_end_matches("/echo")
            .parse()
            .unwrap();
        let (mut ws, _) =
            tungstenite::client::client(ws_url.as_str(), crate::util::tcp(addr)).unwrap();
        assert!(ws.read().unwrap().to_string().contains("welcome"));
        Running {
            child,
            log_rx,
            startup,
            ws,
        }
    }

    /// The next text message whose JSON `type` is `kind`.
    fn next_of_type(&mut self, kind: &str) -> serde_json::Value {
        loop {
            if let tungstenite::Message::Text(text) = self.ws.read().unwrap() {
                let msg: serde_json::Value = serde_json::from_str(&text).unwrap();
                if msg["type"] == kind {
                    return msg;
                }
            }
        }
    }

    /// Waits for a log line containing `needle`.
    fn wait_for_log(&self, needle: &str) -> String {
        loop {
            let line = self
                .log_rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn terminate(mut self) -> std::process::ExitStatus {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let code = loop {
            match self.ws.read() {
                Ok(tungstenite::Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                // A signal meant for another test's child may interrupt the read
                // (it did once in CI): read again.
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                    continue
                }
                Err(e) => panic!("reading until the close frame: {e}"),
            }
        };
        assert_eq!(code, Some(1001));
        // Finish the close handshake so the server need not wait for us.
        while self.ws.read().is_ok() {}
        let (status_tx, status_rx) = mpsc::channel();
        let mut child = self.child;
        std::thread::spawn(move || status_tx.send(child.wait()));
        status_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the server exits after SIGTERM")
            .unwrap()
    }
}

/// SIGTERM closes connected clients with 1001 and exits 0.
#[cfg(unix)]
#[test]
fn sigterm_shuts_down_gracefully() {
    let running = Running::start(&[], Stdio::null());
    let status = running.terminate();
    assert!(status.success(), "{status}");
}

/// The startup log says how many clients the server takes and where the number
/// came from: the machine's limits by default, the flag when it is given.
#[cfg(target_os = "linux")]
#[test]
fn startup_log_says_the_max_clients_and_why() {
    let running = Running::start(&[], Stdio::null());
    let line = running
        .startup
        .iter()
        .find(|l| l.contains("max clients: "))
        .unwrap_or_else(|| panic!("no max clients line in {:?}", running.startup))
        .clone();
    assert!(
        line.contains("open files (ulimit -n)") || line.contains("threads: "),
        "{line}"
    );
    assert!(running.terminate().success());

    let running = Running::start(&["--max-clients", "3"], Stdio::null());
    assert!(
        running
            .startup
            .iter()
            .any(|l| l.contains("max clients: 3 (--max-clients)")),
        "{:?}",
        running.startup
    );
    assert!(running.terminate().success());
}

/// `--stdin` broadcasts every line of a pipe as `{"type":"line"}`, JSON-escaped,
/// with invalid UTF-8 replaced; end of input leaves the server running.
#[cfg(unix)]
#[test]
fn stdin_lines_are_broadcast() {
    use std::io::Write;
    let mut running = Running::start(&["--stdin", "--interval", "100ms"], Stdio::piped());
    let mut stdin = running.child.stdin.take().unwrap();
    stdin
        .write_all(b"plain line\nquote \" and \\ backslash\r\nbad \xff byte\n")
        .unwrap();
    drop(stdin); // end of input
    let texts: Vec<String> = (0..3)
        .map(|_| {
            running.next_of_type("line")["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(texts[0], "plain line");
    assert_eq!(texts[1], "quote \" and \\ backslash");
    assert_eq!(texts[2], "bad \u{fffd} byte");
    let log = running.wait_for_log("end of standard input");
    assert!(log.contains("3 lines (1 had invalid UTF-8"), "{log}");
    // Still serving: ticks keep coming.
    running.next_of_type("tick");
    assert!(running.terminate().success());
}

/// Output into a pipe whose reader has gone (`tickcast --help | head -1`) ends
/// quietly with status 0, as any Unix tool's does, instead of a panic.
#[cfg(unix)]
#[test]
fn help_into_a_closed_pipe_exits_quietly() {
    for flag in ["--help", "--version"] {
        let (reader, writer) = std::io::pipe().unwrap();
        // The reader is gone before tickcast writes anything: every write fails.
        drop(reader);
        let out = tickcast()
            .arg(flag)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{flag}: {err}");
        assert!(err.is_empty(), "{flag}: {err}");
    }
}

/// Ports already taken: the error names the flag to change, and both ports are
/// reported at once, not one per attempt.
#[test]
fn taken_ports_name_their_flags_both_at_once() {
    let ws = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (ws_addr, http_addr) = (ws.local_addr().unwrap(), http.local_addr().unwrap());
    let out = tickcast()
        .args(["--ws-addr", &ws_addr.to_string()])
        .args(["--http-addr", &http_addr.to_string()])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for (flag, addr) in [("--ws-addr", ws_addr), ("--http-addr", http_addr)] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("{addr} ({flag})")) && l.contains("another port")),
            "no line names {flag} for {addr}:\n{err}"
        );
    }

    // Only the HTTP port taken: named as such.
    drop(ws);
    let out = tickcast()
        .args(["--ws-addr", "127.0.0.1:0"])
        .args(["--http-addr", &http_addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("(--http-addr)"), "{err}");
    drop(http);
}

/// The units people type are taken (`1h`, `2min`, `1MB`, `64kB`), and a unit that
/// is not says which spellings work.
#[test]
fn common_unit_spellings_are_accepted() {
    // `--help` last: every flag before it is parsed first, and refused if bad.
    let out = tickcast()
        .args(["--heartbeat", "1h", "--interval", "2min"])
        .args(["--max-message-size", "1MB", "--max-header-size", "64kB"])
        .arg("--help")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");

    let out = tickcast()
        .args(["--max-message-size", "1mb"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("MiB") && err.contains("MB"), "{err}");
    let out = tickcast().args(["--heartbeat", "1d"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("h)") || err.contains(" h,"), "{err}");
}
