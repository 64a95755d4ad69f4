//! A flood of silent connections to the HTTP port, against the real server
//! started in this process.
//!
//! Anyone who can reach the page can open connections and say nothing. Each one
//! costs the server a thread and a file descriptor, so the HTTP port must bound
//! them (`--max-http-connections`), close the silent ones on time
//! (`--http-request-timeout`), and keep serving the page meanwhile (a newcomer
//! takes the place of the oldest idle connection).
//!
//! A test binary of its own, so that `/proc/self` counts this server's threads
//! only. `cargo test --test http_flood -- --nocapture` shows the figures.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tickcast::{Config, Server};

/// Silent connections in the flood: three times `--max-http-connections`.
const FLOOD: usize = 1_500;
/// The bound: every flood connection closed by the server within this.
const CLEARED_WITHIN: Duration = Duration::from_secs(30);
/// How long any single socket operation may take before the test fails.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// This process's thread count.
fn threads() -> usize {
    fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

/// `GET path` on a connection of its own; (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let status = response[9..12].parse().expect("a status");
    (status, response)
}

/// 1,500 silent connections: the page still loads during the flood, the server
/// never holds more than `--max-http-connections` HTTP threads, closes every
/// silent connection within 30 s, and its thread count comes back to where it was.
#[cfg(target_os = "linux")]
#[test]
fn a_silent_flood_neither_locks_the_page_out_nor_holds_threads() {
    let config = Config {
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: Some("127.0.0.1:0".parse().unwrap()),
        interval: None,
        // Every HTTP limit at its default.
        ..Config::default()
    };
    let max_http = config.max_http_connections;
    let server = Server::start(config).expect("server starts");
    let addr = server.http_addr().unwrap();
    let baseline = threads();

    let started = Instant::now();
    let mut flood: Vec<TcpStream> = (0..FLOOD)
        .map(|i| {
            TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("flood connection {i}: {e}"))
        })
        .collect();
    let connected = started.elapsed();

    // The flood fills the port (a scrape takes a silent connection's place)...
    let (_, metrics) = get(addr, "/metrics");
    assert!(
        metrics.contains(&format!("\ntickcast_http_connections {max_http}\n")),
        "the flood did not fill the HTTP port in time ({connected:?}):\n{metrics}"
    );
    // ...and still the page loads, and the HTTP threads stay bounded.
    let (status, page) = get(addr, "/");
    assert_eq!(status, 200, "the page during the flood:\n{page}");
    assert!(page.contains("<title>tickcast</title>"));
    // Evicted connections' threads may still be on their way out.
    let peak = threads();
    assert!(
        peak <= baseline + max_http + 64,
        "{peak} threads during the flood, from {baseline}: more than \
         --max-http-connections ({max_http}) HTTP threads"
    );

    // The server closes every silent connection: the oldest at once, to make
    // room, the rest at the request timeout.
    for (i, conn) in flood.iter_mut().enumerate() {
        let left = CLEARED_WITHIN.saturating_sub(started.elapsed());
        conn.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut byte = [0u8; 1];
        match conn.read(&mut byte) {
            Ok(0) => {}
            Ok(_) => panic!("flood connection {i} was sent something"),
            Err(e) => panic!(
                "flood connection {i} still open after {:?}: {e}",
                started.elapsed()
            ),
        }
    }
    let cleared = started.elapsed();
    drop(flood);

    // Every thread the flood cost has ended.
    let deadline = Instant::now() + IO_TIMEOUT;
    while threads() > baseline {
        assert!(
            Instant::now() < deadline,
            "{} threads {IO_TIMEOUT:?} after the flood cleared, from {baseline}",
            threads()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let (_, metrics) = get(addr, "/metrics");
    let sample = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
    };
    let evicted = sample("tickcast_http_connections_closed_total{reason=\"evicted\"}");
    let idle = sample("tickcast_http_connections_closed_total{reason=\"idle\"}");
    eprintln!(
        "flood: {FLOOD} connections in {connected:?}; threads {baseline} -> peak {peak} -> {}; \
         all closed by the server after {cleared:?} ({evicted} evicted, {idle} timed out)",
        threads()
    );
    assert_eq!(evicted + idle, FLOOD as u64, "{metrics}");
    server.shutdown();
}
