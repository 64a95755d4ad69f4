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

/// SIGTERM closes connected clients with 1001 and exits 0.
#[cfg(unix)]
#[test]
fn sigterm_shuts_down_gracefully() {
    let mut child = tickcast()
        .args(["--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log on a thread so a missing line fails by timeout, not a hang.
    let stderr = child.stderr.take().unwrap();
    let (line_tx, line_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let ws_url = loop {
        let line = line_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the server logs its WebSocket URL");
        if let Some(url) = line.split("WebSocket: ").nth(1) {
            break url.trim().to_string();
        }
    };
    let addr = ws_url
        .trim_start_matches("ws://")
        .trim_end_matches("/echo")
        .parse()
        .unwrap();
    let (mut ws, _) = tungstenite::client::client(ws_url.as_str(), crate::util::tcp(addr)).unwrap();
    assert!(ws.read().unwrap().to_string().contains("welcome"));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let code = loop {
        match ws.read().unwrap() {
            tungstenite::Message::Close(frame) => break frame.map(|f| u16::from(f.code)),
            _ => continue,
        }
    };
    assert_eq!(code, Some(1001));
    // Finish the close handshake so the server need not wait for us.
    while ws.read().is_ok() {}
    let (status_tx, status_rx) = mpsc::channel();
    std::thread::spawn(move || status_tx.send(child.wait()));
    let status = status_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}
