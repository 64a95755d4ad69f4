//! `loadgen`: one benchmark run against one running server.
//!
//! It opens `--clients` WebSocket clients at `--ramp-rate` per second (at most
//! `--ramp-concurrency` handshakes in flight), then runs these phases:
//!
//! 1. **settle** (`--settle`): every client connected; the last join notices go out.
//! 2. **rest** (`--rest`): ticks only. The server's CPU here gives the cost of a
//!    broadcast; its CPU in the quiet half of each interval gives idle CPU.
//! 3. **load** (`--duration`): ticks plus an echo every `--echo-every` from each
//!    of `--echo-clients` clients.
//! 4. **drain** (at most `--drain`): the measured window has ended; every
//!    client keeps reading until it has a tick made after the window, so a
//!    tick made just before the end has time to land.
//! 5. **close**: every client sends close 1000 and waits for the server's reply;
//!    then `--after` seconds pass before the last sample.
//!
//! With `--server-pid` it samples that process from `/proc` at every phase
//! boundary (the "driver" part of the benchmark). The result is one JSON
//! [`RunResult`] on stdout or in `--out`; a human summary goes to stderr.
//!
//! # What it checks: nothing lost, per client (issue 9)
//!
//! Every client records when its `101 Switching Protocols` arrived and every
//! tick it got. After the run, each client is held to **every tick the server
//! made after its 101 arrived and by the end of the load phase**: received
//! once, in seq order (`tickcast_bench::delivery_check` has the rule and how
//! the millisecond `time` stamps are compared). Clients that never got their
//! 101, and clients whose connection ended before the window did (a 101 and
//! then no welcome, a cut-off), are losses too. The JSON's `delivery` has the
//! counts and the ten worst clients; stderr gets one line: who missed how many
//! ticks, or "every client got every tick after its 101".
//!
//! `--require-full-delivery` makes it exit 1, naming the losses, on any of
//! them, or on a protocol error or no tick checked at all (the CI smoke test,
//! and `scripts/bench.sh stress`).
//!
//! # Why one thread
//!
//! The benchmark machine has 2 cores, and the server needs them more than loadgen
//! does. loadgen runs on tokio's current-thread runtime by default (`--threads 1`),
//! so it can never take more than one core, and every server faces the same
//! competition. Its timings do not suffer for it: arrival times are the kernel's
//! receive timestamps (see `tickcast_bench::client`), not loadgen's clock, and
//! the result reports loadgen's own lag so a saturated loadgen shows.
//! `--threads N` uses a multi-thread runtime instead.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use tickcast_bench::client::{self, ClientConfig, Outcome, Phase, Progress};
use tickcast_bench::delivery_check::{self, is_past_window};
use tickcast_bench::procstat::{self, Sample};
use tickcast_bench::run::*;
use tickcast_bench::rx_timestamp;
use tickcast_bench::stats::Summary;
use tickcast_bench::wallclock::now_ns;

struct Args {
    url: String,
    clients: usize,
    ramp_per_s: f64,
    ramp_concurrency: usize,
    settle: Duration,
    rest: Duration,
    load: Duration,
    after: Duration,
    echo_clients: usize,
    echo_every: Duration,
    interval: Duration,
    server_pid: Option<u32>,
    stack_kib: Option<u64>,
    server: String,
    mode: String,
    out: Option<String>,
    require_full_delivery: bool,
    threads: usize,
    /// The longest the clients keep reading after the window, for ticks still
    /// in flight.
    drain: Duration,
}

