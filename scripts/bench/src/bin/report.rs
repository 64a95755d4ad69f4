//! `report`: turns the JSON results of a benchmark (one file per run, written by
//! loadgen) into `results.csv` (every number, one row per run) and `results.md`
//! (the tables a reader wants, plus tickcast against the best peer).
//!
//! Every table has a "clients missing ticks" column: the per-client check of
//! issue 9 (every tick made after a client's 101 must reach it), with lost
//! clients and clients without a 101 beside it, so a run that lost anything
//! shows it on the row that reports its speed. `–` marks a result written
//! before that check existed.
//!
//! Usage: `report RUNS_DIR OUT_DIR [--machine TEXT] [--command TEXT]`

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use tickcast_bench::run::RunResult;

/// The order servers appear in tables; ours first.
const SERVERS: [&str; 4] = ["tickcast", "tokio", "tokio-tuned", "node"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: report RUNS_DIR OUT_DIR [--machine TEXT] [--command TEXT]");
        return ExitCode::from(2);
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let machine = flag("--machine").unwrap_or_default();
    let command = flag("--command").unwrap_or_else(|| "scripts/bench.sh".into());
    let mut runs = match load(Path::new(&args[0])) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("report: {e}");
            return ExitCode::FAILURE;
        }
    };
    runs.sort_by_key(|r| (r.mode.clone(), r.clients, server_rank(&r.server)));
    let out = Path::new(&args[1]);
    let csv = to_csv(&runs);
    let md = to_markdown(&runs, &machine, &command);
    for (name, text) in [("results.csv", csv), ("results.md", md)] {
        if let Err(e) = std::fs::write(out.join(name), text) {
            eprintln!("report: cannot write {}: {e}", out.join(name).display());
            return ExitCode::FAILURE;
        }
    }
    eprintln!(
        "report: {} runs → {}/results.{{csv,md}}",
        runs.len(),
        out.display()
    );
    ExitCode::SUCCESS
}

fn server_rank(server: &str) -> usize {
    SERVERS
        .iter()
        .position(|s| *s == server)
        .unwrap_or(SERVERS.len())
}

fn load(dir: &Path) -> Result<Vec<RunResult>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut runs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let run: RunResult =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            runs.push(run);
        }
    }
    Ok(runs)
}

const MIB: f64 = 1024.0;

fn peak_kib(r: &RunResult) -> u64 {
    let p = &r.process;
    p.after
        .hwm_kib
        .max(p.load_max_rss_kib)
        .max(p.closed.hwm_kib)
}

fn to_csv(runs: &[RunResult]) -> String {
    let mut s = String::from(
        "mode,server,clients,interval_ms,connected,failed,connect_p50_ms,connect_p99_ms,ramp_s,\
         ticks,delivery_pct,clients_checked,clients_missing_ticks,ticks_missing,ticks_owed,\
         clients_lost,clients_without_101,clients_dropped_in_drain,clients_stalled,duplicate_ticks,\
         out_of_order_ticks,ended_early,spread_p50_ms,spread_p99_ms,spread_max_ms,\
         latency_p50_ms,latency_p99_ms,latency_max_ms,frames_per_s,ticks_per_s,echo_p50_ms,echo_p99_ms,\
         echo_sent,echo_received,loadgen_lag_p99_ms,rest_cpu_pct,idle_cpu_pct,load_cpu_pct,\
         cpu_per_broadcast_ms,cpu_s_per_million_frames,rss_before_mib,rss_rest_mib,rss_per_client_kib,\
         kernel_stack_per_client_kib,\
         rss_peak_mib,threads_rest,fds_rest,rss_after_mib,threads_after,fds_after,clean_closes\n",
    );
    for r in runs {
        let p = &r.process;
        let d = &r.delivery;
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{:.3},{:.3},{:.2},{},{:.4},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.0},{:.2},\
             {:.3},{:.3},{},{},{:.3},{:.2},{},{:.2},{:.3},{:.3},{:.1},{:.1},{:.2},{:.2},{:.1},{},{},{:.1},{},{},{}",
            r.mode,
            r.server,
            r.clients,
            r.interval_ms,
            r.connect.ok,
            r.connect.failed,
            r.connect.time_ms.p50,
            r.connect.time_ms.p99,
            r.connect.ramp_s,
            d.ticks,
            d.ratio * 100.0,
            loss_csv(r),
            d.ended_early,
            r.spread_ms.p50,
            r.spread_ms.p99,
            r.spread_ms.max,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.max,
            d.frames_per_s,
            d.ticks_per_s,
            r.echo.rtt_ms.p50,
            r.echo.rtt_ms.p99,
            r.echo.sent,
            r.echo.received,
            r.loadgen_lag_ms.p99,
            r.derived.rest_cpu_pct,
            p.idle_between_ticks_cpu_pct.map_or(String::new(), |v| format!("{v:.3}")),
            r.derived.load_cpu_pct,
            r.derived.cpu_per_broadcast_ms,
            r.derived.cpu_s_per_million_frames,
            p.before.rss_kib as f64 / MIB,
            p.rest_end.rss_kib as f64 / MIB,
            r.derived.rss_per_client_kib,
            r.derived.kernel_stack_per_client_kib,
            peak_kib(r) as f64 / MIB,
            p.rest_end.threads,
            p.rest_end.fds,
            p.after.rss_kib as f64 / MIB,
            p.after.threads,
            p.after.fds,
            r.close.clean,
        );
    }
    s
}

