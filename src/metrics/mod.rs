//! Counters every thread bumps, and their Prometheus text rendering for `/metrics`.
//!
//! One [`Metrics`] value is shared (behind an `Arc`) by the hub, the listener, every
//! connection thread, the ticker and the HTTP workers. Every field is an atomic
//! updated with `Relaxed` ordering: each counter is independent, and a scrape that
//! sees one a moment before another is fine for monitoring. No thread of its own.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::message::LeaveReason;
pub(crate) use labels::{
    ClientEventKind, Counters, HttpClose, JoinFailure, Label, Rejection, ResumeOutcome,
};

mod labels;

/// Why a handshake on the WebSocket port was refused, by HTTP status.
const HANDSHAKE_CAUSES: [(u16, &str); 8] = [
    (400, "bad_request"),
    (403, "forbidden_origin"),
    (404, "not_found"),
    (405, "bad_method"),
    (408, "timeout"),
    (426, "upgrade_required"),
    (431, "too_large"),
    (503, "full"),
];

/// Why the server closed a connection for what the client sent, by close code.
const BAD_FRAME_CLOSES: [(u16, &str); 4] = [
    (1002, "protocol_error"),
    (1007, "invalid_utf8"),
    (1009, "too_big"),
    (1011, "internal_error"),
];

/// Where `code` sits in a (code, cause) table.
fn code_index(table: &[(u16, &str)], code: u16) -> Option<usize> {
    table.iter().position(|(c, _)| *c == code)
}

/// One sample per row of a (code, cause) table, labelled
/// `{cause="…",<code_label>="…"}`, with the row's counter.
fn by_code(table: &[(u16, &str)], counters: &[AtomicU64], code_label: &str) -> Vec<(String, u64)> {
    table
        .iter()
        .zip(counters)
        .map(|((code, cause), c)| {
            let labels = format!("{{cause=\"{cause}\",{code_label}=\"{code}\"}}");
            (labels, c.load(Ordering::Relaxed))
        })
        .collect()
}

/// The server's counters. See the module docs.
#[derive(Default)]
pub(crate) struct Metrics {
    /// Clients welcomed by the hub and not yet gone (the hub stores its map's size).
    pub(crate) clients: AtomicU64,
    /// Client connections open: WebSocket (handshakes included) and SSE streams.
    /// Set by the registry.
    pub(crate) connections: AtomicU64,
    /// HTTP connections open, SSE streams not included. Set by the registry.
    pub(crate) http_connections: AtomicU64,
    /// Connections accepted on the HTTP port.
    pub(crate) http_accepted: AtomicU64,
    /// How HTTP connections ended.
    pub(crate) http_closed: Counters<HttpClose>,
    /// HTTP requests answered (SSE streams included).
    pub(crate) http_requests: AtomicU64,
    /// Clients welcomed since start.
    pub(crate) joined: AtomicU64,
    /// Clients gone, by reason.
    pub(crate) left: Counters<LeaveReason>,
    /// Indexed like [`HANDSHAKE_CAUSES`].
    handshake_failures: [AtomicU64; 8],
    /// Indexed like [`BAD_FRAME_CLOSES`].
    bad_frame_closes: [AtomicU64; 4],
    /// Connections accepted on the WebSocket port.
    pub(crate) accepted: AtomicU64,
    /// Connections the WebSocket listener closed at once, by cause.
    pub(crate) rejected: Counters<Rejection>,
    /// Connections that ended before their handshake request was complete.
    pub(crate) handshakes_abandoned: AtomicU64,
    /// Handshakes that never became a client, by cause.
    pub(crate) joins_failed: Counters<JoinFailure>,
    /// In-band Flash policy requests answered on the WebSocket port.
    pub(crate) flash_policy_answers: AtomicU64,
    /// Frames (broadcasts, presence notices, welcomes, pings) the hub wrote.
    pub(crate) frames_sent: AtomicU64,
    /// Bytes of the frames counted in `frames_sent`.
    pub(crate) bytes_sent: AtomicU64,
    /// Client messages received (text and binary).
    pub(crate) messages_received: AtomicU64,
    /// Client messages echoed back (with `Config::echo`).
    pub(crate) messages_echoed: AtomicU64,
    /// Clients cut off past `--max-backlog`.
    pub(crate) backlog_cutoffs: AtomicU64,
    /// Client events the program's queue had no room for, by kind.
    pub(crate) client_events_dropped: Counters<ClientEventKind>,
    /// Published events (messages and lines, with an id) the hub has sent.
    pub(crate) published: AtomicU64,
    /// Clients that asked to resume after an id, by what they got.
    pub(crate) resumes: Counters<ResumeOutcome>,
    /// Messages for one client that had gone when the hub came to send them.
    pub(crate) undeliverable: AtomicU64,
    /// Failed `accept`s on either port.
    pub(crate) accept_errors: AtomicU64,
    /// The latest tick's `seq`.
    pub(crate) tick_seq: AtomicU64,
    /// Tick slots skipped because the ticker fell behind.
    pub(crate) ticks_skipped: AtomicU64,
    /// Nodes in the cluster (this one included), as last counted.
    pub(crate) cluster_nodes: AtomicU64,
    /// Times the node connected to Redis again after losing it.
    pub(crate) cluster_reconnects: AtomicU64,
    /// Stream entries read and handed to the hub.
    pub(crate) cluster_events_read: AtomicU64,
    /// Stream entries skipped as not tickcast's.
    pub(crate) cluster_entries_invalid: AtomicU64,
    /// Appends that failed (publishes answered 503, notices announced locally).
    pub(crate) cluster_appends_failed: AtomicU64,
}

