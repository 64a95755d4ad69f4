//! The legacy Flash socket policy server, over raw TCP.

use std::io::{Read, Write};
use std::net::SocketAddr;

use crate::util::{start_with, tcp};

fn policy_server() -> tickcast::Server {
    start_with(|c| {
        c.interval = None;
        c.flash_policy_addr = Some("127.0.0.1:0".parse().unwrap());
    })
}

fn ask(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = tcp(addr);
    stream.write_all(request).unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("the server hangs up");
    reply
}

/// The exact request gets the policy document, NUL-terminated, allowing the
/// WebSocket port by default.
#[test]
fn policy_request_gets_the_document() {
    let server = policy_server();
    let reply = ask(
        server.flash_policy_addr().unwrap(),
        b"<policy-file-request/>\0",
    );
    assert_eq!(reply.last(), Some(&0));
    let xml = String::from_utf8(reply[..reply.len() - 1].to_vec()).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\"?>"), "{xml}");
    let rule = format!(
        r#"<allow-access-from domain="*" to-ports="{}"/>"#,
        server.ws_addr().port()
    );
    assert!(xml.contains(&rule), "{xml}");
    assert!(xml.trim_end().ends_with("</cross-domain-policy>"));
}

/// --flash-policy-allow rules replace the default.
#[test]
fn allow_rules_fill_the_document() {
    let server = start_with(|c| {
        c.flash_policy_addr = Some("127.0.0.1:0".parse().unwrap());
        c.flash_policy_allow = vec!["*.example.com:80,443".into(), "10.0.0.1:1000-2000".into()];
    });
    let reply = ask(
        server.flash_policy_addr().unwrap(),
        b"<policy-file-request/>\0",
    );
    let xml = String::from_utf8_lossy(&reply);
    assert!(
        xml.contains(r#"domain="*.example.com" to-ports="80,443""#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"domain="10.0.0.1" to-ports="1000-2000""#),
        "{xml}"
    );
}

/// Anything else is closed without a reply.
#[test]
fn wrong_request_gets_no_reply() {
    let server = policy_server();
    let reply = ask(
        server.flash_policy_addr().unwrap(),
        b"GET / HTTP/1.0\r\n\r\n",
    );
    assert!(reply.is_empty(), "{reply:?}");
}

/// A client that says nothing is closed at the deadline, without a reply.
#[test]
fn silent_client_is_closed() {
    let server = policy_server();
    let mut stream = tcp(server.flash_policy_addr().unwrap());
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .expect("closed within the deadline");
    assert!(reply.is_empty());
}

/// The WebSocket port answers an in-band policy request too, and still serves
/// WebSocket clients.
#[test]
fn websocket_port_answers_in_band() {
    let server = policy_server();
    let reply = ask(server.ws_addr(), b"<policy-file-request/>\0");
    assert!(String::from_utf8_lossy(&reply).contains("<cross-domain-policy>"));
    crate::util::Client::connect(&server).welcome();
}
