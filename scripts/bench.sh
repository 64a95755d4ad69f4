#!/usr/bin/env bash
# Benchmarks tickcast side by side with a Node `ws` server and a tokio-tungstenite
# server speaking the same protocol (issue 3), the latter twice: as written with
# tungstenite's defaults, and tuned with a 4 KiB read buffer (issue 12). One command builds everything in
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
#   scripts/bench.sh stress    ticks every 10 ms, then every 5 ms, to 5000
#                              clients: frames/s delivered and server CPU per
#                              million frames; exits 1 if any server lost any
#                              tick or client (after running every server and
#                              writing the report). Two rates because at 10 ms
#                              a server that keeps up delivers all that is
#                              offered, and frames/s cannot show how far
#                              ahead it is
#   scripts/bench.sh publish   POST /publish as fast as 8 publishers can, and at
#                              100/s, to 1000 and 10000 subscribers, on one
#                              topic and spread over 100: publishes/s,
#                              publish-to-receive latency, server CPU per
#                              delivery, beside a run of 10 ms ticks (100/s) to
#                              as many clients; every subscriber is
#                              checked for every message of its topic (exits 1
#                              on a loss). tickcast only: writes
#                              target/bench/publish.md
#   scripts/bench.sh cluster   tickcast as a cluster (built with --features redis):
#                              3 nodes × 5000 subscribers on one Redis against
#                              1 node × 15000 on Redis and 1 node × 15000 alone
#                              (no Redis), publishing on node 1 at 20/s and
#                              100/s for 10 s: delivery (every subscriber on
#                              every node checked for every message; exits 1
#                              on a loss, after writing the report), latency
#                              through Redis per node, fan-out spread, the
#                              nodes' CPU and Redis's CPU per publish. Starts
#                              its own redis-server (on a free port, no
#                              persistence, a temporary dir) for each run.
#                              Writes target/bench/cluster.md; about 4 minutes
#   scripts/bench.sh smoke     50 clients, 200 ms ticks, tickcast only; exits 1
#                              on any loss: a client missing a tick made after
#                              its 101, or a client lost or never accepted; or
#                              if any client thread's stack went past 8 KiB
#                              (CI runs this; it writes under target/bench/smoke/)
#
# Environment overrides (defaults in brackets):
#   BENCH_NS="1000 5000"   client counts for scale [1000 5000 10000 15000]
#   BENCH_SECS=10          load phase, seconds [20]
#   BENCH_REST=6           rest phase (ticks only), seconds [6]
#   BENCH_INTERVAL=1s      tick interval for scale [1s]
#   BENCH_RAMP=2000        clients connected per second [2000]
#   BENCH_SERVERS="tickcast tokio tokio-tuned node"   which servers, in order
#                          (tokio-tuned: the tokio peer with a 4 KiB read buffer)
#   BENCH_STRESS_N=5000 BENCH_STRESS_INTERVALS="10ms 5ms" BENCH_STRESS_SECS=10
#   BENCH_NO_CHART=1       skip the matplotlib virtualenv and the PNG
#   BENCH_TIMELINE=1       tickcast logs every fan-out's timing (its trace log,
#                          src/hub/timeline.rs), and each tickcast run gets
#                          target/bench/timeline-<run>.md: its worst ticks
#                          against its typical ones, by tickcast's own clock
#                          and the scheduler's (waits for a CPU)
#   BENCH_TICKCAST_BIN=PATH   benchmark that tickcast binary (say, an older
#                          commit's, for a before/after) instead of building one
#   BENCH_PUBLISH_NS="1000 10000" BENCH_PUBLISH_TOPICS="1 100"
#   BENCH_PUBLISHERS=8 BENCH_PUBLISH_SECS=10 BENCH_PUBLISH_SIZE=60 (body bytes)
#   BENCH_CLUSTER_N=15000  subscribers in every setup of cluster; the nodes
#                          share them round-robin [15000]. A CI-sized run:
#                          BENCH_CLUSTER_N=60 BENCH_CLUSTER_SECS=2
#                          BENCH_CLUSTER_RATES=50 scripts/bench.sh cluster
#                          (about 20 s, exits 1 on any loss)
#   BENCH_CLUSTER_NODES=3 BENCH_CLUSTER_SECS=10 BENCH_CLUSTER_PUBLISHERS=8
#   BENCH_CLUSTER_RATES="20 100"   publishes per second, one run each per
#                          setup; "max" in the list: as fast as answers come
#                          (on Redis a publish waits for the append only, not
#                          for the nodes: a node that falls more than the
#                          stream's 1000 entries behind loses events, which
#                          the check reports)
#   BENCH_CLUSTER_LOCAL=0  skip the reference run of one node without Redis
#   BENCH_CLUSTER_FAULT=other-key   harness self-test: the last node of the
#                          cluster uses another --redis-key, so its subscribers
#                          miss every publish and the run must fail, naming them
#
# Every run is bounded: loadgen connects a fixed number of clients to a server on
# 127.0.0.1, runs fixed-length phases, closes its clients and exits; each server
# is started here, by PID, and stopped by that PID (SIGTERM, then SIGKILL after
# 10 s). Each client costs one fd in loadgen and one in the server, so this
# script raises the soft open-file limit to the hard limit and skips any N the
# limit cannot hold. tickcast also needs one thread (one PID) per client: see
# /proc/sys/kernel/pid_max. In cluster mode pubbench holds every subscriber's
# socket (15000) and so does the single node; each of 3 nodes holds a third.
set -euo pipefail

