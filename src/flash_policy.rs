//! The Flash socket policy server (legacy, off unless `--flash-policy-addr` is set).
//!
//! Before a Flash player opened a raw socket, it connected to port 843 of the same
//! host, sent the 23 bytes `<policy-file-request/>` plus a NUL, and expected an XML
//! `cross-domain-policy` document (plus a NUL) naming the ports it could use. The
//! 2010 tutorial ran one so that browsers without WebSockets could fall back to a
//! Flash bridge. Flash is end-of-life and blocked by every browser since January
//! 2021; this remains for legacy embedded players, and to show how the fallback
//! worked.
//!
//! Threads: a listener (`flash-listener`) that blocks in `accept`, and one short
//! thread per connection (`flash-<n>`) that reads the request under a deadline
//! ([`REQUEST_DEADLINE`]), answers exactly that request and hangs up. Anything
//! else, or silence, is closed without a reply. At most [`MAX_CONCURRENT`]
//! connections are served at once; more are closed at once. The listener ends at
//! shutdown (woken by a connection, as the WebSocket listener is) and joins the
//! connection threads, each of which ends within the deadline.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The whole request a Flash player sends.
pub const POLICY_REQUEST: &[u8; 23] = b"<policy-file-request/>\0";

/// How long a client has to send the request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(3);

/// Connections served at once; the rest are closed unanswered.
const MAX_CONCURRENT: usize = 64;

/// Parses a `--flash-policy-allow` value, `DOMAIN:PORTS`, e.g. `*:40132`,
/// `example.com:80,443` or `*.example.com:1000-2000`.
///
/// # Errors
///
/// A message saying what is wrong with the value.
pub fn parse_allow(value: &str) -> Result<(String, String), String> {
    let (domain, ports) = value
        .rsplit_once(':')
        .ok_or("expected DOMAIN:PORTS, e.g. *:40132 or example.com:80,443")?;
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*.-".contains(&b));
    if !domain_ok {
        return Err(format!(
            "domain {domain:?}: use a host name, an IP address, or * wildcards"
        ));
    }
    // Digits only: `u16::from_str` would also take a sign (`+80`).
    let port_ok =
        |p: &str| p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|p| p > 0);
    let ports_ok = ports == "*"
        || ports.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => {
                port_ok(a) && port_ok(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok()
            }
            None => port_ok(part),
        });
    if !ports_ok {
        return Err(format!(
            "ports {ports:?}: use *, a port, a list (80,443) or a range (1000-2000)"
        ));
    }
    Ok((domain.to_string(), ports.to_string()))
}

/// The policy document for `(domain, ports)` pairs, NUL-terminated as Flash wants.
pub fn policy_document(allow: &[(String, String)]) -> Vec<u8> {
    let mut xml = String::from(
        "<?xml version=\"1.0\"?>\n\
         <!DOCTYPE cross-domain-policy SYSTEM \"http://www.adobe.com/xml/dtds/cross-domain-policy.dtd\">\n\
         <cross-domain-policy>\n",
    );
    for (domain, ports) in allow {
        // Both were checked by `parse_allow`: no quotes or markup can get in.
        xml.push_str(&format!(
            "  <allow-access-from domain=\"{domain}\" to-ports=\"{ports}\"/>\n"
        ));
    }
    xml.push_str("</cross-domain-policy>\n");
    let mut bytes = xml.into_bytes();
    bytes.push(0);
    bytes
}

/// The running policy server.
pub(crate) struct FlashPolicyServer {
    /// The address bound, for `wake_accept` at shutdown.
    addr: SocketAddr,
    /// Raised at shutdown; the listener checks it after every `accept`.
    stopping: Arc<AtomicBool>,
    /// The `flash-listener` thread, joined at shutdown (it joins its workers).
    listener: JoinHandle<()>,
}

