//! Presence across the cluster: joins and leaves on one node are announced on
//! every node, with the count of the whole cluster.

use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;

use crate::redis::Redis;
use crate::util::Client;
use crate::{metric, start_cluster, wait_for};

/// A join on node 2 is announced on nodes 1 and 3 with the cluster's count, the
/// joiner's welcome counts every node's clients, the gauges agree within 5 s,
/// and its leave is announced everywhere too.
#[test]
fn a_join_on_one_node_is_announced_on_the_others_with_the_cluster_count() {
    let Some(redis) = Redis::start() else { return };
    let nodes = start_cluster(&redis.url(), 3);
    let mut a = Client::connect(&nodes[0]);
    a.welcome();
    let mut c = Client::connect(&nodes[2]);
    c.welcome();
    // Each node reports its count once a second; wait until node 2 knows of both.
    wait_for(
        "node 2 to count the clients of 1 and 3",
        Duration::from_secs(5),
        || metric(&nodes[1], "tickcast_cluster_clients") == 2,
    );
    // The notices of a's and c's own joins may come first.
    let mut b = Client::connect(&nodes[1]);
    let welcome = b.welcome();
    assert_eq!(welcome["clients"], 3, "the welcome counts the cluster");
    let b_id = welcome["id"].as_u64().unwrap();
    for (name, client) in [("a on node 1", &mut a), ("c on node 3", &mut c)] {
        loop {
            let join = client.next_of_type("join");
            if join["ids"].as_array().unwrap().contains(&b_id.into()) {
                assert_eq!(join["clients"], 3, "{name}: {join}");
                break;
            }
        }
    }
    for node in &nodes {
        wait_for(
            "every node to count 3 clients",
            Duration::from_secs(5),
            || metric(node, "tickcast_cluster_clients") == 3,
        );
    }
    b.ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    for (name, client) in [("a on node 1", &mut a), ("c on node 3", &mut c)] {
        let leave = client.next_of_type("leave");
        assert_eq!(leave["ids"], serde_json::json!([b_id]), "{name}");
        assert_eq!(leave["clients"], 2, "{name}: {leave}");
        assert_eq!(leave["reason"], "closed", "{name}");
    }
}
