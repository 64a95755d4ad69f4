#!/usr/bin/env bash
# Benchmarks tickcast side by side with a Node `ws` server and a tokio-tungstenite
# server speaking the same protocol (issue 3). One command builds everything in
# release mode, runs every server fresh at each client count, and writes:
#
#   target/bench/results.md    the tables (and tickcast ÷ best peer)
#   target/bench/results.csv   every number, one row per run
#   target/bench/chart.png     fan-out spread p99 and RSS per client against N
#   target/bench/runs/*.json   loadgen's full result for each run
#   target/bench/logs/*.log    each server's and loadgen's stderr
#
# What every run checks (issue 9, "nothing lost"): loadgen records, for each
# client, when its 101 arrived and every tick it got, and holds it to every tick
# the server made after that 101 and by the end of the load phase: received
# once, in order. Clients that never got a 101, or whose connection ended
# before the load phase did (a 101 and then no welcome, a cut-off), are losses
# too. The loss per run is in runs/*.json (delivery.clients_missing,
# .ticks_missing, .clients_lost, .worst, ...), in results.md and results.csv
# ("clients missing ticks"), and in one line of each loadgen log.
#
# Usage:
#   scripts/bench.sh           scale: N = 1000 5000 10000 15000, 1 s ticks;
#                              reports any loss but does not fail on it
#   scripts/bench.sh stress    10 ms ticks to 5000 clients: frames/s delivered
#                              and server CPU per million frames; exits 1 if
#                              any server lost any tick or client (after
#                              running every server and writing the report)
#   scripts/bench.sh publish   POST /publish as fast as 8 publishers can, and at
#                              100/s, to 1000 and 10000 subscribers, on one
#                              topic and spread over 100: publishes/s,
#                              publish-to-receive latency, server CPU per
#                              delivery, beside a run of 10 ms ticks (100/s) to
#                              as many clients; every subscriber is
#                              checked for every message of its topic (exits 1
#                              on a loss). tickcast only: writes
#                              target/bench/publish.md
#   scripts/bench.sh smoke     50 clients, 200 ms ticks, tickcast only; exits 1
#                              on any loss: a client missing a tick made after
#                              its 101, or a client lost or never accepted
#                              (CI runs this; it writes under target/bench/smoke/)
#
# Environment overrides (defaults in brackets):
#   BENCH_NS="1000 5000"   client counts for scale [1000 5000 10000 15000]
#   BENCH_SECS=10          load phase, seconds [20]
#   BENCH_REST=6           rest phase (ticks only), seconds [6]
#   BENCH_INTERVAL=1s      tick interval for scale [1s]
#   BENCH_RAMP=2000        clients connected per second [2000]
#   BENCH_SERVERS="tickcast tokio node"   which servers, in order
#   BENCH_STRESS_N=5000 BENCH_STRESS_INTERVAL=10ms BENCH_STRESS_SECS=10
#   BENCH_NO_CHART=1       skip the matplotlib virtualenv and the PNG
#   BENCH_TICKCAST_BIN=PATH   benchmark that tickcast binary (say, an older
#                          commit's, for a before/after) instead of building one
#   BENCH_PUBLISH_NS="1000 10000" BENCH_PUBLISH_TOPICS="1 100"
#   BENCH_PUBLISHERS=8 BENCH_PUBLISH_SECS=10 BENCH_PUBLISH_SIZE=60 (body bytes)
#
# Every run is bounded: loadgen connects a fixed number of clients to a server on
# 127.0.0.1, runs fixed-length phases, closes its clients and exits; each server
# is started here, by PID, and stopped by that PID (SIGTERM, then SIGKILL after
# 10 s). Each client costs one fd in loadgen and one in the server, so this
# script raises the soft open-file limit to the hard limit and skips any N the
# limit cannot hold. tickcast also needs one thread (one PID) per client: see
# /proc/sys/kernel/pid_max.
set -euo pipefail

MODE="${1:-scale}"
case "$MODE" in
  scale | stress | smoke | publish) ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "bench.sh: unknown mode '$MODE' (expected scale, stress, publish or smoke)" >&2
    exit 2
    ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="$ROOT/target/bench"
