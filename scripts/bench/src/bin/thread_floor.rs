//! `thread-floor`: what a thread per client costs before the server does
//! anything at all. The floor under tickcast's memory per client.
//!
//! It opens `--clients` loopback connections inside one process, then starts one
//! thread per connection, as tickcast does: named `ws-<n>`, with a 128 KiB stack,
//! each blocked in `read` on its socket. With `--buffer 0` a thread reads into one
//! byte on its stack and allocates nothing itself; with `--buffer B` it reads
//! into a `B`-byte buffer on the heap, as a WebSocket connection keeps one.
//! After two seconds it prints the growth of the process's RSS per thread
//! (sockets were opened before the first sample, so only the threads count),
//! and ends its threads by closing the other ends.
//!
//! What that floor is made of (glibc 2.36, x86-64): two 4 KiB stack pages (the
//! top one holds glibc's thread descriptor and the static TLS, so the first
//! frame is already on the second), glibc's per-thread malloc cache (640 bytes
//! plus its header), its dynamic TLS vector (336 bytes), std's bookkeeping for
//! the thread (its handle, name, result slot and stack-overflow record), and
//! the small blocks glibc's `pthread_getattr_np` frees at thread start, which
//! stay in the thread's malloc cache.
//!
//! Usage: `thread-floor [--clients 3000] [--buffer 0]`. Only loopback; it ends
//! by itself.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use tickcast_bench::flags::number;

/// The process's resident set, KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn main() -> std::io::Result<()> {
    let clients = number("--clients", 3000);
    let buffer = number("--buffer", 0);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut pairs = Vec::with_capacity(clients);
    for _ in 0..clients {
        let near = TcpStream::connect(addr)?;
        let (far, _) = listener.accept()?;
        pairs.push((near, far));
    }
    let before = rss_kib();
    let mut ends = Vec::with_capacity(clients);
    let mut threads = Vec::with_capacity(clients);
    for (n, (near, mut far)) in pairs.into_iter().enumerate() {
        ends.push(near);
        let thread = std::thread::Builder::new()
            .name(format!("ws-{n}"))
            .stack_size(128 << 10)
            .spawn(move || {
                // The result does not matter: the read ends when the other end
                // closes.
                if buffer == 0 {
                    let mut byte = [0u8; 1];
                    let _ = far.read(&mut byte);
                } else {
                    let mut heap = vec![0u8; buffer];
                    let _ = far.read(&mut heap);
                }
            })?;
        threads.push(thread);
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib();
    println!(
        "{clients} threads blocked in read, buffer {buffer} bytes: {:.2} KiB of RSS per thread",
        (after.saturating_sub(before)) as f64 / clients as f64
    );
    drop(ends);
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}
