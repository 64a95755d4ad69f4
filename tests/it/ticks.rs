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

/// Ticks come every interval (100 ms here), aligned to multiples of it: `time`
/// is the multiple, `seq` its number since 1970, going up by one, and each tick
/// arrives early in its slot.
#[test]
fn ticks_arrive_at_the_interval_with_incrementing_seq() {
    let server = start();
    let mut client = Client::connect(&server);
    client.welcome();
    let ticks: Vec<_> = (0..10)
        .map(|_| {
            let tick = client.next_of_type("tick");
            let arrived = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            (tick, arrived)
        })
        .collect();
    for (tick, _) in &ticks {
        assert_eq!(millis(tick) % 100, 0, "not on a 100 ms multiple: {tick}");
        assert_eq!(
            i128::from(tick["seq"].as_u64().unwrap()),
            millis(tick) / 100,
            "{tick}"
        );
    }
    for pair in ticks.windows(2) {
        let (a, b) = (&pair[0].0, &pair[1].0);
        assert_eq!(b["seq"].as_u64().unwrap(), a["seq"].as_u64().unwrap() + 1);
    }
    // Aligned: most ticks arrive in the first half of their slot, none before it.
    let early = ticks
        .iter()
        .filter(|(tick, arrived)| {
            assert!(
                *arrived >= millis(tick),
                "a tick arrived before its time: {tick}"
            );
            arrived - millis(tick) < 50
        })
        .count();
    assert!(
        early >= 7,
        "only {early} of 10 ticks early in their slot: {ticks:?}"
    );
}

/// Two servers with the same interval send byte-identical ticks for the same
/// instant, as the nodes of a cluster must: seq and time come from the clock.
#[test]
fn two_servers_send_the_same_tick_for_the_same_instant() {
    // The second server starts a tick later than the first, as nodes do: a seq
    // counted from the start would differ.
    let one = start();
    let mut a = Client::connect(&one);
    a.welcome();
    a.next_of_type("tick");
    let two = start();
    let mut b = Client::connect(&two);
    b.welcome();
    let raw_tick = |c: &mut Client| loop {
        if let Message::Text(text) = c.next_message() {
            if text.starts_with(r#"{"type":"tick""#) {
                return text.to_string();
            }
        }
    };
    let time = |text: &str| {
        let tick: serde_json::Value = serde_json::from_str(text).unwrap();
        millis(&tick)
    };
    let mut from_a = raw_tick(&mut a);
    let mut from_b = raw_tick(&mut b);
    // Catch up whichever is behind (a few ticks at most), then compare the
    // frames for the same instant.
    for _ in 0..20 {
        match time(&from_a).cmp(&time(&from_b)) {
            std::cmp::Ordering::Less => from_a = raw_tick(&mut a),
            std::cmp::Ordering::Greater => from_b = raw_tick(&mut b),
            std::cmp::Ordering::Equal => break,
        }
    }
    assert_eq!(from_a, from_b);
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
