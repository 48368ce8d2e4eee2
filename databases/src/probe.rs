//! What a restore drill asks the database once it runs on a restored copy,
//! per engine: SQL Server (`sqlcmd`), PostgreSQL (`pg_isready`, `pg_amcheck`,
//! `psql`), or anything else (`--probe CMD`, or the image's HEALTHCHECK).
//! Every command runs inside the drill's container, so the tools and the
//! trust settings are the image's own; secrets go in the command's
//! environment, never on its command line.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::container::{Container, Exec};
pub use crate::engine::{Engine, SQLCMD_PATHS, detect, sa_password};

/// One check's outcome.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`online`, `checkdb:orca`, `amcheck`, `rows:orca`, `probe`...).
    pub name: String,
    /// It passed.
    pub ok: bool,
    /// What the database said.
    pub detail: String,
}

impl Check {
    fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    fn fail(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

/// A table and its row count.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Table {
    /// `schema.table`.
    pub name: String,
    /// Rows.
    pub rows: u64,
}

/// A database found on the scratch copy.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Database {
    /// Its name.
    pub name: String,
    /// `ONLINE` (SQL Server's state) or `connectable` (PostgreSQL).
    pub state: String,
    /// A system database (master, tempdb, model, msdb; template0/1, postgres).
    pub system: bool,
    /// Its user tables and their rows (empty for system databases).
    pub tables: Vec<Table>,
}

/// Everything the probe found.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Findings {
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The databases.
    pub databases: Vec<Database>,
}

impl Findings {
    /// Whether every check passed (and there was at least one).
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
}

/// How the probe talks to the database.
pub enum Probe {
    /// SQL Server through the image's sqlcmd.
    SqlServer(SqlCmd),
    /// PostgreSQL as this database user (commands run as the OS user `postgres`).
    Postgres {
        /// The database superuser.
        user: String,
    },
    /// A shell command run inside the container; exit 0 passes.
    Command(String),
    /// The image's HEALTHCHECK.
    Health,
}

/// sqlcmd, found in the image.
pub struct SqlCmd {
    path: String,
    trust_cert: bool,
    password: String,
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Short text for a check's detail.
fn short(text: &str) -> String {
    let one = orca_shared::exit::one_line(text);
    if one.chars().count() > 800 {
        format!("{}...", one.chars().take(800).collect::<String>())
    } else {
        one
    }
}

impl SqlCmd {
    /// Find sqlcmd in the running container.
    pub fn find(
        s: &dyn Container,
        password: String,
        limit: Duration,
    ) -> anyhow::Result<Option<SqlCmd>> {
        for (path, trust_cert) in SQLCMD_PATHS {
            let r = s.exec(&argv(&[path, "-?"]), &[], None, limit)?;
            if r.code == 126 || r.code == 127 || r.said().contains("no such file") {
                continue;
            }
            return Ok(Some(SqlCmd {
                path: path.to_string(),
                trust_cert,
                password,
            }));
        }
        Ok(None)
    }

