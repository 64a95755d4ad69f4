#!/usr/bin/env bash
# Runs every tickcast test: the Rust tests, then the browser test.
#
#   bash scripts/test.sh                  everything
#   SKIP_BROWSER=1 bash scripts/test.sh   Rust tests only
#
# 1. `cargo test --all-targets` (unit and integration tests, examples, benches),
#    then `cargo test --doc` (--all-targets leaves the doctests out).
# 2. The cluster: `cargo test --features redis --lib --test cluster`, the unit
#    tests with the `redis` feature and tests/cluster/, which start real
#    `redis-server`s. Without redis-server they say so and pass, except with
#    CI=true, where they fail (.ci/run installs Debian's redis-server).
# 3. `cargo build --release --features redis`, then tests/browser/e2e.mjs (which
#    also runs a redis-server, three nodes and scripts/nginx/cluster.conf): it starts the release
#    binary on port 0, drives the page in headless Chromium through
#    playwright-core, and stops the server again (by its PID) whatever happens.
#
# The browser part installs what it needs: `npm ci` in tests/browser when
# node_modules is missing or older than package-lock.json, and Debian's chromium
# with apt-get when /usr/bin/chromium is missing and we are root, and the same for
# nginx-light and openssl (the TLS proxy check). Otherwise it stops and says how to
# install them. Playwright never downloads a browser here.
#
# Environment: SKIP_BROWSER=1 skips step 3; CHROMIUM_PATH names another Chromium,
# NGINX_PATH another nginx;
# CARGO_TARGET_DIR is honoured when finding the release binary.
#
# This script starts no long-running process of its own, so it has none to clean up.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

step "cargo test --all-targets"
cargo test --all-targets
step "cargo test --doc"
cargo test --doc
step "cargo test --features redis --lib --test cluster"
cargo test --features redis --lib --test cluster

if [[ "${SKIP_BROWSER:-}" == 1 ]]; then
    step "browser test skipped (SKIP_BROWSER=1)"
    exit 0
fi

step "cargo build --release --features redis"
cargo build --release --features redis

# Node.js and npm run the browser test; they are not ours to install.
command -v node >/dev/null || die "node not found: install Node.js 20 or newer (e.g. apt-get install nodejs npm), or run with SKIP_BROWSER=1"
command -v npm >/dev/null || die "npm not found: install npm (e.g. apt-get install npm), or run with SKIP_BROWSER=1"

# npm writes node_modules/.package-lock.json on every install; a package-lock.json
# newer than that means the dependencies changed since.
BROWSER_DIR="$ROOT/tests/browser"
if [[ ! -f "$BROWSER_DIR/node_modules/.package-lock.json" ||
      "$BROWSER_DIR/package-lock.json" -nt "$BROWSER_DIR/node_modules/.package-lock.json" ]]; then
    step "npm ci (tests/browser)"
    (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund)
fi

CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
    if [[ -z "${CHROMIUM_PATH:-}" && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        step "apt-get install chromium"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq chromium >/dev/null
        [[ -x "$CHROMIUM" ]] || die "apt-get installed chromium but $CHROMIUM is still missing"
    else
        die "no Chromium at $CHROMIUM: install it (Debian/Ubuntu: sudo apt-get install chromium), set CHROMIUM_PATH to another Chromium, or run with SKIP_BROWSER=1"
    fi
fi

# nginx and openssl run the README's TLS proxy snippet in front of the server.
NGINX="${NGINX_PATH:-/usr/sbin/nginx}"
if [[ ! -x "$NGINX" ]] || ! command -v openssl >/dev/null; then
    if [[ -z "${NGINX_PATH:-}" && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        step "apt-get install nginx-light openssl"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq nginx-light openssl >/dev/null
        [[ -x "$NGINX" ]] || die "apt-get installed nginx-light but $NGINX is still missing"
    else
        die "no nginx at $NGINX or no openssl: install them (Debian/Ubuntu: sudo apt-get install nginx-light openssl), set NGINX_PATH, or run with SKIP_BROWSER=1"
    fi
fi

step "browser test (tests/browser/e2e.mjs)"
TICKCAST_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tickcast" \
    CHROMIUM_PATH="$CHROMIUM" \
    NGINX_PATH="$NGINX" \
    node "$BROWSER_DIR/e2e.mjs"
