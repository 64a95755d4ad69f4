//! tickcast: a synchronous, thread-per-connection WebSocket broadcast server.
//!
//! It re-creates a classic 2010 tutorial — a server that pushes the current date to
//! every connected browser once a second — with blocking `std::net` sockets, one
//! thread per client, and channels in between. No async runtime.
//!
//! # Quick start
//!
//! ```no_run
//! use tickcast::{Config, Server};
//!
//! fn main() -> Result<(), tickcast::Error> {
//!     // Port 0 asks the OS for free ports; the server reports what it bound.
//!     let config = Config {
//!         ws_addr: "127.0.0.1:0".parse().unwrap(),
//!         http_addr: Some("127.0.0.1:0".parse().unwrap()),
//!         ..Config::default()
//!     };
//!     let server = Server::start(config)?;
//!     println!("open {}", server.page_url().unwrap());
//!
//!     // Broadcast your own events next to the ticks.
//!     let publisher = server.publisher();
//!     publisher.publish_text(r#"{"type":"hello"}"#)?;
//!
//!     // Close every client with 1001 "going away" and join every thread.
//!     server.shutdown();
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//!
//! Each module is one concept, and its module doc says which thread runs it:
//!
//! - [`config`]: the [`Config`] struct every knob lives in, and its defaults.
//! - [`cli`]: turns command-line words into a [`Config`] (used by the binary).
//! - `server`: [`Server::start`] wires the threads together; [`Server::shutdown`] stops them.
//! - `listener`: the accept loops (threads `ws-listener`, `http-listener`) and the
//!   limits checked as each connection arrives.
//! - `registry`: the live connection threads, by kind; how shutdown wakes and joins them.
//! - `limits`: how many clients this machine can hold (the default `--max-clients`).
//! - `handshake`: the RFC 6455 opening handshake, read and answered by hand.
//! - `connection`: one client's thread (`ws-<n>`): handshake, then read frames and echo them.
//! - `outbox`: the write side of one client socket, shared by its thread and the hub.
//! - `hub`: the thread (`hub`) that owns the set of clients and fans every broadcast out.
//! - `ticker`: the thread (`ticker`) that publishes a tick every interval.
//! - `http`: one thread per HTTP connection (`http-<n>`), under deadlines: the page,
//!   `/config.json`, `/healthz`, `/metrics`, and `/events`.
//! - `metrics`: the counters every thread bumps, rendered for Prometheus.
//! - `sse`: Server-Sent Events (`GET /events`), on the HTTP connection's thread.
//! - [`publish_lines`]: broadcasts the lines of a pipe (`tickcast --stdin`).
//! - [`flash_policy`]: the legacy Flash socket policy server (`flash-*` threads).
//! - [`protocol`]: the JSON messages of the wire protocol, and frame encoding.
//!
//! # Threads and channels
//!
//! ```text
//!  ws-listener ──spawns──▶ ws-1, ws-2, …   (one per client: handshake, read, echo)
//!                             │ Join / Leave (events_tx)   ▲ frames, via each
//!                             ▼                            │ client's outbox
//!  ticker    ──frame──▶  frames_tx ═══▶ hub ───────────────┘
//!  Publisher ──frame──▶  (bounded)           one encoded frame, written to N sockets
//!
//!  http-listener ──spawns──▶ http-1, …   (one per HTTP connection; /events joins the hub)
//! ```
//!
//! Reads never leave a client's own thread. Writes to a client come from two
//! places — its own thread (echoes, pongs, close replies) and the hub (broadcasts) —
//! and both go through that client's outbox, which keeps every frame whole.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
mod connection;
mod error;
pub mod flash_policy;
mod handshake;
mod http;
mod hub;
mod limits;
mod lines;
mod listener;
mod metrics;
mod outbox;
pub mod protocol;
mod registry;
mod server;
mod sse;
mod ticker;

pub use config::Config;
pub use error::Error;
pub use lines::{publish_lines, LinesPublished};
pub use server::{Publisher, Server};

/// Entry points into the parsers tickcast wrote itself, for the fuzz targets in
/// `scripts/fuzz` and property tests. Not part of the stable API.
#[doc(hidden)]
pub mod fuzzing {
    use std::ffi::OsString;
    use std::io::{self, Read};
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// Reads a handshake request from `bytes` (as if they came off a socket) and
    /// judges it: `Ok(())` to upgrade, `Err(status)` for an HTTP refusal, and
    /// `Err(0)` if the bytes end before the request head does.
    pub fn handshake(bytes: &[u8], allowed_origins: &[String]) -> Result<(), u16> {
        judge(bytes, allowed_origins)
    }

    /// [`handshake`], with the bytes arriving at most `max_read` at a time, as
    /// from a client that trickles its request (`max_read` 0 counts as 1).
    pub fn handshake_trickled(
        bytes: &[u8],
        allowed_origins: &[String],
        max_read: usize,
    ) -> Result<(), u16> {
        let trickle = Trickle {
            bytes,
            max_read: max_read.max(1),
        };
        judge(trickle, allowed_origins)
    }

    /// A reader that hands out at most `max_read` bytes per `read`.
    struct Trickle<'a> {
        bytes: &'a [u8],
        max_read: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.max_read.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    fn judge(socket: impl Read, allowed_origins: &[String]) -> Result<(), u16> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let head = match crate::handshake::read_request(socket, 8 << 10, deadline) {
            Ok(Some(crate::handshake::Incoming::Http(request))) => request.head,
            // Only answered when a policy server is configured; refused otherwise.
            Ok(Some(crate::handshake::Incoming::FlashPolicyRequest)) => return Err(400),
            Ok(None) => return Err(0),
            Err(refusal) => return Err(refusal.status),
        };
        let ctx = crate::handshake::Context {
            page_url: Some("http://127.0.0.1:8080/"),
            allowed_origins,
        };
        match crate::handshake::check(&head, &ctx) {
            crate::handshake::Verdict::Accept { .. } => Ok(()),
            crate::handshake::Verdict::Refuse(refusal) => Err(refusal.status),
        }
    }

    /// Maps a URL path onto a relative file path for `--public`, or refuses it.
    pub fn static_path(url_path: &str) -> Option<PathBuf> {
        crate::http::safe_relative_path(url_path)
    }

    /// Whether a browser `Origin` passes an `--allowed-origin` list.
    pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
        crate::handshake::origin_allowed(origin, allowed)
    }

    /// [`crate::cli::parse_args`] without the system resolver: an `ADDR` must be
    /// `IP:PORT`, and a host name is refused as if it did not resolve.
    ///
    /// # Errors
    ///
    /// As [`crate::cli::parse_args`].
    pub fn parse_args(args: Vec<OsString>) -> Result<crate::cli::Command, crate::cli::UsageError> {
        crate::cli::parse_args_resolving(args, |_| None)
    }

    /// Splits `input` into lines exactly as [`crate::publish_lines`] does, and
    /// returns them with its summary.
    pub fn lines(input: &[u8], max_line: usize) -> (Vec<String>, crate::LinesPublished) {
        let mut lines = Vec::new();
        let summary = crate::lines::read_lines(input, max_line, |text| {
            lines.push(text.to_string());
            Ok(true)
        })
        .expect("reading from a slice cannot fail");
        (lines, summary)
    }
}
