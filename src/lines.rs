//! Publishing from a pipe: every line read from a reader (the binary passes
//! standard input, for `tail -f app.log | tickcast --stdin`) goes to every client
//! as `{"type":"line","text":"…"}`.
//!
//! Runs on whatever thread calls [`publish_lines`] (the binary starts one named
//! `stdin`). It blocks in `read` until a line arrives, so it costs nothing while
//! the pipe is quiet, and returns at end of input or once the server has stopped.

use std::io::{self, BufRead, Read};

use crate::{Error, Publisher};

/// How long to wait before trying a line again while the cluster is down.
const CLUSTER_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

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
/// input. Lines longer than `max_line` bytes are cut to at most that length (before
/// a character the cut would split), so one endless line cannot fill memory.
///
/// # Errors
///
/// A read error from `reader`. Returns `Ok` at end of input, and also as soon as
/// the server has stopped ([`Error::Stopped`] is not an error here).
///
/// In a cluster whose Redis cannot be reached ([`Error::ClusterDown`]), it waits
/// and tries the same line again, so that nothing read is lost: the pipe fills,
/// and the program writing into it waits too.
pub fn publish_lines(
    reader: impl BufRead,
    publisher: &Publisher,
    max_line: usize,
) -> io::Result<LinesPublished> {
    read_lines(reader, max_line, |text| {
        let mut waiting = false;
        loop {
            match publisher.publish_line(text) {
                Ok(_) => return Ok(true),
                Err(Error::Stopped) => return Ok(false),
                Err(Error::ClusterDown) => {
                    if !waiting {
                        log::warn!(
                            "stdin: waiting for the cluster's Redis to publish the next line"
                        );
                        waiting = true;
                    }
                    std::thread::sleep(CLUSTER_RETRY);
                }
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
    })
}

/// The loop of [`publish_lines`], with what to do with each line passed in as
/// `each`, which returns whether it took the line (`false`: stop here). Separate so
/// the line splitting can be tested and fuzzed without a running server.
pub(crate) fn read_lines(
    mut reader: impl BufRead,
    max_line: usize,
    mut each: impl FnMut(&str) -> io::Result<bool>,
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
            // Cut the line and skip the rest of it. Back up over UTF-8 continuation
            // bytes (0b10xx_xxxx, at most 3 per character) so the cut never splits
            // a character: valid text stays valid.
            let mut cut = max_line;
            while cut > 0 && max_line - cut < 3 && buf[cut] & 0xc0 == 0x80 {
                cut -= 1;
            }
            buf.truncate(cut);
            skip_rest_of_line(&mut reader)?;
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let text = String::from_utf8_lossy(&buf);
        if matches!(text, std::borrow::Cow::Owned(_)) {
            summary.invalid_utf8 += 1;
        }
        if !each(&text)? {
            return Ok(summary);
        }
        summary.lines += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max_line: usize) -> (Vec<String>, LinesPublished) {
        let mut lines = Vec::new();
        let summary = read_lines(input, max_line, |text| {
            lines.push(text.to_string());
            Ok(true)
        })
        .unwrap();
        (lines, summary)
    }

    #[test]
    fn line_endings_are_dropped_and_long_lines_cut() {
        let (got, summary) = lines(b"one\r\ntoo long\nbad \xff\nlast", 5);
        assert_eq!(got, ["one", "too l", "bad \u{fffd}", "last"]);
        assert_eq!(summary.lines, 4);
        assert_eq!(summary.invalid_utf8, 1);
    }

    /// Found by the `lines` fuzz target: a cut inside a multi-byte character sent
    /// U+FFFD and counted valid text as invalid UTF-8.
    #[test]
    fn cuts_fall_between_characters() {
        // 日 and 本 are 3 bytes each, 🎉 is 4.
        let (got, summary) = lines("日本語\nab🎉\n🎉🎉\n".as_bytes(), 5);
        assert_eq!(got, ["日", "ab", "🎉"]);
        assert_eq!(summary.invalid_utf8, 0);
        // A character longer than the limit leaves nothing before it.
        assert_eq!(lines("🎉x".as_bytes(), 3).0, [""]);
    }
}
