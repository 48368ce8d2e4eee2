#!/usr/bin/env bash
# fuzz.sh: run every fuzz target (fuzz/fuzz_targets/) for a bounded time and
# report executions and crashes.
#
#   tar_reader  the tar reader and restore's safety scan (seeded with the
#               real-world corpus in ../shared/corpus/tar when it is there)
#   record      the JSON record on stdin
#   config      config.json
#   names       backup name sanitizing and parsing
#   durations   --since ages and times
#
# FUZZ_SECONDS (default 60) per target. Uses cargo-fuzz (installed when
# missing) with libFuzzer on the stable toolchain, hence without a sanitizer
# (-s none: Rust's own checks, overflow checks and asserts still fire; ASan
# needs a nightly toolchain). Exits 1 when a target crashed; the inputs are
# in fuzz/artifacts/<target>/.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${FUZZ_SECONDS:-60}"
targets=(tar_reader record config names durations)
say() { printf '==> %s\n' "$*" >&2; }

command -v cargo-fuzz >/dev/null 2>&1 || { say "installing cargo-fuzz"; cargo install cargo-fuzz >&2; }
cd "$repo/fuzz"
corpus="$repo/../shared/corpus/tar"
mkdir -p corpus/tar_reader
if [ -d "$corpus" ]; then
    for f in "$corpus"/*.tar; do cp -n "$f" corpus/tar_reader/ 2>/dev/null || true; done
fi
say "building the fuzz targets (release, overflow checks on)"
RUSTFLAGS="${RUSTFLAGS:-} -C overflow-checks=on" cargo fuzz build -s none --release >&2

printf '| target | seconds | executions | crashes |\n|---|---|---|---|\n'
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    log="$(mktemp)"
    RUSTFLAGS="${RUSTFLAGS:-} -C overflow-checks=on" cargo fuzz run "$t" -s none --release -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=1024 -timeout=10 \
        >"$log" 2>&1 || true
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -1)
    after=$(find "artifacts/$t" -type f | wc -l)
    crashes=$((after - before))
    if [ "$crashes" -gt 0 ] || grep -q 'panicked at' "$log"; then
        failed=1
        grep -m1 -A3 'panicked at' "$log" >&2 || true
    fi
    printf '| %s | %s | %s | %s |\n' "$t" "$seconds" "${execs:-?}" "$crashes"
    rm -f "$log"
done
exit "$failed"