fn to_markdown(runs: &[RunResult], machine: &str, command: &str) -> String {
    let mut s = String::from("# tickcast benchmark results\n\n");
    if !machine.is_empty() {
        let _ = writeln!(s, "Machine: {machine}  ");
    }
    let _ = writeln!(s, "Command: `{command}`\n");
    for mode in ["smoke", "scale", "stress"] {
        let rows: Vec<&RunResult> = runs.iter().filter(|r| r.mode == mode).collect();
        if rows.is_empty() {
            continue;
        }
        let r0 = rows[0];
        let p = &r0.params;
        let mut intervals: Vec<String> = Vec::new();
        for r in &rows {
            let interval = r.interval_ms.to_string();
            if !intervals.contains(&interval) {
                intervals.push(interval);
            }
        }
        let _ = writeln!(
            s,
            "## {mode}: tick every {} ms; ramp {}/s; rest {} s; load {} s with {} echo clients every {} ms\n",
            intervals.join(" / "),
            p.ramp_per_s,
            p.rest_s,
            p.load_s,
            p.echo_clients,
            p.echo_every_ms
        );
        if mode == "stress" {
            stress_table(&mut s, &rows);
        } else {
            delivery_table(&mut s, &rows);
            resource_table(&mut s, &rows);
        }
        versus_best_peer(&mut s, &rows, mode);
    }
    s.push_str(
        "Notes: arrival times are kernel receive timestamps (SO_TIMESTAMPNS) of the load \
         generator's sockets, so loadgen's own CPU contention does not inflate spread or latency, \
         except for a frame still unread when the client's next frame arrived: TCP gives it the \
         newer frame's timestamp (\"frames timed late\"; the exactly-timed spread leaves them out); \
         latency is measured against the tick's `time` field, which has millisecond resolution. \
         Spread = last client's arrival minus first client's, per tick. Clients missing ticks: \
         each client is held to every tick the server made after its 101 arrived and by the end \
         of the load phase (lost = its connection ended before that; no 101 = it never got one). \
         CPU is user+system time of the server process from /proc/PID/stat; idle CPU is measured from 50 % to 95 % of each \
         interval during rest. RSS/client = (RSS at rest − RSS before clients) / clients; kernel \
         stack/client is the machine-wide `KernelStack` growth per client, the kernel memory a \
         thread per client costs beyond RSS.\n",
    );
    s
}

/// The per-client check's CSV columns, from `clients_checked` to
/// `out_of_order_ticks`; empty cells for a result from before the check, so
/// "not checked" never reads as "nothing lost".
fn loss_csv(r: &RunResult) -> String {
    let c = &r.delivery.check;
    let values = [
        c.clients_checked as u64,
        c.clients_missing as u64,
        c.ticks_missing,
        c.ticks_owed,
        c.clients_lost as u64,
        c.clients_without_101 as u64,
        c.clients_ended_in_drain as u64,
        c.clients_stalled as u64,
        c.duplicates,
        c.out_of_order,
    ];
    if !was_checked(r) {
        return ",".repeat(values.len() - 1);
    }
    let cells: Vec<String> = values.iter().map(u64::to_string).collect();
    cells.join(",")
}

/// Whether the run's result holds the per-client check (results written before
/// issue 9 read it as all zeros).
fn was_checked(r: &RunResult) -> bool {
    let c = &r.delivery.check;
    c.clients_checked > 0 || c.clients_without_101 > 0
}

