//! The markdown tables of pubbench's runs: `publish.md` (one row per run,
//! [`publish_table`]) and `cluster.md` (a summary, then one table per setup
//! with a row per node, [`cluster_report`]). Pure: runs in, text out; pubbench
//! reads the JSON files and writes the result (`pubbench report`,
//! `pubbench cluster-report`).

use std::cmp::Reverse;
use std::path::Path;

use crate::pub_run::PubRun;
use crate::stats::Summary;

/// Every pubbench result (`*.json`) in `dir`; files that are not one are
/// skipped.
///
/// # Errors
///
/// If `dir` cannot be listed.
pub fn load(dir: &Path) -> std::io::Result<Vec<PubRun>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect())
}

/// `publish.md`: the publish runs, then the tick runs they are compared with.
pub fn publish_table(runs: &mut [PubRun]) -> String {
    runs.sort_by(|a, b| {
        (a.subscribers, a.publishers == 0, a.rate > 0.0, a.topics).cmp(&(
            b.subscribers,
            b.publishers == 0,
            b.rate > 0.0,
            b.topics,
        ))
    });
    let mut md = String::from(
        "| server | subscribers | topics | publishers | rate | publishes/s | deliveries/s | latency p50 ms | p99 ms | POST p50 ms | frame bytes | CPU µs / delivery | CPU µs / publish or tick | CPU cores | clients missing |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs.iter() {
        let ticks = r.publishers == 0;
        let or_dash = |text: String| if ticks { "–".to_string() } else { text };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {:.2} | {:.1} | {:.2} | {} |\n",
            r.server,
            r.subscribers,
            if ticks { "ticks".to_string() } else { r.topics.to_string() },
            r.publishers,
            if ticks { "100 ticks/s".to_string() } else { rate(r) },
            or_dash(format!("{:.0}", r.publishes_per_s)),
            r.deliveries_per_s,
            or_dash(format!("{:.2}", r.latency_ms.p50)),
            or_dash(format!("{:.2}", r.latency_ms.p99)),
            or_dash(format!("{:.2}", r.post_ms.p50)),
            r.frame_bytes,
            r.cpu_us_per_delivery,
            r.cpu_us_per_event,
            r.cpu_cores,
            r.clients_missing,
        ));
    }
    md
}

