//! Hot copies: a running database's help for a consistent file copy.
//!
//! - SQL Server 2022 and later: the T-SQL snapshot freeze
//!   (`ALTER SERVER CONFIGURATION SET SUSPEND_FOR_SNAPSHOT_BACKUP = ON
//!   (MODE = COPY_ONLY)`), held by one `sqlcmd` session while the files are
//!   read, then thawed (`... = OFF`).
//! - PostgreSQL 10 and later: backup mode (`pg_backup_start` /
//!   `pg_backup_stop`, before 15 `pg_start_backup` / `pg_stop_backup`) in
//!   one `psql` session; the copy then needs the `backup_label` (and
//!   `tablespace_map`) that the stop returns and the WAL from start to stop.
//!
//! Both run inside the database container as one shell process, the guard,
//! started over the Engine API with its stdin attached to orca
//! ([`Session`]). SQL Server's freeze has no timeout of its own: the guard
//! thaws it when orca says so, when its link to orca goes away (end of
//! file: orca ended or was killed, the engine connection was cut; or no
//! heartbeat for [`SILENCE`]), when `max_freeze_seconds` have passed, or
//! when it is signalled. It leaves `/tmp/orca-freeze/held/pid` while it
//! may hold a freeze; [`plan`] thaws a server still frozen under the mark
//! of a guard that is gone. Passwords reach the clients in their own
//! environment variables (`SQLCMDPASSWORD`, `PGPASSWORD`), never on a
//! command line.

use std::time::{Duration, Instant};

use orca_shared::consistency::HotCopy;
use orca_shared::err;

use crate::container::{Event, Session, exec_in};
use crate::engine::{Engine, SQLCMD_PATHS, sa_password};

/// How long the guard goes on without hearing from orca before it takes
/// the link as lost (orca's heartbeat comes every second).
pub const SILENCE: Duration = Duration::from_secs(5);

/// The longest PostgreSQL's backup mode may last.
pub const POSTGRES_MAX: Duration = Duration::from_secs(86_400);

/// The container a hot copy is asked of.
#[derive(Clone, Debug)]
pub struct Target {
    /// Container id.
    pub id: String,
    /// Container name, for messages.
    pub name: String,
    /// Its image.
    pub image: String,
    /// Its environment (secrets: never printed).
    pub env: Vec<String>,
    /// Where the volume is mounted in it.
    pub mount_point: String,
}

/// How a hot copy of a target is taken, once [`plan`] found it possible.
#[derive(Clone)]
pub enum Plan {
    /// SQL Server's snapshot freeze.
    SqlServer {
        /// sqlcmd's path in the container.
        sqlcmd: String,
        /// The server's version (`16.0...`).
        version: String,
        /// `sa`'s password (from the container's environment).
        password: String,
        /// The shell that runs the guard (`bash`, or a `sh` with `read -t`).
        shell: String,
    },
    /// PostgreSQL's backup mode.
    Postgres {
        /// The database superuser.
        user: String,
        /// Its password, when the container has one (local connections
        /// usually need none).
        password: Option<String>,
        /// `server_version`.
        version: String,
        /// `server_version_num`.
        version_num: u32,
        /// The data directory, relative to the volume's root (`""`: the root).
        data_dir: String,
        /// Bytes per WAL segment.
        wal_segment_size: u64,
        /// The shell that runs the guard.
        shell: String,
    },
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Plan::SqlServer { version, .. } => write!(f, "SqlServer({version})"),
            Plan::Postgres { version, .. } => write!(f, "Postgres({version})"),
        }
    }
}

impl Plan {
    /// The engine's name in records.
    pub fn engine(&self) -> Engine {
        match self {
            Plan::SqlServer { .. } => Engine::Sqlserver,
            Plan::Postgres { .. } => Engine::Postgres,
        }
    }

    /// The method's name in records.
    pub fn method(&self) -> &'static str {
        match self {
            Plan::SqlServer { .. } => "snapshot-freeze",
            Plan::Postgres { .. } => "backup-mode",
        }
    }

    /// The version the engine reported.
    pub fn version(&self) -> &str {
        match self {
            Plan::SqlServer { version, .. } | Plan::Postgres { version, .. } => version,
        }
    }
}

/// What [`plan`] found.
#[derive(Debug)]
pub struct Planned {
    /// How to take the hot copy, or why none can be taken.
    pub plan: Result<Plan, String>,
    /// A freeze left behind by an orca run that is gone, thawed now.
    pub thawed_stale: Option<String>,
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// The `ORCA|tag|...` lines of a script's output: (tag, fields).
fn tagged(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("ORCA|"))
        .map(|rest| {
            let mut parts = rest.split('|').map(str::to_string);
            let tag = parts.next().unwrap_or_default();
            (tag, parts.collect())
        })
        .collect()
}

fn field(lines: &[(String, Vec<String>)], tag: &str) -> Option<Vec<String>> {
    lines.iter().find(|(t, _)| t == tag).map(|(_, f)| f.clone())
}

/// Finds the shell for the guard: bash, else a sh whose `read` has `-t`
/// (busybox); prints `ORCA|shell|NAME` or `ORCA|shell|`.
const FIND_SHELL: &str = r#"
if command -v bash >/dev/null 2>&1; then
    echo "ORCA|shell|bash"
else
    sh -c 'read -t 1 x </dev/null' 2>/dev/null
    if [ $? -eq 1 ]; then echo "ORCA|shell|sh"; else echo "ORCA|shell|"; fi
fi
"#;

/// SQL Server: finds sqlcmd, the version and whether the server is
/// suspended, and thaws a freeze whose guard is gone.
const SQLSERVER_PLAN: &str = r#"
S=""
for p in __SQLCMD_PATHS__; do
    if [ -x "$p" ]; then S=$p; break; fi
