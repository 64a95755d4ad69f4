//! The HTTP port: the page, its script and style, `/config.json` (where the page
//! should connect), `/healthz` (200 `ok` while serving, 503 while shutting down),
//! `/metrics` (Prometheus text format) and `/events` (Server-Sent Events).
//!
//! Each HTTP connection has a thread of its own (`http-<n>`, started by the
//! listener), which runs [`serve`]: read a request head, answer it, and go round
//! again while the client keeps the connection alive (HTTP/1.1 keep-alive). Every
//! wait is bounded, so no client can hold a thread for long by saying little:
//!
//! - a new connection has `--http-request-timeout` to send its first request head
//!   whole, and a kept-alive one `--http-idle-timeout` to start its next request,
//!   then `--http-request-timeout` to finish its head (slowloris);
//! - a write blocks at most [`crate::listener::HTTP_WRITE_TIMEOUT`] for a client that stopped
//!   reading;
//! - at most `--max-http-connections` are open; while a connection waits for a
//!   request it is idle, and the listener closes the oldest idle one to make
//!   room for a newcomer, so a flood of silent connections cannot lock the page
//!   out.
//!
//! The request head is read by the same code, with the same size limit, as a
//! WebSocket handshake ([`read_request`]) and parsed with
//! `httparse`. A request with a body is answered and then the connection is
//! closed, since nothing here reads bodies. `GET /events` turns the thread into
//! an SSE client's (see [`sse`]) for as long as the stream lasts.
//!
//! # Why not tiny_http
//!
//! tiny_http 0.12 served this port until it had to be bounded: it starts a thread
//! for every connection with no limit, has no timeouts (its issue #143, open since
//! 2018), and reads header lines with no length limit. Its accept loop and
//! connection threads cannot be reached from outside, so the bounds had to be
//! ours, and what remained of it (writing a response) is a dozen lines here.
//!

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::metrics::{HttpClose, Label};
use crate::registry::ConnId;
use crate::shared::Shared;
use crate::shutdown::linger;
use crate::wire::http::{self as wire_http, origin_allowed, read_request, Head, Incoming, Refusal};
use crate::wire::subscription::{parse_id, Subscription};
use page::{route, Answer, Site};
use publish::Published;

mod page;
pub(crate) mod publish;
pub(crate) mod sse;

/// Bytes read at a time from an HTTP request head.
const READ_CHUNK: usize = 1024;

/// Maps a URL path onto a relative file path for `--public`, or refuses it (for
/// the fuzz targets).
pub(crate) use page::safe_relative_path;

/// Runs one HTTP connection to the end, on its own thread: see the module docs.
pub(crate) fn serve(socket: &TcpStream, peer: SocketAddr, shared: &Shared, conn: ConnId) {
    let close = serve_requests(socket, peer, shared, conn);
    shared.metrics.http_closed.add(close);
    log::debug!("{peer}: HTTP connection closed ({})", close.as_str());
}

