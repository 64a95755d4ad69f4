//! Performance: skip on first reading. Writing one broadcast to many clients on
//! several cores at once.
//!
//! The hub could write every broadcast itself, one client after another, and that
//! is what it does below [`PARALLEL_FAN_OUT_MIN`] clients. Above it, each `send` on
//! loopback also runs the receiving side's TCP work in the sender's thread, so one
//! thread caps a broadcast at one core's worth of sends. [`fan_out`] shares the
//! clients between the calling (hub) thread and short-lived scoped helper threads
//! (`hub-fan-out`), one per extra core, each taking the next [`FAN_OUT_SLICE`]
//! clients until none are left.
//!
//! Slices rather than fixed halves, so that a thread which loses its core for a
//! while (to another process) does not leave the others waiting for its half. A
//! helper that panics has its current slice written again by the hub thread, so
//! nobody misses the message (a client may get it twice, never not at all).
//!
//! What to write, and to what, is the caller's: [`fan_out`] only hands out slices
//! and gathers what each came to ([`FanOut`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use super::timeline::{self, Part, Stopwatch};
use crate::wire::message::{ClientId, LeaveReason};

/// Below this many clients a broadcast is written by the hub thread alone: a
/// thread start costs more than the sends it would share.
pub(super) const PARALLEL_FAN_OUT_MIN: usize = 1024;

/// Stack of a fan-out helper thread: it only loops over sends.
const FAN_OUT_STACK: usize = 64 << 10;

/// Clients a fan-out thread takes at a time: a few hundred microseconds of sends.
/// Small enough that a thread which loses its core leaves little for the others to
/// wait on; large enough that taking a slice costs nothing next to its sends.
const FAN_OUT_SLICE: usize = 64;

/// What writing one message to a set of clients came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct FanOut {
    /// Messages written (one per client per message).
    pub(super) frames: u64,
    /// Bytes of those messages.
    pub(super) bytes: u64,
    /// Clients to remove, and why.
    pub(super) gone: Vec<(ClientId, LeaveReason)>,
}

impl FanOut {
    fn merge(&mut self, other: FanOut) {
        self.frames += other.frames;
        self.bytes += other.bytes;
        self.gone.extend(other.gone);
    }
}

/// One broadcast's targets, handed out a slice at a time to whichever fan-out
/// thread asks next.
struct Slices<'a, T> {
    /// Every target of the broadcast, in order.
    targets: &'a [T],
    /// Where the next slice starts.
    next: AtomicUsize,
}

impl<T> Slices<'_, T> {
    /// The slice that starts at `start`, if there is one.
    fn get(&self, start: usize) -> Option<&[T]> {
        let end = start.saturating_add(FAN_OUT_SLICE).min(self.targets.len());
        self.targets.get(start..end).filter(|part| !part.is_empty())
    }

    /// Takes slices and runs `deliver` on them until none are left, noting in
    /// `current` where the slice being written starts. With `timed` (when the
    /// fan-out began), also says how this thread's part went.
    fn deliver(
        &self,
        deliver: &impl Fn(&[T]) -> FanOut,
        current: &AtomicUsize,
        timed: Option<Instant>,
    ) -> (FanOut, Option<Part>) {
        let stopwatch = timed.map(Stopwatch::start);
        let mut outcome = FanOut::default();
        let mut slices = 0;
        loop {
            let start = self.next.fetch_add(FAN_OUT_SLICE, Ordering::Relaxed);
            let Some(part) = self.get(start) else {
                break;
            };
            current.store(start, Ordering::Relaxed);
            outcome.merge(deliver(part));
            slices += 1;
        }
        current.store(usize::MAX, Ordering::Relaxed);
        (outcome, stopwatch.map(|watch| watch.stop(slices)))
    }
}