impl FlashPolicyServer {
    /// Binds `addr` and starts the listener thread.
    pub(crate) fn start(
        addr: SocketAddr,
        document: Vec<u8>,
    ) -> Result<FlashPolicyServer, crate::Error> {
        let bind_error = |source| crate::Error::Bind {
            what: "the Flash policy server",
            flag: "--flash-policy-addr",
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let thread_stopping = stopping.clone();
        let document: Arc<[u8]> = document.into();
        let listener = thread::Builder::new()
            .name("flash-listener".into())
            .spawn(move || accept_loop(&listener, &document, &thread_stopping))
            .map_err(|source| crate::Error::Spawn {
                thread: "flash-listener".into(),
                source,
            })?;
        log::info!("Flash policy server listening on {addr}");
        Ok(FlashPolicyServer {
            addr,
            stopping,
            listener,
        })
    }

    /// The address actually bound.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and joins every thread.
    pub(crate) fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        crate::shutdown::wake_accept(self.addr);
        let _ = self.listener.join();
    }
}

fn accept_loop(listener: &TcpListener, document: &Arc<[u8]>, stopping: &AtomicBool) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    let mut served = 0u64;
    for socket in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let socket = match socket {
            Ok(socket) => socket,
            Err(e) => {
                log::debug!("Flash policy server: accept failed: {e}");
                continue;
            }
        };
        workers.retain(|w| !w.is_finished());
        if workers.len() >= MAX_CONCURRENT {
            log::debug!(
                "{:?}: closed unanswered, {MAX_CONCURRENT} policy requests already in hand",
                socket.peer_addr().ok()
            );
            continue;
        }
        served += 1;
        let document = document.clone();
        let spawned = thread::Builder::new()
            .name(format!("flash-{served}"))
            .stack_size(64 << 10)
            .spawn(move || answer(socket, &document));
        match spawned {
            Ok(worker) => workers.push(worker),
            Err(e) => log::warn!("Flash policy server: cannot start a thread: {e}"),
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
}

/// Answers one connection: the policy for the exact request, nothing otherwise.
fn answer(mut socket: TcpStream, document: &[u8]) {
    let peer = socket.peer_addr().ok();
    match read_policy_request(&mut socket) {
        Ok(()) => {
            let _ = socket.write_all(document);
            log::debug!("{peer:?}: sent the Flash policy");
        }
        Err(why) => log::debug!("{peer:?}: no Flash policy: {why}"),
    }
    let _ = socket.shutdown(Shutdown::Both);
}

/// Reads exactly [`POLICY_REQUEST`] within [`REQUEST_DEADLINE`].
fn read_policy_request(socket: &mut TcpStream) -> Result<(), &'static str> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut got = [0u8; POLICY_REQUEST.len()];
    let mut filled = 0;
    while filled < got.len() {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or("silent past the deadline")?;
        socket
            .set_read_timeout(Some(left))
            .map_err(|_| "socket error")?;
        match socket.read(&mut got[filled..]) {
            Ok(0) => return Err("hung up"),
            Ok(n) => filled += n,
            Err(_) => return Err("silent past the deadline"),
        }
        if got[..filled] != POLICY_REQUEST[..filled] {
            return Err("not a policy request");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_values_are_checked() {
        assert_eq!(parse_allow("*:40132"), Ok(("*".into(), "40132".into())));
        assert!(parse_allow("*.example.com:80,443").is_ok());
        assert!(parse_allow("example.com:1000-2000").is_ok());
        for bad in [
            "",
            "*",
            "a\"b:80",
            "x:",
            "x:0",
            "x:70000",
            "x:2000-1000",
            "<x>:80",
        ] {
            assert!(parse_allow(bad).is_err(), "{bad}");
        }
    }

    /// Found by the `flash_policy_allow` fuzz target: a signed port passed
    /// `u16::from_str` and went into the policy document as `+80`.
    #[test]
    fn signed_ports_are_refused() {
        for bad in ["x:+80", "x:80,+443", "x:+1-2", "x:1-+2"] {
            assert!(parse_allow(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn document_lists_each_rule_and_ends_with_nul() {
        let doc = policy_document(&[("*".into(), "40132".into())]);
        assert_eq!(doc.last(), Some(&0));
        let text = String::from_utf8(doc[..doc.len() - 1].to_vec()).unwrap();
        assert!(text.contains(r#"<allow-access-from domain="*" to-ports="40132"/>"#));
        assert!(text.starts_with("<?xml"));
    }
}
