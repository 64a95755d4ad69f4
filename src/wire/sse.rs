//! Server-Sent Events as the HTTP port writes them: the response head, each event
//! as one HTTP chunk, and the last chunk. No threads, no I/O.
//!
//! ```text
//! id: 42
//! event: tick
//! data: {"type":"tick","seq":42,"time":"2026-11-24T14:00:01.000Z"}
//!
//! ```
//!
//! The body is chunked so that a stream can *end* cleanly, with the empty last
//! chunk, before the connection closes: `curl` then exits and `EventSource`
//! reconnects.

use std::fmt::Write as _;
use std::sync::Arc;

/// One Server-Sent Events message: an optional `id`, an optional `event` name, and
/// the text as `data` (one `data:` line per line of text, as the SSE format
/// requires). An event without an `id` leaves the client's last event id as it was.
///
/// A line of text ends at `\r\n`, `\n` or a bare `\r`, because that is where an
/// `EventSource` ends it: text after an unsplit `\r` would be read as a field of its
/// own (`id: …`, `event: …`). The browser sees every line ending as `\n`.
pub fn sse_event(id: Option<u64>, event: Option<&str>, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 40);
    if let Some(id) = id {
        let _ = writeln!(out, "id: {id}");
    }
    if let Some(event) = event {
        let _ = writeln!(out, "event: {event}");
    }
    for line in text.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        let _ = writeln!(out, "data: {line}");
    }
    out.push('\n');
    out
}

/// The response head, then a first chunk asking clients to wait 2 s before they
/// reconnect. `X-Accel-Buffering: no` asks nginx not to buffer;
/// `Access-Control-Allow-Origin: *` lets pages on other sites read the stream
/// (`--allowed-origin` refuses those it does not list before this is sent).
pub(crate) const RESPONSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nAccess-Control-Allow-Origin: *\r\n\
Connection: close\r\n\
Transfer-Encoding: chunked\r\n\r\nd\r\nretry: 2000\n\n\r\n";

/// The last chunk: the end of the response.
pub(crate) const END: &[u8] = b"0\r\n\r\n";

/// Wraps SSE text as one HTTP chunk, ready to write. The hub does this once per
/// broadcast, for all SSE clients.
pub(crate) fn chunk(sse_text: &str) -> Arc<[u8]> {
    let mut bytes = format!("{:x}\r\n", sse_text.len()).into_bytes();
    bytes.extend_from_slice(sse_text.as_bytes());
    bytes.extend_from_slice(b"\r\n");
    bytes.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_lines_into_data_fields() {
        assert_eq!(
            sse_event(Some(7), Some("tick"), "{}"),
            "id: 7\nevent: tick\ndata: {}\n\n"
        );
        assert_eq!(
            sse_event(Some(8), None, "a\nb"),
            "id: 8\ndata: a\ndata: b\n\n"
        );
        assert_eq!(
            sse_event(Some(8), None, "a\r\nb"),
            "id: 8\ndata: a\ndata: b\n\n"
        );
        assert_eq!(
            sse_event(None, Some("join"), "{}"),
            "event: join\ndata: {}\n\n"
        );
    }

    /// Found by the `sse_event` fuzz target: a bare `\r` ends a line for the
    /// browser, so published text could add its own `event:` or `id:` field.
    #[test]
    fn a_bare_carriage_return_cannot_start_a_field() {
        assert_eq!(
            sse_event(Some(9), None, "a\revent: evil\rb"),
            "id: 9\ndata: a\ndata: event: evil\ndata: b\n\n"
        );
    }
}
