//! RESP2, the protocol Redis (and Valkey) speak, and one blocking connection
//! that uses it. No thread of its own: each cluster thread owns its connection.
//!
//! A command is an array of binary-safe strings; a reply is one of five types,
//! told apart by its first byte. That is all tickcast needs, so it speaks it
//! here in a page of code rather than pulling in a client crate (see the
//! module doc of [`super`] for the measurement behind that choice).
//!
//! ```text
//! command:  *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n
//! replies:  +OK\r\n   -ERR message\r\n   :42\r\n   $5\r\nhello\r\n   *2\r\n…   ($-1 / *-1: nil)
//! ```

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::url::RedisUrl;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `+OK`
    Status(String),
    /// `-ERR …`: the command failed; the connection is still good.
    Error(String),
    /// `:42`
    Int(i64),
    /// `$5\r\nhello`
    Bulk(Vec<u8>),
    /// `*2\r\n…`
    Array(Vec<Reply>),
    /// `$-1` or `*-1`: no value (a missing key, a blocking read that timed out).
    Nil,
}

impl Reply {
    /// The reply as text, for bulk and status replies.
    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Reply::Bulk(bytes) => std::str::from_utf8(bytes).ok(),
            Reply::Status(text) => Some(text),
            _ => None,
        }
    }

    /// The elements of an array reply (none for nil).
    pub(crate) fn items(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(items) => Some(items),
            Reply::Nil => Some(&[]),
            _ => None,
        }
    }
}

/// Why a command got no usable reply.
#[derive(Debug)]
pub(crate) enum RespError {
    /// The connection failed or timed out: connect again.
    Io(io::Error),
    /// The peer sent bytes that are not RESP: it is not a Redis.
    Protocol(String),
    /// Redis answered with an error (`-ERR …`).
    Redis(String),
}

impl fmt::Display for RespError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RespError::Io(e) => write!(f, "{e}"),
            RespError::Protocol(what) => write!(f, "it does not answer like a Redis ({what})"),
            RespError::Redis(message) => write!(f, "Redis answered: {message}"),
        }
    }
}

impl From<io::Error> for RespError {
    fn from(e: io::Error) -> RespError {
        RespError::Io(e)
    }
}

/// The longest line or bulk string a reply may hold: far more than any event,
/// and a bound on what a peer that is not Redis can make us allocate.
const MAX_REPLY_BYTES: usize = 512 << 20;

/// The deepest nesting of arrays a reply may have (XREAD's is 4).
const MAX_DEPTH: usize = 8;

/// A blocking connection to Redis, logged in and on the right database.
pub(crate) struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    /// Connects, logs in if the URL has a password, selects the database, and
    /// checks that the peer answers `PING` like a Redis. Every read and write
    /// waits at most `timeout` (a blocking read may ask for longer).
    pub(crate) fn open(url: &RedisUrl, timeout: Duration) -> Result<Connection, RespError> {
        let addrs = (url.host.as_str(), url.port).to_socket_addrs()?;
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = e,
            }
        }
        let stream = stream.ok_or(last_error)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut connection = Connection {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        if let Some(password) = &url.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &url.username {
                auth.push(user.as_bytes());
            }
            auth.push(password.as_bytes());
            connection.command(&auth)?;
        }
        if url.db != 0 {
            connection.command(&[b"SELECT", url.db.to_string().as_bytes()])?;
        }
        match connection.command(&[b"PING"])? {
            Reply::Status(pong) if pong == "PONG" => Ok(connection),
            other => Err(RespError::Protocol(format!("PING answered {other:?}"))),
        }
    }

    /// Sends one command and reads its reply; a Redis error reply is an `Err`.
    pub(crate) fn command(&mut self, args: &[&[u8]]) -> Result<Reply, RespError> {
        self.writer.write_all(&encode(args))?;
        match read_reply(&mut self.reader, 0)? {
            Reply::Error(message) => Err(RespError::Redis(message)),
            reply => Ok(reply),
        }
    }

    /// Sends a command that blocks in Redis for up to `block` (`XREAD BLOCK`),
    /// waiting that long plus `timeout` for its reply.
    pub(crate) fn blocking_command(
        &mut self,
        args: &[&[u8]],
        block: Duration,
        timeout: Duration,
    ) -> Result<Reply, RespError> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(block + timeout))?;
        let reply = self.command(args);
        self.reader.get_ref().set_read_timeout(Some(timeout))?;
        reply
    }

    /// A handle that can end this connection from another thread: shutting it
    /// down wakes a thread blocked reading it.
    pub(crate) fn stopper(&self) -> io::Result<Stopper> {
        Ok(Stopper(self.writer.try_clone()?))
    }
}

