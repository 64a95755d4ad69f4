//! Resuming after a reconnect: a client that comes back with the id of the last
//! event it saw (`?since=` on WebSocket, `Last-Event-ID` on SSE) gets every
//! published event it missed, in order, then the live stream, with no gap and no
//! duplicate; one that missed more than the history holds gets a `reset`.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::Value;
use tickcast::{Publisher, Server};

use crate::sse_client::SseClient;
use crate::util::{http_raw, next_event, start_with, Client};

/// A server without ticks, so that what a client reads is what the test published
/// (and presence notices, which the readers below skip).
fn quiet(adjust: impl FnOnce(&mut tickcast::Config)) -> Server {
    start_with(|c| {
        c.interval = None;
        adjust(c);
    })
}

/// The next SSE event that is not a presence notice, as (SSE id, JSON).
fn next_sse(client: &mut SseClient) -> (Option<u64>, Value) {
    loop {
        let event = client.next_event().expect("the stream stays open");
        if !matches!(event.name.as_deref(), Some("join" | "leave")) {
            let json: Value = serde_json::from_str(&event.data).unwrap();
            return (event.id, json);
        }
    }
}

/// Publishes a mix while a client subscribed to `prices` is away: to its topic,
/// to another, to everyone, and lines. Returns the ids it must get back, in order.
fn publish_while_away(publisher: &Publisher) -> Vec<u64> {
    let mut expected = Vec::new();
    for i in 0..40 {
        match i % 4 {
            0 => expected.push(publisher.publish(Some("prices"), &format!("p{i}")).unwrap()),
            1 => {
                publisher.publish(Some("news"), &format!("n{i}")).unwrap();
            }
            2 => expected.push(publisher.publish(None, &format!(r#"{{"n":{i}}}"#)).unwrap()),
            _ => expected.push(publisher.publish_line(&format!("line {i}")).unwrap()),
        }
    }
    expected
}

/// A WebSocket client that reconnects with `?since=` gets exactly what it missed
/// for its topics, in order, then live events.
#[test]
fn a_websocket_client_resumes_with_since_and_misses_nothing() {
    let server = quiet(|_| {});
    let publisher = server.publisher();
    let mut client = Client::connect_path(&server, "/echo?topic=prices");
    let welcome = client.welcome();
    let seen = publisher.publish(Some("prices"), "before").unwrap();
    assert_eq!(welcome["last_id"].as_u64(), Some(seen - 1), "{welcome}");
    assert_eq!(next_event(&mut client)["id"], seen);
    // The connection is lost, not closed: no close handshake.
    drop(client);

    let expected = publish_while_away(&publisher);
    let mut back = Client::connect_path(&server, &format!("/echo?topic=prices&since={seen}"));
    let welcome = back.welcome();
    let last_id = welcome["last_id"].as_u64().unwrap();
    assert!(
        last_id >= seen && last_id <= *expected.last().unwrap(),
        "{welcome}"
    );
    let live = publisher.publish(None, "live").unwrap();
    let mut got = Vec::new();
    while got.last() != Some(&live) {
        let msg = next_event(&mut back);
        assert!(
            matches!(msg["type"].as_str(), Some("message" | "line")),
            "{msg}"
        );
        assert_ne!(msg["topic"], "news", "another topic's message: {msg}");
        got.push(msg["id"].as_u64().unwrap());
    }
    let mut want = expected;
    want.push(live);
    assert_eq!(got, want, "what the client got back, by id");
}

/// An SSE client that reconnects with `Last-Event-ID` (what a browser's
/// `EventSource` does by itself) gets exactly what it missed, each event with its
/// id, then live events.
#[test]
fn an_sse_client_resumes_with_last_event_id_and_misses_nothing() {
    let server = quiet(|_| {});
    let http = server.http_addr().unwrap();
    let publisher = server.publisher();
    let mut stream = SseClient::open(http, "/events?topic=prices", "");
    let (_, welcome) = stream.next_named("welcome");
    assert_eq!(welcome["type"], "welcome");
    let seen = publisher.publish(None, "before").unwrap();
    let (id, json) = next_sse(&mut stream);
    assert_eq!((id, json["id"].as_u64()), (Some(seen), Some(seen)));
    drop(stream);

    let expected = publish_while_away(&publisher);
    let mut back = SseClient::open(
        http,
        "/events?topic=prices",
        &format!("Last-Event-ID: {seen}\r\n"),
    );
    let (welcome_id, welcome) = next_sse(&mut back);
    assert_eq!(welcome["type"], "welcome");
    // Should the stream break during the replay, it resumes from where it began.
    assert_eq!(welcome_id, Some(seen));
    let live = publisher.publish(None, "live").unwrap();
    let mut got = Vec::new();
    while got.last() != Some(&live) {
        let (id, json) = next_sse(&mut back);
        assert_eq!(
            id,
            json["id"].as_u64(),
            "the SSE id is the event's id: {json}"
        );
        got.push(id.unwrap());
    }
    let mut want = expected;
    want.push(live);
    assert_eq!(got, want, "what the stream got back, by id");
}

/// `?since=` on `/events` works like `Last-Event-ID` (a page that opens a new
/// `EventSource` has no way to set the header); the header wins, since an
/// `EventSource` reconnects to the URL it was first opened with.
#[test]
fn since_in_the_url_resumes_an_sse_stream_and_last_event_id_wins() {
    let server = quiet(|_| {});
    let http = server.http_addr().unwrap();
    let publisher = server.publisher();
    let first = publisher.publish(None, "a").unwrap();
    let second = publisher.publish(None, "b").unwrap();
    let third = publisher.publish(None, "c").unwrap();
    let mut stream = SseClient::open(http, &format!("/events?since={first}"), "");
    assert_eq!(next_sse(&mut stream).1["type"], "welcome");
    assert_eq!(next_sse(&mut stream).0, Some(second));
    assert_eq!(next_sse(&mut stream).0, Some(third));
    let mut reconnected = SseClient::open(
        http,
        &format!("/events?since={first}"),
        &format!("Last-Event-ID: {second}\r\n"),
    );
    assert_eq!(next_sse(&mut reconnected).1["type"], "welcome");
    assert_eq!(next_sse(&mut reconnected).0, Some(third));
}

/// A client that missed more than the history holds is told so, with a `reset`
/// right after its welcome, then goes on live; so is one whose id this server
/// never gave (a restart).
#[test]
fn a_client_that_missed_too_much_gets_a_reset() {
    let server = quiet(|c| c.history = 5);
    let publisher = server.publisher();
    let mut client = Client::connect(&server);
    let seen = client.welcome()["last_id"].as_u64().unwrap();
    drop(client);
    // `publish` returns once the event is queued for the hub; a client that
    // joined before the hub sent it would get it live, not miss it. A watcher
    // that receives the newest event says the hub has sent (and kept) them all.
    let mut watcher = Client::connect(&server);
    watcher.welcome();
    let ids: Vec<u64> = (0..10)
        .map(|i| publisher.publish(None, &i.to_string()).unwrap())
        .collect();
    let newest = *ids.last().unwrap();
    while next_event(&mut watcher)["id"] != newest {}

    // Event seen + 1 has left the history: nothing is replayed, the client is told.
    let mut back = Client::connect_path(&server, &format!("/echo?since={seen}"));
    back.welcome();
    let reset = next_event(&mut back);
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(reset["since"], seen);
    assert_eq!(reset["last_id"], newest);
    assert!(
        reset["reason"].as_str().unwrap().contains("no longer kept"),
        "{reset}"
    );
    let live = publisher.publish(None, "live").unwrap();
    assert_eq!(
        next_event(&mut back)["id"],
        live,
        "live events follow the reset"
    );

    // Still within the history: replayed.
    let mut recent = Client::connect_path(&server, &format!("/echo?since={}", ids[6]));
    recent.welcome();
    for want in [ids[7], ids[8], ids[9], live] {
        assert_eq!(next_event(&mut recent)["id"], want);
    }

    // An id from the future (another run of the server, say).
    let stream = &mut SseClient::open(
        server.http_addr().unwrap(),
        "/events",
        &format!("Last-Event-ID: {}\r\n", live + 1000),
    );
    assert_eq!(next_sse(stream).1["type"], "welcome");
    let (id, reset) = next_sse(stream);
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(
        id,
        Some(live),
        "the stream resumes from the newest id next time"
    );
    assert!(
        reset["reason"].as_str().unwrap().contains("restarted"),
        "{reset}"
    );
}

/// With `--history 0` nothing is kept, yet a client that missed nothing is not
/// reset: its id is the newest.
#[test]
fn with_no_history_a_client_that_missed_nothing_just_goes_on() {
    let server = quiet(|c| c.history = 0);
    let publisher = server.publisher();
    let id = publisher.publish(None, "x").unwrap();
    let mut client = Client::connect_path(&server, &format!("/echo?since={id}"));
    client.welcome();
    let live = publisher.publish(None, "y").unwrap();
    assert_eq!(next_event(&mut client)["id"], live);
}

/// A bad `since` is refused at the handshake, naming the problem.
#[test]
fn a_bad_since_gets_400() {
    let server = quiet(|_| {});
    for target in [
        "/echo?since=yesterday",
        "/echo?since=1&since=2",
        "/echo?since=-1",
    ] {
        let (status, _, body) = http_raw(
            server.ws_addr(),
            &format!(
                "GET {target} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
        );
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{target}: {body}");
        assert!(body.contains("since"), "{target}: {body}");
    }
    let (status, _, body) = http_raw(
        server.http_addr().unwrap(),
        "GET /events HTTP/1.1\r\nHost: t\r\nLast-Event-ID: abc\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}

/// Replay and going live are one step: clients that drop and come back again and
/// again, while a publisher publishes as fast as it can, each get every event
/// exactly once, in order. Checked client by client, id by id.
#[test]
fn clients_that_reconnect_during_a_flood_of_publishes_each_get_every_event_once() {
    const EVENTS: u64 = 3000;
    const CLIENTS: u64 = 8;
    let server = Arc::new(quiet(|c| c.history = 100_000));
    let publisher = server.publisher();
    let start = publisher.publish(None, "start").unwrap();
    let last = start + EVENTS;

    let flood = thread::spawn(move || {
        for i in 1..=EVENTS {
            let id = publisher.publish(None, &i.to_string()).unwrap();
            assert_eq!(id, start + i);
            // Pacing, not synchronisation: spread the flood over the clients'
            // reconnects instead of finishing before most of them begin.
            if i % 50 == 0 {
                thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let server = server.clone();
            thread::spawn(move || {
                let mut got: Vec<u64> = Vec::new();
                let mut reconnects = 0;
                // Each visit reads a different number of events, then drops the
                // connection without a close handshake.
                while got.last() != Some(&last) {
                    let since = got.last().copied().unwrap_or(start);
                    let mut client = Client::connect_path(&server, &format!("/echo?since={since}"));
                    client.welcome();
                    reconnects += 1;
                    for _ in 0..(17 + c * 13 + reconnects % 7) {
                        let msg = next_event(&mut client);
                        assert_eq!(msg["type"], "message", "client {c}: {msg}");
                        got.push(msg["id"].as_u64().unwrap());
                        if got.last() == Some(&last) {
                            break;
                        }
                    }
                }
                (got, reconnects)
            })
        })
        .collect();
    flood.join().expect("the publisher");
    let want: Vec<u64> = (start + 1..=last).collect();
    for (c, client) in clients.into_iter().enumerate() {
        let (got, reconnects) = client.join().expect("a client thread");
        assert!(
            reconnects > 10,
            "client {c} reconnected only {reconnects} times"
        );
        if got != want {
            let missing: Vec<_> = want
                .iter()
                .filter(|id| !got.contains(id))
                .take(10)
                .collect();
            let twice: Vec<_> = got.windows(2).filter(|w| w[0] >= w[1]).take(10).collect();
            panic!(
                "client {c} (after {reconnects} reconnects): {} events instead of {EVENTS}; \
                 missing (first 10): {missing:?}; out of order or twice: {twice:?}",
                got.len()
            );
        }
    }
}