MODE="${1:-scale}"
case "$MODE" in
  scale | stress | smoke | publish | cluster) ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "bench.sh: unknown mode '$MODE' (expected scale, stress, publish, cluster or smoke)" >&2
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
TICKCAST_LOG="${RUST_LOG:-info}"
[ -n "${BENCH_TIMELINE:-}" ] && TICKCAST_LOG="$TICKCAST_LOG,tickcast::timeline=trace"
NODE_PEER="$ROOT/scripts/bench/node-peer"

log() { echo "bench.sh: $*" >&2; }

# ---- the server under test: started and stopped by PID ----

SERVER_PID=""
SERVER_URL=""

# Every other process this script has started and not yet stopped (cluster
# nodes, redis-server), by PID.
STARTED_PIDS=()
# Redis's temporary directory, removed at exit.
REDIS_DIR=""

# stop_pids PID...: SIGTERM to each, SIGKILL to any still running 10 s later;
# then each is reaped and forgotten, so that a PID reused later is never hit.
stop_pids() {
  local pid alive
  for pid in "$@"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 100); do
    alive=0
    for pid in "$@"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then
      log "process $pid ignored SIGTERM for 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  local keep=() started
  for started in "${STARTED_PIDS[@]}"; do
    [[ " $* " == *" $started "* ]] || keep+=("$started")
  done
  STARTED_PIDS=("${keep[@]}")
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  stop_pids "$SERVER_PID"
  SERVER_PID=""
}

cleanup() {
  stop_server
  # Nodes first (each takes its count out of Redis as it leaves), then Redis.
  [ "${#STARTED_PIDS[@]}" -eq 0 ] || stop_pids "${STARTED_PIDS[@]}"
  [ -z "$REDIS_DIR" ] || rm -rf "$REDIS_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server NAME INTERVAL LOGFILE: sets SERVER_PID and SERVER_URL.
start_server() {
  local name="$1" interval="$2" logfile="$3"
  # Empty the log first: the server truncates it only once its process has
  # started, and the loop below must not read the previous run's address.
  : >"$logfile"
  case "$name" in
    tickcast)
      RUST_LOG="$TICKCAST_LOG" "$TICKCAST" --ws-addr 127.0.0.1:0 --http-addr off \
        --interval "$interval" --max-clients 15500 2>"$logfile" &
      ;;
    tokio) "$PEER_TOKIO" --ws-addr 127.0.0.1:0 --interval "$interval" 2>"$logfile" & ;;
    # The same server as a user who cares about many clients tunes it: a 4 KiB
    # read buffer per connection instead of tungstenite's 128 KiB.
    tokio-tuned)
      "$PEER_TOKIO" --ws-addr 127.0.0.1:0 --interval "$interval" --read-buffer-size 4096 \
        2>"$logfile" &
      ;;
    node) node "$NODE_PEER/server.js" --ws-addr 127.0.0.1:0 --interval "$interval" 2>"$logfile" & ;;
    *)
      log "unknown server '$name' (expected tickcast, tokio, tokio-tuned or node)"
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

