#!/usr/bin/env bash
# Checks the production systemd unit, scripts/tickcast.service, without
# installing or starting it.
#
#   bash scripts/check-systemd-unit.sh [BINARY] [UNIT]
#
#   BINARY  the tickcast binary the unit is to run [default: target/release/tickcast,
#           under CARGO_TARGET_DIR if set; built with `cargo build --release` if missing]
#   UNIT    the unit file [default: scripts/tickcast.service]; another path is for
#           checking the checker, e.g. a copy with a typo, which must fail
#
# 1. `systemd-analyze verify` on a temporary copy of UNIT whose ExecStart= runs
#    BINARY instead of /usr/local/bin/tickcast (verify insists that the program
#    exists). An unknown key (`LimitNOFILEE=`) or a bad value (`TasksMax=lots`)
#    is only a warning, after which systemd-analyze may still exit 0 (systemd 252
#    does without --recursive-errors), so any line it prints about the unit fails
#    the check too.
# 2. Every flag on the ExecStart= lines, the commented-out ones included
#    (`--redis`, `--flash-policy-addr`), is one that `BINARY --help` lists:
#    systemd cannot know tickcast's flags, and a renamed one would stop the
#    service at its next start with exit status 2.
#
# systemd-analyze verify needs no running systemd: it works in a container whose
# PID 1 is something else. Where systemd-analyze is missing, with CI=true and as
# root this installs Debian's `systemd` package with apt-get; with CI=true
# otherwise it fails; elsewhere it prints "skipped: …" and exits 0.
#
# Exit status: 0 the unit is good (or the check was skipped), 1 it is not.
# This script starts no process that outlives it; its temporary directory is
# removed on exit.
set -euo pipefail

say() { printf 'check-systemd-unit: %s\n' "$*"; }
die() { printf 'check-systemd-unit: FAILED: %s\n' "$*" >&2; exit 1; }
# A path given on the command line, made absolute before the cd below.
absolute() { printf '%s/%s' "$(cd "$(dirname "$1")" && pwd)" "$(basename "$1")"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UNIT="$ROOT/scripts/tickcast.service"
if [[ $# -ge 2 ]]; then
    [[ -f "$2" ]] || die "no unit file at $2"
    UNIT="$(absolute "$2")"
fi
BINARY=""
if [[ $# -ge 1 ]]; then
    [[ -x "$1" && -f "$1" ]] || die "$1 is not an executable file"
    BINARY="$(absolute "$1")"
fi
cd "$ROOT"
# For messages: paths inside the repository, relative to it.
shown() { printf '%s' "${1#"$ROOT"/}"; }

# systemd-analyze, installed if we may.
if ! command -v systemd-analyze >/dev/null; then
    if [[ "${CI:-}" == true && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        say "installing systemd (for systemd-analyze) with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends systemd >/dev/null
        command -v systemd-analyze >/dev/null || die "installed systemd, yet no systemd-analyze on PATH"
    elif [[ "${CI:-}" == true ]]; then
        die "systemd-analyze not found, and only root with apt-get can install it here"
    else
        say "skipped: systemd-analyze not found (install the systemd package, e.g. apt-get install systemd)"
        exit 0
    fi
fi

# The binary the copy of the unit will name.
if [[ -z "$BINARY" ]]; then
    BINARY="${CARGO_TARGET_DIR:-target}/release/tickcast"
    if [[ ! -x "$BINARY" ]]; then
        say "building $BINARY (cargo build --release)"
        cargo build --release --quiet
    fi
    [[ -x "$BINARY" ]] || die "cargo build --release made no $BINARY"
    BINARY="$(absolute "$BINARY")"
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The copy keeps the unit's file name: systemd takes the unit's name (and type)
# from it. Only the program of ExecStart= changes, so line numbers in messages
# are the original file's.
NAME="$(basename "$UNIT")"
COPY="$WORK/$NAME"
grep -q '^ExecStart=' "$UNIT" || die "$(shown "$UNIT") has no ExecStart= line"
escaped="$(printf '%s' "$BINARY" | sed 's/[\\&#]/\\&/g')"
sed -E "s#^(ExecStart=[-@:+!]*)[^[:space:]]+#\\1${escaped}#" "$UNIT" > "$COPY"

# 1. systemd-analyze verify. --recursive-errors=no (systemd 250 and newer): the
# units ours depends on (network-online.target, …) are the machine's business.
options=(--man=no)
analyze_help="$(systemd-analyze --help 2>&1 || true)"
if grep -q -- '--recursive-errors' <<<"$analyze_help"; then
    options+=(--recursive-errors=no)
fi
say "$(systemd-analyze --version | sed -n 1p)"
say "systemd-analyze verify ${options[*]} $(shown "$UNIT") (ExecStart=$(shown "$BINARY"))"
status=0
output="$(systemd-analyze verify "${options[@]}" "$COPY" 2>&1)" || status=$?
# Messages name the copy by its path; show them with the real file's name.
output="${output//"$COPY"/"$(shown "$UNIT")"}"
about_unit="$(grep -F -e "$NAME" <<<"$output" || true)"
other="$(grep -v -F -e "$NAME" <<<"$output" || true)"
if [[ -n "$other" ]]; then
    say "note, about other units than ours:"
    printf '    %s\n' "$other"
fi
if [[ "$status" != 0 || -n "$about_unit" ]]; then
    printf '%s\n' "$about_unit" >&2
    die "systemd-analyze verify: $(shown "$UNIT") has errors or warnings (exit status $status)"
fi

# 2. The flags on the ExecStart= lines: from ExecStart= to the first line that
# does not end in a backslash, skipping over comment lines (systemd ignores
# comments inside a continued line, so a commented-out flag may sit there).
help="$("$BINARY" --help)"
flags="$(awk '/^ExecStart=/ { on = 1 }
              on { print; if ($0 !~ /\\$/ && $0 !~ /^[#;]/) on = 0 }' "$UNIT" |
    grep -o -E -- '(^|[[:space:]#])--[a-z][a-z-]*' | grep -o -E -- '--[a-z-]+' | sort -u ||
    true)"
[[ -n "$flags" ]] || die "no flags found on the ExecStart= lines of $(shown "$UNIT")"
unknown=()
for flag in $flags; do
    grep -q -E -- "(^|[[:space:]])${flag}([[:space:]]|,|$)" <<<"$help" || unknown+=("$flag")
done
if [[ ${#unknown[@]} -gt 0 ]]; then
    die "$(shown "$BINARY") --help does not list ${unknown[*]}, used in $(shown "$UNIT")'s ExecStart="
fi

say "ok: $(shown "$UNIT") passes systemd-analyze verify, and $(shown "$BINARY") knows its $(wc -w <<<"$flags") flags ($(tr '\n' ' ' <<<"$flags" | sed 's/ $//'))"
