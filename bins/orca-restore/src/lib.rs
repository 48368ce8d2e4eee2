//! `orca-restore`: bring a volume back from an archive, safely.
//!
//! 1. Verify the archive (the orca-verify checks) and scan every entry: absolute
//!    paths, `..` components and entries that would be written through a
//!    symbolic link are refused before anything changes.
//! 2. Refuse while a container using the volume runs, unless `--stop`, which
//!    stops those containers and starts exactly those again at the end, also
//!    after a failure or an interrupt.
//! 3. Export the current contents to a safety backup
//!    (`orca-db-pre-restore-<time>`), unless `--no-safety-backup`.
//! 4. Empty the volume and extract the archive into it through Docker, then
//!    read the volume back and compare it with the archive, entry by entry.
//! 5. If anything fails after the volume was touched, put the safety backup
//!    back the same way and say so (exit 10); if even that fails, exit 11 and
//!    name the safety backup.

pub mod prescan;
pub mod tree;
pub mod volume;

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::Local;
use clap::Parser;
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::docker::{self, ContainerRef, StoppedContainers, VolumeInfo};
use orca_shared::engine::Mode;
use orca_shared::names;
use orca_shared::volume_lock::{self, LockMode, LockRequest};
use orca_shared::{ErrorKind, OrcaError, discover, fail, interrupt, paths};
use serde::Serialize;

use crate::prescan::Prescan;
use crate::tree::{Tree, TreeBuilder};

/// Restore a Docker volume from a backup archive, with a safety copy and automatic rollback.
///
/// Takes the archive as an argument or the record's "backup_path"; the target
/// is --volume, else the record's "volume", else the Orca volume found as
/// orca-find-volume does. Adds "restored_volume", "safety_backup",
/// "stopped_containers", "entries", "restored_bytes", "rolled_back", "dry_run"
/// (with "plan") and "archive_manifest" (when the archive has one) to the record.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Archive to restore (gzip, zstd or plain tar); `-` or nothing: the backup_path of the record on stdin
    #[arg(value_name = "ARCHIVE")]
    pub archive: Option<PathBuf>,

    /// Volume to restore into [default: the record's volume, else the Orca volume]
    #[arg(long, value_name = "NAME")]
    pub volume: Option<String>,

    /// Restore into a new volume of this name instead (fails with exit 5 if it exists)
    #[arg(long, value_name = "NAME", conflicts_with = "volume")]
    pub to_new_volume: Option<String>,

    /// Stop the running containers that use the volume, and start them again afterwards
    #[arg(long)]
    pub stop: bool,

    /// With --stop: also stop a container started with --rm, accepting that stopping deletes it
    #[arg(long, requires = "stop")]
    pub allow_autoremove: bool,

    /// Do not export the current contents first (no automatic rollback is possible then)
    #[arg(long)]
    pub no_safety_backup: bool,

    /// Say what would happen, change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(
    Cli,
    stdin = |cli: &Cli| orca_shared::app::archive_stdin(cli.archive.as_deref())
);

/// The plan, reported by `--dry-run` and before acting.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The volume that gets the archive's contents.
    pub volume: String,
    /// Whether it is created.
    pub new_volume: bool,
    /// Containers that will be stopped and started again.
    pub containers_to_stop: Vec<ContainerRef>,
    /// Where the current contents will be saved first.
    pub safety_backup: Option<String>,
    /// How the volume will be emptied.
    pub empty_by: Option<String>,
    /// Entries in the archive.
    pub entries: u64,
    /// Bytes of file content in the archive.
    pub bytes: u64,
}