# start_tickcast LOGFILE ARGS...: a tickcast with its WebSocket and HTTP ports
# on free ports, and ARGS; sets STARTED_PID, STARTED_WS (its ws:// URL) and
# STARTED_HTTP (HOST:PORT) once it has logged both addresses. The caller stops
# it (stop_pids, or stop_server once it is SERVER_PID); until then it is in
# STARTED_PIDS, which the exit trap stops.
start_tickcast() {
  local logfile="$1"
  shift
  : >"$logfile"
  "$TICKCAST" --ws-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --max-clients 15500 "$@" \
    2>"$logfile" &
  STARTED_PID=$!
  STARTED_PIDS+=("$STARTED_PID")
  STARTED_WS=""
  STARTED_HTTP=""
  for _ in $(seq 100); do
    STARTED_WS="$(grep -o 'ws://[^ ]*' "$logfile" | head -n 1 || true)"
    STARTED_HTTP="$(grep -o 'page: http://[^/]*' "$logfile" | head -n 1 | sed 's|page: http://||' || true)"
    [ -n "$STARTED_WS" ] && [ -n "$STARTED_HTTP" ] && return 0
    kill -0 "$STARTED_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "tickcast did not report its addresses; its log ($logfile):"
  cat "$logfile" >&2
  exit 1
}

# run_tag MODE NAME N INTERVAL: the run's name in runs/ and logs/ (stress runs
# at several intervals, so its names carry the interval).
run_tag() {
  if [ "$1" = stress ]; then
    echo "$1-$2-$3-$4"
  else
    echo "$1-$2-$3"
  fi
}

