//! The library as a program embeds it: client events, sending to one client,
//! echo off, the count of welcomed clients, and a program that reads too slowly.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tickcast::{ClientEvent, LeaveReason};
use tungstenite::Message;

use crate::util::{start_with, tcp, wait_until, Client, IO_TIMEOUT};

/// The next client event, failing the test after [`IO_TIMEOUT`].
fn next_event(events: &tickcast::ClientEvents) -> ClientEvent {
    events
        .recv_timeout(IO_TIMEOUT)
        .expect("a client event in time")
}

/// The next text message that is not a tick or a presence notice.
fn next_text(client: &mut Client) -> String {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no text message in time");
        if let Message::Text(text) = client.next_message() {
            let kind = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_string));
            if !matches!(kind.as_deref(), Some("tick" | "join" | "leave")) {
                return text.to_string();
            }
        }
    }
}

/// A program hears each client join, every message it sends, and its leave, in
/// that order, with the ids the clients' welcomes carry.
#[test]
fn client_events_tell_joins_messages_and_leaves() {
    let server = start_with(|c| c.client_events = Some(64));
    let events = server.client_events().expect("events were asked for");
    let mut client = Client::connect(&server);
    let id = client.welcome()["id"].as_u64().unwrap();
    match next_event(&events) {
        ClientEvent::Joined { id: joined, .. } => assert_eq!(joined, id),
        other => panic!("expected Joined, got {other:?}"),
    }
    client.send_text("hello");
    client.ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(
        next_event(&events),
        ClientEvent::Text {
            id,
            text: "hello".into()
        }
    );
    assert_eq!(
        next_event(&events),
        ClientEvent::Binary {
            id,
            data: vec![1, 2, 3]
        }
    );
    // The echo is on by default.
    assert_eq!(next_text(&mut client), "hello");
    client.ws.close(None).unwrap();
    while client.ws.read().is_ok() {}
    assert_eq!(
        next_event(&events),
        ClientEvent::Left {
            id,
            reason: LeaveReason::Closed
        }
    );
    // Without the setting there is no queue.
    let plain = start_with(|_| {});
    assert!(plain.client_events().is_none());
}

/// With the echo off the program answers: the client gets the program's answer,
/// sent to it alone, and never its own message back.
#[test]
fn echo_off_leaves_the_answer_to_the_program() {
    let server = start_with(|c| {
        c.client_events = Some(64);
        c.echo = false;
    });
    let events = server.client_events().unwrap();
    let publisher = server.publisher();
    let mut client = Client::connect(&server);
    client.welcome();
    client.send_text("ping");
    let (id, text) = loop {
        match next_event(&events) {
            ClientEvent::Text { id, text } => break (id, text),
            ClientEvent::Joined { .. } => continue,
            other => panic!("expected Text, got {other:?}"),
        }
    };
    publisher.send_to(id, format!("answer to {text}")).unwrap();
    assert_eq!(next_text(&mut client), "answer to ping");
}

/// `send_to` reaches its client alone, in order with broadcasts; a message for a
/// client that has gone is dropped and counted.
#[test]
fn send_to_reaches_one_client_only() {
    let server = start_with(|c| c.client_events = Some(64));
    let publisher = server.publisher();
    let mut a = Client::connect(&server);
    let mut b = Client::connect(&server);
    let a_id = a.welcome()["id"].as_u64().unwrap();
    b.welcome();
    publisher.send_to(a_id, "for a").unwrap();
    publisher.publish_text("for all").unwrap();
    assert_eq!(next_text(&mut a), "for a");
    assert_eq!(next_text(&mut a), "for all");
    assert_eq!(next_text(&mut b), "for all", "b got a's message");

    publisher.send_to(9_999, "for nobody").unwrap();
    let http = server.http_addr().unwrap();
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let metrics = String::from_utf8(crate::util::http_get(http, "/metrics").2).unwrap();
        if metrics.contains("tickcast_undeliverable_messages_total 1\n") {
            break;
        }
        assert!(Instant::now() < deadline, "not counted:\n{metrics}");
        thread::yield_now();
    }
}

/// `Server::clients` counts the welcomed clients only: a connection still in its
/// handshake is a connection, not yet a client a message could reach.
#[test]
fn clients_counts_only_welcomed_clients() {
    let server = start_with(|_| {});
    let _half = tcp(server.ws_addr()); // connected, no handshake sent
    wait_until("the connection is counted", || server.connections() == 1);
    assert_eq!(server.clients(), 0);
    let mut client = Client::connect(&server);
    client.welcome();
    // The hub counts the client right after writing its welcome.
    wait_until("the welcomed client is counted", || server.clients() == 1);
    assert_eq!(server.connections(), 2);
}

/// A program that never reads its events stalls nobody: joins it has no room for
/// are dropped and counted, the other clients keep getting ticks, a talking
/// client waits on its own, and shutdown still finishes.
#[test]
fn a_program_that_never_reads_stalls_nobody() {
    let server = start_with(|c| c.client_events = Some(2));
    let _events = server.client_events().unwrap(); // held, never read
    let mut observer = Client::connect(&server);
    observer.welcome();
    let mut talkers: Vec<Client> = (0..4).map(|_| Client::connect(&server)).collect();
    for talker in &mut talkers {
        talker.welcome();
        talker.send_text("does anyone read this?");
    }
    // The hub is not held up: ticks keep coming to a client that stays quiet.
    for _ in 0..3 {
        observer.next_of_type("tick");
    }
    let metrics =
        String::from_utf8(crate::util::http_get(server.http_addr().unwrap(), "/metrics").2)
            .unwrap();
    let dropped: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("tickcast_client_events_dropped_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(dropped >= 1, "no event counted as dropped:\n{metrics}");

    // Shutdown does not wait on the talkers' threads, blocked on a full queue.
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        server.shutdown();
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("shutdown finished");
    drop(talkers);
}
