//! Resuming on another node: event ids are the cluster's, so a client that
//! comes back through the load balancer to a different node, with the id of the
//! last event it saw, gets exactly what it missed.

use crate::redis::Redis;
use crate::sse_client::SseClient;
use crate::util::Client;
use crate::{next_event, node_config, publish_ok, start_cluster, start_node, unique_key};

/// A WebSocket client leaves node 1 and resumes on node 3 with `?since=`; an
/// SSE client leaves node 1 and resumes on node 2 with `Last-Event-ID`. Both
/// get every event published meanwhile (on other nodes), once, in order.
#[test]
fn a_client_resumes_on_another_node_with_an_id_from_the_first() {
    let Some(redis) = Redis::start() else { return };
    let nodes = start_cluster(&redis.url(), 3);
    let mut ws = Client::connect(&nodes[0]);
    ws.welcome();
    let mut sse = SseClient::connect(nodes[0].http_addr().unwrap());
    sse.next_named("welcome");
    let seen = publish_ok(&nodes[0], "before");
    assert_eq!(next_event(&mut ws)["id"].as_u64(), Some(seen));
    drop(ws);
    drop(sse);

    let missed: Vec<u64> = (0..10)
        .map(|i| publish_ok(&nodes[1 + i % 2], &format!("while away {i}")))
        .collect();

    let mut ws = Client::connect_path(&nodes[2], &format!("/echo?since={seen}"));
    ws.welcome();
    let got: Vec<u64> = (0..10)
        .map(|_| next_event(&mut ws)["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, missed, "the WebSocket client on node 3");

    let mut sse = SseClient::open(
        nodes[1].http_addr().unwrap(),
        "/events",
        &format!("Last-Event-ID: {seen}\r\n"),
    );
    sse.next_named("welcome");
    let mut got = Vec::new();
    while got.len() < missed.len() {
        let event = sse.next_event().expect("the stream stays open");
        if event.name.is_none() {
            got.push(event.id.unwrap());
        }
    }
    assert_eq!(got, missed, "the SSE client on node 2");

    // And then the live stream, on both.
    let live = publish_ok(&nodes[0], "live");
    assert_eq!(next_event(&mut ws)["id"].as_u64(), Some(live));
}

/// A node that joins later loads the stream's recent events, so a client can
/// resume there from an id it got before that node existed.
#[test]
fn a_node_started_later_can_replay_what_came_before_it() {
    let Some(redis) = Redis::start() else { return };
    let key = unique_key();
    let first = start_node(node_config(&redis.url(), &key));
    let ids: Vec<u64> = (0..10)
        .map(|i| publish_ok(&first, &format!("e{i}")))
        .collect();
    let later = start_node(node_config(&redis.url(), &key));
    let mut client = Client::connect_path(&later, &format!("/echo?since={}", ids[2]));
    let welcome = client.welcome();
    assert_eq!(welcome["last_id"].as_u64(), Some(ids[9]), "{welcome}");
    let got: Vec<u64> = (0..7)
        .map(|_| next_event(&mut client)["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, ids[3..]);
}

/// An id older than the history the node holds gets a `reset`, not a replay
/// with a hole in it.
#[test]
fn an_id_older_than_the_history_gets_a_reset_on_any_node() {
    let Some(redis) = Redis::start() else { return };
    let key = unique_key();
    let small = |url: &str| {
        let mut config = node_config(url, &key);
        config.history = 5;
        config
    };
    let first = start_node(small(&redis.url()));
    // A watcher that gets the newest event says `first` has read them all: a
    // client joining before that would get some live, not miss them.
    let mut watcher = Client::connect(&first);
    watcher.welcome();
    let ids: Vec<u64> = (0..10)
        .map(|i| publish_ok(&first, &format!("e{i}")))
        .collect();
    while next_event(&mut watcher)["id"].as_u64() != Some(ids[9]) {}
    let later = start_node(small(&redis.url()));
    for node in [&first, &later] {
        let mut client = Client::connect_path(node, &format!("/echo?since={}", ids[1]));
        client.welcome();
        let reset = next_event(&mut client);
        assert_eq!(reset["type"], "reset", "{reset}");
        assert_eq!(reset["last_id"].as_u64(), Some(ids[9]));
        // The newest five are kept: from the fifth, a replay.
        let mut client = Client::connect_path(node, &format!("/echo?since={}", ids[4]));
        client.welcome();
        let got: Vec<u64> = (0..5)
            .map(|_| next_event(&mut client)["id"].as_u64().unwrap())
            .collect();
        assert_eq!(got, ids[5..]);
    }
}
