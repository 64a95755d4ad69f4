//! The hub's memory of recent published events, so that a client that lost its
//! connection for a moment can get what it missed. No thread of its own: the hub
//! thread keeps events here after sending them, and reads them back when a client
//! joins with `?since=` or `Last-Event-ID`.
//!
//! Only published events have ids and are kept (messages and `--stdin` lines);
//! ticks are not, since the latest one supersedes the rest, nor presence notices.
//! The history is bounded twice: by a count (`--history`) and by the bytes of
//! text it holds (`--history-bytes`); the oldest events go first.
//!
//! Ids only grow, so a client's last id says exactly what it missed: every event
//! with a greater id. (On one node they go up by one; in a cluster they may
//! jump.) The history remembers the newest id it let go of, its *floor*: a client
//! whose id is below the floor missed something that is gone, and is told so
//! ([`Resume::Missed`]) instead of being handed a history with a hole in it.

use std::collections::VecDeque;

use super::Broadcast;
use crate::wire::subscription::Topic;

/// One published event, as kept.
pub(super) struct Kept {
    /// Its event id.
    pub(super) id: u64,
    /// The topic it went to, or `None` if it went to everyone.
    pub(super) topic: Option<Topic>,
    /// Its SSE event name (`line`), or `None` for a message.
    pub(super) event: Option<&'static str>,
    /// The message text; encoded again on replay, which is rare, rather than
    /// keeping a second copy as a frame.
    pub(super) text: String,
}

/// What a client resuming after an id gets.
pub(super) enum Resume<'a> {
    /// Everything after its id that it subscribes to, oldest first (often none).
    Replay(Vec<&'a Kept>),
    /// Some of what it missed is no longer kept (or the id is not one this server
    /// gave): the reason, for the `reset` notice.
    Missed(String),
}

/// Recent published events, oldest first.
pub(super) struct History {
    /// The events, oldest first; their ids follow each other.
    events: VecDeque<Kept>,
    /// The bytes of text in `events`.
    bytes: usize,
    /// Keep at most this many events (`--history`).
    max_events: usize,
    /// Keep at most this many bytes of text (`--history-bytes`).
    max_bytes: usize,
    /// The id of the newest event published, kept or not.
    newest: u64,
    /// Events up to this id may be gone: the newest one dropped to stay within
    /// the bounds, or, before any was, the newest published before the hub
    /// started.
    floor: u64,
}

impl History {
    /// An empty history; `newest` is the id just before the first one the
    /// publisher will hand out.
    pub(super) fn new(max_events: usize, max_bytes: usize, newest: u64) -> History {
        History {
            events: VecDeque::new(),
            bytes: 0,
            max_events,
            max_bytes,
            newest,
            floor: newest,
        }
    }

    /// The id of the newest event published.
    pub(super) fn newest(&self) -> u64 {
        self.newest
    }

    /// Keeps the published events of a batch the hub has just sent (broadcasts
    /// without an id, or for one client, are not kept), dropping the oldest
    /// events to stay within both bounds. Returns how many it saw.
    pub(super) fn keep(&mut self, batch: Vec<Broadcast>) -> u64 {
        let mut published = 0;
        for broadcast in batch {
            if let Some(up_to) = broadcast.missed_up_to {
                self.forget_up_to(up_to);
            }
            let Some(id) = broadcast.id.filter(|_| broadcast.to.is_none()) else {
                continue;
            };
            self.newest = id;
            if !broadcast.history_only {
                published += 1;
            }
            self.bytes += broadcast.text.len();
            self.events.push_back(Kept {
                id,
                topic: broadcast.topic,
                event: broadcast.event,
                text: broadcast.text,
            });
            while self.events.len() > self.max_events || self.bytes > self.max_bytes {
                let Some(oldest) = self.events.pop_front() else {
                    break;
                };
                self.bytes -= oldest.text.len();
                self.floor = oldest.id;
            }
        }
        published
    }

    /// Events up to `id` were missed: no client may resume from before it.
    fn forget_up_to(&mut self, id: u64) {
        self.floor = self.floor.max(id);
        self.newest = self.newest.max(id);
        while self.events.front().is_some_and(|e| e.id <= self.floor) {
            if let Some(gone) = self.events.pop_front() {
                self.bytes -= gone.text.len();
            }
        }
    }

