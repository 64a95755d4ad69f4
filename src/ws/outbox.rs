//! The write side of one client's socket, shared by two threads.
//!
//! Two threads write to each client: the client's own thread (the handshake reply,
//! echoes, pongs, close replies) and the hub (broadcasts). tungstenite's maintainers
//! say a blocking `WebSocket` cannot be split into read and write halves, and the
//! client's thread spends its life blocked in `read`, so the hub cannot go through
//! the `WebSocket` at all. Instead both threads write *whole frames* into the
//! client's `Outbox`, which keeps two rules:
//!
//! 1. **Frames never interleave.** Only the holder of the `writer` lock touches
//!    the socket, and bytes leave in the order they were queued in `pending`.
//! 2. **The hub never waits for a client.** If nobody is writing and nothing is
//!    queued, the hub hands its frame straight to the kernel with `MSG_DONTWAIT`
//!    (the socket itself stays blocking for the reader) — the common case, with no
//!    copy and no buffer kept per client. Only what the kernel does not take is
//!    copied into `pending`, to go first next time. If the client's own thread
//!    holds the `writer`, the hub just leaves its frame in `pending`; that thread
//!    sends it before letting go.
//!
//! The client's own thread, by contrast, *may* block on its own writes: an echo
//! of a 16 MiB message waits until the client has read it. That is the natural
//! back-pressure of thread-per-connection — a client that floods us without
//! reading stalls only its own thread.
//!
//! `pending` is bounded by `max_backlog`. A client whose backlog would pass it is
//! cut off: the outbox is closed and the socket shut down, which wakes the
//! client's thread from its `read` (or its blocked write) so the thread ends.
//!
//! Once closed, an outbox discards every further write: RFC 6455 allows nothing
//! after a close frame.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use crate::delivery::Delivery;
use crate::wire::message::LeaveReason;

/// The shared write side of one client socket. See the module docs.
pub(crate) struct Outbox {
    /// The socket. Shared with the client's thread, which reads from it; there is
    /// one file descriptor per client, not two.
    socket: Arc<TcpStream>,
    /// Bytes waiting to be written and whether the outbox is closed. Held only for
    /// short, non-blocking work, never across a blocking write.
    state: Mutex<State>,
    /// Held by whoever is writing to the socket, so writes never overlap.
    writer: Mutex<()>,
    /// Cut the client off when `pending` would grow past this many bytes.
    max_backlog: usize,
    /// When the client last sent anything (a frame of any kind), in the heartbeat's
    /// [`clock_ms`](crate::hub::heartbeat::clock_ms) time. Written by the client's
    /// thread (and by the hub when it joins), read by the hub's heartbeat.
    last_heard_ms: AtomicU64,
}

/// What the outbox's `state` lock guards.
struct State {
    /// Bytes queued but not yet taken by the kernel, oldest first.
    pending: Vec<u8>,
    /// Set once; from then on every write is discarded. The reason is what the
    /// client's `leave` notice will say.
    closed: Option<LeaveReason>,
    /// A close frame is queued: once `pending` has drained, end our half of the
    /// TCP connection (FIN after the frame).
    finish_after_flush: bool,
}

impl Outbox {
    pub(crate) fn new(socket: Arc<TcpStream>, max_backlog: usize) -> Outbox {
        Outbox {
            socket,
            state: Mutex::new(State {
                pending: Vec::new(),
                closed: None,
                finish_after_flush: false,
            }),
            writer: Mutex::new(()),
            max_backlog,
            last_heard_ms: AtomicU64::new(0),
        }
    }

    /// Records that the client sent something at `at_ms` (heartbeat clock time).
    pub(crate) fn heard_from_client(&self, at_ms: u64) {
        self.last_heard_ms.store(at_ms, Ordering::Relaxed);
    }

    /// When the client last sent anything, in heartbeat clock time.
    pub(crate) fn last_heard_ms(&self) -> u64 {
        self.last_heard_ms.load(Ordering::Relaxed)
    }

    /// Cuts the client off at once (closes the outbox, shuts the socket down both
    /// ways): for a client that stopped answering, where a close frame would only
    /// sit in a buffer nobody reads.
    pub(crate) fn abort(&self, reason: LeaveReason) {
        self.hang_up(&mut self.state(), reason);
    }

