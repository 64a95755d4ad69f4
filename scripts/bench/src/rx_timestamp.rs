//! Kernel receive timestamps (`SO_TIMESTAMPNS`) on a TCP socket: the two
//! system calls, for loadgen's own client framing ([`crate::client`]), and
//! [`StampedStream`], which gives the same timestamps to a tokio-tungstenite
//! client (pubbench's subscribers).
//!
//! Why: on a 2-core machine the benchmark tools compete with the servers for
//! CPU, so a clock read when the tool gets round to a frame measures the tool
//! as much as the server. The kernel's receive time (CLOCK_REALTIME) of the
//! segment is within microseconds of the server's `send` on loopback. When
//! several frames arrive in one read they share its timestamp (the last
//! segment's), which can only make a frame look later, never earlier.
//!
//! No thread of its own: everything here runs on the caller's task.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::wallclock::now_ns;

/// A TCP stream whose every read notes the kernel's receive timestamp of the
/// bytes it returned. Hand it to `tokio_tungstenite::client_async`; after a
/// frame comes out of the WebSocket, [`StampedStream::new`]'s shared cell holds
/// the timestamp of the read that completed it (tungstenite reads only when no
/// whole frame is buffered, so that read held the frame's last byte).
pub struct StampedStream {
    tcp: TcpStream,
    /// The newest read's kernel timestamp, ns since the Unix epoch (the
    /// caller's clock when the kernel gave none).
    last_rx_ns: Arc<AtomicI64>,
}

impl StampedStream {
    /// Turns on `SO_TIMESTAMPNS` for `tcp`; returns the stream and the cell its
    /// reads write their timestamp into.
    ///
    /// # Errors
    ///
    /// If the socket option cannot be set.
    pub fn new(tcp: TcpStream) -> io::Result<(StampedStream, Arc<AtomicI64>)> {
        enable_rx_timestamps(tcp.as_raw_fd())?;
        let last_rx_ns = Arc::new(AtomicI64::new(0));
        Ok((
            StampedStream {
                tcp,
                last_rx_ns: last_rx_ns.clone(),
            },
            last_rx_ns,
        ))
    }
}

impl AsyncRead for StampedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.tcp.poll_read_ready(cx))?;
            let fd = this.tcp.as_raw_fd();
            let unfilled = buf.initialize_unfilled();
            // try_io clears the readiness on WouldBlock, so the next
            // poll_read_ready waits for new data instead of spinning.
            match this
                .tcp
                .try_io(Interest::READABLE, || recv_with_timestamp(fd, unfilled))
            {
                Ok((n, stamp)) => {
                    buf.advance(n);
                    this.last_rx_ns
                        .store(stamp.unwrap_or_else(now_ns), Ordering::Relaxed);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for StampedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Asks the kernel to timestamp every segment this socket receives.
///
/// # Errors
///
/// If `setsockopt` fails (`fd` is not a socket).
pub fn enable_rx_timestamps(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is an open socket owned by the caller's TcpStream; the option
    // value points at a live c_int and its size is passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One non-blocking `recvmsg`: the bytes, and the `SCM_TIMESTAMPNS` control
/// message if the kernel attached one.
///
/// # Errors
///
/// What `recvmsg` reports, `WouldBlock` included.
pub fn recv_with_timestamp(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<i64>)> {
    // u64 array: correctly aligned for cmsghdr, room for a timespec and more.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `iov` (which points into `buf`) and at `control`,
    // all live for the call, with their true lengths.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ts = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within
    // `msg.msg_controllen`; the timespec is read unaligned from the cmsg's data.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let t: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                ts = Some(t.tv_sec as i64 * 1_000_000_000 + t.tv_nsec as i64);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, ts))
}

/// Which of one socket's frames, in arrival order with their kernel timestamps,
/// were timed late: given the timestamp of a later frame, because they were
/// still unread when it arrived (TCP merges the segments in the receive queue,
/// or one read returns both, and the timestamp is the newest segment's). Such a
/// frame arrived at or before its timestamp; exactly when is not known. Two
/// frames sent apart never get the same nanosecond otherwise.
pub fn timed_late(stamps_ns: &[i64]) -> Vec<bool> {
    (0..stamps_ns.len())
        .map(|i| stamps_ns.get(i + 1) == Some(&stamps_ns[i]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback connection: the stamped client end, its last receive time,
    /// and the server end.
    async fn stamped_pair() -> (StampedStream, Arc<AtomicI64>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (stream, last_rx_ns) = StampedStream::new(client.unwrap()).unwrap();
        (stream, last_rx_ns, server.unwrap().0)
    }

    #[test]
    fn frames_sharing_a_later_timestamp_are_timed_late() {
        let stamps = [1, 2, 2, 3, 3, 3, 4];
        assert_eq!(
            timed_late(&stamps),
            [false, true, false, true, true, false, false]
        );
        assert!(timed_late(&[]).is_empty());
    }

    /// Why `timed_late` exists: a frame still unread when the next one arrives
    /// is read with the next one's timestamp, not its own.
    #[tokio::test]
    async fn an_unread_frame_gets_the_next_frames_timestamp() {
        let (mut stream, last_rx_ns, mut server) = stamped_pair().await;
        server.write_all(b"a").await.unwrap();
        // The second frame leaves well after the first, which nobody reads.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let second_sent = now_ns();
        server.write_all(b"b").await.unwrap();
        let mut got = [0u8; 2];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ab");
        // Both bytes came with one timestamp, the second frame's.
        assert!(last_rx_ns.load(Ordering::Relaxed) >= second_sent);
    }

    #[tokio::test]
    async fn a_read_notes_the_kernel_receive_time() {
        let (mut stream, last_rx_ns, mut server) = stamped_pair().await;
        let before = now_ns();
        server.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        stream.read_exact(&mut got).await.unwrap();
        let at = last_rx_ns.load(Ordering::Relaxed);
        assert_eq!(&got, b"hello");
        assert!(at >= before && at <= now_ns(), "{before} {at}");
    }
}
