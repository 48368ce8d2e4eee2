//! `orca-find-volume`: find the Orca SQL Server data volume.
//!
//! Lists volumes with `docker volume ls --filter name=<volume_filter>`, keeps
//! those matching the glob `volume_pattern`, chooses one deterministically
//! (mounted by a running container, then by any container, then the newest) and
//! reports it with every candidate and the containers that mount it.

use clap::Parser;
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::discover;

/// Find the Orca SQL Server data volume and start the backup record.
///
/// Writes {"volume", "candidates", "in_use_by"} to the JSON record on stdout.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Use this volume instead of searching (fails with exit 4 if it does not exist)
    #[arg(long, value_name = "NAME")]
    pub volume: Option<String>,

    /// `-`: read a JSON record on stdin and use its "volume" (by default this tool does not read stdin)
    #[arg(value_name = "-", value_parser = orca_shared::app::dash)]
    pub record: Option<String>,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(
    Cli,
    stdin = |cli: &Cli| if cli.record.is_some() {
        orca_shared::app::StdinUse::Always
    } else {
        orca_shared::app::StdinUse::Never
    }
);

/// Find the volume and add `volume`, `candidates` and `in_use_by` to the record.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let pinned = match cli.volume {
        Some(v) => Some(v),
        None => ctx.record.str("volume")?.map(String::from),
    };
    let found = match pinned {
        Some(name) => discover::pinned(&name)?,
        None => discover::discover(&ctx.config)?,
    };
    if let Some(why) = &found.explanation {
        ctx.note(why);
    }
    ctx.note(format!("using volume '{}'", found.chosen.name));
    ctx.record.set("volume", &found.chosen.name);
    ctx.record.set("candidates", &found.candidates);
    ctx.record.set("in_use_by", &found.chosen.in_use_by);
    Ok(())
}