    /// Run `sql` (in database `db`): rows come back `a|b`, one per line.
    pub fn query(
        &self,
        s: &dyn Container,
        sql: &str,
        db: Option<&str>,
        limit: Duration,
    ) -> anyhow::Result<Exec> {
        let mut a = argv(&[
            &self.path,
            "-S",
            "localhost",
            "-U",
            "sa",
            "-b",
            "-h",
            "-1",
            "-W",
            "-s",
            "|",
        ]);
        if self.trust_cert {
            a.push("-C".into());
        }
        if let Some(db) = db {
            a.push("-d".into());
            a.push(db.into());
        }
        a.push("-Q".into());
        a.push(sql.into());
        // The password goes in sqlcmd's own variable, not on its command line.
        let env = vec![format!("SQLCMDPASSWORD={}", self.password)];
        s.exec(&a, &env, None, limit)
    }
}

/// `[name]`, escaped for T-SQL.
fn bracket(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// The non-empty lines of a client's output (CRLF or LF).
fn rows(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
}

/// Rows of `name|value` output, skipping blank lines; split at the last
/// `|` (a name may hold one; a state or a count never does).
fn pairs(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    rows(text)
        .map(|l| match l.rsplit_once('|') {
            Some((a, b)) => Ok((a.trim().to_string(), b.trim().to_string())),
            None => Err(anyhow::anyhow!("{l:?} is not a name and a value")),
        })
        .collect()
}

/// Whether `path` is `dir` or inside it.
fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.starts_with(&format!("{dir}/"))
}

impl Probe {
    /// One attempt: is the database ready for the checks?
    pub fn ready(&self, s: &dyn Container, limit: Duration) -> anyhow::Result<bool> {
        match self {
            Probe::SqlServer(q) => {
                Ok(q.query(s, "SET NOCOUNT ON; SELECT 1", None, limit)?.code == 0)
            }
            Probe::Postgres { user } => Ok(s
                .exec(
                    &argv(&["pg_isready", "-q", "-U", user]),
                    &[],
                    Some("postgres"),
                    limit,
                )?
                .code
                == 0),
            Probe::Command(cmd) => Ok(s
                .exec(&argv(&["/bin/sh", "-c", cmd]), &[], None, limit)?
                .code
                == 0),
            Probe::Health => Ok(s.health()?.as_deref() == Some("healthy")),
        }
    }

    /// What the last unsuccessful readiness attempt said (for messages).
    pub fn not_ready_because(&self, s: &dyn Container, limit: Duration) -> String {
        let r = match self {
            Probe::SqlServer(q) => q.query(s, "SET NOCOUNT ON; SELECT 1", None, limit),
            Probe::Postgres { user } => s.exec(
                &argv(&["pg_isready", "-U", user]),
                &[],
                Some("postgres"),
                limit,
            ),
            Probe::Command(cmd) => s.exec(&argv(&["/bin/sh", "-c", cmd]), &[], None, limit),
            Probe::Health => {
                return format!(
                    "health {}",
                    s.health()
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "unknown".into())
                );
            }
        };
        match r {
            Ok(e) => short(&e.said()),
            Err(e) => format!("{e:#}"),
        }
    }

    /// The checks, once ready. `mount_point` and `started` (when the
    /// container started) let it prove that the database runs on the
    /// restored files and not on ones it just made.
    pub fn checks(
        &self,
        s: &dyn Container,
        limit: Duration,
        mount_point: &str,
        started: Option<DateTime<Utc>>,
    ) -> anyhow::Result<Findings> {
        match self {
            Probe::SqlServer(q) => sqlserver_checks(q, s, limit, mount_point),
            Probe::Postgres { user } => postgres_checks(user, s, limit, mount_point, started),
            Probe::Command(cmd) => Ok(Findings {
                checks: vec![Check::pass(
                    "probe",
                    format!("`{cmd}` exited 0 inside the container"),
                )],
                databases: vec![],
            }),
            Probe::Health => Ok(Findings {
                checks: vec![Check::pass(
                    "healthcheck",
                    "the image's HEALTHCHECK says healthy",
                )],
                databases: vec![],
            }),
        }
    }
}

const SQL_SYSTEM_DBS: [&str; 4] = ["master", "tempdb", "model", "msdb"];

