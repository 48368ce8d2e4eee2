//! What a drill asks the database once it runs on the scratch copy, per
//! engine: SQL Server (`sqlcmd`), PostgreSQL (`pg_isready`, `pg_amcheck`,
//! `psql`), or anything else (`--probe CMD`, or the image's HEALTHCHECK).
//! Every command runs inside the drill's container, so the tools and the
//! trust settings are the image's own; secrets go in the command's
//! environment, never on its command line.

use std::time::Duration;

use serde::Serialize;

use crate::scratch::{Exec, Scratch};

/// Which database the drill checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// SQL Server (Orca's).
    Sqlserver,
    /// PostgreSQL.
    Postgres,
    /// Anything else: `--probe CMD` or the image's HEALTHCHECK.
    Other,
}

impl Engine {
    /// The name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlserver => "sqlserver",
            Engine::Postgres => "postgres",
            Engine::Other => "other",
        }
    }

    /// Where its data volume is mounted by default.
    pub fn default_mount_point(self) -> Option<&'static str> {
        match self {
            Engine::Sqlserver => Some("/var/opt/mssql"),
            Engine::Postgres => Some("/var/lib/postgresql/data"),
            Engine::Other => None,
        }
    }
}

/// The engine an image and its environment suggest, if any.
pub fn detect(image: &str, env: &[String]) -> Option<Engine> {
    let img = image.to_ascii_lowercase();
    let has = |k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
    if img.contains("mssql")
        || img.contains("sqlserver")
        || has("MSSQL_SA_PASSWORD")
        || has("SA_PASSWORD")
        || has("MSSQL_PID")
    {
        return Some(Engine::Sqlserver);
    }
    if img.contains("postgres") || has("PGDATA") || has("POSTGRES_PASSWORD") || has("POSTGRES_USER")
    {
        return Some(Engine::Postgres);
    }
    None
}

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

/// Where SQL Server images carry sqlcmd: mssql-tools18 (2022 CU14 and 2019
/// CU28 on; needs `-C` for the self-signed certificate), then mssql-tools.
pub const SQLCMD_PATHS: [(&str, bool); 2] = [
    ("/opt/mssql-tools18/bin/sqlcmd", true),
    ("/opt/mssql-tools/bin/sqlcmd", false),
];

/// The `sa` password a SQL Server container was given.
pub fn sa_password(env: &[String]) -> Option<String> {
    for key in ["MSSQL_SA_PASSWORD", "SA_PASSWORD"] {
        if let Some(v) = env
            .iter()
            .find_map(|e| e.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .filter(|v| !v.is_empty())
        {
            return Some(v.to_string());
        }
    }
    None
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
    pub fn find(s: &Scratch, password: String, limit: Duration) -> anyhow::Result<Option<SqlCmd>> {
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
        s: &Scratch,
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

/// Rows of `a|b` output, skipping blank lines.
fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

impl Probe {
    /// One attempt: is the database ready for the checks?
    pub fn ready(&self, s: &Scratch, limit: Duration) -> anyhow::Result<bool> {
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
            Probe::Health => Ok(s.state()?.health.as_deref() == Some("healthy")),
        }
    }

    /// What the last unsuccessful readiness attempt said (for messages).
    pub fn not_ready_because(&self, s: &Scratch, limit: Duration) -> String {
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
                    s.state()
                        .ok()
                        .and_then(|st| st.health)
                        .unwrap_or_else(|| "unknown".into())
                );
            }
        };
        match r {
            Ok(e) => short(&e.said()),
            Err(e) => format!("{e:#}"),
        }
    }

    /// The checks, once ready.
    pub fn checks(&self, s: &Scratch, limit: Duration) -> anyhow::Result<Findings> {
        match self {
            Probe::SqlServer(q) => sqlserver_checks(q, s, limit),
            Probe::Postgres { user } => postgres_checks(user, s, limit),
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

fn sqlserver_checks(q: &SqlCmd, s: &Scratch, limit: Duration) -> anyhow::Result<Findings> {
    let mut f = Findings::default();
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
    for row in rows(&r.stdout) {
        let [name, state] = <[String; 2]>::try_from(row.clone()).map_err(|_| {
            anyhow::anyhow!("sqlcmd printed {row:?} where a database and its state were expected")
        })?;
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
        if r.code != 0 {
            f.checks
                .push(Check::fail(format!("rows:{}", d.name), short(&r.said())));
            continue;
        }
        d.tables = table_rows(&r.stdout)?;
        f.checks.push(Check::pass(
            format!("rows:{}", d.name),
            format!(
                "{} tables, {} rows",
                d.tables.len(),
                d.tables.iter().map(|t| t.rows).sum::<u64>()
            ),
        ));
    }
    Ok(f)
}

fn table_rows(text: &str) -> anyhow::Result<Vec<Table>> {
    rows(text)
        .into_iter()
        .map(|r| match r.as_slice() {
            [name, n] => Ok(Table {
                name: name.clone(),
                rows: n
                    .parse()
                    .map_err(|_| anyhow::anyhow!("a row count {n:?} for {name} is not a number"))?,
            }),
            _ => Err(anyhow::anyhow!("{r:?} is not a table and its row count")),
        })
        .collect()
}

const PG_SYSTEM_DBS: [&str; 3] = ["postgres", "template0", "template1"];

fn postgres_checks(user: &str, s: &Scratch, limit: Duration) -> anyhow::Result<Findings> {
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
    let r = psql(
        "postgres",
        "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname",
    )?;
    if r.code != 0 {
        f.checks.push(Check::fail("online", short(&r.said())));
        return Ok(f);
    }
    for name in r.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
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
        // Every user table counted for real: reading each one end to end is
        // what finds a relation file that is missing or cut short.
        let r = psql(
            &d.name,
            "SELECT table_schema || '.' || table_name || '|' || \
             (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', \
             table_schema, table_name), false, true, '')))[1]::text \
             FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE' \
             ORDER BY 1",
        )?;
        if r.code != 0 {
            f.checks
                .push(Check::fail(format!("rows:{}", d.name), short(&r.said())));
            continue;
        }
        d.tables = table_rows(&r.stdout)?;
        f.checks.push(Check::pass(
            format!("rows:{}", d.name),
            format!(
                "{} tables, {} rows",
                d.tables.len(),
                d.tables.iter().map(|t| t.rows).sum::<u64>()
            ),
        ));
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
        assert_eq!(bracket("we]ird"), "[we]]ird]");
    }
}
