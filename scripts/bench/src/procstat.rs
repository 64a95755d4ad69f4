//! Samples one process's resource use from `/proc`: the driver side of the
//! benchmark. loadgen calls [`sample`] between phases (before the clients come,
//! at rest, under load, after they leave) with the server's PID.
//!
//! - RSS and peak RSS (`VmRSS`, `VmHWM`) and the thread count come from
//!   `/proc/PID/status`.
//! - CPU time (user + system, all threads, dead ones included) comes from
//!   `/proc/PID/stat`, in clock ticks (`CLK_TCK`, usually 1/100 s). The kernel
//!   derives it from its nanosecond run time, so deltas over seconds are accurate
//!   to one tick at each end.
//! - [`threads_cpu_ns`] sums `/proc/PID/task/*/schedstat`: nanosecond run time of
//!   the live threads, for short windows such as "between two ticks".
//! - The open-fd count is the length of `/proc/PID/fd`.
//! - `KernelStack` from `/proc/meminfo` (machine-wide) shows what threads cost
//!   the kernel, which RSS does not count.

use std::fs;
use std::io;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// When the sample was taken, ns since the Unix epoch.
    pub at_ns: i64,
    /// User + system CPU time so far, seconds.
    pub cpu_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far, KiB.
    pub hwm_kib: u64,
    pub threads: u64,
    pub fds: u64,
    /// Machine-wide kernel stack memory (`KernelStack` in `/proc/meminfo`), KiB.
    /// Not per process, but across a run only the server's thread count changes
    /// it; every thread costs a kernel stack (16 KiB on x86-64) that RSS omits.
    #[serde(default)]
    pub kernel_stack_kib: u64,
}

/// Reads `/proc/PID/{stat,status,fd}`.
///
/// # Errors
///
/// If the process is gone or `/proc` is unreadable.
pub fn sample(pid: u32) -> io::Result<Sample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 2..])
        .ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 once "pid (comm)" is gone.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let cpu_ticks = ticks(11) + ticks(12);

    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| number_after(&status, name);
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kernel_stack_kib = number_after(&meminfo, "KernelStack:");
    Ok(Sample {
        at_ns: crate::wallclock::now_ns(),
        cpu_s: cpu_ticks as f64 / clock_ticks_per_second(),
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        threads: field("Threads:"),
        fds,
        kernel_stack_kib,
    })
}

/// Just RSS (KiB) and the thread count, from `/proc/PID/status`: cheap enough to
/// read every second while loaded (unlike the fd count, a directory listing of
/// one entry per client).
///
/// # Errors
///
/// If the process is gone.
pub fn rss_and_threads(pid: u32) -> io::Result<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok((
        number_after(&status, "VmRSS:"),
        number_after(&status, "Threads:"),
    ))
}

/// The number after `name` on the line that starts with it, in a `/proc` text of
/// `Name:   value [unit]` lines (`status`, `meminfo`); 0 if there is none.
fn number_after(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The summed run time of the process's live threads, in nanoseconds, from
/// `/proc/PID/task/*/schedstat`. Costs one file read per thread.
///
/// # Errors
///
/// If the process is gone.
pub fn threads_cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(task) = task else { continue };
        // A thread may end between the listing and the read: skip it.
        if let Ok(text) = fs::read_to_string(task.path().join("schedstat")) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// How many pages each client thread's stack has in memory: for every
/// read-write mapping of exactly `stack_kib` (tickcast's client stack size),
/// its resident KiB, as (KiB, mappings) pairs, smallest first. A page of a
/// stack, once touched, stays resident for the thread's life, so this is the
/// deepest the thread's stack has ever been, in pages.
///
/// # Errors
///
/// If the process is gone or `/proc` is unreadable.
pub fn stack_rss(pid: u32, stack_kib: u64) -> io::Result<Vec<(u64, u64)>> {
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut counts = std::collections::BTreeMap::new();
    let mut in_stack = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((from, to)) = first.split_once('-') {
            let range = (u64::from_str_radix(from, 16), u64::from_str_radix(to, 16));
            in_stack = match range {
                (Ok(from), Ok(to)) => {
                    (to - from) / 1024 == stack_kib && fields.next() == Some("rw-p")
                }
                _ => false,
            };
        } else if in_stack && first == "Rss:" {
            let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *counts.entry(kib).or_insert(0u64) += 1;
            in_stack = false;
        }
    }
    Ok(counts.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        assert!(s.threads >= 1 && s.fds >= 1);
        assert!(threads_cpu_ns(std::process::id()).unwrap() > 0);
    }
}