/// Runs `deliver` over every one of `targets`, slice by slice, on `threads` threads
/// at once when there are at least [`PARALLEL_FAN_OUT_MIN`] targets, and merges
/// what the slices came to. Returns when every slice is done.
pub(super) fn fan_out<T: Sync>(
    targets: &[T],
    threads: usize,
    deliver: impl Fn(&[T]) -> FanOut + Sync,
) -> FanOut {
    let helpers = if targets.len() >= PARALLEL_FAN_OUT_MIN {
        threads.saturating_sub(1)
    } else {
        0
    };
    let slices = Slices {
        targets,
        next: AtomicUsize::new(0),
    };
    // Only with the timeline's trace log on (see `timeline`).
    let timed = timeline::enabled().then(|| (SystemTime::now(), Instant::now()));
    let began = timed.map(|(_, began)| began);
    // The slice each helper is writing, so that the hub can finish it if the
    // helper panics. `usize::MAX`: none.
    let current: Vec<AtomicUsize> = (0..helpers).map(|_| AtomicUsize::new(usize::MAX)).collect();
    std::thread::scope(|scope| {
        let running: Vec<_> = current
            .iter()
            .filter_map(|slot| {
                std::thread::Builder::new()
                    .name("hub-fan-out".into())
                    .stack_size(FAN_OUT_STACK)
                    .spawn_scoped(scope, || slices.deliver(&deliver, slot, began))
                    // Nothing is lost without a helper: the hub takes its slices.
                    .inspect_err(|e| log::debug!("no fan-out helper this time: {e}"))
                    .ok()
                    .map(|handle| (slot, handle))
            })
            .collect();
        let (mut outcome, ours) = slices.deliver(&deliver, &AtomicUsize::new(usize::MAX), began);
        let mut parts: Vec<Part> = ours.into_iter().collect();
        for (slot, handle) in running {
            match handle.join() {
                Ok((theirs, part)) => {
                    outcome.merge(theirs);
                    parts.extend(part);
                }
                // A helper that panicked wrote what it wrote; write the slice it
                // was on here so nobody misses the message.
                Err(_) => {
                    if let Some(part) = slices.get(slot.load(Ordering::Relaxed)) {
                        outcome.merge(deliver(part));
                    }
                }
            }
        }
        if let Some((at, began)) = timed {
            timeline::log(at, began, targets.len(), &parts);
        }
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Counts, per target, how often `deliver` ran on it.
    fn tally(n: usize) -> Vec<AtomicUsize> {
        (0..n).map(|_| AtomicUsize::new(0)).collect()
    }

    fn delivered_once(counts: &[AtomicUsize]) -> bool {
        counts.iter().all(|c| c.load(Ordering::Relaxed) == 1)
    }

    /// Small broadcasts stay on the calling thread; every target is written once.
    #[test]
    fn below_the_threshold_the_caller_writes_alone() {
        let targets: Vec<usize> = (0..PARALLEL_FAN_OUT_MIN - 1).collect();
        let counts = tally(targets.len());
        let caller = std::thread::current().id();
        let outcome = fan_out(&targets, 4, |part| {
            assert_eq!(std::thread::current().id(), caller, "a helper was started");
            for &t in part {
                counts[t].fetch_add(1, Ordering::Relaxed);
            }
            FanOut {
                frames: part.len() as u64,
                ..FanOut::default()
            }
        });
        assert!(delivered_once(&counts));
        assert_eq!(outcome.frames, targets.len() as u64);
    }

    /// Large broadcasts are shared with helper threads, every target written once,
    /// and what each slice came to is merged.
    #[test]
    fn helpers_share_large_broadcasts() {
        let targets: Vec<usize> = (0..10 * PARALLEL_FAN_OUT_MIN).collect();
        let counts = tally(targets.len());
        let threads_seen = Mutex::new(std::collections::HashSet::new());
        let outcome = fan_out(&targets, 3, |part| {
            threads_seen
                .lock()
                .unwrap()
                .insert(std::thread::current().id());
            for &t in part {
                counts[t].fetch_add(1, Ordering::Relaxed);
            }
            FanOut {
                frames: part.len() as u64,
                bytes: 10 * part.len() as u64,
                gone: part
                    .iter()
                    .filter(|t| **t % 1000 == 0)
                    .map(|&t| (t as ClientId, LeaveReason::TooSlow))
                    .collect(),
            }
        });
        assert!(delivered_once(&counts));
        assert_eq!(outcome.frames, targets.len() as u64);
        assert_eq!(outcome.bytes, 10 * targets.len() as u64);
        assert_eq!(outcome.gone.len(), targets.len().div_ceil(1000));
        // Which threads wrote depends on scheduling: the caller may take every
        // slice before a helper starts. At least one thread wrote.
        assert!(!threads_seen.lock().unwrap().is_empty());
    }

    /// A helper that panics mid-broadcast loses nobody: the hub writes the slice
    /// the helper was on, and every other slice is written as usual.
    #[test]
    fn a_panicking_helper_loses_no_target() {
        let targets: Vec<usize> = (0..4 * PARALLEL_FAN_OUT_MIN).collect();
        let counts = tally(targets.len());
        let panicked = AtomicUsize::new(0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let outcome = fan_out(&targets, 2, |part| {
            let on_helper = std::thread::current().name() == Some("hub-fan-out");
            // The first slice a helper takes makes it panic before writing anything.
            if on_helper && panicked.fetch_add(1, Ordering::Relaxed) == 0 {
                panic!("a bug in a fan-out helper (expected by this test)");
            }
            // The calling thread waits for that, so it cannot take every slice
            // before the helper has started.
            while !on_helper
                && panicked.load(Ordering::Relaxed) == 0
                && std::time::Instant::now() < deadline
            {
                std::thread::yield_now();
            }
            for &t in part {
                counts[t].fetch_add(1, Ordering::Relaxed);
            }
            FanOut {
                frames: part.len() as u64,
                ..FanOut::default()
            }
        });
        assert!(
            panicked.load(Ordering::Relaxed) >= 1,
            "the helper never ran, so nothing was tested"
        );
        let missed: Vec<usize> = (0..targets.len())
            .filter(|&t| counts[t].load(Ordering::Relaxed) == 0)
            .collect();
        assert!(missed.is_empty(), "targets never written: {missed:?}");
        assert!(delivered_once(&counts));
        assert_eq!(outcome.frames, targets.len() as u64);
    }
}
