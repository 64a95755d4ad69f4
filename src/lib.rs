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
//! One concept per file, and each module doc says which thread runs it, what it
//! blocks in, and how it ends. The three parts with several files each get a
//! folder, so that `ls src` shows the architecture: the WebSocket side (`ws/`),
//! the hub (`hub/`) and the HTTP port (`http/`); the byte formats sit together in
//! `wire/`. The rest is flat. Read in this order (the guided tour,
//! `docs/TOUR.md`, walks it with a student):
//!
//! 1. `server`: [`Server::start`] wires the threads together; [`Server::shutdown`]
//!    stops them, in the order `shutdown` explains.
//! 2. `listener`: the accept loops (`ws-listener`, `http-listener`) and the limits
//!    checked as each connection arrives; `registry`: the live connection threads;
//!    `shared`: what every connection thread gets.
//! 3. `ws::connection`: one WebSocket client's thread (`ws-<n>`), with
//!    `ws::handshake` (the RFC 6455 handshake by hand) and `ws::outbox` (the write
//!    side of its socket, shared with the hub).
//! 4. `hub`: the thread that owns the clients and fans every broadcast out; its
//!    `sink` (how it reaches a client), `heartbeat` and `fan_out` (performance:
//!    skip on first reading).
//! 5. `ticker`: the thread that publishes a tick every interval.
//! 6. `http`: one thread per HTTP connection (`http-<n>`), under deadlines; its
//!    `page` (what each path answers) and `sse` (`GET /events`).
//! 7. `wire`: the bytes: JSON `message`s, WebSocket `frame`s, `sse` events, `http`
//!    request heads.
//! 8. The rest: [`config`] and [`cli`] (settings), `limits` (what the machine
//!    holds), `metrics`, `shutdown`, `delivery`, [`publish_lines`] (`--stdin`),
//!    `flash_policy` (the legacy Flash policy server), [`Error`].
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
//!  http-listener ──spawns──▶ http-1, …   (one per HTTP connection: the page;
//!                                          GET /events joins the hub as an SSE client)
//! ```
//!
//! Reads never leave a client's own thread. Writes to a client come from two
//! places — its own thread (echoes, pongs, close replies) and the hub (broadcasts) —
//! and both go through that client's outbox, which keeps every frame whole.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cli;
mod client_event;
#[cfg(feature = "redis")]
mod cluster;
pub mod config;
mod delivery;
mod error;
mod flash_policy;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod hub;
mod limits;
mod lines;
mod listener;
mod metrics;
mod publisher;
mod registry;
mod server;
mod shared;
mod shutdown;
mod ticker;
mod wire;
mod ws;

pub use client_event::{ClientEvent, ClientEvents};
pub use config::Config;
pub use error::Error;
pub use lines::{publish_lines, LinesPublished};
pub use publisher::Publisher;
pub use server::Server;
pub use wire::message::{ClientId, LeaveReason};

/// The README's Rust examples, compiled by `cargo test --doc` so that the code a
/// newcomer pastes builds as shown.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
