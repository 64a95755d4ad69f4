//! `peer-tokio`: tickcast's wire protocol (v1) on tokio and tokio-tungstenite, the
//! async Rust server that scripts/bench.sh measures tickcast against.
//!
//! Written the way a competent tokio user would write it:
//!
//! - the stock multi-thread runtime (`#[tokio::main]`, one worker per core);
//! - one task per connection (`connection`), which `select!`s between the client's
//!   next message (echoed back), the broadcast channel, and the shutdown signal.
//!   It subscribes to the broadcast channel before its handshake, so every tick
//!   made after its `101 Switching Protocols` reaches it (as a browser sees it:
//!   `onopen` fires at the 101); the welcome is still its first frame;
//! - one `tokio::sync::broadcast` channel for everything sent to many clients. The
//!   tick is serialised once into a `Utf8Bytes` and every receiver clones that
//!   (a reference count), so N clients cost N frame writes, not N encodings;
//! - one `hub` task that assigns ids, counts clients, and batches presence notices
//!   for 50 ms, like tickcast's hub thread;
//! - a `ticker` task aligned to wall-clock multiples of the interval.
//!
//! A client whose task falls more than [`CHANNEL_CAPACITY`] messages behind sees
//! `RecvError::Lagged` and is cut off as `too_slow`, tokio's equivalent of
//! tickcast's `--max-backlog`.
//!
//! tungstenite's buffer sizes are left at their defaults (128 KiB each): that is
//! what a user of the crate gets. `--read-buffer-size 4096` is what a user who
//! cares about 10,000 clients sets: each connection then allocates 4 KiB to read
//! into, not 128 KiB (scripts/bench.sh runs it as the peer `tokio-tuned`).
//! SIGINT or SIGTERM closes every client with 1001.
//!
//! Usage: `peer-tokio [--ws-addr HOST:PORT] [--interval 1s|250ms]
//! [--read-buffer-size BYTES]`. Prints `WebSocket: ws://HOST:PORT/echo` on
//! stderr once bound (port 0 picks a free port).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use tickcast_bench::wallclock;

/// How many broadcast messages a slow client may fall behind before it is cut off.
/// At one tick a second that is minutes of slack; in the 10 ms stress mode, 2.5 s.
const CHANNEL_CAPACITY: usize = 256;
/// Joins and leaves within this window go out as one notice.
const PRESENCE_WINDOW: Duration = Duration::from_millis(50);
/// The largest message a client may send (tickcast's default).
const MAX_MESSAGE_SIZE: usize = 1 << 20;

/// Something for many clients, serialised once.
#[derive(Clone)]
enum Broadcast {
    /// For every client: the ticks.
    All(Utf8Bytes),
    /// A join or leave notice: only for clients whose id is below `below`, those
    /// the hub had joined when it sent the notice. A client subscribes before its
    /// handshake and joins after it, so this also keeps out the notices sent in
    /// between, which its welcome's count already reflects.
    Presence { below: u64, text: Utf8Bytes },
}

/// Why a client left, as the `leave` notice says.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
    Closed,
    Dropped,
    TooSlow,
    Shutdown,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Closed => "closed",
            Reason::Dropped => "dropped",
            Reason::TooSlow => "too_slow",
            Reason::Shutdown => "shutdown",
        }
    }
}

/// A message to the hub task.
enum HubEvent {
    /// A client finished its handshake; the hub answers with its id and the
    /// client count including it.
    Join {
        reply: oneshot::Sender<(u64, usize)>,
    },
    Leave {
        id: u64,
        reason: Reason,
    },
}

