#!/usr/bin/env bash
# orca-backup.sh: back up the Orca SQL Server volume in one command.
#
#   find -> name -> export -> verify -> (drill) -> (copy) -> (prune) -> report
#
# Checks its arguments, builds the tools when needed (from this repository),
# then runs `orca-backup`, the native binary that runs every step in one
# process (the step-by-step tools and their pipe do the same, one process
# each). Prints the report on stderr and the final JSON record on stdout;
# exits with the code of the step that failed first (see README: exit codes).
set -uo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/orca-backup.sh [OPTIONS]

Back up the Orca SQL Server volume: find it, name the backup, export it,
verify it, copy it off the machine (with --copy-to or copy_to in config), and
(with --auto-cleanup or auto_cleanup in config) prune old ones.

Options:
  --name NAME           a named backup: orca-db-NAME.tar.gz (default: timestamped)
  --volume NAME         back up this volume instead of searching for Orca's
  --overwrite           replace an existing backup of the same name
  --stop                stop SQL Server during the copy (consistent), start it again after
  --consistency HOW     auto (default: a hot copy when the database can give one, else
                        a live copy with a warning), hot, stop or live
  --compression C       gzip (default), zstd or none
  --auto-cleanup        apply the retention policy after a verified backup
  --description TEXT    keep a description in the backup's manifest
  --tag TAG             tag the backup (repeatable)
  --encrypt             encrypt (age) to the recipients in config (encryption.recipients)
  --recipient KEY       encrypt to this age or SSH public key (repeatable)
  --recipients-file F   encrypt to the recipients listed in F
  --passphrase          encrypt with a passphrase ($ORCA_PASSPHRASE_FILE, else asked)
  --identity PATH       let the verify step open the encrypted backup (repeatable)
  --drill               start the database on a scratch copy of the new backup and
                        check it (orca-drill) before copying and pruning
  --drill-image IMAGE   the drill's image (default: the database container's)
  --drill-env-file F    the drill's environment (KEY=VALUE lines)
  --drill-probe CMD     the drill's check, run inside the container
  --drill-mount-point P where the drill's image keeps its data
  --drill-timeout S     how long the database may take to start (seconds)
  --copy-to URL         copy the verified backup to s3://bucket[/prefix] or a directory
                        (repeatable; default: copy_to in config, else no copy)
  --notify URL          tell this URL how it went (repeatable; shoutrrr-style: smtp://,
                        generic+https://, ntfy://, gotify://, slack://, discord://,
                        teams://, hc://; default: notify.urls in config)
  --notify-level L      error (default: failures only) or info (every run)
  --config PATH         config file (default: $ORCA_CONFIG, else ~/.claude-orca/config.json)
  -h, --help            this help

Binaries: $ORCA_BIN_DIR if set; else this repository's target/release (built
with cargo when needed); else the orca-* tools on PATH.
USAGE
}