/// `cluster.md`, without the machine line (bench.sh adds it): a summary row
/// per run, then per setup a row per node and one for all of them, then what
/// went wrong, if anything did.
pub fn cluster_report(runs: &mut [PubRun]) -> String {
    // Cluster first, then one node on Redis, then one node alone; paced runs
    // by rate, then as fast as possible.
    runs.sort_by_key(|r| {
        (
            r.redis.is_none(),
            Reverse(r.nodes.len()),
            r.setup.clone(),
            r.rate <= 0.0,
            (r.rate * 1000.0) as u64,
        )
    });
    let mut md = String::from(
        "# tickcast as a cluster: nodes on one Redis\n\n\
         Every run: subscribers spread round-robin over the nodes, all on one topic; \
         publishers POST to the first node only, so every other node gets each message \
         through Redis (an `EVAL` append, then each node's `XREAD`). Each subscriber is \
         checked for every message (once, in the stream's order, with the id the \
         publisher was answered). Latency: publisher's clock before the POST to the \
         kernel's receive timestamp of the frame. Spread: first to last subscriber to \
         receive the same message. CPU: `/proc/PID/stat` before and after the publish \
         phase; Redis's from its threads' `schedstat` (ns), per publish after taking out \
         its idle CPU (measured over a quiet second before publishing, every node \
         connected; in brackets). pubbench lag: how late pubbench read frames after the \
         kernel received them; when it is large, pubbench was short of CPU.\n\n\
         ## Summary\n\n\
         | setup | rate | publishes/s | deliveries/s | latency p50 ms | p99 ms | spread p50 ms | p99 ms | nodes' CPU cores | nodes' CPU µs / publish | µs / delivery | Redis CPU µs / publish | Redis CPU cores (idle) | pubbench lag p99 ms | clients missing |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs.iter() {
        let (redis_us, redis_cores) = match &r.redis {
            Some(redis) => (
                format!("{:.1}", redis.cpu_us_per_publish),
                format!("{:.3} ({:.3})", redis.cpu_cores, redis.idle_cores),
            ),
            None => ("–".into(), "–".into()),
        };
        md.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {} | {} | {:.2} | {} |\n",
            r.setup,
            rate(r),
            r.publishes_per_s,
            r.deliveries_per_s,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.spread_ms.p50,
            r.spread_ms.p99,
            r.cpu_cores,
            r.cpu_us_per_event,
            r.cpu_us_per_delivery,
            redis_us,
            redis_cores,
            r.lag_ms.p99,
            r.clients_missing,
        ));
    }
    let mut setups: Vec<&str> = runs.iter().map(|r| r.setup.as_str()).collect();
    setups.dedup();
    for setup in setups {
        md.push_str(&format!(
            "\n## {setup}\n\n\
             | rate | node | subscribers | deliveries/s | latency p50 ms | p99 ms | max ms | spread p50 ms | p99 ms | max ms | CPU cores | CPU µs / delivery | clients missing |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        ));
        for r in runs.iter().filter(|r| r.setup == setup) {
            let row = |node: &str,
                       subscribers: usize,
                       deliveries_per_s: f64,
                       latency: &Summary,
                       spread: &Summary,
                       cores: f64,
                       us: f64,
                       missing: usize| {
                format!(
                    "| {} | {node} | {subscribers} | {deliveries_per_s:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {cores:.2} | {us:.2} | {missing} |\n",
                    rate(r),
                    latency.p50,
                    latency.p99,
                    latency.max,
                    spread.p50,
                    spread.p99,
                    spread.max,
                )
            };
            if r.nodes.len() > 1 {
                for (k, n) in r.nodes.iter().enumerate() {
                    md.push_str(&row(
                        &(k + 1).to_string(),
                        n.subscribers,
                        n.deliveries_per_s,
                        &n.latency_ms,
                        &n.spread_ms,
                        n.cpu_cores,
                        n.cpu_us_per_delivery,
                        n.clients_missing,
                    ));
                }
            }
            md.push_str(&row(
                if r.nodes.len() > 1 { "all" } else { "1" },
                r.subscribers,
                r.deliveries_per_s,
                &r.latency_ms,
                &r.spread_ms,
                r.cpu_cores,
                r.cpu_us_per_delivery,
                r.clients_missing,
            ));
        }
    }
    let failed: Vec<&PubRun> = runs.iter().filter(|r| !r.is_clean()).collect();
    if !failed.is_empty() {
        md.push_str("\n## Losses\n\n");
        for r in failed {
            md.push_str(&format!(
                "- {}, {}: {} subscribers missing messages, {} publishes refused, {} publishers failed, {} ids mismatched, {} reset notices\n",
                r.setup,
                rate(r),
                r.clients_missing,
                r.refused,
                r.publishers_failed,
                r.id_mismatches,
                r.resets
            ));
            for line in &r.worst {
                md.push_str(&format!("  - {line}\n"));
            }
        }
    }
    md
}

/// `100/s`, or `max` for as fast as the answers come.
fn rate(r: &PubRun) -> String {
    if r.rate > 0.0 {
        format!("{:.0}/s", r.rate)
    } else {
        "max".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pub_run::{NodeRun, RedisRun};

    fn run(setup: &str, nodes: usize, redis: bool, rate: f64, missing: usize) -> PubRun {
        PubRun {
            setup: setup.into(),
            rate,
            subscribers: 600,
            nodes: vec![NodeRun::default(); nodes],
            redis: redis.then(RedisRun::default),
            clients_missing: missing,
            worst: vec!["subscriber 2 on node 3: publisher 0: 0 of 14 messages".into()],
            ..PubRun::default()
        }
    }

    #[test]
    fn the_cluster_report_has_a_table_per_setup_cluster_first() {
        let mut runs = vec![
            run("1 node, no Redis", 1, false, 20.0, 0),
            run("1 node, Redis", 1, true, 20.0, 0),
            run("3 nodes, Redis", 3, true, 0.0, 0),
            run("3 nodes, Redis", 3, true, 20.0, 7),
        ];
        let md = cluster_report(&mut runs);
        let at = |text: &str| md.find(text).unwrap_or_else(|| panic!("{text}\n{md}"));
        assert!(at("## 3 nodes, Redis") < at("## 1 node, Redis"));
        assert!(at("## 1 node, Redis") < at("## 1 node, no Redis"));
        // Per node rows and an "all" row for the cluster; paced before max.
        assert!(at("| 20/s | 1 |") < at("| 20/s | all |"));
        assert!(at("| 20/s | all |") < at("| max | all |"));
        // The losses are named.
        assert!(at("## Losses") < at("subscriber 2 on node 3"));
        assert!(md.contains("- 3 nodes, Redis, 20/s: 7 subscribers missing"));
    }
}
