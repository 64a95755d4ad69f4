//! A raw Server-Sent Events client for the tests: it checks the chunked framing
//! and the event syntax as it reads.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::Value;

use crate::util::tcp;

/// One parsed SSE event.
#[derive(Debug)]
pub struct Event {
    pub id: Option<u64>,
    pub name: Option<String>,
    pub data: String,
}

/// Decodes an HTTP/1.1 chunked body, checking the framing as it goes; reads 0
/// after the last chunk.
struct Chunked {
    inner: BufReader<TcpStream>,
    left_in_chunk: usize,
    done: bool,
}

impl std::io::Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left_in_chunk == 0 {
            let mut size = String::new();
            if self.inner.read_line(&mut size)? == 0 {
                return Ok(0);
            }
            let size = usize::from_str_radix(size.trim_end(), 16).expect("a chunk size");
            if size == 0 {
                let mut end = String::new();
                self.inner.read_line(&mut end)?;
                assert_eq!(end, "\r\n", "last chunk ends with CRLF");
                self.done = true;
                return Ok(0);
            }
            self.left_in_chunk = size;
        }
        let want = buf.len().min(self.left_in_chunk);
        let n = self.inner.read(&mut buf[..want])?;
        assert!(n > 0, "the stream ended inside a chunk");
        self.left_in_chunk -= n;
        if self.left_in_chunk == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
            assert_eq!(&crlf, b"\r\n", "a chunk ends with CRLF");
        }
        Ok(n)
    }
}

/// A raw HTTP client reading an event stream.
pub struct SseClient {
    reader: BufReader<Chunked>,
}

impl SseClient {
    /// Opens `GET /events`.
    pub fn connect(addr: SocketAddr) -> SseClient {
        SseClient::over(tcp(addr))
    }

    /// Opens `GET /events` on `stream`.
    pub fn over(stream: TcpStream) -> SseClient {
        SseClient::request(stream, "/events", "")
    }

    /// Opens `target` (e.g. `/events?topic=prices`) with `extra` header lines
    /// (e.g. `Last-Event-ID: 41\r\n`).
    pub fn open(addr: SocketAddr, target: &str, extra: &str) -> SseClient {
        SseClient::request(tcp(addr), target, extra)
    }

    fn request(mut stream: TcpStream, target: &str, extra: &str) -> SseClient {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra}\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("response head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line.to_lowercase());
        }
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("transfer-encoding: chunked"), "{head}");
        let body = Chunked {
            inner: reader,
            left_in_chunk: 0,
            done: false,
        };
        SseClient {
            reader: BufReader::new(body),
        }
    }

    /// The next event (comments and `retry:` skipped); `None` at end of stream.
    pub fn next_event(&mut self) -> Option<Event> {
        let mut event = Event {
            id: None,
            name: None,
            data: String::new(),
        };
        let mut seen_field = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if seen_field && !event.data.is_empty() {
                    return Some(event);
                }
                seen_field = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            seen_field = true;
            let (field, value) = line.split_once(": ").unwrap_or((line, ""));
            match field {
                "id" => event.id = Some(value.parse().expect("numeric id")),
                "event" => event.name = Some(value.to_string()),
                "data" => {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                }
                "retry" => {}
                other => panic!("unknown SSE field {other}"),
            }
        }
    }

    /// The next event named `name`, its data parsed as JSON; others skipped.
    pub fn next_named(&mut self, name: &str) -> (Event, Value) {
        loop {
            let event = self.next_event().expect("stream open");
            if event.name.as_deref() == Some(name) {
                let json = serde_json::from_str(&event.data).unwrap();
                return (event, json);
            }
        }
    }
}
