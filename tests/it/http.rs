//! The HTTP port: the page, its files, /config.json, and what is refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::util::{http_get, http_raw, split_response, start, start_with, tcp, IO_TIMEOUT};

/// The page, its scripts and style come with the right types.
#[test]
fn page_files_have_the_right_types() {
    let server = start();
    let addr = server.http_addr().unwrap();
    for (path, kind, needle) in [
        ("/", "text/html", "<title>tickcast</title>"),
        ("/index.html", "text/html", "app.js"),
        ("/app.js", "text/javascript", "tickcast.js"),
        ("/tickcast.js", "text/javascript", "config.json"),
        ("/style.css", "text/css", ".time"),
    ] {
        let (status, head, body) = http_get(addr, path);
        assert_eq!(status, 200, "{path}");
        assert!(
            head.contains(&format!("content-type: {kind}")),
            "{path}: {head}"
        );
        assert!(String::from_utf8_lossy(&body).contains(needle), "{path}");
    }
}

/// Pages on other sites may load the client module and the config it reads
/// (`Access-Control-Allow-Origin: *`); nothing else is shared that way.
#[test]
fn the_client_module_and_its_config_may_be_loaded_from_other_sites() {
    let server = start();
    let addr = server.http_addr().unwrap();
    for path in ["/tickcast.js", "/config.json"] {
        let (_, head, _) = http_get(addr, path);
        assert!(
            head.contains("access-control-allow-origin: *"),
            "{path}: {head}"
        );
    }
    for path in ["/", "/app.js", "/metrics", "/healthz"] {
        let (_, head, _) = http_get(addr, path);
        assert!(!head.contains("access-control"), "{path}: {head}");
    }
}

/// /config.json tells the page the WebSocket port actually bound.
#[test]
fn config_json_names_the_websocket_port() {
    let server = start();
    let (status, head, body) = http_get(server.http_addr().unwrap(), "/config.json");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"));
    let config: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(config["ws_port"], server.ws_addr().port());
    assert_eq!(config["ws_path"], "/echo");
}

/// Unknown paths are 404; other methods are 405.
#[test]
fn unknown_path_is_404_and_post_is_405() {
    let server = start();
    let addr = server.http_addr().unwrap();
    assert_eq!(http_get(addr, "/nope.html").0, 404);
    let (status, head, _) = http_raw(
        addr,
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"));
}

/// `..` in a path is refused, for the embedded page and for --public alike;
/// `/tickcast.js` is served from `--public DIR`, or built in if `DIR` has none.
#[test]
fn dot_dot_traversal_is_refused() {
    let dir = std::env::temp_dir().join(format!("tickcast-public-{}", std::process::id()));
    let public = dir.join("public");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(public.join("index.html"), "<p>from disk</p>").unwrap();
    std::fs::write(dir.join("secret.txt"), "secret").unwrap();

    let embedded = start();
    let from_disk = start_with(|c| c.public_dir = Some(public.clone()));
    for server in [&embedded, &from_disk] {
        let addr = server.http_addr().unwrap();
        for path in [
            "/../secret.txt",
            "/x/../../secret.txt",
            "/%2e%2e/secret.txt",
        ] {
            let (status, _, body) = http_get(addr, path);
            assert!(status == 400 || status == 404, "{path}: {status}");
            assert!(
                !String::from_utf8_lossy(&body).contains("secret\n"),
                "{path}"
            );
        }
    }
    // --public really serves from disk.
    let (status, _, body) = http_get(from_disk.http_addr().unwrap(), "/");
    assert_eq!(status, 200);
    assert_eq!(body, b"<p>from disk</p>");
    // ... and a page of one's own there can still import the client module,
    // built in, as the embedded page does; a file of that name in DIR wins.
    let builtin = http_get(embedded.http_addr().unwrap(), "/tickcast.js");
    let (status, head, body) = http_get(from_disk.http_addr().unwrap(), "/tickcast.js");
    assert_eq!((status, &body), (200, &builtin.2));
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("export function connect"));
    assert_eq!(http_get(from_disk.http_addr().unwrap(), "/app.js").0, 404);
    std::fs::write(public.join("tickcast.js"), "// mine").unwrap();
    let (_, _, body) = http_get(from_disk.http_addr().unwrap(), "/tickcast.js");
    assert_eq!(body, b"// mine");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads one HTTP response (head and a `Content-Length` body) from `stream`,
/// leaving the connection open. Returns (status, lowercased head, body).
fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read a response head");
        assert_eq!(n, 1, "the connection closed inside a response head");
        bytes.push(byte[0]);
    }
    let (status, head, _) = split_response(&bytes);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("read a response body");
    (status, head, body)
}

/// Reads until the server closes the connection; fails if it sends anything.
fn expect_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => rest,
        Err(e) => panic!("the server did not close the connection within {within:?}: {e}"),
    }
}

/// HTTP/1.1 keeps the connection open: two requests, then two pipelined ones,
/// are answered in order on one connection; `Connection: close` ends it.
#[test]
fn keep_alive_answers_several_requests_on_one_connection() {
    let server = start();
    let mut stream = tcp(server.http_addr().unwrap());
    for path in ["/config.json", "/healthz"] {
        write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (status, head, _) = read_response(&mut stream);
        assert_eq!(status, 200, "{path}");
        assert!(head.contains("connection: keep-alive"), "{head}");
    }
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).0, 200);
    assert_eq!(read_response(&mut stream).0, 404);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, head, body) = read_response(&mut stream);
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(expect_closed(&mut stream, IO_TIMEOUT), b"");
}

