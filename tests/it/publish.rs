//! `POST /publish`, topics, and the library's `Publisher::publish`: who may
//! publish, what every bad request gets, and who receives what.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{http_raw, start_with, tcp, Client, IO_TIMEOUT};

/// `POST /publish` with `body`, `topic` in the query if given, and `extra` header
/// lines; returns (status, lowercased head, body).
fn post(addr: SocketAddr, topic: Option<&str>, body: &[u8], extra: &str) -> (u16, String, Value) {
    let query = topic.map(|t| format!("?topic={t}")).unwrap_or_default();
    let mut request = format!(
        "POST /publish{query} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut stream = tcp(addr);
    stream.write_all(&request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("a response");
    let (status, head, body) = crate::util::split_response(&response);
    let json = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, head, json)
}

/// The next message that is not a tick or a presence notice.
fn next_message(client: &mut Client) -> Value {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no message in time");
        let msg = client.next_json();
        if !matches!(msg["type"].as_str(), Some("tick" | "join" | "leave")) {
            return msg;
        }
    }
}

/// A publish reaches every client as one typed message: a JSON body as JSON,
/// text as a string; the answer is `202` with the event's id.
#[test]
fn a_publish_reaches_every_client() {
    let server = start_with(|_| {});
    let http = server.http_addr().unwrap();
    let mut client = Client::connect(&server);
    client.welcome();
    let (status, head, answer) = post(http, None, br#"{"price":42}"#, "");
    assert_eq!(status, 202, "{answer}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let id = answer["id"].as_u64().expect("an id");
    let msg = next_message(&mut client);
    assert_eq!(
        msg,
        serde_json::json!({"type": "message", "id": id, "data": {"price": 42}})
    );

    let (status, _, answer) = post(http, None, b"hello there", "");
    assert_eq!(status, 202);
    assert_eq!(answer["id"], id + 1, "ids only grow");
    assert_eq!(next_message(&mut client)["data"], "hello there");
}

/// With `--publish-token`, only a request carrying it publishes; the others get
/// `401` and nothing reaches a client.
#[test]
fn the_token_is_needed_when_set() {
    let server = start_with(|c| c.publish_token = Some("s3cret".into()));
    let http = server.http_addr().unwrap();
    let mut client = Client::connect(&server);
    client.welcome();
    for (extra, what) in [
        ("", "no token"),
        ("Authorization: Bearer wrong\r\n", "a wrong token"),
        ("Authorization: Bearer s3cre\r\n", "a prefix of the token"),
        ("Authorization: Basic s3cret\r\n", "another scheme"),
    ] {
        let (status, head, _) = post(http, None, b"refused", extra);
        assert_eq!(status, 401, "{what}");
        assert!(head.contains("www-authenticate: bearer"), "{what}: {head}");
    }
    let (status, _, _) = post(http, None, b"allowed", "Authorization: Bearer s3cret\r\n");
    assert_eq!(status, 202);
    assert_eq!(
        next_message(&mut client)["data"],
        "allowed",
        "a refused one got through"
    );
}

/// Without a token only this machine may publish, so a request that a proxy on
/// this machine says it forwarded (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`)
/// is from elsewhere: `403`, and nothing is published. With a token set, the
/// token decides.
#[test]
fn without_a_token_forwarded_requests_are_refused() {
    let server = start_with(|_| {});
    let http = server.http_addr().unwrap();
    let mut client = Client::connect(&server);
    client.welcome();
    for header in [
        "X-Forwarded-For: 203.0.113.9\r\n",
        "Forwarded: for=203.0.113.9\r\n",
        "X-Real-IP: 203.0.113.9\r\n",
    ] {
        let (status, _, why) = post(http, None, b"refused", header);
        assert_eq!(status, 403, "{header}: {why}");
        assert!(
            why.as_str().unwrap_or_default().contains("--publish-token"),
            "{why}"
        );
    }
    assert_eq!(post(http, None, b"local", "").0, 202);
    assert_eq!(
        next_message(&mut client)["data"],
        "local",
        "a refused one got through"
    );

    let server = start_with(|c| c.publish_token = Some("t0ken".into()));
    let forwarded = "X-Forwarded-For: 203.0.113.9\r\nAuthorization: Bearer t0ken\r\n";
    let (status, _, why) = post(server.http_addr().unwrap(), None, b"x", forwarded);
    assert_eq!(status, 202, "{why}");
}

/// `--publish off` refuses every publish with `403`.
#[test]
fn publishing_can_be_switched_off() {
    let server = start_with(|c| c.publish = false);
    let (status, _, answer) = post(server.http_addr().unwrap(), None, b"x", "");
    assert_eq!(status, 403);
    assert!(
        answer
            .as_str()
            .unwrap_or_default()
            .contains("--publish off"),
        "{answer}"
    );
}

/// Every bad publish gets a clear answer, and nothing reaches a client: the first
/// message a client sees is the good publish sent after all the bad ones.
#[test]
fn bad_publishes_are_refused_and_reach_nobody() {
    let server = start_with(|c| {
        c.max_message_size = 64;
        c.max_backlog = 1 << 20;
        c.http_request_timeout = Duration::from_millis(300);
    });
    let http = server.http_addr().unwrap();
    let mut client = Client::connect(&server);
    client.welcome();

    let (status, _, why) = post(http, None, &[0xff, 0xfe], "");
    assert_eq!(status, 400, "not UTF-8: {why}");
    let (status, _, why) = post(http, None, &[b'x'; 65], "");
    assert_eq!(status, 413, "too big: {why}");
    let (status, _, why) = post(http, Some("no%20spaces"), b"x", "");
    assert_eq!(status, 400, "bad topic: {why}");
    assert!(
        why.as_str()
            .unwrap_or_default()
            .contains("1 to 64 characters"),
        "{why}"
    );
    let (status, _, why) = post(http, Some("a&topic=b"), b"x", "");
    assert_eq!(status, 400, "two topics: {why}");
    let (status, head, _) = http_raw(
        http,
        "GET /publish HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert!(head.contains("allow: post"), "{head}");
    let (status, _, _) = http_raw(
        http,
        "POST /publish HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    );
    assert_eq!(status, 411, "a chunked body");
    // Half the body, then silence: 408 at the request timeout.
    let mut slow = tcp(http);
    slow.write_all(b"POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    let mut response = Vec::new();
    slow.read_to_end(&mut response).unwrap();
    assert_eq!(
        crate::util::split_response(&response).0,
        408,
        "a stalled body"
    );

    let (status, _, _) = post(http, None, b"the good one", "");
    assert_eq!(status, 202);
    assert_eq!(next_message(&mut client)["data"], "the good one");
}

/// Topics: a client chooses them with `?topic=` (WebSocket and SSE alike) and gets
/// their messages besides everything sent to all; a topic's message reaches its
/// subscribers only.
#[test]
fn topics_route_messages_to_their_subscribers() {
    let server = start_with(|_| {});
    let http = server.http_addr().unwrap();
    let mut prices = Client::connect_path(&server, "/echo?topic=prices");
    let mut both = Client::connect_path(&server, "/echo?topic=news&topic=prices");
    let mut plain = Client::connect(&server);
    for c in [&mut prices, &mut both, &mut plain] {
        c.welcome();
    }
    assert_eq!(post(http, Some("news"), b"n1", "").0, 202);
    assert_eq!(post(http, Some("prices"), b"p1", "").0, 202);
    assert_eq!(post(http, None, b"all", "").0, 202);
    let got = |c: &mut Client, n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|_| {
                let m = next_message(c);
                let topic = m["topic"].as_str().unwrap_or("-").to_string();
                (topic, m["data"].as_str().unwrap().to_string())
            })
            .collect()
    };
    let pair = |t: &str, d: &str| (t.to_string(), d.to_string());
    assert_eq!(
        got(&mut prices, 2),
        [pair("prices", "p1"), pair("-", "all")]
    );
    assert_eq!(
        got(&mut both, 3),
        [pair("news", "n1"), pair("prices", "p1"), pair("-", "all")]
    );
    assert_eq!(got(&mut plain, 1), [pair("-", "all")]);
    // Ticks and presence notices still reach everyone.
    prices.next_of_type("tick");
    plain.next_of_type("tick");
    drop(both);
    for c in [&mut prices, &mut plain] {
        let leave = c.next_of_type("leave");
        assert_eq!(leave["clients"], 2, "{leave}");
    }
}

/// A bad topic at the handshake is refused with `400` naming the rule, on both
/// transports; so are more topics than one client may have.
#[test]
fn bad_topics_are_refused_at_the_handshake() {
    let server = start_with(|_| {});
    let upgrade = |target: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let (status, _, body) = http_raw(server.ws_addr(), &upgrade("/echo?topic=a/b"));
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("1 to 64 characters"));
    let many: String = (0..17).map(|i| format!("topic=t{i}&")).collect();
    let (status, _, body) = http_raw(server.ws_addr(), &upgrade(&format!("/echo?{many}")));
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("at most 16"));
    let (status, _, _) = http_raw(
        server.http_addr().unwrap(),
        "GET /events?topic=%20 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400);
}

/// The library's `Publisher::publish`: the same message, its id back, and a bad
/// topic refused before anything is sent.
#[test]
fn the_library_publishes_with_ids() {
    let server = start_with(|_| {});
    let publisher = server.publisher();
    let mut client = Client::connect_path(&server, "/echo?topic=room:1");
    client.welcome();
    let first = publisher.publish(Some("room:1"), "[1,2]").unwrap();
    let second = publisher.publish(None, "plain").unwrap();
    assert!(second > first);
    let m = next_message(&mut client);
    assert_eq!(
        m,
        serde_json::json!({"type": "message", "id": first, "topic": "room:1", "data": [1, 2]})
    );
    assert_eq!(next_message(&mut client)["id"], second);
    assert!(matches!(
        publisher.publish(Some("bad topic"), "x"),
        Err(tickcast::Error::InvalidTopic(_))
    ));
}

/// The publish one-liners in docs/PROTOCOL.md (curl, Python, JavaScript), and the
/// README's first-screen `curl`, work as written, against the real server.
#[test]
fn the_documented_one_liners_publish() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).unwrap();
    let block = docs
        .split("<!-- publish one-liners: tests/it/publish.rs runs them -->")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the one-liners block in docs/PROTOCOL.md");
    let server = start_with(|_| {});
    let http = server.http_addr().unwrap().to_string();
    let mut client = Client::connect_path(&server, "/echo?topic=prices");
    client.welcome();
    let mut lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "curl, python and node:\n{block}");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let readme_line = readme
        .lines()
        .find(|l| l.starts_with("curl -d") && l.contains("/publish"))
        .expect("the README's publish line");
    lines.push(readme_line);
    for line in lines {
        let command = line.replace("127.0.0.1:8080", &http);
        let out = std::process::Command::new("sh")
            .args(["-c", &command])
            .output()
            .expect("sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("{\"id\":"), "{command}: {stdout}");
        let m = next_message(&mut client);
        let topic = if line == readme_line {
            Value::Null
        } else {
            "prices".into()
        };
        assert_eq!(m["topic"], topic, "{command}");
        assert_eq!(m["data"], serde_json::json!({"price": 42}), "{command}");
    }
}
