//! How many clients this machine lets one process hold: the default for
//! `--max-clients`.
//!
//! Every WebSocket or SSE client costs one thread and one file descriptor (its
//! socket), and so does every HTTP connection. Two kinds of kernel limit cap them:
//!
//! - **open files** per process (`ulimit -n`, `RLIMIT_NOFILE`);
//! - **threads**, which Linux counts as tasks against several limits at once: the
//!   machine-wide `kernel.pid_max` and `kernel.threads-max` (shared with every
//!   other process, so what is already running counts too), the user's
//!   `ulimit -u` (`RLIMIT_NPROC`), and the cgroup's `pids.max` (a container's or a
//!   systemd unit's `TasksMax=`). Each thread also takes four memory mappings
//!   (its stack and the guard page below it, and the same again for the
//!   signal stack Rust's std gives every thread), counted against
//!   `vm.max_map_count` (65,530 by default: about 16,000 threads). Past it a
//!   thread cannot start, and std aborts the process if the signal stack
//!   cannot be mapped, so this limit must never be reached.
//!
//! [`Machine::read`] reads them from `/proc` and `/sys` once, at start, on the
//! caller's thread. Elsewhere than Linux they are unknown, and the default falls
//! back to [`FALLBACK_MAX_CLIENTS`]. [`Capacity::of`] turns them into a number of
//! clients and a sentence saying where it came from, for the startup log.

use std::fmt::Write as _;
use std::fs;

/// `--max-clients` when the machine's limits cannot be read.
pub const FALLBACK_MAX_CLIENTS: usize = 10_000;

/// File descriptors kept for the server itself: standard streams, listening
/// sockets, `--public` files being read, log files, libraries.
const FD_RESERVE: u64 = 64;

/// Threads kept for the server itself (hub, ticker, listeners, fan-out helpers,
/// `stdin`) and for whatever else starts on the machine meanwhile.
const THREAD_RESERVE: u64 = 64;

/// The limits read off the machine; `None` where a limit could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Machine {
    /// The soft open-file limit of this process.
    pub(crate) open_files: Option<u64>,
    /// How many more threads the kernel would let this process start, and the
    /// limit that says so (e.g. `kernel.pid_max 32,768 − 106 running`).
    pub(crate) threads: Option<(u64, String)>,
}

impl Machine {
    /// Reads this machine's limits (Linux; elsewhere every limit is unknown).
    pub(crate) fn read() -> Machine {
        let limits = fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let running = fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| tasks_running(&text));
        let read_number = |path: &str| {
            fs::read_to_string(path)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
        };
        let mut thread_limits: Vec<(u64, String)> = Vec::new();
        if let Some(running) = running {
            for (path, name) in [
                ("/proc/sys/kernel/pid_max", "kernel.pid_max"),
                ("/proc/sys/kernel/threads-max", "kernel.threads-max"),
            ] {
                if let Some(max) = read_number(path) {
                    thread_limits.push(left(max, running, name));
                }
            }
            if let Some(max) = soft_limit(&limits, "Max processes") {
                thread_limits.push(left(max, running, "ulimit -u"));
            }
        }
        let mappings = fs::read_to_string("/proc/self/maps")
            .ok()
            .map(|maps| maps.lines().count() as u64);
        if let (Some(max), Some(mappings)) = (read_number("/proc/sys/vm/max_map_count"), mappings) {
            thread_limits.push(per_thread_mappings(max, mappings));
        }
        if let Some(dir) = fs::read_to_string("/proc/self/cgroup")
            .ok()
            .and_then(|text| pids_cgroup_dir(&text))
        {
            let max = read_number(&format!("{dir}/pids.max"));
            let current = read_number(&format!("{dir}/pids.current"));
            if let (Some(max), Some(current)) = (max, current) {
                thread_limits.push(left(max, current, "the cgroup's pids.max"));
            }
        }
        Machine {
            open_files: soft_limit(&limits, "Max open files"),
            threads: thread_limits.into_iter().min_by_key(|(n, _)| *n),
        }
    }
}