    /// What a client that last saw event `since`, and subscribes to `topics`, has
    /// missed.
    pub(super) fn after(&self, since: u64, topics: &[Topic]) -> Resume<'_> {
        if since > self.newest {
            return Resume::Missed(format!(
                "event {since} is newer than any this server has published (it may have \
                 restarted)"
            ));
        }
        if since < self.floor {
            let kept = match self.events.front() {
                Some(oldest) => format!("the oldest kept is {}", oldest.id),
                None => "none are kept".to_string(),
            };
            return Resume::Missed(format!("events after {since} are no longer kept ({kept})"));
        }
        let start = self.events.partition_point(|e| e.id <= since);
        let wanted = |e: &&Kept| e.topic.as_ref().is_none_or(|t| topics.contains(t));
        Resume::Replay(self.events.range(start..).filter(wanted).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(id: u64, topic: Option<&str>, text: &str) -> Broadcast {
        Broadcast {
            id: Some(id),
            topic: topic.map(|t| Topic::new(t).unwrap()),
            ..Broadcast::new(None, text.to_string())
        }
    }

    fn replayed(history: &History, since: u64, topics: &[&str]) -> Vec<u64> {
        let topics: Vec<Topic> = topics.iter().map(|t| Topic::new(t).unwrap()).collect();
        match history.after(since, &topics) {
            Resume::Replay(events) => events.iter().map(|e| e.id).collect(),
            Resume::Missed(why) => panic!("missed after {since}: {why}"),
        }
    }

    #[test]
    fn replays_what_came_after_an_id_for_the_clients_topics() {
        let mut history = History::new(100, 1 << 20, 10);
        history.keep(vec![
            published(11, None, "a"),
            published(12, Some("prices"), "b"),
            published(13, Some("news"), "c"),
            Broadcast::new(Some("tick"), "tick".into()),
            published(14, None, "d"),
        ]);
        assert_eq!(history.newest(), 14);
        assert_eq!(replayed(&history, 10, &["prices"]), [11, 12, 14]);
        assert_eq!(replayed(&history, 12, &["news", "prices"]), [13, 14]);
        assert_eq!(replayed(&history, 13, &[]), [14]);
        assert_eq!(replayed(&history, 14, &[]), Vec::<u64>::new());
    }

    #[test]
    fn a_client_with_nothing_to_catch_up_gets_nothing_even_with_no_history() {
        let history = History::new(0, 0, 41);
        assert_eq!(replayed(&history, 41, &[]), Vec::<u64>::new());
        let mut history = History::new(0, 0, 41);
        history.keep(vec![published(42, None, "x")]);
        assert_eq!(replayed(&history, 42, &[]), Vec::<u64>::new());
        assert!(matches!(history.after(41, &[]), Resume::Missed(_)));
    }

    #[test]
    fn both_bounds_drop_the_oldest_and_an_older_id_is_missed() {
        let mut history = History::new(3, 1 << 20, 0);
        history.keep((1..=5).map(|id| published(id, None, "x")).collect());
        assert_eq!(replayed(&history, 2, &[]), [3, 4, 5]);
        let Resume::Missed(why) = history.after(1, &[]) else {
            panic!("event 2 is gone, yet resuming after 1 replayed")
        };
        assert!(why.contains("oldest kept is 3"), "{why}");

        let mut history = History::new(100, 10, 0);
        history.keep((1..=5).map(|id| published(id, None, "four")).collect());
        assert_eq!(replayed(&history, 3, &[]), [4, 5]);
        assert!(matches!(history.after(2, &[]), Resume::Missed(_)));
    }

    /// In a cluster ids jump (they come from a shared clock); resuming works the
    /// same, by order, and the floor is the newest id dropped.
    #[test]
    fn ids_that_jump_are_replayed_by_order() {
        let mut history = History::new(3, 1 << 20, 100);
        history.keep(
            [105, 230, 231, 900]
                .into_iter()
                .map(|id| published(id, None, "x"))
                .collect(),
        );
        assert_eq!(replayed(&history, 230, &[]), [231, 900]);
        assert_eq!(replayed(&history, 200, &[]), [230, 231, 900]);
        assert_eq!(replayed(&history, 105, &[]), [230, 231, 900]);
        let Resume::Missed(why) = history.after(104, &[]) else {
            panic!("event 105 is gone, yet resuming after 104 replayed")
        };
        assert!(why.contains("oldest kept is 230"), "{why}");
    }

    /// A cluster node that lost Redis for too long missed events up to some id:
    /// a client that saw less must be told, one that saw more is replayed.
    #[test]
    fn missed_events_raise_the_floor() {
        let mut history = History::new(100, 1 << 20, 0);
        history.keep((1..=3).map(|id| published(id, None, "x")).collect());
        let gap = Broadcast {
            missed_up_to: Some(50),
            ..Broadcast::new(Some("reset"), "reset".into())
        };
        history.keep(vec![gap, published(51, None, "y")]);
        assert!(matches!(history.after(3, &[]), Resume::Missed(_)));
        assert_eq!(replayed(&history, 50, &[]), [51]);
        assert_eq!(
            history.events.len(),
            1,
            "the events before the gap are dropped"
        );
    }

    #[test]
    fn an_id_from_the_future_is_missed_not_ignored() {
        let history = History::new(100, 1 << 20, 7);
        let Resume::Missed(why) = history.after(8, &[]) else {
            panic!("an id the server never gave was accepted")
        };
        assert!(why.contains("restarted"), "{why}");
    }

    #[test]
    fn messages_for_one_client_and_unnumbered_broadcasts_are_not_kept() {
        let mut history = History::new(100, 1 << 20, 0);
        history.keep(vec![
            Broadcast::to(3, "private".into()),
            Broadcast::new(None, "raw".into()),
            published(1, None, "kept"),
        ]);
        assert_eq!(history.events.len(), 1);
        assert_eq!(history.bytes, 4);
    }
}