struct Args {
    ws_addr: SocketAddr,
    interval: Duration,
    /// tungstenite's `read_buffer_size`, or its default.
    read_buffer_size: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        ws_addr: "127.0.0.1:40133".parse().expect("a valid literal address"),
        interval: Duration::from_secs(1),
        read_buffer_size: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--ws-addr" => {
                let v = value()?;
                args.ws_addr = v
                    .parse()
                    .map_err(|_| format!("--ws-addr: expected HOST:PORT, got {v:?}"))?;
            }
            "--interval" => {
                let v = value()?;
                args.interval = tickcast_bench::parse_duration(&v)
                    .ok_or_else(|| format!("--interval: expected e.g. 250ms or 1s, got {v:?}"))?;
            }
            "--read-buffer-size" => {
                let v = value()?;
                let size = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(|| format!("--read-buffer-size: expected bytes, got {v:?}"))?;
                args.read_buffer_size = Some(size);
            }
            "-h" | "--help" => {
                return Err("usage: peer-tokio [--ws-addr HOST:PORT] [--interval 1s] \
                            [--read-buffer-size BYTES]"
                    .into())
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("peer-tokio: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(args.ws_addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("peer-tokio: cannot bind {}: {e}", args.ws_addr);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => eprintln!("WebSocket: ws://{addr}/echo"),
        Err(e) => {
            eprintln!("peer-tokio: {e}");
            return ExitCode::FAILURE;
        }
    }

    let (bcast_tx, _) = broadcast::channel::<Broadcast>(CHANNEL_CAPACITY);
    let (hub_tx, hub_rx) = mpsc::unbounded_channel();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(ticker(args.interval, bcast_tx.clone()));
    let hub = tokio::spawn(hub(hub_rx, bcast_tx.clone()));

    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("peer-tokio: cannot handle SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(
                        stream,
                        peer,
                        // Subscribed before the handshake: see `connection`.
                        bcast_tx.subscribe(),
                        hub_tx.clone(),
                        shutdown_rx.clone(),
                        args.read_buffer_size,
                    ));
                }
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    eprintln!("peer-tokio: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    // Close every client with 1001; each task sends its leave to the hub and drops
    // its hub sender, so the hub ends once every client is gone.
    let _ = shutdown_tx.send(true);
    drop(hub_tx);
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(3), hub).await;
    ExitCode::SUCCESS
}

/// Publishes a tick every interval, on wall-clock multiples of it.
async fn ticker(interval: Duration, bcast_tx: broadcast::Sender<Broadcast>) {
    let interval_ns = interval.as_nanos().max(1);
    let mut seq: u64 = 0;
    let mut next_slot = slot_after(SystemTime::now(), interval_ns);
    loop {
        let due = UNIX_EPOCH + Duration::from_nanos((next_slot * interval_ns) as u64);
        if let Ok(wait) = due.duration_since(SystemTime::now()) {
            tokio::time::sleep(wait).await;
        }
        seq += 1;
        let text = format!(
            r#"{{"type":"tick","seq":{seq},"time":"{}"}}"#,
            wallclock::rfc3339_millis(SystemTime::now())
        );
        // Serialised once; an error only means nobody is connected.
        let _ = bcast_tx.send(Broadcast::All(Utf8Bytes::from(text)));
        next_slot = (next_slot + 1).max(slot_after(SystemTime::now(), interval_ns));
    }
}

fn slot_after(time: SystemTime, interval_ns: u128) -> u128 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    since.as_nanos() / interval_ns + 1
}

