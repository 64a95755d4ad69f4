//! The hub's two ways of going faster must not change what clients see: a burst of
//! broadcasts joined into one write per client, and a broadcast to many clients
//! shared between threads.

use tungstenite::Message;

use crate::util::{start_with, Client};

/// Every message of a burst arrives whole, once, and in order, however the hub
/// batched them on the way.
#[test]
fn published_burst_arrives_whole_and_in_order() {
    let server = start_with(|c| c.interval = None);
    let mut client = Client::connect(&server);
    client.welcome();
    let publisher = server.publisher();
    const BURST: usize = 2000;
    let sender = std::thread::spawn(move || {
        for i in 0..BURST {
            publisher
                .publish_text(format!("{i:0>width$}", width = i % 300 + 1))
                .unwrap();
        }
    });
    for i in 0..BURST {
        match client.next_message() {
            Message::Text(text) => {
                assert_eq!(text.as_str(), format!("{i:0>width$}", width = i % 300 + 1))
            }
            other => panic!("message {i}: expected text, got {other:?}"),
        }
    }
    sender.join().unwrap();
    server.shutdown();
}

/// With more clients than the parallel fan-out threshold, every client gets every
/// broadcast, in order.
#[test]
fn broadcast_to_many_clients_reaches_every_one_in_order() {
    const CLIENTS: usize = 1100;
    let server = start_with(|c| {
        c.interval = None;
        c.heartbeat = None;
        c.client_stack_size = 64 << 10;
    });
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(&server)).collect();
    for client in &mut clients {
        client.welcome();
    }
    // Join notices may still be on their way; they are skipped below, but must
    // only name our clients.
    let newest = CLIENTS as u64;
    let publisher = server.publisher();
    for i in 0..3 {
        publisher.publish_text(format!("broadcast {i}")).unwrap();
    }
    for (n, client) in clients.iter_mut().enumerate() {
        let mut got = Vec::new();
        while got.len() < 3 {
            match client.next_message() {
                Message::Text(text) if text.starts_with("broadcast ") => got.push(text.to_string()),
                Message::Text(text) => {
                    let notice: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(notice["type"], "join", "client {n}: {text}");
                    assert!(notice["ids"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|id| id.as_u64().unwrap() <= newest));
                }
                other => panic!("client {n}: unexpected {other:?}"),
            }
        }
        assert_eq!(
            got,
            ["broadcast 0", "broadcast 1", "broadcast 2"],
            "client {n}"
        );
    }
    drop(clients);
    server.shutdown();
}
