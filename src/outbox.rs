//! The write side of one client's socket, shared by two threads.
//!
//! Two threads write to each client: the client's own thread (the handshake reply,
//! echoes, pongs, close replies) and the hub (broadcasts). tungstenite's maintainers
//! say a blocking `WebSocket` cannot be split into read and write halves, and the
//! client's thread spends its life blocked in `read`, so the hub cannot go through
//! the `WebSocket` at all. Instead both threads write *whole frames* into the
//! client's `Outbox`:
//!
//! - A mutex around the write side makes each frame atomic: two frames' bytes can
//!   never interleave on the wire.
//! - Writes never block. The socket stays in blocking mode for the reader, and each
//!   write is a `send` with `MSG_DONTWAIT`, so a full socket buffer returns at once.
//!   Whatever the kernel does not take waits in a per-client `pending` buffer and is
//!   sent first next time anyone writes to this client (at the latest, the next tick).
//! - `pending` is bounded by `max_backlog`. A client whose backlog would pass it is
//!   cut off: the outbox is closed and the socket shut down, which wakes the
//!   client's thread out of its `read` so the thread ends. The hub moves on at once;
//!   the other clients never wait for a slow one.
//!
//! Once closed (cut off, shut down, or after the server's close frame), an outbox
//! discards every further write: RFC 6455 allows nothing after a close frame.
//!
//! The lock is only ever held for non-blocking work (a `send` that cannot block, a
//! memcpy into `pending`), so the hub never waits long for a client's thread.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::protocol::LeaveReason;

/// The shared write side of one client socket. See the module docs.
pub(crate) struct Outbox {
    /// The socket. Shared with the client's thread, which reads from it; there is
    /// one file descriptor per client, not two.
    socket: Arc<TcpStream>,
    /// Everything that changes after creation, behind one lock so a frame is written
    /// whole: bytes waiting for the kernel, and whether the outbox is closed.
    state: Mutex<State>,
    /// Cut the client off when `pending` would grow past this many bytes.
    max_backlog: usize,
}

struct State {
    /// Bytes accepted from callers that the kernel has not taken yet, oldest first.
    /// Always whole frames from the first byte not yet sent.
    pending: Vec<u8>,
    /// Set once; from then on every write is discarded. The reason is what the
    /// client's `leave` notice will say.
    closed: Option<LeaveReason>,
}

/// What became of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The kernel took all of it, or the rest waits in the backlog.
    Accepted,
    /// This write pushed the backlog past the limit: the client has just been cut
    /// off with [`LeaveReason::TooSlow`].
    CutOff,
    /// The socket failed (the peer reset it, say); the client has just been closed
    /// with [`LeaveReason::Dropped`].
    Failed,
    /// The outbox was already closed; the bytes were discarded.
    Closed,
}

/// Don't keep a large allocation around after a burst has drained.
const KEEP_PENDING_CAPACITY: usize = 16 << 10;

impl Outbox {
    pub(crate) fn new(socket: Arc<TcpStream>, max_backlog: usize) -> Outbox {
        Outbox {
            socket,
            state: Mutex::new(State {
                pending: Vec::new(),
                closed: None,
            }),
            max_backlog,
        }
    }

    /// Queues `bytes` (one or more whole frames, or an HTTP response) for the client
    /// and sends as much as the socket takes right now. Never blocks.
    pub(crate) fn write(&self, bytes: &[u8]) -> Delivery {
        let mut state = self.lock();
        if state.closed.is_some() {
            return Delivery::Closed;
        }
        // Older bytes go first, or frames would reach the client out of order.
        let mut rest = bytes;
        if state.pending.is_empty() {
            match send_nonblocking(&self.socket, rest) {
                Ok(n) => rest = &rest[n..],
                Err(_) => return self.fail(&mut state),
            }
        } else if self.flush_locked(&mut state).is_err() {
            return self.fail(&mut state);
        }
        if rest.is_empty() {
            return Delivery::Accepted;
        }
        if state.pending.len() + rest.len() > self.max_backlog {
            log::debug!(
                "{}: backlog would reach {} bytes, cutting the client off",
                peer(&self.socket),
                state.pending.len() + rest.len()
            );
            self.close_locked(&mut state, LeaveReason::TooSlow, None);
            return Delivery::CutOff;
        }
        state.pending.extend_from_slice(rest);
        Delivery::Accepted
    }

    /// Tries to hand the backlog to the kernel. Never blocks.
    pub(crate) fn flush(&self) -> Delivery {
        let mut state = self.lock();
        if state.closed.is_some() {
            return Delivery::Closed;
        }
        match self.flush_locked(&mut state) {
            Ok(()) => Delivery::Accepted,
            Err(_) => self.fail(&mut state),
        }
    }