done
if [ -z "$S" ]; then echo "ORCA|no-sqlcmd"; exit 0; fi
C=""
case $S in *mssql-tools18*) C=-C ;; esac
echo "ORCA|sqlcmd|$S"
__FIND_SHELL__
q() { "$S" -S localhost -U sa $C -b -h -1 -W -Q "SET NOCOUNT ON; $1" 2>&1 | tr -d '\r'; }
state() { q "SELECT 'ORCA|state|' + ISNULL(CAST(SERVERPROPERTY('IsServerSuspendedForSnapshotBackup') AS varchar(10)), '0')"; }
q "SELECT 'ORCA|version|' + CAST(SERVERPROPERTY('ProductMajorVersion') AS varchar(20)) + '|' + CAST(SERVERPROPERTY('ProductVersion') AS varchar(40))"
m=/tmp/orca-freeze/held/pid
if [ -f "$m" ]; then
    pid=$(cat "$m" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "ORCA|guard-alive|$pid"
    else
        case "$(state)" in
            *"ORCA|state|1"*)
                q "ALTER SERVER CONFIGURATION SET SUSPEND_FOR_SNAPSHOT_BACKUP = OFF" >/dev/null
                case "$(state)" in
                    *"ORCA|state|0"*) echo "ORCA|stale-thawed|$pid"; rm -rf /tmp/orca-freeze/held ;;
                    *) echo "ORCA|stale-frozen|$pid" ;;
                esac
                ;;
            *) rm -rf /tmp/orca-freeze/held ;;
        esac
    fi
fi
state
"#;

/// PostgreSQL: psql, the version, the data directory, the WAL segment size.
const POSTGRES_PLAN: &str = r#"
command -v psql >/dev/null 2>&1 || { echo "ORCA|no-psql"; exit 0; }
__FIND_SHELL__
psql -X -A -t -q -U "$1" -d postgres -c "SELECT 'ORCA|version|' || current_setting('server_version_num') || '|' || current_setting('server_version') || '|' || current_setting('data_directory') || '|' || (SELECT setting::bigint * CASE unit WHEN 'B' THEN 1 WHEN '8kB' THEN 8192 WHEN 'kB' THEN 1024 WHEN 'MB' THEN 1048576 ELSE 1 END FROM pg_settings WHERE name = 'wal_segment_size') || '|' || pg_is_in_recovery() || '|' || current_setting('wal_level') || '|' || current_setting('max_replication_slots')" 2>&1
psql -X -A -t -q -U "$1" -d postgres -c "SELECT 'ORCA|tablespace|' || spcname || '|' || pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')" 2>/dev/null
d=$(psql -X -A -t -q -U "$1" -d postgres -c "SHOW data_directory" 2>/dev/null)
if [ -n "$d" ] && [ -L "$d/pg_wal" ]; then echo "ORCA|wal-link"; fi
"#;

/// The SQL Server guard: freezes, confirms, holds, thaws (see the module).
/// Arguments: sqlcmd, max seconds, silence seconds.
const SQLSERVER_GUARD: &str = r#"
S=$1; MAX=$2; QUIET=$3
C=""
case $S in *mssql-tools18*) C=-C ;; esac
# A write to the session after it died must not end the guard (SIGPIPE):
# the thaw falls back to a session of its own.
trap '' PIPE
q() { "$S" -S localhost -U sa $C -b -h -1 -W -Q "SET NOCOUNT ON; $1" 2>&1 | tr -d '\r'; }
state() { q "SELECT 'ORCA|state|' + ISNULL(CAST(SERVERPROPERTY('IsServerSuspendedForSnapshotBackup') AS varchar(10)), '0') + '|' + ISNULL(CAST(SERVERPROPERTY('SuspendedDatabaseCount') AS varchar(10)), '0')"; }
umask 077
d=/tmp/orca-freeze
mkdir -p "$d" || { echo "ORCA|failed|cannot create $d"; exit 3; }
# One freeze per server: the mark is a directory, made atomically.
if ! mkdir "$d/held" 2>/dev/null; then
    pid=$(cat "$d/held/pid" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "ORCA|busy|$pid"
        exit 3
    fi
    rm -rf "$d/held"
    mkdir "$d/held" 2>/dev/null || { echo "ORCA|busy|?"; exit 3; }
fi
echo $$ > "$d/held/pid"
f="$d/in.$$"
rm -f "$f"
mkfifo "$f" || { echo "ORCA|failed|mkfifo"; rm -rf "$d/held"; exit 3; }
"$S" -S localhost -U sa $C -h -1 -W <"$f" >"$d/session.$$" 2>&1 &
sess=$!
exec 3>"$f"
start=$(date +%s)
thaw() {
    if kill -0 $sess 2>/dev/null; then
        printf 'ALTER SERVER CONFIGURATION SET SUSPEND_FOR_SNAPSHOT_BACKUP = OFF;\nGO\n' >&3 2>/dev/null
    fi
    i=0
    s=""
    while [ $i -lt 150 ]; do
        s=$(state)
        case "$s" in *"ORCA|state|0"*) break ;; esac
        # The session's thaw first; after 2 s (or without it) one of our own.
        if [ $i -eq 40 ] || { [ $i -gt 40 ] && [ $((i % 20)) -eq 0 ]; } || ! kill -0 $sess 2>/dev/null; then
            q "ALTER SERVER CONFIGURATION SET SUSPEND_FOR_SNAPSHOT_BACKUP = OFF" >/dev/null
        fi
        sleep 0.05
        i=$((i + 1))
    done
    exec 3>&-
    kill $sess 2>/dev/null
    wait $sess 2>/dev/null
    rm -f "$f" "$d/session.$$"
    case "$s" in
        *"ORCA|state|0"*) rm -rf "$d/held"; echo "ORCA|thawed|$1|$(( $(date +%s) - start ))" ;;
        *) echo "ORCA|thaw-failed|$1|$s" ;;
    esac
}
trap 'thaw signal; exit 1' TERM INT HUP
printf 'USE master; CHECKPOINT; USE msdb; CHECKPOINT;\nALTER SERVER CONFIGURATION SET SUSPEND_FOR_SNAPSHOT_BACKUP = ON (MODE = COPY_ONLY);\nGO\n' >&3
ok=""
s=""
while [ $(( $(date +%s) - start )) -lt 30 ]; do
    s=$(state)
    case "$s" in *"ORCA|state|1"*) ok=1; break ;; esac
    kill -0 $sess 2>/dev/null || break
    sleep 0.05