/// The "clients missing ticks" cell: `0` when every client got every tick made
/// after its 101, else who missed how much and who was lost; `–` for a result
/// from before the per-client check.
fn loss_cell(r: &RunResult) -> String {
    let c = &r.delivery.check;
    if !was_checked(r) {
        return "–".into();
    }
    if c.is_clean() {
        return "0".into();
    }
    let mut parts = Vec::new();
    if c.clients_missing > 0 {
        parts.push(format!(
            "**{} ({} ticks)**",
            c.clients_missing, c.ticks_missing
        ));
    }
    for (count, what) in [
        (c.clients_lost, "lost"),
        (c.clients_without_101, "no 101"),
        (c.clients_ended_in_drain, "dropped in drain"),
        (c.clients_stalled, "stalled"),
    ] {
        if count > 0 {
            parts.push(format!("{count} {what}"));
        }
    }
    if c.duplicates + c.out_of_order > 0 {
        parts.push(format!(
            "{} dup/out of order",
            c.duplicates + c.out_of_order
        ));
    }
    parts.join(", ")
}

fn delivery_table(s: &mut String, rows: &[&RunResult]) {
    s.push_str(
        "| N | server | connected | connect p99 ms | delivery | clients missing ticks | spread p50 / p99 / max ms | spread p99, exactly timed frames only (frames timed late) | latency p50 / p99 / max ms | frames/s | echo RTT p50 / p99 ms | dropped | clean closes |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let d = &r.delivery;
        let _ = writeln!(
            s,
            "| {} | {} | {}/{} | {:.1} | {:.3} % of {} ticks | {} | {:.1} / {:.1} / {:.1} | {} | {:.1} / {:.1} / {:.1} | {:.0} | {:.2} / {:.2} | {} | {} |",
            r.clients,
            r.server,
            r.connect.ok,
            r.clients,
            r.connect.time_ms.p99,
            d.ratio * 100.0,
            d.ticks,
            loss_cell(r),
            r.spread_ms.p50,
            r.spread_ms.p99,
            r.spread_ms.max,
            r.spread_exact_ms.as_ref().map_or("–".into(), |e| format!(
                "{:.1} ({:.2} %)",
                e.p99,
                r.frames_timed_late * 100.0
            )),
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.latency_ms.max,
            d.frames_per_s,
            r.echo.rtt_ms.p50,
            r.echo.rtt_ms.p99,
            d.ended_early,
            r.close.clean,
        );
    }
    s.push('\n');
}

fn resource_table(s: &mut String, rows: &[&RunResult]) {
    s.push_str(
        "| N | server | RSS/client KiB | kernel stack/client KiB | RSS at rest MiB | peak RSS MiB | threads | CPU/broadcast ms | CPU rest % | idle CPU % | CPU load % | after: RSS MiB, threads |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let p = &r.process;
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.2} | {:.2} | {} | {:.2} | {:.1}, {} |",
            r.clients,
            r.server,
            r.derived.rss_per_client_kib,
            r.derived.kernel_stack_per_client_kib,
            p.rest_end.rss_kib as f64 / MIB,
            peak_kib(r) as f64 / MIB,
            p.rest_end.threads,
            r.derived.cpu_per_broadcast_ms,
            r.derived.rest_cpu_pct,
            p.idle_between_ticks_cpu_pct.map_or("–".into(), |v| format!("{v:.2}")),
            r.derived.load_cpu_pct,
            p.after.rss_kib as f64 / MIB,
            p.after.threads,
        );
    }
    s.push('\n');
}

fn stress_table(s: &mut String, rows: &[&RunResult]) {
    s.push_str(
        "| N | server | tick every ms | ticks/s | frames/s delivered | delivery | clients missing ticks | dropped | server CPU % | CPU s per million frames | spread p99 ms | latency p50 / p99 ms | loadgen lag p99 ms |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let d = &r.delivery;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {:.0} | {:.3} % | {} | {} | {:.1} | {:.2} | {:.1} | {:.1} / {:.1} | {:.1} |",
            r.clients,
            r.server,
            r.interval_ms,
            d.ticks_per_s,
            d.frames_per_s,
            d.ratio * 100.0,
            loss_cell(r),
            d.ended_early,
            r.derived.load_cpu_pct,
            r.derived.cpu_s_per_million_frames,
            r.spread_ms.p99,
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.loadgen_lag_ms.p99,
        );
    }
    s.push('\n');
}

