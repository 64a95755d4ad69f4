//! The opening handshake on the WebSocket port: what is accepted, and the HTTP
//! answer to everything that is not.

use crate::util::{http_raw, start, start_with, Client};

fn upgrade(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// `/` is an alias of `/echo`.
#[test]
fn root_path_is_an_alias_of_echo() {
    let server = start();
    let mut client = Client::connect_path(&server, "/");
    client.welcome();
}

/// Any other path is refused with 404 and a body naming the right path.
#[test]
fn wrong_path_gets_404() {
    let server = start();
    let (status, _, body) = http_raw(
        server.ws_addr(),
        &upgrade("/chat", "Sec-WebSocket-Version: 13\r\n"),
    );
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("/echo"));
}

/// Plain HTTP on the WebSocket port gets 400 and a pointer to the page.
#[test]
fn plain_http_gets_400_pointing_at_the_page() {
    let server = start();
    let (status, _, body) = http_raw(server.ws_addr(), "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(status, 400);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains(&server.page_url().unwrap()), "{body}");
}

/// The 2010 tutorial's draft-75 handshake (no key) gets 426 naming version 13.
#[test]
fn draft75_handshake_gets_426() {
    let server = start();
    let (status, head, body) = http_raw(
        server.ws_addr(),
        "GET /echo HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nHost: test\r\n\
         Origin: http://test\r\n\r\n",
    );
    assert_eq!(status, 426);
    assert!(head.contains("sec-websocket-version: 13"));
    assert!(String::from_utf8_lossy(&body).contains("RFC 6455"));
}

/// An unsupported protocol version gets 426 too.
#[test]
fn wrong_version_gets_426() {
    let server = start();
    let (status, _, _) = http_raw(
        server.ws_addr(),
        &upgrade("/echo", "Sec-WebSocket-Version: 8\r\n"),
    );
    assert_eq!(status, 426);
}

/// A request head larger than the limit gets 431, and the server goes on serving.
#[test]
fn huge_header_gets_431() {
    let server = start();
    let padding = "a".repeat(16 * 1024);
    let (status, _, _) = http_raw(
        server.ws_addr(),
        &upgrade("/echo", &format!("X-Padding: {padding}\r\n")),
    );
    assert_eq!(status, 431);
    Client::connect(&server).welcome();
}

/// A client that sends half a request is answered 408 at the handshake deadline.
#[test]
fn half_a_request_gets_408_at_the_deadline() {
    let server = start_with(|c| c.handshake_timeout = std::time::Duration::from_millis(300));
    let (status, _, _) = http_raw(server.ws_addr(), "GET /echo HTTP/1.1\r\n");
    assert_eq!(status, 408);
}

/// Beyond --max-clients a handshake gets 503; the clients already in are unaffected.
#[test]
fn over_max_clients_gets_503() {
    let server = start_with(|c| c.max_clients = Some(2));
    let mut a = Client::connect(&server);
    let mut b = Client::connect(&server);
    a.welcome();
    b.welcome();
    let (status, _, body) = http_raw(
        server.ws_addr(),
        &upgrade("/echo", "Sec-WebSocket-Version: 13\r\n"),
    );
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("--max-clients"));
    // The two clients still get ticks and echoes.
    a.next_of_type("tick");
    b.send_text("still here");
    loop {
        if let tungstenite::Message::Text(t) = b.next_message() {
            if t.as_str() == "still here" {
                break;
            }
        }
    }
}

/// With --allowed-origin, a browser from another origin gets 403; the listed
/// origin, and clients that send no Origin, get in.
#[test]
fn other_origins_get_403() {
    let server = start_with(|c| c.allowed_origins = vec!["https://good.example".into()]);
    let version = "Sec-WebSocket-Version: 13\r\n";
    let (status, _, body) = http_raw(
        server.ws_addr(),
        &upgrade(
            "/echo",
            &format!("{version}Origin: https://evil.example\r\n"),
        ),
    );
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("--allowed-origin"));

    let mut stream = crate::util::tcp(server.ws_addr());
    std::io::Write::write_all(
        &mut stream,
        upgrade(
            "/echo",
            &format!("{version}Origin: https://good.example\r\n"),
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    Client::connect(&server).welcome();
}