fn sqlserver_checks(
    q: &SqlCmd,
    s: &dyn Container,
    limit: Duration,
    mount_point: &str,
) -> anyhow::Result<Findings> {
    let mut f = Findings::default();
    // The restored files, not a fresh master: where master's data file is.
    let r = q.query(
        s,
        "SET NOCOUNT ON; SELECT physical_name FROM sys.master_files WHERE database_id = 1 AND file_id = 1",
        None,
        limit,
    )?;
    let master = r.stdout.trim().to_string();
    if r.code != 0 {
        f.checks.push(Check::fail("data", short(&r.said())));
        return Ok(f);
    }
    f.checks.push(if under(&master, mount_point) {
        Check::pass(
            "data",
            format!("SQL Server runs on the restored copy ({master})"),
        )
    } else {
        Check::fail(
            "data",
            format!(
                "SQL Server's master database is {master}, not on the restored copy mounted at {mount_point}: pass --mount-point where the image keeps its data"
            ),
        )
    });
    if !f.checks[0].ok {
        return Ok(f);
    }
    let r = q.query(
        s,
        "SET NOCOUNT ON; SELECT name, state_desc FROM sys.databases ORDER BY database_id",
        None,
        limit,
    )?;
    if r.code != 0 {
        f.checks.push(Check::fail("online", short(&r.said())));
        return Ok(f);
    }
    for (name, state) in
        pairs(&r.stdout).map_err(|e| anyhow::anyhow!("sqlcmd's list of databases: {e}"))?
    {
        let system = SQL_SYSTEM_DBS.contains(&name.as_str());
        f.databases.push(Database {
            name,
            state,
            system,
            tables: vec![],
        });
    }
    let offline: Vec<String> = f
        .databases
        .iter()
        .filter(|d| d.state != "ONLINE")
        .map(|d| format!("{} is {}", d.name, d.state))
        .collect();
    if f.databases.is_empty() {
        f.checks
            .push(Check::fail("online", "sys.databases lists no database"));
    } else if offline.is_empty() {
        f.checks.push(Check::pass(
            "online",
            format!("all {} databases ONLINE", f.databases.len()),
        ));
    } else {
        f.checks.push(Check::fail("online", offline.join(", ")));
    }
    for d in f.databases.iter_mut().filter(|d| !d.system) {
        if d.state != "ONLINE" {
            continue;
        }
        let r = q.query(
            s,
            &format!("DBCC CHECKDB ({}) WITH NO_INFOMSGS", bracket(&d.name)),
            None,
            limit,
        )?;
        let clean = r.code == 0 && r.stdout.trim().is_empty() && r.stderr.trim().is_empty();
        f.checks.push(if clean {
            Check::pass(
                format!("checkdb:{}", d.name),
                "DBCC CHECKDB found no errors",
            )
        } else {
            Check::fail(format!("checkdb:{}", d.name), short(&r.said()))
        });
        let r = q.query(
            s,
            "SET NOCOUNT ON; SELECT s.name + '.' + t.name, SUM(p.rows) FROM sys.tables t \
             JOIN sys.schemas s ON s.schema_id = t.schema_id \
             JOIN sys.partitions p ON p.object_id = t.object_id AND p.index_id IN (0, 1) \
             GROUP BY s.name, t.name ORDER BY 1",
            Some(&d.name),
            limit,
        )?;
        f.checks.push(count_rows(d, &r)?);
    }
    Ok(f)
}

/// The `rows:<db>` check from a query's `schema.table|rows` answer, keeping
/// the tables' counts in `d`.
fn count_rows(d: &mut Database, r: &Exec) -> anyhow::Result<Check> {
    let name = format!("rows:{}", d.name);
    if r.code != 0 {
        return Ok(Check::fail(name, short(&r.said())));
    }
    d.tables = table_rows(&r.stdout)?;
    Ok(Check::pass(
        name,
        format!(
            "{} tables, {} rows",
            d.tables.len(),
            d.tables.iter().map(|t| t.rows).sum::<u64>()
        ),
    ))
}

fn table_rows(text: &str) -> anyhow::Result<Vec<Table>> {
    pairs(text)?
        .into_iter()
        .map(|(name, n)| {
            Ok(Table {
                rows: n
                    .parse()
                    .map_err(|_| anyhow::anyhow!("a row count {n:?} for {name} is not a number"))?,
                name,
            })
        })
        .collect()
}

