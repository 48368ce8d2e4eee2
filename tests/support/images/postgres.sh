#!/usr/bin/env bash
# postgres.sh: build the tests' PostgreSQL image without any registry:
# Debian's own PostgreSQL 15 packages in a debootstrap'd root (minbase),
# imported with `docker import`. Cached: does nothing when the image exists.
#
#   tests/support/images/postgres.sh [IMAGE]     (default orca-test-postgres:15)
#
# Needs root (debootstrap), debootstrap and a Debian mirror ($DEBIAN_MIRROR,
# default http://deb.debian.org/debian). The entrypoint initialises an empty
# data directory and otherwise starts PostgreSQL on what it finds, as the
# official image does, but without fixing the data directory's owner or mode:
# a restore that got them wrong must show.
set -euo pipefail
image="${1:-orca-test-postgres:15}"
die() { printf 'postgres.sh: %s\n' "$*" >&2; exit 1; }
if docker image inspect "$image" >/dev/null 2>&1; then
    exit 0
fi
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
[ "$(id -u)" = 0 ] || die "debootstrap needs root"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
printf '==> debootstrap bookworm + postgresql-15 into %s (a minute or two)\n' "$root" >&2
debootstrap --variant=minbase --include=postgresql-15 bookworm "$root" "$mirror" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; die "debootstrap failed (see above)"; }
rm -f "$root.log"
# Debian's package created and started a cluster of its own: not ours.
rm -rf "$root/var/lib/postgresql/15" "$root/etc/postgresql/15"
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/* "$root/usr/share/doc" "$root/usr/share/man"
cat >"$root/usr/local/bin/docker-entrypoint.sh" <<'SH'
#!/bin/sh
# Start PostgreSQL on $PGDATA; initialise it first when it is empty.
set -e
: "${PGDATA:=/var/lib/postgresql/data}"
mkdir -p /var/run/postgresql
chown postgres:postgres /var/run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    runuser -u postgres -- initdb -D "$PGDATA" --auth-local=trust --auth-host=scram-sha-256 \
        --username="${POSTGRES_USER:-postgres}" >/dev/null
fi
exec runuser -u postgres -- postgres -D "$PGDATA" -c listen_addresses='' -c unix_socket_directories=/var/run/postgresql
SH
chmod 755 "$root/usr/local/bin/docker-entrypoint.sh"
printf '==> docker import %s\n' "$image" >&2
tar -C "$root" -c . | docker import \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/usr/local/bin/docker-entrypoint.sh"]' \
    --change 'LABEL org.orca-backup.test=true' \
    - "$image" >/dev/null
printf '==> %s ready\n' "$image" >&2