/// What `/metrics` shows of a cluster, read from its state by the caller.
pub(crate) struct ClusterGauges {
    /// Whether the node reads the stream.
    pub(crate) up: bool,
    /// Clients on the other nodes.
    pub(crate) clients_elsewhere: u64,
}

impl Metrics {
    pub(crate) fn handshake_failed(&self, status: u16) {
        // Every status the handshake code sends is listed; an unknown one counts
        // as a bad request rather than vanishing.
        let i = code_index(&HANDSHAKE_CAUSES, status).unwrap_or(0);
        self.handshake_failures[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection the server closed with `code` over a bad frame.
    pub(crate) fn closed_for_bad_frame(&self, code: u16) {
        if let Some(i) = code_index(&BAD_FRAME_CLOSES, code) {
            self.bad_frame_closes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition format (version 0.0.4); `up` is whether the
    /// server is serving (not shutting down); `cluster` is given in a cluster.
    pub(crate) fn render(&self, up: bool, cluster: Option<ClusterGauges>) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP tickcast_{name} {help}");
            let _ = writeln!(out, "# TYPE tickcast_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "tickcast_{name}{labels} {value}");
            }
        };
        let one = |c: &AtomicU64| [(String::new(), get(c))];
        metric(
            "up",
            "gauge",
            "1 while serving, 0 while shutting down.",
            &[(String::new(), u64::from(up))],
        );
        metric(
            "clients",
            "gauge",
            "Clients connected and welcomed.",
            &one(&self.clients),
        );
        metric(
            "connections",
            "gauge",
            "Client connections open: WebSocket (handshakes included) and SSE streams.",
            &one(&self.connections),
        );
        metric(
            "clients_joined_total",
            "counter",
            "Clients welcomed since start.",
            &one(&self.joined),
        );
        metric(
            "clients_left_total",
            "counter",
            "Clients gone since start, by reason.",
            &self.left.samples("reason"),
        );
        metric(
            "connections_accepted_total",
            "counter",
            "TCP connections accepted on the WebSocket port. Each ends as exactly one of: \
             rejected, handshake abandoned, handshake failure, join failed, client joined \
             (or is still open).",
            &one(&self.accepted),
        );
        metric(
            "connections_rejected_total",
            "counter",
            "Connections closed by the WebSocket listener before any thread read them, by cause.",
            &self.rejected.samples("cause"),
        );
        metric(
            "handshakes_abandoned_total",
            "counter",
            "Connections that ended before their handshake request was complete.",
            &one(&self.handshakes_abandoned),
        );
        metric(
            "flash_policy_answers_total",
            "counter",
            "Flash policy requests answered on the WebSocket port.",
            &one(&self.flash_policy_answers),
        );
        metric(
            "joins_failed_total",
            "counter",
            "Handshakes that passed every check but never became a client, by cause.",
            &self.joins_failed.samples("cause"),
        );
        metric(
            "handshake_failures_total",
            "counter",
            "Handshakes refused with an HTTP error, by cause.",
            &by_code(&HANDSHAKE_CAUSES, &self.handshake_failures, "status"),
        );
        metric(
            "bad_frame_closes_total",
            "counter",
            "Connections closed by the server over what the client sent, by close code.",
            &by_code(&BAD_FRAME_CLOSES, &self.bad_frame_closes, "code"),
        );
        metric(
            "http_connections",
            "gauge",
            "HTTP connections open (SSE streams are counted as clients instead).",
            &one(&self.http_connections),
        );
        metric(
            "http_connections_accepted_total",
            "counter",
            "TCP connections accepted on the HTTP port. Each ends as one of \
             http_connections_closed_total, or is still open.",
            &one(&self.http_accepted),
        );
        metric(
            "http_connections_closed_total",
            "counter",
            "HTTP connections ended, by reason.",
            &self.http_closed.samples("reason"),
        );
        metric(
            "http_requests_total",
            "counter",
            "HTTP requests answered.",
            &one(&self.http_requests),
        );
        metric(
            "frames_sent_total",
            "counter",
            "Frames the hub wrote to clients: one per client per message, welcomes and pings included.",
            &one(&self.frames_sent),
        );
        metric(
            "bytes_sent_total",
            "counter",
            "Bytes of those frames.",
            &one(&self.bytes_sent),
        );
        metric(
            "messages_echoed_total",
            "counter",
            "Client messages echoed back (counted as they arrive; none with echo off).",
            &one(&self.messages_echoed),
        );
        metric(
            "messages_received_total",
            "counter",
            "Text and binary messages received from clients.",
            &one(&self.messages_received),
        );
        metric(
            "backlog_cutoffs_total",
            "counter",
            "Clients cut off because their backlog passed --max-backlog.",
            &one(&self.backlog_cutoffs),
        );
        metric(
            "client_events_dropped_total",
            "counter",
            "Client events the embedding program's queue had no room for, by kind.",
            &self.client_events_dropped.samples("kind"),
        );
        metric(
            "events_published_total",
            "counter",
            "Published events (POST /publish, Publisher::publish, --stdin lines) the hub has sent.",
            &one(&self.published),
        );
        metric(
            "resumes_total",
            "counter",
            "Clients that joined asking to resume after an event id, by outcome: replayed \
             (what they missed, perhaps nothing) or reset (some was no longer kept).",
            &self.resumes.samples("outcome"),
        );
        metric(
            "undeliverable_messages_total",
            "counter",
            "Messages sent to one client (Publisher::send_to) that had gone by then.",
            &one(&self.undeliverable),
        );
        metric(
            "accept_errors_total",
            "counter",
            "Failed accepts on the WebSocket port (e.g. out of file descriptors).",
            &one(&self.accept_errors),
        );
        metric(
            "tick_seq",
            "gauge",
            "Sequence number of the latest tick: intervals since 1970.",
            &one(&self.tick_seq),
        );
        metric(
            "ticks_skipped_total",
            "counter",
            "Tick slots skipped because the ticker fell more than a second behind (a suspended machine); slots missed by less are sent late.",
            &one(&self.ticks_skipped),
        );
        if let Some(cluster) = cluster {
            metric(
                "cluster_up",
                "gauge",
                "1 while this node reads the cluster's stream in Redis, 0 while it cannot.",
                &[(String::new(), u64::from(cluster.up))],
            );
            metric(
                "cluster_nodes",
                "gauge",
                "Nodes in the cluster, this one included, as last counted.",
                &one(&self.cluster_nodes),
            );
            metric(
                "cluster_clients",
                "gauge",
                "Clients on every node of the cluster: this node's now, the others' as last reported.",
                &[(String::new(), get(&self.clients) + cluster.clients_elsewhere)],
            );
            metric(
                "cluster_reconnects_total",
                "counter",
                "Times this node connected to Redis again after losing it.",
                &one(&self.cluster_reconnects),
            );
            metric(
                "cluster_events_read_total",
                "counter",
                "Stream entries read and handed to the hub (events of every node, notices included).",
                &one(&self.cluster_events_read),
            );
            metric(
                "cluster_entries_invalid_total",
                "counter",
                "Stream entries skipped because they are not tickcast's.",
                &one(&self.cluster_entries_invalid),
            );
            metric(
                "cluster_appends_failed_total",
                "counter",
                "Appends to the stream that failed: publishes answered 503, notices announced locally.",
                &one(&self.cluster_appends_failed),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::default();
        m.left.add(LeaveReason::TooSlow);
        m.handshake_failed(404);
        m.tick_seq.store(42, Ordering::Relaxed);
        let text = m.render(true, None);
        assert!(text.contains("tickcast_clients_left_total{reason=\"too_slow\"} 1\n"));
        assert!(text
            .contains("tickcast_handshake_failures_total{cause=\"not_found\",status=\"404\"} 1\n"));
        assert!(text.contains("tickcast_tick_seq 42\n"));
        assert!(text.contains("tickcast_up 1\n"));
        assert!(text.contains("# TYPE tickcast_frames_sent_total counter\n"));
    }
}
