//! `pubbench`: the publish benchmark of issue 13, driven by `scripts/bench.sh
//! publish`, and of a cluster of nodes on one Redis, driven by
//! `scripts/bench.sh cluster`.
//!
//! One run against servers already started (by PID, by bench.sh):
//!
//! 1. **subscribe**: N WebSocket clients connect, client `i` to node `i % nodes`
//!    of the `--ws` list (round-robin) on topic `tK`, `K = (i / nodes) %
//!    topics`, and wait for their welcome; then the join notices are left to
//!    die down (until none has arrived for 500 ms, at most 30 s);
//! 2. **publish** (with `--publishers P` > 0): P publishers, each on its own
//!    kept-alive HTTP connection to `--http` (the first node), `POST
//!    /publish?topic=tK` as fast as the answers come, for `--duration`, each
//!    cycling through the topics. A body is `{"p":publisher,"s":seq,"t":sent_ns,
//!    "x":"…"}`, padded to `--size` bytes; every subscriber notes when each
//!    message arrives. With `--rate R`, the publishers together publish R per
//!    second, evenly spaced, instead: the latency and the CPU per publish at a
//!    rate the server keeps up with (as fast as possible, latency is mostly the
//!    wait in tickcast's full queue of 1,024 broadcasts, which is what slows
//!    publishers to the hub's pace);
//! 3. **drain**: wait until every subscriber has every message published to
//!    its topic (while any still arrive: until none has for 5 s, at most 60 s),
//!    then check it client by client: each must have
//!    received exactly the messages of its topic, each once, every publisher's
//!    in the order it published them, all of them in the order of their ids
//!    (the stream's order, the same on every node), each with the id its
//!    publisher was answered (`{"id":N}`). A loss names the client, its node
//!    and the message.
//!
//! With `--publishers 0` it is the tick run the publish run is compared with:
//! the server ticks (bench.sh starts it with `--interval 10ms`), and the
//! subscribers count ticks for `--duration`.
//!
//! # What is measured
//!
//! Each node's CPU time (from `/proc/PID/stat`, `--server-pid`, one per `--ws`
//! URL) over the publish phase gives the cost per message delivered and per
//! publish; with `--redis-pid`, Redis's as well. Latency is from the
//! publisher's clock reading just before it writes the request to the kernel's
//! receive timestamp of the frame at the subscriber (`SO_TIMESTAMPNS`, see
//! `tickcast_bench::rx_timestamp`): one machine, one clock, and pubbench's own
//! delay in reading the frame left out (it is reported apart, as `lag_ms`).
//! Spread is, per message, the first subscriber's receive time to the last's,
//! over every node and per node.
//!
//! `pubbench report DIR OUT.md` turns the runs' JSON files into `publish.md`;
//! `pubbench cluster-report DIR OUT.md` into `cluster.md`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tickcast_bench::procstat;
use tickcast_bench::pub_report;
use tickcast_bench::pub_run::{NodeRun, PubRun, RedisRun};
use tickcast_bench::rx_timestamp::StampedStream;
use tickcast_bench::stats::Summary;
use tickcast_bench::wallclock::now_ns;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

/// How many problems a run lists (it counts them all).
const LISTED: usize = 10;

/// What was published (answered 202), by topic: (publisher, seq) in each
/// publisher's order.
type Published = Arc<Mutex<Vec<Vec<(u32, u32)>>>>;

/// The id each publish was answered with, by (publisher, seq).
type AnsweredIds = Arc<Mutex<HashMap<(u32, u32), u64>>>;

/// What one subscriber received.
#[derive(Default)]
struct Received {
    welcomed: bool,
    /// (publisher, seq) in arrival order.
    messages: Vec<(u32, u32)>,
    /// Publish-to-receive, microseconds.
    latencies_us: Vec<u32>,
    /// Receive to pubbench reading it, microseconds, every 8th message.
    lags_us: Vec<u32>,
    /// The id of the newest message, and how many came with an id not above
    /// the one before (out of the stream's order).
    last_id: u64,
    out_of_order: u32,
    /// `reset` notices: the node says it missed events.
    resets: u32,
    ticks: u64,
    /// The length of the last message or tick payload.
    frame_bytes: usize,
    /// Set if the connection ended before the run did.
    lost: Option<String>,
}