/// Answers requests until the connection is over, and says how it ended.
fn serve_requests(
    socket: &TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    conn: ConnId,
) -> HttpClose {
    let config = &shared.config;
    let registry = &shared.registry;
    // Bytes that followed the last request head: the start of the next request.
    let mut pending = Vec::new();
    let mut first_request = true;
    loop {
        if pending.is_empty() {
            // Idle until a request starts: the listener may evict us meanwhile.
            let wait = if first_request {
                config.http_request_timeout
            } else {
                config.http_idle_timeout
            };
            registry.set_idle(conn, true);
            let arrived = read_some(socket, wait, &mut pending);
            if !registry.set_idle(conn, false) {
                return HttpClose::Evicted;
            }
            match arrived {
                Ok(0) => return HttpClose::Done,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return HttpClose::Idle,
                Err(_) => return HttpClose::Failed,
            }
        }
        // Once a request has started, its whole head has a deadline.
        let start = io::Cursor::new(std::mem::take(&mut pending));
        let deadline = Instant::now() + config.http_request_timeout;
        if socket
            .set_read_timeout(Some(config.http_request_timeout))
            .is_err()
        {
            return HttpClose::Failed;
        }
        let read = start.chain(socket);
        let head = match read_request(read, config.max_handshake_size, READ_CHUNK, deadline) {
            Ok(Some(Incoming::Http(head))) => head,
            Ok(Some(Incoming::FlashPolicyRequest)) => {
                let refusal = Refusal::new(400, "a Flash policy request; this is the HTTP port");
                return refuse(socket, shared, &refusal, HttpClose::BadRequest);
            }
            Ok(None) => return HttpClose::Failed,
            Err(refusal) if refusal.status == 408 => {
                return refuse(socket, shared, &refusal, HttpClose::RequestTimeout)
            }
            Err(refusal) => return refuse(socket, shared, &refusal, HttpClose::BadRequest),
        };
        first_request = false;
        pending = head.leftover().to_vec();
        let request = match Request::parse(head.head()) {
            Ok(request) => request,
            Err(refusal) => return refuse(socket, shared, &refusal, HttpClose::BadRequest),
        };
        // tour: events-route
        if request.head.method == "GET" && request.path() == "/events" {
            return event_stream(socket, peer, shared, conn, &request);
        }
        let keep_alive = request.keep_alive && !shared.stopping.is_raised();
        if request.path() == "/publish" {
            match publish::publish(socket, peer, &request.head, &mut pending, shared) {
                Published::Accepted(id) => {
                    shared.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
                    let answer = Answer {
                        status: 202,
                        content_type: "application/json",
                        body: format!("{{\"id\":{id}}}\n").into_bytes(),
                        any_origin: false,
                    };
                    if write_answer(socket, &answer, false, keep_alive).is_err() {
                        return HttpClose::Failed;
                    }
                    if keep_alive {
                        continue;
                    }
                    return HttpClose::Done;
                }
                Published::Refused(refusal) => {
                    log::debug!(
                        "{peer}: publish refused: {} {}",
                        refusal.status,
                        refusal.body
                    );
                    return refuse(socket, shared, &refusal, HttpClose::BadRequest);
                }
            }
        }
        let site = Site {
            public_dir: shared.config.public_dir.as_deref(),
            ws_port: shared.ws_port,
            metrics: &shared.metrics,
            stopping: shared.stopping.is_raised(),
            cluster: shared.cluster.as_deref(),
        };
        let answer = route(&site, request.head.method, request.head.target);
        // Nothing else reads a request body, so the connection cannot stay in step
        // with the client after one: answer, then close.
        let keep_alive = keep_alive && !request.has_body;
        log::debug!(
            "{peer}: HTTP {} {} -> {}",
            request.head.method,
            request.head.target,
            answer.status
        );
        shared.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
        if write_answer(socket, &answer, request.head.method == "HEAD", keep_alive).is_err() {
            return HttpClose::Failed;
        }
        if !keep_alive {
            if request.has_body {
                linger(socket);
            }
            return HttpClose::Done;
        }
    }
}