/// Template databases hold no data of anyone's (`postgres` may: the
/// official image's default database).
const PG_SYSTEM_DBS: [&str; 2] = ["template0", "template1"];

/// Every user table read two ways: in full, and through its first valid
/// btree index (an index scan fetches each row the index points to, so a
/// relation file that was cut short, which a full read would not notice,
/// fails with PostgreSQL's own "could not read block"); the counts must agree.
const PG_INDEX_SCAN: &str = r#"DO $orca$
DECLARE r record; n_all bigint; n_idx bigint;
BEGIN
  FOR r IN
    SELECT c.oid::regclass AS tbl, a.attname AS col, x.relname AS idx
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN LATERAL (
      SELECT i.indexrelid, i.indkey FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_am am ON am.oid = ic.relam
      WHERE i.indrelid = c.oid AND am.amname = 'btree' AND i.indkey[0] <> 0
        AND i.indpred IS NULL AND i.indisvalid
      ORDER BY i.indisprimary DESC, i.indexrelid LIMIT 1
    ) i ON true
    JOIN pg_class x ON x.oid = i.indexrelid
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg\_toast%'
  LOOP
    EXECUTE format('SELECT count(*) FROM %s', r.tbl) INTO n_all;
    SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off;
    SET LOCAL enable_indexonlyscan = off; SET LOCAL enable_sort = off;
    EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %s ORDER BY %I) s', r.tbl, r.col) INTO n_idx;
    RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_indexonlyscan; RESET enable_sort;
    IF n_all <> n_idx THEN
      RAISE EXCEPTION 'table % has % rows read in full but % through its index %', r.tbl, n_all, n_idx, r.idx;
    END IF;
  END LOOP;
END $orca$;"#;

