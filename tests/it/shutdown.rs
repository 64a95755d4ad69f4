//! Shutdown: every client gets close 1001 and every thread is joined promptly.

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use crate::util::{start, tcp, Client};

/// `shutdown()` sends close 1001 to every client and returns once all threads
/// are joined, even with a client that never answers.
#[test]
fn shutdown_closes_everyone_with_1001_and_returns() {
    let server = start();
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(&server)).collect();
    for c in &mut clients {
        c.welcome();
    }
    // A client that completes the handshake but then never reads or answers.
    let mut mute = tcp(server.ws_addr());
    mute.write_all(
        b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();

    let (done_tx, done_rx) = mpsc::channel();
    let stopper = thread::spawn(move || {
        server.shutdown();
        done_tx.send(()).unwrap();
    });
    for c in &mut clients {
        loop {
            match c.next_message() {
                Message::Close(Some(frame)) => {
                    assert_eq!(frame.code, CloseCode::Away);
                    break;
                }
                Message::Text(_) => continue,
                other => panic!("expected close 1001, got {other:?}"),
            }
        }
    }
    // Generous bound: the server waits 1 s for answers, then hangs up.
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("shutdown() returned");
    stopper.join().unwrap();
    drop(mute);
}

/// After shutdown, publishing reports that the server stopped.
#[test]
fn publishing_after_shutdown_is_an_error() {
    let server = start();
    let publisher = server.publisher();
    server.shutdown();
    assert!(matches!(
        publisher.publish_text("late"),
        Err(tickcast::Error::Stopped)
    ));
}
