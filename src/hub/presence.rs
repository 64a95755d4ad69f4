//! Presence notices: who joined and who left, gathered for a short window
//! ([`Config::presence_window`](crate::Config), 50 ms by default) after the first
//! change, then announced as one `join` notice and one `leave` notice per reason.
//! So when 15,000 clients vanish at once the hub sends a few notices per window,
//! not 15,000 × 15,000 frames.
//!
//! Runs on the hub thread: the hub records each join and leave here, sleeps no
//! later than [`Presence::due`], then sends what [`Presence::take_notices`] gives.

use std::time::{Duration, Instant};

use crate::wire::message::{self, ClientId, LeaveReason};

/// Joins and leaves seen since the last notices.
pub(super) struct Presence {
    /// How long to gather after the first change (`--presence-window`).
    window: Duration,
    /// Who joined, in order.
    joined: Vec<ClientId>,
    /// Who left, and why.
    left: Vec<(ClientId, LeaveReason)>,
    /// When to send the notices; `None` while nothing is pending.
    due: Option<Instant>,
}

/// The notices for one window, ready to send.
pub(super) struct Notices {
    /// The `join` notice and the newest joiner: everyone who joined before it hears
    /// the notice; it learned the count from its welcome.
    pub(super) join: Option<(String, ClientId)>,
    /// One `leave` notice per reason, for everyone still connected.
    pub(super) leaves: Vec<String>,
}

impl Presence {
    pub(super) fn new(window: Duration) -> Presence {
        Presence {
            window,
            joined: Vec::new(),
            left: Vec::new(),
            due: None,
        }
    }

    /// When the gathered notices are due; `None` while nothing is pending.
    pub(super) fn due(&self) -> Option<Instant> {
        self.due
    }

    pub(super) fn joined(&mut self, id: ClientId) {
        self.joined.push(id);
        self.schedule();
    }

    pub(super) fn left(&mut self, id: ClientId, reason: LeaveReason) {
        self.left.push((id, reason));
        self.schedule();
    }

    fn schedule(&mut self) {
        if self.due.is_none() {
            self.due = Some(Instant::now() + self.window);
        }
    }

    /// Takes what was gathered as notices, with `clients` as the count after the
    /// changes. A client that joined earlier in the same window finds its own id in
    /// the join notice too.
    pub(super) fn take_notices(&mut self, clients: usize) -> Notices {
        self.due = None;
        let joined = std::mem::take(&mut self.joined);
        let left = std::mem::take(&mut self.left);
        let join = joined
            .last()
            .map(|&newest| (message::join(&joined, clients), newest));
        let leaves = LeaveReason::ALL
            .iter()
            .filter_map(|&reason| {
                let ids: Vec<ClientId> = left
                    .iter()
                    .filter(|(_, r)| *r == reason)
                    .map(|(id, _)| *id)
                    .collect();
                (!ids.is_empty()).then(|| message::leave(&ids, clients, reason))
            })
            .collect();
        Notices { join, leaves }
    }
}
