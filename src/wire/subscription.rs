//! What a client listens to, as its URL asks: the topics it subscribes to
//! (`?topic=prices&topic=news`) and where it resumes (`?since=42`, or the SSE
//! `Last-Event-ID` header). No threads, no I/O.
//!
//! A topic name is 1 to 64 characters from `A-Z a-z 0-9 _ - . :`, e.g. `prices`,
//! `room:42`, `eu.orders`. The set is small on purpose: a name then needs no
//! escaping in JSON or in a log line.

use std::fmt;
use std::sync::Arc;

/// The rule, as the `400` answers and the docs state it.
pub(crate) const RULE: &str =
    "a topic is 1 to 64 characters from A-Z a-z 0-9 _ - . : (e.g. prices, room:42)";

/// The longest topic name.
const MAX_LEN: usize = 64;

/// The most topics one client may subscribe to.
pub(crate) const MAX_PER_CLIENT: usize = 16;

/// What a client asked for in its request's URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// The topics it subscribes to, besides what goes to everyone; each checked,
    /// without repeats, at most [`MAX_PER_CLIENT`].
    pub(crate) topics: Vec<Topic>,
    /// The id of the last event it saw (`?since=`), to resume after it.
    pub(crate) since: Option<u64>,
}

impl Subscription {
    /// Reads `?topic=` (repeatable) and `?since=` from a request target.
    ///
    /// # Errors
    ///
    /// A message for the `400` answer: which value breaks which rule.
    pub(crate) fn from_target(target: &str) -> Result<Subscription, String> {
        let names = crate::wire::http::query_values(target, "topic")?;
        let mut topics: Vec<Topic> = Vec::new();
        for name in names {
            let topic = Topic::new(&name)?;
            if !topics.contains(&topic) {
                topics.push(topic);
            }
        }
        if topics.len() > MAX_PER_CLIENT {
            return Err(format!(
                "{} topics asked for; a client may subscribe to at most {MAX_PER_CLIENT}",
                topics.len()
            ));
        }
        let since = match crate::wire::http::query_values(target, "since")?.as_slice() {
            [] => None,
            [one] => Some(parse_id("since=", one)?),
            _ => return Err("since= given more than once".to_string()),
        };
        Ok(Subscription { topics, since })
    }
}

/// A topic name that follows the rule. Cheap to clone: the hub keeps one per
/// subscription and per published event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Topic(Arc<str>);

impl Topic {
    /// Checks `name` against the rule.
    ///
    /// # Errors
    ///
    /// A message naming the rule and the offending name.
    pub(crate) fn new(name: &str) -> Result<Topic, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
        if name.is_empty() || name.len() > MAX_LEN || !name.chars().all(allowed) {
            return Err(format!(
                "bad topic {:?}: {RULE}",
                name.escape_debug().to_string()
            ));
        }
        Ok(Topic(name.into()))
    }

    /// The name.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event id as a client sends it back in `source` (`since=`, `Last-Event-ID`).
///
/// # Errors
///
/// A message for the `400` answer, naming `source`.
pub(crate) fn parse_id(source: &str, text: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "{source} {:?} is not an event id (a whole number, as the server sent it)",
            text.escape_debug().to_string()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_read_from_the_url() {
        let sub =
            Subscription::from_target("/echo?topic=prices&since=41&topic=room%3A42&topic=prices");
        let names: Vec<&str> = sub
            .as_ref()
            .unwrap()
            .topics
            .iter()
            .map(Topic::as_str)
            .collect();
        assert_eq!(names, ["prices", "room:42"]);
        assert_eq!(sub.unwrap().since, Some(41));
        assert_eq!(
            Subscription::from_target("/echo"),
            Ok(Subscription::default())
        );
        for bad in [
            "/e?topic=a%20b",
            "/e?since=x",
            "/e?since=1&since=2",
            "/e?topic=",
        ] {
            assert!(Subscription::from_target(bad).is_err(), "{bad}");
        }
        let many: String = (0..=MAX_PER_CLIENT)
            .map(|i| format!("topic=t{i}&"))
            .collect();
        assert!(Subscription::from_target(&format!("/e?{many}")).is_err());
    }

    #[test]
    fn names_follow_the_rule() {
        for good in [
            "prices",
            "room:42",
            "eu.orders",
            "a",
            "A-Z_0.9:x",
            &"x".repeat(64),
        ] {
            assert_eq!(
                Topic::new(good).map(|t| t.as_str().to_string()),
                Ok(good.to_string())
            );
        }
        for bad in [
            "",
            "has space",
            "slash/no",
            "é",
            "a%20b",
            "q?x",
            &"x".repeat(65),
        ] {
            let err = Topic::new(bad).unwrap_err();
            assert!(err.contains("1 to 64 characters"), "{bad}: {err}");
        }
    }
}
