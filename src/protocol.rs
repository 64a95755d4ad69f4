//! The wire protocol (v1): the JSON text messages the server sends, and how a
//! message becomes the bytes of one WebSocket frame.
//!
//! This module has no threads and no I/O. The messages are small and fixed, so they
//! are written by hand instead of pulling in a serialisation framework; the
//! integration tests parse every one of them with a real JSON parser.
//!
//! | message | sent to | example |
//! |---|---|---|
//! | welcome | the new client, first | `{"type":"welcome","id":7,"clients":3,"time":"2026-11-24T14:00:00.412Z"}` |
//! | tick | everyone, every interval | `{"type":"tick","seq":42,"time":"2026-11-24T14:00:01.000Z"}` |
//! | join | everyone but the newest joiner | `{"type":"join","ids":[8],"clients":4}` |
//! | leave | everyone still connected | `{"type":"leave","ids":[7],"clients":3,"reason":"closed"}` |
//!
//! Anything a client sends is echoed back to it unchanged, as the same frame type.

use std::fmt::Write as _;

use time::OffsetDateTime;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};

/// Identifies one client for as long as the server runs. Assigned by the hub in
/// the order clients join, starting at 1, never reused.
pub type ClientId = u64;

/// Why a client left, as sent in the `reason` field of a `leave` notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeaveReason {
    /// A close handshake took place (either side started it).
    Closed,
    /// The TCP connection failed or ended without a close handshake.
    Dropped,
    /// The client read too slowly and its backlog passed the limit, so the server cut
    /// it off.
    TooSlow,
    /// The client stopped answering within a deadline.
    Timeout,
    /// The server is shutting down.
    Shutdown,
}

impl LeaveReason {
    /// Every reason, in the order notices are sent when several happen at once.
    pub const ALL: [LeaveReason; 5] = [
        LeaveReason::Closed,
        LeaveReason::Dropped,
        LeaveReason::TooSlow,
        LeaveReason::Timeout,
        LeaveReason::Shutdown,
    ];

    /// The word used on the wire, e.g. `too_slow`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Closed => "closed",
            LeaveReason::Dropped => "dropped",
            LeaveReason::TooSlow => "too_slow",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Shutdown => "shutdown",
        }
    }
}

/// `{"type":"welcome","id":7,"clients":3,"time":"…"}`: the first message a client
/// receives. `time` is the server's clock as it welcomes the client, so a page can
/// show the time at once instead of waiting up to an interval for the first tick.
pub fn welcome(id: ClientId, clients: usize, time: OffsetDateTime) -> String {
    format!(
        r#"{{"type":"welcome","id":{id},"clients":{clients},"time":"{}"}}"#,
        rfc3339_millis(time)
    )
}

/// `{"type":"tick","seq":42,"time":"…"}`: the clock, once per interval.
pub fn tick(seq: u64, time: OffsetDateTime) -> String {
    format!(
        r#"{{"type":"tick","seq":{seq},"time":"{}"}}"#,
        rfc3339_millis(time)
    )
}

/// `{"type":"join","ids":[8,9],"clients":4}`: who joined; `clients` counts after.
pub fn join(ids: &[ClientId], clients: usize) -> String {
    format!(
        r#"{{"type":"join","ids":[{}],"clients":{clients}}}"#,
        id_list(ids)
    )
}

/// `{"type":"leave","ids":[7],"clients":3,"reason":"closed"}`: who left and why.
pub fn leave(ids: &[ClientId], clients: usize, reason: LeaveReason) -> String {
    format!(
        r#"{{"type":"leave","ids":[{}],"clients":{clients},"reason":"{}"}}"#,
        id_list(ids),
        reason.as_str()
    )
}

/// `{"type":"line","text":"…"}`: one line of the server's standard input
/// (`tickcast --stdin`).
pub fn line(text: &str) -> String {
    format!(r#"{{"type":"line","text":{}}}"#, json_string(text))
}

/// `text` as a JSON string literal, quotes included.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One Server-Sent Events message: `id`, an optional `event` name, and the text as
/// `data` (one `data:` line per line of text, as the SSE format requires).
///
/// A line of text ends at `\r\n`, `\n` or a bare `\r`, because that is where an
/// `EventSource` ends it: text after an unsplit `\r` would be read as a field of its
/// own (`id: …`, `event: …`). The browser sees every line ending as `\n`.
pub fn sse_event(id: u64, event: Option<&str>, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 40);
    let _ = writeln!(out, "id: {id}");
    if let Some(event) = event {
        let _ = writeln!(out, "event: {event}");
    }
    for line in text.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        let _ = writeln!(out, "data: {line}");
    }
    out.push('\n');
    out
}

