#!/usr/bin/env bash
# Profiles tickcast under the benchmark's load with `perf` (software cpu-clock
# event, so it works in VMs without a PMU), to see where the server's time goes.
#
# Usage:
#   scripts/bench/profile.sh            10,000 clients, 1 s ticks (the scale target)
#   scripts/bench/profile.sh stress     5,000 clients, 10 ms ticks
#   PROFILE_N=15000 PROFILE_INTERVAL=1s PROFILE_SECS=20 scripts/bench/profile.sh
#
# It starts tickcast on 127.0.0.1 (by PID), connects the clients with loadgen,
# records the whole machine for PROFILE_SECS seconds of the rest phase
# (ticks, no echoes), then lets loadgen close everything and stops tickcast by
# PID. Outputs, under target/bench/:
#   profile-MODE.data          perf.data, whole machine (kernel call graphs)
#   profile-MODE.processes.txt CPU by command (tickcast's threads, loadgen, idle)
#   profile-MODE.txt           top symbols, self time, kernel and user together
#   profile-MODE.callers.txt   the same with kernel call chains
# Needs `perf` (Debian: linux-perf) and scripts/bench.sh run once (for builds).
set -euo pipefail

MODE="${1:-scale}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/target/bench"
LOADGEN="$ROOT/target/bench-build/release/loadgen"
# The `profiling` profile: the release build with line tables, so perf can name
# lines (the release binary users get carries no debug info).
TICKCAST="$ROOT/target/profiling/tickcast"
case "$MODE" in
  scale) N="${PROFILE_N:-10000}" INTERVAL="${PROFILE_INTERVAL:-1s}" ;;
  stress) N="${PROFILE_N:-5000}" INTERVAL="${PROFILE_INTERVAL:-10ms}" ;;
  *)
    echo "profile.sh: unknown mode '$MODE' (scale or stress)" >&2
    exit 2
    ;;
esac
SECS="${PROFILE_SECS:-15}"
command -v perf >/dev/null || { echo "profile.sh: perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
[ -x "$LOADGEN" ] || { echo "profile.sh: run scripts/bench.sh smoke first (it builds loadgen)" >&2; exit 1; }
(cd "$ROOT" && cargo build --profile profiling --quiet --bin tickcast)
ulimit -n "$(ulimit -Hn)"
mkdir -p "$OUT/logs"

SERVER_PID=""
LOADGEN_PID=""
cleanup() {
  for pid in $LOADGEN_PID $SERVER_PID; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

"$TICKCAST" --ws-addr 127.0.0.1:0 --http-addr off --interval "$INTERVAL" \
  --max-clients 16000 2>"$OUT/logs/profile-$MODE.server.log" &
SERVER_PID=$!
URL=""
for _ in $(seq 100); do
  URL="$(grep -o 'ws://[^ ]*' "$OUT/logs/profile-$MODE.server.log" | head -n 1 || true)"
  [ -n "$URL" ] && break
  sleep 0.1
done
[ -n "$URL" ] || { echo "profile.sh: tickcast did not start" >&2; exit 1; }

# Rest long enough to cover the recording; the load phase is short.
RAMP_S=$(( N / 2000 + 1 ))
"$LOADGEN" --url "$URL" --clients "$N" --interval "$INTERVAL" --server tickcast \
  --server-pid "$SERVER_PID" --mode "profile-$MODE" --settle 2s --rest "$((SECS + 4))s" \
  --duration 3s --after 1s --out "$OUT/profile-$MODE.json" \
  2>"$OUT/logs/profile-$MODE.loadgen.log" &
LOADGEN_PID=$!
sleep $(( RAMP_S + 4 ))
echo "profile.sh: recording tickcast (pid $SERVER_PID, $N clients, $INTERVAL ticks) for $SECS s" >&2
# System-wide (-a): per-thread events for 10,000+ threads exhaust perf's limits.
# The reports below keep tickcast's samples only (--pid).
perf record -q -a -e cpu-clock -F 1000 -g -o "$OUT/profile-$MODE.data" -- sleep "$SECS"
wait "$LOADGEN_PID" || true
LOADGEN_PID=""
grep -E '^loadgen: tickcast N=' "$OUT/logs/profile-$MODE.loadgen.log" >&2 || true

perf report -i "$OUT/profile-$MODE.data" --stdio --no-children --sort comm \
  -g none 2>/dev/null > "$OUT/profile-$MODE.processes.txt"
perf report -i "$OUT/profile-$MODE.data" --pid "$SERVER_PID" --stdio --no-children --percentage relative --sort sym \
  --percent-limit 0.5 -g none 2>/dev/null > "$OUT/profile-$MODE.txt"
perf report -i "$OUT/profile-$MODE.data" --pid "$SERVER_PID" --stdio --no-children --percentage relative --sort sym \
  --percent-limit 2 -g caller,0.5,callee,function,percent 2>/dev/null > "$OUT/profile-$MODE.callers.txt"
echo "profile.sh: wrote $OUT/profile-$MODE.{data,txt,callers.txt}" >&2