done
if [ -z "$ok" ]; then
    echo "ORCA|not-frozen|$(tr '\r\n' '  ' <"$d/session.$$" 2>/dev/null)|$(echo "$s" | tr '\n' ' ')"
    thaw not-frozen
    exit 4
fi
q "SELECT 'ORCA|db|' + db_name FROM sys.dm_server_suspend_status WHERE is_write_io_frozen = 1"
echo "ORCA|frozen"
while :; do
    left=$((MAX - ($(date +%s) - start)))
    if [ $left -le 0 ]; then thaw time-up; exit 0; fi
    if ! kill -0 $sess 2>/dev/null; then thaw session-lost; exit 0; fi
    t=$QUIET
    if [ $left -lt $t ]; then t=$left; fi
    if read -t $t line; then
        case $line in thaw) thaw done; exit 0 ;; esac
    else
        left=$((MAX - ($(date +%s) - start)))
        if [ $left -le 0 ]; then thaw time-up; else thaw link-lost; fi
        exit 0
    fi
done
"#;

/// The PostgreSQL guard: backup mode in one held psql session. Arguments:
/// user, max seconds, silence seconds, the start SQL, the stop SQL.
const POSTGRES_GUARD: &str = r#"
U=$1; MAX=$2; QUIET=$3; START=$4; STOP=$5
umask 077
d=$(mktemp -d /tmp/orca-backup-mode.XXXXXX) || { echo "ORCA|failed|mktemp"; exit 3; }
mkfifo "$d/in" || { echo "ORCA|failed|mkfifo"; exit 3; }
trap '' PIPE
psql -X -A -t -q -v ON_ERROR_STOP=1 -U "$U" -d postgres <"$d/in" >"$d/out" 2>"$d/err" &
sess=$!
exec 3>"$d/in"
start=$(date +%s)
finish() {
    exec 3>&-
    wait $sess 2>/dev/null
    rm -rf "$d"
    echo "ORCA|ended|$1|$(( $(date +%s) - start ))"
}
trap 'finish signal; exit 1' TERM INT HUP
step() {
    printf '\\o %s/%s.tmp\n%s\n\\o\n\\! mv %s/%s.tmp %s/%s.done\n' "$d" "$1" "$2" "$d" "$1" "$d" "$1" >&3
    while [ ! -f "$d/$1.done" ]; do
        if ! kill -0 $sess 2>/dev/null; then
            echo "ORCA|failed|$1|$(tr '\r\n' '  ' <"$d/err")"
            finish failed
            exit 4
        fi
        sleep 0.1
    done
    cat "$d/$1.done"
}
# A temporary slot keeps every WAL segment from here on until the session
# ends, so the segments the copy needs are still there after the stop.
step slot "SELECT 'ORCA|slot|' || slot_name FROM pg_create_physical_replication_slot('orca_export_$$', true, true);"
step start "$START"
stopped=""
while :; do
    left=$((MAX - ($(date +%s) - start)))
    if [ $left -le 0 ]; then finish time-up; exit 0; fi
    t=$QUIET
    if [ $left -lt $t ]; then t=$left; fi
    if read -t $t line; then
        case $line in
            stop) step stop "$STOP"; stopped=1 ;;
            done) finish done; exit 0 ;;
        esac
    else
        left=$((MAX - ($(date +%s) - start)))
        if [ -n "$stopped" ]; then finish done; exit 0; fi
        if [ $left -le 0 ]; then finish time-up; else finish link-lost; fi
        exit 0
    fi
done
"#;

fn sqlserver_plan_script() -> String {
    let paths: Vec<&str> = SQLCMD_PATHS.iter().map(|(p, _)| *p).collect();
    SQLSERVER_PLAN
        .replace("__SQLCMD_PATHS__", &paths.join(" "))
        .replace("__FIND_SHELL__", FIND_SHELL)
}

/// The engine a target runs, when orca knows it.
pub fn engine_of(t: &Target) -> Option<Engine> {
    crate::engine::detect(&t.image, &t.env)
}

fn env_value(env: &[String], key: &str) -> Option<String> {
    env.iter()
        .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .filter(|v| !v.is_empty())
        .map(String::from)
}

/// Whether a hot copy of `t` can be taken, and how; a freeze left by an
/// orca run that is gone is thawed on the way.
pub fn plan(t: &Target, limit: Duration) -> anyhow::Result<Planned> {
    match engine_of(t) {
        Some(Engine::Sqlserver) => plan_sqlserver(t, limit),
        Some(Engine::Postgres) => plan_postgres(t, limit),
        _ => Ok(Planned {
            plan: Err(format!(
                "orca knows no hot copy for its image '{}' (it knows SQL Server 2022+ and PostgreSQL)",
                t.image
            )),
            thawed_stale: None,
        }),
    }
}

