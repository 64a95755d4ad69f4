//! What became of a write to a client: the answer of every sink the hub writes to
//! (a WebSocket client's outbox, an SSE client's queue). A module of its own so
//! that the sinks and the hub can share it without importing each other.

/// What became of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Written, or queued to go out with the next write.
    Accepted,
    /// This write pushed the backlog past `--max-backlog`: the client has just been
    /// cut off with [`LeaveReason::TooSlow`](crate::wire::message::LeaveReason).
    CutOff,
    /// The connection failed (the peer reset it, say); the sink is now closed with
    /// [`LeaveReason::Dropped`](crate::wire::message::LeaveReason).
    Failed,
    /// The sink was already closed; the bytes were discarded.
    Closed,
}