/// HEAD gets the head of the GET answer, with its length, and no body.
#[test]
fn head_gets_no_body() {
    let server = start();
    let mut stream = tcp(server.http_addr().unwrap());
    stream
        .write_all(
            b"HEAD /app.js HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        bytes.push(byte[0]);
    }
    let (status, head, _) = split_response(&bytes);
    assert_eq!(status, 200);
    assert!(!head.contains("content-length: 0\r"), "{head}");
    // The next bytes are the second answer, not a body.
    let (status, _, body) = read_response(&mut stream);
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
}

/// A request head that trickles in and stops gets `408` at
/// `--http-request-timeout`, and the connection is closed.
#[test]
fn a_stalled_request_head_gets_408() {
    let server = start_with(|c| c.http_request_timeout = Duration::from_millis(300));
    let mut stream = tcp(server.http_addr().unwrap());
    stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    let rest = expect_closed(&mut stream, IO_TIMEOUT);
    let (status, _, body) = split_response(&rest);
    assert_eq!(status, 408);
    assert!(String::from_utf8_lossy(&body).contains("did not arrive in time"));
    drop(stream);
    metrics_when(server.http_addr().unwrap(), |text| {
        text.contains("tickcast_http_connections_closed_total{reason=\"request_timeout\"} 1\n")
    });
}

/// A connection that sends nothing is closed at `--http-request-timeout`; a
/// kept-alive one that goes quiet is closed at `--http-idle-timeout`.
#[test]
fn silent_and_idle_connections_are_closed() {
    let server = start_with(|c| {
        c.http_request_timeout = Duration::from_millis(300);
        c.http_idle_timeout = Duration::from_millis(300);
    });
    let addr = server.http_addr().unwrap();
    let mut silent = tcp(addr);
    let mut idle = tcp(addr);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).0, 200);
    assert_eq!(expect_closed(&mut silent, IO_TIMEOUT), b"", "silent");
    assert_eq!(expect_closed(&mut idle, IO_TIMEOUT), b"", "idle");
    metrics_when(addr, |text| {
        text.contains("tickcast_http_connections_closed_total{reason=\"idle\"} 2\n")
    });
}

/// With every HTTP connection taken, a newcomer takes the place of the oldest
/// idle one (the page still loads); when none is idle, it gets `503` at once.
#[test]
fn a_full_http_port_evicts_the_oldest_idle_connection() {
    let server = start_with(|c| c.max_http_connections = 2);
    let addr = server.http_addr().unwrap();
    // Two silent connections fill the port; the listener takes them in order.
    let mut first = tcp(addr);
    let second = tcp(addr);
    // A third is answered: the oldest idle connection made room for it.
    assert_eq!(http_get(addr, "/healthz").0, 200);
    assert_eq!(
        expect_closed(&mut first, IO_TIMEOUT),
        b"",
        "the oldest idle one"
    );
    drop(second);
    // Until only the scrape itself is open (a connection is counted until its
    // client has seen it closed).
    let text = metrics_when(addr, |text| text.contains("tickcast_http_connections 1\n"));
    assert_eq!(closed(&text, "evicted"), 1, "{text}");

    // Two connections with a request under way are not idle, even before their
    // threads read it: the newcomer is refused at once. (A server of its own:
    // on the first, the scrapes above may still hold a slot while they close,
    // and then the second busy connection would be the one refused.)
    let server = start_with(|c| c.max_http_connections = 2);
    let addr = server.http_addr().unwrap();
    let busy: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = tcp(addr);
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    // The answer comes without asking.
    let (status, _, body) = split_response(&expect_closed(&mut tcp(addr), IO_TIMEOUT));
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("too many HTTP connections"));
    drop(busy);
    let text = metrics_when(addr, |text| text.contains("tickcast_http_connections 1\n"));
    assert_eq!(closed(&text, "evicted"), 0, "{text}");
    // Scrapes refused while the busy connections were still closing count too.
    assert!(closed(&text, "full") >= 1, "{text}");
}

/// `tickcast_http_connections_closed_total{reason}` in a scrape.
fn closed(text: &str, reason: &str) -> u64 {
    let name = format!("tickcast_http_connections_closed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(name.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// `/metrics`, scraped until `wanted` accepts it (at most [`IO_TIMEOUT`]):
/// connections that just ended take a moment to be counted, and while the port
/// is full a scrape itself may be refused.
fn metrics_when(addr: SocketAddr, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        let (status, _, body) = http_get(addr, "/metrics");
        let text = String::from_utf8(body).unwrap();
        if status == 200 && wanted(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/metrics never became what was expected; last ({status}):\n{text}"
        );
        std::thread::yield_now();
    }
}

/// A request with a body is answered, then the connection is closed (nothing
/// here reads bodies, so it could not stay in step).
#[test]
fn a_request_with_a_body_is_answered_then_closed() {
    let server = start();
    let mut stream = tcp(server.http_addr().unwrap());
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let (status, head, _) = read_response(&mut stream);
    assert_eq!(status, 200);
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(expect_closed(&mut stream, IO_TIMEOUT), b"");
}