/// The rows of every leaf table (a partitioned table's rows are its
/// partitions'), read in full.
const PG_ROWS: &str = r#"SELECT n.nspname || '.' || c.relname || '|' ||
  (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'
ORDER BY 1"#;

fn postgres_checks(
    user: &str,
    s: &dyn Container,
    limit: Duration,
    mount_point: &str,
    started: Option<DateTime<Utc>>,
) -> anyhow::Result<Findings> {
    let mut f = Findings::default();
    let psql = |db: &str, sql: &str| -> anyhow::Result<Exec> {
        s.exec(
            &argv(&[
                "psql",
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                user,
                "-d",
                db,
                "-c",
                sql,
            ]),
            &[],
            Some("postgres"),
            limit,
        )
    };
    // The restored files, not ones initdb just made: the data directory is
    // on the scratch copy, and its PG_VERSION is older than the container.
    let r = psql(
        "postgres",
        "SELECT current_setting('data_directory') || '|' || extract(epoch FROM (pg_stat_file('PG_VERSION')).modification)::bigint",
    )?;
    if r.code != 0 {
        let said = r.said();
        if said.contains("does not exist") && said.contains("role") {
            orca_shared::fail!(
                Usage,
                "PostgreSQL on the scratch copy has no role '{user}' ({}): pass --env-file with POSTGRES_USER set to the database's superuser",
                short(&said)
            );
        }
        f.checks.push(Check::fail("data", short(&said)));
        return Ok(f);
    }
    let (dir, made) = pairs(&r.stdout)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("PostgreSQL did not say where its data is"))?;
    let made: i64 = made.parse().unwrap_or(i64::MAX);
    let fresh = started.is_some_and(|t| made >= t.timestamp());
    f.checks.push(if !under(&dir, mount_point) {
        Check::fail(
            "data",
            format!(
                "PostgreSQL runs on {dir}, not on the restored copy mounted at {mount_point}: pass --mount-point where the image keeps its data (or PGDATA in --env-file)"
            ),
        )
    } else if fresh {
        Check::fail(
            "data",
            format!(
                "PostgreSQL made a new, empty data directory at {dir} instead of using the restored one: the backup holds no database there (check --mount-point and PGDATA)"
            ),
        )
    } else {
        Check::pass("data", format!("PostgreSQL runs on the restored copy ({dir})"))
    });
    if !f.checks[0].ok {
        return Ok(f);
    }
    let r = psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname",
    )?;
    if r.code != 0 {
        f.checks.push(Check::fail("online", short(&r.said())));
        return Ok(f);
    }
    for name in rows(&r.stdout) {
        f.databases.push(Database {
            name: name.to_string(),
            state: "connectable".into(),
            system: PG_SYSTEM_DBS.contains(&name),
            tables: vec![],
        });
    }
    f.checks.push(Check::pass(
        "online",
        format!("{} databases accept connections", f.databases.len()),
    ));
    let r = s.exec(
        &argv(&["pg_amcheck", "-U", user, "--all", "--install-missing"]),
        &[],
        Some("postgres"),
        limit,
    )?;
    f.checks.push(match r.code {
        0 => Check::pass("amcheck", "pg_amcheck --all found no corruption"),
        126 | 127 => Check::pass(
            "amcheck",
            "skipped: the image has no pg_amcheck (PostgreSQL before 14)",
        ),
        _ => Check::fail("amcheck", short(&r.said())),
    });
    for d in f.databases.iter_mut().filter(|d| !d.system) {
        let r = psql(&d.name, PG_INDEX_SCAN)?;
        f.checks.push(if r.code == 0 {
            Check::pass(
                format!("indexes:{}", d.name),
                "every indexed table reads the same through its index",
            )
        } else {
            Check::fail(format!("indexes:{}", d.name), short(&r.said()))
        });
        let r = psql(&d.name, PG_ROWS)?;
        f.checks.push(count_rows(d, &r)?);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_told_from_image_and_environment() {
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            detect("mcr.microsoft.com/mssql/server:2022-latest", &[]),
            Some(Engine::Sqlserver)
        );
        assert_eq!(
            detect("my/db:1", &env(&["ACCEPT_EULA=Y", "MSSQL_SA_PASSWORD=x"])),
            Some(Engine::Sqlserver)
        );
        assert_eq!(detect("postgres:16", &[]), Some(Engine::Postgres));
        assert_eq!(detect("x:1", &env(&["PGDATA=/d"])), Some(Engine::Postgres));
        assert_eq!(detect("redis:7", &env(&["A=b"])), None);
    }

    #[test]
    fn the_sa_password_comes_from_either_variable() {
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            sa_password(&env(&["SA_PASSWORD=old"])).as_deref(),
            Some("old")
        );
        assert_eq!(
            sa_password(&env(&["SA_PASSWORD=old", "MSSQL_SA_PASSWORD=new"])).as_deref(),
            Some("new")
        );
        assert_eq!(sa_password(&env(&["MSSQL_SA_PASSWORD="])), None);
    }

    #[test]
    fn sqlcmd_rows_and_names_parse() {
        assert_eq!(
            table_rows("dbo.Users|42\n\nsales.Orders|0\n").unwrap(),
            vec![
                Table {
                    name: "dbo.Users".into(),
                    rows: 42
                },
                Table {
                    name: "sales.Orders".into(),
                    rows: 0
                }
            ]
        );
        assert!(table_rows("dbo.Users|many").is_err());
        assert_eq!(
            table_rows("public.we|ird|2\n").unwrap(),
            vec![Table {
                name: "public.we|ird".into(),
                rows: 2
            }]
        );
        assert!(under("/var/opt/mssql/data/master.mdf", "/var/opt/mssql/"));
        assert!(under(
            "/var/lib/postgresql/data",
            "/var/lib/postgresql/data"
        ));
        assert!(!under(
            "/var/lib/postgresql/data2",
            "/var/lib/postgresql/data"
        ));
        assert_eq!(bracket("we]ird"), "[we]]ird]");
    }
}
