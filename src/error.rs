//! The library's one error type.
//!
//! Only starting a server and publishing into a stopped one can fail from the
//! caller's point of view. Everything that goes wrong inside one connection — a bad
//! frame, a dropped socket, a slow reader — is handled and logged on that
//! connection's thread and never reaches the caller.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// What can go wrong when starting or using a [`crate::Server`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range or two settings contradict each other. The message
    /// names the setting by its command-line flag; change it and start again.
    InvalidConfig(String),

    /// A listening socket could not be opened. Usually the port is taken (another
    /// tickcast?) or below 1024 without privileges: pick another address.
    Bind {
        /// Which listener: "WebSocket" or "HTTP".
        what: &'static str,
        /// The flag that sets its address, e.g. `--ws-addr`.
        flag: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },

    /// The OS refused to start one of the server's own threads (not a client's).
    /// The process is probably at its thread limit; see the README's limits section.
    Spawn {
        /// The thread's name.
        thread: String,
        /// What the OS said.
        source: io::Error,
    },

    /// A topic name breaks the rules (1 to 64 characters from `A-Z a-z 0-9 _ - . :`);
    /// the message says which name. Nothing was published.
    InvalidTopic(String),

    /// The server has shut down, so nothing was published. Not a failure as such:
    /// stop publishing.
    Stopped,

    /// This node is in a cluster and cannot reach its Redis right now, so nothing
    /// was published. It reconnects by itself (see the log): try again later.
    /// `POST /publish` answers `503`.
    ClusterDown,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig(msg) | Error::InvalidTopic(msg) => f.write_str(msg),
            Error::Bind {
                what,
                flag,
                addr,
                source,
            } => {
                write!(f, "cannot listen for {what} on {addr} ({flag}): {source}")?;
                match source.kind() {
                    io::ErrorKind::AddrInUse => {
                        write!(
                            f,
                            "; is another tickcast running? Choose another port with {flag} \
                             (port 0 picks a free one)"
                        )?;
                        if (32768..=60999).contains(&addr.port()) {
                            // The kernel hands these ports to outgoing connections too.
                            write!(
                                f,
                                ", or wait: {} is in Linux's ephemeral port range, where an \
                                 outgoing connection may hold it for a while",
                                addr.port()
                            )?;
                        }
                        Ok(())
                    }
                    io::ErrorKind::PermissionDenied => write!(
                        f,
                        "; ports below 1024 need root or CAP_NET_BIND_SERVICE: choose a higher \
                         port with {flag}"
                    ),
                    io::ErrorKind::AddrNotAvailable => write!(
                        f,
                        "; that address is not on this machine: try {flag} 127.0.0.1:PORT or \
                         0.0.0.0:PORT"
                    ),
                    _ => Ok(()),
                }
            }
            Error::Spawn { thread, source } => write!(
                f,
                "cannot start thread {thread}: {source}; the process may be at its thread limit"
            ),
            Error::Stopped => f.write_str("the server has shut down; nothing was published"),
            Error::ClusterDown => f.write_str(
                "this node cannot reach the cluster's Redis (see its log), so the event was \
                 not published (or, if Redis failed as it answered, perhaps was): try again",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. } | Error::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}
