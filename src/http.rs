//! The HTTP side, served by tiny_http: the page, its script and style,
//! `/config.json` (where the page should connect), `/healthz` (200 `ok` while
//! serving, 503 while shutting down) and `/metrics` (Prometheus text format).
//!
//! tiny_http accepts connections and parses requests on threads of its own; this
//! module runs [`WORKERS`] threads (`http-1`, …) that take finished requests from it
//! (`Server::recv`) and answer them. Every answer here is small and built in memory,
//! so a few workers are plenty. The workers end when [`HttpServer::shutdown`] calls
//! `unblock` once per worker.
//!
//! The page files are compiled into the binary (`include_bytes!`), so the single
//! binary works from any directory. With `--public DIR` they are read from disk on
//! every request instead, for editing the page without rebuilding.
//!
//! # Security
//!
//! Serving from disk maps URL paths onto files under `DIR`, so only plain path
//! segments are allowed: a request containing `..`, `.`, a backslash, a colon or
//! an empty segment is refused with 400 before the file system is touched, and the
//! answer is 404 for anything that is not a regular file. Everything below `DIR` is
//! public, dot-files included: point it at a folder that holds only the page.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use tiny_http::{Header, Method, Request, Response};

use crate::listener::Shared;
use crate::metrics::Metrics;
use crate::Error;

/// How many threads answer requests.
const WORKERS: usize = 2;

/// The page, compiled in: (URL path, contents).
const EMBEDDED: &[(&str, &[u8])] = &[
    ("/index.html", include_bytes!("../public/index.html")),
    ("/app.js", include_bytes!("../public/app.js")),
    ("/style.css", include_bytes!("../public/style.css")),
];

/// What the workers need to answer a request.
pub(crate) struct Site {
    /// Serve files from here instead of [`EMBEDDED`].
    pub(crate) public_dir: Option<PathBuf>,
    /// The port WebSocket clients connect to; the page reads it from `/config.json`.
    pub(crate) ws_port: u16,
    /// For `/metrics`, and `/healthz` (which fails once `stopping` is set).
    pub(crate) metrics: Arc<Metrics>,
}

/// The running HTTP server and its worker threads.
pub(crate) struct HttpServer {
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    addr: SocketAddr,
    /// Set before the workers are unblocked, so they know the wake-up means "stop".
    stopping: Arc<AtomicBool>,
}

/// How long one write to an HTTP client may block. tiny_http sets no timeouts and
/// does not hand out its sockets, so the timeout is set on the listening socket,
/// which every accepted socket inherits (Linux and the BSDs copy it at `accept`).
/// It bounds how long a client that stopped reading can hold a worker or an SSE
/// thread.
pub(crate) const HTTP_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds the HTTP listener, with [`HTTP_WRITE_TIMEOUT`] on it.
///
/// # Errors
///
/// [`Error::Bind`] if the address cannot be bound.
pub(crate) fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let bind_error = |source| Error::Bind {
        what: "HTTP",
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    socket2::SockRef::from(&listener)
        .set_write_timeout(Some(HTTP_WRITE_TIMEOUT))
        .map_err(bind_error)?;
    Ok((listener, bound))
}

impl HttpServer {
    /// Starts tiny_http on `listener`, and the workers.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if a worker thread cannot start.
    pub(crate) fn start(
        listener: TcpListener,
        site: Site,
        shared: Arc<Shared>,
    ) -> Result<HttpServer, Error> {
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            what: "HTTP",
            addr: "0.0.0.0:0".parse().expect("a valid address"),
            source,
        })?;
        let server = tiny_http::Server::from_listener(listener, None).map_err(|e| Error::Bind {
            what: "HTTP",
            addr,
            source: io::Error::other(e.to_string()),
        })?;
        let server = Arc::new(server);
        let site = Arc::new(site);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(WORKERS);
        for n in 1..=WORKERS {
            let (server, site, stopping) = (server.clone(), site.clone(), stopping.clone());
            let shared = shared.clone();
            let name = format!("http-{n}");
            let handle = thread::Builder::new()
                .name(name.clone())
                .spawn(move || loop {
                    match server.recv() {
                        Ok(request) if is_event_stream(&request) => {
                            start_event_stream(request, &shared)
                        }
                        Ok(request) => answer(&site, request),
                        // `unblock` at shutdown arrives as an error too.
                        Err(_) if stopping.load(Ordering::SeqCst) => break,
                        // tiny_http reports failed accepts here ("too many open
                        // files"); the server goes on.
                        Err(e) => log::warn!("HTTP server: {e}"),
                    }
                })
                .map_err(|source| Error::Spawn {
                    thread: name,
                    source,
                })?;
            workers.push(handle);
        }
        Ok(HttpServer {
            server,
            workers,
            addr,
            stopping,
        })
    }

    /// The address actually bound.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Wakes and joins every worker.
    pub(crate) fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        for _ in &self.workers {
            self.server.unblock();
        }
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

fn is_event_stream(request: &Request) -> bool {
    *request.method() == Method::Get && request.url().split('?').next() == Some("/events")
}

