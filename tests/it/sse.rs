//! Server-Sent Events on `GET /events`: framing, presence, bounds, shutdown.

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::sse_client::SseClient;
use crate::util::{http_raw, start, start_with, tcp, Client, IO_TIMEOUT};

/// An SSE client gets a welcome, then ticks with `event:`, `id:` and the same
/// JSON as WebSocket clients; ids go up.
#[test]
fn sse_stream_carries_welcome_and_ticks() {
    let server = start();
    let mut sse = SseClient::connect(server.http_addr().unwrap());
    let (welcome, json) = sse.next_named("welcome");
    assert_eq!(json["type"], "welcome");
    assert_eq!(json["clients"], 1);
    let (first, tick1) = sse.next_named("tick");
    let (second, tick2) = sse.next_named("tick");
    assert_eq!(tick2["seq"].as_u64(), tick1["seq"].as_u64().map(|s| s + 1));
    // Ids are published events' ids: ticks carry none; the welcome carries the
    // newest, where a reconnect resumes from.
    assert_eq!(welcome.id, json["last_id"].as_u64());
    assert_eq!((first.id, second.id), (None, None));
    assert!(tick1["time"].as_str().unwrap().ends_with('Z'));
}

/// SSE clients are hub clients: WebSocket clients see them join and leave.
#[test]
fn sse_clients_are_announced_and_counted() {
    let server = start();
    let mut ws = Client::connect(&server);
    ws.welcome();
    let mut sse = SseClient::connect(server.http_addr().unwrap());
    let (_, welcome) = sse.next_named("welcome");
    assert_eq!(welcome["clients"], 2);
    let join = ws.next_of_type("join");
    assert_eq!(join["clients"], 2);
    // The SSE client also hears about a later WebSocket client.
    let mut ws2 = Client::connect(&server);
    ws2.welcome();
    let (_, join2) = sse.next_named("join");
    assert_eq!(join2["clients"], 3);
    // Hanging up is noticed at the next event written to it (the next tick).
    drop(sse);
    let leave = ws.next_of_type("leave");
    assert_eq!(leave["ids"][0], welcome["id"]);
    assert_eq!(leave["reason"], "dropped");
}

/// Published messages reach SSE clients as unnamed events, at once.
#[test]
fn published_messages_arrive_unnamed() {
    let server = start_with(|c| c.interval = None);
    let mut sse = SseClient::connect(server.http_addr().unwrap());
    sse.next_named("welcome");
    server.publisher().publish_text("two\nlines").unwrap();
    let event = sse.next_event().unwrap();
    assert_eq!(event.name, None);
    assert_eq!(event.data, "two\nlines");
}

/// An SSE client that stops reading is cut off as `too_slow`; others go on.
#[test]
fn stuck_sse_client_is_cut_off() {
    let server = start_with(|c| {
        c.interval = None;
        c.max_message_size = 16 * 1024;
        c.max_backlog = 64 * 1024;
    });
    let mut good = Client::connect(&server);
    good.welcome();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&server.http_addr().unwrap().into(), IO_TIMEOUT)
        .unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut stuck = SseClient::over(stream);
    stuck.next_named("welcome");
    good.next_of_type("join");

    // Publish until the good client hears the stuck one was cut off; the good
    // client acknowledges each message, so it never falls behind itself.
    let publisher = server.publisher();
    let bulk = format!(r#"{{"type":"bulk","pad":"{}"}}"#, "p".repeat(32 * 1024));
    let leave = (0..2000)
        .find_map(|_| {
            publisher.publish_text(bulk.clone()).unwrap();
            loop {
                let msg = good.next_json();
                match msg["type"].as_str() {
                    Some("bulk") => return None,
                    Some("leave") => return Some(msg),
                    _ => continue,
                }
            }
        })
        .expect("the stuck SSE client was cut off");
    assert_eq!(leave["reason"], "too_slow");
    drop(stuck);
}

/// Shutdown ends every SSE stream and still returns promptly.
#[test]
fn shutdown_ends_sse_streams() {
    let server = start();
    let mut sse = SseClient::connect(server.http_addr().unwrap());
    sse.next_named("welcome");
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        server.shutdown();
        done_tx.send(()).unwrap();
    });
    while sse.next_event().is_some() {}
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("shutdown returned");
}

/// SSE streams and WebSocket clients share `--max-clients`: a stream beyond it
/// gets `503`, and a stream in it keeps a WebSocket client out.
#[test]
fn sse_streams_count_against_max_clients() {
    let server = start_with(|c| c.max_clients = Some(1));
    let http = server.http_addr().unwrap();
    let mut sse = SseClient::connect(http);
    sse.next_named("welcome");
    // Only the head is read: a stream, if wrongly granted, would never end.
    let mut second = tcp(http);
    second
        .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut status_line = [0u8; 12];
    std::io::Read::read_exact(&mut second, &mut status_line).unwrap();
    assert_eq!(&status_line, b"HTTP/1.1 503", "a second stream");
    let (status, _, _) = http_raw(
        server.ws_addr(),
        "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(status, 503, "a WebSocket client beside the stream");
    // The stream goes on.
    sse.next_named("tick");
}

/// A stream's `id:`s are the ids of published events (messages, lines), the ids
/// `Last-Event-ID` resumes from; ticks and notices carry none, the welcome the
/// newest id before it.
#[test]
fn sse_ids_are_the_published_events_ids() {
    let server = start();
    let mut sse = SseClient::connect(server.http_addr().unwrap());
    let (welcome, json) = sse.next_named("welcome");
    assert_eq!(welcome.id, json["last_id"].as_u64());
    let publisher = server.publisher();
    let first = publisher.publish(None, "one").unwrap();
    let second = publisher.publish(None, r#"{"n":2}"#).unwrap();
    assert_eq!(second, first + 1);
    assert_eq!(Some(first - 1), welcome.id);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = sse.next_event().expect("the stream stays open");
        match event.name.as_deref() {
            None => {
                let json: Value = serde_json::from_str(&event.data).unwrap();
                assert_eq!(json["type"], "message", "{event:?}");
                assert_eq!(event.id, json["id"].as_u64(), "{event:?}");
                seen.push(json);
            }
            Some(_) => assert_eq!(event.id, None, "{event:?}"),
        }
    }
    assert_eq!(seen[0]["data"], "one");
    assert_eq!(seen[1]["data"]["n"], 2);
    assert_eq!(seen[1]["id"], second);
}

/// `/events` follows `--allowed-origin` as the WebSocket does: a browser on a site
/// not listed gets `403`; a listed one, or a client with no `Origin` (curl), the
/// stream, which any site's page may read (`Access-Control-Allow-Origin: *`).
#[test]
fn sse_streams_follow_allowed_origins() {
    let server = start_with(|c| c.allowed_origins = vec!["https://good.example".into()]);
    let http = server.http_addr().unwrap();
    let (status, _, body) = http_raw(
        http,
        "GET /events HTTP/1.1\r\nHost: t\r\nOrigin: https://evil.example\r\n\r\n",
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("--allowed-origin"));
    for extra in ["Origin: https://GOOD.example\r\n", ""] {
        let mut stream = SseClient::open(http, "/events", extra);
        let (_, welcome) = stream.next_named("welcome");
        assert_eq!(welcome["type"], "welcome", "{extra}");
    }
    let mut raw = tcp(http);
    raw.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 512];
    let n = std::io::Read::read(&mut raw, &mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
}