fn plan_sqlserver(t: &Target, limit: Duration) -> anyhow::Result<Planned> {
    let refuse = |why: String| Planned {
        plan: Err(why),
        thawed_stale: None,
    };
    let Some(password) = sa_password(&t.env) else {
        return Ok(refuse(
            "its environment has no MSSQL_SA_PASSWORD (or SA_PASSWORD) for sqlcmd".into(),
        ));
    };
    let r = exec_in(
        &t.id,
        "the database container",
        &argv(&["sh", "-c", &sqlserver_plan_script()]),
        &[format!("SQLCMDPASSWORD={password}")],
        None,
        limit,
    )?;
    let lines = tagged(&r.stdout);
    let thawed_stale = field(&lines, "stale-thawed").map(|f| {
        format!(
            "SQL Server in container '{}' was still frozen by an orca run that is gone (guard {}): orca thawed it",
            t.name,
            f.first().cloned().unwrap_or_default()
        )
    });
    if field(&lines, "no-sqlcmd").is_some() || field(&lines, "sqlcmd").is_none() {
        return Ok(refuse(format!(
            "it has no sqlcmd ({} or {})",
            SQLCMD_PATHS[0].0, SQLCMD_PATHS[1].0
        )));
    }
    if let Some(f) = field(&lines, "stale-frozen") {
        return Err(err!(
            HotCopyFailed,
            "SQL Server in container '{}' is still frozen by an orca run that is gone (guard {}) and would not thaw: run ALTER SERVER CONFIGURATION SET SUSPEND_FOR_SNAPSHOT_BACKUP = OFF in it",
            t.name,
            f.first().cloned().unwrap_or_default()
        ));
    }
    let Some(version) = field(&lines, "version") else {
        return Ok(Planned {
            plan: Err(format!("sqlcmd could not query it ({})", r.said())),
            thawed_stale,
        });
    };
    let major: u32 = version
        .first()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let full = version.get(1).cloned().unwrap_or_default();
    if major < 16 {
        return Ok(Planned {
            plan: Err(format!(
                "it runs SQL Server {full}, which has no snapshot freeze (SQL Server 2022, version 16, and later have)"
            )),
            thawed_stale,
        });
    }
    if let Some(pid) = field(&lines, "guard-alive") {
        return Err(err!(
            VolumeBusy,
            "another orca run holds a freeze on SQL Server in container '{}' (guard {}): try again when it is done",
            t.name,
            pid.first().cloned().unwrap_or_default()
        ));
    }
    if field(&lines, "state").and_then(|f| f.first().cloned()) == Some("1".into()) {
        return Ok(Planned {
            plan: Err(
                "it is already suspended for a snapshot backup by another session, not orca's"
                    .into(),
            ),
            thawed_stale,
        });
    }
    let shell = field(&lines, "shell")
        .and_then(|f| f.first().cloned())
        .unwrap_or_default();
    if shell.is_empty() {
        return Ok(Planned {
            plan: Err(
                "it has no bash, nor a sh whose read has -t, to run the freeze's guard".into(),
            ),
            thawed_stale,
        });
    }
    let sqlcmd = field(&lines, "sqlcmd")
        .and_then(|f| f.first().cloned())
        .unwrap_or_default();
    Ok(Planned {
        plan: Ok(Plan::SqlServer {
            sqlcmd,
            version: full,
            password,
            shell,
        }),
        thawed_stale,
    })
}

fn postgres_user(env: &[String]) -> String {
    env_value(env, "POSTGRES_USER").unwrap_or_else(|| "postgres".into())
}

fn postgres_env(password: &Option<String>) -> Vec<String> {
    password.iter().map(|p| format!("PGPASSWORD={p}")).collect()
}

fn plan_postgres(t: &Target, limit: Duration) -> anyhow::Result<Planned> {
    let refuse = |why: String| {
        Ok(Planned {
            plan: Err(why),
            thawed_stale: None,
        })
    };
    let user = postgres_user(&t.env);
    let password = env_value(&t.env, "POSTGRES_PASSWORD");
    let script = POSTGRES_PLAN.replace("__FIND_SHELL__", FIND_SHELL);
    let r = exec_in(
        &t.id,
        "the database container",
        &argv(&["sh", "-c", &script, "orca-plan", &user]),
        &postgres_env(&password),
        Some("postgres"),
        limit,
    )?;
    let lines = tagged(&r.stdout);
    if field(&lines, "no-psql").is_some() {
        return refuse("it has no psql on its PATH".into());
    }
    let Some(v) = field(&lines, "version") else {
        return refuse(format!("psql could not query it ({})", r.said()));
    };
    let version_num: u32 = v.first().and_then(|s| s.parse().ok()).unwrap_or(0);
    let version = v.get(1).cloned().unwrap_or_default();
    let data_directory = v.get(2).cloned().unwrap_or_default();
    let wal_segment_size: u64 = v.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    if version_num < 100_000 {
        return refuse(format!(
            "it runs PostgreSQL {version}; hot copies need PostgreSQL 10 or later"
        ));
    }
    if v.get(4).map(String::as_str) == Some("t") {
        return refuse("it is a standby (in recovery): take the copy from the primary".into());
    }
    if v.get(5).map(String::as_str) == Some("minimal") {
        return refuse(
            "its wal_level is minimal: a hot copy needs replica (PostgreSQL's default)".into(),
        );
    }
    if v.get(6).map(String::as_str) == Some("0") {
        return refuse(
            "its max_replication_slots is 0: a hot copy holds its WAL with a temporary slot".into(),
        );
    }
    if field(&lines, "wal-link").is_some() {
        return refuse("its pg_wal is a link to a directory outside the data directory".into());
    }
    let mount = t.mount_point.trim_end_matches('/');
    let data_dir = if data_directory == mount {
        String::new()
    } else if let Some(rest) = data_directory.strip_prefix(&format!("{mount}/")) {
        rest.trim_end_matches('/').to_string()
    } else {
        return refuse(format!(
            "its data directory {data_directory} is not on the volume (mounted at {mount})"
        ));
    };
    for (tag, f) in &lines {
        let location = f.get(1).map(String::as_str).unwrap_or_default();
        if tag == "tablespace" && !location.starts_with(&format!("{mount}/")) {
            return refuse(format!(
                "its tablespace '{}' lives at {location}, outside the volume: a copy of the volume would miss it",
                f.first().map(String::as_str).unwrap_or_default()
            ));
        }
    }
    if wal_segment_size == 0 || !wal_segment_size.is_power_of_two() {
        return refuse(format!(
            "it reported a WAL segment size orca does not understand ({wal_segment_size})"
        ));
    }
    let shell = field(&lines, "shell")
        .and_then(|f| f.first().cloned())
        .unwrap_or_default();
    if shell.is_empty() {
        return refuse(
            "it has no bash, nor a sh whose read has -t, to run the backup mode's guard".into(),
        );
    }
    Ok(Planned {
        plan: Ok(Plan::Postgres {
            user,
            password,
            version,
            version_num,
            data_dir,
            wal_segment_size,
            shell,
        }),
        thawed_stale: None,
    })
}

