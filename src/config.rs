//! Every setting of a running server, in one plain struct.
//!
//! The library never reads the environment or the command line: the binary fills a
//! [`Config`] from its flags (see [`crate::cli`]), and an embedder builds one in
//! code, usually as `Config { field: value, ..Config::default() }`.
//! [`Config::validate`] is called by [`crate::Server::start`], so a bad combination
//! is refused before any socket is opened.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use crate::Error;

/// Settings for [`crate::Server::start`].
///
/// Every field is public and documented with its default; [`Config::default`] is
/// what `tickcast` runs with when given no flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where WebSocket clients connect (path `/echo`, or `/`).
    ///
    /// Default `127.0.0.1:40132`, the tutorial's port, on loopback only: exposing a
    /// server to a network is a decision, not a default. Port 0 picks a free port;
    /// [`crate::Server::ws_addr`] reports the one bound.
    pub ws_addr: SocketAddr,

    /// Where the page and `/config.json` are served, or `None` for no HTTP server.
    ///
    /// Default `Some(127.0.0.1:8080)`. Port 0 picks a free port.
    pub http_addr: Option<SocketAddr>,

    /// Time between ticks, or `None` for no ticker (the hub then only carries
    /// presence notices and what embedders publish).
    ///
    /// Default 1 s. Ticks are aligned to wall-clock multiples of the interval, so a
    /// 1 s interval ticks on the second.
    pub interval: Option<Duration>,

    /// Serve the page from this directory instead of the copy embedded in the binary.
    ///
    /// Default `None` (embedded). Useful while editing `public/`: reload the browser
    /// and see the change without rebuilding.
    pub public_dir: Option<PathBuf>,

    /// The most clients (WebSocket connections, counting those still in their
    /// handshake, and SSE streams) held at once. Beyond it a handshake is answered
    /// `503 Service Unavailable`.
    ///
    /// Default `None`: as many as this machine lets one process hold, worked out at
    /// start from the open-file limit and the thread limits, minus what
    /// [`max_http_connections`](Config::max_http_connections) and the server itself
    /// need; [`crate::Server::max_clients`] and the startup log say the number and
    /// where it came from. Each client costs one thread and one file descriptor:
    /// see the README ("Limits of one machine") to raise the limits.
    pub max_clients: Option<usize>,

    /// The largest message, in bytes, a client may send. A larger one closes the
    /// connection with status 1009 (message too big).
    ///
    /// Default 1 MiB.
    pub max_message_size: usize,

    /// The most bytes that may wait for one client's socket to drain. A client whose
    /// backlog would grow past this is cut off (reason `too_slow`) so it can never
    /// hold memory or delay the others.
    ///
    /// Default 2 MiB, which must be at least `max_message_size` plus a frame header,
    /// so that echoing the largest allowed message cannot by itself cut a client off.
    pub max_backlog: usize,

    /// How often the server pings every client, or `None` for never. A client that
    /// sends nothing at all — not even the pong browsers send by themselves — for a
    /// whole interval after a ping is cut off (reason `timeout`), so half-open TCP
    /// connections cannot pile up threads.
    ///
    /// Default 30 s: a dead client is noticed within 60 s.
    pub heartbeat: Option<Duration>,

    /// Browser origins allowed to connect (e.g. `https://example.com`). Empty (the
    /// default) allows every origin.
    ///
    /// When not empty, a handshake whose `Origin` header is not in the list gets
    /// `403`. A handshake with no `Origin` (curl, scripts, other servers) is let
    /// through: the header only protects users' browsers from other sites' pages,
    /// since a non-browser client can send any value it likes.
    pub allowed_origins: Vec<String>,

    /// Where to run the Flash socket policy server, or `None` (the default) for
    /// none. The tutorial used `0.0.0.0:843`; ports below 1024 need root or
    /// `CAP_NET_BIND_SERVICE`. When set, the WebSocket port also answers a policy
    /// request sent to it (Flash tries the destination port when 843 is silent).
    pub flash_policy_addr: Option<SocketAddr>,

    /// `DOMAIN:PORTS` rules for the policy document (`--flash-policy-allow`), e.g.
    /// `*.example.com:80,443`. Empty (the default) means `*` to the WebSocket port.
    pub flash_policy_allow: Vec<String>,

    /// How long a new connection may take to send its whole handshake request.
    ///
    /// Default 10 s. A client that sends half a request is answered `408` and
    /// closed, so it cannot hold a thread forever.
    pub handshake_timeout: Duration,

    /// The largest handshake request head, in bytes (`--max-header-size`). A larger
    /// one is answered `431`.
    ///
    /// Default 8 KiB, like most web servers.
    pub max_handshake_size: usize,

    /// The most HTTP connections (page, `/config.json`, `/metrics`…; SSE streams
    /// count as clients instead) open at once. Each costs a thread and a file
    /// descriptor. When all are taken, a new connection takes the place of the
    /// oldest idle one (waiting for a request), as nginx does; if none is idle, it
    /// is answered `503` and closed at once.
    ///
    /// Default 512: a browser opens a handful.
    pub max_http_connections: usize,

    /// How long an HTTP request head may take to arrive: from the connection's
    /// start for its first request, and from its first byte for later ones on a
    /// kept-alive connection. A slower or silent client is closed (`408` if it had
    /// started a request), so it cannot hold a thread (slowloris).
    ///
    /// Default 10 s.
    pub http_request_timeout: Duration,

    /// How long a kept-alive HTTP connection may wait, idle, for its next request
    /// before the server closes it.
    ///
    /// Default 15 s.
    pub http_idle_timeout: Duration,

    /// Whether `POST /publish` on the HTTP port is on.
    ///
    /// Default `true`. Who may publish then depends on
    /// [`publish_token`](Config::publish_token).
    pub publish: bool,

    /// The secret a publisher must send (`Authorization: Bearer <token>`) to
    /// `POST /publish`, or `None` (the default) to let only clients on this machine
    /// (loopback) publish, with no token.
    ///
    /// # Security
    ///
    /// Anyone with the token can send anything to every browser. Give it to the
    /// binary in a file (`--publish-token-file`) or the `TICKCAST_PUBLISH_TOKEN`
    /// environment variable rather than on the command line, where other users of
    /// the machine can read it; and put TLS in front (see the nginx snippet), since
    /// a bearer token travels in clear over plain HTTP.
    pub publish_token: Option<String>,

    /// How many published events the hub keeps for clients that resume after a
    /// reconnect (`?since=`, `Last-Event-ID`). A client that missed more gets a
    /// `reset` notice instead. `0` keeps none.
    ///
    /// Default 1000.
    pub history: usize,

    /// The most bytes of message text the history holds, or `None` for half of
    /// [`max_backlog`](Config::max_backlog). A client's replay goes into its
    /// backlog, so it must leave room there for the live stream.
    ///
    /// Default `None` (1 MiB with the default backlog).
    pub history_bytes: Option<usize>,

    /// Whether a client's text and binary messages are echoed back to it.
    ///
    /// Default `true`, the tutorial's behaviour. An embedding program that answers
    /// its clients itself (from [`crate::ClientEvents`]) usually turns it off.
    pub echo: bool,

    /// The size of the queue of [`crate::ClientEvent`]s (joins, messages, leaves)
    /// an embedding program reads with [`crate::Server::client_events`], or `None`
    /// (the default) for no events at all.
    ///
    /// The queue never grows past this many events: when the program reads more
    /// slowly than events come, the hub drops joins and leaves rather than wait, and
    /// a client's thread waits for room for its own messages (see
    /// [`crate::ClientEvents`]); whatever is dropped is counted and logged.
    pub client_events: Option<usize>,

    /// How long the hub gathers joins and leaves before announcing them in one
    /// notice. A mass disconnect of N clients then costs a handful of broadcasts,
    /// not N.
    ///
    /// Default 50 ms (the protocol allows at most 100 ms).
    pub presence_window: Duration,

    /// Stack size of each client thread, in bytes.
    ///
    /// Default 128 KiB. A client thread only parses frames into heap buffers, so it
    /// needs far less than the OS default of 2–8 MiB; the smaller reservation is
    /// what lets one process hold thousands of clients.
    pub client_stack_size: usize,

    /// Size of each client's read buffer, in bytes (tungstenite's
    /// `read_buffer_size`, whose own default is 128 KiB).
    ///
    /// Default 512 bytes: clients here send little, and every connection keeps
    /// its buffer for life (it is most of what a client costs beyond its
    /// thread; see `docs/PERFORMANCE.md`). Larger messages still arrive whole;
    /// they are just read in more steps. The handshake request is read in steps
    /// of this size too, into the buffer the WebSocket then keeps.
    pub read_buffer_size: usize,

    /// The Redis (or Valkey) of the cluster this node joins,
    /// `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`, or `None` (the default) for a
    /// single node. Every node that names the same Redis and
    /// [`redis_key`](Config::redis_key) acts as one server (see `docs/CLUSTER.md`).
    /// Needs the `redis` cargo feature.
    pub redis: Option<String>,

    /// The prefix of every Redis key the cluster uses (`<key>:events`, …), so that
    /// several clusters can share one Redis.
    ///
    /// Default `tickcast`.
    pub redis_key: String,
}