# run_one MODE NAME N INTERVAL LOADGEN_ARGS...: one fresh server, one loadgen run.
# Returns loadgen's status (1 on a loss under --require-full-delivery), or 1 if
# the server died; either way the server is stopped first. Callers test it with
# `if` or `||`, which also switches `set -e` off inside: hence the explicit rc.
run_one() {
  local mode="$1" name="$2" n="$3" interval="$4"
  shift 4
  local tag
  tag="$(run_tag "$mode" "$name" "$n" "$interval")"
  local dir="$OUT/runs"
  [ "$mode" = smoke ] && dir="$OUT/smoke"
  start_server "$name" "$interval" "$OUT/logs/$tag.server.log"
  log "$tag: $name pid $SERVER_PID at $SERVER_URL"
  local rc=0
  # tickcast's client threads have 128 KiB stacks (its default): count their
  # resident pages.
  local stacks=()
  [ "$name" = tickcast ] && stacks=(--stack-kib 128)
  "$LOADGEN" --url "$SERVER_URL" --clients "$n" --interval "$interval" \
    --server "$name" --server-pid "$SERVER_PID" --mode "$mode" "${stacks[@]}" \
    --out "$dir/$tag.json" "$@" 2> >(tee "$OUT/logs/$tag.loadgen.log" >&2) || rc=$?
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "$tag: the server died during the run; its log:"
    tail -n 20 "$OUT/logs/$tag.server.log" >&2
    rc=1
  fi
  stop_server
  if [ -n "${BENCH_TIMELINE:-}" ] && [ "$name" = tickcast ] && [ "$rc" = 0 ]; then
    python3 "$ROOT/scripts/bench/timeline.py" "$OUT/logs/$tag.server.log" "$dir/$tag.json" \
      >"$OUT/timeline-$tag.md" || rc=1
    log "$tag: wrote $OUT/timeline-$tag.md"
  fi
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
  FEATURES=()
  [ "$MODE" = cluster ] && FEATURES=(--features redis)
  cargo build --release --quiet --bin tickcast "${FEATURES[@]}"
  cp "$ROOT/target/release/tickcast" "$TICKCAST.tmp" && mv -f "$TICKCAST.tmp" "$TICKCAST"
  TICKCAST_VERSION="$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
fi
CARGO_TARGET_DIR="$BENCH_TARGET" cargo build --release --quiet \
  --manifest-path "$ROOT/scripts/bench/Cargo.toml"
SERVERS="${BENCH_SERVERS:-tickcast tokio tokio-tuned node}"
[ "$MODE" = smoke ] && SERVERS=tickcast
[ "$MODE" = publish ] && SERVERS=tickcast
[ "$MODE" = cluster ] && SERVERS=tickcast
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
  # Memory: every client thread's stack stays within two pages (the thread's
  # own bookkeeping fills most of the first), the floor of a thread per client.
  # A third page touched once (a deeper call in the handshake, the join or an
  # echo) stays resident for the connection's life: 4 KiB more per client.
  if ! python3 - "$OUT/smoke/smoke-tickcast-50.json" <<'PY'
import json, sys
stacks = json.load(open(sys.argv[1]))["process"]["client_stack_rss_kib"]
deep = [(kib, n) for kib, n in stacks if kib > 8]
if not stacks or deep:
    sys.exit(f"client stacks over 8 KiB resident: {deep or 'none measured'} (all: {stacks})")
PY
  then
    log "smoke FAILED: a client thread's stack went past two pages (docs/PERFORMANCE.md, memory)"
    exit 1
  fi
  log "smoke passed: every client got every tick made after its 101, in two stack pages"
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
    start_tickcast "$OUT/logs/$tag.server.log" --interval "$interval"
    SERVER_PID="$STARTED_PID"
    local ws="$STARTED_WS" http="$STARTED_HTTP"
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

# ---- cluster: nodes on one Redis against one node ----

if [ "$MODE" = cluster ]; then
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
    log "redis-server and redis-cli are needed (Debian: apt-get install redis-server)"
    exit 1
  }
  CL_OUT="$OUT/cluster"
  mkdir -p "$CL_OUT"
  rm -f "$CL_OUT/"*.json
  N="${BENCH_CLUSTER_N:-15000}"
  NODES="${BENCH_CLUSTER_NODES:-3}"
  SECS="${BENCH_CLUSTER_SECS:-10}"
  RATES="${BENCH_CLUSTER_RATES:-20 100}"
  PUBLISHERS="${BENCH_CLUSTER_PUBLISHERS:-8}"
  # pubbench holds a socket per subscriber, and so does the single node; each
  # subscriber is also a thread in its node.
  if [ "$(fd_limit)" -le $((N + 200)) ]; then
    log "N=$N needs more open files than the limit of $(ulimit -n) (ulimit -Hn)"
    exit 1
  fi
  if [ "$(cat /proc/sys/kernel/pid_max)" -le $((N + 2000)) ]; then
    log "N=$N needs a thread per subscriber in one node: raise kernel.pid_max"
    exit 1
  fi
  FAILED_RUNS=()

  # start_redis LOGFILE: a redis-server of our own on a free port, without
  # persistence, in a temporary directory; sets REDIS_PID and REDIS_PORT.
  # A port another process holds makes it exit, and the next port is tried;
  # the PID Redis reports must be the one started here.
  start_redis() {
    local logfile="$1" port
    [ -n "$REDIS_DIR" ] || REDIS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/tickcast-bench-redis.XXXXXX")"
    for _ in $(seq 10); do
      port=$((20000 + RANDOM % 30000))
      : >"$logfile"
      redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$REDIS_DIR" --logfile "$logfile" --daemonize no &
      REDIS_PID=$!
      STARTED_PIDS+=("$REDIS_PID")
      for _ in $(seq 50); do
        if redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' |
          grep -qx "process_id:$REDIS_PID"; then
          REDIS_PORT="$port"
          return 0
        fi
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
      done
      stop_pids "$REDIS_PID"
    done
    log "redis-server did not start in 10 tries; its last log:"
    cat "$logfile" >&2
    exit 1
  }

  # healthz HOST:PORT: the status /healthz answers (503 while a node is not in
  # its cluster), or nothing; bash's /dev/tcp, so no curl is needed.
  healthz() {
    local fd status=""
    exec {fd}<>"/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null || return 0
    printf 'GET /healthz HTTP/1.0\r\nHost: bench\r\n\r\n' >&"$fd"
    read -r -t 2 _ status _ <&"$fd" || true
    exec {fd}>&-
    echo "$status"
  }

  # run_cluster TAG SETUP NODES RATE REDIS: a fresh Redis (REDIS=yes), NODES
  # fresh tickcasts on it (or one alone, REDIS=no), one pubbench run of N
  # subscribers spread over them, publishing on the first; then everything
  # is stopped, nodes before Redis.
  run_cluster() {
    local tag="$1" setup="$2" nodes="$3" rate="$4" redis="$5"
    local urls=() pids=() https=() redis_arg=() rate_arg=() rc=0 k key
    if [ "$redis" = yes ]; then
      start_redis "$OUT/logs/$tag.redis.log"
      redis_arg=(--redis-pid "$REDIS_PID")
      log "$tag: redis-server pid $REDIS_PID on port $REDIS_PORT"
    fi
    for k in $(seq "$nodes"); do
      local node_args=(--interval off)
      if [ "$redis" = yes ]; then
        key=bench
        if [ "${BENCH_CLUSTER_FAULT:-}" = other-key ] && [ "$nodes" -gt 1 ] && [ "$k" = "$nodes" ]; then
          key=bench-other
          log "$tag: BENCH_CLUSTER_FAULT=other-key: node $k reads another stream"
        fi
        node_args+=(--redis "redis://127.0.0.1:$REDIS_PORT" --redis-key "$key")
      fi
      start_tickcast "$OUT/logs/$tag.node$k.log" "${node_args[@]}"
      urls+=("$STARTED_WS")
      pids+=("$STARTED_PID")
      https+=("$STARTED_HTTP")
      log "$tag: node $k pid $STARTED_PID at $STARTED_WS and http://$STARTED_HTTP"
    done
    # Publishes answer 503 until a node has joined its cluster.
    for k in $(seq "$nodes"); do
      for _ in $(seq 100); do
        [ "$(healthz "${https[k - 1]}")" = 200 ] && break
        sleep 0.1
      done
      [ "$(healthz "${https[k - 1]}")" = 200 ] || log "$tag: node $k's /healthz is not 200 after 10 s"
    done
    [ "$rate" = max ] || rate_arg=(--rate "$rate")
    "$PUBBENCH" --ws "$(IFS=,; echo "${urls[*]}")" --http "${https[0]}" --server tickcast \
      --server-pid "$(IFS=,; echo "${pids[*]}")" "${redis_arg[@]}" --setup "$setup" \
      --subscribers "$N" --topics 1 --publishers "$PUBLISHERS" "${rate_arg[@]}" \
      --duration "${SECS}s" --size "${BENCH_PUBLISH_SIZE:-60}" --out "$CL_OUT/$tag.json" \
      2> >(tee "$OUT/logs/$tag.pubbench.log" >&2) || rc=$?
    for k in $(seq "$nodes"); do
      if ! kill -0 "${pids[k - 1]}" 2>/dev/null; then
        log "$tag: node $k died during the run; its log:"
        tail -n 20 "$OUT/logs/$tag.node$k.log" >&2
        rc=1
      fi
    done
    stop_pids "${pids[@]}"
    if [ "$redis" = yes ]; then
      stop_pids "$REDIS_PID"
    fi
    local warnings
    for k in $(seq "$nodes"); do
      warnings="$(grep -ciE 'warn|error|panick' "$OUT/logs/$tag.node$k.log" || true)"
      [ "$warnings" = 0 ] || log "$tag: $warnings warning/error lines in logs/$tag.node$k.log"
    done
    [ "$rc" = 0 ] || FAILED_RUNS+=("$tag")
    sleep 2 # let the last sockets leave TIME_WAIT bookkeeping behind
  }

  if [ $((N % NODES)) = 0 ]; then
    CLUSTER_SETUP="$NODES nodes × $((N / NODES)) clients, Redis"
  else
    CLUSTER_SETUP="$NODES nodes, $N clients round-robin, Redis"
  fi
  for rate in $RATES; do
    run_cluster "cluster-$NODES-nodes-$rate" "$CLUSTER_SETUP" "$NODES" "$rate" yes
    run_cluster "one-node-redis-$rate" "1 node × $N clients, Redis" 1 "$rate" yes
    if [ "${BENCH_CLUSTER_LOCAL:-1}" != 0 ]; then
      run_cluster "one-node-local-$rate" "1 node × $N clients, no Redis" 1 "$rate" no
    fi
  done

  COMMAND="scripts/bench.sh cluster"
  for var in BENCH_CLUSTER_FAULT BENCH_CLUSTER_LOCAL BENCH_CLUSTER_PUBLISHERS BENCH_PUBLISH_SIZE \
    BENCH_CLUSTER_RATES BENCH_CLUSTER_SECS BENCH_CLUSTER_NODES BENCH_CLUSTER_N BENCH_TICKCAST_BIN; do
    [ -z "${!var:-}" ] || COMMAND="$var=\"${!var}\" $COMMAND"
  done
  "$PUBBENCH" cluster-report "$CL_OUT" "$OUT/cluster.md"
  {
    echo
    echo "Machine: $(nproc) cores ($(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r), \
open-file limit $(ulimit -n), pid_max $(cat /proc/sys/kernel/pid_max); \
$(redis-server --version | cut -d' ' -f1-3); tickcast $TICKCAST_VERSION (--features redis); \
$PUBLISHERS publishers, ${BENCH_PUBLISH_SIZE:-60}-byte bodies, one topic, ticks off, ${SECS} s per run."
    echo
    echo "Command: \`$COMMAND\`"
  } >>"$OUT/cluster.md"
  cat "$OUT/cluster.md"
  log "wrote $OUT/cluster.md; runs in $CL_OUT, logs in $OUT/logs"
  if [ "${#FAILED_RUNS[@]}" -gt 0 ]; then
    log "FAILED: ${FAILED_RUNS[*]}: a subscriber missed a message or was lost, a publish"
    log "was refused, or a node died; the pubbench FAILED lines name them, in"
    for run in "${FAILED_RUNS[@]}"; do
      log "  $OUT/logs/$run.pubbench.log"
    done
    exit 1
  fi
  exit 0
