//! [`Shared`]: what every connection thread gets, built once by the server.
//!
//! The listeners hand an `Arc<Shared>` to each connection thread they start. Most
//! of it is read-only; what changes (the registry, the counters, the stop flag)
//! takes care of its own locking. No thread of its own.

use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::client_event::ClientEventsTx;
use crate::hub::{ClusterState, HubEvent};
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::registry::Registry;
use crate::shutdown::StopFlag;
use crate::Config;

/// What the listeners and every connection thread share. Built once by the server.
pub(crate) struct Shared {
    /// Every setting, as given.
    pub(crate) config: Config,
    /// `--max-clients`, or what the machine can hold when it is not given.
    pub(crate) max_clients: usize,
    /// tungstenite's settings for every client, derived from `config` once.
    pub(crate) ws_config: tungstenite::protocol::WebSocketConfig,
    /// Joins, leaves and shutdown, to the hub.
    pub(crate) events_tx: Sender<HubEvent>,
    /// Client messages to the embedding program, if it asked for them
    /// ([`Config::client_events`]).
    pub(crate) client_events_tx: Option<ClientEventsTx>,
    /// The page's URL, for the 400 answer to plain HTTP requests on this port.
    pub(crate) page_url: Option<String>,
    /// The Flash policy document, if `--flash-policy-addr` is set: the WebSocket
    /// port answers an in-band policy request with it too.
    pub(crate) flash_policy: Option<Arc<[u8]>>,
    /// The port WebSocket clients connect to, for the page's `/config.json`.
    pub(crate) ws_port: u16,
    /// Every live connection thread; the limits are checked against it.
    pub(crate) registry: Arc<Registry>,
    /// Raised when shutdown begins: `/healthz` answers 503, HTTP connections are
    /// no longer kept alive, new SSE streams are refused.
    pub(crate) stopping: StopFlag,
    /// How `POST /publish` hands messages to the hub (ids included).
    pub(crate) publisher: Publisher,
    /// The counters every thread bumps.
    pub(crate) metrics: Arc<Metrics>,
    /// What this node knows of its cluster, if it is part of one.
    pub(crate) cluster: Option<Arc<ClusterState>>,
}
