//! The JSON messages of the wire protocol (v1), as text. No threads, no I/O.
//!
//! The messages are small and fixed, so they are written by hand instead of
//! pulling in a serialisation framework; the integration tests parse every one of
//! them with a real JSON parser. The same text goes out in a WebSocket frame
//! ([`super::frame`]) or an SSE event ([`super::sse`]).
//!
//! | message | sent to | example |
//! |---|---|---|
//! | welcome | the new client, first | `{"type":"welcome","id":7,"clients":3,"last_id":1795960800412000,"time":"2026-11-24T14:00:00.412Z"}` |
//! | reset | a resuming client, after its welcome, if it missed too much | `{"type":"reset","since":41,"last_id":1795960800412000,"reason":"…"}` |
//! | tick | everyone, every interval | `{"type":"tick","seq":42,"time":"2026-11-24T14:00:01.000Z"}` |
//! | join | everyone but the newest joiner | `{"type":"join","ids":[8],"clients":4}` |
//! | leave | everyone still connected | `{"type":"leave","ids":[7],"clients":3,"reason":"closed"}` |
//! | line | everyone (`--stdin`) | `{"type":"line","id":7,"text":"GET /index.html 200"}` |
//! | message | everyone, or a topic's subscribers | `{"type":"message","id":8,"topic":"prices","data":{"price":42}}` |
//!
//! Anything a client sends is echoed back to it unchanged, as the same frame type.

use std::fmt::Write as _;

use time::OffsetDateTime;

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

/// `{"type":"welcome","id":7,"clients":3,"last_id":41,"time":"…"}`: the first
/// message a client receives. `last_id` is the id of the newest published event,
/// which a client that has seen none resumes from. `time` is the server's clock as
/// it welcomes the client, so a page can show the time at once instead of waiting
/// up to an interval for the first tick.
pub fn welcome(id: ClientId, clients: usize, last_id: u64, time: OffsetDateTime) -> String {
    format!(
        r#"{{"type":"welcome","id":{id},"clients":{clients},"last_id":{last_id},"time":"{}"}}"#,
        rfc3339_millis(time)
    )
}

/// `{"type":"reset","since":41,"last_id":1200,"reason":"…"}`: the client asked to
/// resume after event `since`, but some of what followed is no longer kept (or
/// `since` is not an id this server gave). It must reload its state, and resume
/// from `last_id` next time.
pub fn reset(since: u64, last_id: u64, reason: &str) -> String {
    format!(
        r#"{{"type":"reset","since":{since},"last_id":{last_id},"reason":{}}}"#,
        json_string(reason)
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

/// `{"type":"line","id":7,"text":"…"}`: one line of the server's standard input
/// (`tickcast --stdin`) or of [`crate::publish_lines`], with its event id.
pub fn line(id: u64, text: &str) -> String {
    format!(
        r#"{{"type":"line","id":{id},"text":{}}}"#,
        json_string(text)
    )
}

/// `{"type":"message","id":42,"topic":"prices","data":…}`: a published message.
/// `data` must already be JSON (a value as published, or a string); `topic` is
/// left out for a message to everyone.
pub(crate) fn message(id: u64, topic: Option<&str>, data: &str) -> String {
    match topic {
        Some(topic) => {
            format!(
                r#"{{"type":"message","id":{id},"topic":{},"data":{data}}}"#,
                json_string(topic)
            )
        }
        None => format!(r#"{{"type":"message","id":{id},"data":{data}}}"#),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_rfc3339_utc_with_millis() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_960_801_007_000_000).unwrap();
        assert_eq!(rfc3339_millis(t), "2026-11-29T14:00:01.007Z");
    }

    #[test]
    fn reset_says_where_to_resume_and_why() {
        assert_eq!(
            reset(3, 9, "gone \"now\""),
            r#"{"type":"reset","since":3,"last_id":9,"reason":"gone \"now\""}"#
        );
    }

    #[test]
    fn welcome_says_who_how_many_and_when() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_960_800_412_000_000).unwrap();
        assert_eq!(
            welcome(7, 3, 41, t),
            r#"{"type":"welcome","id":7,"clients":3,"last_id":41,"time":"2026-11-29T14:00:00.412Z"}"#
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
        assert_eq!(line(7, "x"), r#"{"type":"line","id":7,"text":"x"}"#);
        assert_eq!(
            message(8, Some("prices"), "42"),
            r#"{"type":"message","id":8,"topic":"prices","data":42}"#
        );
        assert_eq!(
            message(9, None, r#""hi""#),
            r#"{"type":"message","id":9,"data":"hi"}"#
        );
    }
}
