//! The per-client delivery check (issue 9, "nothing lost"): did every tick the
//! server made after a client's `101 Switching Protocols` reach that client,
//! once and in order?
//!
//! Totals cannot answer that. A load probe found clients that connected last
//! missing the few ticks broadcast between their 101 and the moment the
//! server's hub registered them, and one client in about a thousand getting its
//! 101 and then nothing; both vanish in a ratio over millions of frames. So
//! loadgen keeps, for every client, when its 101 arrived and every tick it got,
//! and [`check`] compares them client by client once the run is over.
//!
//! Pure: it takes the clients' [`Outcome`]s and the end of the measured window
//! and returns a [`DeliveryCheck`]; no I/O, no clock. loadgen calls it after
//! the clients have closed, and the unit tests below call it with hand-made
//! timelines, so the rule that CI relies on is tested on its own.
//!
//! # The rule
//!
//! Client `c` is owed every tick made strictly after `c`'s 101 arrived and no
//! later than the window's end (the end of the load phase; loadgen then keeps
//! every client reading for a bounded drain time, so a tick made just before
//! the end has time to land). Missing = owed − received. Ticks received twice
//! or after a higher seq are flagged too. Clients that never got a 101, and
//! clients whose connection ended before the window did, are losses in their
//! own right.
//!
//! # When was a tick made?
//!
//! The tick's `time` field is the server's wall clock when it made the tick,
//! truncated to the millisecond; the 101's arrival time is the kernel's receive
//! timestamp on the same machine, from the same clock (CLOCK_REALTIME). A tick
//! stamped `T` was therefore made somewhere in `[T, T + 1 ms)`. Truncation must
//! only ever make a tick *not* owed, never wrongly owed, so a tick is owed only
//! if that whole interval lies after the 101 and inside the window: `T > 101`
//! and `T + 1 ms − 1 ns ≤ window end`.
//!
//! Every client's ticks together give the map seq → stamp. A seq that no
//! client received has no stamp of its own, but the server numbers ticks in the
//! order it makes them, so it was made between its nearest stamped neighbours:
//! it is owed if the earlier neighbour was surely made after the 101 and the
//! later one surely inside the window. (This assumes the server's wall clock
//! does not step backwards during the run.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::Outcome;
use crate::wallclock::rfc3339_millis;

/// One millisecond in nanoseconds: the resolution of the tick's `time` field.
const MS_NS: i64 = 1_000_000;

/// How many clients [`DeliveryCheck::worst`] lists, and how many missed seqs
/// each lists: enough to see a pattern (the last clients to connect, the ticks
/// right after their 101), short enough to read.
const LISTED: usize = 10;

/// The latest instant a tick stamped `stamp_ns` (truncated to the millisecond)
/// can have been made.
fn latest_made_ns(stamp_ns: i64) -> i64 {
    stamp_ns.saturating_add(MS_NS - 1)
}

/// Whether a tick stamped `stamp_ns` may have been made after the window ended
/// at `window_end_ns`, so that no client is owed it.
///
/// loadgen's drain waits until each client has received such a tick: ticks
/// arrive in seq order, so by then every tick the client is owed has had its
/// chance to arrive. `i64::MAX` (loadgen's mark for a client that is gone)
/// counts as past the window.
pub fn is_past_window(stamp_ns: i64, window_end_ns: i64) -> bool {
    latest_made_ns(stamp_ns) > window_end_ns
}

