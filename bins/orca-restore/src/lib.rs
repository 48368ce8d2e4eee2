//! `orca-restore`: bring a volume back from an archive, safely, crash-consistently.
//!
//! 1. Verify the archive (the orca-verify checks) and scan every entry as
//!    Docker will read it ([`prescan`]): anything that could land outside the
//!    volume or that tar readers read differently is refused before anything
//!    changes. When the target was found by discovery and the archive's
//!    manifest names another volume, refuse too (exit 2).
//! 2. Take the volume's restore lock (one writer per volume, engine-wide) and
//!    refuse while a container using the volume runs, unless `--stop`.
//! 3. Write the restore journal ([`orca_shared::journal`]), then stop the
//!    containers and save the current contents to a safety backup
//!    (`orca-db-pre-restore-<time>.tar.zst`, fast zstd), unless
//!    `--no-safety-backup`.
//! 4. Empty the volume, extract the archive into it through Docker, read it
//!    back and compare it with the archive, entry by entry; the journal names
//!    each phase before it starts.
//! 5. If anything fails once the volume may have changed, put the safety
//!    backup back (exit 10); if even that fails, keep the journal (exit 11).
//!    Start the stopped containers again, remove the journal, release the lock.
//!
//! Killed at any instant (SIGKILL, a power cut, a third Ctrl-C outside the
//! steps that cannot stop half-way), the journal and the lock stay:
//! `orca-restore --resume` finishes restoring the archive, `--rollback` puts
//! the safety backup back; either then starts the containers the journal
//! lists. Until then every orca tool refuses the volume (exit 13).

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
use orca_shared::journal::{self, Journal, Phase};
use orca_shared::manifest::{self, Manifest};
use orca_shared::names::{self, Compression};
use orca_shared::volume_lock::{self, LockMode, LockRequest};
use orca_shared::{ErrorKind, OrcaError, discover, err, fail, interrupt, paths, testpoint};
use serde::Serialize;

use crate::prescan::Prescan;
use crate::tree::{Tree, TreeBuilder};

/// Restore a Docker volume from a backup archive, with a safety copy, automatic rollback and a journal.
///
/// Takes the archive as an argument or the record's "backup_path"; the target
/// is --volume, else the record's "volume", else the Orca volume found as
/// orca-find-volume does. Adds "restored_volume", "safety_backup",
/// "stopped_containers", "entries", "restored_bytes", "rolled_back",
/// "password_differs", "dry_run" (with "plan"), "archive_manifest" (when the
/// archive has one) and, when a restore is left to finish, "journal".
/// --resume and --rollback finish a restore that was interrupted.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Archive to restore (gzip, zstd or plain tar; a path, or the s3:// or file:// URL of a copy); `-` or nothing: the backup_path of the record on stdin
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

    /// Do not save the current contents first (no automatic rollback is possible then)
    #[arg(long)]
    pub no_safety_backup: bool,

    /// Say what would happen, change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Finish an interrupted restore of --volume: restore its archive, then start the containers it stopped
    #[arg(long, conflicts_with_all = ["rollback", "archive", "to_new_volume", "dry_run", "no_safety_backup"])]
    pub resume: bool,

    /// Undo an interrupted restore of --volume: put its safety backup back, then start the containers it stopped
    #[arg(long, conflicts_with_all = ["archive", "to_new_volume", "dry_run", "no_safety_backup"])]
    pub rollback: bool,

    /// What opens an encrypted archive (and an encrypted safety copy).
    #[command(flatten)]
    pub keys: orca_verify::KeyArgs,

    /// Set by orca-drill only (no flag): the new volume is a drill's scratch
    /// copy, judged by the database's own checks instead of being read back.
    #[arg(skip)]
    pub scratch: bool,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(
    Cli,
    stdin = |cli: &Cli| if cli.resume || cli.rollback {
        orca_shared::app::StdinUse::Never
    } else {
        orca_shared::app::archive_stdin(cli.archive.as_deref())
    }
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

/// Restore, or finish an interrupted restore; the record gets the outcome
/// even when it fails.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    if cli.resume || cli.rollback {
        return recover(cli, ctx);
    }
    restore(cli, ctx)
}

/// What every step that changes a volume needs.
struct Work<'a> {
    tool: &'a str,
    /// The helper image (never started).
    image: String,
    /// Images with a shell, for emptying a volume containers use.
    shell_images: Vec<String>,
    info: VolumeInfo,
    journal: Journal,
    journal_path: PathBuf,
    /// Whether the volume may have changed (emptying began).
    touched: bool,
    /// What opens encrypted archives and safety copies.
    ids: std::sync::Arc<orca_shared::crypt::Identities>,
    /// A drill's scratch volume: not read back (the database's own checks
    /// judge it, and it is thrown away).
    scratch: bool,
}

