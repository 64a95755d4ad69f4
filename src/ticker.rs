//! The ticker thread (`ticker`): publishes `{"type":"tick",…}` every interval.
//!
//! Ticks are aligned to wall-clock multiples of the interval — a 1 s interval
//! ticks on the second — and each wait is computed afresh from the clock, so
//! there is no cumulative drift however long the server runs. A tick's `seq` is
//! the number of that multiple (intervals since 1970) and its `time` the multiple
//! itself, not "now": two servers with the same interval (the nodes of a cluster)
//! send byte-identical ticks for the same instant. If the thread falls behind
//! (the machine was suspended, the hub could not keep up), it skips to the next
//! slot instead of firing a burst of late ticks; the skipped slots show as a
//! jump in `seq` and are counted (`tickcast_ticks_skipped_total`).
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
    let mut ticks = 0u64;
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
        let seq = u64::try_from(next_slot).unwrap_or(u64::MAX);
        metrics.tick_seq.store(seq, Ordering::Relaxed);
        let tick = message::tick(seq, slot_time(next_slot, interval_ns));
        // tour: tick-send
        if frames_tx.send(Broadcast::new(Some("tick"), tick)).is_err() {
            break;
        }
        ticks += 1;
        // Normally next_slot + 1; more if we fell behind.
        let due_now = slot_after(SystemTime::now(), interval_ns);
        if due_now > next_slot + 1 {
            let skipped = u64::try_from(due_now - next_slot - 1).unwrap_or(u64::MAX);
            metrics.ticks_skipped.fetch_add(skipped, Ordering::Relaxed);
            log::debug!("ticker fell behind: skipped {skipped} tick(s) after seq {seq}");
        }
        next_slot = (next_slot + 1).max(due_now);
    }
    log::debug!("ticker stopped after {ticks} ticks");
}

/// The instant of slot `slot`, as the tick's `time`.
fn slot_time(slot: u128, interval_ns: u128) -> OffsetDateTime {
    let nanos = i128::try_from(slot * interval_ns).unwrap_or(i128::MAX);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or_else(|_| OffsetDateTime::now_utc())
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

    /// Two servers with the same interval send the same tick for the same slot:
    /// its seq and its time come from the slot alone.
    #[test]
    fn a_slot_makes_the_same_tick_everywhere() {
        let time = slot_time(42, 250_000_000);
        assert_eq!(
            message::tick(42, time),
            r#"{"type":"tick","seq":42,"time":"1970-01-01T00:00:10.500Z"}"#
        );
        let slot = slot_after(
            UNIX_EPOCH + Duration::from_secs(1_795_960_800),
            1_000_000_000,
        );
        assert_eq!(
            message::tick(u64::try_from(slot).unwrap(), slot_time(slot, 1_000_000_000)),
            r#"{"type":"tick","seq":1795960801,"time":"2026-11-29T14:00:01.000Z"}"#
        );
    }
}
