//! `pubbench`: the publish benchmark of issue 13, driven by `scripts/bench.sh
//! publish`.
//!
//! One run against one server already started (by PID, by bench.sh):
//!
//! 1. **subscribe**: N WebSocket clients connect to `/echo?topic=tK`, client `i`
//!    on topic `i % topics`, and wait for their welcome;
//! 2. **publish** (with `--publishers P` > 0): P publishers, each on its own
//!    kept-alive HTTP connection, `POST /publish?topic=tK` as fast as the
//!    answers come, for `--duration`, each cycling through the topics. A body is
//!    `{"p":publisher,"s":seq,"t":sent_ns,"x":"…"}`, padded to `--size` bytes;
//!    every subscriber notes when each message arrives. With `--rate R`, the
//!    publishers together publish R per second, evenly spaced, instead: the
//!    latency and the CPU per publish at a rate the server keeps up with (as
//!    fast as possible, latency is mostly the wait in tickcast's full queue of
//!    1,024 broadcasts, which is what slows publishers to the hub's pace);
//! 3. **drain**: wait (at most 10 s) until every subscriber has every message
//!    published to its topic, then check it client by client: each must have
//!    received exactly the messages of its topic, each once, every publisher's
//!    in the order it published them. A loss names the client and the message.
//!
//! With `--publishers 0` it is the tick run the publish run is compared with:
//! the server ticks (bench.sh starts it with `--interval 10ms`), and the
//! subscribers count ticks for `--duration`.
//!
//! The server's CPU time (from `/proc/PID/stat`) over the load phase gives the
//! cost per message delivered and, with publishers, per publish. Latency is
//! from the publisher's clock reading just before it writes the request to the
//! subscriber's just after it reads the frame: one process, one clock.
//!
//! `pubbench report DIR OUT.md` turns the runs' JSON files into a table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tickcast_bench::procstat;
use tickcast_bench::stats::Summary;
use tickcast_bench::wallclock::now_ns;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

/// One run's result, as written to `--out`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PubRun {
    server: String,
    subscribers: usize,
    topics: usize,
    publishers: usize,
    /// The body size asked for, bytes (0 for a tick run).
    body_bytes: usize,
    /// Publishes per second asked for; 0 for as fast as possible.
    #[serde(default)]
    rate: f64,
    /// The size of the frame payload subscribers got (a message, or a tick).
    frame_bytes: usize,
    seconds: f64,
    /// Publishes answered 202 (0 for a tick run).
    publishes: u64,
    publishes_per_s: f64,
    /// Messages (or ticks) delivered to subscribers during the load phase.
    deliveries: u64,
    deliveries_per_s: f64,
    /// Publish-to-receive, milliseconds.
    latency_ms: Summary,
    /// The publisher's POST round trip, milliseconds.
    post_ms: Summary,
    /// Server CPU per delivered message, microseconds.
    cpu_us_per_delivery: f64,
    /// Server CPU per publish (or per tick), microseconds.
    cpu_us_per_event: f64,
    /// Server CPU over the load phase, as a share of one core.
    cpu_cores: f64,
    /// Clients that missed a message of their topic, got one twice or out of
    /// order, or were lost; the first few, described.
    clients_missing: usize,
    worst: Vec<String>,
}

/// What was published (answered 202), by topic: (publisher, seq) in each
/// publisher's order.
type Published = Arc<Mutex<Vec<Vec<(u32, u32)>>>>;

/// What one subscriber received.
#[derive(Default)]
struct Received {
    /// (publisher, seq) in arrival order.
    messages: Vec<(u32, u32)>,
    /// Publish-to-receive, microseconds.
    latencies_us: Vec<u32>,
    ticks: u64,
    /// The length of the last message or tick payload.
    frame_bytes: usize,
    /// Set if the connection ended before the run did.
    lost: Option<String>,
}

