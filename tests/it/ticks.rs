//! Ticks: the interval, the sequence numbers, the time format, one frame for all.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tungstenite::Message;

use crate::util::{start, Client};

fn millis(tick: &serde_json::Value) -> i128 {
    let text = tick["time"].as_str().expect("time is a string");
    // Exactly RFC 3339 UTC with milliseconds, e.g. 2026-11-24T14:00:01.000Z.
    assert_eq!(text.len(), 24, "{text}");
    assert!(text.ends_with('Z'), "{text}");
    let time = OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"));
    time.unix_timestamp_nanos() / 1_000_000
}

/// The welcome carries the server's clock, so a page can show the time before the
/// first tick.
#[test]
fn welcome_carries_the_server_time() {
    let server = start();
    let before = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let mut client = Client::connect(&server);
    let welcome = client.welcome();
    let after = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let time = millis(&welcome);
    assert!(
        (before..=after).contains(&time),
        "welcome time {time} not within [{before}, {after}]"
    );
}

/// Ticks come every interval (100 ms here), aligned to multiples of it, with
/// `seq` going up by one and a valid RFC 3339 time.
#[test]
fn ticks_arrive_at_the_interval_with_incrementing_seq() {
    let server = start();
    let mut client = Client::connect(&server);
    client.welcome();
    let ticks: Vec<_> = (0..10).map(|_| client.next_of_type("tick")).collect();
    for pair in ticks.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(b["seq"].as_u64().unwrap(), a["seq"].as_u64().unwrap() + 1);
        // Consecutive ticks fall in later 100 ms slots, never the same one.
        assert!(millis(b) / 100 > millis(a) / 100, "{a} then {b}");
    }
    // Ten ticks span at least nine intervals: the ticker does not run fast.
    let span = millis(&ticks[9]) - millis(&ticks[0]);
    assert!(span >= 850, "10 ticks in {span} ms");
    // Aligned: most ticks are published in the first part of their slot.
    let aligned = ticks.iter().filter(|t| millis(t) % 100 < 50).count();
    assert!(
        aligned >= 7,
        "only {aligned} of 10 ticks near their slot: {ticks:?}"
    );
}

/// Two clients receive byte-identical frames for the same tick: encoded once.
#[test]
fn two_clients_receive_identical_tick_frames() {
    let server = start();
    let mut a = Client::connect(&server);
    let mut b = Client::connect(&server);
    a.welcome();
    b.welcome();
    let raw_tick = |c: &mut Client| loop {
        if let Message::Text(text) = c.next_message() {
            if text.starts_with(r#"{"type":"tick""#) {
                return text.to_string();
            }
        }
    };
    let first_a = raw_tick(&mut a);
    let seq: serde_json::Value = serde_json::from_str(&first_a).unwrap();
    let seq = seq["seq"].as_u64().unwrap();
    // b may be one tick behind or ahead; find the same seq on both.
    let target = seq + 2;
    let find = |c: &mut Client| loop {
        let text = raw_tick(c);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        if v["seq"].as_u64().unwrap() == target {
            return text;
        }
    };
    assert_eq!(find(&mut a), find(&mut b));
}

/// Messages published through the library API reach every client.
#[test]
fn published_messages_reach_every_client() {
    let server = crate::util::start_with(|c| c.interval = None);
    let mut a = Client::connect(&server);
    a.welcome();
    // b connects after a is welcomed, so a is sure to hear b's join.
    let mut b = Client::connect(&server);
    b.welcome();
    a.next_of_type("join");
    server
        .publisher()
        .publish_text(r#"{"type":"news","n":1}"#)
        .unwrap();
    assert_eq!(a.next_of_type("news")["n"], 1);
    assert_eq!(b.next_of_type("news")["n"], 1);
}