/// Restore; the record gets the outcome even when it fails.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let (archive, record_sha) = orca_verify::archive_from(cli.archive.as_deref(), ctx, "restore")?;

    // 1. Verify and scan before touching anything.
    ctx.note(format!("verifying {}", archive.display()));
    let opts = orca_verify::Options {
        min_size_mb: ctx.config.min_size_warning_mb,
        expected_sha256: record_sha,
        update_manifest: true,
    };
    let report = orca_verify::verify(&archive, &opts, Prescan::default())?;
    for w in &report.warnings {
        ctx.warn(w);
    }
    if let Some(msg) = report.failure_message() {
        fail!(
            VerificationFailed,
            "refusing to restore: {msg}; nothing was changed"
        );
    }
    let verified_sha = report.sha256.clone().unwrap_or_default();
    let want = report.visitor.tree.finish();
    let manifest = orca_shared::manifest::read(&archive);
    match &manifest {
        orca_shared::manifest::Read::Valid(m) => {
            ctx.note(describe_manifest(m));
            ctx.record.set("archive_manifest", m);
        }
        orca_shared::manifest::Read::Ignored(why) => ctx.warn(why),
        orca_shared::manifest::Read::Missing => {
            ctx.note("the archive has no manifest (made by another tool or an older orca): restoring it as it is");
        }
    }

    // 2. The target and who uses it.
    let (target, new_volume) = match (&cli.to_new_volume, &cli.volume) {
        (Some(n), _) => (n.clone(), true),
        (None, Some(v)) => (v.clone(), false),
        (None, None) => match ctx.record.str("volume")? {
            Some(v) => (v.to_string(), false),
            None => {
                let found = discover::discover(&ctx.config)?;
                if let Some(why) = &found.explanation {
                    ctx.note(why);
                }
                (found.chosen.name, false)
            }
        },
    };
    let (info, users) = if new_volume {
        if docker::volume_inspect(&target)?.is_some() {
            fail!(
                AlreadyExists,
                "volume '{target}' already exists; --to-new-volume only creates new volumes (choose another name, or restore into it with --volume)"
            );
        }
        let info = VolumeInfo {
            name: target.clone(),
            driver: "local".into(),
            ..VolumeInfo::default()
        };
        (info, Vec::new())
    } else {
        (
            docker::require_volume(&target)?,
            docker::containers_using(&target)?,
        )
    };
    let active: Vec<ContainerRef> = users.iter().filter(|c| c.is_active()).cloned().collect();
    if !active.is_empty() && !cli.stop && !cli.dry_run {
        let names: Vec<&str> = active.iter().map(|c| c.name.as_str()).collect();
        fail!(
            VolumeInUse,
            "volume '{target}' is in use by running container(s) {}: stop them first, or pass --stop to have them stopped and started again; nothing was changed",
            names.join(", ")
        );
    }
    let backups_dir = ctx.config.backups_dir()?;
    let compression = ctx.config.compression;
    let safety_path =
        (!new_volume && !cli.no_safety_backup).then(|| safety_name(&backups_dir, compression));
    let plan = Plan {
        volume: target.clone(),
        new_volume,
        containers_to_stop: if cli.stop || cli.dry_run {
            active.clone()
        } else {
            Vec::new()
        },
        safety_backup: safety_path.as_deref().map(|p| p.display().to_string()),
        empty_by: (!new_volume).then(|| volume::strategy(&info, !users.is_empty()).to_string()),
        entries: want.entries(),
        bytes: want.content_bytes(),
    };
    let rec = &mut ctx.record;
    rec.set("restored_volume", &target);
    rec.set("entries", plan.entries);
    rec.set("restored_bytes", plan.bytes);
    rec.set("dry_run", cli.dry_run);
    rec.set("rolled_back", false);
    rec.set("safety_backup", serde_json::Value::Null);
    rec.set("stopped_containers", Vec::<ContainerRef>::new());
    if cli.dry_run {
        rec.set("plan", &plan);
        ctx.note(describe_plan(&archive, &plan));
        return Ok(());
    }
    ctx.note(describe_plan(&archive, &plan));

    // 3. Stop, and save what is there.
    let image = docker::ensure_helper_image(ctx.config.helper_image.as_deref())?;
    let _volume_lock = volume_lock::acquire(&LockRequest {
        tool: ctx.tool,
        volume: &target,
        mode: LockMode::Restore,
        image: &image,
        stops: &plan.containers_to_stop,
        journal: None,
        recovering: false,
    })?;
    let mut stopped = if cli.stop {
        StoppedContainers::stop(&users, cli.allow_autoremove)?
    } else {
        StoppedContainers::none()
    };
    ctx.record.set("stopped_containers", stopped.containers());
    if let Some(path) = &safety_path {
        ctx.note(format!(
            "saving the current contents of '{target}' to {}",
            path.display()
        ));
        let level = ctx.config.level_for(compression);
        orca_export::export(&orca_export::ExportOptions {
            volume: target.clone(),
            output: path.clone(),
            compression,
            level: level as u32,
            overwrite: false,
            stop: false,
            allow_autoremove: false,
            lock: false,
            helper_image: ctx.config.helper_image.clone(),
            backups_dir: Some(backups_dir.clone()),
            tool: ctx.tool,
            description: Some(format!(
                "safety copy made by orca-restore before restoring {}",
                archive.display()
            )),
            tags: vec!["pre-restore".to_string()],
        })
        .context("cannot make the safety backup, so nothing was changed")?;
        ctx.record.set("safety_backup", paths::utf8(path)?);
    }
    interrupt::check().context("nothing was changed")?;

    // 4. Replace the contents.
    let mut shell_images: Vec<String> = ctx.config.helper_image.iter().cloned().collect();
    for c in &users {
        if !shell_images.contains(&c.image) {
            shell_images.push(c.image.clone());
        }
    }
    let restored_from = archive
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string();
    let mut touched = false;
    let outcome = replace(
        ctx.tool,
        &info,
        new_volume,
        &archive,
        &want,
        &verified_sha,
        &image,
        &shell_images,
        &restored_from,
        &mut touched,
        Mode::Interruptible,
    );
    let result = match outcome {
        Ok(()) => Ok(()),
        Err(e) if !touched => Err(e.context("nothing was changed")),
        Err(e) if new_volume => {
            let removed = docker::volume_remove(&target);
            let what = if matches!(removed, Ok(docker::Removed::Yes)) { "the new volume was removed again" } else { "the new volume could not be removed" };
            Err(e.context(format!("restoring into new volume '{target}' failed; {what}")))
        }
        Err(e) => match &safety_path {
            None => Err(e.context(format!(
                "restore failed and volume '{target}' may be incomplete: no safety backup was made (--no-safety-backup)"
            ))),
            Some(safety) => {
                ctx.note(format!("restore failed ({e:#}); putting back the previous contents from {}", safety.display()));
                match rollback(ctx.tool, &info, safety, &image, &shell_images) {
                    Ok(()) => {
                        ctx.record.set("rolled_back", true);
                        let kind = if interrupt::interrupted() { ErrorKind::Interrupted } else { ErrorKind::RestoreRolledBack };
                        Err(OrcaError::new(
                            kind,
                            format!(
                                "restore of {} into volume '{target}' failed ({}); the volume was rolled back to its previous contents from {}",
                                archive.display(),
                                orca_shared::exit::message_of(&e, orca_shared::exit::kind_of(&e)),
                                safety.display()
                            ),
                        )
                        .into())
                    }
                    Err(r) => Err(OrcaError::new(
                        ErrorKind::RollbackFailed,
                        format!(
                            "restore of {} into volume '{target}' failed ({e:#}) and putting the previous contents back failed too ({r:#}); they are safe in {}: restore it with `orca-restore {} --volume {target}`",
                            archive.display(),
                            safety.display(),
                            safety.display()
                        ),
                    )
                    .into()),
                }
            }
        },
    };
    // 5. Start again what we stopped, whatever happened.
    let restarted = stopped.restart();
    result?;
    restarted?;
    ctx.note(format!(
        "restored {} entries ({}) into volume '{target}' and checked them against the archive",
        want.entries(),
        orca_shared::progress::seed_size(want.content_bytes())
    ));
    Ok(())
}

