//! The WebSocket side: one thread per client, from its handshake to its end.
//!
//! - [`handshake`]: the RFC 6455 opening handshake, checked by hand.
//! - [`connection`]: one client's thread (`ws-<n>`): handshake, join the hub, read
//!   and echo, leave.
//! - [`outbox`]: the write side of one client's socket, shared by its thread and
//!   the hub.

pub(crate) mod connection;
pub(crate) mod handshake;
pub(crate) mod outbox;