impl Work<'_> {
    fn enter(&mut self, phase: Phase) -> anyhow::Result<()> {
        self.journal.enter(phase, &self.journal_path)
    }

    /// Empty (or create) the volume, extract `archive`, read it back and
    /// compare it with `want`; each phase journaled before it starts.
    fn replace(
        &mut self,
        archive: &Path,
        want: &Tree,
        verified_sha: &str,
        restoring: bool,
    ) -> anyhow::Result<()> {
        let mode = if restoring {
            Mode::Interruptible
        } else {
            Mode::Cleanup
        };
        self.enter(if restoring {
            Phase::Emptying
        } else {
            Phase::RollingBack
        })?;
        if restoring {
            testpoint::point("emptying");
        }
        if self.journal.new_volume && docker::volume_inspect(&self.info.name)?.is_none() {
            let label = (
                "org.orca-backup.restored-from".to_string(),
                archive
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_string(),
            );
            self.touched = true;
            volume::create(&self.info, &[label])?;
        } else if docker::volume_inspect(&self.info.name)?.is_none() {
            // Killed between removing and creating it again.
            self.touched = true;
            volume::create(&self.info, &[])?;
        } else {
            volume::empty(self.tool, &self.info, &self.shell_images, &mut self.touched)?;
        }
        if mode == Mode::Interruptible {
            interrupt::check()?;
        }
        if restoring {
            self.enter(Phase::Extracting)?;
        }
        let point = if restoring {
            "extracting"
        } else {
            "rollback-extracting"
        };
        let sha = volume::extract(&volume::Extraction {
            tool: self.tool,
            volume: &self.info.name,
            image: &self.image,
            archive,
            root: want.nodes.get(&b"."[..]),
            mode,
            point,
            ids: &self.ids,
        })?;
        if sha != verified_sha {
            fail!(
                VerificationFailed,
                "{} changed while it was being restored (SHA-256 {sha}, verified {verified_sha})",
                archive.display()
            );
        }
        if mode == Mode::Interruptible {
            interrupt::check()?;
        }
        if restoring && self.scratch {
            return Ok(());
        }
        if restoring {
            self.enter(Phase::Comparing)?;
        }
        let got = volume::read_back(
            self.tool,
            &self.info.name,
            &self.image,
            mode,
            restoring.then_some("comparing"),
        )?;
        volume::compare(&got, want)
    }

    /// Put the safety backup back. Cannot be cut short by Ctrl-C.
    fn rollback(&mut self, safety: &Path, safety_sha: Option<&str>) -> anyhow::Result<()> {
        let _critical = interrupt::critical("putting the previous contents back");
        // The journal already says the volume changed; if it cannot say more
        // (a full disk), the rollback still goes ahead.
        if let Err(e) = self.enter(Phase::RollingBack) {
            eprintln!("{}: warning: {e:#}", self.tool);
        }
        let opts = orca_verify::Options {
            expected_sha256: safety_sha.map(String::from),
            identities: Some(self.ids.clone()),
            ..orca_verify::Options::default()
        };
        let report = orca_verify::verify(safety, &opts, TreeBuilder::default())?;
        if let Some(msg) = report.failure_message() {
            fail!(VerificationFailed, "{msg}");
        }
        // An encrypted safety copy that these keys cannot open would be put
        // back as nothing: refuse before the volume is touched again.
        refuse_unopened(
            &report,
            "; the volume was not touched by the rollback: give the identity of the safety copy's recipients (--identity)",
        )?;
        let sha = report.sha256.clone().unwrap_or_default();
        let want = report.visitor.finish();
        self.replace(safety, &want, &sha, false)
    }

    /// The restore has ended: remove the journal (a warning if that fails).
    fn close(&self) {
        if let Err(e) = Journal::remove(&self.journal_path) {
            eprintln!("{}: warning: {e:#}", self.tool);
        }
    }
}

/// The safety copy's zstd level: `zstd --fast=3`, about twice as fast as
/// level 1 for some 8% more bytes (the copy is made while the database is
/// down, and it is temporary: prune removes it with the other backups).
const SAFETY_LEVEL: i32 = -3;