/// When one message reached the subscribers of one node.
#[derive(Clone, Copy)]
struct Span {
    first_ns: i64,
    last_ns: i64,
    /// The id the node sent it with (the first subscriber's copy).
    id: u64,
}

/// What every subscriber task shares with the controller.
struct Shared {
    welcomed: AtomicU64,
    stop: AtomicBool,
    /// At most this many handshakes in flight.
    handshakes: Semaphore,
    /// When the newest join or leave notice arrived, ns since the epoch.
    last_notice_ns: AtomicI64,
    /// Per node: when each (publisher, seq) first and last reached one of its
    /// subscribers, for the fan-out spread and the id check.
    spans: Vec<Mutex<HashMap<(u32, u32), Span>>>,
}

struct Args {
    /// The nodes' WebSocket URLs (`--ws`, comma-separated).
    ws: Vec<String>,
    /// Their PIDs (`--server-pid`, comma-separated, in the same order).
    pids: Vec<u32>,
    http: SocketAddr,
    redis_pid: Option<u32>,
    server: String,
    setup: String,
    subscribers: usize,
    topics: usize,
    publishers: usize,
    duration: Duration,
    size: usize,
    rate: f64,
    out: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut get = HashMap::new();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        get.insert(flag, value);
    }
    let take = |name: &str| get.get(name).cloned().ok_or(format!("missing {name}"));
    let number = |name: &str| -> Result<usize, String> {
        take(name)?
            .parse()
            .map_err(|_| format!("{name}: not a number"))
    };
    let ws: Vec<String> = take("--ws")?.split(',').map(str::to_string).collect();
    let pids = take("--server-pid")?
        .split(',')
        .map(|pid| pid.parse::<u32>())
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|_| "--server-pid: PID[,PID…]".to_string())?;
    if pids.len() != ws.len() {
        return Err(format!(
            "--ws names {} nodes but --server-pid {}: one PID per URL",
            ws.len(),
            pids.len()
        ));
    }
    Ok(Args {
        ws,
        pids,
        http: take("--http")?
            .parse()
            .map_err(|_| "--http: expected IP:PORT".to_string())?,
        redis_pid: match get.get("--redis-pid") {
            Some(pid) => Some(pid.parse().map_err(|_| "--redis-pid: a PID")?),
            None => None,
        },
        server: take("--server")?,
        setup: get.get("--setup").cloned().unwrap_or_default(),
        subscribers: number("--subscribers")?,
        topics: number("--topics")?.max(1),
        publishers: number("--publishers")?,
        duration: tickcast_bench::parse_duration(&take("--duration")?)
            .ok_or("--duration: e.g. 10s")?,
        size: number("--size")?,
        rate: match get.get("--rate") {
            Some(rate) => rate.parse().map_err(|_| "--rate: publishes per second")?,
            None => 0.0,
        },
        out: take("--out")?,
    })
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(kind @ ("report" | "cluster-report")) = argv.get(1).map(String::as_str) {
        let (Some(dir), Some(out)) = (argv.get(2), argv.get(3)) else {
            eprintln!("usage: pubbench report|cluster-report DIR OUT.md");
            std::process::exit(2);
        };
        let mut runs = pub_report::load(Path::new(dir)).expect("the runs directory");
        let md = if kind == "report" {
            pub_report::publish_table(&mut runs)
        } else {
            pub_report::cluster_report(&mut runs)
        };
        std::fs::write(out, md).expect("write the report");
        eprintln!("pubbench: wrote {out}");
        return;
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("pubbench: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(run(&args));
    print_summary(&result);
    std::fs::write(&args.out, serde_json::to_string_pretty(&result).unwrap()).expect("write --out");
    if !result.is_clean() {
        std::process::exit(1);
    }
}

fn print_summary(result: &PubRun) {
    eprintln!(
        "pubbench: {} {} subscribers on {} node(s), {} topics, {} publishers: {:.0} publishes/s, \
         {:.0} deliveries/s, latency p50 {:.2} ms p99 {:.2} ms, spread p50 {:.2} ms p99 {:.2} ms, \
         {:.2} µs CPU per delivery, pubbench lag p99 {:.2} ms, {} clients missing messages",
        result.server,
        result.subscribers,
        result.nodes.len(),
        result.topics,
        result.publishers,
        result.publishes_per_s,
        result.deliveries_per_s,
        result.latency_ms.p50,
        result.latency_ms.p99,
        result.spread_ms.p50,
        result.spread_ms.p99,
        result.cpu_us_per_delivery,
        result.lag_ms.p99,
        result.clients_missing
    );
    if result.nodes.len() > 1 {
        for (k, node) in result.nodes.iter().enumerate() {
            eprintln!(
                "pubbench:   node {} (pid {}): {} subscribers, latency p50 {:.2} ms p99 {:.2} ms, \
                 spread p99 {:.2} ms, CPU {:.2} cores, {:.2} µs per delivery, {} clients missing",
                k + 1,
                node.pid,
                node.subscribers,
                node.latency_ms.p50,
                node.latency_ms.p99,
                node.spread_ms.p99,
                node.cpu_cores,
                node.cpu_us_per_delivery,
                node.clients_missing
            );
        }
    }
    if let Some(redis) = &result.redis {
        eprintln!(
            "pubbench:   Redis (pid {}): {:.1} µs CPU per publish ({:.1} with its idle CPU), \
             {:.3} cores ({:.3} idle), RSS {} KiB",
            redis.pid,
            redis.cpu_us_per_publish,
            redis.cpu_us_per_publish_gross,
            redis.cpu_cores,
            redis.idle_cores,
            redis.rss_kib
        );
    }
    for line in &result.worst {
        eprintln!("pubbench: FAILED: {line}");
    }
}

async fn run(args: &Args) -> PubRun {
    let nodes = args.ws.len();
    let node_of = |i: usize| i % nodes;
    let topic_of = |i: usize| (i / nodes) % args.topics;

    // ---- subscribe ----
    let received: Vec<Arc<Mutex<Received>>> = (0..args.subscribers)
        .map(|_| Arc::new(Mutex::new(Received::default())))
        .collect();
    let shared = Arc::new(Shared {
        welcomed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        handshakes: Semaphore::new(256),
        last_notice_ns: AtomicI64::new(0),
        spans: (0..nodes).map(|_| Mutex::new(HashMap::new())).collect(),
    });
    let mut readers = Vec::new();
    for (i, slot) in received.iter().enumerate() {
        let url = format!("{}?topic=t{}", args.ws[node_of(i)], topic_of(i));
        let (slot, shared) = (slot.clone(), shared.clone());
        let node = node_of(i);
        readers.push(tokio::spawn(async move {
            subscriber(url, node, slot, shared).await;
        }));
    }
    let subscribe_started = Instant::now();
    let deadline = subscribe_started + Duration::from_secs(60);
    while (shared.welcomed.load(Ordering::Relaxed) as usize) < args.subscribers {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "pubbench: {} of {} subscribers welcomed in {:.1} s",
        shared.welcomed.load(Ordering::Relaxed),
        args.subscribers,
        subscribe_started.elapsed().as_secs_f64()
    );
    // Let the join notices settle before measuring: on a cluster they go
    // through Redis to every node, and can trail the last welcome by seconds.
    let settle_started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let quiet_ns = now_ns() - shared.last_notice_ns.load(Ordering::Relaxed);
        if quiet_ns >= 500_000_000 || settle_started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    let settle_s = settle_started.elapsed().as_secs_f64();
    eprintln!("pubbench: join notices died down in {settle_s:.1} s");
    // Redis's CPU with nothing published, to take out of its cost per publish:
    // at tens of publishes a second its own timers are a good part of it.
    let redis_idle_cores = match args.redis_pid {
        Some(pid) => {
            let (before, at) = (redis_cpu(pid).1, Instant::now());
            tokio::time::sleep(Duration::from_secs(1)).await;
            (redis_cpu(pid).1 - before) / at.elapsed().as_secs_f64()
        }
        None => 0.0,
    };

    // ---- load ----
    let cpu_before: Vec<f64> = args.pids.iter().map(|&pid| node_cpu_s(pid)).collect();
    let redis_before = args.redis_pid.map(redis_cpu);
    let deliveries_before = count_deliveries(&received, nodes);
    let started = Instant::now();
    let sent: Published = Arc::new(Mutex::new(vec![Vec::new(); args.topics]));
    let answered: AnsweredIds = Arc::default();
    let post_times: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let mut publishers = Vec::new();
    for p in 0..args.publishers {
        let out = PublisherOut {
            sent: sent.clone(),
            answered: answered.clone(),
            post_times: post_times.clone(),
        };
        let load = Load {
            http: args.http,
            topics: args.topics,
            size: args.size,
            duration: args.duration,
            // Each publisher's share, offset so that together they are evenly spaced.
            period: (args.rate > 0.0)
                .then(|| Duration::from_secs_f64(args.publishers as f64 / args.rate)),
            offset: Duration::from_secs_f64(if args.rate > 0.0 {
                p as f64 / args.rate
            } else {
                0.0
            }),
        };
        publishers.push(tokio::spawn(
            async move { publisher(p as u32, load, out).await },
        ));
    }
    if publishers.is_empty() {
        tokio::time::sleep(args.duration).await;
    }
    let (mut refused, mut publishers_failed) = (0, 0);
    let mut worst = Vec::new();
    for (p, publisher) in publishers.into_iter().enumerate() {
        match publisher.await {
            Ok(outcome) => {
                refused += outcome.refused;
                if let Some(status) = outcome.first_refusal {
                    worst.push(format!(
                        "publisher {p}: {} publishes refused, the first with {status}",
                        outcome.refused
                    ));
                }
                if let Some(e) = outcome.error {
                    publishers_failed += 1;
                    worst.push(format!("publisher {p} stopped early: {e}"));
                }
            }
            Err(e) => {
                publishers_failed += 1;
                worst.push(format!("publisher {p} failed: {e}"));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_s: Vec<f64> = args
        .pids
        .iter()
        .zip(&cpu_before)
        .map(|(&pid, before)| node_cpu_s(pid) - before)
        .collect();
    let redis = args.redis_pid.zip(redis_before).map(|(pid, before)| {
        let after = redis_cpu(pid);
        (pid, after.0 - before.0, after.1 - before.1, after.2)
    });
    let node_deliveries: Vec<u64> = count_deliveries(&received, nodes)
        .iter()
        .zip(&deliveries_before)
        .map(|(after, before)| after - before)
        .collect();
    let deliveries: u64 = node_deliveries.iter().sum();

    // ---- drain, then check every client ----
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let answered = std::mem::take(&mut *answered.lock().unwrap());
    let publishes: u64 = sent.iter().map(|t| t.len() as u64).sum();
    // Until every subscriber has every message of its topic; a server that
    // fell behind gets as long as messages keep arriving (at most a minute),
    // so that a backlog is not taken for a loss.
    if publishes > 0 {
        let drain_started = Instant::now();
        let (mut last_count, mut last_progress) = (0u64, Instant::now());
        loop {
            let done = received.iter().enumerate().all(|(i, r)| {
                let r = r.lock().unwrap();
                r.lost.is_some() || r.messages.len() >= sent[topic_of(i)].len()
            });
            let count: u64 = count_deliveries(&received, nodes).iter().sum();
            if count > last_count {
                (last_count, last_progress) = (count, Instant::now());
            }
            if done
                || last_progress.elapsed() > Duration::from_secs(5)
                || drain_started.elapsed() > Duration::from_secs(60)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "pubbench: drained in {:.1} s",
            drain_started.elapsed().as_secs_f64()
        );
    }
    shared.stop.store(true, Ordering::Relaxed);
    let mut missing_per_node = vec![0usize; nodes];
    let mut latencies: Vec<Vec<u32>> = vec![Vec::new(); nodes];
    let mut lags = Vec::new();
    let mut frame_bytes = 0;
    let mut resets = 0u64;
    for (i, r) in received.iter().enumerate() {
        let r = r.lock().unwrap();
        let node = node_of(i);
        frame_bytes = frame_bytes.max(r.frame_bytes);
        latencies[node].extend_from_slice(&r.latencies_us);
        lags.extend_from_slice(&r.lags_us);
        resets += u64::from(r.resets);
        let who = format!("subscriber {i} on node {}", node + 1);
        let mut problem = if !r.welcomed {
            let why = r.lost.as_deref().unwrap_or("no welcome within 60 s");
            Some(format!("{who} was never welcomed: {why}"))
        } else if let Some(why) = &r.lost {
            Some(format!("{who} was lost: {why}"))
        } else if publishes > 0 {
            check_client(&who, &r.messages, &sent[topic_of(i)])
        } else {
            None
        };
        if problem.is_none() && r.out_of_order > 0 {
            problem = Some(format!(
                "{who}: {} messages came with an id not above the one before (out of the stream's order)",
                r.out_of_order
            ));
        }
        if let Some(mut problem) = problem {
            if r.resets > 0 {
                problem += &format!(" ({} reset notices)", r.resets);
            }
            missing_per_node[node] += 1;
            if worst.len() < LISTED {
                worst.push(problem);
            }
        }
    }
    for reader in readers {
        reader.abort();
    }
    // Every node must send each message with the id its publisher was answered.
    let mut id_mismatches = 0u64;
    for (k, spans) in shared.spans.iter().enumerate() {
        let spans = spans.lock().unwrap();
        let mut wrong: Vec<(&(u32, u32), &Span)> = spans
            .iter()
            .filter(|(key, span)| answered.get(key).is_some_and(|&id| id != span.id))
            .collect();
        wrong.sort_by_key(|(key, _)| **key);
        id_mismatches += wrong.len() as u64;
        if let Some(((p, s), span)) = wrong.first() {
            worst.push(format!(
                "node {}: {} messages sent with another id than their publisher was answered; \
                 the first: publisher {p} seq {s} answered id {}, sent as id {}",
                k + 1,
                wrong.len(),
                answered[&(*p, *s)],
                span.id
            ));
        }
    }

    let clients_missing: usize = missing_per_node.iter().sum();
    let spread_node: Vec<Summary> = shared
        .spans
        .iter()
        .map(|spans| {
            let mut us: Vec<u32> = spans
                .lock()
                .unwrap()
                .values()
                .map(|span| span_us(span.first_ns, span.last_ns))
                .collect();
            Summary::of_us(&mut us)
        })
        .collect();
    let mut everywhere: HashMap<(u32, u32), (i64, i64)> = HashMap::new();
    for spans in &shared.spans {
        for (key, span) in spans.lock().unwrap().iter() {
            let both = everywhere
                .entry(*key)
                .or_insert((span.first_ns, span.last_ns));
            both.0 = both.0.min(span.first_ns);
            both.1 = both.1.max(span.last_ns);
        }
    }
    let mut spread_us: Vec<u32> = everywhere
        .values()
        .map(|&(first, last)| span_us(first, last))
        .collect();
    let total_cpu_s: f64 = cpu_s.iter().sum();
    let node_runs: Vec<NodeRun> = (0..nodes)
        .map(|k| NodeRun {
            url: args.ws[k].clone(),
            pid: args.pids[k],
            subscribers: (0..args.subscribers).filter(|&i| node_of(i) == k).count(),
            deliveries: node_deliveries[k],
            deliveries_per_s: node_deliveries[k] as f64 / seconds,
            latency_ms: Summary::of_us(&mut latencies[k]),
            spread_ms: spread_node[k],
            cpu_s: cpu_s[k],
            cpu_cores: cpu_s[k] / seconds,
            cpu_us_per_delivery: per_us(cpu_s[k], node_deliveries[k]),
            clients_missing: missing_per_node[k],
        })
        .collect();
    let mut all_latencies: Vec<u32> = latencies.concat();
    let events = if publishes > 0 {
        publishes
    } else {
        // Ticks: each reached every subscriber.
        deliveries / args.subscribers.max(1) as u64
    };
    let mut post_times = std::mem::take(&mut *post_times.lock().unwrap());
    PubRun {
        server: args.server.clone(),
        setup: args.setup.clone(),
        subscribers: args.subscribers,
        topics: args.topics,
        publishers: args.publishers,
        body_bytes: if publishes > 0 { args.size } else { 0 },
        rate: args.rate,
        frame_bytes,
        seconds,
        settle_s,
        publishes,
        publishes_per_s: publishes as f64 / seconds,
        refused,
        publishers_failed,
        deliveries,
        deliveries_per_s: deliveries as f64 / seconds,
        latency_ms: Summary::of_us(&mut all_latencies),
        spread_ms: Summary::of_us(&mut spread_us),
        lag_ms: Summary::of_us(&mut lags),
        post_ms: Summary::of(&mut post_times),
        cpu_us_per_delivery: per_us(total_cpu_s, deliveries),
        cpu_us_per_event: per_us(total_cpu_s, events),
        cpu_cores: total_cpu_s / seconds,
        nodes: node_runs,
        redis: redis.map(|(pid, cpu_s, precise_s, rss_kib)| RedisRun {
            pid,
            cpu_s,
            cpu_s_precise: precise_s,
            cpu_us_per_publish: per_us(
                (precise_s - redis_idle_cores * seconds).max(0.0),
                publishes,
            ),
            cpu_us_per_publish_gross: per_us(precise_s, publishes),
            cpu_cores: precise_s / seconds,
            idle_cores: redis_idle_cores,
            rss_kib,
        }),
        id_mismatches,
        resets,
        clients_missing,
        worst,
    }
}

/// A node's CPU time so far, seconds (`/proc/PID/stat`: its threads that
/// ended are counted too).
fn node_cpu_s(pid: u32) -> f64 {
    procstat::sample(pid).expect("a node's /proc").cpu_s
}

/// Redis's CPU time so far, seconds, from `/proc/PID/stat` and (to the
/// nanosecond) from its threads' `schedstat`; and its RSS, KiB.
fn redis_cpu(pid: u32) -> (f64, f64, u64) {
    let sample = procstat::sample(pid).expect("Redis's /proc");
    let precise = procstat::threads_cpu_ns(pid).expect("Redis's /proc") as f64 / 1e9;
    (sample.cpu_s, precise, sample.rss_kib)
}

/// `cpu_s` shared out over `count` things, microseconds each; 0 for none.
fn per_us(cpu_s: f64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        cpu_s * 1e6 / count as f64
    }
}

/// `last - first`, ns, as whole microseconds.
fn span_us(first_ns: i64, last_ns: i64) -> u32 {
    u32::try_from((last_ns - first_ns).max(0) / 1000).unwrap_or(u32::MAX)
}

/// Messages and ticks received so far, per node.
fn count_deliveries(received: &[Arc<Mutex<Received>>], nodes: usize) -> Vec<u64> {
    let mut per_node = vec![0; nodes];
    for (i, r) in received.iter().enumerate() {
        let r = r.lock().unwrap();
        per_node[i % nodes] += r.messages.len() as u64 + r.ticks;
    }
    per_node
}

/// Whether subscriber `who` got exactly `sent` (its topic's messages, in the
/// server's order): every message once, each publisher's in order.
fn check_client(who: &str, got: &[(u32, u32)], sent: &[(u32, u32)]) -> Option<String> {
    if got == sent {
        return None;
    }
    let mut by_publisher: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(p, s) in sent {
        by_publisher.entry(p).or_default().push(s);
    }
    let mut got_by_publisher: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(p, s) in got {
        got_by_publisher.entry(p).or_default().push(s);
    }
    let mut publishers: Vec<&u32> = by_publisher.keys().collect();
    publishers.sort();
    for p in publishers {
        let seqs = &by_publisher[p];
        let have = got_by_publisher.get(p).map(Vec::as_slice).unwrap_or(&[]);
        if have != seqs.as_slice() {
            let problem = match seqs.iter().find(|s| !have.contains(s)) {
                Some(missing) => format!("first missing seq {missing}"),
                None => "repeated or out of order".to_string(),
            };
            return Some(format!(
                "{who}: publisher {p}: {} of {} messages; {problem}",
                have.len(),
                seqs.len()
            ));
        }
    }
    // Every publisher's messages arrived, once and in order: the two lists differ
    // only in how publishers interleave, which is the server's to choose. Extra
    // messages (another topic's, or a refused publish's) are what is left.
    (got.len() != sent.len()).then(|| {
        format!(
            "{who}: {} messages, {} published to its topic (another topic's, or a refused \
             publish, got through)",
            got.len(),
            sent.len()
        )
    })
}

async fn subscriber(url: String, node: usize, slot: Arc<Mutex<Received>>, shared: Arc<Shared>) {
    let permit = shared.handshakes.acquire().await.expect("the semaphore");
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let tcp = match TcpStream::connect(&addr).await {
        Ok(tcp) => tcp,
        Err(e) => {
            slot.lock().unwrap().lost = Some(format!("connect: {e}"));
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (stream, last_rx_ns) = match StampedStream::new(tcp) {
        Ok(stamped) => stamped,
        Err(e) => {
            slot.lock().unwrap().lost = Some(format!("SO_TIMESTAMPNS: {e}"));
            return;
        }
    };
    let (mut ws, _) = match tokio_tungstenite::client_async(url.as_str(), stream).await {
        Ok(ok) => ok,
        Err(e) => {
            slot.lock().unwrap().lost = Some(format!("handshake: {e}"));
            return;
        }
    };
    drop(permit);
    while let Some(frame) = ws.next().await {
        let read_ns = now_ns();
        // The kernel's receive time of the read that completed this frame.
        let at = last_rx_ns.load(Ordering::Relaxed);
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(_) => continue,
            Err(e) => {
                if !shared.stop.load(Ordering::Relaxed) {
                    slot.lock().unwrap().lost = Some(format!("read: {e}"));
                }
                return;
            }
        };
        let text = text.as_str();
        if text.starts_with(r#"{"type":"message""#) {
            let (Some((p, s, t)), Some(id)) = (body_fields(text), json_u64(text, "\"id\":")) else {
                continue;
            };
            {
                let mut r = slot.lock().unwrap();
                if r.messages.len().is_multiple_of(8) {
                    r.lags_us.push(span_us(at, read_ns));
                }
                r.messages.push((p, s));
                r.latencies_us.push(span_us(t, at));
                r.frame_bytes = text.len();
                if id <= r.last_id {
                    r.out_of_order += 1;
                }
                r.last_id = r.last_id.max(id);
            }
            let mut spans = shared.spans[node].lock().unwrap();
            let span = spans.entry((p, s)).or_insert(Span {
                first_ns: at,
                last_ns: at,
                id,
            });
            span.first_ns = span.first_ns.min(at);
            span.last_ns = span.last_ns.max(at);
        } else if text.starts_with(r#"{"type":"tick""#) {
            let mut r = slot.lock().unwrap();
            r.ticks += 1;
            r.frame_bytes = text.len();
        } else if text.starts_with(r#"{"type":"join""#) || text.starts_with(r#"{"type":"leave""#) {
            shared.last_notice_ns.store(read_ns, Ordering::Relaxed);
        } else if text.starts_with(r#"{"type":"reset""#) {
            slot.lock().unwrap().resets += 1;
        } else if text.starts_with(r#"{"type":"welcome""#) {
            slot.lock().unwrap().welcomed = true;
            shared.welcomed.fetch_add(1, Ordering::Relaxed);
        }
    }
    if !shared.stop.load(Ordering::Relaxed) {
        slot.lock().unwrap().lost = Some("the server closed the connection".into());
    }
}

/// `p`, `s` and `t` from `…"data":{"p":1,"s":2,"t":3,…`.
fn body_fields(text: &str) -> Option<(u32, u32, i64)> {
    let data = &text[text.find(r#""data":{"p":"#)? + 12..];
    let mut numbers = data
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let p = numbers.next()?.parse().ok()?;
    let s = numbers.next()?.parse().ok()?;
    let t = numbers.next()?.parse().ok()?;
    Some((p, s, t))
}

/// The unsigned integer right after the first `key` in `text` (the messages
/// and the publish answer are small and fixed: no full JSON parse).
fn json_u64(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// What one publisher does.
struct Load {
    http: SocketAddr,
    topics: usize,
    size: usize,
    duration: Duration,
    /// Time between this publisher's publishes; `None`: as fast as answered.
    period: Option<Duration>,
    /// When its first publish goes, after the start.
    offset: Duration,
}

/// Where a publisher records what it published.
struct PublisherOut {
    sent: Published,
    answered: AnsweredIds,
    post_times: Arc<Mutex<Vec<f64>>>,
}

/// How a publisher's run went, beyond what it recorded.
#[derive(Default)]
struct PublisherEnd {
    /// Publishes answered with another status than 202.
    refused: u64,
    /// The first such status line's code.
    first_refusal: Option<u16>,
    /// Why it stopped before `--duration` was up, if it did.
    error: Option<String>,
}

async fn publisher(p: u32, load: Load, out: PublisherOut) -> PublisherEnd {
    let Load {
        http,
        topics,
        size,
        duration,
        period,
        offset,
    } = load;
    let mut end = PublisherEnd::default();
    let stream = match TcpStream::connect(http).await {
        Ok(stream) => stream,
        Err(e) => {
            end.error = Some(format!("connect to the HTTP port: {e}"));
            return end;
        }
    };
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let start = tokio::time::Instant::now();
    let stop_at = Instant::now() + duration;
    let mut seq: u32 = 0;
    let mut times = Vec::new();
    let mut mine: Vec<(usize, u32, u64)> = Vec::new();
    while Instant::now() < stop_at {
        if let Some(period) = period {
            tokio::time::sleep_until(start + offset + period * seq).await;
        }
        let topic = (p as usize + seq as usize) % topics;
        let mut body = format!(r#"{{"p":{p},"s":{seq},"t":{},"x":""#, now_ns());
        while body.len() + 2 < size {
            body.push('.');
        }
        body.push_str("\"}");
        let request = format!(
            "POST /publish?topic=t{topic} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let t0 = Instant::now();
        if let Err(e) = write.write_all(request.as_bytes()).await {
            end.error = Some(format!("send a publish: {e}"));
            break;
        }
        let (status, answer) = match read_response(&mut read).await {
            Ok(response) => response,
            Err(e) => {
                end.error = Some(format!("read a publish's answer: {e}"));
                break;
            }
        };
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        if status == 202 {
            mine.push((topic, seq, json_u64(&answer, "\"id\":").unwrap_or(0)));
        } else {
            end.refused += 1;
            end.first_refusal.get_or_insert(status);
        }
        seq += 1;
    }
    // Recorded in the order the server accepted them, per publisher: the
    // per-publisher order is what every subscriber must see.
    let mut sent = out.sent.lock().unwrap();
    let mut answered = out.answered.lock().unwrap();
    for (topic, seq, id) in mine {
        sent[topic].push((p, seq));
        answered.insert((p, seq), id);
    }
    out.post_times.lock().unwrap().extend(times);
    end
}

/// Reads one HTTP response with a Content-Length body; returns its status and
/// its body.
async fn read_response(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<(u16, String)> {
    let mut line = String::new();
    if read.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        read.read_line(&mut line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    read.read_exact(&mut body).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_held_to_every_message_of_its_topic() {
        let sent = [(0, 0), (0, 1), (1, 0), (1, 1)];
        let who = "subscriber 7 on node 2";
        // Publishers may interleave in any order, each in its own order.
        assert_eq!(
            check_client(who, &[(1, 0), (0, 0), (1, 1), (0, 1)], &sent),
            None
        );
        let lost = check_client(who, &[(0, 0), (1, 0), (1, 1)], &sent).unwrap();
        assert!(
            lost.contains("subscriber 7 on node 2: publisher 0") && lost.contains("missing seq 1"),
            "{lost}"
        );
        assert!(check_client(who, &[(0, 1), (0, 0), (1, 0), (1, 1)], &sent).is_some());
        assert!(check_client(who, &[(0, 0), (0, 0), (0, 1), (1, 0), (1, 1)], &sent).is_some());
        assert!(check_client(who, &[(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)], &sent).is_some());
    }

    #[test]
    fn body_fields_are_read_from_a_message() {
        let text = r#"{"type":"message","id":5,"topic":"t3","data":{"p":2,"s":41,"t":1795960800412000000,"x":"..."}}"#;
        assert_eq!(body_fields(text), Some((2, 41, 1_795_960_800_412_000_000)));
        assert_eq!(json_u64(text, "\"id\":"), Some(5));
        assert_eq!(
            json_u64(r#"{"id":1795869660244599}"#, "\"id\":"),
            Some(1795869660244599)
        );
        assert_eq!(
            body_fields(r#"{"type":"message","id":5,"data":"text"}"#),
            None
        );
    }
}
