//! Heartbeat: silent clients are cut off with `timeout`; answering ones stay.

use std::io::{Read, Write};
use std::time::Duration;

use tungstenite::Message;

use crate::util::{start_with, tcp, Client};

/// A client that completes the handshake and then never sends a byte (a half-open
/// connection, as far as the server can tell) is cut off as `timeout`.
#[test]
fn silent_client_is_cut_off_as_timeout() {
    let server = start_with(|c| {
        c.interval = None;
        c.heartbeat = Some(Duration::from_millis(100));
    });
    let mut watcher = Client::connect(&server);
    watcher.welcome();
    let mut silent = tcp(server.ws_addr());
    silent
        .write_all(
            b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut head = [0u8; 12];
    silent.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    let silent_id = watcher.next_of_type("join")["ids"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_u64()
        .unwrap();
    // The watcher answers pings (tungstenite does it while reading), so only the
    // silent client goes.
    let leave = watcher.next_of_type("leave");
    assert_eq!(leave["ids"][0].as_u64(), Some(silent_id));
    assert_eq!(leave["reason"], "timeout");
    // The silent client's socket was shut down: it reads to the end.
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
}

/// A client that answers pings stays connected across many heartbeats.
#[test]
fn answering_client_survives_heartbeats() {
    let server = start_with(|c| {
        c.interval = None;
        c.heartbeat = Some(Duration::from_millis(50));
    });
    let mut client = Client::connect(&server);
    client.welcome();
    let mut pings = 0;
    while pings < 6 {
        match client.next_message() {
            Message::Ping(_) => pings += 1,
            other => panic!("expected pings, got {other:?}"),
        }
    }
    client.send_text("still connected");
    loop {
        match client.next_message() {
            Message::Text(t) => {
                assert_eq!(t.as_str(), "still connected");
                break;
            }
            Message::Ping(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Pings are spread over the heartbeat interval, a group of clients at a time,
/// so that their answers do not all arrive together.
#[test]
fn pings_are_spread_over_the_interval() {
    // 16 groups, so a group every 100 ms.
    let heartbeat = Duration::from_millis(1600);
    let server = start_with(|c| {
        c.interval = None;
        c.heartbeat = Some(heartbeat);
    });
    // Ids are consecutive, so 16 clients fall in 16 different groups.
    let clients: Vec<Client> = (0..16)
        .map(|_| {
            let mut client = Client::connect(&server);
            client.welcome();
            client
        })
        .collect();
    // Each client waits for its first ping on its own thread and notes when it came.
    let first_pings: Vec<std::time::Instant> = clients
        .into_iter()
        .map(|mut client| {
            std::thread::spawn(move || loop {
                if let Message::Ping(_) = client.next_message() {
                    return std::time::Instant::now();
                }
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|reader| reader.join().unwrap())
        .collect();
    let earliest = first_pings.iter().min().unwrap();
    let latest = first_pings.iter().max().unwrap();
    // All at once would be a few milliseconds apart; spread out, the first and the
    // last of 16 groups are 15/16 of the interval apart.
    assert!(
        latest.duration_since(*earliest) >= heartbeat / 2,
        "first pings came within {:?} of each other",
        latest.duration_since(*earliest)
    );
}

/// A client is only judged on pings it was sent: one that took its time over the
/// handshake, while its future group was pinged, is not cut off for missing that
/// ping.
#[test]
fn slow_handshake_is_not_taken_for_silence() {
    // A group is pinged every 10 ms.
    let heartbeat = Duration::from_millis(160);
    let server = start_with(|c| {
        c.interval = None;
        c.heartbeat = Some(heartbeat);
    });
    let addr = server.ws_addr();
    let socket = crate::util::tcp(addr);
    // Accepted now, upgraded after every group has been pinged at least once.
    std::thread::sleep(heartbeat * 2);
    let (ws, _) = tungstenite::client::client(format!("ws://{addr}/echo"), socket).unwrap();
    let mut client = Client { ws };
    client.welcome();
    // tungstenite answers each ping while reading; a client cut off would read EOF.
    let mut pings = 0;
    while pings < 4 {
        if let Message::Ping(_) = client.next_message() {
            pings += 1;
        }
    }
}