    /// Queues `bytes` (whole frames, or an HTTP response) and sends what the
    /// socket takes right now. Never blocks: this is the hub's way in.
    pub(crate) fn write(&self, bytes: &[u8]) -> Delivery {
        // The writer lock first, then `state`: the same order as every other path.
        // tour: outbox-write-lock
        let writer = self.try_writer();
        let mut state = self.state();
        if state.closed.is_some() {
            return Delivery::Closed;
        }
        // tour: outbox-backlog
        if state.pending.len() + bytes.len() > self.max_backlog {
            log::debug!(
                "{}: backlog would pass {} bytes, cutting the client off",
                peer(&self.socket),
                self.max_backlog
            );
            self.hang_up(&mut state, LeaveReason::TooSlow);
            return Delivery::CutOff;
        }
        if writer.is_none() || !state.pending.is_empty() {
            // Someone else is writing (they send `pending` before letting go), or
            // older bytes must go first.
            state.pending.extend_from_slice(bytes);
            return match writer {
                Some(_writer) => self.flush_pending(&mut state),
                None => Delivery::Accepted,
            };
        }
        // Nothing queued: straight from the caller's buffer to the kernel. Only a
        // remainder the kernel could not take is copied.
        // tour: outbox-direct
        match send_nonblocking(&self.socket, bytes) {
            Ok(sent) => {
                state.pending.extend_from_slice(&bytes[sent..]);
                Delivery::Accepted
            }
            Err(_) => self.fail(&mut state),
        }
    }

    /// Writes `bytes` after everything queued, blocking until the kernel has taken
    /// all of it. Only the client's own thread calls this.
    fn write_blocking(&self, bytes: &[u8]) -> Delivery {
        let writer = self.writer();
        let mut batch = {
            let mut state = self.state();
            if state.closed.is_some() && !state.finish_after_flush {
                return Delivery::Closed;
            }
            let mut batch = std::mem::take(&mut state.pending);
            if state.closed.is_none() {
                batch.extend_from_slice(bytes);
            }
            batch
        };
        // Write without holding `state`, so the hub can keep queueing meanwhile,
        // then take whatever it queued, until nothing is left.
        loop {
            // tour: write-blocking
            if (&*self.socket).write_all(&batch).is_err() {
                return self.fail(&mut self.state());
            }
            let mut state = self.state();
            if state.pending.is_empty() {
                if state.finish_after_flush {
                    self.finish(&mut state);
                }
                break;
            }
            batch = std::mem::take(&mut state.pending);
        }
        drop(writer);
        // The hub may have queued a frame after our last look while it could not
        // take the writer lock from us: send it now rather than at the next write.
        self.try_flush()
    }

    /// Sends what the socket takes of `pending` now, unless someone else is writing
    /// (they will send it). Never blocks.
    pub(crate) fn try_flush(&self) -> Delivery {
        let Some(_writer) = self.try_writer() else {
            return Delivery::Accepted;
        };
        self.flush_pending(&mut self.state())
    }

    /// Sends what the socket takes of `pending` now. The caller holds the writer.
    fn flush_pending(&self, state: &mut State) -> Delivery {
        if state.pending.is_empty() {
            return if state.closed.is_some() {
                Delivery::Closed
            } else {
                Delivery::Accepted
            };
        }
        match send_nonblocking(&self.socket, &state.pending) {
            Ok(sent) => {
                state.pending.drain(..sent);
                if state.pending.is_empty() {
                    // A backlog is the exception: give its memory back rather than
                    // keep a buffer for every client.
                    state.pending = Vec::new();
                    if state.finish_after_flush {
                        self.finish(state);
                    }
                }
                Delivery::Accepted
            }
            Err(_) => self.fail(state),
        }
    }

    /// Queues `last_frame` (normally a close frame), closes the outbox for
    /// `reason`, and ends our half of the TCP connection once the frame is out.
    ///
    /// The read half stays open: the client's thread keeps reading until the peer
    /// answers or hangs up, so the peer receives our frame instead of a reset.
    /// Never blocks. Returns `false` if the outbox was already closed.
    pub(crate) fn close(&self, reason: LeaveReason, last_frame: &[u8]) -> bool {
        {
            let mut state = self.state();
            if state.closed.is_some() {
                return false;
            }
            state.closed = Some(reason);
            state.pending.extend_from_slice(last_frame);
            state.finish_after_flush = true;
        }
        self.try_flush();
        true
    }