/// `orca-db-pre-restore-<time>[-N]<ext>`: a name no file has yet (two
/// restores in one second must not share one).
fn safety_name(dir: &Path, compression: names::Compression) -> PathBuf {
    let stem = format!(
        "{}pre-restore-{}",
        names::PREFIX,
        Local::now().format("%Y-%m-%d-%H-%M-%S")
    );
    let mut n = 1;
    loop {
        let name = if n == 1 {
            format!("{stem}{}", compression.extension())
        } else {
            format!("{stem}-{n}{}", compression.extension())
        };
        let path = dir.join(name);
        if path.symlink_metadata().is_err() {
            return path;
        }
        n += 1;
    }
}

fn describe_manifest(m: &orca_shared::manifest::Manifest) -> String {
    let mut s = format!(
        "the archive is a backup of volume '{}' taken {} ({})",
        m.volume,
        if m.created_at_local.is_empty() {
            &m.created_at
        } else {
            &m.created_at_local
        },
        if m.consistent {
            "consistent: SQL Server was not running"
        } else {
            "live copy: SQL Server was running"
        }
    );
    if let Some(d) = &m.description {
        s.push_str(&format!(", \"{d}\""));
    }
    if !m.tags.is_empty() {
        s.push_str(&format!(", tags: {}", m.tags.join(", ")));
    }
    if let Some(v) = &m.verification {
        s.push_str(&format!(
            ", last verified {} ({})",
            v.verified_at,
            if v.verified { "ok" } else { "FAILED" }
        ));
    }
    s
}