fn restore(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let (archive, record_sha) = orca_verify::archive_from(cli.archive.as_deref(), ctx, "restore")?;
    // A copy elsewhere (s3://..., file://...) is downloaded into the backups
    // directory first, checked against its .sha256, then restored from there.
    // A dry run changes nothing: the copy goes to a temporary directory
    // that is gone when the plan is made.
    let mut _dry_download: Option<tempfile::TempDir> = None;
    let (archive, record_sha) = match archive.to_str() {
        Some(url) if orca_remote::is_url(url) => {
            let into = if cli.dry_run {
                let t = tempfile::tempdir().context("cannot make a temporary directory")?;
                let p = t.path().to_path_buf();
                _dry_download = Some(t);
                p
            } else {
                ctx.config.backups_dir()?
            };
            let local = orca_remote::fetch(url, &into, &ctx.config, ctx.tool)?;
            ctx.record.set("fetched_from", url);
            if !cli.dry_run {
                ctx.record.set("backup_path", paths::utf8(&local)?);
            }
            (local, None)
        }
        _ => (archive, record_sha),
    };

    // The target.
    let (target, new_volume, discovered) = match (&cli.to_new_volume, &cli.volume) {
        (Some(n), _) => (n.clone(), true, false),
        (None, Some(v)) => (v.clone(), false, false),
        (None, None) => match ctx.record.str("volume")? {
            // orca-find-volume's record (it lists its candidates) is a
            // discovery too.
            Some(v) => (v.to_string(), false, ctx.record.get("candidates").is_some()),
            None => {
                let found = discover::discover(&ctx.config)?;
                if let Some(why) = &found.explanation {
                    ctx.note(why);
                }
                (found.chosen.name, false, true)
            }
        },
    };
    docker::check_volume_name(&target)?;
    // An interrupted restore of this volume must be finished first (its
    // lock in the engine here; its journal once we hold the lock, since a
    // restore that runs has one too).
    let backups_dir = ctx.config.backups_dir()?;
    volume_lock::refuse_if_interrupted(&target)?;
    let manifest = manifest::read(&archive);
    match &manifest {
        manifest::Read::Valid(m) => {
            ctx.note(describe_manifest(m));
            ctx.record.set("archive_manifest", m);
            if discovered && m.volume != target {
                fail!(
                    Usage,
                    "{} is a backup of volume '{}', but the Orca volume found here is '{target}': refusing to guess; pass --volume {} to restore it where it came from, or --volume {target} to restore it there anyway (nothing was changed)",
                    archive.display(),
                    m.volume,
                    m.volume
                );
            }
        }
        manifest::Read::Ignored(why) => ctx.warn(why),
        manifest::Read::Missing => ctx.note(
            "the archive has no manifest (made by another tool or an older orca): restoring it as it is",
        ),
    }

    // 1. Verify and scan before touching anything.
    ctx.note(format!("verifying {}", archive.display()));
    let ids = cli.keys.load(ctx)?;
    let opts = orca_verify::Options {
        min_size_mb: ctx.config.min_size_warning_mb,
        expected_sha256: record_sha,
        update_manifest: true,
        identities: Some(ids.clone()),
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
    refuse_unopened(&report, "; nothing was changed")?;
    let archive_encrypted = report.encryption.is_some();
    let verified_sha = report.sha256.clone().unwrap_or_default();
    let want = report.visitor.tree.finish();

    // The volume as it is, and who uses it.
    let existing = docker::volume_inspect(&target)?;
    let info = match (&existing, new_volume) {
        (Some(_), true) => fail!(
            AlreadyExists,
            "volume '{target}' already exists; --to-new-volume only creates new volumes (choose another name, or restore into it with --volume)"
        ),
        (None, false) => {
            volume_lock::require_volume(&target)?;
            fail!(
                VolumeNotFound,
                "volume '{target}' not found (list volumes with `docker volume ls`, or let orca-find-volume find it)"
            )
        }
        (Some(i), false) => i.clone(),
        (None, true) => VolumeInfo {
            name: target.clone(),
            driver: "local".into(),
            ..VolumeInfo::default()
        },
    };
    let users = if new_volume {
        Vec::new()
    } else {
        docker::containers_using(&target)?
    };
    let password_differs = password_check(ctx, manifest.manifest(), &users);
    ctx.record.set("password_differs", password_differs);

    let safety_encryption = if !new_volume && !cli.no_safety_backup {
        let e = safety_encryption(ctx, &ids, archive_encrypted)?;
        refuse_unopenable_safety(e.as_deref(), &ids)?;
        e
    } else {
        None
    };
    let safety_path = (!new_volume && !cli.no_safety_backup).then(|| {
        safety_name(
            &backups_dir,
            &target,
            Compression::Zstd,
            safety_encryption.is_some(),
        )
    });
    let active: Vec<ContainerRef> = users.iter().filter(|c| c.is_active()).cloned().collect();
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
        if !active.is_empty() && !cli.stop {
            ctx.warn(format!(
                "containers {} run on the volume: a real restore needs --stop",
                names_of(&active)
            ));
        }
        ctx.record.set("plan", &plan);
        ctx.note(describe_plan(&archive, &plan));
        return Ok(());
    }

    // 2. The lock first: clearing a killed run's lock may start containers
    // again, so who runs is only known after it.
    let image = docker::ensure_helper_image(ctx.config.helper_image.as_deref())?;
    paths::ensure_private_dir(&backups_dir)?;
    let journal_path = journal::path_for(&backups_dir, &target);
    let journal_text = paths::utf8(&journal_path)?.to_string();
    let mut lock = volume_lock::acquire(&LockRequest {
        tool: ctx.tool,
        volume: &target,
        mode: LockMode::Restore,
        image: &image,
        stops: &users,
        journal: Some(&journal_text),
        recovering: false,
    })?;
    testpoint::point("locked");
    // Holding the lock, a journal left here is a dead restore's (the engine
    // lost its lock: `docker container prune`).
    journal::refuse_if_journaled(&backups_dir, &target)?;
    if new_volume && docker::volume_inspect(&target)?.is_some() {
        fail!(
            AlreadyExists,
            "volume '{target}' was created meanwhile; nothing was changed"
        );
    }
    let users = if new_volume {
        Vec::new()
    } else {
        docker::containers_using(&target)?
    };
    let active: Vec<ContainerRef> = users.iter().filter(|c| c.is_active()).cloned().collect();
    if !active.is_empty() && !cli.stop {
        fail!(
            VolumeInUse,
            "volume '{target}' is in use by running container(s) {}: stop them first, or pass --stop to have them stopped and started again; nothing was changed",
            names_of(&active)
        );
    }
    let mut plan = plan;
    plan.containers_to_stop = active.clone();
    ctx.note(describe_plan(&archive, &plan));

    // 3. The journal, before the first change.
    let mut shell_images: Vec<String> = ctx.config.helper_image.iter().cloned().collect();
    for c in &users {
        if !shell_images.contains(&c.image) {
            shell_images.push(c.image.clone());
        }
    }
    let mut work = Work {
        tool: ctx.tool,
        image,
        shell_images,
        info: info.clone(),
        journal: Journal {
            format_version: journal::FORMAT_VERSION,
            volume: target.clone(),
            new_volume,
            volume_driver: info.driver.clone(),
            volume_options: info.options.clone(),
            volume_labels: info.labels.clone(),
            // Absolute: --resume may run from another directory.
            archive: paths::utf8(&std::path::absolute(&archive)?)?.to_string(),
            archive_sha256: verified_sha.clone(),
            safety_backup: safety_path
                .as_deref()
                .map(|p| paths::utf8(p).map(String::from))
                .transpose()?,
            safety_sha256: None,
            stopped_containers: active.clone(),
            phase: Phase::Stopping,
            started_at: journal::now(),
            updated_at: String::new(),
            pid: std::process::id(),
            host: orca_shared::creator::Creator::current().host.clone(),
            extra: serde_json::Map::new(),
        },
        journal_path: journal_path.clone(),
        touched: false,
        ids: ids.clone(),
        scratch: cli.scratch && new_volume,
    };
    work.journal.save(&journal_path)?;
    let quit = interrupt::quit_as(
        ErrorKind::RestoreInterrupted.exit_code() as i32,
        interrupted_record(ctx.tool, &target, &journal_path),
        format!(
            "quitting at once; the restore journal {} is kept: finish with `orca-restore --resume --volume {target}` or undo with `orca-restore --rollback --volume {target}`",
            journal_path.display()
        ),
    );
    testpoint::point("journaled");

    // Until the volume is touched, any failure only needs the containers back.
    // A SQL Server an orca run left frozen cannot write, nor shut down cleanly.
    for note in orca_databases::hot::thaw_stale(&users, &target) {
        ctx.note(note);
    }
    let before = (|| -> anyhow::Result<StoppedContainers> {
        let stopped = StoppedContainers::stop(&users, cli.allow_autoremove)?;
        testpoint::point("stopped");
        if let Some(path) = &safety_path {
            work.enter(Phase::Saving)?;
            ctx.note(format!(
                "saving the current contents of '{target}' to {}",
                path.display()
            ));
            let saved = orca_export::export(&orca_export::ExportOptions {
                volume: target.clone(),
                output: path.clone(),
                compression: Compression::Zstd,
                level: SAFETY_LEVEL,
                encryption: safety_encryption.clone(),
                overwrite: false,
                consistency: orca_shared::consistency::Wanted::Live,
                max_freeze: std::time::Duration::from_secs(60),
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
            .context("cannot make the safety backup")?;
            // An encrypted safety copy that this run could not open again
            // would make the rollback impossible: refuse now, unchanged.
            if safety_encryption.is_some()
                && let Err(e) = work.ids.open_file(path)
            {
                orca_shared::fsutil::remove_backup_files(path);
                let (_, why) = e.explain(&work.ids, &[]);
                fail!(
                    DecryptionFailed,
                    "the safety copy is encrypted to encryption.recipients, but no identity given opens it ({why}): pass --identity with the key of one of those recipients, or --no-safety-backup"
                );
            }
            work.journal.safety_sha256 = Some(saved.sha256);
            work.journal.save(&journal_path)?;
            ctx.record.set("safety_backup", paths::utf8(path)?);
        }
        interrupt::check()?;
        Ok(stopped)
    })();
    let mut stopped = match before {
        Ok(s) => s,
        Err(e) => {
            // Nothing changed: the containers come back (the guard), the
            // journal goes, the lock goes.
            work.close();
            return Err(e.context("nothing was changed"));
        }
    };
    ctx.record.set("stopped_containers", stopped.containers());

    // 4. Replace the contents.
    let outcome = work.replace(&archive, &want, &verified_sha, true);
    let result = match outcome {
        Ok(()) => {
            // Whole and compared: a kill from here on only needs the
            // containers started again.
            if let Err(e) = work.enter(Phase::Restarting) {
                ctx.warn(format!("{e:#}"));
            }
            testpoint::point("restarting");
            Ok(())
        }
        Err(e) if !work.touched => {
            // Emptying never began: the volume is as it was.
            Err(e.context("nothing was changed"))
        }
        Err(e) if new_volume => {
            if matches!(docker::volume_remove(&target), Ok(docker::Removed::Yes)) {
                Err(OrcaError::new(
                    ErrorKind::RestoreRolledBack,
                    format!(
                        "restoring into new volume '{target}' failed ({}); the new volume was removed again",
                        orca_shared::exit::message_of(&e, orca_shared::exit::kind_of(&e))
                    ),
                )
                .into())
            } else {
                // A half-restored new volume stays: the journal says so.
                lock.keep();
                ctx.record.set("journal", paths::utf8(&journal_path)?);
                return Err(OrcaError::new(
                    ErrorKind::RestoreInterrupted,
                    format!(
                        "restoring into new volume '{target}' failed ({}) and the half-restored volume could not be removed: run `orca-restore --rollback --volume {target}` to remove it, or `--resume` to restore into it again (journal {})",
                        orca_shared::exit::message_of(&e, orca_shared::exit::kind_of(&e)),
                        journal_path.display()
                    ),
                )
                .into());
            }
        }
        Err(e) => match safety_path.clone() {
            None => {
                // Nothing to put back: the journal stays for --resume, and
                // the containers stay stopped until the volume is whole.
                lock.keep();
                ctx.record.set("journal", paths::utf8(&journal_path)?);
                let also = held_back(stopped);
                return Err(OrcaError::new(
                    ErrorKind::RestoreInterrupted,
                    format!(
                        "restore of {} into volume '{target}' failed ({}) and no safety backup was made (--no-safety-backup): the volume may be incomplete; run `orca-restore --resume --volume {target}` to restore it again (journal {}){also}",
                        archive.display(),
                        orca_shared::exit::message_of(&e, orca_shared::exit::kind_of(&e)),
                        journal_path.display()
                    ),
                )
                .into());
            }
            Some(safety) => {
                ctx.note(format!(
                    "restore failed ({e:#}); putting back the previous contents from {}",
                    safety.display()
                ));
                let safety_sha = work.journal.safety_sha256.clone();
                match work.rollback(&safety, safety_sha.as_deref()) {
                    Ok(()) => {
                        ctx.record.set("rolled_back", true);
                        let kind = if interrupt::interrupted() {
                            ErrorKind::Interrupted
                        } else {
                            ErrorKind::RestoreRolledBack
                        };
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
                    Err(r) => {
                        lock.keep();
                        ctx.record.set("journal", paths::utf8(&journal_path)?);
                        let also = held_back(stopped);
                        return Err(OrcaError::new(
                            ErrorKind::RollbackFailed,
                            format!(
                                "restore of {} into volume '{target}' failed ({e:#}) and putting the previous contents back failed too ({r:#}); they are safe in {}: run `orca-restore --rollback --volume {target}` to try again (journal {}){also}",
                                archive.display(),
                                safety.display(),
                                journal_path.display()
                            ),
                        )
                        .into());
                    }
                }
            }
        },
    };
    // 5. Start again what we stopped, whatever happened; the journal goes.
    let restarted = stopped.restart();
    drop(quit);
    work.close();
    drop(lock);
    result?;
    restarted.map_err(|e| e.context("the restore is complete"))?;
    ctx.note(format!(
        "restored {} entries ({}) into volume '{target}'{}",
        want.entries(),
        orca_shared::progress::seed_size(want.content_bytes()),
        if cli.scratch {
            " (a drill's scratch copy: the database's checks judge it)"
        } else {
            " and checked them against the archive"
        }
    ));
    Ok(())
}

/// `--resume` / `--rollback`: finish a restore its journal says was interrupted.
fn recover(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let ids = cli.keys.load(ctx)?;
    let backups_dir = ctx.config.backups_dir()?;
    let volume = match cli.volume.clone() {
        Some(v) => v,
        None => the_interrupted_volume(&backups_dir)?,
    };
    docker::check_volume_name(&volume)?;
    // A restore killed between its lock and its journal changed nothing:
    // its lock goes, and there is nothing to finish.
    if let Some(h) = volume_lock::clear_unjournaled(ctx.tool, &volume)? {
        let who = h
            .creator
            .as_ref()
            .map(|c| c.describe())
            .unwrap_or_else(|| "a process that is gone".into());
        ctx.note(format!(
            "nothing to {}: the restore of volume '{volume}' by {who} was killed before it changed anything (it had written no journal); its lock was removed and the volume is as it was",
            if cli.resume { "resume" } else { "roll back" }
        ));
        ctx.record.set("restored_volume", &volume);
        ctx.record.set("nothing_to_do", true);
        return Ok(());
    }
    // The journal: where the lock in the engine says, else ours.
    let journal_path = volume_lock::holders(&volume)?
        .into_iter()
        .find_map(|h| h.journal)
        .map(PathBuf::from)
        .unwrap_or_else(|| journal::path_for(&backups_dir, &volume));
    if journal::unseen(&journal_path) {
        fail!(
            RestoreInterrupted,
            "the restore of volume '{volume}' was interrupted and its journal {} cannot be seen: its directory is missing or unreadable (a disk that is not mounted, another user's directory?); make it available, then run this again",
            journal_path.display()
        );
    }
    if !journal_path.exists() {
        fail!(
            Usage,
            "no interrupted restore of volume '{volume}' to {} (no journal at {})",
            if cli.resume { "resume" } else { "roll back" },
            journal_path.display()
        );
    }
    let j = Journal::load(&journal_path)?;
    if j.volume != volume {
        fail!(
            Failure,
            "the journal {} is for volume '{}', not '{volume}'",
            journal_path.display(),
            j.volume
        );
    }
    ctx.note(format!(
        "{} the restore of {} into volume '{volume}', interrupted while {} (started {} by pid {} on {})",
        if cli.resume { "resuming" } else { "rolling back" },
        j.archive,
        j.phase.as_str(),
        j.started_at,
        j.pid,
        j.host
    ));
    let image = docker::ensure_helper_image(ctx.config.helper_image.as_deref())?;
    let journal_text = paths::utf8(&journal_path)?.to_string();
    let mut lock = volume_lock::acquire(&LockRequest {
        tool: ctx.tool,
        volume: &volume,
        mode: LockMode::Restore,
        image: &image,
        stops: &j.stopped_containers,
        journal: Some(&journal_text),
        recovering: true,
    })?;
    // Until the volume is whole again, the lock stays whatever happens: it is
    // how every orca tool on this engine knows.
    lock.keep();
    let quit = interrupt::quit_as(
        ErrorKind::RestoreInterrupted.exit_code() as i32,
        interrupted_record(ctx.tool, &volume, &journal_path),
        format!(
            "quitting at once; the restore journal {} is kept: run `orca-restore --{} --volume {volume}` again",
            journal_path.display(),
            if cli.resume { "resume" } else { "rollback" }
        ),
    );
    ctx.record.set("restored_volume", &volume);
    ctx.record
        .set("recovered", if cli.resume { "resume" } else { "rollback" });
    ctx.record.set("rolled_back", false);
    ctx.record.set("journal", paths::utf8(&journal_path)?);
    let outcome = recover_locked(&cli, ctx, j, &journal_path, image, ids);
    match outcome {
        Ok((stopped, work, rolled_back)) => {
            let mut stopped = stopped;
            let restarted = stopped.restart();
            drop(quit);
            work.close();
            let _ = lock.release();
            ctx.record.remove("journal");
            restarted.map_err(|e| {
                e.context(format!(
                    "the {} is complete",
                    if cli.resume && rolled_back.is_none() {
                        "restore"
                    } else {
                        "rollback"
                    }
                ))
            })?;
            if let Some(why) = rolled_back {
                // --resume failed and the safety backup was put back.
                return Err(OrcaError::new(ErrorKind::RestoreRolledBack, why).into());
            }
            ctx.note(format!(
                "volume '{volume}' holds {} again; the journal is gone",
                if cli.resume {
                    "the archive's contents"
                } else {
                    "its previous contents"
                }
            ));
            Ok(())
        }
        Err((e, stopped)) => {
            let also = stopped.map(|s| held_back(*s)).unwrap_or_default();
            let kind = orca_shared::exit::kind_of(&e);
            let cause = orca_shared::exit::message_of(&e, kind);
            // The way out that can still work.
            let next = match (cli.resume, kind) {
                (true, ErrorKind::VerificationFailed) => format!(
                    "the archive cannot be restored as it is: put the previous contents back with `orca-restore --rollback --volume {volume}`"
                ),
                (false, ErrorKind::VerificationFailed) => format!(
                    "the safety backup cannot be used: restore the archive again with `orca-restore --resume --volume {volume}`"
                ),
                (true, _) => format!(
                    "run `orca-restore --resume --volume {volume}` again once the cause is fixed"
                ),
                (false, _) => format!(
                    "run `orca-restore --rollback --volume {volume}` again once the cause is fixed"
                ),
            };
            // What the user can fix keeps its own code; the rest says
            // whether putting the old contents back failed.
            let code = match kind {
                ErrorKind::VolumeInUse
                | ErrorKind::DockerUnavailable
                | ErrorKind::Usage
                | ErrorKind::PermissionDenied
                | ErrorKind::NoSpace
                | ErrorKind::VolumeBusy
                | ErrorKind::DecryptionFailed
                | ErrorKind::RollbackFailed => kind,
                _ if cli.rollback => ErrorKind::RollbackFailed,
                _ => ErrorKind::RestoreInterrupted,
            };
            Err(OrcaError::new(
                code,
                format!(
                    "{} volume '{volume}' failed ({cause}); the journal {} is kept: {next}{also}",
                    if cli.resume {
                        "resuming the restore of"
                    } else {
                        "rolling back"
                    },
                    journal_path.display(),
                ),
            )
            .into())
        }
    }
}

type Recovered = (StoppedContainers, Work<'static>, Option<String>);
type Unrecovered = (anyhow::Error, Option<Box<StoppedContainers>>);

/// The recovery itself, under the lock: Ok with the containers to start
/// again, the work (to close) and, when --resume ended in a rollback, why.
fn recover_locked(
    cli: &Cli,
    ctx: &mut Ctx,
    j: Journal,
    journal_path: &Path,
    image: String,
    ids: std::sync::Arc<orca_shared::crypt::Identities>,
) -> Result<Recovered, Unrecovered> {
    let volume = j.volume.clone();
    let info = match docker::volume_inspect(&volume) {
        Ok(Some(i)) => i,
        Ok(None) => VolumeInfo {
            name: volume.clone(),
            driver: j.volume_driver.clone(),
            options: j.volume_options.clone(),
            labels: j.volume_labels.clone(),
            ..VolumeInfo::default()
        },
        Err(e) => return Err((e, None)),
    };
    let users = docker::containers_using(&volume).map_err(|e| (e, None))?;
    let mut shell_images: Vec<String> = ctx.config.helper_image.iter().cloned().collect();
    for c in users.iter().chain(j.stopped_containers.iter()) {
        if !shell_images.contains(&c.image) {
            shell_images.push(c.image.clone());
        }
    }
    // Containers that run on the volume now must not see it change under
    // them: the journal's own (someone started them again) are stopped again;
    // others need --stop. All are written to the journal first, so that they
    // are started again at the end whatever happens to this run.
    let stopped_ids: Vec<&str> = j.stopped_containers.iter().map(|c| c.id.as_str()).collect();
    let running: Vec<ContainerRef> = users.iter().filter(|c| c.is_active()).cloned().collect();
    let intruders: Vec<&ContainerRef> = running
        .iter()
        .filter(|c| !stopped_ids.contains(&c.id.as_str()))
        .collect();
    if !intruders.is_empty() && !cli.stop {
        let names: Vec<&str> = intruders.iter().map(|c| c.name.as_str()).collect();
        return Err((
            err!(
                VolumeInUse,
                "container(s) {} run on volume '{volume}' in the middle of its restore: pass --stop to have them stopped (and started again after), or stop them",
                names.join(", ")
            ),
            None,
        ));
    }
    let mut j = j;
    for c in &running {
        if !j.stopped_containers.iter().any(|s| s.id == c.id) {
            j.stopped_containers.push(c.clone());
        }
    }
    j.save(journal_path).map_err(|e| (e, None))?;
    StoppedContainers::stop(&running, cli.allow_autoremove)
        .map_err(|e| (e, None))?
        .forget();
    let stopped = StoppedContainers::adopt(j.stopped_containers.clone());
    let mut work = Work {
        tool: ctx.tool,
        image,
        shell_images,
        info,
        journal: j.clone(),
        journal_path: journal_path.to_path_buf(),
        touched: j.phase.changed(),
        ids,
        scratch: false,
    };
    let result: anyhow::Result<Option<String>> = if cli.rollback {
        if !j.phase.changed() {
            ctx.note("the volume was not changed yet: nothing to put back");
            Ok(None)
        } else if j.new_volume {
            match docker::volume_remove(&volume) {
                Ok(docker::Removed::Yes) => Ok(None),
                Ok(docker::Removed::InUse(m)) => Err(err!(
                    Failure,
                    "cannot remove the half-restored new volume '{volume}': {m}"
                )),
                Err(e) => Err(e),
            }
        } else {
            match (&j.safety_backup, &j.safety_sha256) {
                (Some(safety), Some(sha)) => {
                    ctx.record.set("safety_backup", safety);
                    work.rollback(Path::new(safety), Some(sha)).map(|()| {
                        ctx.record.set("rolled_back", true);
                        None
                    })
                }
                _ => Err(err!(
                    Failure,
                    "the restore of volume '{volume}' made no complete safety backup, so its previous contents cannot be put back: run `orca-restore --resume --volume {volume}` to restore {} again",
                    j.archive
                )),
            }
        }
    } else if j.phase == Phase::Restarting {
        ctx.note("the volume already holds the archive's contents, compared: only the containers remain to be started");
        Ok(None)
    } else {
        resume(ctx, &mut work, &j)
    };
    match result {
        Ok(rolled_back) => Ok((stopped, work, rolled_back)),
        Err(e) => Err((e, Some(Box::new(stopped)))),
    }
}

/// `--resume`: the archive again, as the journal names it. Ok(Some(why))
/// when it failed and the safety backup was put back instead.
fn resume(ctx: &mut Ctx, work: &mut Work<'_>, j: &Journal) -> anyhow::Result<Option<String>> {
    let archive = PathBuf::from(&j.archive);
    let opts = orca_verify::Options {
        min_size_mb: 0,
        expected_sha256: Some(j.archive_sha256.clone()),
        update_manifest: false,
        identities: Some(work.ids.clone()),
    };
    let report = orca_verify::verify(&archive, &opts, Prescan::default())?;
    if let Some(msg) = report.failure_message() {
        fail!(
            VerificationFailed,
            "cannot resume: {msg} (the archive must be the one the restore started with)"
        );
    }
    refuse_unopened(&report, "; nothing was changed by this run")?;
    let want = report.visitor.tree.finish();
    // A safety copy that never completed is made now, while the volume is
    // still untouched.
    if !j.phase.changed()
        && let Some(safety) = &j.safety_backup
        && j.safety_sha256.is_none()
    {
        let safety = PathBuf::from(safety);
        let encryption = safety_encryption(ctx, &work.ids, report.encryption.is_some())?;
        refuse_unopenable_safety(encryption.as_deref(), &work.ids)?;
        let path = if safety.exists()
            || safety
                .to_string_lossy()
                .ends_with(orca_shared::crypt::SUFFIX)
                != encryption.is_some()
        {
            safety_name(
                orca_shared::fsutil::parent_dir(&safety),
                &j.volume,
                Compression::Zstd,
                encryption.is_some(),
            )
        } else {
            safety
        };
        work.enter(Phase::Saving)?;
        let saved = orca_export::export(&orca_export::ExportOptions {
            volume: j.volume.clone(),
            output: path.clone(),
            compression: Compression::Zstd,
            level: SAFETY_LEVEL,
            encryption,
            overwrite: false,
            consistency: orca_shared::consistency::Wanted::Live,
            max_freeze: std::time::Duration::from_secs(60),
            allow_autoremove: false,
            lock: false,
            helper_image: ctx.config.helper_image.clone(),
            backups_dir: None,
            tool: ctx.tool,
            description: Some(format!(
                "safety copy made by orca-restore before restoring {}",
                j.archive
            )),
            tags: vec!["pre-restore".to_string()],
        })?;
        if let Some(e) = work
            .ids
            .open_file(&path)
            .err()
            .filter(|_| path.to_string_lossy().ends_with(orca_shared::crypt::SUFFIX))
        {
            orca_shared::fsutil::remove_backup_files(&path);
            let (_, why) = e.explain(&work.ids, &[]);
            fail!(
                DecryptionFailed,
                "the safety copy is encrypted to encryption.recipients, but no identity given opens it ({why}): pass --identity with the key of one of those recipients; the volume was not touched by this run"
            );
        }
        work.journal.safety_backup = Some(paths::utf8(&path)?.to_string());
        work.journal.safety_sha256 = Some(saved.sha256);
        work.journal.save(&work.journal_path.clone())?;
    }
    ctx.record.set("entries", want.entries());
    ctx.record.set("restored_bytes", want.content_bytes());
    match work.replace(&archive, &want, &j.archive_sha256, true) {
        Ok(()) => {
            if let Err(e) = work.enter(Phase::Restarting) {
                ctx.warn(format!("{e:#}"));
            }
            Ok(None)
        }
        Err(e) if !work.touched => Err(e),
        Err(e) => {
            let (safety, sha) = (
                work.journal.safety_backup.clone(),
                work.journal.safety_sha256.clone(),
            );
            match (safety, sha) {
                (Some(safety), Some(sha)) => {
                    ctx.note(format!(
                        "resuming failed ({e:#}); putting back the previous contents from {safety}"
                    ));
                    work.rollback(Path::new(&safety), Some(&sha))
                        .map_err(|r| {
                            OrcaError::new(
                                ErrorKind::RollbackFailed,
                                format!(
                                    "resuming failed ({e:#}) and putting the previous contents back failed too ({r:#}); they are safe in {safety}"
                                ),
                            )
                        })?;
                    ctx.record.set("rolled_back", true);
                    Ok(Some(format!(
                        "resuming the restore failed ({}); the volume was rolled back to its previous contents from {safety}",
                        orca_shared::exit::message_of(&e, orca_shared::exit::kind_of(&e))
                    )))
                }
                _ => Err(e),
            }
        }
    }
}

/// An encrypted archive must be opened to be restored: no identity, or none
/// that fits, is exit 14 (2 for an identity the config names that cannot
/// be read) before anything changes. `after` ends the message.
fn refuse_unopened<V>(report: &orca_verify::Report<V>, after: &str) -> anyhow::Result<()> {
    if let Some(msg) = &report.decryption_error {
        return Err(OrcaError::new(report.decryption_kind, format!("{msg}{after}")).into());
    }
    if let Some(e) = &report.encryption
        && e.state != orca_verify::decode::Opening::Opened
    {
        let why = match &e.state {
            orca_verify::decode::Opening::NoIdentity(why) => why.clone(),
            _ => "it could not be opened".to_string(),
        };
        fail!(
            DecryptionFailed,
            "cannot restore from {}: {why}{after}",
            report.path.display()
        );
    }
    Ok(())
}

/// Before anything stops: a safety copy encrypted only to X25519 recipients
/// none of the given identities belongs to could never be put back (SSH
/// recipients and passphrases are checked once the copy exists).
fn refuse_unopenable_safety(
    enc: Option<&orca_shared::crypt::Recipients>,
    ids: &orca_shared::crypt::Identities,
) -> anyhow::Result<()> {
    let Some(r) = enc else { return Ok(()) };
    let public = r.public();
    if r.is_passphrase()
        || public.is_empty()
        || !public.iter().all(|p| p.starts_with("age1"))
        || public.iter().any(|p| ids.opens(p))
    {
        return Ok(());
    }
    fail!(
        DecryptionFailed,
        "the safety copy would be encrypted to encryption.recipients ({}), but no identity given is one of theirs, so it could not be put back: pass --identity with the key of one of them, or --no-safety-backup; nothing was changed",
        public.join(", ")
    )
}

/// How the safety copy is encrypted: to the configured recipients when there
/// are some (the copy holds the database as much as a backup does), else
/// with the archive's passphrase when one was given; in the clear otherwise,
/// with a warning when the archive itself was encrypted.
fn safety_encryption(
    ctx: &Ctx,
    ids: &orca_shared::crypt::Identities,
    archive_encrypted: bool,
) -> anyhow::Result<Option<std::sync::Arc<orca_shared::crypt::Recipients>>> {
    let cfg = &ctx.config.encryption;
    let configured = !cfg.recipients.is_empty()
        || cfg
            .recipients_file
            .as_deref()
            .is_some_and(|f| !f.trim().is_empty());
    if configured {
        let flags = orca_shared::crypt::EncryptFlags {
            encrypt: true,
            ..Default::default()
        };
        return Ok(orca_shared::crypt::recipients_for(&flags, cfg)?.map(std::sync::Arc::new));
    }
    if let Some(p) = ids.passphrase() {
        return Ok(Some(std::sync::Arc::new(
            orca_shared::crypt::Recipients::passphrase(p.clone()),
        )));
    }
    if archive_encrypted {
        ctx.warn(
            "the safety copy of the current contents will not be encrypted (no encryption.recipients in config): it holds the database in the clear until it is pruned; set encryption.recipients to encrypt safety copies too",
        );
    }
    Ok(None)
}

/// The one volume with an interrupted restore (engine-wide, or in this
/// backups directory), or an error listing them.
fn the_interrupted_volume(backups_dir: &Path) -> anyhow::Result<String> {
    let mut found: Vec<String> = volume_lock::abandoned_restores().unwrap_or_default();
    // A journal that cannot be read names no volume: leave it out.
    for (_, j) in journal::in_dir(backups_dir, &mut Vec::new()) {
        if !found.contains(&j.volume) {
            found.push(j.volume);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => fail!(
            Usage,
            "no interrupted restore found (no restore journal in {} and no abandoned restore lock): nothing to finish",
            backups_dir.display()
        ),
        _ => fail!(
            Usage,
            "interrupted restores of several volumes ({}): say which with --volume",
            found.join(", ")
        ),
    }
}

/// The record a restore that quits at once leaves on stdout.
fn interrupted_record(tool: &str, volume: &str, journal: &Path) -> String {
    let mut r = orca_shared::record::Record::new();
    r.set("restored_volume", volume);
    r.set("journal", journal.display().to_string());
    r.set_failure(
        ErrorKind::RestoreInterrupted,
        &format!(
            "the restore of volume '{volume}' was interrupted; finish it with `orca-restore --resume --volume {volume}` or undo it with `orca-restore --rollback --volume {volume}`"
        ),
        tool,
    );
    serde_json::to_string(r.fields()).unwrap_or_default()
}

/// Whether the backup was taken under another `sa` password than the
/// containers on the volume use now (warned about); `None` when it cannot
/// be told.
fn password_check(ctx: &Ctx, manifest: Option<&Manifest>, users: &[ContainerRef]) -> Option<bool> {
    let m = manifest?;
    if m.sa_password.is_empty() {
        return None;
    }
    let mut keys = orca_shared::sapassword::Keys::default();
    let mut any = None;
    for c in users {
        let Some(details) = docker::container_details(&c.id).ok().flatten() else {
            continue;
        };
        let Some((var, pw)) = orca_shared::sapassword::from_env(&details.env) else {
            continue;
        };
        let Some(differs) =
            orca_shared::sapassword::differs(&mut keys, &m.sa_password, &m.volume, &pw)
        else {
            continue; // fingerprints this build cannot check
        };
        if differs {
            ctx.warn(format!(
                "the backup was taken when SQL Server's sa password differed from the {var} of container '{}': SQL Server keeps the password inside the volume, so after this restore Orca's login will fail (\"Login failed for user 'sa'\"). Either set the AppHost's SQL password parameter (Parameters:<name>-password in its user secrets) back to the one in use when the backup was taken, or change the sa password in SQL Server after the restore (ALTER LOGIN sa WITH PASSWORD = '...')",
                c.name
            ));
            return Some(true);
        }
        any = Some(false);
    }
    any
}

/// Containers kept stopped while a volume is not whole; the message part
/// that says so.
fn held_back(stopped: StoppedContainers) -> String {
    let names = names_of(&stopped.containers());
    stopped.forget();
    if names.is_empty() {
        String::new()
    } else {
        format!(
            "; container(s) {names} stay stopped until the volume is whole (the journal lists them; --resume or --rollback starts them)"
        )
    }
}

/// `orca-db-pre-restore-<time>[-N]<ext>`: a name no file has yet.
/// `orca-db-pre-restore-<time>-<volume>`: unique per restore, since only one
/// restore of a volume runs at a time (its lock) and the volume is in the
/// name; two restores of different volumes in the same second into one
/// backups directory never pick the same name. A name taken anyway (in any
/// form) gets `-2`, `-3`...
fn safety_name(dir: &Path, volume: &str, compression: Compression, encrypted: bool) -> PathBuf {
    let ext = format!(
        "{}{}",
        compression.extension(),
        if encrypted {
            orca_shared::crypt::SUFFIX
        } else {
            ""
        }
    );
    // Volume names are [a-zA-Z0-9][a-zA-Z0-9_.-]*: safe in file names; cut
    // so the whole name stays well within file name limits.
    let volume: String = volume.chars().take(100).collect();
    let stem = format!(
        "{}pre-restore-{}-{volume}",
        names::PREFIX,
        Local::now().format("%Y-%m-%d-%H-%M-%S")
    );
    let mut n = 1;
    loop {
        let name = if n == 1 {
            format!("{stem}{ext}")
        } else {
            format!("{stem}-{n}{ext}")
        };
        let path = dir.join(&name);
        // No form of the name may exist (a backup name is one backup).
        if !names::any_form_exists(dir, &name) {
            return path;
        }
        n += 1;
    }
}

fn names_of(cs: &[ContainerRef]) -> String {
    cs.iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_manifest(m: &Manifest) -> String {
    let mut s = format!(
        "the archive is a backup of volume '{}' taken {} ({})",
        m.volume,
        if m.created_at_local.is_empty() {
            &m.created_at
        } else {
            &m.created_at_local
        },
        m.consistency().describe()
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
        s.push_str(&format!(
            "; stop and restart {}",
            names_of(&plan.containers_to_stop)
        ));
    }
    if let Some(b) = &plan.safety_backup {
        s.push_str(&format!("; safety backup {b}"));
    }
    if let Some(e) = &plan.empty_by {
        s.push_str(&format!("; empty the volume: {e}"));
    }
    s
}
