#!/usr/bin/env bash
# Fuzzes tickcast's own parsers with cargo-fuzz (libFuzzer), every target for a
# bounded time, and reports what each run did.
#
#   scripts/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
#   SECONDS_PER_TARGET  libFuzzer's -max_total_time for each target (default 60)
#   TARGET...           some of the targets (default: all, see `cargo fuzz list
#                       --fuzz-dir scripts/fuzz`); each checks the properties in
#                       scripts/fuzz/src/lib.rs
#
# Prints one line per target: executions, executions per second, seconds, corpus
# size, coverage and findings. Exits 1 if any target crashed (a property failed or
# the code panicked): the reproducer is in scripts/fuzz/artifacts/<target>/, the
# whole libFuzzer log in scripts/fuzz/work/<target>.log; replay it with
#   cargo fuzz run --fuzz-dir scripts/fuzz --sanitizer none <target> <file>
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler, but no nightly
# Rust: without a sanitizer, stable builds libFuzzer targets. tickcast has no
# unsafe code, so AddressSanitizer adds little; to use it anyway on a nightly
# toolchain: RUSTUP_TOOLCHAIN=nightly FUZZ_SANITIZER=address scripts/fuzz/run.sh
#
# The committed seeds in scripts/fuzz/corpus/<target>/ are only read. What
# libFuzzer discovers goes to scripts/fuzz/work/corpus/<target>/ (git-ignored) and
# is reused by the next run. `cargo test` checks the same properties over the
# seeds and mutations of them without cargo-fuzz (tests/fuzz_smoke.rs).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
fuzz_dir=scripts/fuzz
seconds=${1:-60}
shift || true
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
sanitizer=${FUZZ_SANITIZER:-none}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo fuzz list --fuzz-dir "$fuzz_dir")
fi

echo "==> building ${#targets[@]} fuzz targets (sanitizer: $sanitizer)"
cargo fuzz build --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer"

# libFuzzer options for every target. A single input slower than 10 s is a hang.
common=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)

# Extra options per target: handshake inputs must be able to outgrow the 8 KiB
# head limit (libFuzzer's default longest input is 4 KiB).
extra_args() {
    case $1 in
        handshake) echo "-max_len=12288" ;;
        *) ;;
    esac
}

mkdir -p "$fuzz_dir/work/corpus"
crashed=0
summary=()
for target in "${targets[@]}"; do
    work="$fuzz_dir/work/corpus/$target"
    log="$fuzz_dir/work/$target.log"
    mkdir -p "$work"
    echo "==> $target: ${seconds}s"
    started=$(date +%s)
    status=0
    # shellcheck disable=SC2046 # extra_args is a list of words on purpose
    cargo fuzz run --fuzz-dir "$fuzz_dir" --sanitizer "$sanitizer" "$target" \
        "$work" "$fuzz_dir/corpus/$target" \
        -- "${common[@]}" $(extra_args "$target") >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - started))

    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    execs=$(stat number_of_executed_units)
    rate=$(stat average_exec_per_sec)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    corpus=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$last")
    if [[ $status -eq 0 ]]; then
        findings=none
    else
        crashed=1
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        why=$(grep -m1 -A1 'panicked at' "$log" | tail -1 || true)
        findings="CRASH (exit $status) ${artifact:-see $log}: ${why:-see $log}"
    fi
    summary+=("$(printf '%-19s %12s %9s %6s %7s %6s  %s' "$target" "${execs:-?}" \
        "${rate:-?}" "$elapsed" "${corpus:-?}" "${cov:-?}" "$findings")")
done

echo
printf '%-19s %12s %9s %6s %7s %6s  %s\n' target executions exec/s secs corpus cov findings
printf '%s\n' "${summary[@]}"
if [[ $crashed -ne 0 ]]; then
    echo "==> a target crashed: see the reproducer(s) above" >&2
    exit 1
fi