/// Thaw every SQL Server among `containers` (those using `volume`) that an
/// orca run that is gone left frozen; the notes say which. Best effort: a
/// container that cannot be asked is passed over.
pub fn thaw_stale(containers: &[orca_shared::docker::ContainerRef], volume: &str) -> Vec<String> {
    let mut notes = Vec::new();
    for c in containers.iter().filter(|c| c.is_active()) {
        let Ok(Some(d)) = orca_shared::docker::container_details(&c.id) else {
            continue;
        };
        if crate::engine::detect(&d.image, &d.env) != Some(Engine::Sqlserver) {
            continue;
        }
        let t = Target {
            id: c.id.clone(),
            name: c.name.clone(),
            image: d.image.clone(),
            env: d.env.clone(),
            mount_point: d.volume_mounts.get(volume).cloned().unwrap_or_default(),
        };
        if let Ok(Planned {
            thawed_stale: Some(note),
            ..
        }) = plan(&t, Duration::from_secs(30))
        {
            notes.push(note);
        }
    }
    notes
}

/// A file the archive must carry that the volume's stream did not give
/// (PostgreSQL's `backup_label`, `tablespace_map`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraFile {
    /// Path relative to the volume's root.
    pub path: String,
    /// Its contents.
    pub contents: Vec<u8>,
}