struct Args {
    ws: String,
    http: SocketAddr,
    server: String,
    pid: u32,
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
    Ok(Args {
        ws: take("--ws")?,
        http: take("--http")?
            .parse()
            .map_err(|_| "--http: expected IP:PORT".to_string())?,
        server: take("--server")?,
        pid: number("--server-pid")? as u32,
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
    if argv.get(1).map(String::as_str) == Some("report") {
        let (Some(dir), Some(out)) = (argv.get(2), argv.get(3)) else {
            eprintln!("usage: pubbench report DIR OUT.md");
            std::process::exit(2);
        };
        report(dir, out);
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
    let failed = result.clients_missing > 0;
    eprintln!(
        "pubbench: {} {} subscribers, {} topics, {} publishers: {:.0} publishes/s, {:.0} deliveries/s, \
         latency p50 {:.2} ms p99 {:.2} ms, {:.2} µs CPU per delivery, {} clients missing messages",
        result.server,
        result.subscribers,
        result.topics,
        result.publishers,
        result.publishes_per_s,
        result.deliveries_per_s,
        result.latency_ms.p50,
        result.latency_ms.p99,
        result.cpu_us_per_delivery,
        result.clients_missing
    );
    for line in &result.worst {
        eprintln!("pubbench: FAILED: {line}");
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&result).unwrap()).expect("write --out");
    if failed {
        std::process::exit(1);
    }
}

async fn run(args: &Args) -> PubRun {
    // ---- subscribe ----
    let received: Vec<Arc<Mutex<Received>>> = (0..args.subscribers)
        .map(|_| Arc::new(Mutex::new(Received::default())))
        .collect();
    let welcomed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let handshakes = Arc::new(Semaphore::new(256));
    let mut readers = Vec::new();
    for (i, slot) in received.iter().enumerate() {
        let url = format!("{}?topic=t{}", args.ws, i % args.topics);
        let slot = slot.clone();
        let welcomed = welcomed.clone();
        let stop = stop.clone();
        let handshakes = handshakes.clone();
        readers.push(tokio::spawn(async move {
            subscriber(url, slot, welcomed, stop, handshakes).await;
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while (welcomed.load(Ordering::Relaxed) as usize) < args.subscribers {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let welcomed_all = welcomed.load(Ordering::Relaxed) as usize;
    eprintln!(
        "pubbench: {welcomed_all} of {} subscribers welcomed",
        args.subscribers
    );
    // Let the join notices settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // ---- load ----
    let before = procstat::sample(args.pid).expect("the server's /proc");
    let deliveries_before: u64 = count_deliveries(&received);
    let started = Instant::now();
    let sent: Published = Arc::new(Mutex::new(vec![Vec::new(); args.topics]));
    let post_times: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let mut publishers = Vec::new();
    for p in 0..args.publishers {
        let sent = sent.clone();
        let post_times = post_times.clone();
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
        publishers.push(tokio::spawn(async move {
            publisher(p as u32, load, sent, post_times).await;
        }));
    }
    if publishers.is_empty() {
        tokio::time::sleep(args.duration).await;
    }
    for publisher in publishers {
        publisher.await.expect("a publisher task");
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = procstat::sample(args.pid).expect("the server's /proc");
    let deliveries = count_deliveries(&received) - deliveries_before;

    // ---- drain, then check every client ----
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let publishes: u64 = sent.iter().map(|t| t.len() as u64).sum();
    if publishes > 0 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done = received.iter().enumerate().all(|(i, r)| {
                let r = r.lock().unwrap();
                r.lost.is_some() || r.messages.len() >= sent[i % args.topics].len()
            });
            if done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut worst = Vec::new();
    let mut clients_missing = 0;
    let mut latencies = Vec::new();
    let mut frame_bytes = 0;
    for (i, r) in received.iter().enumerate() {
        let r = r.lock().unwrap();
        frame_bytes = frame_bytes.max(r.frame_bytes);
        latencies.extend(r.latencies_us.iter().map(|&us| f64::from(us) / 1000.0));
        let problem = if let Some(why) = &r.lost {
            Some(format!("subscriber {i} was lost: {why}"))
        } else if publishes > 0 {
            check_client(i, &r.messages, &sent[i % args.topics])
        } else {
            None
        };
        if let Some(problem) = problem {
            clients_missing += 1;
            if worst.len() < 10 {
                worst.push(problem);
            }
        }
    }
    if welcomed_all < args.subscribers {
        clients_missing += args.subscribers - welcomed_all;
        worst.push(format!(
            "{} subscribers never welcomed",
            args.subscribers - welcomed_all
        ));
    }
    for reader in readers {
        reader.abort();
    }
    let cpu_s = after.cpu_s - before.cpu_s;
    let events = if publishes > 0 {
        publishes
    } else {
        // Ticks: each reached every subscriber.
        deliveries / args.subscribers.max(1) as u64
    };
    let mut post_times = std::mem::take(&mut *post_times.lock().unwrap());
    PubRun {
        server: args.server.clone(),
        subscribers: args.subscribers,
        topics: args.topics,
        publishers: args.publishers,
        body_bytes: if publishes > 0 { args.size } else { 0 },
        rate: args.rate,
        frame_bytes,
        seconds,
        publishes,
        publishes_per_s: publishes as f64 / seconds,
        deliveries,
        deliveries_per_s: deliveries as f64 / seconds,
        latency_ms: Summary::of(&mut latencies),
        post_ms: Summary::of(&mut post_times),
        cpu_us_per_delivery: cpu_s * 1e6 / deliveries.max(1) as f64,
        cpu_us_per_event: cpu_s * 1e6 / events.max(1) as f64,
        cpu_cores: cpu_s / seconds,
        clients_missing,
        worst,
    }
}

fn count_deliveries(received: &[Arc<Mutex<Received>>]) -> u64 {
    received
        .iter()
        .map(|r| {
            let r = r.lock().unwrap();
            r.messages.len() as u64 + r.ticks
        })
        .sum()
}

/// Whether subscriber `i` got exactly `sent` (its topic's messages, in the
/// server's order): every message once, each publisher's in order.
fn check_client(i: usize, got: &[(u32, u32)], sent: &[(u32, u32)]) -> Option<String> {
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
    for (p, seqs) in &by_publisher {
        let have = got_by_publisher.get(p).map(Vec::as_slice).unwrap_or(&[]);
        if have != seqs.as_slice() {
            let missing = seqs.iter().find(|s| !have.contains(s));
            return Some(format!(
                "subscriber {i}: publisher {p}: {} of {} messages; first missing seq {missing:?}",
                have.len(),
                seqs.len()
            ));
        }
    }
    // Every publisher's messages arrived, once and in order: the two lists differ
    // only in how publishers interleave, which is the server's to choose. Extra
    // messages (another topic's) are what is left.
    (got.len() != sent.len()).then(|| {
        format!(
            "subscriber {i}: {} messages, {} published to its topic (another topic's got through)",
            got.len(),
            sent.len()
        )
    })
}

async fn subscriber(
    url: String,
    slot: Arc<Mutex<Received>>,
    welcomed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handshakes: Arc<Semaphore>,
) {
    let permit = handshakes.acquire_owned().await.expect("the semaphore");
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
    let (mut ws, _) = match tokio_tungstenite::client_async(url.as_str(), tcp).await {
        Ok(ok) => ok,
        Err(e) => {
            slot.lock().unwrap().lost = Some(format!("handshake: {e}"));
            return;
        }
    };
    drop(permit);
    while let Some(frame) = ws.next().await {
        let at = now_ns();
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(_) => continue,
            Err(e) => {
                if !stop.load(Ordering::Relaxed) {
                    slot.lock().unwrap().lost = Some(format!("read: {e}"));
                }
                return;
            }
        };
        let text = text.as_str();
        let mut r = slot.lock().unwrap();
        if text.starts_with(r#"{"type":"message""#) {
            if let Some((p, s, t)) = body_fields(text) {
                r.messages.push((p, s));
                let us = (at - t).max(0) / 1000;
                r.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                r.frame_bytes = text.len();
            }
        } else if text.starts_with(r#"{"type":"tick""#) {
            r.ticks += 1;
            r.frame_bytes = text.len();
        } else if text.starts_with(r#"{"type":"welcome""#) {
            welcomed.fetch_add(1, Ordering::Relaxed);
        }
    }
    if !stop.load(Ordering::Relaxed) {
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

async fn publisher(p: u32, load: Load, sent: Published, post_times: Arc<Mutex<Vec<f64>>>) {
    let Load {
        http,
        topics,
        size,
        duration,
        period,
        offset,
    } = load;
    let stream = TcpStream::connect(http)
        .await
        .expect("connect to the HTTP port");
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let start = tokio::time::Instant::now();
    let end = Instant::now() + duration;
    let mut seq: u32 = 0;
    let mut times = Vec::new();
    let mut mine: Vec<(usize, u32)> = Vec::new();
    while Instant::now() < end {
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
        write
            .write_all(request.as_bytes())
            .await
            .expect("send a publish");
        let status = read_response(&mut read).await;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 202, "publisher {p}: a publish was refused");
        mine.push((topic, seq));
        seq += 1;
    }
    // Recorded in the order the server accepted them, per publisher: the
    // per-publisher order is what every subscriber must see.
    let mut sent = sent.lock().unwrap();
    for (topic, seq) in mine {
        sent[topic].push((p, seq));
    }
    post_times.lock().unwrap().extend(times);
}

/// Reads one HTTP response with a Content-Length body; returns its status.
async fn read_response(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> u16 {
    let mut line = String::new();
    read.read_line(&mut line).await.expect("a status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        read.read_line(&mut line).await.expect("a header line");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    read.read_exact(&mut body).await.expect("a response body");
    status
}

/// Writes OUT.md from every `*.json` in DIR: the publish runs, then the tick runs
/// they are compared with.
fn report(dir: &str, out: &str) {
    let mut runs: Vec<PubRun> = std::fs::read_dir(dir)
        .expect("the runs directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    runs.sort_by(|a, b| {
        (a.subscribers, a.publishers == 0, a.rate > 0.0, a.topics).cmp(&(
            b.subscribers,
            b.publishers == 0,
            b.rate > 0.0,
            b.topics,
        ))
    });
    let mut md = String::from(
        "| server | subscribers | topics | publishers | rate | publishes/s | deliveries/s | latency p50 ms | p99 ms | POST p50 ms | frame bytes | CPU µs / delivery | CPU µs / publish or tick | CPU cores | clients missing |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &runs {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {:.2} | {:.1} | {:.2} | {} |\n",
            r.server,
            r.subscribers,
            if r.publishers == 0 { "ticks".to_string() } else { r.topics.to_string() },
            r.publishers,
            match (r.publishers, r.rate) {
                (0, _) => "100 ticks/s".to_string(),
                (_, rate) if rate > 0.0 => format!("{rate:.0}/s"),
                _ => "max".to_string(),
            },
            if r.publishers == 0 { "–".to_string() } else { format!("{:.0}", r.publishes_per_s) },
            r.deliveries_per_s,
            if r.publishers == 0 { "–".to_string() } else { format!("{:.2}", r.latency_ms.p50) },
            if r.publishers == 0 { "–".to_string() } else { format!("{:.2}", r.latency_ms.p99) },
            if r.publishers == 0 { "–".to_string() } else { format!("{:.2}", r.post_ms.p50) },
            r.frame_bytes,
            r.cpu_us_per_delivery,
            r.cpu_us_per_event,
            r.cpu_cores,
            r.clients_missing,
        ));
    }
    std::fs::write(out, md).expect("write the report");
    eprintln!("pubbench: wrote {out}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_held_to_every_message_of_its_topic() {
        let sent = [(0, 0), (0, 1), (1, 0), (1, 1)];
        // Publishers may interleave in any order, each in its own order.
        assert_eq!(
            check_client(7, &[(1, 0), (0, 0), (1, 1), (0, 1)], &sent),
            None
        );
        let lost = check_client(7, &[(0, 0), (1, 0), (1, 1)], &sent).unwrap();
        assert!(
            lost.contains("publisher 0") && lost.contains("Some(1)"),
            "{lost}"
        );
        assert!(check_client(7, &[(0, 1), (0, 0), (1, 0), (1, 1)], &sent).is_some());
        assert!(check_client(7, &[(0, 0), (0, 0), (0, 1), (1, 0), (1, 1)], &sent).is_some());
        assert!(check_client(7, &[(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)], &sent).is_some());
    }

    #[test]
    fn body_fields_are_read_from_a_message() {
        let text = r#"{"type":"message","id":5,"topic":"t3","data":{"p":2,"s":41,"t":1795960800412000000,"x":"..."}}"#;
        assert_eq!(body_fields(text), Some((2, 41, 1_795_960_800_412_000_000)));
        assert_eq!(
            body_fields(r#"{"type":"message","id":5,"data":"text"}"#),
            None
        );
    }
}