/// The result of the per-client check: what goes into the run's JSON under
/// `delivery` and decides `--require-full-delivery`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
// Results written before issue 9 lack these fields: they read as zeros, and
// `clients_checked == 0` marks the run as not checked.
#[serde(default)]
pub struct DeliveryCheck {
    /// Clients that got their 101: the ones the rule applies to.
    pub clients_checked: usize,
    /// Clients that never got a 101 (refused, reset, timed out). Each is a
    /// loss: it was never in a position to receive anything.
    pub clients_without_101: usize,
    /// Checked clients that missed at least one tick they were owed.
    pub clients_missing: usize,
    /// Ticks owed and never received, summed over the clients.
    pub ticks_missing: u64,
    /// Ticks owed, summed over the clients: what `ticks_missing` is out of.
    pub ticks_owed: u64,
    /// Clients whose connection ended before the window did, after their 101:
    /// e.g. a 101 and then no welcome, or the server cutting the client off.
    pub clients_lost: usize,
    /// Clients whose connection the server ended after the window, during the
    /// drain: no owed tick need be missing, but a client was dropped.
    pub clients_ended_in_drain: usize,
    /// Clients still connected at the end that got no tick made after the
    /// window within the drain time, so their last owed ticks could not be
    /// seen through (the server stopped sending to them, or stopped ticking).
    pub clients_stalled: usize,
    /// Ticks a client received a second time, summed over the clients.
    pub duplicates: u64,
    /// Ticks a client received after a higher seq, summed over the clients.
    pub out_of_order: u64,
    /// Seqs no client received at all, between the first and last tick seen.
    pub ticks_nobody_got: u64,
    /// The clients with a loss, most missed ticks first (then by index), at
    /// most ten.
    pub worst: Vec<ClientLoss>,
}

/// One client's loss, for [`DeliveryCheck::worst`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientLoss {
    /// The client's index in loadgen (0-based, in the order it connected).
    pub client: usize,
    /// When its 101 arrived, ns since the Unix epoch; `None` if it never did.
    pub got_101_ns: Option<i64>,
    /// The same as RFC 3339 (milliseconds, truncated), to read beside the
    /// ticks' `time` fields.
    pub got_101_time: Option<String>,
    /// Owed ticks it did not receive.
    pub missed: u64,
    /// The first of those seqs, in order.
    pub missed_seqs: Vec<u64>,
    /// The first tick seq it did receive: together with `missed_seqs` it shows
    /// whether the gap sits right after the 101 (a late registration).
    pub first_seq_received: Option<u64>,
    /// Its connection ended before the window did.
    pub lost: bool,
    /// Its connection ended after the window, before loadgen closed it.
    pub ended_in_drain: bool,
    /// No tick made after the window reached it within the drain time.
    pub stalled: bool,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Why its connection ended or its connect failed, if it did.
    pub reason: Option<String>,
}

impl DeliveryCheck {
    /// Whether nothing was lost: every client got its 101, none missed an owed
    /// tick, none was lost, dropped or stalled, and no tick came twice or out
    /// of order.
    pub fn is_clean(&self) -> bool {
        self.clients_without_101 == 0
            && self.clients_missing == 0
            && self.clients_lost == 0
            && self.clients_ended_in_drain == 0
            && self.clients_stalled == 0
            && self.duplicates == 0
            && self.out_of_order == 0
    }

    /// One line for the human summary: either that every client got every
    /// tick after its 101, or who missed how much.
    pub fn summary(&self) -> String {
        if self.is_clean() {
            return format!(
                "every client got every tick after its 101 ({} clients checked, {} ticks owed in all)",
                self.clients_checked, self.ticks_owed
            );
        }
        let mut line = format!(
            "LOSS: {} of {} clients missed {} of the {} ticks made after their 101",
            self.clients_missing, self.clients_checked, self.ticks_missing, self.ticks_owed
        );
        for (count, what) in [
            (
                self.clients_lost,
                "lost (connection ended before the window did)",
            ),
            (self.clients_without_101, "never got a 101"),
            (
                self.clients_ended_in_drain,
                "dropped by the server during the drain",
            ),
            (self.clients_stalled, "stalled (no tick after the window)"),
        ] {
            if count > 0 {
                line += &format!("; {count} {}", plural_clients(count, what));
            }
        }
        if self.duplicates + self.out_of_order > 0 {
            line += &format!(
                "; {} duplicate and {} out-of-order ticks",
                self.duplicates, self.out_of_order
            );
        }
        if let Some(worst) = self.worst.first() {
            line += &format!("; worst: {}", worst.describe());
        }
        line
    }
}

fn plural_clients(count: usize, what: &str) -> String {
    format!("{} {what}", if count == 1 { "client" } else { "clients" })
}

