//! Faults: Redis missing at startup, Redis lost and back, one node cut off
//! from Redis while the others go on, a node killed, and bad `--redis` values.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tickcast::{Error, Server};
use tungstenite::WebSocket;

use crate::redis::{free_port, Partition, Redis};
use crate::util::Client;
use crate::{
    healthz, metric, next_event, node_config, publish_http, publish_ok, start_node, unique_key,
    wait_for, wait_healthy,
};

/// A node whose Redis is not there yet starts, serves its own clients, answers
/// 503 to publishes and to `/healthz`, and joins the cluster when Redis comes.
#[test]
fn a_node_starts_without_redis_and_joins_when_it_comes() {
    let port = free_port();
    let mut config = node_config(&format!("redis://127.0.0.1:{port}"), &unique_key());
    config.interval = Some(Duration::from_millis(100));
    let node = Server::start(config).expect("starts without Redis");
    assert_eq!(healthz(&node), 503);
    assert_eq!(metric(&node, "tickcast_cluster_up"), 0);
    let mut client = Client::connect(&node);
    client.welcome();
    client.next_of_type("tick");
    assert_eq!(publish_http(&node, "", "x").0, 503);
    assert!(matches!(
        node.publisher().publish(None, "x"),
        Err(Error::ClusterDown)
    ));

    let Some(_redis) = Redis::start_on(port, &[]) else {
        return;
    };
    wait_healthy(&node);
    let id = publish_ok(&node, "now");
    loop {
        let msg = client.next_json();
        if msg["type"] == "message" {
            assert_eq!(msg["id"].as_u64(), Some(id));
            break;
        }
    }
}

/// Redis killed under two nodes: their clients keep connections and ticks,
/// publishes fail loudly, joins are announced locally; Redis back (empty): both
/// nodes rejoin by themselves and a publish reaches both again.
#[test]
fn redis_lost_and_back() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let key = unique_key();
    let ticking = || {
        let mut config = node_config(&redis.url(), &key);
        config.interval = Some(Duration::from_millis(100));
        config
    };
    let nodes = [start_node(ticking()), start_node(ticking())];
    let mut clients: Vec<Client> = nodes.iter().map(Client::connect).collect();
    for client in &mut clients {
        client.welcome();
    }
    redis.kill();
    for node in &nodes {
        wait_for("/healthz to say 503", Duration::from_secs(5), || {
            healthz(node) == 503
        });
        assert_eq!(metric(node, "tickcast_cluster_up"), 0);
        assert_eq!(publish_http(node, "", "lost").0, 503);
        assert!(matches!(
            node.publisher().publish(None, "lost"),
            Err(Error::ClusterDown)
        ));
    }
    for client in &mut clients {
        client.next_of_type("tick");
        client.next_of_type("tick");
    }
    // A join during the outage is announced on its own node.
    let mut newcomer = Client::connect(&nodes[0]);
    let newcomer_id = newcomer.welcome()["id"].clone();
    let join = clients[0].next_of_type("join");
    assert_eq!(join["ids"], serde_json::json!([newcomer_id]));

    redis.restart();
    for node in &nodes {
        wait_healthy(node);
    }
    let id = publish_ok(&nodes[0], "back");
    for client in clients.iter_mut().chain([&mut newcomer]) {
        let msg = client.next_of_type("message");
        assert_eq!(msg["id"].as_u64(), Some(id));
    }
    for node in &nodes {
        assert!(metric(node, "tickcast_cluster_reconnects_total") >= 1);
        assert!(metric(node, "tickcast_cluster_appends_failed_total") >= 2);
    }
}

/// Two nodes, one of them behind a relay the test cuts.
struct Split {
    _redis: Redis,
    partition: Partition,
    cut_off: Server,
    other: Server,
}

fn split(history: usize) -> Option<Split> {
    let redis = Redis::start()?;
    let partition = Partition::new(redis.addr());
    let key = unique_key();
    let mut config = node_config(&partition.url(), &key);
    config.history = history;
    let cut_off = start_node(config);
    let mut config = node_config(&redis.url(), &key);
    config.history = history;
    let other = start_node(config);
    Some(Split {
        _redis: redis,
        partition,
        cut_off,
        other,
    })
}

