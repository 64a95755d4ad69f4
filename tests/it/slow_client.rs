//! A client that never reads: it must not delay anyone else, and it is cut off.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;

use tungstenite::Message;

use crate::util::{start_with, Client, IO_TIMEOUT};

/// Opens a WebSocket with a tiny receive buffer, completes the handshake, and then
/// never reads again.
fn stuck_client(addr: std::net::SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&addr.into(), IO_TIMEOUT).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
        .write_all(
            b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    // Read just the 101 answer (and maybe the welcome), then stop reading for good.
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    stream
}

/// While a stuck client's backlog grows, a reading client gets every published
/// message and every tick in order; the stuck one is cut off as `too_slow`.
#[test]
fn stuck_client_is_cut_off_without_delaying_others() {
    const MESSAGE: usize = 32 * 1024;
    const COUNT: usize = 400; // 12.5 MiB: more than any loopback socket buffers
    let server = start_with(|c| {
        c.max_message_size = 16 * 1024;
        c.max_backlog = 64 * 1024;
    });
    let mut good = Client::connect(&server);
    good.welcome();
    let stuck = stuck_client(server.ws_addr());
    let stuck_id = {
        // The newest id; the good client's own may come first if both joined
        // within one presence window.
        let join = good.next_of_type("join");
        join["ids"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_u64()
            .unwrap()
    };

    // The good client reads on its own thread and acknowledges each published
    // message, so the publisher never outruns it: only the stuck client falls behind.
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let reader = thread::spawn(move || {
        let mut last_seq = None;
        loop {
            let Message::Text(text) = good.next_message() else {
                panic!("expected text");
            };
            if text.starts_with(r#"{"type":"bulk""#) {
                ack_tx.send(()).unwrap();
                continue;
            }
            let msg: serde_json::Value = serde_json::from_str(&text).unwrap();
            match msg["type"].as_str() {
                Some("tick") => {
                    let seq = msg["seq"].as_u64().unwrap();
                    if let Some(last) = last_seq {
                        assert_eq!(seq, last + 1, "a tick went missing");
                    }
                    last_seq = Some(seq);
                }
                Some("leave") => return (msg, good),
                _ => {}
            }
        }
    });

    let publisher = server.publisher();
    let bulk = format!(r#"{{"type":"bulk","pad":"{}"}}"#, "p".repeat(MESSAGE));
    for _ in 0..COUNT {
        publisher.publish_text(bulk.clone()).unwrap();
        // Stops when the reader has seen the leave notice and ended.
        if ack_rx.recv_timeout(IO_TIMEOUT).is_err() {
            break;
        }
    }
    let (leave, mut good) = reader.join().expect("the good client kept up");
    assert_eq!(leave["ids"][0].as_u64(), Some(stuck_id));
    assert_eq!(leave["reason"], "too_slow");
    // Ticks keep coming to the good client afterwards.
    good.next_of_type("tick");
    drop(stuck);
}