/// What a finished hot copy needs added and records.
#[derive(Debug, Default)]
pub struct Ended {
    /// For the record and the manifest.
    pub info: HotCopy,
    /// Files to add to the archive.
    pub extra: Vec<ExtraFile>,
    /// PostgreSQL: WAL segments to add, as paths relative to the volume's root.
    pub wal: Vec<String>,
    /// PostgreSQL: the session, held (with its slot keeping the WAL) until
    /// the segments are read; dropping it ends it.
    pub session: Option<Session>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

/// A freeze or backup mode in effect: end it with [`Held::end`]; dropped
/// without, it is ended at once (the guard thaws).
pub struct Held {
    plan: Plan,
    target: Target,
    session: Option<Session>,
    began: Instant,
    frozen_at: Instant,
    databases: Vec<String>,
    start_wal: String,
    max_freeze: Duration,
    ended_early: Option<String>,
}

fn hot_failed(t: &Target, what: &str) -> anyhow::Error {
    err!(
        HotCopyFailed,
        "the hot copy of container '{}' failed: {what}; nothing was kept (pass --stop for a stopped copy)",
        t.name
    )
}

fn launcher(shell: &str) -> String {
    // The guard's script comes in ORCA_GUARD; bash or the sh that has
    // `read -t` runs it.
    format!("exec {shell} -c \"$ORCA_GUARD\" orca-guard \"$@\"")
}

/// Begin the hot copy: the freeze or backup mode is in effect when this
/// returns; `limit` bounds how long it may take to begin.
pub fn begin(
    t: &Target,
    plan: &Plan,
    max_freeze: Duration,
    limit: Duration,
) -> anyhow::Result<Held> {
    // PostgreSQL's backup mode holds no writes: only the link to orca (and
    // a day) bounds it; max_freeze_seconds is for SQL Server's freeze.
    let max_freeze = match plan {
        Plan::SqlServer { .. } => max_freeze,
        Plan::Postgres { .. } => POSTGRES_MAX,
    };
    let max = max_freeze.as_secs().max(1).to_string();
    let quiet = SILENCE.as_secs().to_string();
    let (argv, env, user) = match plan {
        Plan::SqlServer {
            sqlcmd,
            password,
            shell,
            ..
        } => (
            vec![
                "sh".to_string(),
                "-c".into(),
                launcher(shell),
                "orca".into(),
                sqlcmd.clone(),
                max,
                quiet,
            ],
            vec![
                format!("SQLCMDPASSWORD={password}"),
                format!("ORCA_GUARD={SQLSERVER_GUARD}"),
            ],
            None,
        ),
        Plan::Postgres {
            user,
            password,
            version_num,
            shell,
            ..
        } => {
            let (start, stop) = postgres_sql(*version_num);
            let mut env = postgres_env(password);
            env.push(format!("ORCA_GUARD={POSTGRES_GUARD}"));
            (
                vec![
                    "sh".to_string(),
                    "-c".into(),
                    launcher(shell),
                    "orca".into(),
                    user.clone(),
                    max,
                    quiet,
                    start,
                    stop,
                ],
                env,
                Some("postgres"),
            )
        }
    };
    let session = Session::start(&t.id, &argv, &env, user, limit)?;
    // The freeze cannot begin before the guard runs: the clock starts here.
    let began = Instant::now();
    let mut held = Held {
        plan: plan.clone(),
        target: t.clone(),
        session: Some(session),
        began,
        frozen_at: began,
        databases: Vec::new(),
        start_wal: String::new(),
        max_freeze,
        ended_early: None,
    };
    let want = match plan {
        Plan::SqlServer { .. } => "frozen",
        Plan::Postgres { .. } => "started",
    };
    let deadline = Instant::now() + limit;
    let mut said = String::new();
    loop {
        orca_shared::interrupt::check()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(hot_failed(
                t,
                &format!(
                    "the database did not confirm the {} within {} s",
                    held.what(),
                    limit.as_secs()
                ),
            ));
        }
        let ev = held
            .session
            .as_ref()
            .and_then(|s| s.next(left.min(Duration::from_millis(200))));
        match ev {
            None => continue,
            Some(Event::Line(line)) => {
                let Some(rest) = line.strip_prefix("ORCA|") else {
                    said.push_str(&line);
                    said.push(' ');
                    continue;
                };
                let mut f = rest.split('|');
                match f.next().unwrap_or_default() {
                    "db" => held
                        .databases
                        .push(f.next().unwrap_or_default().to_string()),
                    tag if tag == want => {
                        held.frozen_at = Instant::now();
                        if let Plan::Postgres { .. } = plan {
                            held.start_wal = f.next().unwrap_or_default().to_string();
                            if !is_wal_name(&held.start_wal) {
                                return Err(hot_failed(
                                    t,
                                    &format!("PostgreSQL's backup start said '{line}'"),
                                ));
                            }
                        }
                        return Ok(held);
                    }
                    "busy" => {
                        return Err(err!(
                            VolumeBusy,
                            "another orca run holds a freeze on SQL Server in container '{}': try again when it is done",
                            t.name
                        ));
                    }
                    "not-frozen" | "failed" | "thaw-failed" => {
                        let why = orca_shared::exit::one_line(rest);
                        return Err(hot_failed(
                            t,
                            &format!("the database refused the {} ({why})", held.what()),
                        ));
                    }
                    _ => {}
                }
            }
            Some(Event::Stderr(s)) => said.push_str(&s),
            Some(Event::Ended(code)) => {
                return Err(hot_failed(
                    t,
                    &format!(
                        "its guard ended before the {} began (exit {}): {}",
                        held.what(),
                        code.map_or("?".into(), |c| c.to_string()),
                        orca_shared::exit::one_line(&said)
                    ),
                ));
            }
            Some(Event::Lost(why)) => {
                return Err(hot_failed(
                    t,
                    &format!("the link to its guard failed ({why})"),
                ));
            }
        }
    }
}

/// The start and stop statements for this PostgreSQL version.
fn postgres_sql(version_num: u32) -> (String, String) {
    let (start, stop) = if version_num >= 150_000 {
        (
            "pg_backup_start('orca-export', true)",
            "pg_backup_stop(false)",
        )
    } else {
        (
            "pg_start_backup('orca-export', true, false)",
            "pg_stop_backup(false, false)",
        )
    };
    let hex = |col: &str| format!("coalesce(encode(convert_to({col}, 'UTF8'), 'hex'), '')");
    (
        format!(
            "SELECT 'ORCA|started|' || pg_walfile_name(lsn) || '|' || lsn FROM {start} AS lsn;"
        ),
        format!(
            "SELECT 'ORCA|stopped|' || pg_walfile_name(lsn) || '|' || lsn || '|' || {} || '|' || {} FROM {stop};",
            hex("labelfile"),
            hex("spcmapfile")
        ),
    )
}

