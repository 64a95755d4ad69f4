//! Presence notices: who joined and who left, gathered for a short window
//! ([`Config::presence_window`](crate::Config), 50 ms by default) after the first
//! change, then announced as one `join` notice and one `leave` notice per reason.
//! So when 15,000 clients vanish at once the hub sends a few notices per window,
//! not 15,000 × 15,000 frames.
//!
//! Runs on the hub thread: the hub records each join and leave here, sleeps no
//! later than [`Presence::due`], then sends what [`Presence::take_notices`] gives.

use std::time::{Duration, Instant};

use crate::wire::message::{ClientId, LeaveReason};

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

/// The notices for one window.
pub(super) struct Notices {
    /// Who joined, oldest first.
    pub(super) joined: Vec<ClientId>,
    /// Who left, by reason (at most one entry per reason, in `LeaveReason::ALL`
    /// order).
    pub(super) left: Vec<(LeaveReason, Vec<ClientId>)>,
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

    /// Takes what was gathered, by kind.
    pub(super) fn take_notices(&mut self) -> Notices {
        self.due = None;
        let joined = std::mem::take(&mut self.joined);
        let left = std::mem::take(&mut self.left);
        let left = LeaveReason::ALL
            .iter()
            .filter_map(|&reason| {
                let ids: Vec<ClientId> = left
                    .iter()
                    .filter(|(_, r)| *r == reason)
                    .map(|(id, _)| *id)
                    .collect();
                (!ids.is_empty()).then_some((reason, ids))
            })
            .collect();
        Notices { joined, left }
    }
}