BENCH_TARGET="$ROOT/target/bench-build"
LOADGEN="$BENCH_TARGET/release/loadgen"
PEER_TOKIO="$BENCH_TARGET/release/peer-tokio"
REPORT="$BENCH_TARGET/release/report"
PUBBENCH="$BENCH_TARGET/release/pubbench"
# A copy, so that a rebuild of target/release/tickcast during a run changes nothing.
TICKCAST="$ROOT/target/bench/bin/tickcast"
NODE_PEER="$ROOT/scripts/bench/node-peer"

log() { echo "bench.sh: $*" >&2; }

# ---- the server under test: started and stopped by PID ----

SERVER_PID=""
SERVER_URL=""

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      log "server $SERVER_PID ignored SIGTERM for 10 s; killing it"
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# start_server NAME INTERVAL LOGFILE: sets SERVER_PID and SERVER_URL.
start_server() {
  local name="$1" interval="$2" logfile="$3"
  # Empty the log first: the server truncates it only once its process has
  # started, and the loop below must not read the previous run's address.
  : >"$logfile"
  case "$name" in
    tickcast)
      "$TICKCAST" --ws-addr 127.0.0.1:0 --http-addr off --interval "$interval" \
        --max-clients 16000 2>"$logfile" &
      ;;
    tokio) "$PEER_TOKIO" --ws-addr 127.0.0.1:0 --interval "$interval" 2>"$logfile" & ;;
    node) node "$NODE_PEER/server.js" --ws-addr 127.0.0.1:0 --interval "$interval" 2>"$logfile" & ;;
    *)
      log "unknown server '$name' (expected tickcast, tokio or node)"
      exit 2
      ;;
  esac
  SERVER_PID=$!
  SERVER_URL=""
  for _ in $(seq 100); do
    SERVER_URL="$(grep -o 'ws://[^ ]*' "$logfile" 2>/dev/null | head -n 1 || true)"
    [ -n "$SERVER_URL" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "$name did not report its address; its log:"
  cat "$logfile" >&2
  exit 1
}

# run_one MODE NAME N INTERVAL LOADGEN_ARGS...: one fresh server, one loadgen run.
# Returns loadgen's status (1 on a loss under --require-full-delivery), or 1 if
# the server died; either way the server is stopped first. Callers test it with
# `if` or `||`, which also switches `set -e` off inside: hence the explicit rc.
run_one() {
  local mode="$1" name="$2" n="$3" interval="$4"
  shift 4
  local tag="$mode-$name-$n"
  local dir="$OUT/runs"
  [ "$mode" = smoke ] && dir="$OUT/smoke"
  start_server "$name" "$interval" "$OUT/logs/$tag.server.log"
  log "$tag: $name pid $SERVER_PID at $SERVER_URL"
  local rc=0
  "$LOADGEN" --url "$SERVER_URL" --clients "$n" --interval "$interval" \
    --server "$name" --server-pid "$SERVER_PID" --mode "$mode" \
    --out "$dir/$tag.json" "$@" 2> >(tee "$OUT/logs/$tag.loadgen.log" >&2) || rc=$?
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "$tag: the server died during the run; its log:"
    tail -n 20 "$OUT/logs/$tag.server.log" >&2
    rc=1
  fi
  stop_server
  local warnings
  warnings="$(grep -ciE 'warn|error|panick' "$OUT/logs/$tag.server.log" || true)"
  [ "$warnings" = 0 ] || log "$tag: $warnings warning/error lines in logs/$tag.server.log"
  return "$rc"
}

# ---- limits ----

HARD_FDS="$(ulimit -Hn)"
if [ "$HARD_FDS" != unlimited ]; then
  ulimit -n "$HARD_FDS"
fi
fd_limit() { [ "$(ulimit -n)" = unlimited ] && echo 1000000000 || ulimit -n; }

# ---- build ----

mkdir -p "$OUT/logs" "$OUT/runs" "$OUT/smoke"
log "building tickcast and the bench tools (release)"
mkdir -p "$OUT/bin"
if [ -n "${BENCH_TICKCAST_BIN:-}" ]; then
  # Another build of tickcast, say an older commit's, for a before/after.
  cp "$BENCH_TICKCAST_BIN" "$TICKCAST.tmp" && mv -f "$TICKCAST.tmp" "$TICKCAST"
  TICKCAST_VERSION="$BENCH_TICKCAST_BIN"