impl ClientLoss {
    /// `client 17 (101 at 2026-…Z) missed 2: seqs 41, 42; lost: …`.
    pub fn describe(&self) -> String {
        let mut text = format!("client {}", self.client);
        match &self.got_101_time {
            Some(at) => text += &format!(" (101 at {at})"),
            None => text += " (no 101)",
        }
        if self.missed > 0 {
            let seqs: Vec<String> = self.missed_seqs.iter().map(u64::to_string).collect();
            let more = if self.missed > self.missed_seqs.len() as u64 {
                ", …"
            } else {
                ""
            };
            text += &format!(" missed {}: seqs {}{more}", self.missed, seqs.join(", "));
        }
        if self.lost {
            text += "; lost";
        }
        if self.ended_in_drain {
            text += "; dropped during the drain";
        }
        if self.stalled {
            text += "; stalled";
        }
        if let Some(reason) = &self.reason {
            text += &format!(": {reason}");
        }
        text
    }
}

/// Checks every client against the rule in the module docs. `window_end_ns` is
/// the end of the measured window, ns since the Unix epoch on the server's
/// clock.
pub fn check(outcomes: &[Outcome], window_end_ns: i64) -> DeliveryCheck {
    let made = MadeTimes::from_outcomes(outcomes);
    let mut result = DeliveryCheck {
        ticks_nobody_got: made.nobody_got(),
        ..DeliveryCheck::default()
    };
    let mut losses = Vec::new();
    for outcome in outcomes {
        let reason = outcome
            .ended_early
            .clone()
            .or_else(|| outcome.connect_error.clone());
        let Some(got_101_ns) = outcome.got_101_ns else {
            result.clients_without_101 += 1;
            losses.push(ClientLoss {
                client: outcome.index,
                reason,
                ..ClientLoss::default()
            });
            continue;
        };
        result.clients_checked += 1;
        let mut loss = ClientLoss {
            client: outcome.index,
            got_101_ns: Some(got_101_ns),
            got_101_time: Some(rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(got_101_ns.max(0) as u64),
            )),
            first_seq_received: outcome.ticks.first().map(|t| t.seq),
            lost: outcome.ended_ns.is_some_and(|ended| ended < window_end_ns),
            ended_in_drain: outcome.ended_ns.is_some_and(|ended| ended >= window_end_ns),
            reason,
            ..ClientLoss::default()
        };

        // Duplicates and order, in arrival order.
        let mut received: Vec<u64> = Vec::with_capacity(outcome.ticks.len());
        let mut highest: Option<u64> = None;
        for tick in &outcome.ticks {
            received.push(tick.seq);
            if highest.is_some_and(|h| tick.seq < h) {
                loss.out_of_order += 1;
            }
            highest = highest.max(Some(tick.seq));
        }
        received.sort_unstable();
        let before_dedup = received.len();
        received.dedup();
        loss.duplicates = (before_dedup - received.len()) as u64;

        // What it was owed and did not get.
        for run in made.owed(got_101_ns, window_end_ns) {
            result.ticks_owed += run.len();
            for seq in run.first_seq..=run.last_seq {
                if received.binary_search(&seq).is_ok() {
                    continue;
                }
                loss.missed += 1;
                if loss.missed_seqs.len() < LISTED {
                    loss.missed_seqs.push(seq);
                } else if !run.stamped {
                    // A gap nobody received is missed whole: count it at once
                    // rather than walk a possibly huge range seq by seq.
                    loss.missed += run.last_seq - seq;
                    break;
                }
            }
        }

        // A client still connected at the end must have seen a tick made after
        // the window, or its last owed ticks were never seen through.
        loss.stalled = outcome.ended_ns.is_none()
            && !outcome
                .ticks
                .iter()
                .any(|t| is_past_window(t.time_ns, window_end_ns));

        result.ticks_missing += loss.missed;
        result.duplicates += loss.duplicates;
        result.out_of_order += loss.out_of_order;
        result.clients_missing += usize::from(loss.missed > 0);
        result.clients_lost += usize::from(loss.lost);
        result.clients_ended_in_drain += usize::from(loss.ended_in_drain);
        result.clients_stalled += usize::from(loss.stalled);
        if loss.missed > 0
            || loss.lost
            || loss.ended_in_drain
            || loss.stalled
            || loss.duplicates > 0
            || loss.out_of_order > 0
        {
            losses.push(loss);
        }
    }
    losses.sort_by_key(|l| (std::cmp::Reverse(l.missed), l.client));
    losses.truncate(LISTED);
    result.worst = losses;
    result
}

