//! Which database engine a container runs, and what orca needs to know of
//! each: where its data lives, where its clients are, the password it was
//! given.

use serde::Serialize;

/// A database engine orca knows.
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
