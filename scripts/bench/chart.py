#!/usr/bin/env python3
"""Draws target/bench/chart.png from target/bench/results.csv (scale runs):
fan-out spread p99 and RSS per client against N, one line per server.

Usage: chart.py RESULTS_CSV OUT_PNG. Needs matplotlib; scripts/bench.sh installs
it into a virtualenv under target/bench/venv.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SERVERS = ["tickcast", "tokio", "tokio-tuned", "node"]
LABELS = {"tickcast": "tickcast (threads)", "tokio": "tokio-tungstenite",
          "tokio-tuned": "tokio-tungstenite, 4 KiB read buffer", "node": "Node ws"}


def main(csv_path, png_path):
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["mode"] == "scale"]
    if not rows:
        sys.exit("chart.py: no scale runs in " + csv_path)
    fig, (spread, rss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server in SERVERS + sorted({r["server"] for r in rows} - set(SERVERS)):
        mine = sorted((r for r in rows if r["server"] == server), key=lambda r: int(r["clients"]))
        if not mine:
            continue
        n = [int(r["clients"]) for r in mine]
        label = LABELS.get(server, server)
        spread.plot(n, [float(r["spread_p99_ms"]) for r in mine], marker="o", label=label)
        rss.plot(n, [float(r["rss_per_client_kib"]) for r in mine], marker="o", label=label)
    spread.set_title("Fan-out spread p99 (last client − first client)")
    spread.set_xlabel("clients")
    spread.set_ylabel("ms")
    rss.set_title("Server RSS per connected client")
    rss.set_xlabel("clients")
    rss.set_ylabel("KiB")
    for ax in (spread, rss):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend()
    interval = rows[0]["interval_ms"]
    fig.suptitle(f"tickcast vs peers, one tick every {float(interval):.0f} ms")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: chart.py RESULTS_CSV OUT_PNG")
    main(sys.argv[1], sys.argv[2])
