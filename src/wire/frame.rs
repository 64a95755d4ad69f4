//! WebSocket frames as the server writes them (RFC 6455 section 5): unmasked,
//! whole, encoded once. No threads, no I/O.
//!
//! A broadcast is encoded once, by whoever publishes it, and the hub writes these
//! same bytes to every socket: N clients cost N writes, not N encodings.

use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, Frame};

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