/// When each tick seq was made, as bounds, from every client's ticks: runs of
/// consecutive seqs in ascending order, each either one stamped seq or a gap
/// of seqs no client received.
struct MadeTimes {
    runs: Vec<MadeRun>,
}

/// Seqs `first_seq..=last_seq`, all made within `[earliest_ns, latest_ns]`.
struct MadeRun {
    first_seq: u64,
    last_seq: u64,
    earliest_ns: i64,
    latest_ns: i64,
    /// One seq some client received (with its own stamp), rather than a gap.
    stamped: bool,
}

impl MadeRun {
    fn len(&self) -> u64 {
        self.last_seq - self.first_seq + 1
    }
}

impl MadeTimes {
    fn from_outcomes(outcomes: &[Outcome]) -> MadeTimes {
        // Every client got the same frame for a seq, so any copy's stamp will
        // do. A map keyed by seq, not a list of every copy: at 5,000 clients
        // that list would hold millions of entries.
        let mut stamps: BTreeMap<u64, i64> = BTreeMap::new();
        for tick in outcomes.iter().flat_map(|o| &o.ticks) {
            stamps.entry(tick.seq).or_insert(tick.time_ns);
        }
        let mut runs = Vec::with_capacity(stamps.len() * 2);
        let mut previous: Option<(u64, i64)> = None;
        for (&seq, &stamp_ns) in &stamps {
            if let Some((prev_seq, prev_stamp_ns)) = previous.replace((seq, stamp_ns)) {
                if seq > prev_seq + 1 {
                    // Made after the earlier neighbour began, before the later
                    // one ended.
                    runs.push(MadeRun {
                        first_seq: prev_seq + 1,
                        last_seq: seq - 1,
                        earliest_ns: prev_stamp_ns,
                        latest_ns: latest_made_ns(stamp_ns),
                        stamped: false,
                    });
                }
            }
            runs.push(MadeRun {
                first_seq: seq,
                last_seq: seq,
                earliest_ns: stamp_ns,
                latest_ns: latest_made_ns(stamp_ns),
                stamped: true,
            });
        }
        MadeTimes { runs }
    }

    /// The runs a client whose 101 arrived at `got_101_ns` is owed: surely made
    /// after it, and surely by `window_end_ns`.
    fn owed(&self, got_101_ns: i64, window_end_ns: i64) -> impl Iterator<Item = &MadeRun> {
        self.runs
            .iter()
            .filter(move |r| r.earliest_ns > got_101_ns && r.latest_ns <= window_end_ns)
    }