fi

# ---- scale or stress ----

if [ "$MODE" = scale ]; then
  NS="${BENCH_NS:-1000 5000 10000 15000}"
  INTERVALS="${BENCH_INTERVAL:-1s}"
  LOAD_ARGS=(--ramp-rate "${BENCH_RAMP:-2000}" --settle 2s --rest "${BENCH_REST:-6}s"
    --duration "${BENCH_SECS:-20}s" --echo-clients 100 --echo-every 1s)
else
  NS="${BENCH_STRESS_N:-5000}"
  INTERVALS="${BENCH_STRESS_INTERVALS:-${BENCH_STRESS_INTERVAL:-10ms 5ms}}"
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
  for interval in $INTERVALS; do
    for name in $SERVERS; do
      run_one "$MODE" "$name" "$n" "$interval" "${LOAD_ARGS[@]}" ||
        FAILED_RUNS+=("$(run_tag "$MODE" "$name" "$n" "$interval")")
      sleep 2 # let the last sockets leave TIME_WAIT bookkeeping behind
    done
  done
done

# ---- report ----

MACHINE="$(nproc) cores ($(grep -m 1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r), \
open-file limit $(ulimit -n), pid_max $(cat /proc/sys/kernel/pid_max); tickcast $TICKCAST_VERSION"
COMMAND="scripts/bench.sh${1:+ $1}"
[ -n "${BENCH_NS:-}" ] && COMMAND="BENCH_NS=\"$BENCH_NS\" $COMMAND"
[ -n "${BENCH_SECS:-}" ] && COMMAND="BENCH_SECS=$BENCH_SECS $COMMAND"
[ -n "${BENCH_INTERVAL:-}" ] && COMMAND="BENCH_INTERVAL=$BENCH_INTERVAL $COMMAND"
[ -n "${BENCH_SERVERS:-}" ] && COMMAND="BENCH_SERVERS=\"$BENCH_SERVERS\" $COMMAND"
[ "$MODE" = stress ] && COMMAND="BENCH_STRESS_INTERVALS=\"$INTERVALS\" $COMMAND"
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