else
  cargo build --release --quiet --bin tickcast
  cp "$ROOT/target/release/tickcast" "$TICKCAST.tmp" && mv -f "$TICKCAST.tmp" "$TICKCAST"
  TICKCAST_VERSION="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
fi
CARGO_TARGET_DIR="$BENCH_TARGET" cargo build --release --quiet \
  --manifest-path "$ROOT/scripts/bench/Cargo.toml"
SERVERS="${BENCH_SERVERS:-tickcast tokio node}"
[ "$MODE" = smoke ] && SERVERS=tickcast
[ "$MODE" = publish ] && SERVERS=tickcast
if [[ " $SERVERS " == *" node "* ]]; then
  command -v node >/dev/null || { log "node is not installed (needed for the ws peer)"; exit 1; }
  log "installing the Node peer's dependencies (npm ci)"
  (cd "$NODE_PEER" && npm ci --silent --no-audit --no-fund)
fi

# ---- smoke: CI's check that the harness and tickcast's delivery still work ----

if [ "$MODE" = smoke ]; then
  rm -f "$OUT/smoke/"*.json
  if ! run_one smoke tickcast 50 200ms --ramp-rate 500 --settle 500ms --rest 1s \
    --duration 2s --after 500ms --echo-clients 10 --echo-every 100ms \
    --require-full-delivery; then
    log "smoke FAILED: see the loadgen FAILED line above and $OUT/logs/smoke-tickcast-50.*.log"
    exit 1
  fi
  log "smoke passed: every client got every tick made after its 101"
  exit 0
fi

# ---- publish: POST /publish to subscribers on topics, beside ticks ----

if [ "$MODE" = publish ]; then
  PUB_OUT="$OUT/publish"
  mkdir -p "$PUB_OUT"
  rm -f "$PUB_OUT/"*.json
  SECS="${BENCH_PUBLISH_SECS:-10}"
  FAILED_RUNS=()
  # run_pub TAG INTERVAL PUBBENCH_ARGS...: a fresh tickcast with its HTTP port
  # on, one pubbench run against it.
  run_pub() {
    local tag="$1" interval="$2"
    shift 2
    local logfile="$OUT/logs/$tag.server.log"
    : >"$logfile"
    "$TICKCAST" --ws-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --interval "$interval" \
      --max-clients 16000 2>"$logfile" &
    SERVER_PID=$!
    local ws="" http=""
    for _ in $(seq 100); do
      ws="$(grep -o 'ws://[^ ]*' "$logfile" | head -n 1 || true)"
      http="$(grep -o 'page: http://[^/]*' "$logfile" | head -n 1 | sed 's|page: http://||' || true)"
      [ -n "$ws" ] && [ -n "$http" ] && break
      sleep 0.1
    done
    if [ -z "$ws" ] || [ -z "$http" ]; then
      log "$tag: tickcast did not report its addresses; its log:"
      cat "$logfile" >&2
      exit 1
    fi
    log "$tag: tickcast pid $SERVER_PID at $ws and http://$http"
    local rc=0
    "$PUBBENCH" --ws "$ws" --http "$http" --server tickcast --server-pid "$SERVER_PID" \
      --duration "${SECS}s" --size "${BENCH_PUBLISH_SIZE:-60}" --out "$PUB_OUT/$tag.json" "$@" \
      2> >(tee "$OUT/logs/$tag.pubbench.log" >&2) || rc=$?
    stop_server
    [ "$rc" = 0 ] || FAILED_RUNS+=("$tag")
    sleep 2 # let the last sockets leave TIME_WAIT bookkeeping behind
  }
  for n in ${BENCH_PUBLISH_NS:-1000 10000}; do
    if [ "$(fd_limit)" -le $((n + 200)) ]; then
      log "skipping N=$n: the open-file limit is $(ulimit -n); see ulimit -Hn"
      continue
    fi
    # A tick every 10 ms, and publishes at the same 100 per second: what each
    # costs the server, side by side.
    run_pub "ticks-$n" 10ms --subscribers "$n" --topics 1 --publishers 0
    for topics in ${BENCH_PUBLISH_TOPICS:-1 100}; do
      run_pub "publish-$n-$topics-paced" off --subscribers "$n" --topics "$topics" \
        --publishers "${BENCH_PUBLISHERS:-8}" --rate 100
      run_pub "publish-$n-$topics" off --subscribers "$n" --topics "$topics" \
        --publishers "${BENCH_PUBLISHERS:-8}"
    done
  done
  "$PUBBENCH" report "$PUB_OUT" "$OUT/publish.md"
  {
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); \
tickcast $TICKCAST_VERSION; command: scripts/bench.sh publish"
  } >>"$OUT/publish.md"
  cat "$OUT/publish.md"
  if [ "${#FAILED_RUNS[@]}" -gt 0 ]; then
    log "FAILED: ${FAILED_RUNS[*]}: a subscriber missed a message or was lost; see the"
    log "pubbench FAILED lines in $OUT/logs/<run>.pubbench.log"
    exit 1
  fi
  exit 0