    fn nobody_got(&self) -> u64 {
        self.runs
            .iter()
            .filter(|r| !r.stamped)
            .map(MadeRun::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::TickRx;

    /// 2026-11-24T14:00:00.000Z, a whole second, so test times read as offsets.
    const T0: i64 = 1_795_960_800_000_000_000;

    fn ms(n: i64) -> i64 {
        T0 + n * MS_NS
    }

    /// A tick stamped `stamp_ms` ms after T0 (already truncated, as on the wire).
    fn tick(seq: u64, stamp_ms: i64) -> TickRx {
        TickRx {
            seq,
            lag_us: 0,
            kernel_ns: ms(stamp_ms),
            time_ns: ms(stamp_ms),
        }
    }

    /// A client that got its 101 at `got_101_ns` and then the ticks `seqs`,
    /// from the server below that ticks every 10 ms (seq n stamped at n × 10 ms).
    fn client(index: usize, got_101_ns: i64, seqs: impl IntoIterator<Item = u64>) -> Outcome {
        Outcome {
            index,
            connected: true,
            got_101_ns: Some(got_101_ns),
            ticks: seqs.into_iter().map(|s| tick(s, s as i64 * 10)).collect(),
            ..Outcome::default()
        }
    }

    /// The window ends at 1.005 s: seq 100 (stamped 1.000 s) is the last tick
    /// surely made in it, seq 101 (1.010 s) the first past it.
    const WINDOW_END: i64 = T0 + 1_005 * MS_NS;

    #[test]
    fn every_tick_after_the_101_is_clean() {
        let early = client(0, ms(5), 1..=101);
        let late = client(1, ms(505), 51..=101);
        let result = check(&[early, late], WINDOW_END);
        assert!(result.is_clean(), "{result:?}");
        assert_eq!(result.clients_checked, 2);
        // Client 0: seqs 1..=100; client 1: 51..=100 (seq 50 at 500 ms came
        // before its 101 at 505 ms, so it is not owed and its absence is fine).
        assert_eq!(result.ticks_owed, 100 + 50);
        assert!(result
            .summary()
            .contains("every client got every tick after its 101"));
    }

    #[test]
    fn one_missed_tick_for_one_client_is_a_loss() {
        let whole = client(0, ms(5), 1..=101);
        let missed_one = client(1, ms(5), (1..=101).filter(|&s| s != 42));
        let result = check(&[whole, missed_one], WINDOW_END);
        assert!(!result.is_clean());
        assert_eq!((result.clients_missing, result.ticks_missing), (1, 1));
        assert_eq!(result.worst.len(), 1);
        assert_eq!(result.worst[0].client, 1);
        assert_eq!(result.worst[0].missed_seqs, vec![42]);
        assert!(result
            .summary()
            .contains("1 of 2 clients missed 1 of the 200 ticks"));
    }

    /// The bug of issue 9: ticks broadcast between a client's 101 and its
    /// registration with the hub never reach it.
    #[test]
    fn ticks_between_the_101_and_registration_are_missed() {
        let registered_early = client(0, ms(5), 1..=101);
        let registered_late = client(3, ms(505), 54..=101);
        let result = check(&[registered_early, registered_late], WINDOW_END);
        assert_eq!(result.ticks_missing, 3);
        assert_eq!(result.worst[0].missed_seqs, vec![51, 52, 53]);
        assert_eq!(result.worst[0].first_seq_received, Some(54));
    }

    #[test]
    fn a_client_lost_after_its_101_is_a_loss() {
        let whole = client(0, ms(5), 1..=101);
        // A 101, no welcome, then the connection closed at 300 ms.
        let lost = Outcome {
            ended_ns: Some(ms(300)),
            connect_error: Some("connection closed before the welcome".into()),
            ..client(1, ms(295), [])
        };
        let result = check(&[whole, lost], WINDOW_END);
        assert_eq!(result.clients_lost, 1);
        // Owed seqs 30..=100 (seq 30 is stamped 300 ms, after the 101 at 295).
        assert_eq!(result.ticks_missing, 71);
        let worst = &result.worst[0];
        assert!(worst.lost && !worst.stalled);
        assert_eq!(worst.missed_seqs.len(), LISTED);
        assert!(
            result.summary().contains("1 client lost"),
            "{}",
            result.summary()
        );
        assert!(worst.describe().contains("before the welcome"));
    }

    #[test]
    fn a_client_without_a_101_is_a_loss() {
        let refused = Outcome {
            index: 7,
            connect_error: Some("handshake refused: HTTP/1.1 503".into()),
            ..Outcome::default()
        };
        let result = check(&[client(0, ms(5), 1..=101), refused], WINDOW_END);
        assert!(!result.is_clean());
        assert_eq!((result.clients_checked, result.clients_without_101), (1, 1));
        assert_eq!(result.worst[0].client, 7);
    }

    #[test]
    fn duplicates_and_reordering_are_flagged() {
        let seqs = (1..=101).chain([50]);
        let mut reordered: Vec<u64> = (1..=101).collect();
        reordered.swap(10, 11);
        let result = check(
            &[client(0, ms(5), seqs), client(1, ms(5), reordered)],
            WINDOW_END,
        );
        // The repeated 50 arrives after 101 (out of order too); the swapped
        // pair puts 11 after 12.
        assert_eq!((result.duplicates, result.out_of_order), (1, 2));
        assert_eq!(result.ticks_missing, 0);
        assert!(!result.is_clean());
    }

    #[test]
    fn a_tick_nobody_received_is_missed_by_everyone_owed_it() {
        let seqs = || (1..=101).filter(|&s| s != 60);
        let result = check(
            &[client(0, ms(5), seqs()), client(1, ms(5), seqs())],
            WINDOW_END,
        );
        assert_eq!(result.ticks_nobody_got, 1);
        assert_eq!((result.clients_missing, result.ticks_missing), (2, 2));
        assert_eq!(result.worst[0].missed_seqs, vec![60]);
    }

    #[test]
    fn a_connected_client_with_no_tick_past_the_window_is_stalled() {
        let result = check(
            &[client(0, ms(5), 1..=101), client(1, ms(5), 1..=100)],
            WINDOW_END,
        );
        assert_eq!(result.clients_stalled, 1);
        assert_eq!(result.ticks_missing, 0);
        assert!(!result.is_clean());
    }

    /// A stamp is truncated to the millisecond, so a tick stamped in the same
    /// millisecond as the 101 (or as the window's end) may have been made on
    /// either side of it: never owed. One millisecond later it is.
    #[test]
    fn millisecond_truncation_never_makes_a_tick_owed() {
        // Seq 1 stamped 1000 ms (made in [1000, 1001) ms); seq 2 at 1001 ms.
        let stamped = |seqs: &[u64]| -> Vec<TickRx> {
            seqs.iter().map(|&s| tick(s, 999 + s as i64)).collect()
        };
        let got = |got_101_ns: i64, seqs: &[u64]| Outcome {
            got_101_ns: Some(got_101_ns),
            ticks: stamped(seqs),
            ..Outcome::default()
        };
        let far_end = ms(2_000);
        // Everyone else got seqs 1..=3 (3 is stamped 1002 ms).
        let witness = || got(ms(0), &[1, 2, 3]);

        // 101 at 1000.4 ms: seq 1 may have been made at 1000.7 ms, after it,
        // or at 1000.1 ms, before it. Not owed; seq 2 is.
        let mid_ms = got(ms(1_000) + 400_000, &[3]);
        let result = check(&[witness(), mid_ms], far_end);
        assert_eq!(result.worst[0].missed_seqs, vec![2]);
        assert_eq!(result.ticks_missing, 1);

        // 101 exactly at 1000.000 ms: seq 1 may have been made in that very
        // nanosecond; "strictly later" is not certain, so not owed.
        let exact = got(ms(1_000), &[2, 3]);
        assert_eq!(check(&[witness(), exact], far_end).ticks_missing, 0);

        // 101 a nanosecond before 1000 ms: seq 1 was surely made after it.
        let just_before = got(ms(1_000) - 1, &[2, 3]);
        let result = check(&[witness(), just_before], far_end);
        assert_eq!(result.worst[0].missed_seqs, vec![1]);

        // Window end at 1001.5 ms: seq 2 (stamped 1001) may have been made at
        // 1001.9 ms, after the end: not owed. Seq 1 (by 1000.999999 ms) is.
        let end = ms(1_001) + 500_000;
        let from_start = got(ms(0), &[]);
        let result = check(&[witness(), from_start], end);
        assert_eq!(result.worst[0].missed_seqs, vec![1]);
        // Window end at 1000.999999 ms: seq 1 was surely made by then.
        let result = check(&[witness(), got(ms(0), &[])], ms(1_001) - 1);
        assert_eq!(result.worst[0].missed_seqs, vec![1]);
        // Window end at 1000.999998 ms: it may not have been.
        let result = check(&[witness(), got(ms(0), &[])], ms(1_001) - 2);
        assert_eq!(result.ticks_owed, 0);
    }

    #[test]
    fn the_drain_stops_at_a_tick_that_may_be_past_the_window() {
        assert!(!is_past_window(ms(999), ms(1_000)));
        // Stamped in the window's last millisecond: may have been made after it.
        assert!(is_past_window(ms(1_000), ms(1_000) + 500_000));
        assert!(is_past_window(i64::MAX, ms(1_000)));
    }
}
