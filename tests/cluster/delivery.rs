//! One path for every event: whichever node accepts a publish, every client on
//! every node gets it, once, with the same id, in the same order.

use std::collections::HashSet;
use std::thread;

use serde_json::Value;

use crate::redis::Redis;
use crate::sse_client::SseClient;
use crate::util::Client;
use crate::{next_event, node_of, publish_http, publish_ok, start_cluster};

/// Publishes from every node at once (HTTP and the library), to 3 × 100
/// WebSocket and 3 × 4 SSE clients; every client, checked one by one, gets every
/// event exactly once, in id order, which is the stream's order.
#[test]
fn publishes_on_any_node_reach_every_client_on_every_node_in_one_order() {
    let Some(redis) = Redis::start() else { return };
    let nodes = start_cluster(&redis.url(), 3);
    let mut ws: Vec<(usize, Client)> = Vec::new();
    let mut sse: Vec<(usize, SseClient)> = Vec::new();
    let mut client_ids = HashSet::new();
    for (n, node) in nodes.iter().enumerate() {
        for _ in 0..100 {
            let mut client = Client::connect(node);
            let id = client.welcome()["id"].as_u64().unwrap();
            assert!(client_ids.insert(id), "client id {id} given twice");
            ws.push((n, client));
        }
        for _ in 0..4 {
            let mut client = SseClient::connect(node.http_addr().unwrap());
            let (_, welcome) = client.next_named("welcome");
            let id = welcome["id"].as_u64().unwrap();
            assert!(client_ids.insert(id), "client id {id} given twice");
            sse.push((n, client));
        }
    }
    let node_numbers: HashSet<u64> = client_ids.iter().map(|&id| node_of(id)).collect();
    assert_eq!(
        node_numbers.len(),
        3,
        "each node gives ids of its own range"
    );

    // 4 publishers per node, 15 events each: HTTP on even threads, the library on odd.
    let published: Vec<u64> = thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .enumerate()
            .flat_map(|(n, node)| (0..4).map(move |t| (n, t, node)))
            .map(|(n, t, node)| {
                s.spawn(move || {
                    let publisher = node.publisher();
                    (0..15)
                        .map(|i| {
                            let body = format!(r#"{{"node":{n},"thread":{t},"i":{i}}}"#);
                            if t % 2 == 0 {
                                publish_ok(node, &body)
                            } else {
                                publisher.publish(None, &body).unwrap()
                            }
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut expected = published.clone();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(expected.len(), 180, "every publish got an id of its own");

    thread::scope(|s| {
        for (n, client) in &mut ws {
            let expected = &expected;
            s.spawn(move || {
                let got: Vec<u64> = (0..expected.len())
                    .map(|_| next_event(client)["id"].as_u64().unwrap())
                    .collect();
                assert_eq!(&got, expected, "a WebSocket client on node {n}");
            });
        }
        for (n, client) in &mut sse {
            let expected = &expected;
            s.spawn(move || {
                let mut got = Vec::new();
                while got.len() < expected.len() {
                    let event = client.next_event().expect("the stream stays open");
                    if event.name.is_none() {
                        let json: Value = serde_json::from_str(&event.data).unwrap();
                        assert_eq!(event.id, json["id"].as_u64(), "the SSE id is the event id");
                        got.push(event.id.unwrap());
                    }
                }
                assert_eq!(&got, expected, "an SSE client on node {n}");
            });
        }
    });
    // Nothing was counted as lost on the way.
    for node in &nodes {
        assert_eq!(
            crate::metric(node, "tickcast_cluster_appends_failed_total"),
            0
        );
        assert_eq!(
            crate::metric(node, "tickcast_cluster_entries_invalid_total"),
            0
        );
    }
    let (status, _) = publish_http(&nodes[0], "?topic=a%20b", "x");
    assert_eq!(
        status, 400,
        "a bad topic is refused before it reaches Redis"
    );
}

/// A topic subscriber on one node gets that topic's events from another node,
/// and nothing of other topics.
#[test]
fn topics_work_across_nodes() {
    let Some(redis) = Redis::start() else { return };
    let nodes = start_cluster(&redis.url(), 2);
    let mut prices = Client::connect_path(&nodes[1], "/echo?topic=prices");
    prices.welcome();
    let publisher = nodes[0].publisher();
    publisher.publish(Some("news"), "n1").unwrap();
    let wanted = publisher.publish(Some("prices"), "p1").unwrap();
    let msg = next_event(&mut prices);
    assert_eq!(
        (msg["id"].as_u64(), msg["topic"].as_str()),
        (Some(wanted), Some("prices"))
    );
    assert_eq!(msg["data"], "p1");
}

/// `Publisher::send_to` with a client of another node reaches that client (ids
/// are unique across the cluster) and no one else.
#[test]
fn a_message_to_one_client_reaches_it_on_its_own_node() {
    let Some(redis) = Redis::start() else { return };
    let nodes = start_cluster(&redis.url(), 2);
    let mut target = Client::connect(&nodes[1]);
    let target_id = target.welcome()["id"].as_u64().unwrap();
    let mut other = Client::connect(&nodes[0]);
    other.welcome();
    nodes[0]
        .publisher()
        .send_to(target_id, r#"{"type":"private"}"#)
        .unwrap();
    let everyone = nodes[0].publisher().publish(None, "everyone").unwrap();
    assert_eq!(next_event(&mut target)["type"], "private");
    assert_eq!(next_event(&mut target)["id"].as_u64(), Some(everyone));
    let first = next_event(&mut other);
    assert_eq!(
        first["id"].as_u64(),
        Some(everyone),
        "not the private one: {first}"
    );
}
