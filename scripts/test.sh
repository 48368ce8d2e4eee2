#!/usr/bin/env bash
# test.sh: the test command. Every test: the Linux build against the real
# engine, then the Windows build (x86_64-pc-windows-gnu) under Wine: its unit
# tests, and end to end against the same engine (tests/windows).
#
# Docker-backed tests fail when ORCA_REQUIRE_DOCKER=1 and no engine answers;
# the Windows part fails when ORCA_REQUIRE_WINE=1 and Wine or the Windows
# target is missing (CI sets both), and is skipped with a notice otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '==> %s\n' "$*" >&2; }

# Every tool's binary, which the end-to-end tests run (cargo test builds a
# package's binaries only for its own integration tests).
say "cargo build --workspace --bins"
cargo build --workspace --bins
say "cargo test --workspace"
cargo test --workspace

win=x86_64-pc-windows-gnu
missing=""
command -v wine >/dev/null || missing="wine"
command -v x86_64-w64-mingw32-gcc >/dev/null || missing="$missing mingw"
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$win"; then
    missing="$missing the $win Rust target"
fi
if [ -n "$missing" ]; then
    if [ "${ORCA_REQUIRE_WINE:-0}" = 1 ]; then
        printf 'test: the Windows tests need%s (ORCA_REQUIRE_WINE=1)\n' " $missing" >&2
        exit 1
    fi
    printf '\n*** SKIPPED the Windows build under Wine: missing%s. ***\n\n' " $missing" >&2
    exit 0
fi
export WINEDEBUG=-all
scripts/wine-prefix.sh
say "the Windows build's unit tests under Wine"
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine cargo test --target "$win" --workspace --exclude orca-backup
say "the Windows build end to end under Wine"
cargo build --target "$win" --workspace --bins
ORCA_WINDOWS_BIN_DIR="$PWD/target/$win/debug" cargo test --test windows