impl Split {
    /// A client of the node about to be cut off, which has seen one event (its
    /// id is returned); then the cut, seen by that node.
    fn cut_with_a_client(&self) -> (Client, u64) {
        let mut client = Client::connect(&self.cut_off);
        client.welcome();
        let before = publish_ok(&self.other, "before");
        assert_eq!(next_event(&mut client)["id"].as_u64(), Some(before));
        self.partition.cut();
        wait_for(
            "the cut-off node to say 503",
            Duration::from_secs(5),
            || healthz(&self.cut_off) == 503,
        );
        (client, before)
    }
}

/// A node cut off from Redis while another goes on publishing: once back, it
/// reads on from its last entry, and its clients get what was appended
/// meanwhile, once, in order.
#[test]
fn a_node_cut_off_from_redis_catches_up_on_what_others_appended() {
    let Some(split) = split(1000) else { return };
    let (mut client, _) = split.cut_with_a_client();
    let meanwhile: Vec<u64> = (0..20)
        .map(|i| publish_ok(&split.other, &format!("m{i}")))
        .collect();
    split.partition.heal();
    wait_healthy(&split.cut_off);
    let got: Vec<u64> = (0..20)
        .map(|_| next_event(&mut client)["id"].as_u64().unwrap())
        .collect();
    assert_eq!(got, meanwhile);
    let live = publish_ok(&split.cut_off, "live");
    assert_eq!(
        next_event(&mut client)["id"].as_u64(),
        Some(live),
        "no duplicate before it"
    );
}

/// Cut off while more was appended than the stream keeps: the node's clients
/// are told exactly where the gap is (a `reset`), then get what follows it.
#[test]
fn a_node_cut_off_longer_than_the_stream_keeps_tells_its_clients() {
    let Some(split) = split(10) else { return };
    let (mut client, before) = split.cut_with_a_client();
    // The stream keeps about 1000 entries (MAXLEN ~): 3000 overflow it.
    let publisher = split.other.publisher();
    let ids: Vec<u64> = (0..3000)
        .map(|i| publisher.publish(None, &i.to_string()).unwrap())
        .collect();
    split.partition.heal();
    wait_healthy(&split.cut_off);

    let reset = next_event(&mut client);
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(reset["since"].as_u64(), Some(before));
    let resumed_after = reset["last_id"].as_u64().unwrap();
    let first_kept = ids.iter().position(|&id| id > resumed_after).unwrap();
    assert!(first_kept > 0, "some events were trimmed");
    for &id in &ids[first_kept..] {
        assert_eq!(next_event(&mut client)["id"].as_u64(), Some(id));
    }
    // A client resuming from before the gap is told too.
    let mut late = Client::connect_path(&split.cut_off, &format!("/echo?since={before}"));
    late.welcome();
    assert_eq!(next_event(&mut late)["type"], "reset");
}

/// The `tickcast` binary of this build, as a child with its log piped.
fn binary(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tickcast")
}

/// A node as a separate process (so that it can be killed), in the cluster.
struct NodeProcess {
    child: Child,
    ws_port: u16,
}

impl NodeProcess {
    /// Starts the binary on free ports, without ticks, on the cluster `key` of
    /// the Redis at `url`, and waits until it is in the cluster.
    fn start(url: &str, key: &str) -> NodeProcess {
        let (ws_port, http_port) = (free_port(), free_port());
        let child = binary(&[
            "--ws-addr",
            &format!("127.0.0.1:{ws_port}"),
            "--http-addr",
            &format!("127.0.0.1:{http_port}"),
            "--interval",
            "off",
            "--redis",
            url,
            "--redis-key",
            key,
        ]);
        let http = format!("127.0.0.1:{http_port}").parse().unwrap();
        wait_for(
            "the node to be in the cluster",
            Duration::from_secs(10),
            || crate::util::http_get_maybe(http, "/healthz") == Some(200),
        );
        NodeProcess { child, ws_port }
    }

    /// A WebSocket client of it, and its welcome.
    fn connect(&self) -> (WebSocket<TcpStream>, serde_json::Value) {
        let stream = crate::util::tcp(format!("127.0.0.1:{}", self.ws_port).parse().unwrap());
        let url = format!("ws://127.0.0.1:{}/echo", self.ws_port);
        let (mut ws, _) = tungstenite::client::client(url.as_str(), stream).unwrap();
        let welcome = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
        (ws, welcome)
    }
}