/// Ends a [`Connection`] from another thread.
pub(crate) struct Stopper(TcpStream);

impl Stopper {
    pub(crate) fn stop(&self) {
        // It may have closed already: then there is nothing to wake.
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// A command as RESP: an array of bulk strings.
pub(crate) fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one reply, `depth` arrays deep.
pub(crate) fn read_reply(reader: &mut impl BufRead, depth: usize) -> Result<Reply, RespError> {
    let line = read_line(reader)?;
    let (kind, rest) = match line.split_first() {
        Some((kind, rest)) => (*kind, rest),
        None => return Err(RespError::Protocol("an empty line".into())),
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Status(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => Ok(Reply::Int(number(rest)?)),
        b'$' => {
            let Some(len) = length(rest)? else {
                return Ok(Reply::Nil);
            };
            let mut bytes = vec![0; len + 2];
            reader.read_exact(&mut bytes)?;
            if !bytes.ends_with(b"\r\n") {
                return Err(RespError::Protocol("a bulk string without its CRLF".into()));
            }
            bytes.truncate(len);
            Ok(Reply::Bulk(bytes))
        }
        b'*' => {
            let Some(len) = length(rest)? else {
                return Ok(Reply::Nil);
            };
            if depth >= MAX_DEPTH {
                return Err(RespError::Protocol("arrays nested too deep".into()));
            }
            // Grows as elements arrive: the count alone must not allocate.
            let mut items = Vec::with_capacity(len.min(1024));
            for _ in 0..len {
                items.push(read_reply(reader, depth + 1)?);
            }
            Ok(Reply::Array(items))
        }
        other => Err(RespError::Protocol(format!(
            "a reply starting with {:?}",
            char::from(other)
        ))),
    }
}

/// One CRLF-terminated line, without the CRLF, of at most `MAX_REPLY_BYTES`.
fn read_line(reader: &mut impl BufRead) -> Result<Vec<u8>, RespError> {
    let mut line = Vec::new();
    let limit = u64::try_from(MAX_REPLY_BYTES).unwrap_or(u64::MAX);
    let n = reader.take(limit).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(
            io::Error::new(io::ErrorKind::UnexpectedEof, "Redis closed the connection").into(),
        );
    }
    if !line.ends_with(b"\r\n") {
        return Err(RespError::Protocol("a line without CRLF".into()));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn number(digits: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| RespError::Protocol("a number that is not one".into()))
}

/// A bulk or array length: `None` for -1 (nil).
fn length(digits: &[u8]) -> Result<Option<usize>, RespError> {
    match number(digits)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_REPLY_BYTES)
            .map(Some)
            .ok_or_else(|| RespError::Protocol(format!("a length of {n}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Reply, RespError> {
        read_reply(&mut &bytes[..], 0)
    }

    #[test]
    fn encodes_a_command_as_an_array_of_bulk_strings() {
        assert_eq!(
            encode(&[b"SET", b"k", b"a\r\nb"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n"
        );
    }

    #[test]
    fn parses_every_reply_type() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Status("OK".into()));
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Reply::Error("ERR no".into())
        );
        assert_eq!(parse(b":-7\r\n").unwrap(), Reply::Int(-7));
        assert_eq!(
            parse(b"$4\r\na\r\nb\r\n").unwrap(),
            Reply::Bulk(b"a\r\nb".to_vec())
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Nil);
        assert_eq!(
            parse(b"*2\r\n$1\r\nx\r\n*1\r\n:1\r\n").unwrap(),
            Reply::Array(vec![
                Reply::Bulk(b"x".to_vec()),
                Reply::Array(vec![Reply::Int(1)])
            ])
        );
    }

    #[test]
    fn refuses_what_is_not_resp() {
        for bad in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"+OK\n",
            b":x\r\n",
            b"$3\r\nabcd\r\n",
            b"$99999999999\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(RespError::Protocol(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(parse(b"$5\r\nab"), Err(RespError::Io(_))));
        assert!(matches!(parse(b""), Err(RespError::Io(_))));
    }
}