/// `max − used`, labelled for the log.
fn left(max: u64, used: u64, name: &str) -> (u64, String) {
    (
        max.saturating_sub(used),
        format!("{name} {} − {} in use", thousands(max), thousands(used)),
    )
}

/// Memory mappings per thread: the stack and its guard page, and std's signal
/// stack and its guard page (`wc -l /proc/PID/maps` grows by 4 per client).
const MAPPINGS_PER_THREAD: u64 = 4;

/// Threads that `vm.max_map_count` leaves room for, labelled for the log.
fn per_thread_mappings(max: u64, used: u64) -> (u64, String) {
    (
        max.saturating_sub(used) / MAPPINGS_PER_THREAD,
        format!(
            "vm.max_map_count {} − {} mappings in use, {MAPPINGS_PER_THREAD} per thread",
            thousands(max),
            thousands(used)
        ),
    )
}

/// The soft limit on the `/proc/self/limits` line starting with `name`, or `None`
/// if it is missing or "unlimited".
fn soft_limit(limits: &str, name: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Tasks (threads) on the whole machine, from `/proc/loadavg`'s fourth field
/// (`running/total`).
fn tasks_running(loadavg: &str) -> Option<u64> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// The directory holding this process's `pids.max`, from `/proc/self/cgroup`:
/// cgroup v2 (`0::/path`) or v1 (`N:pids:/path`).
fn pids_cgroup_dir(cgroup: &str) -> Option<String> {
    for line in cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        if controllers == "pids" {
            return Some(format!("/sys/fs/cgroup/pids{}", path.trim_end_matches('/')));
        }
        if controllers.is_empty() {
            return Some(format!("/sys/fs/cgroup{}", path.trim_end_matches('/')));
        }
    }
    None
}

/// How many clients the server takes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capacity {
    /// The number of clients.
    pub(crate) max_clients: usize,
    /// Where the number came from, for the startup log.
    pub(crate) reason: String,
}

impl Capacity {
    /// The most clients that fit in `machine`'s limits, next to `other_connections`
    /// (HTTP connections and handshakes beyond the limit, which cost a thread and a
    /// file each too).
    pub(crate) fn of(machine: &Machine, other_connections: usize) -> Capacity {
        let others = other_connections as u64;
        let by_files = machine
            .open_files
            .map(|files| files.saturating_sub(FD_RESERVE + others));
        let by_threads = machine
            .threads
            .as_ref()
            .map(|(threads, _)| threads.saturating_sub(THREAD_RESERVE + others));
        let reserved = thousands(FD_RESERVE.max(THREAD_RESERVE) + others);
        let by_files_reason = |threads: Option<u64>| {
            let mut reason = format!(
                "open files (ulimit -n) {} − {reserved} for HTTP connections, handshakes and \
                 the server itself",
                thousands(machine.open_files.unwrap_or(0)),
            );
            if let (Some(threads), Some((_, why))) = (threads, &machine.threads) {
                let _ = write!(
                    reason,
                    "; threads would allow {} ({why})",
                    thousands(threads)
                );
            }
            reason
        };
        let (fit, reason) = match (by_files, by_threads) {
            (None, None) => {
                return Capacity {
                    max_clients: FALLBACK_MAX_CLIENTS,
                    reason: "the machine's limits could not be read".to_string(),
                }
            }
            (Some(files), None) => (files, by_files_reason(None)),
            (Some(files), Some(threads)) if files <= threads => {
                (files, by_files_reason(Some(threads)))
            }
            (files, Some(threads)) => {
                let why = machine.threads.as_ref().map_or("", |(_, why)| why);
                let mut reason = format!(
                    "threads: {why}, − {reserved} for HTTP connections, handshakes and the \
                     server itself"
                );
                if let Some(files) = files {
                    let _ = write!(reason, "; open files would allow {}", thousands(files));
                }
                (threads, reason)
            }
        };
        Capacity {
            max_clients: usize::try_from(fit).unwrap_or(usize::MAX).max(1),
            reason,
        }
    }
}