/// Hands `GET /events` to a thread of its own (`sse-<n>`), registered like a
/// WebSocket connection so it counts towards `--max-clients` and is joined at
/// shutdown. The worker goes back to answering requests at once.
fn start_event_stream(request: Request, shared: &Arc<Shared>) {
    let config = &shared.config;
    let full = shared.registry.len() >= config.max_clients;
    if full || shared.metrics.stopping.load(Ordering::SeqCst) {
        let body = format!(
            "tickcast is full ({} clients, see --max-clients) or stopping; try again later\n",
            config.max_clients
        );
        let reply = Response::from_string(body)
            .with_status_code(503)
            .with_header(header("Content-Type", "text/plain; charset=utf-8"));
        let _ = request.respond(reply);
        return;
    }
    let peer = request
        .remote_addr()
        .copied()
        .unwrap_or_else(|| "0.0.0.0:0".parse().expect("a valid address"));
    let thread_shared = shared.clone();
    let spawned = shared.registry.spawn("sse", None, config, move || {
        let writer = request.into_writer();
        let max_backlog = thread_shared.config.max_backlog;
        crate::sse::serve(
            writer,
            peer,
            &thread_shared.events_tx,
            max_backlog,
            &thread_shared.metrics,
        );
    });
    if let Err(e) = spawned {
        log::warn!("{peer}: cannot start a thread for this SSE client: {e}");
    }
}

fn answer(site: &Site, request: Request) {
    let response = route(site, request.method(), request.url());
    let method = request.method().clone();
    let url = request.url().to_string();
    let status = response.status;
    let mut reply = Response::from_data(response.body)
        .with_status_code(status)
        .with_header(header("Content-Type", response.content_type))
        .with_header(header("Cache-Control", "no-cache"))
        .with_header(header("X-Content-Type-Options", "nosniff"));
    if status == 405 {
        reply = reply.with_header(header("Allow", "GET, HEAD"));
    }
    log::debug!("HTTP {method} {url} -> {status}");
    // A client that hung up mid-answer is its own problem.
    let _ = request.respond(reply);
}

fn header(name: &str, value: &str) -> Header {
    // Both are ASCII constants from this file; `from_bytes` only rejects non-ASCII.
    Header::from_bytes(name, value).expect("header names and values here are ASCII")
}

/// An answer before it becomes a tiny_http response; separate so it can be tested.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Answer {
        let mut body = body.into();
        body.push('\n');
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into_bytes(),
        }
    }
}

/// Decides the answer for a method and raw URL.
pub(crate) fn route(site: &Site, method: &Method, url: &str) -> Answer {
    if !matches!(method, Method::Get | Method::Head) {
        return Answer::text(405, "only GET and HEAD are served here");
    }
    let path = url.split(['?', '#']).next().unwrap_or("/");
    match path {
        "/config.json" => Answer {
            status: 200,
            content_type: "application/json",
            body: format!(r#"{{"ws_port":{},"ws_path":"/echo"}}"#, site.ws_port).into_bytes(),
        },
        "/healthz" if site.metrics.stopping.load(Ordering::Relaxed) => {
            Answer::text(503, "shutting down")
        }
        "/healthz" => Answer::text(200, "ok"),
        "/metrics" => Answer {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: site.metrics.render().into_bytes(),
        },
        _ => static_file(site, path),
    }
}

fn static_file(site: &Site, path: &str) -> Answer {
    let path = if path == "/" { "/index.html" } else { path };
    let Some(relative) = safe_relative_path(path) else {
        return Answer::text(400, "bad path: only plain file names are allowed");
    };
    let not_found = || Answer::text(404, format!("not found: {path}"));
    let body = match &site.public_dir {
        None => match EMBEDDED.iter().find(|(p, _)| *p == path) {
            Some((_, bytes)) => bytes.to_vec(),
            None => return not_found(),
        },
        Some(dir) => match read_regular_file(&dir.join(&relative)) {
            Some(bytes) => bytes,
            None => return not_found(),
        },
    };
    Answer {
        status: 200,
        content_type: content_type(&relative),
        body,
    }
}

fn read_regular_file(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    std::fs::read(path).ok()
}

/// Turns `/a/b.js` into `a/b.js`, or `None` if any segment could escape the
/// directory or mean something special to a file system.
pub(crate) fn safe_relative_path(url_path: &str) -> Option<PathBuf> {
    let rest = url_path.strip_prefix('/')?;
    let mut out = PathBuf::new();
    for segment in rest.split('/') {
        let bad = segment.is_empty()
            || segment == "."
            || segment == ".."
            || segment.contains(['\\', ':', '\0', '%']);
        if bad {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_odd_segments_are_refused() {
        for bad in [
            "/../etc/passwd",
            "/a/../../b",
            "/./x",
            "//x",
            "/a\\b",
            "/c:x",
            "/%2e%2e/x",
            "/x/",
        ] {
            assert_eq!(safe_relative_path(bad), None, "{bad}");
        }
        assert_eq!(
            safe_relative_path("/css/site.css"),
            Some(PathBuf::from("css/site.css"))
        );
    }

    #[test]
    fn embedded_page_is_served_with_its_type() {
        let site = Site {
            public_dir: None,
            ws_port: 1,
            metrics: Arc::default(),
        };
        let page = route(&site, &Method::Get, "/?x=1");
        assert_eq!(page.status, 200);
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        assert_eq!(route(&site, &Method::Get, "/nope.js").status, 404);
        assert_eq!(route(&site, &Method::Post, "/").status, 405);
    }
}
