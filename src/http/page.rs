//! What the HTTP port answers, decided without I/O: the page (compiled in, or read
//! from `--public DIR`), `/config.json`, `/healthz` and `/metrics`. The
//! connection thread ([`super`]) writes the [`Answer`].
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

use std::path::{Path, PathBuf};

use crate::hub::ClusterState;
use crate::metrics::{ClusterGauges, Metrics};

/// The page, compiled in: (URL path, contents).
const EMBEDDED: &[(&str, &[u8])] = &[
    ("/index.html", include_bytes!("../../public/index.html")),
    ("/app.js", include_bytes!("../../public/app.js")),
    ("/tickcast.js", include_bytes!("../../public/tickcast.js")),
    ("/style.css", include_bytes!("../../public/style.css")),
];

/// The connection module pages import; served built in even with `--public DIR`
/// when `DIR` has none.
const CLIENT_MODULE: &str = "/tickcast.js";

fn embedded(path: &str) -> &'static [u8] {
    EMBEDDED
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(&[], |(_, bytes)| bytes)
}

/// What the answers depend on, borrowed from the server for one request.
pub(crate) struct Site<'a> {
    /// Serve files from here instead of [`EMBEDDED`].
    pub(crate) public_dir: Option<&'a Path>,
    /// The port WebSocket clients connect to; the page reads it from `/config.json`.
    pub(crate) ws_port: u16,
    /// For `/metrics`.
    pub(crate) metrics: &'a Metrics,
    /// Shutdown has begun: `/healthz` answers 503, `/metrics` says `tickcast_up 0`.
    pub(crate) stopping: bool,
    /// The cluster this node is part of, if any: while it cannot reach Redis,
    /// `/healthz` answers 503 so that a load balancer sends clients elsewhere.
    pub(crate) cluster: Option<&'a ClusterState>,
}

/// An answer before it is written; separate so it can be tested.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The `Content-Type` header's value.
    pub(crate) content_type: &'static str,
    /// The whole body (every answer here is small).
    pub(crate) body: Vec<u8>,
    /// Sent with `Access-Control-Allow-Origin: *`, so that pages on other sites
    /// may load it: `/tickcast.js` and the `/config.json` it reads.
    pub(crate) any_origin: bool,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Answer {
        let mut body = body.into();
        body.push('\n');
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into_bytes(),
            any_origin: false,
        }
    }
}

/// Decides the answer for a method and raw URL.
pub(crate) fn route(site: &Site<'_>, method: &str, url: &str) -> Answer {
    if !matches!(method, "GET" | "HEAD") {
        return Answer::text(405, "only GET and HEAD are served here");
    }
    let path = url.split(['?', '#']).next().unwrap_or("/");
    match path {
        "/config.json" => Answer {
            status: 200,
            content_type: "application/json",
            body: format!(r#"{{"ws_port":{},"ws_path":"/echo"}}"#, site.ws_port).into_bytes(),
            any_origin: true,
        },
        "/healthz" if site.stopping => Answer::text(503, "shutting down"),
        "/healthz" if site.cluster.is_some_and(|c| !c.is_up()) => {
            Answer::text(503, "not in the cluster: Redis cannot be reached")
        }
        "/healthz" => Answer::text(200, "ok"),
        "/metrics" => Answer {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: site
                .metrics
                .render(
                    !site.stopping,
                    site.cluster.map(|c| ClusterGauges {
                        up: c.is_up(),
                        clients_elsewhere: c.clients_elsewhere(),
                    }),
                )
                .into_bytes(),
            any_origin: false,
        },
        _ => static_file(site, path),
    }
}

fn static_file(site: &Site<'_>, path: &str) -> Answer {
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
            // A page of your own in DIR can import the client module without a
            // copy of it.
            None if path == CLIENT_MODULE => embedded(CLIENT_MODULE).to_vec(),
            None => return not_found(),
        },
    };
    Answer {
        status: 200,
        content_type: content_type(&relative),
        body,
        any_origin: path == CLIENT_MODULE,
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
        let metrics = Metrics::default();
        let site = Site {
            public_dir: None,
            ws_port: 1,
            metrics: &metrics,
            stopping: false,
            cluster: None,
        };
        let page = route(&site, "GET", "/?x=1");
        assert_eq!(page.status, 200);
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        assert_eq!(route(&site, "GET", "/nope.js").status, 404);
        assert_eq!(route(&site, "POST", "/").status, 405);
    }
}
