//! `sendcost`: the physical floor under a broadcast. Measures what one small
//! `send` on a loopback TCP socket costs the sending thread, which is what a
//! fan-out to N clients pays N times, whatever the server's design.
//!
//! It opens `--clients` loopback connections inside one process, then times
//! rounds of "one `--bytes`-byte send to every connection" from one thread, or
//! from `--threads` threads each owning a share of the connections. Between rounds
//! (untimed) the receiving ends are drained. Two cases:
//!
//! - `cold`: nobody is waiting on the receiving sockets, so a send only queues
//!   data (TCP transmit and receive processing, no wakeup);
//! - `epoll`: a reader thread waits in `epoll_wait` on all receiving sockets, so
//!   each send also wakes it, as a real client would be woken.
//!
//! Usage: `sendcost [--clients 10000] [--rounds 10] [--bytes 60] [--threads 1]`.
//! Only loopback addresses are used; the tool ends after its rounds.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickcast_bench::flags::number;

fn main() -> std::io::Result<()> {
    let clients = number("--clients", 10_000);
    let rounds = number("--rounds", 10).max(1);
    let bytes = number("--bytes", 60);
    let threads = number("--threads", 1).max(1);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut senders = Vec::with_capacity(clients);
    let mut receivers = Vec::with_capacity(clients);
    for _ in 0..clients {
        let receiver = TcpStream::connect(addr)?;
        let (sender, _) = listener.accept()?;
        sender.set_nodelay(true)?;
        receiver.set_nonblocking(true)?;
        senders.push(sender);
        receivers.push(receiver);
    }
    let payload = vec![b'x'; bytes];
    println!("sendcost: {clients} loopback connections, {bytes}-byte sends, {threads} sending thread(s), {rounds} rounds");
    for case in ["cold", "epoll"] {
        let stop = Arc::new(AtomicBool::new(false));
        let reader = (case == "epoll").then(|| spawn_epoll_reader(&receivers, stop.clone()));
        let mut per_send = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            std::thread::scope(|s| {
                for chunk in senders.chunks(clients.div_ceil(threads)) {
                    let payload = &payload;
                    s.spawn(move || {
                        for mut sender in chunk {
                            sender.write_all(payload).expect("loopback send");
                        }
                    });
                }
            });
            let elapsed = started.elapsed();
            per_send.push(elapsed.as_secs_f64() * 1e6 / clients as f64);
            // Untimed: let the reader catch up, then drain whatever is left.
            std::thread::sleep(Duration::from_millis(50));
            drain(&receivers);
        }
        stop.store(true, Ordering::Relaxed);
        if let Some(reader) = reader {
            // One more byte wakes the reader so it sees `stop`.
            let _ = (&senders[0]).write_all(b"x");
            let _ = reader.join();
        }
        per_send.sort_by(f64::total_cmp);
        let median = per_send[per_send.len() / 2];
        println!(
            "sendcost: {case:>5}: median {median:.2} µs per send (wall, whole round / clients) → {:.1} ms per broadcast to {clients}",
            median * clients as f64 / 1e3
        );
    }
    Ok(())
}

fn drain(receivers: &[TcpStream]) {
    let mut sink = [0u8; 4096];
    for mut r in receivers {
        while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
    }
}

/// A thread blocked in epoll_wait on every receiving socket, reading what arrives.
fn spawn_epoll_reader(
    receivers: &[TcpStream],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let fds: Vec<i32> = receivers.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: epoll_create1 has no pointer arguments.
    let ep = unsafe { libc::epoll_create1(0) };
    assert!(ep >= 0, "epoll_create1 failed");
    for &fd in &fds {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: `ev` is a live epoll_event; `fd` is an open socket we own for
        // the thread's lifetime (the caller joins the thread before dropping them).
        let rc = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        assert_eq!(rc, 0, "epoll_ctl failed");
    }
    std::thread::spawn(move || {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut sink = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: `events` has room for the count we pass.
            let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 100) };
            for ev in events.iter().take(n.max(0) as usize) {
                let fd = ev.u64 as i32;
                // SAFETY: `sink` is a live buffer of the length passed; `fd` is open.
                while unsafe {
                    libc::recv(fd, sink.as_mut_ptr().cast(), sink.len(), libc::MSG_DONTWAIT)
                } > 0
                {}
            }
        }
        // SAFETY: `ep` is our epoll fd, closed once.
        unsafe { libc::close(ep) };
    })
}
