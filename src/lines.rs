//! Publishing from a pipe: every line read from a reader (the binary passes
//! standard input, for `tail -f app.log | tickcast --stdin`) goes to every client
//! as `{"type":"line","text":"…"}`.
//!
//! Runs on whatever thread calls [`publish_lines`] (the binary starts one named
//! `stdin`). It blocks in `read` until a line arrives, so it costs nothing while
//! the pipe is quiet, and returns at end of input or once the server has stopped.

use std::io::{self, BufRead, Read};

use crate::{Error, Publisher};

/// What [`publish_lines`] read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LinesPublished {
    /// Lines broadcast.
    pub lines: u64,
    /// Of those, lines that were not valid UTF-8: each bad byte sequence was
    /// replaced with U+FFFD before sending.
    pub invalid_utf8: u64,
}

/// Broadcasts every line of `reader` (without its `\n` or `\r\n`) until end of
/// input. Lines longer than `max_line` bytes are cut at that length, so one
/// endless line cannot fill memory.
///
/// # Errors
///
/// A read error from `reader`. Returns `Ok` at end of input, and also as soon as
/// the server has stopped ([`Error::Stopped`] is not an error here).
pub fn publish_lines(
    mut reader: impl BufRead,
    publisher: &Publisher,
    max_line: usize,
) -> io::Result<LinesPublished> {
    let mut summary = LinesPublished::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = reader
            .by_ref()
            .take(max_line as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if read == 0 {
            return Ok(summary);
        }
        let ended = buf.last() == Some(&b'\n');
        if !ended && buf.len() > max_line {
            // Cut the line and skip the rest of it.
            buf.truncate(max_line);
            skip_rest_of_line(&mut reader)?;
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let text = String::from_utf8_lossy(&buf);
        if matches!(text, std::borrow::Cow::Owned(_)) {
            summary.invalid_utf8 += 1;
        }
        match publisher.publish_line(&text) {
            Ok(()) => summary.lines += 1,
            Err(Error::Stopped) => return Ok(summary),
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
    }
}

fn skip_rest_of_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(());
        }
        if let Some(end) = available.iter().position(|b| *b == b'\n') {
            reader.consume(end + 1);
            return Ok(());
        }
        let len = available.len();
        reader.consume(len);
    }
}
