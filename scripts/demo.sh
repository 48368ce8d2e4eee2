#!/usr/bin/env bash
# demo.sh: try orca-backup without Orca.
#
# Makes a throwaway Orca-like volume (orca-demo.apphost-<random>-sql-data,
# which no real Aspire app creates) filled with sample SQL-Server-like files,
# backs it up twice with the real workflow into a temporary ORCA_HOME, lists
# and verifies the backups, restores one into a second throwaway volume, and
# removes everything it created (volumes, containers, images, files).
# Needs Rust and Docker; pulls nothing. DEMO_SIZE_MIB sets the volume size
# (default 64); ORCA_BIN_DIR uses already built tools.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mib="${DEMO_SIZE_MIB:-64}"
say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

if [ -n "${ORCA_BIN_DIR:-}" ]; then
    bin="$ORCA_BIN_DIR"
else
    say "Building the tools (cargo build --release)"
    (cd "$repo" && cargo build --release --quiet --workspace --bins)
    bin="$repo/target/release"
fi
export PATH="$bin:$PATH"

hex="$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')"
volume="orca-demo.apphost-${hex}-sql-data"
restored="orca-demo-restored-${hex}"
home="$(mktemp -d "${TMPDIR:-/tmp}/orca-demo.XXXXXX")"
export ORCA_HOME="$home"
unset ORCA_CONFIG
images_before="$(docker images --format '{{.Repository}}:{{.Tag}}')"

cleanup() {
    set +e
    say "Cleaning up what the demo created"
    for v in "$volume" "$restored"; do
        for c in $(docker ps -aq --filter "volume=$v"); do docker rm -f -v "$c" >/dev/null; done
        docker volume rm -f "$v" >/dev/null 2>&1 && echo "removed volume $v" >&2
    done
    for img in orca-backup-helper:empty orca-test-empty:1; do
        if ! grep -qx "$img" <<<"$images_before" && docker image inspect "$img" >/dev/null 2>&1; then
            docker image rm "$img" >/dev/null && echo "removed image $img" >&2
        fi
    done
    rm -rf "$home" && echo "removed $home" >&2
}
trap cleanup EXIT

cat > "$home/config.json" <<JSON
{
  "volume_filter": "orca-demo.apphost"
}
JSON

say "Creating volume $volume with ${size_mib} MiB of SQL-Server-like data"
docker volume create "$volume" >/dev/null
orca-gen-volume "$volume" "$size_mib" 1

say "A timestamped backup: scripts/orca-backup.sh"
ORCA_BIN_DIR="$bin" "$repo/scripts/orca-backup.sh" >/dev/null

say "A named backup with a description and a tag"
ORCA_BIN_DIR="$bin" "$repo/scripts/orca-backup.sh" --name demo-milestone \
    --description "made by scripts/demo.sh" --tag demo --compression zstd >/dev/null

say "The catalog: orca-list --format table"
orca-list --format table

say "Verifying every backup again: orca-list --verify"
orca-list --verify --format table

say "Restoring the milestone into a new volume: orca-restore --to-new-volume"
orca-restore "$home/backups/orca-db-demo-milestone.tar.zst" --to-new-volume "$restored" >/dev/null

say "The retention policy, as a dry run: what would go if named backups counted too"
orca-prune --dry-run --include-named --max-count 1 --max-age-days 0 >/dev/null

say "Done. Everything above ran against the throwaway volume $volume."
