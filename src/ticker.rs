//! The ticker thread (`ticker`): publishes `{"type":"tick",…}` every interval.
//!
//! Ticks are aligned to wall-clock multiples of the interval — a 1 s interval
//! ticks on the second — and each wait is computed afresh from the clock, so
//! there is no cumulative drift however long the server runs. A tick's `seq` is
//! the number of that multiple (intervals since 1970) and its `time` the multiple
//! itself, not "now": two servers with the same interval (the nodes of a cluster)
//! send byte-identical ticks for the same instant. If the thread falls behind
//! (the hub's queue was full, the machine was busy), it sends the slots it
//! missed at once, late but none lost, up to a second's worth of them; further
//! behind than that (the machine was suspended), it skips the older ones rather
//! than fire a flood of stale ticks: those show as a jump in `seq` and are
//! counted (`tickcast_ticks_skipped_total`).
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
        let due_now = slot_after(SystemTime::now(), interval_ns);
        let (next, skipped) = next_slot_to_send(next_slot, due_now, catch_up_slots(interval_ns));
        if skipped > 0 {
            let skipped = u64::try_from(skipped).unwrap_or(u64::MAX);
            metrics.ticks_skipped.fetch_add(skipped, Ordering::Relaxed);
            log::warn!("ticker fell behind by more than a second: skipped {skipped} tick(s) after seq {seq}");
        }
        next_slot = next;
    }
    log::debug!("ticker stopped after {ticks} ticks");
}

/// How many missed slots the ticker still sends late: a second's worth (at
/// least one, at most 100).
fn catch_up_slots(interval_ns: u128) -> u128 {
    (1_000_000_000 / interval_ns).clamp(1, 100)
}

/// The slot to send after `sent`, when the first slot not yet due is `due_now`,
/// and how many slots are skipped: normally `sent + 1` (waited for, or already
/// due and sent at once: late, not lost), but never more than `catch_up` slots
/// behind the clock.
fn next_slot_to_send(sent: u128, due_now: u128, catch_up: u128) -> (u128, u128) {
    let next = sent + 1;
    let oldest_kept = due_now.saturating_sub(catch_up);
    if next >= oldest_kept {
        (next, 0)
    } else {
        (oldest_kept, oldest_kept - next)
    }
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

    /// Behind by a slot or a few: send each missed slot, late; behind by more
    /// than a second's worth (a suspended machine): skip the older ones.
    #[test]
    fn missed_slots_are_sent_late_up_to_a_second_then_skipped() {
        // On time: slot 10 sent, slot 11 not yet due.
        assert_eq!(next_slot_to_send(10, 11, 100), (11, 0));
        // Slot 11 is already past (12 is the first not due): send 11 now.
        assert_eq!(next_slot_to_send(10, 12, 100), (11, 0));
        assert_eq!(next_slot_to_send(10, 110, 100), (11, 0));
        // 150 slots behind with 100 of catch-up: skip 49, send 60 to 109 late.
        assert_eq!(next_slot_to_send(10, 160, 100), (60, 49));
        // 1 s ticks keep one slot of catch-up; 10 ms ticks, 100; 1 ms, still 100.
        assert_eq!(catch_up_slots(1_000_000_000), 1);
        assert_eq!(catch_up_slots(10_000_000), 100);
        assert_eq!(catch_up_slots(1_000_000), 100);
        assert_eq!(next_slot_to_send(10, 12, 1), (11, 0));
        assert_eq!(next_slot_to_send(10, 13, 1), (12, 1));
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