const USAGE: &str = "usage: loadgen --url ws://127.0.0.1:PORT/echo --clients N [options]
  --ramp-rate R          clients started per second (default 2000)
  --ramp-concurrency C   handshakes in flight at most (default 256)
  --settle 2s            wait after the last client connected
  --rest 6s              ticks only, no echoes
  --duration 20s         ticks plus echoes
  --drain 5s             after the load phase, keep reading at most this long
                         until every client has a tick made after it
  --after 3s             wait after the clients closed, before the last sample
  --echo-clients 100     clients that send echoes during the load phase
  --echo-every 1s        one echo per echo client per this
  --interval 1s          the server's tick interval (for idle-CPU windows)
  --server-pid PID       sample this process from /proc
  --stack-kib KIB        also count the resident pages of the server's client
                         stacks (mappings of exactly KIB), at the end of rest
  --server NAME          label for the results (default unknown)
  --mode NAME            scale | stress | smoke (label only)
  --out FILE             write the JSON result here (default stdout)
  --threads N            tokio worker threads; 1 = current-thread (default 1)
  --require-full-delivery  exit 1 on any loss: a client that missed a tick made
                         after its 101 (or got one twice or out of order), never
                         got its 101, or lost its connection before the load
                         phase ended; also on protocol errors";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        clients: 0,
        ramp_per_s: 2000.0,
        ramp_concurrency: 256,
        settle: Duration::from_secs(2),
        rest: Duration::from_secs(6),
        load: Duration::from_secs(20),
        after: Duration::from_secs(3),
        echo_clients: 100,
        echo_every: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        server_pid: None,
        stack_kib: None,
        server: "unknown".into(),
        mode: "scale".into(),
        out: None,
        require_full_delivery: false,
        threads: 1,
        drain: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    let dur = |flag: &str, v: String| {
        tickcast_bench::parse_duration(&v)
            .ok_or_else(|| format!("{flag}: expected e.g. 500ms or 2s, got {v:?}"))
    };
    let num = |flag: &str, v: String| {
        v.parse::<f64>()
            .map_err(|_| format!("{flag}: expected a number, got {v:?}"))
    };
    while let Some(flag) = it.next() {
        if flag == "--require-full-delivery" {
            a.require_full_delivery = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let v = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--url" => a.url = v,
            "--clients" => a.clients = num(&flag, v)? as usize,
            "--ramp-rate" => a.ramp_per_s = num(&flag, v)?,
            "--ramp-concurrency" => a.ramp_concurrency = num(&flag, v)?.max(1.0) as usize,
            "--settle" => a.settle = dur(&flag, v)?,
            "--rest" => a.rest = dur(&flag, v)?,
            "--duration" => a.load = dur(&flag, v)?,
            "--after" => a.after = dur(&flag, v)?,
            "--drain" => a.drain = dur(&flag, v)?,
            "--echo-clients" => a.echo_clients = num(&flag, v)? as usize,
            "--echo-every" => a.echo_every = dur(&flag, v)?,
            "--interval" => a.interval = dur(&flag, v)?,
            "--server-pid" => a.server_pid = Some(num(&flag, v)? as u32),
            "--stack-kib" => a.stack_kib = Some(num(&flag, v)? as u64),
            "--server" => a.server = v,
            "--mode" => a.mode = v,
            "--out" => a.out = Some(v),
            "--threads" => a.threads = num(&flag, v)?.max(1.0) as usize,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if a.url.is_empty() || a.clients == 0 {
        return Err(format!("--url and --clients are required\n{USAGE}"));
    }
    if a.ramp_per_s <= 0.0 {
        return Err("--ramp-rate must be above 0".into());
    }
    Ok(a)
}

/// `ws://host:port/path` → (address, Host header, path). Loopback only: this tool
/// is for benchmarking servers on this machine.
fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or("--url must start with ws://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("--url: cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("--url: {host} has no address"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--url: {addr} is not a loopback address; loadgen only targets this machine"
        ));
    }
    Ok((addr, host.to_string(), path.to_string()))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let (addr, host, path) = match parse_url(&args.url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = ClientConfig {
        addr,
        host,
        path,
        connect_timeout: Duration::from_secs(15),
        close_timeout: Duration::from_secs(5),
        echo_every: args.echo_every,
    };
    let result = match runtime.block_on(run(&args, config)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_summary(&result);
    let json = serde_json::to_string_pretty(&result).expect("a RunResult always serialises");
    match &args.out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, json + "\n") {
                eprintln!("loadgen: cannot write {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
        None => println!("{json}"),
    }
    if args.require_full_delivery {
        let failures = delivery_failures(&result);
        if !failures.is_empty() {
            eprintln!("loadgen: FAILED: {}", failures.join("; "));
            return ExitCode::from(1);
        }
        eprintln!(
            "loadgen: OK: all {} clients got every tick made after their 101 ({} ticks owed in all)",
            result.delivery.check.clients_checked, result.delivery.check.ticks_owed
        );
    }
    ExitCode::SUCCESS
}

/// Why `--require-full-delivery` fails this run, one phrase per reason; empty
/// if nothing was lost. Connect failures need no line of their own: a client
/// that failed before its 101 is a client without a 101, and one that failed
/// after it is a lost client.
fn delivery_failures(r: &RunResult) -> Vec<String> {
    let check = &r.delivery.check;
    let mut failures = Vec::new();
    if !check.is_clean() {
        failures.push(check.summary());
    }
    if r.notices.protocol_errors > 0 {
        failures.push(format!(
            "{} protocol errors (frames loadgen could not read, ticks among them)",
            r.notices.protocol_errors
        ));
    }
    if check.ticks_owed == 0 {
        failures.push("no tick was checked: none was made after any client's 101".into());
    }
    failures
}

/// Samples the server, or returns zeros without a PID.
async fn sample(pid: Option<u32>) -> Sample {
    match pid {
        // The /proc reads are small; fd counting at 15,000 clients takes a few ms.
        Some(pid) => tokio::task::spawn_blocking(move || procstat::sample(pid))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default(),
        None => Sample::default(),
    }
}

async fn run(args: &Args, config: ClientConfig) -> Result<RunResult, String> {
    let n = args.clients;
    let pid = args.server_pid;
    let before = sample(pid).await;
    let progress = Arc::new(Progress::new(n));
    let config = Arc::new(config);
    let (phase_tx, phase_rx) = watch::channel(Phase::Ramp);

    // ---- ramp ----
    eprintln!(
        "loadgen: {} → {n} clients at {}/s",
        args.server, args.ramp_per_s
    );
    let gate = Arc::new(Semaphore::new(args.ramp_concurrency));
    let ramp_started = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(
            ramp_started + Duration::from_secs_f64(i as f64 / args.ramp_per_s),
        )
        .await;
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (config, progress, phase_rx) = (config.clone(), progress.clone(), phase_rx.clone());
        let echo = i < args.echo_clients;
        handles.push(tokio::spawn(async move {
            client::run(i, &config, &progress, phase_rx, echo, permit).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done =
            progress.connected.load(Ordering::Relaxed) + progress.failed.load(Ordering::Relaxed);
        if done >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_s = ramp_started.elapsed().as_secs_f64();
    eprintln!(
        "loadgen: {} connected, {} failed in {ramp_s:.1} s",
        progress.connected.load(Ordering::Relaxed),
        progress.failed.load(Ordering::Relaxed)
    );
    tokio::time::sleep(args.settle).await;

    // ---- rest: ticks only ----
    let _ = phase_tx.send(Phase::Rest);
    let first_seq = progress.max_seq.load(Ordering::Relaxed) + 1;
    let rest_start = sample(pid).await;
    let rest_until = Instant::now() + args.rest;
    let idle_pct = measure_idle(pid, args.interval, rest_until).await;
    tokio::time::sleep_until(rest_until).await;
    let rest_end = sample(pid).await;
    let client_stack_rss_kib = match (pid, args.stack_kib) {
        (Some(pid), Some(kib)) => {
            let stacks = tokio::task::spawn_blocking(move || procstat::stack_rss(pid, kib))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let listed: Vec<String> = stacks
                .iter()
                .map(|(rss, n)| format!("{n} at {rss} KiB"))
                .collect();
            eprintln!("loadgen: client stacks resident: {}", listed.join(", "));
            stacks
        }
        _ => Vec::new(),
    };
    let rest_ticks = progress
        .max_seq
        .load(Ordering::Relaxed)
        .saturating_sub(first_seq - 1);

    // ---- load: ticks and echoes ----
    let _ = phase_tx.send(Phase::Load);
    let load_start = sample(pid).await;
    let own_start = procstat::sample(std::process::id()).ok();
    let load_started = Instant::now();
    let (mut max_rss, mut max_threads) = (load_start.rss_kib, load_start.threads);
    while load_started.elapsed() < args.load {
        let left = args.load.saturating_sub(load_started.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        if let Some(Ok((rss, threads))) = pid.map(procstat::rss_and_threads) {
            max_rss = max_rss.max(rss);
            max_threads = max_threads.max(threads);
        }
    }
    // The end of the measured window, on the server's clock (both are this
    // machine's CLOCK_REALTIME): no client is owed a tick made after it.
    let window_end_ns = now_ns();
    let load_end = sample(pid).await;
    let own_end = procstat::sample(std::process::id()).ok();
    // Its own CPU, % of one core: what it takes from the cores it shares with
    // the server.
    let own_cpu_pct = own_start
        .zip(own_end)
        .map(|(a, b)| (b.cpu_s - a.cpu_s) / ((b.at_ns - a.at_ns) as f64 / 1e9).max(1e-9) * 100.0);
    let last_seq = progress.max_seq.load(Ordering::Relaxed);

    // ---- drain: let the ticks made just before the end land ----
    // A client is done once it has a tick made after the window: ticks arrive
    // in seq order, so every tick it is owed has had its chance by then.
    let _ = phase_tx.send(Phase::Drain);
    let drain_started = Instant::now();
    while drain_started.elapsed() < args.drain {
        let waiting = progress
            .newest_stamp_ns
            .iter()
            .filter(|stamp| !is_past_window(stamp.load(Ordering::Relaxed), window_end_ns))
            .count();
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_s = drain_started.elapsed().as_secs_f64();

    // ---- close ----
    let _ = phase_tx.send(Phase::Close);
    let mut outcomes = Vec::with_capacity(n);
    for (index, handle) in handles.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(20), handle).await {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            // Its record is gone with the task: the check sees a client
            // without a 101, so it still counts as a loss.
            _ => outcomes.push(Outcome {
                index,
                connect_error: Some("loadgen task did not finish".into()),
                ..Outcome::default()
            }),
        }
    }
    let closed = sample(pid).await;
    tokio::time::sleep(args.after).await;
    let after = sample(pid).await;
    eprintln!("loadgen: all clients closed; analysing");

    let mut result = analyse(
        args,
        outcomes,
        Window {
            first_seq,
            last_seq,
            load_start_ns: load_start.at_ns,
            load_end_ns: load_end.at_ns,
            window_end_ns,
            drain_s,
        },
        ramp_s,
        Process {
            pid: pid.unwrap_or(0),
            before,
            rest_start,
            rest_end,
            load_start,
            load_end,
            load_max_rss_kib: max_rss,
            load_max_threads: max_threads,
            closed,
            after,
            idle_between_ticks_cpu_pct: idle_pct,
            client_stack_rss_kib,
        },
        rest_ticks,
    );
    result.loadgen_cpu_pct = own_cpu_pct;
    Ok(result)
}

/// Server CPU in the quiet part of each tick interval (50 %–95 % of it), summed
/// over the rest phase, as % of one core. `None` for intervals under 200 ms (too
/// short to have a quiet part worth measuring) or without a PID.
async fn measure_idle(pid: Option<u32>, interval: Duration, until: Instant) -> Option<f64> {
    let pid = pid?;
    if interval < Duration::from_millis(200) {
        return None;
    }
    let interval_ns = interval.as_nanos() as i64;
    let (mut cpu_ns, mut wall_ns) = (0u64, 0i64);
    // Reading every thread's schedstat costs loadgen real time with a thread per
    // client (10,000 files), so both readings must finish inside the quiet part
    // or they would compete with the next broadcast. A reading taken while the
    // threads are idle gives the same numbers whenever it is taken, so the window
    // is from the start of the first reading to the start of the second.
    let read = move || async move {
        tokio::task::spawn_blocking(move || procstat::threads_cpu_ns(pid))
            .await
            .ok()?
            .ok()
    };
    loop {
        let now = now_ns();
        let slot = now - now.rem_euclid(interval_ns);
        let mut from = slot + interval_ns / 2;
        if from < now {
            from += interval_ns;
        }
        let quiet_end = from - interval_ns / 2 + interval_ns * 95 / 100;
        let wait_from = Duration::from_nanos((from - now) as u64);
        if Instant::now() + wait_from + Duration::from_nanos((quiet_end - from) as u64) > until {
            break;
        }
        tokio::time::sleep(wait_from).await;
        let a_at = now_ns();
        let a = read().await?;
        let read_ns = now_ns() - a_at;
        // Start the second reading early enough to finish (with margin) in time.
        let b_at = quiet_end - read_ns * 3 / 2;
        if b_at <= a_at + read_ns {
            continue; // Too little quiet time left this interval: skip it.
        }
        tokio::time::sleep(Duration::from_nanos((b_at - now_ns()).max(0) as u64)).await;
        let b_started = now_ns();
        let b = read().await?;
        cpu_ns += b.saturating_sub(a);
        wall_ns += b_started - a_at;
    }
    (wall_ns > 0).then(|| cpu_ns as f64 / wall_ns as f64 * 100.0)
}

struct Window {
    first_seq: u64,
    last_seq: u64,
    load_start_ns: i64,
    load_end_ns: i64,
    /// The end of the measured window for the per-client check.
    window_end_ns: i64,
    /// How long the drain took, seconds.
    drain_s: f64,
}

fn analyse(
    args: &Args,
    outcomes: Vec<Outcome>,
    w: Window,
    ramp_s: f64,
    process: Process,
    rest_ticks: u64,
) -> RunResult {
    let connected: Vec<&Outcome> = outcomes.iter().filter(|o| o.connected).collect();
    let ticks = w.last_seq.saturating_sub(w.first_seq) + 1;
    let ticks = if w.last_seq < w.first_seq { 0 } else { ticks };
    let span = (ticks as usize).max(1);

    let mut connect_ms: Vec<f64> = connected.iter().map(|o| o.connect_ms).collect();
    let mut errors: HashMap<String, usize> = HashMap::new();
    for o in &outcomes {
        if let Some(e) = &o.connect_error {
            *errors.entry(e.clone()).or_default() += 1;
        }
    }

    // Per tick seq: first and last arrival, and how many clients got it.
    let mut first = vec![i64::MAX; span];
    let mut last = vec![i64::MIN; span];
    // The same over the frames whose timestamp is their own (see
    // `RunResult::spread_exact_ms`).
    let mut first_exact = vec![i64::MAX; span];
    let mut last_exact = vec![i64::MIN; span];
    let mut timed_late = 0u64;
    let mut got = vec![0u32; span];
    let mut latency = Vec::new();
    let mut lag = Vec::new();
    let mut delivered = 0u64;
    let (mut load_frames, mut load_min_seq, mut load_max_seq) = (0u64, u64::MAX, 0u64);
    let mut ended: HashMap<String, usize> = HashMap::new();
    let mut server_codes: HashMap<u16, usize> = HashMap::new();
    let (mut joins, mut leaves, mut pings, mut others, mut perr) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut echo_sent, mut echo_rtt) = (0u64, Vec::new());
    let (mut clean, mut unclean) = (0usize, 0usize);
    for o in &connected {
        let mut seen = vec![false; span];
        let stamps: Vec<i64> = o.ticks.iter().map(|t| t.kernel_ns).collect();
        let late_flags = rx_timestamp::timed_late(&stamps);
        for (t, &late) in o.ticks.iter().zip(&late_flags) {
            if t.kernel_ns >= w.load_start_ns && t.kernel_ns < w.load_end_ns {
                load_frames += 1;
                load_min_seq = load_min_seq.min(t.seq);
                load_max_seq = load_max_seq.max(t.seq);
            }
            if t.seq < w.first_seq || t.seq > w.last_seq {
                continue;
            }
            let k = (t.seq - w.first_seq) as usize;
            if seen[k] {
                continue;
            }
            seen[k] = true;
            delivered += 1;
            got[k] += 1;
            first[k] = first[k].min(t.kernel_ns);
            last[k] = last[k].max(t.kernel_ns);
            if late {
                timed_late += 1;
            } else {
                first_exact[k] = first_exact[k].min(t.kernel_ns);
                last_exact[k] = last_exact[k].max(t.kernel_ns);
            }
            latency.push((t.kernel_ns - t.time_ns) as f64 / 1e6);
            lag.push(f64::from(t.lag_us) / 1e3);
        }
        if let Some(reason) = &o.ended_early {
            *ended.entry(reason.clone()).or_default() += 1;
            if let Some(code) = o.close_code {
                *server_codes.entry(code).or_default() += 1;
            }
        } else if o.clean_close {
            clean += 1;
        } else {
            unclean += 1;
        }
        joins += u64::from(o.joins);
        leaves += u64::from(o.leaves);
        pings += u64::from(o.pings);
        others += u64::from(o.others);
        perr += u64::from(o.protocol_errors);
        echo_sent += u64::from(o.echo_sent);
        echo_rtt.extend(o.echo_rtt_us.iter().map(|&us| f64::from(us) / 1e3));
    }
    let n_ok = connected.len();
    let mut spread: Vec<f64> = (0..ticks as usize)
        .filter(|&k| got[k] > 0)
        .map(|k| (last[k] - first[k]) as f64 / 1e6)
        .collect();
    // `None` for a tick none of whose frames was timed exactly.
    let exact_per_tick: Vec<Option<f64>> = (0..ticks as usize)
        .filter(|&k| got[k] > 0)
        .map(|k| {
            (last_exact[k] >= first_exact[k]).then(|| (last_exact[k] - first_exact[k]) as f64 / 1e6)
        })
        .collect();
    let mut spread_exact: Vec<f64> = exact_per_tick.iter().flatten().copied().collect();
    let first_rx: Vec<i64> = (0..ticks as usize)
        .filter(|&k| got[k] > 0)
        .map(|k| first[k])
        .collect();
    let ticks_complete = (0..ticks as usize)
        .filter(|&k| got[k] as usize == n_ok)
        .count() as u32;
    let expected = ticks * n_ok as u64;

    let load_s = (w.load_end_ns - w.load_start_ns) as f64 / 1e9;
    let p = &process;
    let cpu = |a: &Sample, b: &Sample| b.cpu_s - a.cpu_s;
    let secs = |a: &Sample, b: &Sample| ((b.at_ns - a.at_ns) as f64 / 1e9).max(1e-9);
    let derived = Derived {
        rss_per_client_kib: (p.rest_end.rss_kib as f64 - p.before.rss_kib as f64)
            / n_ok.max(1) as f64,
        kernel_stack_per_client_kib: (p.rest_end.kernel_stack_kib as f64
            - p.before.kernel_stack_kib as f64)
            / n_ok.max(1) as f64,
        rest_cpu_pct: cpu(&p.rest_start, &p.rest_end) / secs(&p.rest_start, &p.rest_end) * 100.0,
        load_cpu_pct: cpu(&p.load_start, &p.load_end) / secs(&p.load_start, &p.load_end) * 100.0,
        cpu_per_broadcast_ms: if rest_ticks > 0 {
            cpu(&p.rest_start, &p.rest_end) / rest_ticks as f64 * 1e3
        } else {
            0.0
        },
        cpu_s_per_million_frames: if load_frames > 0 {
            cpu(&p.load_start, &p.load_end) / (load_frames as f64 / 1e6)
        } else {
            0.0
        },
    };
    let top5 = |m: HashMap<String, usize>| {
        let mut v: Vec<(String, usize)> = m.into_iter().collect();
        v.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        v.truncate(5);
        v
    };
    let mut codes: Vec<(u16, usize)> = server_codes.into_iter().collect();
    codes.sort();
    let echo_received = echo_rtt.len() as u64;
    RunResult {
        server: args.server.clone(),
        mode: args.mode.clone(),
        clients: args.clients,
        interval_ms: args.interval.as_secs_f64() * 1e3,
        params: Params {
            url: args.url.clone(),
            ramp_per_s: args.ramp_per_s,
            ramp_concurrency: args.ramp_concurrency,
            settle_s: args.settle.as_secs_f64(),
            rest_s: args.rest.as_secs_f64(),
            load_s: args.load.as_secs_f64(),
            echo_clients: args.echo_clients.min(args.clients),
            echo_every_ms: args.echo_every.as_secs_f64() * 1e3,
            loadgen_threads: args.threads,
            drain_s: args.drain.as_secs_f64(),
        },
        connect: Connect {
            ok: n_ok,
            failed: outcomes.len() - n_ok,
            errors: top5(errors),
            time_ms: Summary::of(&mut connect_ms),
            ramp_s,
        },
        delivery: Delivery {
            first_seq: w.first_seq,
            last_seq: w.last_seq,
            ticks,
            expected,
            delivered,
            ratio: if expected > 0 {
                delivered as f64 / expected as f64
            } else {
                0.0
            },
            ticks_complete,
            window_end_ns: w.window_end_ns,
            drain_s: w.drain_s,
            check: delivery_check::check(&outcomes, w.window_end_ns),
            ended_early: ended.values().sum(),
            ended_early_reasons: top5(ended),
            frames_per_s: load_frames as f64 / load_s.max(1e-9),
            ticks_per_s: if load_max_seq >= load_min_seq {
                (load_max_seq - load_min_seq + 1) as f64 / load_s.max(1e-9)
            } else {
                0.0
            },
        },
        spread_per_tick_ms: spread.iter().map(|ms| (ms * 1e3).round() / 1e3).collect(),
        first_rx_per_tick_ns: first_rx,
        spread_exact_per_tick_ms: exact_per_tick
            .iter()
            .map(|ms| ms.map_or(-1.0, |ms| (ms * 1e3).round() / 1e3))
            .collect(),
        loadgen_cpu_pct: None,
        spread_exact_ms: Some(Summary::of(&mut spread_exact)),
        frames_timed_late: timed_late as f64 / delivered.max(1) as f64,
        spread_ms: Summary::of(&mut spread),
        latency_ms: Summary::of(&mut latency),
        loadgen_lag_ms: Summary::of(&mut lag),
        echo: Echo {
            clients: args.echo_clients.min(args.clients),
            sent: echo_sent,
            received: echo_received,
            rtt_ms: Summary::of(&mut echo_rtt),
        },
        notices: Notices {
            joins,
            leaves,
            pings,
            others,
            protocol_errors: perr,
        },
        close: Close {
            clean,
            unclean,
            server_codes: codes,
        },
        process,
        derived,
    }
}

fn print_summary(r: &RunResult) {
    let d = &r.delivery;
    if let Some(exact) = &r.spread_exact_ms {
        eprintln!(
            "loadgen: spread counting exactly timed frames only p50/p99/max {:.1}/{:.1}/{:.1} ms \
             ({:.2}% of frames were timed by a later frame)",
            exact.p50,
            exact.p99,
            exact.max,
            r.frames_timed_late * 100.0
        );
    }
    eprintln!(
        "loadgen: {} N={}: connected {}/{} (p99 {:.1} ms), delivery {:.4}% of {} ticks, \
         spread p50/p99/max {:.1}/{:.1}/{:.1} ms, latency p50/p99/max {:.1}/{:.1}/{:.1} ms, \
         {:.0} frames/s, echo p50/p99 {:.2}/{:.2} ms ({}/{}), dropped {}, clean closes {}",
        r.server,
        r.clients,
        r.connect.ok,
        r.clients,
        r.connect.time_ms.p99,
        d.ratio * 100.0,
        d.ticks,
        r.spread_ms.p50,
        r.spread_ms.p99,
        r.spread_ms.max,
        r.latency_ms.p50,
        r.latency_ms.p99,
        r.latency_ms.max,
        d.frames_per_s,
        r.echo.rtt_ms.p50,
        r.echo.rtt_ms.p99,
        r.echo.received,
        r.echo.sent,
        d.ended_early,
        r.close.clean,
    );
    // Issue 9's question, answered per client: the line to read first.
    eprintln!("loadgen: per-client delivery: {}", d.check.summary());
    let p = &r.process;
    if p.pid != 0 {
        eprintln!(
            "loadgen: server RSS {} → {} KiB ({:.1} KiB/client), peak {} KiB, threads {}, \
             CPU rest {:.2}% idle {:.2}% load {:.2}%, {:.2} ms/broadcast; after: RSS {} KiB, threads {}",
            p.before.rss_kib,
            p.rest_end.rss_kib,
            r.derived.rss_per_client_kib,
            p.after.hwm_kib,
            p.rest_end.threads,
            r.derived.rest_cpu_pct,
            p.idle_between_ticks_cpu_pct.unwrap_or(f64::NAN),
            r.derived.load_cpu_pct,
            r.derived.cpu_per_broadcast_ms,
            p.after.rss_kib,
            p.after.threads,
        );
    }
}
