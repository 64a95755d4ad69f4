//! The labels of the counter families: why a connection ended, what kind of event
//! was dropped, and the [`Counters`] type that keeps one counter per label. No
//! thread of its own; every counter is an atomic bumped with `Relaxed` ordering.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::message::LeaveReason;

/// Why a WebSocket connection that passed its handshake checks never became a
/// client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinFailure {
    /// The `101` and the welcome could not be written: the client had gone.
    ClientGone,
    /// The hub had stopped: the server is shutting down (the client gets `503`).
    ShuttingDown,
}

impl Label for JoinFailure {
    const ALL: &'static [JoinFailure] = &[JoinFailure::ClientGone, JoinFailure::ShuttingDown];

    fn as_str(self) -> &'static str {
        match self {
            JoinFailure::ClientGone => "client_gone",
            JoinFailure::ShuttingDown => "shutting_down",
        }
    }
}

/// What a client that resumed (`?since=`, `Last-Event-ID`) got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResumeOutcome {
    /// Every event it missed (perhaps none), then the live stream.
    Replayed,
    /// A `reset` notice: some of what it missed was no longer kept.
    Reset,
}

impl Label for ResumeOutcome {
    const ALL: &'static [ResumeOutcome] = &[ResumeOutcome::Replayed, ResumeOutcome::Reset];

    fn as_str(self) -> &'static str {
        match self {
            ResumeOutcome::Replayed => "replayed",
            ResumeOutcome::Reset => "reset",
        }
    }
}

/// Why the WebSocket listener closed a connection before any thread read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Far beyond `--max-clients` (past the few that are still answered `503`).
    OverCapacity,
    /// The OS refused a thread for it.
    NoThread,
}

impl Label for Rejection {
    const ALL: &'static [Rejection] = &[Rejection::OverCapacity, Rejection::NoThread];

    fn as_str(self) -> &'static str {
        match self {
            Rejection::OverCapacity => "over_capacity",
            Rejection::NoThread => "no_thread",
        }
    }
}

/// How an HTTP connection (not an SSE stream) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpClose {
    /// The client closed it, or one side asked to (`Connection: close`).
    Done,
    /// No request came within `--http-request-timeout` (a new connection) or
    /// `--http-idle-timeout` (a kept-alive one).
    Idle,
    /// A request head did not arrive in time (`408`).
    RequestTimeout,
    /// A bad request, answered with a 4xx and closed.
    BadRequest,
    /// Idle, closed to make room for a new connection.
    Evicted,
    /// No room and none idle: answered `503` at once.
    Full,
    /// A read or write failed (the client reset it, a write timed out).
    Failed,
    /// The OS refused a thread for it.
    NoThread,
    /// It became an SSE stream, counted with the clients from then on.
    EventStream,
}

impl Label for HttpClose {
    const ALL: &'static [HttpClose] = &[
        HttpClose::Done,
        HttpClose::Idle,
        HttpClose::RequestTimeout,
        HttpClose::BadRequest,
        HttpClose::Evicted,
        HttpClose::Full,
        HttpClose::Failed,
        HttpClose::NoThread,
        HttpClose::EventStream,
    ];

    fn as_str(self) -> &'static str {
        match self {
            HttpClose::Done => "done",
            HttpClose::Idle => "idle",
            HttpClose::RequestTimeout => "request_timeout",
            HttpClose::BadRequest => "bad_request",
            HttpClose::Evicted => "evicted",
            HttpClose::Full => "full",
            HttpClose::Failed => "failed",
            HttpClose::NoThread => "no_thread",
            HttpClose::EventStream => "event_stream",
        }
    }
}

impl Label for LeaveReason {
    const ALL: &'static [LeaveReason] = &LeaveReason::ALL;

    fn as_str(self) -> &'static str {
        LeaveReason::as_str(self)
    }
}

/// A value that picks one counter of a family, e.g. a leave reason: the family's
/// samples are labelled with [`Label::as_str`].
pub(crate) trait Label: Copy + PartialEq + 'static {
    /// Every value, in the order the samples are rendered.
    const ALL: &'static [Self];
    /// The label's value in the rendering, e.g. `too_slow`.
    fn as_str(self) -> &'static str;
}

/// One counter per value of a [`Label`].
pub(crate) struct Counters<L> {
    /// One counter per value of `L`, in the order of [`Label::ALL`].
    counts: Box<[AtomicU64]>,
    /// Ties the counters to `L` without storing one.
    label: PhantomData<L>,
}

impl<L: Label> Default for Counters<L> {
    fn default() -> Self {
        Counters {
            counts: L::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            label: PhantomData,
        }
    }
}

impl<L: Label> Counters<L> {
    /// Counts one `label`.
    pub(crate) fn add(&self, label: L) {
        // Every value is in ALL; `position` cannot miss.
        if let Some(i) = L::ALL.iter().position(|l| *l == label) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The sum over every label.
    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// One sample per label, as `{key="value"}` and the count.
    pub(super) fn samples(&self, key: &str) -> Vec<(String, u64)> {
        L::ALL
            .iter()
            .zip(self.counts.iter())
            .map(|(l, c)| {
                (
                    format!("{{{key}=\"{}\"}}", l.as_str()),
                    c.load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

/// Which kind of client event the program's queue had no room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientEventKind {
    Joined,
    Message,
    Left,
}

impl Label for ClientEventKind {
    const ALL: &'static [ClientEventKind] = &[
        ClientEventKind::Joined,
        ClientEventKind::Message,
        ClientEventKind::Left,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ClientEventKind::Joined => "joined",
            ClientEventKind::Message => "message",
            ClientEventKind::Left => "left",
        }
    }
}
