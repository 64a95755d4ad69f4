//! The ticker thread (`ticker`): publishes `{"type":"tick",…}` every interval.
//!
//! Ticks are aligned to wall-clock multiples of the interval — a 1 s interval
//! ticks on the second — and each wait is computed afresh from the clock, so
//! there is no cumulative drift however long the server runs. If the thread falls
//! behind (the machine was suspended, the clock jumped), it skips to the next
//! slot instead of firing a burst of late ticks.
//!
//! The thread waits on `stop_rx` with a timeout, so it sleeps between ticks and
//! wakes at once when the server drops the other end (`stop_tx`) at shutdown.
//! It encodes each tick frame once and sends it to the hub on `frames_tx`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use time::OffsetDateTime;

use crate::hub::Broadcast;
use crate::metrics::Metrics;
use crate::wire::message;

/// The ticker thread's body.
pub(crate) fn run(
    interval: Duration,
    frames_tx: Sender<Broadcast>,
    stop_rx: Receiver<()>,
    metrics: Arc<Metrics>,
) {
    let interval_ns = interval.as_nanos().max(1);
    let mut seq = 0;
    let mut next_slot = slot_after(SystemTime::now(), interval_ns);
    loop {
        let now = SystemTime::now();
        let due = UNIX_EPOCH + nanos_to_duration(next_slot * interval_ns);
        if let Ok(wait) = due.duration_since(now) {
            if !wait.is_zero() {
                // tour: tick-wait
                match stop_rx.recv_timeout(wait) {
                    // Woken early (clock granularity): go round and wait the rest.
                    Err(RecvTimeoutError::Timeout) => continue,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        seq += 1;
        metrics.tick_seq.store(seq, Ordering::Relaxed);
        let tick = message::tick(seq, OffsetDateTime::now_utc());
        // tour: tick-send
        if frames_tx.send(Broadcast::new(Some("tick"), tick)).is_err() {
            break;
        }
        // Normally next_slot + 1; more if we fell behind.
        next_slot = (next_slot + 1).max(slot_after(SystemTime::now(), interval_ns));
    }
    log::debug!("ticker stopped after {seq} ticks");
}

/// The index of the first slot (multiple of the interval) strictly after `time`.
fn slot_after(time: SystemTime, interval_ns: u128) -> u128 {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    since_epoch.as_nanos() / interval_ns + 1
}

fn nanos_to_duration(nanos: u128) -> Duration {
    let secs = (nanos / 1_000_000_000) as u64;
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_wall_clock_multiples() {
        let t = UNIX_EPOCH + Duration::from_millis(10_250);
        // 1 s interval: the next slot is 11 s.
        assert_eq!(slot_after(t, 1_000_000_000), 11);
        // Exactly on a slot: the next one, never the same one twice.
        let on = UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(slot_after(on, 1_000_000_000), 11);
        // 250 ms interval: 10.25 s is slot 41, next is 42 (10.5 s).
        assert_eq!(slot_after(t, 250_000_000), 42);
    }
}
