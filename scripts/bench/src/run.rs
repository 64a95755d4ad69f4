//! The result of one benchmark run: what loadgen writes as JSON and report reads.
//! Times are milliseconds unless a name says otherwise.

use serde::{Deserialize, Serialize};

use crate::delivery_check::DeliveryCheck;
use crate::procstat::Sample;
use crate::stats::Summary;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// `tickcast`, `tokio`, `node`: the server under test.
    pub server: String,
    /// `scale`, `stress`, `smoke`: which kind of run.
    pub mode: String,
    pub clients: usize,
    pub interval_ms: f64,
    pub params: Params,
    pub connect: Connect,
    pub delivery: Delivery,
    /// Per tick: last client's kernel arrival minus first client's.
    pub spread_ms: Summary,
    /// The same, tick by tick in the order they were sent, to see whether a high
    /// p99 is one odd tick or a trend.
    #[serde(default)]
    pub spread_per_tick_ms: Vec<f64>,
    /// Per tick, as `spread_per_tick_ms`: the first client's kernel arrival,
    /// nanoseconds since the epoch (to line the ticks up with a server's own
    /// timeline).
    #[serde(default)]
    pub first_rx_per_tick_ns: Vec<i64>,
    /// Per tick, as `spread_per_tick_ms`: the spread of its exactly timed frames
    /// (see `spread_exact_ms`), or -1 if it had none.
    #[serde(default)]
    pub spread_exact_per_tick_ms: Vec<f64>,
    /// Spread again, counting only the frames whose arrival time is exact.
    ///
    /// A frame still unread when the client's next frame arrives gets that
    /// frame's kernel timestamp (TCP merges the two in the receive queue, or
    /// one read returns both, and the timestamp is the newer segment's): its
    /// own arrival is only known to be no later. Those frames are left out
    /// here, so this is a lower bound of the spread and `spread_ms` an upper
    /// one. They differ when loadgen falls more than a tick interval behind on
    /// some sockets; see `frames_timed_late`.
    #[serde(default)]
    pub spread_exact_ms: Option<Summary>,
    /// The share of the frames whose timestamp is a later frame's (above).
    #[serde(default)]
    pub frames_timed_late: f64,
    /// Per delivered tick: kernel arrival minus the tick's `time` field.
    pub latency_ms: Summary,
    /// loadgen's own CPU during the load phase, % of one core: what it took
    /// from the cores it shares with the server.
    #[serde(default)]
    pub loadgen_cpu_pct: Option<f64>,
    /// How long loadgen took to parse a frame after the kernel had it (its own
    /// lag; high values mean loadgen was short of CPU, not the server).
    pub loadgen_lag_ms: Summary,
    pub echo: Echo,
    pub notices: Notices,
    pub close: Close,
    pub process: Process,
    pub derived: Derived,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Params {
    pub url: String,
    pub ramp_per_s: f64,
    pub ramp_concurrency: usize,
    pub settle_s: f64,
    pub rest_s: f64,
    pub load_s: f64,
    pub echo_clients: usize,
    pub echo_every_ms: f64,
    pub loadgen_threads: usize,
    /// The longest the clients kept reading after the window ended (`--drain`).
    #[serde(default)]
    pub drain_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connect {
    pub ok: usize,
    pub failed: usize,
    /// Up to five distinct failure messages, with counts.
    pub errors: Vec<(String, usize)>,
    /// TCP connect until the welcome frame, per client.
    pub time_ms: Summary,
    /// First connect started until the last welcome, seconds.
    pub ramp_s: f64,
}

/// What reached whom. Two views: the fan-out window (the ticks made while every
/// client was connected, for spread and the delivery ratio), and the
/// per-client check of issue 9 (flattened in: `clients_checked`,
/// `clients_missing`, `ticks_missing`, `worst`, …), which holds each client to
/// every tick made after its own 101 and is what `--require-full-delivery`
/// enforces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    /// The fan-out window of tick seqs, inclusive: from the first tick after
    /// everyone connected to the newest one seen when the load phase ended.
    pub first_seq: u64,
    pub last_seq: u64,
    pub ticks: u64,
    /// ticks × connected clients.
    pub expected: u64,
    /// (client, seq) pairs received within the fan-out window.
    pub delivered: u64,
    pub ratio: f64,
    /// Ticks every connected client received.
    pub ticks_complete: u32,
    /// The end of the measured window (the load phase), ns since the epoch: no
    /// client is owed a tick made after it.
    #[serde(default)]
    pub window_end_ns: i64,
    /// How long the drain after the window took, seconds: until every client
    /// had a tick made after the window, or `--drain` ran out.
    #[serde(default)]
    pub drain_s: f64,
    /// The per-client check: see [`DeliveryCheck`].
    #[serde(flatten)]
    pub check: DeliveryCheck,
    /// Connections the server ended before loadgen closed them.
    pub ended_early: usize,
    /// Up to five distinct reasons, with counts.
    pub ended_early_reasons: Vec<(String, usize)>,
    /// Tick frames delivered per second, all clients, during the load phase.
    pub frames_per_s: f64,
    /// Ticks the server published per second during the load phase.
    pub ticks_per_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echo {
    pub clients: usize,
    pub sent: u64,
    pub received: u64,
    /// Our write until the kernel received the echo back.
    pub rtt_ms: Summary,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notices {
    pub joins: u64,
    pub leaves: u64,
    pub pings: u64,
    pub others: u64,
    pub protocol_errors: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Close {
    /// Clients that sent close 1000 and got the server's close frame back.
    pub clean: usize,
    pub unclean: usize,
    /// Close codes the server sent first (before we closed), with counts.
    pub server_codes: Vec<(u16, usize)>,
}

/// `/proc` samples of the server process at each phase boundary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    /// Before any client connected.
    pub before: Sample,
    /// Every client connected and settled, ticks only.
    pub rest_start: Sample,
    pub rest_end: Sample,
    /// Ticks plus echoes.
    pub load_start: Sample,
    pub load_end: Sample,
    /// Largest RSS and thread count seen while loaded (sampled once a second).
    pub load_max_rss_kib: u64,
    pub load_max_threads: u64,
    /// Right after every client finished closing.
    pub closed: Sample,
    /// A few seconds later.
    pub after: Sample,
    /// Summed thread run time in the quiet part of each tick interval during
    /// rest (from 50 % to 95 % of the interval), as % of one core.
    pub idle_between_ticks_cpu_pct: Option<f64>,
    /// At the end of rest, with `--stack-kib`: the client threads' stacks, as
    /// (resident KiB, threads) pairs (tickcast only).
    #[serde(default)]
    pub client_stack_rss_kib: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Derived {
    /// (RSS at rest − RSS before clients) / clients, KiB.
    pub rss_per_client_kib: f64,
    /// (machine-wide kernel stack memory at rest − before) / clients, KiB: the
    /// kernel's share of a thread per client, which RSS does not show.
    #[serde(default)]
    pub kernel_stack_per_client_kib: f64,
    /// Server CPU over the rest phase, % of one core (ticks, no echoes).
    pub rest_cpu_pct: f64,
    /// Server CPU over the load phase, % of one core.
    pub load_cpu_pct: f64,
    /// Server CPU per broadcast during rest (one tick to every client), ms.
    pub cpu_per_broadcast_ms: f64,
    /// Server CPU per delivered tick frame during load, in seconds per million.
    pub cpu_s_per_million_frames: f64,
}