/// Assigns ids, counts clients, and sends presence notices in 50 ms batches.
async fn hub(
    mut hub_rx: mpsc::UnboundedReceiver<HubEvent>,
    bcast_tx: broadcast::Sender<Broadcast>,
) {
    let mut next_id: u64 = 1;
    let mut clients: usize = 0;
    let mut joined: Vec<u64> = Vec::new();
    let mut left: BTreeMap<Reason, Vec<u64>> = BTreeMap::new();
    let mut due: Option<Instant> = None;
    loop {
        let event = tokio::select! {
            event = hub_rx.recv() => match event {
                Some(event) => Some(event),
                None => return,
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => None,
        };
        match event {
            Some(HubEvent::Join { reply }) => {
                let id = next_id;
                next_id += 1;
                clients += 1;
                if reply.send((id, clients)).is_err() {
                    // The client vanished before it was welcomed: never announce it.
                    clients -= 1;
                    continue;
                }
                joined.push(id);
            }
            Some(HubEvent::Leave { id, reason }) => {
                clients -= 1;
                if let Some(at) = joined.iter().position(|&j| j == id) {
                    // Joined and left within one window: nobody heard of it.
                    joined.remove(at);
                } else {
                    left.entry(reason).or_default().push(id);
                }
            }
            None => {
                due = None;
                if let Some(&first_new) = joined.first() {
                    let text = format!(
                        r#"{{"type":"join","ids":[{}],"clients":{clients}}}"#,
                        id_list(&joined)
                    );
                    let _ = bcast_tx.send(Broadcast::Presence {
                        below: first_new,
                        text: text.into(),
                    });
                    joined.clear();
                }
                for (reason, ids) in std::mem::take(&mut left) {
                    let text = format!(
                        r#"{{"type":"leave","ids":[{}],"clients":{clients},"reason":"{}"}}"#,
                        id_list(&ids),
                        reason.as_str()
                    );
                    let _ = bcast_tx.send(Broadcast::Presence {
                        below: next_id,
                        text: text.into(),
                    });
                }
                continue;
            }
        }
        if due.is_none() {
            due = Some(Instant::now() + PRESENCE_WINDOW);
        }
    }
}

fn id_list(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

/// One client, from handshake to leave.
///
/// `bcast_rx` was subscribed before the handshake began, so every broadcast made
/// after the 101 is written waits in it while the handshake finishes and the hub
/// answers; the connection reads it only after sending the welcome. (A handshake
/// so slow that [`CHANNEL_CAPACITY`] broadcasts pile up meanwhile ends as
/// `too_slow`, like any client that falls that far behind.)
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    mut bcast_rx: broadcast::Receiver<Broadcast>,
    hub_tx: mpsc::UnboundedSender<HubEvent>,
    mut shutdown_rx: watch::Receiver<bool>,
    read_buffer_size: Option<usize>,
) {
    let _ = stream.set_nodelay(true);
    // The shape tungstenite's handshake callback requires.
    #[allow(clippy::result_large_err)]
    let check_path = |request: &Request, response: Response| match request.uri().path() {
        "/echo" | "/" => Ok(response),
        _ => {
            let mut refusal = ErrorResponse::new(Some("no such endpoint; use /echo".into()));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            Err(refusal)
        }
    };
    let mut config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE_SIZE));
    if let Some(size) = read_buffer_size {
        config = config.read_buffer_size(size);
    }
    let mut ws =
        match tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(config))
            .await
        {
            Ok(ws) => ws,
            Err(e) => {
                if std::env::var_os("PEER_DEBUG").is_some() {
                    eprintln!("{peer}: handshake failed: {e}");
                }
                return;
            }
        };

    let (reply_tx, reply_rx) = oneshot::channel();
    if hub_tx.send(HubEvent::Join { reply: reply_tx }).is_err() {
        return;
    }
    let Ok((id, clients)) = reply_rx.await else {
        return;
    };
    let welcome = format!(
        r#"{{"type":"welcome","id":{id},"clients":{clients},"time":"{}"}}"#,
        wallclock::rfc3339_millis(SystemTime::now())
    );
    let mut reason = Reason::Dropped;
    if ws.send(Message::text(welcome)).await.is_ok() {
        reason = loop {
            tokio::select! {
                message = ws.next() => match message {
                    // Echo to the sender only, as the same frame type.
                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                        if ws.send(m).await.is_err() {
                            break Reason::Dropped;
                        }
                    }
                    // tungstenite queues the close reply; keep reading until it is sent
                    // and the stream ends.
                    Some(Ok(Message::Close(_))) => {
                        while let Some(Ok(_)) = ws.next().await {}
                        break Reason::Closed;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break Reason::Dropped,
                },
                item = bcast_rx.recv() => {
                    let text = match item {
                        Ok(Broadcast::All(text)) => text,
                        Ok(Broadcast::Presence { below, text }) if id < below => text,
                        Ok(Broadcast::Presence { .. }) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Hang up: a close frame would queue behind the backlog.
                            break Reason::TooSlow;
                        }
                        Err(broadcast::error::RecvError::Closed) => break Reason::Shutdown,
                    };
                    if ws.send(Message::Text(text)).await.is_err() {
                        break Reason::Dropped;
                    }
                }
                _ = shutdown_rx.changed() => {
                    let frame = CloseFrame {
                        code: CloseCode::Away,
                        reason: "server shutting down".into(),
                    };
                    let _ = ws.close(Some(frame)).await;
                    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
                    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                    break Reason::Shutdown;
                }
            }
        };
    }
    let _ = hub_tx.send(HubEvent::Leave { id, reason });
}
