#!/usr/bin/env bash
# wine-prefix.sh: make the Wine prefix ready for the Windows build (idempotent).
#
#   - initialise it (wineboot) if it is new;
#   - install the bcryptprimitives.dll stand-in Wine 8.0 lacks (Rust >= 1.78
#     binaries exit 53 silently without it), built with mingw from
#     tests/support/wine/.
# Uses $WINEPREFIX (default ~/.wine). Needs wine and x86_64-w64-mingw32-gcc.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { printf 'wine-prefix: %s\n' "$*" >&2; exit 1; }
command -v wine >/dev/null || die "wine is not installed (apt-get install wine wine64)"
command -v x86_64-w64-mingw32-gcc >/dev/null || die "mingw is not installed (apt-get install gcc-mingw-w64-x86-64)"
export WINEDEBUG=-all
prefix="${WINEPREFIX:-$HOME/.wine}"
if [ ! -f "$prefix/system.reg" ]; then
    printf '==> initialising the Wine prefix %s\n' "$prefix" >&2
    wineboot -i >/dev/null 2>&1 || true
    wineserver -w || true
fi
[ -d "$prefix/drive_c/windows/system32" ] || die "the Wine prefix $prefix has no system32 after wineboot"
dll="$prefix/drive_c/windows/system32/bcryptprimitives.dll"
if [ ! -f "$dll" ]; then
    printf '==> installing the bcryptprimitives.dll stand-in into %s\n' "$prefix" >&2
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    x86_64-w64-mingw32-gcc -shared -O2 -o "$tmp/bcryptprimitives.dll" \
        "$repo/tests/support/wine/bcryptprimitives.c" "$repo/tests/support/wine/bcryptprimitives.def" -ladvapi32
    cp "$tmp/bcryptprimitives.dll" "$dll"
fi
