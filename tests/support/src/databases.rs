//! Databases for the drill tests, built here without any registry:
//!
//! - [`postgres_image`]: a real PostgreSQL 15 from Debian's packages
//!   (`tests/support/images/postgres.sh`: debootstrap + `docker import`),
//!   cached as an image between runs;
//! - [`mssql_standin_image`]: a stand-in for SQL Server, since no SQL Server
//!   image can be had here: a busybox image whose `sqlservr` "starts" after a
//!   moment (or fails when the volume has no `data/master.mdf`) and whose
//!   `/opt/mssql-tools18/bin/sqlcmd` answers like sqlcmd from files in the
//!   volume (`standin-databases`, `standin-tables`, `standin-corrupt`,
//!   `standin-password`) and appends its arguments and `SQLCMDPASSWORD` to
//!   `/tmp/sqlcmd.log`. For hot copies it honours SQL Server 2022's snapshot
//!   freeze (`SUSPEND_FOR_SNAPSHOT_BACKUP = ON/OFF`, the `SERVERPROPERTY`s
//!   and `sys.dm_server_suspend_status`), in `-Q` and in batches on stdin;
//!   `STANDIN_MAJOR=15` makes it a SQL Server 2019, which has no freeze.
//!   With `standin-writer` in the volume, `sqlservr` runs a writer that
//!   writes a counter to `data/orca.ldf` and then `data/orca.mdf`, and waits
//!   while frozen; `/tmp/freeze.log` records each freeze and thaw with the
//!   counter at that moment.

use std::process::Command;
use std::sync::OnceLock;

use crate::{TEST_LABEL, docker, docker_with_input};

/// The real PostgreSQL image.
pub const POSTGRES_IMAGE: &str = "orca-test-postgres:15";
/// The SQL Server stand-in.
pub const MSSQL_STANDIN_IMAGE: &str = "orca-test-mssql-standin:4";

/// Make sure [`POSTGRES_IMAGE`] exists (building it takes a minute or two,
/// once); `None` (skip loudly) when it cannot be built here, or a panic when
/// `ORCA_REQUIRE_POSTGRES=1`.
pub fn postgres_image(test: &str) -> Option<&'static str> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        if docker(&["image", "inspect", POSTGRES_IMAGE])
            .status
            .success()
        {
            return Ok(());
        }
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("images/postgres.sh");
        let out = Command::new(&script)
            .arg(POSTGRES_IMAGE)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    match r {
        Ok(()) => Some(POSTGRES_IMAGE),
        Err(why) => {
            if std::env::var("ORCA_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("{test}: the PostgreSQL image is required (ORCA_REQUIRE_POSTGRES=1): {why}");
            }
            eprintln!("\n*** SKIPPED {test}: cannot build the PostgreSQL image: {why} ***\n");
            None
        }
    }
}

const SQLSERVR: &str = r#"#!/bin/sh
# Stand-in for SQL Server: refuses a volume without master.mdf, as the
# real one does, else "starts" after a moment and runs until stopped.
if [ ! -f /var/opt/mssql/data/master.mdf ]; then
    echo "Error: The master database file /var/opt/mssql/data/master.mdf could not be opened."
    exit 1
fi
echo "SQL Server is starting (stand-in)."
sleep 2
if [ -f /var/opt/mssql/standin-writer ]; then
    # A database's writes: the log, then the data file, with the same
    # counter; none while frozen (paused-at says where it stopped, written
    # once and renamed into place: a reader never sees it half written).
    (
        n=$(cat /var/opt/mssql/data/orca.mdf 2>/dev/null || echo 0)
        while :; do
            if [ -e /tmp/frozen ]; then
                if [ ! -e /tmp/paused-at ]; then
                    echo "$n" > /tmp/paused-at.new
                    mv /tmp/paused-at.new /tmp/paused-at
                fi
                sleep 0.02
                continue
            fi
            rm -f /tmp/paused-at
            n=$((n + 1))
            echo "$n" > /var/opt/mssql/data/orca.ldf
            sleep 0.01
            echo "$n" > /var/opt/mssql/data/orca.mdf
            echo "$n" > /tmp/written
        done
    ) &
fi
touch /tmp/ready
echo "SQL Server is now ready for client connections (stand-in)."
exec sleep 3600
"#;

