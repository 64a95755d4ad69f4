//! Performance: skip on first reading. Where the time of one fan-out went, for
//! the trace log: `RUST_LOG=info,tickcast::timeline=trace`.
//!
//! A broadcast reaches its last client when the slowest fan-out thread has
//! written its last slice. When that takes longer than usual, the question is
//! whether the threads were *working* longer (more to write, slower writes) or
//! *waiting* longer for a core (another process, or the server's own threads,
//! had it). The kernel counts, for every thread, the time it spent runnable but
//! waiting for a CPU (exactly: it is added up each time the thread gets a CPU)
//! and how many times it got one, in `/proc/thread-self/schedstat`. Each
//! fan-out thread reads it before and after its part, and the hub logs one
//! line per fan-out:
//!
//! ```text
//! fan-out at 1733512345.123456 to 10000 clients in 2 threads: 31.20 ms;
//!   hub 79 slices 31.00 ms (waiting 1.80 ms, 3 runs);
//!   helper +0.21 ms 78 slices 30.90 ms (waiting 2.00 ms, 4 runs)
//! ```
//!
//! A part that ran in one stretch ("1 runs") was never preempted: its time was
//! all work (or blocking on a lock, which the hub's fan-out never does for
//! long).
//!
//! `scripts/bench.sh` with `BENCH_TIMELINE=1` lines these up with each tick's
//! spread as the load generator measured it (`docs/PERFORMANCE.md`).
//!
//! Off (the default), this costs one check of the log level per fan-out.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The log target of the timeline lines.
const TARGET: &str = "tickcast::timeline";

/// Whether fan-outs are timed: the trace level is on for [`TARGET`].
pub(super) fn enabled() -> bool {
    log::log_enabled!(target: TARGET, log::Level::Trace)
}

/// What the scheduler says of the calling thread so far.
#[derive(Clone, Copy)]
struct SchedClock {
    /// Time runnable, waiting for a CPU.
    waiting_ns: u64,
    /// How many times it got a CPU.
    runs: u64,
}

impl SchedClock {
    /// The calling thread's clock, or `None` where the kernel does not keep it
    /// (no `/proc`, or a kernel built without scheduler statistics).
    fn now() -> Option<SchedClock> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        // Time on a CPU (only brought up to date at scheduler ticks, so not
        // used), time waiting for one, times run.
        let mut fields = text.split_whitespace().skip(1).map(str::parse::<u64>);
        Some(SchedClock {
            waiting_ns: fields.next()?.ok()?,
            runs: fields.next()?.ok()?,
        })
    }
}

/// Times one thread's part of one fan-out.
pub(super) struct Stopwatch {
    /// When the fan-out began (on the hub thread).
    fan_out_began: Instant,
    /// When this thread began its part.
    began: Instant,
    /// The scheduler's clock then.
    clock: Option<SchedClock>,
}

impl Stopwatch {
    /// Starts timing the calling thread's part of the fan-out that began at
    /// `fan_out_began`.
    pub(super) fn start(fan_out_began: Instant) -> Stopwatch {
        Stopwatch {
            fan_out_began,
            began: Instant::now(),
            clock: SchedClock::now(),
        }
    }

    /// What the part came to, after `slices` slices.
    pub(super) fn stop(self, slices: usize) -> Part {
        let ended = Instant::now();
        let delta = self.clock.zip(SchedClock::now()).map(|(a, b)| {
            (
                Duration::from_nanos(b.waiting_ns.saturating_sub(a.waiting_ns)),
                // The run it is in now counts: one run means never preempted.
                b.runs.saturating_sub(a.runs) + 1,
            )
        });
        Part {
            started: self.began - self.fan_out_began,
            wall: ended - self.began,
            slices,
            sched: delta,
        }
    }
}

/// One thread's part of one fan-out.
pub(super) struct Part {
    /// From the start of the fan-out to this thread's first slice: for a helper,
    /// what starting the thread cost.
    started: Duration,
    /// From its first slice taken to its last one written.
    wall: Duration,
    /// Slices it wrote.
    slices: usize,
    /// Time spent waiting for a CPU during `wall`, and in how many runs on one
    /// the part was done.
    sched: Option<(Duration, u64)>,
}

/// Logs one fan-out: it began at `began` (`at` on the wall clock), went to
/// `clients` clients, and the hub's part is first in `parts`.
pub(super) fn log(at: SystemTime, began: Instant, clients: usize, parts: &[Part]) {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut line = format!(
        "fan-out at {}.{:06} to {clients} clients in {} threads: {:.2} ms",
        since_epoch.as_secs(),
        since_epoch.subsec_micros(),
        parts.len(),
        ms(began.elapsed())
    );
    for (i, part) in parts.iter().enumerate() {
        let _ = write!(line, "; ");
        if i == 0 {
            let _ = write!(line, "hub");
        } else {
            let _ = write!(line, "helper +{:.2} ms", ms(part.started));
        }
        let _ = write!(line, " {} slices {:.2} ms", part.slices, ms(part.wall));
        if let Some((waiting, runs)) = part.sched {
            let _ = write!(line, " (waiting {:.2} ms, {runs} runs)", ms(waiting));
        }
    }
    log::trace!(target: TARGET, "{line}");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduler's clock is read where the kernel keeps it (it does on
    /// every Linux this runs on): a thread that sleeps mid-part gets a CPU
    /// again afterwards, which counts as a second run.
    #[test]
    fn a_part_that_gave_up_its_cpu_ran_twice() {
        let began = Instant::now();
        let watch = Stopwatch::start(began);
        std::thread::sleep(Duration::from_millis(5));
        let part = watch.stop(3);
        assert_eq!(part.slices, 3);
        assert!(part.wall >= Duration::from_millis(5));
        let (_, runs) = part.sched.expect("no /proc/thread-self/schedstat");
        assert!(runs >= 2, "{runs} runs");
    }
}