fn describe_plan(archive: &Path, plan: &Plan) -> String {
    let mut s = format!(
        "restore {} entries ({}) from {} into {}volume '{}'",
        plan.entries,
        orca_shared::progress::seed_size(plan.bytes),
        archive.display(),
        if plan.new_volume { "new " } else { "" },
        plan.volume
    );
    if !plan.containers_to_stop.is_empty() {
        let names: Vec<&str> = plan
            .containers_to_stop
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        s.push_str(&format!("; stop and restart {}", names.join(", ")));
    }
    if let Some(b) = &plan.safety_backup {
        s.push_str(&format!("; safety backup {b}"));
    }
    if let Some(e) = &plan.empty_by {
        s.push_str(&format!("; empty the volume: {e}"));
    }
    s
}

/// Empty (or create) the volume, extract, read back and compare.
#[allow(clippy::too_many_arguments)]
fn replace(
    tool: &str,
    info: &VolumeInfo,
    new_volume: bool,
    archive: &Path,
    want: &Tree,
    verified_sha: &str,
    image: &str,
    shell_images: &[String],
    restored_from: &str,
    touched: &mut bool,
    mode: Mode,
) -> anyhow::Result<()> {
    let interruptible = mode == Mode::Interruptible;
    if new_volume {
        let label = (
            "org.orca-backup.restored-from".to_string(),
            restored_from.to_string(),
        );
        volume::create(info, &[label])?;
        *touched = true;
    } else {
        volume::empty(tool, info, shell_images, touched)?;
    }
    if interruptible {
        interrupt::check()?;
    }
    let (streamed, sha) = volume::extract(tool, &info.name, image, archive, mode)?;
    if sha != verified_sha {
        fail!(
            VerificationFailed,
            "{} changed while it was being restored (SHA-256 {sha}, verified {verified_sha})",
            archive.display()
        );
    }
    if !streamed.differences(want, 1).is_empty() {
        fail!(
            VerificationFailed,
            "{} read differently the second time",
            archive.display()
        );
    }
    if interruptible {
        interrupt::check()?;
    }
    let got = volume::read_back(tool, &info.name, image, mode)?;
    volume::compare(&got, want)
}

/// Put the safety backup back; not interruptible (a second and third Ctrl-C still quit).
fn rollback(
    tool: &str,
    info: &VolumeInfo,
    safety: &Path,
    image: &str,
    shell_images: &[String],
) -> anyhow::Result<()> {
    let _critical = interrupt::critical("putting the previous contents back");
    let opts = orca_verify::Options::default();
    let report = orca_verify::verify(safety, &opts, TreeBuilder::default())?;
    if let Some(msg) = report.failure_message() {
        fail!(VerificationFailed, "{msg}");
    }
    let sha = report.sha256.clone().unwrap_or_default();
    let want = report.visitor.finish();
    let mut touched = false;
    // A re-created volume keeps the original's driver options and labels.
    let exists = docker::volume_inspect(&info.name)?.is_some();
    if !exists {
        volume::create(info, &[])?;
    }
    replace(
        tool,
        info,
        false,
        safety,
        &want,
        &sha,
        image,
        shell_images,
        "",
        &mut touched,
        Mode::Cleanup,
    )
}
