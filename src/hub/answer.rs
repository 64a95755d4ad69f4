//! The hub's answer to a join: the new client's id, handed once from the hub
//! thread to the client's thread, which waits for it. No thread of its own.
//!
//! Performance: a one-shot of its own rather than a `bounded(1)` channel. The
//! client's thread frees whatever the answer used, and glibc keeps memory a
//! thread frees in that thread's cache for reuse by the same thread: a client
//! thread allocates nothing more once joined, so the channel's 640-byte buffer
//! stayed in memory for the connection's life, in every client. This one is a
//! 64-byte allocation.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use crate::wire::message::ClientId;

/// A new, unanswered join: the hub's end and the client's end.
pub(crate) fn channel() -> (IdSender, IdReceiver) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Waiting),
        changed: Condvar::new(),
    });
    (IdSender(slot.clone()), IdReceiver(slot))
}

/// The hub's end: answers once, or, dropped unanswered, tells the client it
/// will get no id.
pub(crate) struct IdSender(Arc<Slot>);

/// The client's end.
pub(crate) struct IdReceiver(Arc<Slot>);

/// Why a client got no id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// The hub dropped the join (shutdown, or the client was gone).
    Dropped,
    /// No answer in time (tests only wait this way).
    TimedOut,
}

impl fmt::Display for Unanswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unanswered::Dropped => "the hub dropped the join",
            Unanswered::TimedOut => "no answer in time",
        })
    }
}

struct Slot {
    state: Mutex<State>,
    changed: Condvar,
}

enum State {
    Waiting,
    Answered(ClientId),
    SenderGone,
    ReceiverGone,
}

impl Slot {
    /// The state; it stays consistent even if a holder panicked.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl IdSender {
    /// Answers the join with `id`; gives it back if the client's thread has
    /// already stopped waiting.
    pub(crate) fn send(self, id: ClientId) -> Result<(), ClientId> {
        let mut state = self.0.lock();
        if matches!(*state, State::ReceiverGone) {
            return Err(id);
        }
        *state = State::Answered(id);
        self.0.changed.notify_one();
        Ok(())
    }
}

impl Drop for IdSender {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        if matches!(*state, State::Waiting) {
            *state = State::SenderGone;
            self.0.changed.notify_one();
        }
    }
}

impl IdReceiver {
    /// Waits for the id; `None` if the hub dropped the join.
    pub(crate) fn recv(self) -> Option<ClientId> {
        self.wait(None).ok()
    }

    /// Waits at most `timeout` for the id.
    #[cfg(test)]
    pub(crate) fn recv_timeout(self, timeout: Duration) -> Result<ClientId, Unanswered> {
        self.wait(Some(Instant::now() + timeout))
    }

    fn wait(&self, deadline: Option<Instant>) -> Result<ClientId, Unanswered> {
        let mut state = self.0.lock();
        loop {
            match *state {
                State::Answered(id) => return Ok(id),
                State::SenderGone | State::ReceiverGone => return Err(Unanswered::Dropped),
                State::Waiting => {}
            }
            state = match deadline {
                None => self
                    .0
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Unanswered::TimedOut);
                    }
                    self.0
                        .changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

impl Drop for IdReceiver {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        if matches!(*state, State::Waiting) {
            *state = State::ReceiverGone;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reaches_the_waiting_thread() {
        let (tx, rx) = channel();
        let waiter = std::thread::spawn(move || rx.recv());
        tx.send(7).unwrap();
        assert_eq!(waiter.join().unwrap(), Some(7));
    }

    #[test]
    fn a_dropped_join_wakes_the_client_with_no_id() {
        let (tx, rx) = channel();
        let waiter = std::thread::spawn(move || rx.recv());
        drop(tx);
        assert_eq!(waiter.join().unwrap(), None);
        let (_tx, rx) = channel();
        let waited = rx.recv_timeout(Duration::from_millis(10));
        assert_eq!(waited, Err(Unanswered::TimedOut));
    }

    #[test]
    fn an_answer_to_a_thread_that_stopped_waiting_comes_back() {
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send(9), Err(9));
    }
}
