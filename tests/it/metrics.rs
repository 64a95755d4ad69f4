//! /healthz and /metrics on the HTTP port.

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{http_get, http_raw, start, tcp, Client};

fn scrape(server: &tickcast::Server) -> String {
    let (status, head, body) = http_get(server.http_addr().unwrap(), "/metrics");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4"));
    String::from_utf8(body).unwrap()
}

/// The value of one sample line, e.g. `tickcast_clients` or
/// `tickcast_clients_left_total{reason="closed"}`.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// The counters move as clients join, echo, fail handshakes and leave.
#[test]
fn metrics_follow_what_happens() {
    let server = start();
    let before = scrape(&server);
    assert_eq!(sample(&before, "tickcast_clients"), 0);
    assert_eq!(sample(&before, "tickcast_up"), 1);

    let mut client = Client::connect(&server);
    client.welcome();
    client.send_text("count me");
    while client.next_message() != tungstenite::Message::text("count me") {}
    client.next_of_type("tick");
    let (status, _, _) = http_raw(
        server.ws_addr(),
        "GET /nope HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(status, 404);

    // The refused connection's thread ends once it sees our end of the stream,
    // a moment after we read the 404: wait for it, with a bound.
    let deadline = Instant::now() + Duration::from_secs(5);
    let during = loop {
        let during = scrape(&server);
        if sample(&during, "tickcast_connections") == 1 {
            break during;
        }
        assert!(
            Instant::now() < deadline,
            "the 404's connection stayed:\n{during}"
        );
        thread::yield_now();
    };
    assert_eq!(sample(&during, "tickcast_clients"), 1);
    assert_eq!(sample(&during, "tickcast_clients_joined_total"), 1);
    assert_eq!(sample(&during, "tickcast_messages_echoed_total"), 1);
    assert_eq!(
        sample(
            &during,
            "tickcast_handshake_failures_total{cause=\"not_found\",status=\"404\"}"
        ),
        1
    );
    assert!(sample(&during, "tickcast_tick_seq") >= 1);
    assert!(sample(&during, "tickcast_frames_sent_total") >= 2);
    assert!(sample(&during, "tickcast_bytes_sent_total") > 0);

    client.ws.close(None).unwrap();
    while client.ws.read().is_ok() {}
    // The leave is counted when the hub handles it; wait for it with a bound.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let after = scrape(&server);
        if sample(&after, "tickcast_clients_left_total{reason=\"closed\"}") == 1 {
            assert_eq!(sample(&after, "tickcast_clients"), 0);
            break;
        }
        assert!(Instant::now() < deadline, "leave not counted:\n{after}");
        thread::yield_now();
    }
}

/// /healthz is 200 `ok` while serving and 503 once shutdown has begun.
#[test]
fn healthz_turns_503_during_shutdown() {
    let server = start();
    let http = server.http_addr().unwrap();
    let (status, _, body) = http_get(http, "/healthz");
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));

    // A client that never answers the close frame holds shutdown open for its
    // one-second grace period: long enough to see the 503.
    let mut mute = tcp(server.ws_addr());
    mute.write_all(
        b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut mute, &mut head).unwrap();

    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        server.shutdown();
        done_tx.send(()).unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut saw_503 = false;
    while Instant::now() < deadline && done_rx.try_recv().is_err() {
        if http_get(http, "/healthz").0 == 503 {
            saw_503 = true;
            break;
        }
    }
    assert!(saw_503, "never saw /healthz answer 503 during shutdown");
    done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

/// A connection closed over a bad frame is counted by its close code.
#[test]
fn bad_frame_closes_are_counted_by_code() {
    let server = start();
    let name = "tickcast_bad_frame_closes_total{cause=\"invalid_utf8\",code=\"1007\"}";
    assert_eq!(sample(&scrape(&server), name), 0);

    let mut client = Client::connect(&server);
    client.welcome();
    // A masked text frame (mask key 0) whose payload is not UTF-8.
    client
        .ws
        .get_mut()
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe])
        .unwrap();
    loop {
        match client.ws.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1007);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("expected a 1007 close frame, got {e}"),
        }
    }
    // Counted before the close frame was written.
    let after = scrape(&server);
    assert_eq!(sample(&after, name), 1);
    assert_eq!(
        sample(
            &after,
            "tickcast_bad_frame_closes_total{cause=\"protocol_error\",code=\"1002\"}"
        ),
        0
    );
}

/// The sum of every sample of the metric family `name` (all label sets).
fn family_total(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.parse::<u64>().ok()
        })
        .sum()
}

/// Every connection to the WebSocket port ends in exactly one counted way:
/// `connections_accepted_total` equals the sum of every outcome, once the
/// connections are over.
#[test]
fn every_connection_ends_in_a_counted_way() {
    let server = start();
    // A client that joins and leaves.
    let mut client = Client::connect(&server);
    client.welcome();
    client.ws.close(None).unwrap();
    while client.ws.read().is_ok() {}
    // A refused handshake.
    let (status, _, _) = http_raw(server.ws_addr(), "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 400);
    // A client that hangs up halfway through its request.
    let mut half = tcp(server.ws_addr());
    half.write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    drop(half);
    // A client that connects and says nothing at all.
    drop(tcp(server.ws_addr()));

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(&server);
        let accepted = sample(&text, "tickcast_connections_accepted_total");
        let ended: u64 = [
            "tickcast_connections_rejected_total",
            "tickcast_handshakes_abandoned_total",
            "tickcast_handshake_failures_total",
            "tickcast_flash_policy_answers_total",
            "tickcast_joins_failed_total",
            "tickcast_clients_left_total",
        ]
        .iter()
        .map(|name| family_total(&text, name))
        .sum();
        let open = sample(&text, "tickcast_connections");
        if accepted == 4 && open == 0 && ended == accepted {
            assert_eq!(sample(&text, "tickcast_handshakes_abandoned_total"), 2);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "accepted {accepted}, ended {ended}, open {open}:\n{text}"
        );
        thread::yield_now();
    }
}
