//! The benchmark harness for tickcast (issue 3). Not part of the product.
//!
//! # Layout
//!
//! - `src/bin/loadgen.rs`: opens N WebSocket clients, runs the phases of one
//!   benchmark run (ramp, rest, load, leave), samples the server process, and
//!   writes one JSON [`run::RunResult`].
//! - `src/bin/peer_tokio.rs`: the tokio-tungstenite peer server.
//! - `src/bin/report.rs`: turns a directory of run results into `results.csv`
//!   and `results.md`.
//! - `src/bin/pubbench.rs`: the publish benchmark (`POST /publish` to
//!   subscribers, each checked for every message), against one node or, with
//!   several `--ws` URLs, a cluster of nodes on one Redis (`scripts/bench.sh
//!   publish` and `scripts/bench.sh cluster`).
//! - [`client`]: one load-generator client: its own minimal RFC 6455 client
//!   framing, so every read can carry the kernel's receive timestamp.
//! - [`delivery_check`]: the per-client check of issue 9: every tick the server
//!   made after a client's 101 must reach that client, once and in order.
//! - [`pub_run`]: the JSON result of one pubbench run; [`pub_report`] turns
//!   a directory of them into `publish.md` or `cluster.md`.
//! - [`rx_timestamp`]: the kernel's receive timestamp of every read, for
//!   loadgen's client and (through [`rx_timestamp::StampedStream`]) pubbench's
//!   tokio-tungstenite subscribers.
//! - [`flags`]: `--name N` for the small measuring tools (`sendcost`,
//!   `thread-floor`).
//! - [`procstat`]: RSS, peak RSS, threads, fds and CPU time of a process, from
//!   `/proc`.
//! - [`run`]: the JSON result of one run, shared by loadgen and report.
//! - [`stats`]: percentiles, nearest-rank.
//! - [`wallclock`]: RFC 3339 millisecond timestamps, both ways.
//!
//! `node-peer/server.js` is the Node `ws` peer; `scripts/bench.sh` drives it all.
//! `tests/delivery_check.rs` runs loadgen against a fake server that loses a
//! tick or a client, to prove the per-client check fails when it should.

pub mod client;
pub mod delivery_check;
pub mod flags;
pub mod procstat;
pub mod pub_report;
pub mod pub_run;
pub mod run;
pub mod rx_timestamp;
pub mod stats;
pub mod wallclock;

use std::time::Duration;

/// Parses `250ms`, `1s`, `1.5s` or `10ms` (the subset of tickcast's `--interval`
/// syntax the harness needs). `None` for anything else, or for zero.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        return None;
    };
    let value: f64 = number.parse().ok()?;
    let seconds = value * scale;
    (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10ms"), Some(Duration::from_millis(10)));
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("1"), None);
    }
}