/// Kills a node with SIGKILL: no goodbye to Redis. Its clients are gone with
/// it; the other nodes stop counting them within the documented 6 s, and go on.
#[test]
fn a_killed_node_stops_being_counted_and_the_others_go_on() {
    let Some(redis) = Redis::start() else { return };
    let key = unique_key();
    let survivor = start_node(node_config(&redis.url(), &key));
    let mut doomed = NodeProcess::start(&redis.url(), &key);
    let _gone: Vec<_> = (0..3).map(|_| doomed.connect()).collect();
    let mut staying = Client::connect(&survivor);
    staying.welcome();
    wait_for(
        "the survivor to count 4 clients",
        Duration::from_secs(5),
        || metric(&survivor, "tickcast_cluster_clients") == 4,
    );
    assert_eq!(metric(&survivor, "tickcast_cluster_nodes"), 2);

    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    let killed = Instant::now();
    wait_for(
        "the survivor to stop counting them",
        Duration::from_secs(10),
        || metric(&survivor, "tickcast_cluster_clients") == 1,
    );
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(7),
        "counted out after {took:?}; the bound is 6 s"
    );
    assert_eq!(metric(&survivor, "tickcast_cluster_nodes"), 1);
    let id = publish_ok(&survivor, "on we go");
    assert_eq!(next_event(&mut staying)["id"].as_u64(), Some(id));
}

/// SIGTERM on a node: its clients get 1001, the other nodes announce that they
/// left (reason `shutdown`) and stop counting it at once (not after the key
/// expires), and it exits 0 with no error in its log.
#[test]
fn a_node_stopped_with_sigterm_leaves_the_cluster_cleanly() {
    let Some(redis) = Redis::start() else { return };
    let key = unique_key();
    let survivor = start_node(node_config(&redis.url(), &key));
    let mut node = NodeProcess::start(&redis.url(), &key);
    let (mut ws, welcome) = node.connect();
    let leaving = welcome["id"].clone();
    let mut watcher = Client::connect(&survivor);
    watcher.welcome();
    wait_for(
        "the survivor to count both clients",
        Duration::from_secs(5),
        || metric(&survivor, "tickcast_cluster_clients") == 2,
    );
    let term = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let code = loop {
        match ws.read().expect("a close frame") {
            tungstenite::Message::Close(frame) => break frame.map(|f| u16::from(f.code)),
            _ => continue,
        }
    };
    assert_eq!(code, Some(1001));
    while ws.read().is_ok() {}
    let left = Instant::now();
    let status = node.child.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut node.child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.success(), "{status}: {log}");
    assert!(!log.contains("ERROR"), "{log}");
    let leave = watcher.next_of_type("leave");
    assert_eq!(leave["ids"], serde_json::json!([leaving]), "{leave}");
    assert_eq!(leave["reason"], "shutdown");
    assert_eq!(leave["clients"], 1);
    wait_for(
        "the survivor to stop counting it",
        Duration::from_secs(3),
        || metric(&survivor, "tickcast_cluster_nodes") == 1,
    );
    assert!(
        left.elapsed() < Duration::from_secs(3),
        "not the 5 s expiry"
    );
}

/// A client that resumes on a node with an id that node has not read yet (it
/// was published on another node a moment ago, and this one is cut off for a
/// moment) waits for the node to catch up, and gets the event: no `reset`.
#[test]
fn a_resume_with_an_id_the_node_has_not_read_yet_waits_for_it() {
    let Some(split) = split(1000) else { return };
    split.partition.cut();
    wait_for(
        "the cut-off node to say 503",
        Duration::from_secs(5),
        || healthz(&split.cut_off) == 503,
    );
    let before = publish_ok(&split.other, "seen elsewhere");
    let missed = publish_ok(&split.other, "missed");
    let node = &split.cut_off;
    thread::scope(|s| {
        let resuming = s.spawn(|| {
            let mut client = Client::connect_path(node, &format!("/echo?since={before}"));
            client.welcome();
            next_event(&mut client)
        });
        split.partition.heal();
        let first = resuming.join().unwrap();
        assert_eq!(first["id"].as_u64(), Some(missed), "{first}");
    });
}

