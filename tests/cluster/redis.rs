//! A real `redis-server` for the cluster tests: started on a free port, in its
//! own temporary directory, with no persistence; stopped (killed) by its PID.
//! And [`Partition`], a TCP relay between a node and Redis that a test can cut,
//! to take one node off the network while the others stay on it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Debian's package (and most distributions') install it here, or on the PATH.
const REDIS_SERVER: &str = "redis-server";

/// Tells apart the temporary directories of servers started by one test binary.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// A running `redis-server`.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

impl Redis {
    /// Starts one, or returns `None` (and says why) when `redis-server` is not
    /// installed and this is not CI. In CI (`CI=true`) a missing server fails.
    pub fn start() -> Option<Redis> {
        Redis::start_with(&[])
    }

    /// As [`Redis::start`], with extra arguments (e.g. `--requirepass`).
    pub fn start_with(extra: &[&str]) -> Option<Redis> {
        Redis::start_on(free_port(), extra)
    }

    /// As [`Redis::start_with`], on `port`.
    pub fn start_on(port: u16, extra: &[&str]) -> Option<Redis> {
        if Command::new(REDIS_SERVER)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            let how = "install it with `sudo apt-get install redis-server` (Debian/Ubuntu)";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("redis-server is not installed, and CI needs the cluster tests: {how}");
            }
            eprintln!("SKIPPED: redis-server is not installed; {how} to run the cluster tests");
            return None;
        }
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tickcast-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Redis {
            child: None,
            port,
            dir,
            args: extra.iter().map(|a| a.to_string()).collect(),
        };
        redis.run();
        Some(redis)
    }

    fn run(&mut self) {
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        // Ready when it answers PING.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(self.addr()) {
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut reply = [0; 64];
                if s.write_all(b"PING\r\n").is_ok() {
                    if let Ok(n) = s.read(&mut reply) {
                        // +PONG, or -NOAUTH with a password: either way it runs.
                        if n > 0 {
                            return;
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL, by PID): its data is gone, as with a crash of a Redis
    /// that keeps nothing on disk.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A relay between nodes and Redis that can be cut and healed: while cut, it
/// hangs up on every connection through it and on every new one.
pub struct Partition {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Partition {
    pub fn new(redis: SocketAddr) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, o, s) = (cut.clone(), open.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                if c.load(Ordering::Relaxed) {
                    continue; // dropped: hung up on
                }
                let Ok(server) = TcpStream::connect(redis) else {
                    continue;
                };
                let mut open = o.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                relay(client.try_clone().unwrap(), server.try_clone().unwrap());
                relay(server, client);
            }
        });
        Partition {
            addr,
            cut,
            open,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Takes the nodes behind it off the network.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}