/// tickcast against the best peer at each N, as ratios (< 1 is better for costs).
fn versus_best_peer(s: &mut String, rows: &[&RunResult], mode: &str) {
    // By client count and, for stress (which runs at several rates), interval.
    let mut by_n: BTreeMap<(usize, u64), Vec<&RunResult>> = BTreeMap::new();
    for r in rows {
        let interval_us = if mode == "stress" {
            (r.interval_ms * 1e3) as u64
        } else {
            0
        };
        by_n.entry((r.clients, interval_us)).or_default().push(r);
    }
    let mut lines = Vec::new();
    for ((n, interval_us), rs) in by_n {
        let n = if mode == "stress" {
            format!("{n}, a tick every {} ms", interval_us as f64 / 1e3)
        } else {
            n.to_string()
        };
        let Some(tc) = rs.iter().find(|r| r.server == "tickcast") else {
            continue;
        };
        let peers: Vec<&&RunResult> = rs.iter().filter(|r| r.server != "tickcast").collect();
        if peers.is_empty() {
            continue;
        }
        let best = |f: &dyn Fn(&RunResult) -> f64, lower: bool| {
            peers
                .iter()
                .map(|r| f(r))
                .fold(if lower { f64::INFINITY } else { 0.0 }, |a, b| {
                    if lower {
                        a.min(b)
                    } else {
                        a.max(b)
                    }
                })
        };
        let ratio = |ours: f64, theirs: f64| {
            if theirs > 0.0 {
                format!("{:.2}×", ours / theirs)
            } else {
                "–".into()
            }
        };
        if mode == "stress" {
            let bf = best(&|r| r.delivery.frames_per_s, false);
            let bc = best(&|r| r.derived.cpu_s_per_million_frames, true);
            lines.push(format!(
                "| {n} | frames/s {} (target ≥ 1.5×) | CPU per million frames {} |",
                ratio(tc.delivery.frames_per_s, bf),
                ratio(tc.derived.cpu_s_per_million_frames, bc)
            ));
        } else {
            let bs = best(&|r| r.spread_ms.p99, true);
            let exact_p99 = |r: &RunResult| r.spread_exact_ms.as_ref().map_or(0.0, |e| e.p99);
            let be = best(&exact_p99, true);
            // A peer that sent fewer ticks than asked (it fell behind the
            // interval) had less to do per second, and its frames never queue
            // behind the next tick's: compared on its own, too.
            let kept_rate = |r: &RunResult| {
                r.interval_ms > 0.0 && r.delivery.ticks_per_s >= 0.9 * 1000.0 / r.interval_ms
            };
            let bs_kept = peers
                .iter()
                .filter(|r| kept_rate(r))
                .map(|r| r.spread_ms.p99)
                .fold(f64::INFINITY, f64::min);
            let fell_behind: Vec<&str> = peers
                .iter()
                .filter(|r| !kept_rate(r))
                .map(|r| r.server.as_str())
                .collect();
            let kept_note = if fell_behind.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} against the best peer that kept the tick rate ({} did not)",
                    if bs_kept.is_finite() {
                        ratio(tc.spread_ms.p99, bs_kept)
                    } else {
                        "–".into()
                    },
                    fell_behind.join(", ")
                )
            };
            let bc = best(&|r| r.derived.cpu_per_broadcast_ms, true);
            let br = best(&|r| r.derived.rss_per_client_kib, true);
            lines.push(format!(
                "| {n} | spread p99 {}{kept_note}; exactly timed frames only: {} (target ≤ 0.7×) | CPU/broadcast {} (target ≤ 1×) | RSS/client {} (target ≤ 1×) | idle CPU {} % (target < 1 %) |",
                ratio(tc.spread_ms.p99, bs),
                ratio(exact_p99(tc), be),
                ratio(tc.derived.cpu_per_broadcast_ms, bc),
                ratio(tc.derived.rss_per_client_kib, br),
                tc.process.idle_between_ticks_cpu_pct.map_or("–".into(), |v| format!("{v:.2}")),
            ));
        }
    }
    if !lines.is_empty() {
        s.push_str("tickcast ÷ best peer:\n\n");
        if mode == "stress" {
            s.push_str("| N | throughput | cost |\n|---:|---|---|\n");
        } else {
            s.push_str("| N | fan-out | CPU | memory | idle |\n|---:|---|---|---|---|\n");
        }
        for l in lines {
            let _ = writeln!(s, "{l}");
        }
        s.push('\n');
    }
}
