//! Tests of the registry through its crate API: panics, eviction, SSE streams
//! counted as clients, and waking every thread at shutdown.

use super::*;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Instant;

/// How long a test waits for something that should happen at once.
const WAIT: Duration = Duration::from_secs(5);

/// The client stack size the server uses.
const STACK: usize = 128 << 10;

fn registry() -> (Arc<Registry>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    (Arc::new(Registry::new(metrics.clone())), metrics)
}

/// Starts a registered thread that answers every ping with a pong until its
/// channel closes: proof that it is still running.
fn steady(registry: &Arc<Registry>) -> (mpsc::Sender<()>, mpsc::Receiver<()>) {
    let (ping_tx, ping_rx) = mpsc::channel::<()>();
    let (pong_tx, pong_rx) = mpsc::channel();
    registry
        .spawn("steady", Kind::WebSocket, None, STACK, move |_| {
            for () in ping_rx {
                pong_tx.send(()).unwrap();
            }
        })
        .unwrap();
    (ping_tx, pong_rx)
}

/// Waits (bounded) for the registry to hold `n` clients. A thread removes its
/// entry as the last step of its unwinding, after anything it could signal
/// from, so this has to poll.
fn wait_clients(registry: &Registry, n: usize) {
    let deadline = Instant::now() + WAIT;
    while registry.clients() != n {
        assert!(
            Instant::now() < deadline,
            "registry holds {} clients, expected {n}",
            registry.clients()
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// A loopback connection: (server side, client side).
fn connection() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server_side, _) = listener.accept().unwrap();
    (server_side, client)
}

/// A connection thread that panics, on the real client stack size, still
/// removes its entry: the registry empties and `wait_no_clients` returns.
#[test]
fn panicking_thread_leaves_the_registry() {
    let (registry, metrics) = registry();
    registry
        .spawn("ws", Kind::WebSocket, None, STACK, |_| {
            panic!("a bug in one connection (expected by this test)")
        })
        .unwrap();
    assert!(
        registry.wait_no_clients(WAIT),
        "the panicked thread stayed registered"
    );
    assert_eq!(registry.clients(), 0);
    assert_eq!(metrics.connections.load(Ordering::Relaxed), 0);
}

/// A panic in one connection thread neither stops the others nor keeps
/// shutdown waiting: the survivor still answers, and once it ends the
/// registry is empty.
#[test]
fn other_threads_keep_running_after_a_panic() {
    let (registry, metrics) = registry();
    let (ping_tx, pong_rx) = steady(&registry);
    let (panicking_tx, panicking_rx) = mpsc::channel::<()>();
    registry
        .spawn("ws", Kind::WebSocket, None, STACK, move |_| {
            // Panic only once the steady thread is known to be registered too.
            panicking_rx.recv().unwrap();
            panic!("a bug in one connection (expected by this test)");
        })
        .unwrap();
    assert_eq!(registry.clients(), 2);
    panicking_tx.send(()).unwrap();
    wait_clients(&registry, 1);
    assert_eq!(metrics.connections.load(Ordering::Relaxed), 1);

    // The survivor still runs, and keeps shutdown waiting for it.
    ping_tx.send(()).unwrap();
    pong_rx
        .recv_timeout(WAIT)
        .expect("the steady thread answers");
    assert!(!registry.wait_no_clients(Duration::from_millis(20)));

    // Once it ends, the registry is empty and shutdown's joins return.
    drop(ping_tx);
    assert!(
        registry.wait_no_clients(WAIT),
        "the steady thread stayed registered"
    );
    assert_eq!(metrics.connections.load(Ordering::Relaxed), 0);
    registry.abort_all_and_join();
}

/// `abort_all_and_join` wakes a thread blocked reading its socket, and returns
/// even though that thread then panics.
#[test]
fn abort_all_and_join_survives_a_panicked_thread() {
    use std::io::Read;
    let (registry, _) = registry();
    let (server_side, client) = connection();
    // Bounds the test if the shutdown never comes: the read then times out.
    server_side.set_read_timeout(Some(WAIT)).unwrap();
    let socket = Arc::new(server_side);
    let (read_tx, read_rx) = mpsc::channel();
    let reader = socket.clone();
    registry
        .spawn("ws", Kind::WebSocket, Some(socket), STACK, move |_| {
            let read = (&*reader).read(&mut [0u8; 16]).map_err(|e| e.kind());
            read_tx.send(read).unwrap();
            panic!("woken from read (expected by this test)");
        })
        .unwrap();
    registry.abort_all_and_join();
    // Woken by the shutdown (end of stream), not by the read timeout.
    assert_eq!(read_rx.try_recv(), Ok(Ok(0)));
    assert!(registry.wait_no_clients(Duration::ZERO));
    drop(client);
}

/// Eviction picks the HTTP connection idle the longest, never a busy one or a
/// client, and wakes its thread.
#[test]
fn eviction_takes_the_oldest_idle_http_connection() {
    use std::io::Read;
    let (registry, metrics) = registry();
    let mut clients = Vec::new();
    let mut reads = Vec::new();
    let mut conns = Vec::new();
    for kind in [Kind::WebSocket, Kind::Http, Kind::Http, Kind::Http] {
        let (server_side, client) = connection();
        server_side.set_read_timeout(Some(WAIT)).unwrap();
        clients.push(client);
        let socket = Arc::new(server_side);
        let reader = socket.clone();
        let (read_tx, read_rx) = mpsc::channel();
        let (conn_tx, conn_rx) = mpsc::channel();
        registry
            .spawn("t", kind, Some(socket), STACK, move |conn| {
                conn_tx.send(conn).unwrap();
                let read = (&*reader).read(&mut [0u8; 16]).map_err(|e| e.kind());
                read_tx.send(read).unwrap();
            })
            .unwrap();
        conns.push(conn_rx.recv_timeout(WAIT).unwrap());
        reads.push(read_rx);
    }
    assert_eq!(metrics.http_connections.load(Ordering::Relaxed), 3);
    // The first HTTP connection is busy; the second and third are idle.
    assert!(registry.set_idle(conns[1], false));
    assert!(registry.set_idle(conns[2], true));
    assert!(registry.set_idle(conns[3], true));
    assert!(registry.evict_idle_http());
    assert_eq!(
        reads[2].recv_timeout(WAIT),
        Ok(Ok(0)),
        "the oldest idle one"
    );
    assert!(
        !registry.set_idle(conns[2], false),
        "it knows it was evicted"
    );
    assert!(reads[1].try_recv().is_err(), "the busy one stays");
    assert!(registry.evict_idle_http());
    assert_eq!(reads[3].recv_timeout(WAIT), Ok(Ok(0)));
    assert!(!registry.evict_idle_http(), "nothing idle is left");
    assert!(reads[0].try_recv().is_err(), "a client is never evicted");
    registry.abort_all_and_join();
}

/// An HTTP connection that becomes an SSE stream moves from the HTTP count to
/// the client count, only while there is room.
#[test]
fn event_streams_count_as_clients() {
    let (registry, _) = registry();
    let (conn_tx, conn_rx) = mpsc::channel();
    // Both threads wait until `done_tx` is dropped.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let hold = Arc::new(Mutex::new(done_rx));
    let mut conns = Vec::new();
    for _ in 0..2 {
        let (conn_tx, hold) = (conn_tx.clone(), hold.clone());
        registry
            .spawn("http", Kind::Http, None, STACK, move |conn| {
                conn_tx.send(conn).unwrap();
                let _ = hold.lock().unwrap().recv();
            })
            .unwrap();
        conns.push(conn_rx.recv_timeout(WAIT).unwrap());
    }
    assert_eq!((registry.clients(), registry.http()), (0, 2));
    assert!(registry.become_client(conns[0], 1));
    assert_eq!((registry.clients(), registry.http()), (1, 1));
    assert!(!registry.become_client(conns[1], 1), "no room for a second");
    assert_eq!((registry.clients(), registry.http()), (1, 1));
    drop(done_tx);
    registry.abort_all_and_join();
    assert_eq!((registry.clients(), registry.http()), (0, 0));
}
