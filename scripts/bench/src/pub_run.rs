//! The JSON result of one pubbench run ([`PubRun`]), shared by pubbench, which
//! writes it, and [`crate::pub_report`], which turns a directory of them into
//! `publish.md` or `cluster.md`.
//!
//! Fields added for the cluster benchmark (`nodes`, `redis`, `spread_ms`, …)
//! default to empty, so the results of older runs still read.

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// One run: subscribers on one node or spread over several, publishers on the
/// first node's HTTP port (or ticks, with no publishers).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PubRun {
    pub server: String,
    /// What the nodes were, for the cluster report's headings, e.g. "3 nodes ×
    /// 5000 clients, Redis"; empty for `publish` runs.
    pub setup: String,
    pub subscribers: usize,
    pub topics: usize,
    pub publishers: usize,
    /// The body size asked for, bytes (0 for a tick run).
    pub body_bytes: usize,
    /// Publishes per second asked for; 0 for as fast as possible.
    pub rate: f64,
    /// The size of the frame payload subscribers got (a message, or a tick).
    pub frame_bytes: usize,
    /// The publish phase (or the tick phase), seconds.
    pub seconds: f64,
    /// How long the join notices took to die down after the last welcome,
    /// before the publish phase began, seconds.
    pub settle_s: f64,
    /// Publishes answered 202 (0 for a tick run).
    pub publishes: u64,
    pub publishes_per_s: f64,
    /// Publishes answered with another status (503 while a node is out of its
    /// cluster): not sent, so no subscriber is owed them, but a failed run.
    pub refused: u64,
    /// Messages (or ticks) delivered to subscribers during the publish phase.
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    /// Publish-to-receive, milliseconds: the publisher's clock just before it
    /// writes the request, to the kernel's receive timestamp of the frame.
    pub latency_ms: Summary,
    /// Fan-out spread per message, milliseconds: from the first subscriber
    /// (on any node) to receive it to the last.
    pub spread_ms: Summary,
    /// pubbench's own lag, milliseconds: from the kernel's receive timestamp to
    /// when pubbench read the frame (every 8th message per subscriber). Large
    /// values mean pubbench was short of CPU, not the server slow.
    pub lag_ms: Summary,
    /// The publisher's POST round trip, milliseconds.
    pub post_ms: Summary,
    /// The nodes' CPU (all of them) per delivered message, microseconds.
    pub cpu_us_per_delivery: f64,
    /// The nodes' CPU (all of them) per publish (or per tick), microseconds.
    pub cpu_us_per_event: f64,
    /// The nodes' CPU over the publish phase, as a share of one core.
    pub cpu_cores: f64,
    /// Per node, in `--ws` order: subscriber `i` is on node `i % nodes`.
    pub nodes: Vec<NodeRun>,
    /// Redis's share, when pubbench was given its PID.
    pub redis: Option<RedisRun>,
    /// Publishers that stopped before the end: their connection failed.
    pub publishers_failed: u64,
    /// Messages some node sent with another id than the one the publisher was
    /// answered with: the nodes disagree about the stream.
    pub id_mismatches: u64,
    /// `reset` notices received, all subscribers together: a node told its
    /// clients it had missed events.
    pub resets: u64,
    /// Subscribers that missed a message of their topic, got one twice or out
    /// of order, were never welcomed, or were lost.
    pub clients_missing: usize,
    /// The first few problems, described: which subscriber on which node
    /// missed what, a refused publish, a mismatched id.
    pub worst: Vec<String>,
}

/// One node's share of a run.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeRun {
    /// Its WebSocket URL.
    pub url: String,
    pub pid: u32,
    pub subscribers: usize,
    /// Messages delivered to its subscribers during the publish phase.
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    /// Publish (on the first node) to receive (on this one), milliseconds.
    pub latency_ms: Summary,
    /// First to last of its subscribers, per message, milliseconds.
    pub spread_ms: Summary,
    /// Its CPU over the publish phase, seconds (`/proc/PID/stat`).
    pub cpu_s: f64,
    pub cpu_cores: f64,
    pub cpu_us_per_delivery: f64,
    pub clients_missing: usize,
}

/// Redis's share of a run: what the stream costs.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisRun {
    pub pid: u32,
    /// CPU over the publish phase, seconds, from `/proc/PID/stat` (user +
    /// system, in clock ticks of 10 ms).
    pub cpu_s: f64,
    /// The same from its threads' `schedstat`, to the nanosecond: what the per
    /// publish figure uses, since a few hundred appends cost only a few ticks.
    pub cpu_s_precise: f64,
    /// Redis CPU per publish, microseconds, its idle CPU taken out: the
    /// append, and every node's `XREAD` of it.
    pub cpu_us_per_publish: f64,
    /// The same with its idle CPU left in.
    pub cpu_us_per_publish_gross: f64,
    /// Over the publish phase, as a share of one core.
    pub cpu_cores: f64,
    /// Over one quiet second before the publish phase, every node connected:
    /// its own timers and the nodes' once-a-second bookkeeping.
    pub idle_cores: f64,
    /// Resident memory after the publish phase, KiB.
    pub rss_kib: u64,
}

impl PubRun {
    /// Whether the run lost nothing, was refused nothing, and every publisher
    /// ran to the end.
    pub fn is_clean(&self) -> bool {
        self.clients_missing == 0
            && self.refused == 0
            && self.publishers_failed == 0
            && self.id_mismatches == 0
    }
}
