//! Presence: welcome, join and leave notices with the right ids, counts and reasons.

use std::net::Shutdown;

use crate::util::{start_with, Client};

fn ids(notice: &serde_json::Value) -> Vec<u64> {
    notice["ids"]
        .as_array()
        .expect("ids is an array")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

fn quiet_server() -> tickcast::Server {
    start_with(|c| c.interval = None)
}

/// The welcome counts the new client; the others hear a join with the new count.
#[test]
fn welcome_and_join_carry_ids_and_counts() {
    let server = quiet_server();
    let mut a = Client::connect(&server);
    let wa = a.welcome();
    assert_eq!(wa["clients"], 1);
    let mut b = Client::connect(&server);
    let wb = b.welcome();
    assert_eq!(wb["clients"], 2);
    assert_ne!(wa["id"], wb["id"]);
    let join = a.next_of_type("join");
    // If a and b joined within one presence window, the notice lists both.
    let a_id = wa["id"].as_u64().unwrap();
    let joined: Vec<u64> = ids(&join).into_iter().filter(|id| *id != a_id).collect();
    assert_eq!(joined, vec![wb["id"].as_u64().unwrap()]);
    assert_eq!(join["clients"], 2);
}

/// A client that closes properly is announced as `closed`.
#[test]
fn clean_close_is_announced_as_closed() {
    let server = quiet_server();
    let mut a = Client::connect(&server);
    a.welcome();
    let mut b = Client::connect(&server);
    let b_id = b.welcome()["id"].as_u64().unwrap();
    a.next_of_type("join");
    b.ws.close(None).unwrap();
    // Finish the close handshake: read until the server's close reply.
    while b.ws.read().is_ok() {}
    let leave = a.next_of_type("leave");
    assert_eq!(ids(&leave), vec![b_id]);
    assert_eq!(leave["clients"], 1);
    assert_eq!(leave["reason"], "closed");
}

/// A client whose TCP connection just ends is announced as `dropped`.
#[test]
fn abrupt_drop_is_announced_as_dropped() {
    let server = quiet_server();
    let mut a = Client::connect(&server);
    a.welcome();
    let mut b = Client::connect(&server);
    let b_id = b.welcome()["id"].as_u64().unwrap();
    a.next_of_type("join");
    b.ws.get_mut().shutdown(Shutdown::Both).unwrap();
    drop(b);
    let leave = a.next_of_type("leave");
    assert_eq!(ids(&leave), vec![b_id]);
    assert_eq!(leave["clients"], 1);
    assert_eq!(leave["reason"], "dropped");
}

/// Many joins and leaves at once are batched into a few notices, and every id is
/// announced exactly once.
#[test]
fn mass_join_and_leave_are_batched() {
    const N: usize = 40;
    let server = quiet_server();
    let mut watcher = Client::connect(&server);
    let me = watcher.welcome()["id"].as_u64().unwrap();
    let mut others: Vec<Client> = (0..N).map(|_| Client::connect(&server)).collect();
    let mut joined = Vec::new();
    let mut notices = 0;
    while joined.len() < N {
        let join = watcher.next_of_type("join");
        // The watcher's own id appears if it shared a window with the first joiners.
        joined.extend(ids(&join).into_iter().filter(|id| *id != me));
        notices += 1;
    }
    assert_eq!(joined.len(), N, "every join announced once");
    assert!(notices < N, "{N} joins took {notices} notices: not batched");

    for c in &mut others {
        c.ws.get_mut().shutdown(Shutdown::Both).unwrap();
    }
    drop(others);
    let mut left = Vec::new();
    let mut notices = 0;
    let mut last_count = None;
    while left.len() < N {
        let leave = watcher.next_of_type("leave");
        left.extend(ids(&leave));
        last_count = leave["clients"].as_u64();
        notices += 1;
    }
    left.sort_unstable();
    joined.sort_unstable();
    assert_eq!(left, joined, "every leaver announced once");
    assert_eq!(last_count, Some(1));
    assert!(notices <= 10, "{N} leaves took {notices} notices");
}