/// Bytes from lowercase or uppercase hex digits.
fn unhex(text: &str) -> Option<Vec<u8>> {
    let t = text.trim().as_bytes();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    t.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// Whether `name` is a WAL segment's file name (24 hex digits).
pub fn is_wal_name(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The WAL segments from `start` to `stop`, both included, for segments of
/// `segment_size` bytes (names: timeline, log, segment; 8 hex digits each).
pub fn wal_range(start: &str, stop: &str, segment_size: u64) -> Option<Vec<String>> {
    if !is_wal_name(start) || !is_wal_name(stop) || segment_size == 0 {
        return None;
    }
    let parse = |n: &str| -> Option<(u32, u64)> {
        let tli = u32::from_str_radix(&n[..8], 16).ok()?;
        let log = u64::from_str_radix(&n[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&n[16..], 16).ok()?;
        let per_log = 0x1_0000_0000 / segment_size;
        Some((tli, log * per_log + seg))
    };
    let (tli, a) = parse(start)?;
    let (tli2, b) = parse(stop)?;
    if tli != tli2 || b < a || b - a > 100_000 {
        return None;
    }
    let per_log = 0x1_0000_0000 / segment_size;
    Some(
        (a..=b)
            .map(|n| format!("{tli:08X}{:08X}{:08X}", n / per_log, n % per_log))
            .collect(),
    )
}

impl Held {
    fn what(&self) -> &'static str {
        match self.plan {
            Plan::SqlServer { .. } => "freeze",
            Plan::Postgres { .. } => "backup mode",
        }
    }

    /// Whether the freeze or backup mode still holds; an error once its
    /// guard ended it (time up, link lost) or its link failed.
    pub fn check(&mut self) -> anyhow::Result<()> {
        if let Some(why) = &self.ended_early {
            return Err(hot_failed(&self.target, why));
        }
        if self.frozen_at.elapsed() > self.max_freeze + Duration::from_secs(1) {
            let why = format!(
                "the {} reached max_freeze_seconds ({} s) before the copy was complete (raise max_freeze_seconds in config, or use --stop)",
                self.what(),
                self.max_freeze.as_secs()
            );
            self.ended_early = Some(why.clone());
            return Err(hot_failed(&self.target, &why));
        }
        while let Some(ev) = self.session.as_ref().and_then(Session::poll) {
            if let Some(why) = self.early_end(&ev) {
                self.ended_early = Some(why.clone());
                return Err(hot_failed(&self.target, &why));
            }
        }
        Ok(())
    }

    fn early_end(&self, ev: &Event) -> Option<String> {
        let what = self.what();
        match ev {
            Event::Line(line) => {
                let rest = line.strip_prefix("ORCA|")?;
                let mut f = rest.split('|');
                let tag = f.next().unwrap_or_default();
                let reason = f.next().unwrap_or_default();
                match (tag, reason) {
                    ("thawed" | "ended", "time-up") => Some(format!(
                        "its guard ended the {what} after max_freeze_seconds ({} s), before the copy was complete (raise max_freeze_seconds in config, or use --stop)",
                        self.max_freeze.as_secs()
                    )),
                    ("thawed" | "ended" | "thaw-failed", r) => {
                        Some(format!("its guard ended the {what} early ({r})"))
                    }
                    ("failed", _) => Some(format!(
                        "the {what} failed: {}",
                        orca_shared::exit::one_line(rest)
                    )),
                    _ => None,
                }
            }
            Event::Ended(_) => Some(format!("its guard ended while the {what} was needed")),
            Event::Lost(why) => Some(format!("the link to its guard failed ({why})")),
            Event::Stderr(_) => None,
        }
    }

    /// End the freeze or backup mode after the copy's last byte: what the
    /// archive must add, and what the record says.
    pub fn end(mut self, limit: Duration) -> anyhow::Result<Ended> {
        self.check()?;
        let session = self.session.take().expect("a held session");
        let (cmd, want) = match self.plan {
            Plan::SqlServer { .. } => ("thaw", "thawed"),
            Plan::Postgres { .. } => ("stop", "stopped"),
        };
        session.send(cmd);
        let deadline = Instant::now() + limit;
        let mut stopped: Option<Vec<String>> = None;
        let mut said = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(hot_failed(
                    &self.target,
                    &format!(
                        "the database did not confirm the end of the {} within {} s",
                        self.what(),
                        limit.as_secs()
                    ),
                ));
            }
            let Some(ev) = session.next(left.min(Duration::from_millis(200))) else {
                continue;
            };
            match &ev {
                Event::Line(line) => {
                    let Some(rest) = line.strip_prefix("ORCA|") else {
                        continue;
                    };
                    let f: Vec<String> = rest.split('|').map(String::from).collect();
                    let tag = f.first().map(String::as_str).unwrap_or_default();
                    let reason = f.get(1).map(String::as_str).unwrap_or_default();
                    if tag == want && (want == "stopped" || reason == "done") {
                        if want == "stopped" {
                            stopped = Some(f[1..].to_vec());
                        }
                        break;
                    } else if tag == "thaw-failed" {
                        return Err(err!(
                            HotCopyFailed,
                            "SQL Server in container '{}' did not thaw ({}): run ALTER SERVER CONFIGURATION SET SUSPEND_FOR_SNAPSHOT_BACKUP = OFF in it now; this backup was not kept",
                            self.target.name,
                            orca_shared::exit::one_line(rest)
                        ));
                    } else if let Some(why) = self.early_end(&ev) {
                        return Err(hot_failed(&self.target, &why));
                    }
                }
                Event::Stderr(s) => said.push_str(s),
                _ => {
                    if let Some(why) = self.early_end(&ev) {
                        return Err(hot_failed(
                            &self.target,
                            &format!("{why} {}", orca_shared::exit::one_line(&said)),
                        ));
                    }
                }
            }
        }
        // From the request to begin until the end was confirmed: writes
        // were held at most this long.
        let window = self.began.elapsed();
        let mut info = HotCopy {
            engine: self.plan.engine().as_str().into(),
            version: self.plan.version().to_string(),
            method: self.plan.method().into(),
            container: self.target.name.clone(),
            databases: std::mem::take(&mut self.databases),
            frozen_ms: 0,
            window_ms: window.as_millis() as u64,
            max_freeze_seconds: self.max_freeze.as_secs(),
            wal_segments: Vec::new(),
        };
        let mut ended = Ended::default();
        match &self.plan {
            Plan::SqlServer { .. } => {
                info.frozen_ms = window.as_millis() as u64;
            }
            Plan::Postgres {
                data_dir,
                wal_segment_size,
                user,
                password,
                ..
            } => {
                let f = stopped.unwrap_or_default();
                let stop_wal = f.first().cloned().unwrap_or_default();
                let decode = |i: usize| -> anyhow::Result<Vec<u8>> {
                    unhex(f.get(i).map(String::as_str).unwrap_or_default()).ok_or_else(|| {
                        hot_failed(
                            &self.target,
                            "PostgreSQL's backup stop gave an unreadable label",
                        )
                    })
                };
                let label = decode(2)?;
                let map = decode(3)?;
                if label.is_empty() {
                    return Err(hot_failed(
                        &self.target,
                        "PostgreSQL's backup stop gave no backup_label",
                    ));
                }
                let join = |name: &str| {
                    if data_dir.is_empty() {
                        name.to_string()
                    } else {
                        format!("{data_dir}/{name}")
                    }
                };
                ended.extra.push(ExtraFile {
                    path: join("backup_label"),
                    contents: label,
                });
                if !map.is_empty() {
                    ended.extra.push(ExtraFile {
                        path: join("tablespace_map"),
                        contents: map,
                    });
                }
                let Some(segments) = wal_range(&self.start_wal, &stop_wal, *wal_segment_size)
                else {
                    return Err(hot_failed(
                        &self.target,
                        &format!(
                            "PostgreSQL's WAL from {} to {stop_wal} cannot be named",
                            self.start_wal
                        ),
                    ));
                };
                ended.wal = segments
                    .iter()
                    .map(|s| join(&format!("pg_wal/{s}")))
                    .collect();
                info.wal_segments = segments;
                info.databases =
                    postgres_databases(&self.target, user, password, limit).unwrap_or_default();
            }
        }
        ended.info = info;
        Ok(ended)
    }
}