    /// Sends `last_frame` (if any, and if the outbox is still open), then closes
    /// the outbox for `reason` and ends our half of the TCP connection.
    ///
    /// The read half stays open: the client's thread keeps reading until the peer
    /// answers our close frame or hangs up, so the peer receives our frame instead
    /// of a reset. Returns `false` if the outbox was already closed.
    pub(crate) fn close(&self, reason: LeaveReason, last_frame: Option<&[u8]>) -> bool {
        let mut state = self.lock();
        if state.closed.is_some() {
            return false;
        }
        self.close_locked(&mut state, reason, last_frame);
        true
    }

    /// Why the outbox was closed, if it was.
    pub(crate) fn closed_reason(&self) -> Option<LeaveReason> {
        self.lock().closed
    }

    fn close_locked(&self, state: &mut State, reason: LeaveReason, last_frame: Option<&[u8]>) {
        if reason == LeaveReason::TooSlow {
            // The socket is full: a close frame would never arrive. Hang up, which
            // also wakes the client's thread.
            state.closed = Some(reason);
            state.pending = Vec::new();
            let _ = self.socket.shutdown(Shutdown::Both);
            return;
        }
        if let Some(frame) = last_frame {
            // Best effort: pending plus the close frame, whatever fits now.
            let _ = self.flush_locked(state);
            if state.pending.is_empty() {
                if let Ok(n) = send_nonblocking(&self.socket, frame) {
                    if n < frame.len() {
                        state.pending.extend_from_slice(&frame[n..]);
                    }
                }
            } else {
                state.pending.extend_from_slice(frame);
            }
        }
        state.closed = Some(reason);
        if state.pending.is_empty() {
            // FIN after the close frame: the peer reads the frame, then end-of-stream.
            let _ = self.socket.shutdown(Shutdown::Write);
        } else {
            // The frame cannot be delivered without blocking; hang up instead.
            state.pending = Vec::new();
            let _ = self.socket.shutdown(Shutdown::Both);
        }
    }

    /// Marks the outbox failed after a socket error and wakes the reader.
    fn fail(&self, state: &mut State) -> Delivery {
        state.closed = Some(LeaveReason::Dropped);
        state.pending = Vec::new();
        let _ = self.socket.shutdown(Shutdown::Both);
        Delivery::Failed
    }

    fn flush_locked(&self, state: &mut State) -> io::Result<()> {
        if state.pending.is_empty() {
            return Ok(());
        }
        let sent = send_nonblocking(&self.socket, &state.pending)?;
        state.pending.drain(..sent);
        if state.pending.is_empty() && state.pending.capacity() > KEEP_PENDING_CAPACITY {
            state.pending = Vec::new();
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock can only come from a bug in this module;
        // the state is still consistent (plain bytes and a flag), so carry on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Sends as much of `bytes` as the kernel takes without waiting. Returns how many
/// bytes it took (0 when the socket buffer is full).
///
/// The socket itself stays blocking, because the client's thread is blocked reading
/// it; `MSG_DONTWAIT` makes just this one call non-blocking.
#[cfg(unix)]
fn send_nonblocking(socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    // MSG_NOSIGNAL: a peer that hung up gives EPIPE instead of killing the process
    // with SIGPIPE (Rust ignores SIGPIPE in its own binaries, but not every embedder does).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const FLAGS: libc::c_int = libc::MSG_DONTWAIT;

    let socket = socket2::SockRef::from(socket);
    let mut total = 0;
    while total < bytes.len() {
        match socket.send_with_flags(&bytes[total..], FLAGS) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Portable fallback: there is no per-call non-blocking flag, so the socket carries
/// a short write timeout (set when the client connects) and a full buffer stalls
/// the caller for at most that long.
#[cfg(not(unix))]
fn send_nonblocking(socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut socket = socket;
    let mut total = 0;
    while total < bytes.len() {
        match socket.write(&bytes[total..]) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// How long a full socket may stall a writer on platforms without `MSG_DONTWAIT`.
#[cfg(not(unix))]
pub(crate) const FALLBACK_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(5);

fn peer(socket: &TcpStream) -> String {
    socket
        .peer_addr()
        .map_or_else(|_| "client".to_string(), |a| a.to_string())
}

/// The stream a client's `tungstenite::WebSocket` runs over: reads come straight
/// from the socket (only the client's thread reads), writes go into the outbox.
pub(crate) struct ClientStream {
    pub(crate) socket: Arc<TcpStream>,
    pub(crate) outbox: Arc<Outbox>,
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.socket).read(buf)
    }
}

impl Write for ClientStream {
    /// Takes the whole buffer or nothing, so the frames tungstenite writes stay whole.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.outbox.write(buf) {
            Delivery::Accepted | Delivery::Closed => Ok(buf.len()),
            Delivery::CutOff | Delivery::Failed => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the connection was closed by the server",
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.outbox.flush();
        Ok(())
    }
}