const SQLCMD: &str = r#"#!/bin/sh
# Stand-in for sqlcmd: records how it was called, answers like sqlcmd.
{
    printf 'ARGS'
    for a in "$@"; do printf ' [%s]' "$a"; done
    printf '\n'
    printf 'SQLCMDPASSWORD=%s\n' "$SQLCMDPASSWORD"
} >> /tmp/sqlcmd.log
q=""
prev=""
banner=""
for a in "$@"; do
    if [ "$prev" = "-Q" ]; then q="$a"; fi
    if [ "$a" = "-?" ]; then banner=1; fi
    prev="$a"
done
if [ -n "$banner" ]; then
    echo "Microsoft (R) SQL Server Command Line Tool (stand-in)"
    exit 0
fi
if [ ! -f /tmp/ready ]; then
    echo "Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : Login timeout expired."
    exit 1
fi
want=$(cat /var/opt/mssql/standin-password 2>/dev/null)
if [ -n "$want" ] && [ "$SQLCMDPASSWORD" != "$want" ]; then
    echo "Sqlcmd: Error: Microsoft ODBC Driver 18 for SQL Server : Login failed for user 'sa'.."
    exit 1
fi
major=${STANDIN_MAJOR:-16}
frozen() { [ -e /tmp/frozen ]; }
run() {
    case "$1" in
        *"SUSPEND_FOR_SNAPSHOT_BACKUP = ON"*)
            if [ "$major" -lt 16 ]; then
                echo "Msg 102, Level 15, State 1, Server standin, Line 1"
                echo "Incorrect syntax near 'SUSPEND_FOR_SNAPSHOT_BACKUP'."
                return 1
            fi
            rm -f /tmp/paused-at
            touch /tmp/frozen
            i=0
            while [ -f /var/opt/mssql/standin-writer ] && [ ! -f /tmp/paused-at ] && [ $i -lt 100 ]; do
                sleep 0.02
                i=$((i + 1))
            done
            echo "freeze $(date +%s) $(cat /tmp/paused-at 2>/dev/null)" >> /tmp/freeze.log
            ;;
        *"SUSPEND_FOR_SNAPSHOT_BACKUP = OFF"*)
            if frozen; then
                echo "thaw $(date +%s) $(cat /tmp/paused-at 2>/dev/null)" >> /tmp/freeze.log
                rm -f /tmp/frozen
            fi
            ;;
        *ProductMajorVersion*) echo "ORCA|version|$major|$major.0.4135.4" ;;
        *IsServerSuspendedForSnapshotBackup*)
            if [ "$major" -ge 16 ] && frozen; then echo "ORCA|state|1|1"; else echo "ORCA|state|0|0"; fi
            ;;
        *sys.dm_server_suspend_status*) if frozen; then echo "ORCA|db|Orca"; fi ;;
        *"SELECT 1"*) echo 1 ;;
        *sys.master_files*) echo /var/opt/mssql/data/master.mdf ;;
        *sys.databases*) cat /var/opt/mssql/standin-databases ;;
        *"DBCC CHECKDB"*)
            if [ -f /var/opt/mssql/standin-corrupt ]; then
                cat /var/opt/mssql/standin-corrupt
                return 1
            fi
            ;;
        *sys.tables*) cat /var/opt/mssql/standin-tables ;;
        *) echo "stand-in sqlcmd: unexpected query: $1"; return 1 ;;
    esac
}
if [ -n "$q" ]; then
    run "$q"
    exit $?
fi
# Batches on stdin, each ended by GO, until end of file.
batch=""
while IFS= read -r line; do
    case "$line" in
        GO|go) run "$batch"; batch="" ;;
        *) batch="$batch $line" ;;
    esac
done
exit 0
"#;

/// Make sure [`MSSQL_STANDIN_IMAGE`] exists (from the host's static busybox).
pub fn mssql_standin_image() -> &'static str {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        if docker(&["image", "inspect", MSSQL_STANDIN_IMAGE])
            .status
            .success()
        {
            return;
        }
        crate::busybox_image();
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("a static busybox (apt-get install busybox-static)");
        let tar = crate::busybox_rootfs_with(
            busybox,
            &[
                ("opt/mssql/bin/sqlservr", 0o755, SQLSERVR.as_bytes()),
                ("opt/mssql-tools18/bin/sqlcmd", 0o755, SQLCMD.as_bytes()),
            ],
        );
        let label = format!("LABEL {TEST_LABEL}=true");
        docker_with_input(
            &[
                "import",
                "--change",
                "CMD [\"/opt/mssql/bin/sqlservr\"]",
                "--change",
                &label,
                "-",
                MSSQL_STANDIN_IMAGE,
            ],
            &tar,
        );
    });
    MSSQL_STANDIN_IMAGE
}