    /// Sends whatever is still queued ahead of a close frame from [`Outbox::close`],
    /// waiting up to `timeout` for the client to make room, then ends our half of
    /// the TCP connection. Does nothing if no close frame is waiting. Only the
    /// client's own thread calls this, as it ends.
    pub(crate) fn finish_closing(&self, timeout: std::time::Duration) {
        let _writer = self.writer();
        let batch = {
            let mut state = self.state();
            if !state.finish_after_flush {
                return;
            }
            std::mem::take(&mut state.pending)
        };
        // Nothing can be queued behind the close frame, so one write finishes it.
        let _ = self.socket.set_write_timeout(Some(timeout));
        let mut state = self.state();
        if (&*self.socket).write_all(&batch).is_ok() {
            self.finish(&mut state);
        } else {
            self.hang_up(&mut state, LeaveReason::Dropped);
        }
    }

    /// Why the outbox was closed, if it was.
    pub(crate) fn closed_reason(&self) -> Option<LeaveReason> {
        self.state().closed
    }

    /// All queued bytes are out after a close frame: send FIN.
    fn finish(&self, state: &mut State) {
        state.finish_after_flush = false;
        let _ = self.socket.shutdown(Shutdown::Write);
    }

    /// Gives up on the client: closes the outbox and shuts the socket down both
    /// ways, which wakes its thread from a blocked read or write.
    fn hang_up(&self, state: &mut State, reason: LeaveReason) {
        // A reason given earlier (a shutdown close already queued, say) stands.
        state.closed.get_or_insert(reason);
        state.pending = Vec::new();
        state.finish_after_flush = false;
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Marks the outbox failed after a socket error and wakes the reader.
    fn fail(&self, state: &mut State) -> Delivery {
        self.hang_up(state, LeaveReason::Dropped);
        Delivery::Failed
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Bytes and flags stay consistent even if a holder panicked; carry on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer lock if nobody holds it, without waiting.
    fn try_writer(&self) -> Option<MutexGuard<'_, ()>> {
        match self.writer.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
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
        // tour: send-dontwait
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
/// the hub for at most that long.
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
/// from the socket (only the client's thread reads), writes go through the outbox.
pub(crate) struct ClientStream {
    /// The socket reads come from.
    pub(crate) socket: Arc<TcpStream>,
    /// Where writes go.
    pub(crate) outbox: Arc<Outbox>,
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.socket).read(buf)
    }
}

impl Write for ClientStream {
    /// Takes the whole buffer or fails, so the frames tungstenite writes stay whole.
    /// Blocks until the client has room for it: only this client's thread waits.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tour: client-stream-write
        match self.outbox.write_blocking(buf) {
            Delivery::Accepted | Delivery::Closed => Ok(buf.len()),
            Delivery::CutOff | Delivery::Failed => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the connection was closed by the server",
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    fn pending_len(outbox: &Outbox) -> usize {
        outbox.state().pending.len()
    }

    /// Bytes the kernel could not take at once wait in `pending` and still reach
    /// the client whole and in order, ahead of anything written after them.
    #[test]
    fn a_backlog_drains_in_order_once_the_client_reads() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let outbox = Outbox::new(Arc::new(server), 64 << 20);

        // Numbered records, written while nobody reads, until some are queued.
        let mut expected = Vec::new();
        let mut record = 0u32;
        while pending_len(&outbox) == 0 {
            let bytes = format!("record {record:08}\n").repeat(8).into_bytes();
            assert_eq!(outbox.write(&bytes), Delivery::Accepted);
            expected.extend_from_slice(&bytes);
            record += 1;
            assert!(record < 1_000_000, "the socket never filled up");
        }
        // More after the backlog formed: these must queue behind it.
        for _ in 0..100 {
            let bytes = format!("record {record:08}\n").repeat(8).into_bytes();
            assert_eq!(outbox.write(&bytes), Delivery::Accepted);
            expected.extend_from_slice(&bytes);
            record += 1;
        }

        let total = expected.len();
        // A lost byte must fail the test, not hang it.
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut received = vec![0; total];
            (&client).read_exact(&mut received).map(|()| received)
        });
        while pending_len(&outbox) > 0 {
            assert_eq!(outbox.try_flush(), Delivery::Accepted);
            std::thread::yield_now();
        }
        let received = reader
            .join()
            .unwrap()
            .expect("the client got fewer bytes than were written");
        assert!(
            received == expected,
            "bytes arrived out of order or changed"
        );
        assert_eq!(
            outbox.state().pending.capacity(),
            0,
            "the drained backlog's memory is kept"
        );
    }
}