/// Runs the binary with `args`, which must make it exit 2 at once with one
/// line on stderr that contains `says`.
fn refuses(args: &[&str], says: &str) {
    let mut child = binary(args);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("tickcast {args:?} did not exit");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let last = stderr.lines().last().unwrap_or("");
    assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        last.starts_with("tickcast: ") && last.contains(says),
        "{args:?}: {stderr}"
    );
}

/// A bad URL, a wrong or missing password, or a peer that is not a Redis: a
/// clear one-line error, exit status 2.
#[test]
fn bad_redis_values_get_a_clear_error() {
    let ports = ["--ws-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"];
    let with = |extra: &[&str]| -> Vec<String> {
        ports.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |extra: &[&str], says: &str| {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refuses(&args, says);
    };
    run(&["--redis", "localhost:6379"], "is not a redis:// URL");
    run(&["--redis", "redis://h:0"], "is not HOST or HOST:PORT");
    run(
        &["--redis", "redis://127.0.0.1", "--redis-key", ""],
        "--redis-key",
    );

    let Some(redis) = Redis::start_with(&["--requirepass", "s3cret"]) else {
        return;
    };
    let port = redis.addr().port();
    run(
        &["--redis", &format!("redis://127.0.0.1:{port}")],
        "wants a password",
    );
    run(
        &["--redis", &format!("redis://:wrong@127.0.0.1:{port}")],
        "refused the password",
    );

    // Something that answers, but not in RESP.
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let not_redis = http.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in http.incoming().flatten() {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    run(
        &["--redis", &format!("redis://{not_redis}")],
        "does not answer like a Redis",
    );
}

/// Sends one command to Redis in RESP and returns its reply, as text.
fn redis_command(redis: &Redis, args: &[&str]) -> String {
    let mut stream = crate::util::tcp(redis.addr());
    let mut command = format!("*{}\r\n", args.len());
    for arg in args {
        command.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(command.as_bytes()).unwrap();
    // A bulk reply (`$N`) is two lines, which may come in two reads.
    let mut reply = Vec::new();
    let complete = |r: &[u8]| {
        let lines = r.windows(2).filter(|w| w == b"\r\n").count();
        r.ends_with(b"\r\n") && (lines >= 2 || !r.starts_with(b"$"))
    };
    while !complete(&reply) {
        let mut chunk = [0u8; 256];
        let n = std::io::Read::read(&mut stream, &mut chunk).unwrap();
        assert!(n > 0, "Redis closed the connection");
        reply.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// An entry of a kind this node does not know (as a newer tickcast in the same
/// cluster might write) is skipped and counted, and the entry after it, which
/// names it as `prev`, is no gap: no `reset`.
#[test]
fn an_entry_of_an_unknown_kind_is_skipped_without_a_reset() {
    let Some(redis) = Redis::start() else { return };
    let key = unique_key();
    let node = start_node(node_config(&redis.url(), &key));
    let mut client = Client::connect(&node);
    client.welcome();
    let before = publish_ok(&node, "before");
    assert_eq!(next_event(&mut client)["id"].as_u64(), Some(before));
    // The client's own join notice goes through the stream too: once both are
    // read, nothing else is appended until this test does.
    wait_for(
        "the node to read its two entries",
        Duration::from_secs(5),
        || metric(&node, "tickcast_cluster_events_read_total") == 2,
    );
    let last_key = format!("{key}:last");
    let reply = redis_command(&redis, &["GET", &last_key]);
    let last: u64 = reply
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("GET {last_key}: {reply:?}"));
    // What the append script would write for a kind from the future.
    let id = last + 1;
    let stream_id = format!("{}-{}", id / 1000, id % 1000);
    let added = redis_command(
        &redis,
        &[
            "XADD",
            &format!("{key}:events"),
            &stream_id,
            "prev",
            &last.to_string(),
            "node",
            "1",
            "k",
            "hologram",
        ],
    );
    assert!(added.contains(&stream_id), "{added}");
    assert_eq!(
        redis_command(&redis, &["SET", &last_key, &id.to_string()]),
        "+OK\r\n"
    );
    let after = publish_ok(&node, "after");
    let next = next_event(&mut client);
    assert_eq!(next["id"].as_u64(), Some(after), "{next}");
    assert_eq!(metric(&node, "tickcast_cluster_entries_invalid_total"), 1);
}
