//! Echo: what a client sends comes back to it, and only to it.

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

use crate::util::{start_with, Client};

/// Text comes back verbatim to the sender only; the other client hears nothing.
#[test]
fn text_is_echoed_to_the_sender_only() {
    let server = start_with(|c| c.interval = None);
    let mut a = Client::connect(&server);
    a.welcome();
    // b connects after a is welcomed, so a is sure to hear b's join.
    let mut b = Client::connect(&server);
    b.welcome();
    a.next_of_type("join");
    a.send_text("hello, tickcast ✓");
    assert_eq!(a.next_message(), Message::text("hello, tickcast ✓"));
    // b's next message is whatever the server publishes next, not a's echo.
    server.publisher().publish_text("marker").unwrap();
    assert_eq!(b.next_message(), Message::text("marker"));
}

/// Binary messages come back as binary, byte for byte.
#[test]
fn binary_is_echoed_as_binary() {
    let server = start_with(|c| c.interval = None);
    let mut a = Client::connect(&server);
    a.welcome();
    let payload: Vec<u8> = (0..=255).cycle().take(70_000).collect();
    a.ws.send(Message::binary(payload.clone())).unwrap();
    assert_eq!(a.next_message(), Message::binary(payload));
}

/// A message over --max-message-size closes the connection with 1009.
#[test]
fn oversize_message_closes_with_1009() {
    let server = start_with(|c| {
        c.interval = None;
        c.max_message_size = 16 * 1024;
        c.max_backlog = 64 * 1024;
    });
    let mut a = Client::connect(&server);
    a.welcome();
    a.send_text(&"x".repeat(16 * 1024 + 1));
    match a.next_message() {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
    // A message of exactly the limit is fine on a new connection.
    let mut b = Client::connect(&server);
    b.welcome();
    let max = "y".repeat(16 * 1024);
    b.send_text(&max);
    assert_eq!(b.next_message(), Message::text(max));
}
