#!/usr/bin/env python3
"""Lines up tickcast's own fan-out timeline with the spread loadgen measured.

Usage: timeline.py SERVER_LOG LOADGEN_JSON

SERVER_LOG is tickcast's stderr with RUST_LOG=info,tickcast::timeline=trace
(one "fan-out at ..." line per broadcast, see src/hub/timeline.rs);
LOADGEN_JSON is loadgen's result for the same run. `scripts/bench.sh` with
BENCH_TIMELINE=1 runs both and calls this.

For every tick that reached a client, the fan-out that wrote it is the last one
that began before the tick's first arrival. The report compares the worst ticks
(spread at or above p99) with the typical ones (at or below p50): how long the
fan-out took by tickcast's own clock, how long its threads waited for a CPU,
how late the helper thread started, and in how many runs on a CPU each thread
did its part. Python's standard library only.
"""

import json
import re
import statistics
import sys

LINE = re.compile(
    r"fan-out at (\d+)\.(\d{6}) to (\d+) clients in (\d+) threads: ([\d.]+) ms(.*)$"
)
PART = re.compile(
    r"(hub|helper \+([\d.]+) ms) (\d+) slices ([\d.]+) ms"
    r"(?: \(waiting ([\d.]+) ms, (\d+) runs\))?"
)


def fan_outs(path):
    """Every fan-out line of the log, in order."""
    found = []
    with open(path, encoding="utf-8", errors="replace") as log:
        for text in log:
            m = LINE.search(text)
            if not m:
                continue
            parts = []
            for p in PART.finditer(m.group(6)):
                parts.append(
                    {
                        "helper": p.group(1) != "hub",
                        "started_ms": float(p.group(2) or 0),
                        "slices": int(p.group(3)),
                        "wall_ms": float(p.group(4)),
                        "waiting_ms": float(p.group(5) or 0),
                        "runs": int(p.group(6) or 0),
                    }
                )
            found.append(
                {
                    "at_ns": int(m.group(1)) * 10**9 + int(m.group(2)) * 1000,
                    "clients": int(m.group(3)),
                    "wall_ms": float(m.group(5)),
                    "parts": parts,
                }
            )
    return found


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    outs = fan_outs(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        run = json.load(f)
    spreads = run.get("spread_per_tick_ms", [])
    firsts = run.get("first_rx_per_tick_ns", [])
    exacts = run.get("spread_exact_per_tick_ms") or [-1.0] * len(spreads)
    if not outs:
        sys.exit(f"{sys.argv[1]}: no fan-out lines (was RUST_LOG=info,tickcast::timeline=trace set?)")
    if not firsts or len(firsts) != len(spreads):
        sys.exit(f"{sys.argv[2]}: no first_rx_per_tick_ns (an older loadgen?)")
    # Only the large fan-outs: ticks to everyone, not a join's few notices.
    big = max(o["clients"] for o in outs)
    outs = [o for o in outs if o["clients"] >= big * 0.9]
    ticks = []
    i = 0
    for spread, first, exact in zip(spreads, firsts, exacts):
        while i + 1 < len(outs) and outs[i + 1]["at_ns"] <= first:
            i += 1
        o = outs[i]
        # The fan-out that wrote it began before its first arrival, and not long
        # before (a tick with no fan-out of its own is left out).
        if not (0 <= first - o["at_ns"] < 50 * 10**6):
            continue
        helpers = [p for p in o["parts"] if p["helper"]]
        ticks.append(
            {
                "spread": spread,
                "exact": exact if exact >= 0 else float("nan"),
                "fan_out": o["wall_ms"],
                "start_to_first_rx": (first - o["at_ns"]) / 1e6,
                "waiting": max((p["waiting_ms"] for p in o["parts"]), default=0.0),
                "waiting_sum": sum(p["waiting_ms"] for p in o["parts"]),
                "helper_start": max((p["started_ms"] for p in helpers), default=0.0),
                "runs": max((p["runs"] for p in o["parts"]), default=0),
                "clients": o["clients"],
            }
        )
    if not ticks:
        sys.exit("no tick could be matched with a fan-out")
    p50 = pct([t["spread"] for t in ticks], 50)
    p99 = pct([t["spread"] for t in ticks], 99)
    worst = [t for t in ticks if t["spread"] >= p99]
    typical = [t for t in ticks if t["spread"] <= p50]
    exact = [t["exact"] for t in ticks if t["exact"] == t["exact"]]
    p99_exact = pct(exact, 99)
    worst_exact = [t for t in ticks if t["exact"] >= p99_exact]

    def mean(group, key):
        values = [t[key] for t in group if t[key] == t[key]]  # not NaN
        return statistics.fmean(values) if values else float("nan")

    rows = [
        ("spread (loadgen, kernel timestamps)", "spread"),
        ("spread, exactly timed frames only", "exact"),
        ("fan-out, first slice to last (tickcast's clock)", "fan_out"),
        ("fan-out start to first arrival", "start_to_first_rx"),
        ("longest wait for a CPU, one thread", "waiting"),
        ("waits for a CPU, all threads", "waiting_sum"),
        ("helper thread started after", "helper_start"),
        ("most runs on a CPU, one thread", "runs"),
    ]
    print(f"{run.get('server')} {run.get('clients')} clients, "
          f"{run.get('interval_ms')} ms ticks: {len(ticks)} ticks matched "
          f"to a fan-out of {len(outs)} logged\n")
    own = run.get("loadgen_cpu_pct")
    server = run.get("derived", {}).get("load_cpu_pct")
    if own is not None and server is not None:
        print(f"CPU during the load phase, % of one core (of 200): server {server:.0f}, "
              f"loadgen {own:.0f}\n")
    print(f"| mean, ms | typical ticks (spread ≤ p50 = {p50:.1f}) | "
          f"worst ticks (spread ≥ p99 = {p99:.1f}) | "
          f"worst ticks, exactly timed (≥ p99 = {p99_exact:.1f}) |")
    print("|---|---:|---:|---:|")
    for label, key in rows:
        print(f"| {label} | {mean(typical, key):.2f} | {mean(worst, key):.2f} | "
              f"{mean(worst_exact, key):.2f} |")
    timed = [t for t in ticks if t["exact"] == t["exact"]]
    if len(timed) > 2:
        exact = [t["exact"] for t in timed]
        for key, label in [("fan_out", "fan-out time"), ("waiting_sum", "time waiting for a CPU")]:
            r = statistics.correlation(exact, [t[key] for t in timed])
            print(f"\nCorrelation of the exactly timed spread with {label}: {r:.2f}")
    print("\nWorst ticks:\n")
    print("| spread | exactly timed | fan-out | longest wait for a CPU | all waits | helper start | runs |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for t in sorted(ticks, key=lambda t: -t["spread"])[:8]:
        print(f"| {t['spread']:.1f} | {t['exact']:.1f} | {t['fan_out']:.1f} | {t['waiting']:.1f} | "
              f"{t['waiting_sum']:.1f} | {t['helper_start']:.2f} | {t['runs']} |")


if __name__ == "__main__":
    main()
