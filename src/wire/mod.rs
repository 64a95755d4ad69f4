//! The bytes on the wire, one format per file. No threads, and no I/O but
//! [`http::read_request`]'s reads from the reader it is given.
//!
//! - [`message`]: the JSON messages of the protocol (welcome, tick, join, leave, line).
//! - [`frame`]: WebSocket frames as the server writes them.
//! - [`sse`]: Server-Sent Events, as HTTP chunks.
//! - [`http`]: HTTP/1.1 request heads and error answers.
//! - [`json`]: whether a text is one JSON value (published bodies).
//! - [`subscription`]: topic names, and what a client subscribes to.

pub(crate) mod frame;
pub(crate) mod http;
pub(crate) mod json;
pub(crate) mod message;
pub(crate) mod sse;
pub(crate) mod subscription;
