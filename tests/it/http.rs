//! The HTTP port: the page, its files, /config.json, and what is refused.

use crate::util::{http_get, http_raw, start, start_with};

/// The page, its script and style, and /config.json come with the right types.
#[test]
fn page_files_have_the_right_types() {
    let server = start();
    let addr = server.http_addr().unwrap();
    for (path, kind, needle) in [
        ("/", "text/html", "<title>tickcast</title>"),
        ("/index.html", "text/html", "app.js"),
        ("/app.js", "text/javascript", "config.json"),
        ("/style.css", "text/css", ".time"),
    ] {
        let (status, head, body) = http_get(addr, path);
        assert_eq!(status, 200, "{path}");
        assert!(
            head.contains(&format!("content-type: {kind}")),
            "{path}: {head}"
        );
        assert!(String::from_utf8_lossy(&body).contains(needle), "{path}");
    }
}

/// /config.json tells the page the WebSocket port actually bound.
#[test]
fn config_json_names_the_websocket_port() {
    let server = start();
    let (status, head, body) = http_get(server.http_addr().unwrap(), "/config.json");
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"));
    let config: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(config["ws_port"], server.ws_addr().port());
    assert_eq!(config["ws_path"], "/echo");
}

/// Unknown paths are 404; other methods are 405.
#[test]
fn unknown_path_is_404_and_post_is_405() {
    let server = start();
    let addr = server.http_addr().unwrap();
    assert_eq!(http_get(addr, "/nope.html").0, 404);
    let (status, head, _) = http_raw(
        addr,
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"));
}

/// `..` in a path is refused, for the embedded page and for --public alike.
#[test]
fn dot_dot_traversal_is_refused() {
    let dir = std::env::temp_dir().join(format!("tickcast-public-{}", std::process::id()));
    let public = dir.join("public");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(public.join("index.html"), "<p>from disk</p>").unwrap();
    std::fs::write(dir.join("secret.txt"), "secret").unwrap();

    let embedded = start();
    let from_disk = start_with(|c| c.public_dir = Some(public.clone()));
    for server in [&embedded, &from_disk] {
        let addr = server.http_addr().unwrap();
        for path in [
            "/../secret.txt",
            "/x/../../secret.txt",
            "/%2e%2e/secret.txt",
        ] {
            let (status, _, body) = http_get(addr, path);
            assert!(status == 400 || status == 404, "{path}: {status}");
            assert!(
                !String::from_utf8_lossy(&body).contains("secret\n"),
                "{path}"
            );
        }
    }
    // --public really serves from disk.
    let (status, _, body) = http_get(from_disk.http_addr().unwrap(), "/");
    assert_eq!(status, 200);
    assert_eq!(body, b"<p>from disk</p>");
    let _ = std::fs::remove_dir_all(&dir);
}