args=("$@")
find_args=() name_args=() export_args=() verify_args=() copy_args=(--if-configured) drill=0 drill_args=() common=() prune=(--only-if-auto-cleanup)
bad() { echo "orca-backup.sh: $*; see scripts/orca-backup.sh --help" >&2; exit 2; }
# The value of an option that takes one: `--name X` or `--name=X`. A value
# given apart may not look like an option (`--name --overwrite` is a missing
# value); one that starts with `-` is given as `--name=-x`. Values go on to
# the tools as `--flag=VALUE`, so none is read as a flag of theirs.
value=""
takes() {
    local opt="$1"; shift
    if [ "$inline" = 1 ]; then
        value="$inline_value"; shift_by=1
    elif [ $# -ge 1 ]; then
        case "$1" in
            -*) bad "$opt needs a value (a value starting with '-' is given as $opt=VALUE)" ;;
        esac
        value="$1"; shift_by=2
    else
        bad "$opt needs a value"
    fi
    if [ -z "$value" ]; then bad "$opt needs a value (it was given an empty one)"; fi
}
while [ $# -gt 0 ]; do
    arg="$1" inline=0 inline_value=""
    case "$arg" in
        --*=*) inline=1; inline_value="${arg#*=}"; arg="${arg%%=*}" ;;
    esac
    shift_by=1
    case "$arg" in
        --name) takes "$arg" "${@:2}"; name_args+=("--name=$value") ;;
        --volume) takes "$arg" "${@:2}"; find_args+=("--volume=$value") ;;
        --overwrite) name_args+=(--overwrite) ;;
        --stop) export_args+=(--stop) ;;
        --consistency) takes "$arg" "${@:2}"
            case "$value" in auto|hot|stop|live) ;; *) bad "--consistency must be auto, hot, stop or live, not '$value'" ;; esac
            export_args+=("--consistency=$value") ;;
        --compression) takes "$arg" "${@:2}"
            case "$value" in gzip|zstd|none) ;; *) bad "--compression must be gzip, zstd or none, not '$value'" ;; esac
            name_args+=("--compression=$value") ;;
        --auto-cleanup) prune=() ;;
        --description) takes "$arg" "${@:2}"; export_args+=("--description=$value") ;;
        --tag) takes "$arg" "${@:2}"; export_args+=("--tag=$value") ;;
        --encrypt) export_args+=(--encrypt) ;;
        --recipient) takes "$arg" "${@:2}"; export_args+=("--recipient=$value") ;;
        --recipients-file) takes "$arg" "${@:2}"; export_args+=("--recipients-file=$value") ;;
        --passphrase) export_args+=(--passphrase) ;;
        --identity) takes "$arg" "${@:2}"; verify_args+=("--identity=$value") ;;
        --drill) drill=1 ;;
        --drill-image) takes "$arg" "${@:2}"; drill=1; drill_args+=("--image=$value") ;;
        --drill-env-file) takes "$arg" "${@:2}"; drill=1; drill_args+=("--env-file=$value") ;;
        --drill-probe) takes "$arg" "${@:2}"; drill=1; drill_args+=("--probe=$value") ;;
        --drill-mount-point) takes "$arg" "${@:2}"; drill=1; drill_args+=("--mount-point=$value") ;;
        --drill-timeout) takes "$arg" "${@:2}"
            case "$value" in *[!0-9]*) bad "--drill-timeout must be a whole number of seconds, not '$value'" ;; esac
            drill=1; drill_args+=("--timeout=$value") ;;
        --copy-to) takes "$arg" "${@:2}"; copy_args+=("--to=$value") ;;
        --notify) takes "$arg" "${@:2}" ;;
        --notify-level) takes "$arg" "${@:2}"
            case "$value" in error|info) ;; *) bad "--notify-level must be error or info, not '$value'" ;; esac ;;
        --config) takes "$arg" "${@:2}"; common+=("--config=$value") ;;
        -h|--help) usage; exit 0 ;;
        *) bad "unknown option '$1'" ;;
    esac
    if [ "$inline" = 1 ] && [ "$shift_by" = 1 ] && [ -z "$value" ]; then
        bad "$arg takes no value"
    fi
    value=""
    shift "$shift_by"
done

tools=(orca-backup)
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ -n "${ORCA_BIN_DIR:-}" ]; then
    bin="$ORCA_BIN_DIR"
elif [ -f "$repo/Cargo.toml" ] && command -v cargo >/dev/null 2>&1; then
    # orca-restore carries orca-walk for linux/amd64 and arm64 engines
    # (bins/orca-restore/build.rs); without these targets it still works, slower.
    if command -v rustup >/dev/null 2>&1; then
        for t in x86_64-unknown-linux-musl aarch64-unknown-linux-musl; do
            if ! rustup target list --installed 2>/dev/null | grep -qx "$t"; then
                echo "orca-backup.sh: adding the Rust target $t (orca-restore's in-place read-back; once)..." >&2
                rustup target add "$t" >/dev/null 2>&1 \
                    || echo "orca-backup.sh: could not add $t: restores will read volumes back more slowly" >&2
            fi
        done
    fi
    # A no-op when the binaries are up to date; the first build compiles
    # every dependency, which takes a while: say so, and show cargo's progress.
    if [ ! -x "$repo/target/release/orca-export" ]; then
        echo "orca-backup.sh: first run: building the tools (cargo build --release); this takes about 15-25 minutes on a 2-core machine, 5-10 on a fast one, and happens once" >&2
    else
        echo "orca-backup.sh: checking that the tools are up to date (cargo build --release)..." >&2
    fi
    if ! (cd "$repo" && cargo build --release --workspace --bins); then
        echo "❌ Backup failed: cannot build the tools with cargo (see the errors above)" >&2
        exit 1
    fi
    bin="$repo/target/release"
else
    bin=""
fi
for t in "${tools[@]}"; do
    if [ -n "$bin" ] && [ ! -x "$bin/$t" ]; then
        echo "❌ Backup failed: $bin/$t is missing; build it with 'cargo build --release' or set ORCA_BIN_DIR" >&2
        exit 1
    fi
    if [ -z "$bin" ] && ! command -v "$t" >/dev/null 2>&1; then
        echo "❌ Backup failed: $t is not on PATH; install Rust and run this from the repository, or set ORCA_BIN_DIR" >&2
        exit 1
    fi
done
# The arguments as given: orca-backup takes the same ones (checked above, so
# a mistake is answered here, with this script's help). exec: a signal sent
# to this script reaches orca-backup itself.
if [ -n "$bin" ]; then
    exec "$bin/orca-backup" ${args[@]+"${args[@]}"} </dev/null
else
    exec orca-backup ${args[@]+"${args[@]}"} </dev/null
fi