impl Config {
    /// The history's byte cap: [`history_bytes`](Config::history_bytes), or half of
    /// the backlog.
    pub(crate) fn history_byte_cap(&self) -> usize {
        self.history_bytes.unwrap_or(self.max_backlog / 2)
    }
}

/// The tutorial's WebSocket port.
pub const DEFAULT_WS_PORT: u16 = 40132;
/// The default HTTP port for the page.
pub const DEFAULT_HTTP_PORT: u16 = 8080;

impl Default for Config {
    fn default() -> Self {
        Config {
            ws_addr: loopback(DEFAULT_WS_PORT),
            http_addr: Some(loopback(DEFAULT_HTTP_PORT)),
            interval: Some(Duration::from_secs(1)),
            public_dir: None,
            max_clients: None,
            max_message_size: 1 << 20,
            max_backlog: 2 << 20,
            heartbeat: Some(Duration::from_secs(30)),
            allowed_origins: Vec::new(),
            flash_policy_addr: None,
            flash_policy_allow: Vec::new(),
            handshake_timeout: Duration::from_secs(10),
            max_handshake_size: 8 << 10,
            publish: true,
            publish_token: None,
            history: 1000,
            history_bytes: None,
            echo: true,
            client_events: None,
            max_http_connections: 512,
            http_request_timeout: Duration::from_secs(10),
            http_idle_timeout: Duration::from_secs(15),
            presence_window: Duration::from_millis(50),
            client_stack_size: 128 << 10,
            read_buffer_size: 512,
            redis: None,
            redis_key: "tickcast".to_string(),
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// The largest header of a server frame: 2 bytes, plus 8 for a 64-bit length.
pub(crate) const MAX_FRAME_HEADER: usize = 10;

impl Config {
    /// Checks that the settings make sense together.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the setting (by its command-line flag) and
    /// what to change.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |msg: String| Err(Error::InvalidConfig(msg));
        if self.interval.is_some_and(|i| i < Duration::from_millis(1)) {
            return invalid("--interval must be at least 1ms".into());
        }
        if let Some(url) = &self.redis {
            check_redis(url, &self.redis_key)?;
        }
        if self.max_clients == Some(0) {
            return invalid("--max-clients must be at least 1".into());
        }
        if self
            .publish_token
            .as_deref()
            .is_some_and(|t| t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return invalid(
                "--publish-token must be a non-empty token without spaces or control characters"
                    .into(),
            );
        }
        if self.client_events == Some(0) {
            return invalid("the client event queue must hold at least 1 event".into());
        }
        if self.max_http_connections == 0 {
            return invalid("--max-http-connections must be at least 1".into());
        }
        if self.http_request_timeout.is_zero() || self.http_idle_timeout.is_zero() {
            return invalid(
                "--http-request-timeout and --http-idle-timeout must be more than zero".into(),
            );
        }
        if self.max_message_size == 0 {
            return invalid("--max-message-size must be at least 1 byte".into());
        }
        if self.max_backlog < self.max_message_size.saturating_add(MAX_FRAME_HEADER) {
            return invalid(format!(
                "--max-backlog ({} bytes) must be at least --max-message-size ({} bytes) plus \
                 {MAX_FRAME_HEADER}, so that echoing the largest message cannot cut a client off",
                self.max_backlog, self.max_message_size
            ));
        }
        if self
            .history_bytes
            .is_some_and(|bytes| bytes > self.max_backlog / 2)
        {
            return invalid(format!(
                "--history-bytes ({} bytes) must be at most half of --max-backlog ({} bytes): a \
                 resuming client's replay goes into its backlog, and the live stream needs room \
                 too; lower --history-bytes or raise --max-backlog",
                self.history_bytes.unwrap_or_default(),
                self.max_backlog
            ));
        }
        if self
            .heartbeat
            .is_some_and(|h| h < Duration::from_millis(10))
        {
            return invalid("--heartbeat must be at least 10ms".into());
        }
        for origin in &self.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.trim_end_matches('/').matches('/').count() != 2
            {
                return invalid(format!(
                    "--allowed-origin {origin:?}: expected scheme://host[:port] as browsers \
                     send it, e.g. https://example.com or http://localhost:8080"
                ));
            }
        }
        for rule in &self.flash_policy_allow {
            if let Err(why) = crate::flash_policy::parse_allow(rule) {
                return invalid(format!("--flash-policy-allow {rule:?}: {why}"));
            }
        }
        if self.handshake_timeout.is_zero() {
            return invalid("--handshake-timeout must be more than zero".into());
        }
        if self.max_handshake_size < 256 {
            return invalid("--max-header-size must be at least 256 bytes".into());
        }
        if self.presence_window > Duration::from_millis(100) {
            return invalid("the presence window must be at most 100ms (protocol v1)".into());
        }
        if self.client_stack_size < 32 << 10 {
            return invalid("the client stack size must be at least 32 KiB".into());
        }
        if self.read_buffer_size == 0 {
            return invalid("the read buffer size must be at least 1 byte".into());
        }
        if let Some(dir) = &self.public_dir {
            if !dir.is_dir() {
                return invalid(format!(
                    // Debug formatting escapes control characters: one line, whatever the path.
                    "--public {:?}: not a directory; point it at a folder holding index.html",
                    dir.display().to_string()
                ));
            }
        }
        Ok(())
    }
}

/// Checks `--redis` and `--redis-key`.
fn check_redis(url: &str, key: &str) -> Result<(), Error> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::InvalidConfig(format!(
            "--redis-key {key:?}: expected a non-empty prefix of printable ASCII without \
             spaces, e.g. tickcast"
        )));
    }
    #[cfg(feature = "redis")]
    {
        crate::cluster::RedisUrl::parse(url)
            .map(drop)
            .map_err(|e| Error::InvalidConfig(format!("--redis: {e}")))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = url;
        Err(Error::InvalidConfig(
            "--redis needs a build with the cluster feature: cargo build --release --features redis"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn backlog_smaller_than_a_message_is_refused() {
        let config = Config {
            max_backlog: 1 << 20,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("--max-backlog"), "{err}");
    }

    #[test]
    fn a_history_that_would_not_fit_a_backlog_is_refused() {
        let config = Config {
            history_bytes: Some(1 << 20 | 1),
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("--history-bytes"), "{err}");
        let config = Config {
            history_bytes: Some(1 << 20),
            ..Config::default()
        };
        config.validate().unwrap();
    }

    #[test]
    fn huge_message_size_is_refused_without_overflow() {
        let config = Config {
            max_message_size: usize::MAX,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("--max-backlog"), "{err}");
    }

    #[test]
    fn public_dir_error_stays_on_one_line() {
        let config = Config {
            public_dir: Some("/no/such\ndir\u{1b}[31m".into()),
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(!err.contains('\n') && !err.contains('\u{1b}'), "{err}");
    }

    #[test]
    fn missing_public_dir_is_refused() {
        let config = Config {
            public_dir: Some("/no/such/dir".into()),
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("/no/such/dir"), "{err}");
    }
}
