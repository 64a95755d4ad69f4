//! How the hub takes part in a cluster: where its presence notices go, and what
//! it knows of the other nodes. No thread of its own: the cluster's threads
//! (`crate::cluster`, with the `redis` feature) keep [`ClusterState`] up to date
//! and read the notices; the hub only reads the state and sends notices.
//!
//! On one node there is no link, and the hub announces joins and leaves to its
//! own clients. In a cluster, while Redis can be reached, it hands them to the
//! cluster instead, which appends them to the shared stream: every node, this
//! one too, reads them back and announces them, with the count of the whole
//! cluster. While Redis cannot be reached, the hub announces them itself again,
//! to its own clients, counting what it last knew of the others.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;

use super::Publication;

/// What a node knows of its cluster, kept up to date by the cluster's threads.
#[derive(Default)]
pub(crate) struct ClusterState {
    /// Whether this node can reach Redis and reads the stream.
    up: AtomicBool,
    /// Clients on the other nodes, as they last reported.
    clients_elsewhere: AtomicU64,
}

impl ClusterState {
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    pub(crate) fn clients_elsewhere(&self) -> u64 {
        self.clients_elsewhere.load(Ordering::Relaxed)
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_clients_elsewhere(&self, clients: u64) {
        self.clients_elsewhere.store(clients, Ordering::Relaxed);
    }
}

/// The hub's end of the cluster.
pub(crate) struct ClusterLink {
    /// The cluster's state, shared with its threads.
    pub(crate) state: Arc<ClusterState>,
    /// Join and leave notices, to be appended to the stream. Unbounded: the hub
    /// sends at most a few per presence window, and must never wait on Redis.
    pub(crate) presence_tx: Sender<Publication>,
}
