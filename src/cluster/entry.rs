//! A [`Publication`] as the fields of a stream entry, and back; and how a
//! stream entry's id is an event id. No thread of its own.
//!
//! ```text
//! XADD tickcast:events … 1795869660244-599  prev 1795869660244598  node 5  k message  topic prices  data {"p":1}
//!                         └── event id 1795869660244599: milliseconds × 1000 + sequence
//! ```
//!
//! Every entry names the id of the entry before it (`prev`), so a node that reads
//! an entry whose `prev` is not the last one it read knows that it missed
//! something (the stream was trimmed while it was cut off) and exactly up to where.

use crate::hub::Publication;
use crate::wire::message::{ClientId, LeaveReason};
use crate::wire::subscription::Topic;

/// Event id `id` as a stream entry id: `ms-seq`, with `seq` below 1000 (the
/// append script makes sure of it).
#[cfg(test)]
pub(crate) fn stream_id(id: u64) -> String {
    format!("{}-{}", id / 1000, id % 1000)
}

/// A stream entry id as an event id, if it is one the append script made.
pub(crate) fn event_id(stream_id: &str) -> Option<u64> {
    let (ms, seq) = stream_id.split_once('-')?;
    let ms: u64 = ms.parse().ok()?;
    let seq: u64 = seq.parse().ok().filter(|&s| s < 1000)?;
    ms.checked_mul(1000)?.checked_add(seq)
}

/// The fields for `publication`, appended by node `node`.
pub(crate) fn fields(publication: &Publication, node: u32) -> Vec<(&'static str, String)> {
    let mut fields = vec![("node", node.to_string())];
    let ids = |ids: &[ClientId]| {
        ids.iter()
            .map(ClientId::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    match publication {
        Publication::Message { topic, data } => {
            fields.push(("k", "message".into()));
            if let Some(topic) = topic {
                fields.push(("topic", topic.to_string()));
            }
            fields.push(("data", data.clone()));
        }
        Publication::Line { text } => {
            fields.push(("k", "line".into()));
            fields.push(("text", text.clone()));
        }
        Publication::Raw { text } => {
            fields.push(("k", "raw".into()));
            fields.push(("text", text.clone()));
        }
        Publication::To { client, text } => {
            fields.push(("k", "to".into()));
            fields.push(("client", client.to_string()));
            fields.push(("text", text.clone()));
        }
        Publication::Join {
            ids: joined,
            clients,
        } => {
            fields.push(("k", "join".into()));
            fields.push(("ids", ids(joined)));
            fields.push(("clients", clients.to_string()));
        }
        Publication::Leave {
            ids: left,
            clients,
            reason,
        } => {
            fields.push(("k", "leave".into()));
            fields.push(("ids", ids(left)));
            fields.push(("clients", clients.to_string()));
            fields.push(("reason", reason.as_str().into()));
        }
    }
    fields
}

/// The publication an entry's fields hold; the error names what is wrong (an
/// entry some other program wrote, or a newer tickcast's).
pub(crate) fn publication(fields: &[(String, String)]) -> Result<Publication, String> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("no field {name:?}"))
    };
    let number = |name: &str| {
        let value = field(name)?;
        value
            .parse::<u64>()
            .map_err(|_| format!("field {name:?} is not a number: {value:?}"))
    };
    let ids = || -> Result<Vec<ClientId>, String> {
        field("ids")?
            .split(',')
            .map(|id| id.parse().map_err(|_| format!("bad client id {id:?}")))
            .collect()
    };
    let kind = field("k")?;
    Ok(match kind.as_str() {
        "message" => Publication::Message {
            topic: match field("topic") {
                Ok(name) => Some(Topic::new(&name)?),
                Err(_) => None,
            },
            data: field("data")?,
        },
        "line" => Publication::Line {
            text: field("text")?,
        },
        "raw" => Publication::Raw {
            text: field("text")?,
        },
        "to" => Publication::To {
            client: number("client")?,
            text: field("text")?,
        },
        "join" => Publication::Join {
            ids: ids()?,
            clients: number("clients")?,
        },
        "leave" => {
            let reason = field("reason")?;
            Publication::Leave {
                ids: ids()?,
                clients: number("clients")?,
                reason: LeaveReason::ALL
                    .into_iter()
                    .find(|r| r.as_str() == reason)
                    .ok_or_else(|| format!("unknown leave reason {reason:?}"))?,
            }
        }
        other => return Err(format!("unknown kind {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(publication: Publication) {
        let fields: Vec<(String, String)> = fields(&publication, 7)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        assert_eq!(super::publication(&fields).unwrap(), publication);
    }

    #[test]
    fn every_publication_survives_the_stream() {
        round_trip(Publication::Message {
            topic: Some(Topic::new("prices").unwrap()),
            data: r#"{"p":1}"#.into(),
        });
        round_trip(Publication::Message {
            topic: None,
            data: "\"a,b\\n\"".into(),
        });
        round_trip(Publication::Line { text: "x".into() });
        round_trip(Publication::Raw { text: "".into() });
        round_trip(Publication::To {
            client: 1 << 40,
            text: "hi".into(),
        });
        round_trip(Publication::Join {
            ids: vec![3, 4],
            clients: 9,
        });
        round_trip(Publication::Leave {
            ids: vec![5],
            clients: 8,
            reason: LeaveReason::TooSlow,
        });
    }

    #[test]
    fn ids_map_both_ways_and_foreign_ids_are_refused() {
        assert_eq!(stream_id(1795869660244599), "1795869660244-599");
        assert_eq!(event_id("1795869660244-599"), Some(1795869660244599));
        assert_eq!(event_id("0-1"), Some(1));
        for foreign in ["1-1000", "x-1", "1", "1-", "-1"] {
            assert_eq!(event_id(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn a_bad_entry_is_named() {
        let fields = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        assert!(publication(&fields(&[("k", "nope")]))
            .unwrap_err()
            .contains("nope"));
        assert!(publication(&fields(&[("k", "line")]))
            .unwrap_err()
            .contains("text"));
        let bad_topic = fields(&[("k", "message"), ("topic", "a b"), ("data", "1")]);
        assert!(publication(&bad_topic).unwrap_err().contains("topic"));
    }
}