fn id_list(ids: &[ClientId]) -> String {
    let mut out = String::with_capacity(ids.len() * 6);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{id}");
    }
    out
}

/// Formats a UTC time as RFC 3339 with milliseconds, e.g. `2026-11-24T14:00:01.000Z`.
///
/// Written out by hand so the `time` crate needs none of its formatting features.
pub fn rfc3339_millis(time: OffsetDateTime) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Encodes a text message as one complete, unmasked server frame.
///
/// A broadcast is encoded once, by whoever publishes it, and the hub writes these
/// same bytes to every socket: N clients cost N writes, not N encodings.
pub fn text_frame(text: impl Into<String>) -> Vec<u8> {
    let text: String = text.into();
    encode(Frame::message(text, OpCode::Data(Data::Text), true))
}

/// Encodes a close frame with a status code and a short reason (at most 123 bytes).
pub(crate) fn close_frame(code: CloseCode, reason: &'static str) -> Vec<u8> {
    close_reply(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Encodes a close frame carrying `frame` (or an empty one), e.g. to answer a
/// client's close with the same status code, as RFC 6455 (5.5.1) suggests.
pub(crate) fn close_reply(frame: Option<CloseFrame>) -> Vec<u8> {
    encode(Frame::close(frame))
}

/// Encodes an empty ping frame, sent to every client each heartbeat.
pub(crate) fn ping_frame() -> Vec<u8> {
    encode(Frame::ping(Vec::new()))
}

fn encode(frame: Frame) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(frame.len());
    // `format` only fails if the writer does; a Vec never does.
    frame
        .format(&mut bytes)
        .expect("writing a frame into a Vec cannot fail");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_utc_with_millis() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_960_801_007_000_000).unwrap();
        assert_eq!(rfc3339_millis(t), "2026-11-29T14:00:01.007Z");
    }

    #[test]
    fn welcome_says_who_how_many_and_when() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_960_800_412_000_000).unwrap();
        assert_eq!(
            welcome(7, 3, t),
            r#"{"type":"welcome","id":7,"clients":3,"time":"2026-11-29T14:00:00.412Z"}"#
        );
    }

    #[test]
    fn notices_list_ids_and_counts() {
        assert_eq!(
            join(&[8, 9], 4),
            r#"{"type":"join","ids":[8,9],"clients":4}"#
        );
        assert_eq!(
            leave(&[7], 3, LeaveReason::TooSlow),
            r#"{"type":"leave","ids":[7],"clients":3,"reason":"too_slow"}"#
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\u0001é""#);
        assert_eq!(line("x"), r#"{"type":"line","text":"x"}"#);
    }

    #[test]
    fn sse_events_split_lines_into_data_fields() {
        assert_eq!(
            sse_event(7, Some("tick"), "{}"),
            "id: 7\nevent: tick\ndata: {}\n\n"
        );
        assert_eq!(sse_event(8, None, "a\nb"), "id: 8\ndata: a\ndata: b\n\n");
        assert_eq!(sse_event(8, None, "a\r\nb"), "id: 8\ndata: a\ndata: b\n\n");
    }

    /// Found by the `sse_event` fuzz target: a bare `\r` ends a line for the
    /// browser, so published text could add its own `event:` or `id:` field.
    #[test]
    fn a_bare_carriage_return_cannot_start_a_field() {
        assert_eq!(
            sse_event(9, None, "a\revent: evil\rb"),
            "id: 9\ndata: a\ndata: event: evil\ndata: b\n\n"
        );
    }

    #[test]
    fn short_text_frame_has_a_one_byte_length() {
        let frame = text_frame("hi");
        assert_eq!(frame, [0x81, 2, b'h', b'i']);
    }

    #[test]
    fn long_text_frame_has_a_16_bit_length() {
        let frame = text_frame("x".repeat(300));
        assert_eq!(&frame[..4], [0x81, 126, 1, 44]);
        assert_eq!(frame.len(), 4 + 300);
    }

    #[test]
    fn close_frame_carries_code_and_reason() {
        let frame = close_frame(CloseCode::Away, "bye");
        assert_eq!(frame, [0x88, 5, 0x03, 0xe9, b'b', b'y', b'e']);
    }
}
