//! Several tickcast nodes as one, on a real `redis-server` (built with
//! `--features redis`; `cargo test --features redis --test cluster`). Each test
//! starts its own Redis on a free port; without `redis-server` installed the
//! tests say so and pass, except in CI (`CI=true`), where they fail.
//!
//! One binary, with the integration tests' helpers (`tests/it/util.rs`).

#[path = "../it/sse_client.rs"]
mod sse_client;
#[path = "../it/util.rs"]
mod util;

mod redis;

mod delivery;
mod faults;
mod presence;
mod resume;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tickcast::{Config, Server};

pub use crate::util::next_event;
use crate::util::{http_get, http_raw, test_config};

/// Tells apart the key prefixes of clusters started by one test binary.
static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// A key prefix no other test uses.
pub fn unique_key() -> String {
    let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
    format!("test{}-{n}", std::process::id())
}

/// A node's config: free ports, no ticks (so that what clients read is what
/// tests publish), on the cluster `key` of the Redis at `url`.
pub fn node_config(url: &str, key: &str) -> Config {
    Config {
        interval: None,
        redis: Some(url.to_string()),
        redis_key: key.to_string(),
        ..test_config()
    }
}

/// Starts a node and waits until it is in the cluster (`/healthz` says 200).
pub fn start_node(config: Config) -> Server {
    let server = Server::start(config).expect("node starts");
    wait_healthy(&server);
    server
}

/// `count` nodes on one cluster.
pub fn start_cluster(url: &str, count: usize) -> Vec<Server> {
    let key = unique_key();
    (0..count)
        .map(|_| start_node(node_config(url, &key)))
        .collect()
}

pub fn healthz(server: &Server) -> u16 {
    http_get(server.http_addr().unwrap(), "/healthz").0
}

pub fn wait_healthy(server: &Server) {
    wait_for(
        "the node to be in the cluster (/healthz 200)",
        Duration::from_secs(10),
        || healthz(server) == 200,
    );
}

/// Waits up to `limit` for `condition`, looking again every 20 ms: for what the
/// test can only see by asking (a health check, a gauge a thread updates).
pub fn wait_for(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "never happened within {limit:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `POST /publish` on a node: (status, body).
pub fn publish_http(server: &Server, query: &str, body: &str) -> (u16, String) {
    post(server.http_addr().unwrap(), query, body)
}

pub fn post(addr: SocketAddr, query: &str, body: &str) -> (u16, String) {
    let (status, _, body) = http_raw(
        addr,
        &format!(
            "POST /publish{query} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    (status, String::from_utf8(body).unwrap())
}

/// Publishes over HTTP and returns the id.
pub fn publish_ok(server: &Server, body: &str) -> u64 {
    let (status, answer) = publish_http(server, "", body);
    assert_eq!(status, 202, "publish answered {status}: {answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    answer["id"].as_u64().unwrap()
}

/// A metric's value on a node (the first sample of that name).
pub fn metric(server: &Server, name: &str) -> u64 {
    let (_, _, body) = http_get(server.http_addr().unwrap(), "/metrics");
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no metric {name}"))
}

/// The node number in a client id (ids are the node number × 2^33 + a count).
pub fn node_of(client_id: u64) -> u64 {
    client_id >> 33
}