/// Reads what the client has sent, waiting at most `wait` for it. `Ok(0)`: the
/// client closed the connection.
fn read_some(mut socket: &TcpStream, wait: Duration, into: &mut Vec<u8>) -> io::Result<usize> {
    socket.set_read_timeout(Some(wait))?;
    let mut buf = vec![0u8; 1024];
    loop {
        match socket.read(&mut buf) {
            Ok(n) => {
                into.extend_from_slice(&buf[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Answers a bad request with `refusal`, hangs up politely, and says how the
/// connection ended.
fn refuse(socket: &TcpStream, shared: &Shared, refusal: &Refusal, close: HttpClose) -> HttpClose {
    shared.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    let mut writer = socket;
    if writer.write_all(&refusal.to_http()).is_err() {
        return HttpClose::Failed;
    }
    let _ = socket.shutdown(Shutdown::Write);
    linger(socket);
    close
}

/// `GET /events`: this connection becomes an SSE client, counted against
/// `--max-clients`, and the thread serves its stream until it ends.
fn event_stream(
    socket: &TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    conn: ConnId,
    request: &Request,
) -> HttpClose {
    // A reconnecting `EventSource` sends the id of the last event it saw.
    let subscription = Subscription::from_target(request.head.target).and_then(|mut sub| {
        // It wins over `?since=`: an `EventSource` reconnects to the URL it was
        // opened with, so the header is the newer of the two.
        if let Some(last) = request.head.header("Last-Event-ID") {
            sub.since = Some(parse_id("Last-Event-ID", &last)?);
        }
        Ok(sub)
    });
    let subscription = match subscription {
        Ok(subscription) => subscription,
        Err(why) => {
            return refuse(
                socket,
                shared,
                &Refusal::new(400, why),
                HttpClose::BadRequest,
            )
        }
    };
    // The same rule as for WebSocket clients: with --allowed-origin, a browser on
    // another site is refused. (Others may read the stream: it is sent with
    // `Access-Control-Allow-Origin: *`.)
    if let Some(origin) = request.head.header("Origin") {
        if !origin_allowed(&origin, &shared.config.allowed_origins) {
            let refusal = Refusal::new(
                403,
                format!("origin {origin} is not allowed to connect (see --allowed-origin)"),
            );
            return refuse(socket, shared, &refusal, HttpClose::BadRequest);
        }
    }
    let stopping = shared.stopping.is_raised();
    if stopping || !shared.registry.become_client(conn, shared.max_clients) {
        let refusal = Refusal::new(
            503,
            format!(
                "tickcast is full ({} clients, see --max-clients) or stopping; try again later",
                shared.max_clients
            ),
        );
        return refuse(socket, shared, &refusal, HttpClose::Full);
    }
    // From here the connection counts as a client; its end is counted as a leave.
    shared.metrics.http_closed.add(HttpClose::EventStream);
    shared.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    log::debug!("{peer}: HTTP GET {} -> event stream", request.head.target);
    sse::serve(socket, peer, subscription, shared);
    // Counted as a client from the moment it became one; nothing more to count here.
    HttpClose::EventStream
}

/// What tickcast needs of a request head.
#[derive(Debug)]
struct Request<'a> {
    /// The parsed head: method, target, header fields.
    head: Head<'a>,
    /// Whether the client wants the connection kept open afterwards.
    keep_alive: bool,
    /// Whether a body follows the head (`Content-Length` above 0, or
    /// `Transfer-Encoding`).
    has_body: bool,
}

impl<'a> Request<'a> {
    /// Parses a complete request head.
    fn parse(head: &'a [u8]) -> Result<Request<'a>, Refusal> {
        let head = Head::parse(head)?;
        // HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only if asked.
        let keep_alive = match head.minor_version {
            1 => !head.has_token("Connection", "close"),
            _ => head.has_token("Connection", "keep-alive"),
        };
        let has_body = head.header("Transfer-Encoding").is_some()
            || head.header("Content-Length").is_some_and(|len| len != "0");
        Ok(Request {
            head,
            keep_alive,
            has_body,
        })
    }

    /// The target without its query or fragment.
    fn path(&self) -> &str {
        self.head.target.split(['?', '#']).next().unwrap_or("/")
    }
}

/// Writes `answer` as one HTTP/1.1 response (headers and body in one write).
fn write_answer(
    mut socket: &TcpStream,
    answer: &Answer,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: {}\r\n",
        answer.status,
        wire_http::reason_phrase(answer.status),
        answer.content_type,
        answer.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    )
    .into_bytes();
    if answer.status == 405 {
        response.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    if answer.any_origin {
        response.extend_from_slice(b"Access-Control-Allow-Origin: *\r\n");
    }
    response.extend_from_slice(b"\r\n");
    if !head_only {
        response.extend_from_slice(&answer.body);
    }
    socket.write_all(&response)
}