fi

# ---- scale or stress ----

if [ "$MODE" = scale ]; then
  NS="${BENCH_NS:-1000 5000 10000 15000}"
  INTERVAL="${BENCH_INTERVAL:-1s}"
  LOAD_ARGS=(--ramp-rate "${BENCH_RAMP:-2000}" --settle 2s --rest "${BENCH_REST:-6}s"
    --duration "${BENCH_SECS:-20}s" --echo-clients 100 --echo-every 1s)
else
  NS="${BENCH_STRESS_N:-5000}"
  INTERVAL="${BENCH_STRESS_INTERVAL:-10ms}"
  # Under 100 ticks/s to thousands of clients, a lost tick is easy to miss in
  # the totals and is exactly what issue 9 found: any loss fails the run.
  LOAD_ARGS=(--ramp-rate "${BENCH_RAMP:-2000}" --settle 2s --rest 2s
    --duration "${BENCH_STRESS_SECS:-10}s" --echo-clients 100 --echo-every 100ms
    --require-full-delivery)
fi
rm -f "$OUT/runs/$MODE-"*.json

# A failed run does not stop the others: every server still gets measured and
# the report still gets written; the failures are named and fail the script
# at the end.
FAILED_RUNS=()
for n in $NS; do
  if [ "$(fd_limit)" -le $((n + 200)) ]; then
    log "skipping N=$n: the open-file limit is $(ulimit -n); see ulimit -Hn"
    continue
  fi
  for name in $SERVERS; do
    run_one "$MODE" "$name" "$n" "$INTERVAL" "${LOAD_ARGS[@]}" || FAILED_RUNS+=("$MODE-$name-$n")
    sleep 2 # let the last sockets leave TIME_WAIT bookkeeping behind
  done
done

# ---- report ----

MACHINE="$(nproc) cores ($(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r), \
open-file limit $(ulimit -n), pid_max $(cat /proc/sys/kernel/pid_max); tickcast $TICKCAST_VERSION"
COMMAND="scripts/bench.sh${1:+ $1}"
[ -n "${BENCH_NS:-}" ] && COMMAND="BENCH_NS=\"$BENCH_NS\" $COMMAND"
[ -n "${BENCH_SECS:-}" ] && COMMAND="BENCH_SECS=$BENCH_SECS $COMMAND"
"$REPORT" "$OUT/runs" "$OUT" --machine "$MACHINE" --command "$COMMAND"

if [ -z "${BENCH_NO_CHART:-}" ] && [ "$MODE" = scale ]; then
  VENV="$OUT/venv"
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib into $VENV (for chart.png)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check 'matplotlib==3.10.8'
  fi
  "$VENV/bin/python" "$ROOT/scripts/bench/chart.py" "$OUT/results.csv" "$OUT/chart.png"
  log "wrote $OUT/chart.png"
fi
log "wrote $OUT/results.md and $OUT/results.csv"
if [ "${#FAILED_RUNS[@]}" -gt 0 ]; then
  log "FAILED: ${FAILED_RUNS[*]}: lost ticks or clients, or the server died;"
  log "the loadgen FAILED line in each log says which clients missed what:"
  for run in "${FAILED_RUNS[@]}"; do
    log "  $OUT/logs/$run.loadgen.log"
  done
  exit 1
fi