/// The databases of a PostgreSQL cluster (those that accept connections).
fn postgres_databases(
    t: &Target,
    user: &str,
    password: &Option<String>,
    limit: Duration,
) -> anyhow::Result<Vec<String>> {
    let r = exec_in(
        &t.id,
        "the database container",
        &argv(&[
            "psql",
            "-X",
            "-A",
            "-t",
            "-q",
            "-U",
            user,
            "-d",
            "postgres",
            "-c",
            "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname",
        ]),
        &postgres_env(password),
        Some("postgres"),
        limit,
    )?;
    Ok(r.stdout
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

impl Drop for Held {
    fn drop(&mut self) {
        // Not ended by `end`: an error, Ctrl-C. The guard thaws when told,
        // and in any case when its stdin closes with the session.
        let Some(mut session) = self.session.take() else {
            return;
        };
        let want = match self.plan {
            Plan::SqlServer { .. } => {
                session.send("thaw");
                "thawed"
            }
            Plan::Postgres { .. } => {
                session.close();
                "ended"
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match session.next(Duration::from_millis(200)) {
                Some(Event::Line(l)) if l.starts_with(&format!("ORCA|{want}|")) => return,
                Some(Event::Line(l)) if l.starts_with("ORCA|thaw-failed|") => break,
                Some(Event::Ended(_)) | Some(Event::Lost(_)) => break,
                _ => {}
            }
        }
        drop(session);
        // The guard is gone without saying it thawed: a server still frozen
        // under its mark is thawed now, when the engine can be reached.
        if let Plan::SqlServer { .. } = self.plan {
            match plan(&self.target, Duration::from_secs(30)) {
                Ok(p) if p.thawed_stale.is_some() => {
                    eprintln!("orca: {}", p.thawed_stale.unwrap_or_default());
                    return;
                }
                Ok(p) if p.plan.is_ok() => return,
                _ => {}
            }
        } else {
            return;
        }
        eprintln!(
            "orca: warning: the {} in container '{}' was not confirmed as ended; its guard ends it within {} s at the latest",
            self.what(),
            self.target.name,
            self.max_freeze.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_ranges_cross_log_boundaries() {
        let r = wal_range(
            "0000000100000000000000FE",
            "000000010000000100000001",
            16 << 20,
        )
        .unwrap();
        assert_eq!(
            r,
            vec![
                "0000000100000000000000FE",
                "0000000100000000000000FF",
                "000000010000000100000000",
                "000000010000000100000001"
            ]
        );
        assert_eq!(
            wal_range(
                "000000010000000000000003",
                "000000010000000000000003",
                16 << 20
            )
            .unwrap(),
            vec!["000000010000000000000003"]
        );
        // 1 GiB segments: four per log.
        assert_eq!(
            wal_range(
                "000000010000000000000003",
                "000000010000000100000000",
                1 << 30
            )
            .unwrap(),
            vec!["000000010000000000000003", "000000010000000100000000"]
        );
        assert!(
            wal_range(
                "000000010000000000000003",
                "000000020000000000000003",
                16 << 20
            )
            .is_none()
        );
        assert!(
            wal_range(
                "000000010000000000000004",
                "000000010000000000000003",
                16 << 20
            )
            .is_none()
        );
        assert!(wal_range("bad", "000000010000000000000003", 16 << 20).is_none());
    }

    #[test]
    fn hex_decodes() {
        assert_eq!(unhex("4f52\n").unwrap(), b"OR");
        assert_eq!(unhex("").unwrap(), b"");
        assert!(unhex("4").is_none());
        assert!(unhex("zz").is_none());
    }

    #[test]
    fn tagged_lines_are_read_and_others_ignored() {
        let t = tagged("noise\nORCA|version|16|16.0.4135.4\r\nORCA|db|Orca\n");
        assert_eq!(field(&t, "version").unwrap(), vec!["16", "16.0.4135.4"]);
        assert_eq!(field(&t, "db").unwrap(), vec!["Orca"]);
        assert!(field(&t, "noise").is_none());
    }

    #[test]
    fn postgres_statements_follow_the_version() {
        let (start, stop) = postgres_sql(150_004);
        assert!(start.contains("pg_backup_start('orca-export', true)"));
        assert!(stop.contains("pg_backup_stop(false)"));
        let (start, stop) = postgres_sql(140_010);
        assert!(start.contains("pg_start_backup('orca-export', true, false)"));
        assert!(stop.contains("pg_stop_backup(false, false)"));
    }

    #[test]
    fn the_plan_scripts_name_every_sqlcmd_path() {
        let s = sqlserver_plan_script();
        for (p, _) in SQLCMD_PATHS {
            assert!(s.contains(p));
        }
        assert!(!s.contains("__"));
    }
}