/// `18848` as `18,848`, for log lines.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units
Max processes             96365                96365                processes
Max open files            20000                524288               files
";

    #[test]
    fn reads_soft_limits() {
        assert_eq!(soft_limit(LIMITS, "Max open files"), Some(20_000));
        assert_eq!(soft_limit(LIMITS, "Max processes"), Some(96_365));
        let unlimited = "Max processes             unlimited            unlimited   processes";
        assert_eq!(soft_limit(unlimited, "Max processes"), None);
    }

    #[test]
    fn reads_the_machines_task_count() {
        assert_eq!(tasks_running("3.53 4.70 2.54 1/106 21777\n"), Some(106));
        assert_eq!(tasks_running("garbage"), None);
    }

    #[test]
    fn finds_the_pids_cgroup() {
        let v1 = "9:name=systemd:/\n8:pids:/user.slice/\n0::/\n";
        assert_eq!(
            pids_cgroup_dir(v1).as_deref(),
            Some("/sys/fs/cgroup/pids/user.slice")
        );
        let v2 = "0::/system.slice/tickcast.service\n";
        assert_eq!(
            pids_cgroup_dir(v2).as_deref(),
            Some("/sys/fs/cgroup/system.slice/tickcast.service")
        );
    }

    /// This development machine: 20,000 open files, pid_max 32,768. Files are the
    /// tighter limit, and the default leaves room for 15,000 clients and more.
    #[test]
    fn open_files_bound_this_machine() {
        let machine = Machine {
            open_files: Some(20_000),
            threads: Some((32_768 - 106, "kernel.pid_max".into())),
        };
        let capacity = Capacity::of(&machine, 512 + 64);
        assert_eq!(capacity.max_clients, 20_000 - 64 - 576);
        assert!(capacity.max_clients >= 15_000);
        assert!(
            capacity.reason.starts_with("open files (ulimit -n) 20,000"),
            "{}",
            capacity.reason
        );
    }

    /// A box with plenty of files but few threads left is bound by threads.
    #[test]
    fn threads_can_be_the_tighter_limit() {
        let machine = Machine {
            open_files: Some(1 << 20),
            threads: Some((5_000, "the cgroup's pids.max 5,100 − 100 in use".into())),
        };
        let capacity = Capacity::of(&machine, 100);
        assert_eq!(capacity.max_clients, 5_000 - 64 - 100);
        assert!(capacity.reason.contains("pids.max"), "{}", capacity.reason);
    }

    /// Nothing known: the old fixed default. Nothing left: still one client, so
    /// the server starts and says why it refuses the rest.
    #[test]
    fn unknown_and_exhausted_limits() {
        assert_eq!(
            Capacity::of(&Machine::default(), 512).max_clients,
            FALLBACK_MAX_CLIENTS
        );
        let full = Machine {
            open_files: Some(100),
            threads: None,
        };
        assert_eq!(Capacity::of(&full, 512).max_clients, 1);
    }

    /// A box raised to 65,536 open files but with the default vm.max_map_count:
    /// mappings, four per thread, are the limit (about 16,000 threads), which a
    /// server that counted only files and tasks would promise past.
    #[test]
    fn memory_mappings_can_be_the_tighter_limit() {
        let (threads, why) = per_thread_mappings(65_530, 530);
        assert_eq!(threads, 16_250);
        assert!(why.starts_with("vm.max_map_count 65,530"), "{why}");
        let machine = Machine {
            open_files: Some(65_536),
            threads: Some((threads, why)),
        };
        let capacity = Capacity::of(&machine, 576);
        assert_eq!(capacity.max_clients, 16_250 - 64 - 576);
        assert!(
            capacity.reason.contains("max_map_count"),
            "{}",
            capacity.reason
        );
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(18_848), "18,848");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
