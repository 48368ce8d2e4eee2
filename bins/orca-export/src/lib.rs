//! `orca-export`: stream a volume, read-only, into an atomically written archive.
//!
//! The volume is mounted read-only in a helper container that is created and
//! never started; `docker cp CONTAINER:/volume/. -` then streams it out through
//! Docker's archive API as a tar rooted at `./`, exactly the layout of
//! `tar -C /volume .`. We compress that stream on the host on all cores, hash it
//! while writing, and write it under a temporary `.incomplete` name that is
//! renamed into place only once complete and on disk. No image is pulled, no
//! host folder is bind-mounted, no process runs in a container, and no
//! uncompressed copy of the volume touches the disk.
//!
//! The pieces: [`pargz`] (parallel single-member gzip), [`sink`] (hashing,
//! threaded file writer), and [`export`] tying them to docker.

pub mod hot;
pub mod pargz;
pub mod sink;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use chrono::{Local, Utc};
use clap::Parser;
use orca_shared::app::{CommonArgs, Ctx};
use orca_shared::consistency::{Consistency, HotCopy, Wanted};
use orca_shared::docker::{self, ContainerRef, HelperContainer, StoppedContainers, VolumeInfo};
use orca_shared::engine::{self, ArchiveReader, Mode};
use orca_shared::fsutil::{self, AtomicFile, DirLock};
use orca_shared::interrupt;
use orca_shared::manifest::{ContainerAtBackup, Manifest};
use orca_shared::names::{self, Compression};
use orca_shared::progress::{self, Progress};
use orca_shared::tarscan::{Scanner, Summary};
use orca_shared::volume_lock::{self, LockMode, LockRequest};
use orca_shared::{discover, err, fail, paths};

use crate::pargz::ParGz;
use crate::sink::{FileSink, HashingWriter, ThreadedWriter};

/// Stream a Docker volume, read-only, into a compressed tar archive.
///
/// Reads "volume", "backup_path", "overwrite" and "compression" from the record
/// on stdin (flags win); without them it finds the Orca volume and writes a
/// timestamped backup in the backups directory. Adds "size_bytes", "size",
/// "sha256", "compression", "compression_level", "uncompressed_bytes",
/// "entries", "duration_ms", "in_use_by", "stopped_containers", "consistent",
/// "consistency" (offline, hot, stopped, killed or live) and, for a hot copy,
/// "hot" (engine, method, databases, frozen_ms).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Cli {
    /// Volume to back up [default: the record's volume, else the Orca volume found as orca-find-volume does]
    #[arg(long, value_name = "NAME")]
    pub volume: Option<String>,

    /// Archive to write [default: the record's backup_path, else a timestamped name in the backups directory]
    #[arg(long, short, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Compression [default: the record's, else from the output's extension, else config, else gzip]
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,

    /// Compression level: gzip 1-9 [default 6], zstd 1-19 [default 3]
    #[arg(long, value_name = "N")]
    pub level: Option<u64>,

    /// Replace an existing archive of the same name
    #[arg(long)]
    pub overwrite: bool,

    /// How to copy a volume a running container uses: auto (hot when the database can, else live), hot (the database's snapshot freeze or backup mode, or nothing), stop, live [default: config consistency, else auto]
    #[arg(long, value_enum, value_name = "HOW")]
    pub consistency: Option<Wanted>,

    /// Same as --consistency stop: stop the containers using the volume for the copy, and start them again afterwards
    #[arg(long)]
    pub stop: bool,

    /// With --consistency stop: also stop a container started with --rm, accepting that stopping deletes it
    #[arg(long)]
    pub allow_autoremove: bool,

    /// A description to keep in the backup's manifest
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,

    /// A tag to find the backup by (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// Encrypt (age) to the recipients in config (encryption.recipients, encryption.recipients_file)
    #[arg(long)]
    pub encrypt: bool,

    /// Do not encrypt, even when config says encryption.always
    #[arg(long)]
    pub no_encrypt: bool,

    /// Encrypt to this age public key (age1...) or SSH public key (repeatable)
    #[arg(long = "recipient", short = 'r', value_name = "KEY")]
    pub recipients: Vec<String>,

    /// Encrypt to the recipients in this file, one per line
    #[arg(long, value_name = "PATH")]
    pub recipients_file: Option<PathBuf>,

    /// Encrypt with a passphrase: from the file $ORCA_PASSPHRASE_FILE names, else asked twice on the terminal
    #[arg(long)]
    pub passphrase: bool,

    /// Flags every orca tool has.
    #[command(flatten)]
    pub common: CommonArgs,
}

orca_shared::tool_args!(Cli);

/// What to export where.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Volume name.
    pub volume: String,
    /// Final archive path.
    pub output: PathBuf,
    /// Compression.
    pub compression: Compression,
    /// Level (validated for the compression; zstd's fast levels are
    /// negative, as `zstd --fast=N` is level -N).
    pub level: i32,
    /// Encrypt (age) to these recipients or this passphrase.
    pub encryption: Option<std::sync::Arc<orca_shared::crypt::Recipients>>,
    /// Whether replacing an existing archive is allowed.
    pub overwrite: bool,
    /// How to copy a volume that running containers use.
    pub consistency: Wanted,
    /// The longest a hot copy may hold the database's writes or backup mode.
    pub max_freeze: std::time::Duration,
    /// Accept that stopping a `--rm` container deletes it.
    pub allow_autoremove: bool,
    /// Take the volume's export lock (false when the caller holds its restore lock).
    pub lock: bool,
    /// Configured helper image.
    pub helper_image: Option<String>,
    /// The backups directory (the lock is taken when the output is in it).
    pub backups_dir: Option<PathBuf>,
    /// The tool name, for messages.
    pub tool: &'static str,
    /// Description for the manifest.
    pub description: Option<String>,
    /// Tags for the manifest.
    pub tags: Vec<String>,
}

/// What an export did.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// Where the archive is: the output asked for, or the next free name in
    /// the same minute when a timestamped name was taken meanwhile.
    pub output: PathBuf,
    /// How the files were copied.
    pub consistency: Consistency,
    /// Archive size.
    pub size_bytes: u64,
    /// SHA-256 of the archive, lowercase hex.
    pub sha256: String,
    /// Size of the tar stream before compression.
    pub uncompressed_bytes: u64,
    /// Entries in the archive.
    pub entries: u64,
    /// Wall time.
    pub duration_ms: u64,
    /// Containers that mount the volume.
    pub in_use_by: Vec<ContainerRef>,
    /// Containers stopped for the copy (and started again).
    pub stopped_containers: Vec<ContainerRef>,
    /// A consistent copy (offline, hot, or a clean stop).
    pub consistent: bool,
    /// What the hot copy was, for one.
    pub hot: Option<HotCopy>,
    /// The checksum file written beside the archive.
    pub checksum_path: PathBuf,
    /// The manifest written beside the archive.
    pub manifest_path: PathBuf,
}

/// Export the volume and add the results to the record.
pub fn run(cli: Cli, ctx: &mut Ctx) -> anyhow::Result<()> {
    let volume = match cli.volume {
        Some(v) => v,
        None => match ctx.record.str("volume")? {
            Some(v) => v.to_string(),
            None => {
                let found = discover::discover(&ctx.config)?;
                if let Some(why) = &found.explanation {
                    ctx.note(why);
                }
                found.chosen.name
            }
        },
    };
    let record_compression = match ctx.record.str("compression")? {
        Some(name) => Some(Compression::from_name(name).ok_or_else(|| {
            err!(
                Usage,
                "field 'compression' of the stdin record must be gzip, zstd or none, got '{name}'"
            )
        })?),
        None => None,
    };
    let output_given = match cli.output {
        Some(p) => Some(p),
        None => ctx.record.str("backup_path")?.map(PathBuf::from),
    };
    let from_extension = output_given
        .as_deref()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(orca_shared::crypt::SUFFIX).unwrap_or(n))
        .and_then(Compression::from_file_name);
    let compression = cli
        .compression
        .or(record_compression)
        .or(from_extension)
        .unwrap_or(ctx.config.compression);
    let encrypt_flags = orca_shared::crypt::EncryptFlags {
        encrypt: cli.encrypt,
        no_encrypt: cli.no_encrypt,
        recipients: cli.recipients.clone(),
        recipients_file: cli.recipients_file.clone(),
        passphrase: cli.passphrase,
    };
    let encrypting = orca_shared::crypt::wants_encryption(&encrypt_flags, &ctx.config.encryption);
    let backups_dir = ctx.config.backups_dir()?;
    let output = match output_given {
        Some(p) => p,
        // Taken in this minute: free_output below moves on to `-2`, `-3`...
        None => backups_dir.join(names::timestamped_name(Local::now(), compression)),
    };
    // An encrypted archive is named so: `.age` after the compression's
    // extension (orca-backup-name leaves it to this step).
    let output = match output.to_str() {
        Some(p) if encrypting && !p.ends_with(orca_shared::crypt::SUFFIX) => {
            PathBuf::from(format!("{p}{}", orca_shared::crypt::SUFFIX))
        }
        _ => output,
    };
    paths::utf8(&output)?;
    check_extension(&output, compression, encrypting)?;
    // Before asking for a passphrase: a name that is taken ends here.
    let early_overwrite = cli.overwrite || ctx.record.bool("overwrite")?.unwrap_or(false);
    let output = free_output(&output, early_overwrite)?;
    let encryption = orca_shared::crypt::recipients_for(&encrypt_flags, &ctx.config.encryption)?
        .map(std::sync::Arc::new);
    let level = cli
        .level
        .unwrap_or_else(|| ctx.config.level_for(compression));
    if let Err(why) = compression.check_level(level) {
        fail!(Usage, "--level: {why}");
    }
    let overwrite = cli.overwrite || ctx.record.bool("overwrite")?.unwrap_or(false);
    let description = match cli.description {
        Some(d) => Some(d),
        None => ctx.record.str("description")?.map(String::from),
    };
    let description = description
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if description
        .as_deref()
        .is_some_and(|d| d.chars().any(|c| c.is_control() && c != '\n'))
    {
        fail!(Usage, "--description must not contain control characters");
    }
    let tags = if cli.tags.is_empty() {
        record_tags(ctx)?
    } else {
        cli.tags
    };
    let tags = clean_tags(tags)?;
    let record_stop = ctx.record.bool("stop")?.unwrap_or(false);
    let consistency = match (cli.consistency, cli.stop || record_stop) {
        (Some(w), true) if w != Wanted::Stop => fail!(
            Usage,
            "--stop means --consistency stop; it cannot go with --consistency {}",
            w.as_str()
        ),
        (Some(w), _) => w,
        (None, true) => Wanted::Stop,
        (None, false) => ctx.config.consistency,
    };
    if cli.allow_autoremove && consistency != Wanted::Stop {
        fail!(
            Usage,
            "--allow-autoremove goes with --stop (or --consistency stop)"
        );
    }
    let opts = ExportOptions {
        volume,
        output,
        compression,
        level: level as i32,
        encryption,
        overwrite,
        consistency,
        max_freeze: std::time::Duration::from_secs(ctx.config.max_freeze_seconds),
        allow_autoremove: cli.allow_autoremove,
        lock: true,
        helper_image: ctx.config.helper_image.clone(),
        backups_dir: Some(backups_dir),
        tool: ctx.tool,
        description,
        tags,
    };
    let report = export(&opts)?;
    let rec = &mut ctx.record;
    rec.set("volume", &opts.volume);
    rec.set("backup_path", paths::utf8(&report.output)?);
    let renamed = rec.get("backup_name").and_then(|v| v.as_str())
        != report.output.file_name().and_then(|n| n.to_str());
    if (rec.get("backup_name").is_none() || renamed)
        && let Some(name) = report.output.file_name().and_then(|n| n.to_str())
    {
        rec.set("backup_name", name);
        let kind = names::BackupFileName::parse(name).map(|b| b.kind());
        if let Some(kind) = kind {
            rec.set("kind", kind.as_str());
        }
    }
    rec.set("compression", compression.as_str());
    rec.set("compression_level", level);
    rec.set("size_bytes", report.size_bytes);
    rec.set("size", progress::seed_size(report.size_bytes));
    rec.set("sha256", &report.sha256);
    rec.set("checksum_path", paths::utf8(&report.checksum_path)?);
    rec.set("uncompressed_bytes", report.uncompressed_bytes);
    rec.set("entries", report.entries);
    rec.set("duration_ms", report.duration_ms);
    rec.set("in_use_by", &report.in_use_by);
    rec.set("stopped_containers", &report.stopped_containers);
    rec.set("consistent", report.consistent);
    rec.set("consistency", report.consistency.as_str());
    if let Some(h) = &report.hot {
        rec.set("hot", h);
    }
    rec.set("manifest_path", paths::utf8(&report.manifest_path)?);
    if let Some(d) = &opts.description {
        rec.set("description", d);
    }
    rec.set("tags", &opts.tags);
    rec.set("encrypted", opts.encryption.is_some());
    if let Some(e) = &opts.encryption {
        rec.set("recipients", e.public());
    }
    ctx.note(format!(
        "wrote {} ({}, {} entries) in {:.1} s",
        report.output.display(),
        progress::seed_size(report.size_bytes),
        report.entries,
        report.duration_ms as f64 / 1000.0
    ));
    Ok(())
}

fn record_tags(ctx: &Ctx) -> anyhow::Result<Vec<String>> {
    match ctx.record.get("tags") {
        None => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| match v.as_str() {
                Some(s) => Ok(s.to_string()),
                None => fail!(
                    Usage,
                    "field 'tags' of the stdin record must be a list of strings"
                ),
            })
            .collect(),
        Some(_) => fail!(
            Usage,
            "field 'tags' of the stdin record must be a list of strings"
        ),
    }
}

/// Tags: trimmed, non-empty, printable, at most 64 characters, no duplicates.
pub fn clean_tags(tags: Vec<String>) -> anyhow::Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = t.trim().to_string();
        if t.is_empty() || t.chars().count() > 64 || t.chars().any(char::is_control) {
            fail!(
                Usage,
                "tag {t:?} is not usable: give 1-64 printable characters"
            );
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

/// The archive name must end in the compression's extension, and `.age`
/// after it exactly when it is encrypted.
pub fn check_extension(
    output: &Path,
    compression: Compression,
    encrypted: bool,
) -> anyhow::Result<()> {
    let full = output.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = match full.strip_suffix(orca_shared::crypt::SUFFIX) {
        Some(n) if encrypted => n,
        Some(_) => fail!(
            Usage,
            "output {} ends in {} but nothing says to encrypt it: pass --encrypt, --recipient or --passphrase, or choose a name without {}",
            output.display(),
            orca_shared::crypt::SUFFIX,
            orca_shared::crypt::SUFFIX
        ),
        None => full,
    };
    if !name.ends_with(compression.extension())
        || Compression::from_file_name(name) != Some(compression)
    {
        fail!(
            Usage,
            "output {} does not end in {} as {} compression requires (name it accordingly, or pass the same --compression to orca-backup-name)",
            output.display(),
            compression.extension(),
            compression.as_str()
        );
    }
    Ok(())
}

/// Export a volume to an archive: nothing is left behind on failure (no
/// temporary file, no helper container, stopped containers running again).
pub fn export(opts: &ExportOptions) -> anyhow::Result<ExportReport> {
    let started = Instant::now();
    let created_at = Utc::now();
    let docker_version = docker::server_version().unwrap_or_default();
    let volume_info = volume_lock::require_volume(&opts.volume)?;

    // One name is one backup, whatever its compression or encryption; a
    // timestamped one taken meanwhile moves on to the next of its minute.
    let requested = free_output(&opts.output, opts.overwrite)?;
    let dir = fsutil::parent_dir(&opts.output).to_path_buf();
    paths::ensure_private_dir(&dir)?;
    let _lock = match &opts.backups_dir {
        Some(b) if same_dir(b, &dir) => Some(DirLock::shared(&dir, opts.tool)?),
        _ => None,
    };

    let image = docker::ensure_helper_image(opts.helper_image.as_deref())?;
    // The lock first: clearing a killed run's lock may start containers
    // again, so who runs is only known after it. It lists every container
    // on the volume as one we may stop (a later run restarts only those that
    // stopped after the lock was taken).
    let _volume_lock = if opts.lock {
        let may_stop = if opts.consistency == Wanted::Stop {
            docker::containers_using(&opts.volume)?
        } else {
            Vec::new()
        };
        Some(volume_lock::acquire(&LockRequest {
            tool: opts.tool,
            volume: &opts.volume,
            mode: LockMode::Export,
            image: &image,
            stops: &may_stop,
            journal: None,
            recovering: false,
        })?)
    } else {
        None
    };
    // Holding the lock (no restore runs), a journal here is an interrupted
    // restore whose engine lock was lost. (Without the lock, the caller is a
    // restore that holds it.)
    if opts.lock
        && let Some(b) = &opts.backups_dir
    {
        orca_shared::journal::refuse_if_journaled(b, &opts.volume)?;
    }
    let in_use_by = docker::containers_using(&opts.volume)?;
    let active: Vec<&ContainerRef> = in_use_by.iter().filter(|c| c.is_active()).collect();
    let how = if active.is_empty() {
        How::Offline
    } else {
        choose(opts, &active)?
    };
    let mut stopped = StoppedContainers::none();
    match &how {
        How::Stop => stopped = StoppedContainers::stop(&in_use_by, opts.allow_autoremove)?,
        How::Live(why) => {
            let names: Vec<&str> = active.iter().map(|c| c.name.as_str()).collect();
            eprintln!(
                "{}: warning: container(s) {} are running on volume '{}': this is a live copy of the database's files and may not be consistent{why}; pass --stop for a consistent copy",
                opts.tool,
                names.join(", "),
                opts.volume
            );
        }
        How::Offline | How::Hot(_) => {}
    }
    interrupt::check()?;

    let helper = HelperContainer::create(opts.tool, &image, &opts.volume, false)?;
    let mut archive = AtomicFile::create(&requested)?;
    let file = archive
        .file()
        .try_clone()
        .with_context(|| format!("cannot write {}", archive.temp_path().display()))?;
    let estimate = estimate_size(&volume_info);
    let (streamed, hot_copy) = match &how {
        How::Hot(hot) => {
            let (target, plan) = &**hot;
            let (s, h) = hot_stream(opts, &helper, file, target, plan, &requested, estimate)?;
            (s, Some(h))
        }
        _ => {
            let shown = Progress::new(&format!("exporting {}", opts.volume), estimate);
            let s = stream_to(
                &helper,
                file,
                opts.compression,
                opts.level,
                opts.encryption.as_deref(),
                &shown,
            )
            .with_context(|| {
                format!(
                    "cannot export volume '{}' to {}",
                    opts.volume,
                    requested.display()
                )
            })?;
            shown.finish();
            (s, None)
        }
    };

    // The copy is done: give the database back before flushing to disk.
    let consistency = match &how {
        How::Offline => Consistency::Offline,
        How::Hot(_) => Consistency::Hot,
        How::Live(_) => Consistency::Live,
        How::Stop if stopped.killed().is_empty() => Consistency::Stopped,
        How::Stop => Consistency::Killed,
    };
    let consistent = consistency.is_consistent();
    let restarted = stopped.restart();
    let stopped_containers = stopped.containers();
    if let Err(e) = helper.remove() {
        eprintln!("{}: warning: {e:#}", opts.tool);
    }
    let stopped_ids: Vec<&str> = stopped_containers.iter().map(|c| c.id.as_str()).collect();
    let mut manifest = Manifest {
        format_version: orca_shared::manifest::FORMAT_VERSION,
        backup_name: String::new(),
        volume: opts.volume.clone(),
        volume_driver: volume_info.driver.clone(),
        volume_labels: volume_info.labels.clone(),
        created_at: created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        created_at_local: created_at
            .with_timezone(&Local)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        kind: String::new(),
        description: opts.description.clone(),
        tags: opts.tags.clone(),
        compression: opts.compression.as_str().to_string(),
        compression_level: i64::from(opts.level),
        size_bytes: streamed.size,
        sha256: streamed.sha256.clone(),
        uncompressed_bytes: streamed.summary.tar_bytes,
        entries: streamed.summary.entries,
        containers: in_use_by
            .iter()
            .map(|c| {
                let mut at = ContainerAtBackup::new(c, stopped_ids.contains(&c.id.as_str()));
                at.mount_point = docker::container_details(&c.id)
                    .ok()
                    .flatten()
                    .and_then(|d| d.volume_mounts.get(&opts.volume).cloned());
                at
            })
            .collect(),
        consistent,
        consistency: Some(consistency),
        hot: hot_copy.clone(),
        toolkit_version: env!("CARGO_PKG_VERSION").to_string(),
        docker_version,
        verification: None,
        sa_password: fingerprints(&opts.volume, &in_use_by),
        drills: Vec::new(),
        encryption: opts
            .encryption
            .as_ref()
            .map(|e| orca_shared::manifest::EncryptionInfo {
                format: "age".into(),
                recipients: e.public().to_vec(),
                passphrase: e.is_passphrase(),
            }),
    };
    orca_shared::testpoint::point("streamed");
    // A timestamped name taken meanwhile (another run in the same minute)
    // moves on to the next free one (`-2`, `-3`...); any other taken name is
    // refused. The sidecars follow the archive's final name.
    let bump = !opts.overwrite && is_timestamped(&requested);
    let mut output = requested.clone();
    let (checksum_path, manifest_path) = loop {
        // Another run may have made this name, in any form, while this one
        // streamed: its backup is never touched without --overwrite.
        if !opts.overwrite
            && let Some(taken) = taken_forms(&output).first()
        {
            if !bump {
                fail!(
                    AlreadyExists,
                    "backup {} was made by another run while this one was written; it was left untouched and this backup was not kept (choose another name, or pass --overwrite to replace it)",
                    taken.display()
                );
            }
            output = next_name(&output)?;
            continue;
        }
        let file_name = name_of(&output).to_string();
        let checksum_path = sidecar(&output, ".sha256");
        let checksum_line = format!("{}  {file_name}\n", streamed.sha256);
        // The checksum is written (as a temporary file) before the archive is
        // renamed, so a full disk cannot leave an archive without its checksum.
        let mut checksum = AtomicFile::create(&checksum_path)?;
        checksum
            .file()
            .write_all(checksum_line.as_bytes())
            .with_context(|| format!("cannot write {}", checksum.temp_path().display()))?;
        let manifest_path = orca_shared::manifest::path_for(&output);
        manifest.kind = names::BackupFileName::parse(&file_name)
            .map_or(names::Kind::Named, |b| b.kind())
            .as_str()
            .to_string();
        manifest.backup_name = file_name;
        let mut manifest_file = AtomicFile::create(&manifest_path)?;
        manifest_file
            .file()
            .write_all(&orca_shared::manifest::to_bytes(&manifest))
            .with_context(|| format!("cannot write {}", manifest_file.temp_path().display()))?;
        archive.retarget(&output);
        if opts.overwrite {
            archive.commit(true)?;
        } else if let Some(back) = archive.commit_new()? {
            if !bump {
                fail!(
                    AlreadyExists,
                    "{} was created by another run while this backup was written; it was left untouched and this backup was not kept (choose another name, or pass --overwrite to replace it)",
                    output.display()
                );
            }
            archive = back;
            output = next_name(&output)?;
            continue;
        }
        checksum.commit(true)?;
        manifest_file.commit(true)?;
        break (checksum_path, manifest_path);
    };
    if output != requested {
        eprintln!(
            "{}: {} was taken by another backup made in the same minute: this one is {}",
            opts.tool,
            name_of(&requested),
            name_of(&output)
        );
    }
    // Replaced (--overwrite only): the backup of this name in its other
    // forms goes too.
    if opts.overwrite {
        for t in taken_forms(&output) {
            if t != output && t.symlink_metadata().is_ok_and(|m| m.file_type().is_file()) {
                fsutil::remove_backup_files(&t);
            }
        }
    }
    restarted.with_context(|| format!("the backup {} is complete", output.display()))?;
    Ok(ExportReport {
        output,
        consistency,
        size_bytes: streamed.size,
        sha256: streamed.sha256,
        uncompressed_bytes: streamed.summary.tar_bytes,
        entries: streamed.summary.entries,
        duration_ms: started.elapsed().as_millis() as u64,
        in_use_by,
        stopped_containers,
        consistent,
        hot: hot_copy,
        checksum_path,
        manifest_path,
    })
}

/// How the volume is copied.
enum How {
    /// Nothing runs on it.
    Offline,
    /// With the database's help.
    Hot(Box<(orca_databases::hot::Target, orca_databases::hot::Plan)>),
    /// Its containers stopped for the copy.
    Stop,
    /// While everything runs (why, for the warning: `""` or `" (...)"`).
    Live(String),
}

/// How running containers on the volume are dealt with, from
/// `--consistency`; a SQL Server left frozen by an orca run that is gone is
/// thawed on the way, whatever was asked.
fn choose(opts: &ExportOptions, active: &[&ContainerRef]) -> anyhow::Result<How> {
    use orca_databases::engine::{Engine, detect};
    use orca_databases::hot::{self, Target};
    let limit = engine::timeouts()
        .request
        .max(std::time::Duration::from_secs(30));
    let mut targets = Vec::new();
    for c in active {
        let Some(d) = docker::container_details(&c.id)? else {
            continue;
        };
        let engine = detect(&d.image, &d.env);
        let target = Target {
            id: c.id.clone(),
            name: c.name.clone(),
            image: d.image.clone(),
            env: d.env.clone(),
            mount_point: d
                .volume_mounts
                .get(&opts.volume)
                .cloned()
                .unwrap_or_default(),
        };
        targets.push((target, engine));
    }
    // Stale freezes first, in every mode: a frozen server cannot write, nor
    // stop cleanly.
    let mut planned = Vec::new();
    for (t, engine) in &targets {
        let wants_plan = matches!(opts.consistency, Wanted::Auto | Wanted::Hot)
            && matches!(engine, Some(Engine::Sqlserver | Engine::Postgres));
        if wants_plan || *engine == Some(Engine::Sqlserver) {
            // Asking the database is part of the hot copy: when it cannot
            // be asked, there is no hot copy, and the other modes go on.
            let p = match hot::plan(t, limit) {
                Ok(p) => p,
                Err(e)
                    if wants_plan
                        && orca_shared::exit::kind_of(&e)
                            == orca_shared::exit::ErrorKind::VolumeBusy =>
                {
                    return Err(e);
                }
                Err(e) => {
                    orca_shared::interrupt::check()?;
                    if !wants_plan {
                        eprintln!("{}: warning: {e:#}", opts.tool);
                    }
                    hot::Planned {
                        plan: Err(format!("orca could not ask it ({e:#})")),
                        thawed_stale: None,
                    }
                }
            };
            if let Some(note) = &p.thawed_stale {
                eprintln!("{}: {note}", opts.tool);
            }
            planned.push((t.clone(), p.plan));
        }
    }
    match opts.consistency {
        Wanted::Stop => return Ok(How::Stop),
        Wanted::Live => return Ok(How::Live(String::new())),
        Wanted::Auto | Wanted::Hot => {}
    }
    let names: Vec<&str> = active.iter().map(|c| c.name.as_str()).collect();
    let why: String = if active.len() > 1 {
        format!(
            "more than one running container uses it ({}): a hot copy needs the database to be the only one",
            names.join(", ")
        )
    } else {
        match planned.into_iter().next() {
            Some((t, Ok(plan))) => return Ok(How::Hot(Box::new((t, plan)))),
            Some((t, Err(why))) => format!("container '{}' cannot give a hot copy: {why}", t.name),
            None => format!(
                "container '{}' runs no database orca knows how to take a hot copy of (SQL Server 2022+, PostgreSQL)",
                names.first().copied().unwrap_or_default()
            ),
        }
    };
    if opts.consistency == Wanted::Hot {
        fail!(
            VolumeInUse,
            "--consistency hot: no hot copy of volume '{}' is possible: {why}; nothing was written (pass --stop for a consistent copy, or --consistency live)",
            opts.volume
        );
    }
    Ok(How::Live(format!(" ({why})")))
}

/// The hot copy: the volume's stream spooled while the database helps,
/// then compressed (and for PostgreSQL completed) into the archive.
fn hot_stream(
    opts: &ExportOptions,
    helper: &HelperContainer,
    file: File,
    target: &orca_databases::hot::Target,
    plan: &orca_databases::hot::Plan,
    requested: &Path,
    estimate: Option<u64>,
) -> anyhow::Result<(Streamed, HotCopy)> {
    use orca_databases::hot::{self as dbhot, Plan};
    let limit = engine::timeouts()
        .request
        .max(std::time::Duration::from_secs(60));
    let mut spool = hot::Spool::create(requested, opts.encryption.is_some())?;
    let spool_path = spool.path().to_path_buf();
    let mut writer = spool.writer()?;
    let what = match plan {
        Plan::SqlServer { .. } => "writes held",
        Plan::Postgres { .. } => "backup mode",
    };
    let shown = Progress::new(&format!("copying {} ({what})", opts.volume), estimate);
    let mut held = dbhot::begin(target, plan, opts.max_freeze, limit)?;
    orca_shared::testpoint::point("hot-frozen");
    let mut source = ArchiveReader::open(
        helper.id(),
        &format!("{}/.", docker::MOUNT_PATH),
        Mode::Interruptible,
    )?;
    let mut first = true;
    loop {
        interrupt::check()?;
        held.check()?;
        let chunk = match source.next_chunk() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                interrupt::check()?;
                held.check()?;
                if let Some(err) = engine::engine_error_of(&e) {
                    return Err(err);
                }
                return Err(e).context("cannot read the volume's stream from Docker");
            }
        };
        if let Err(e) = writer.write_all(&chunk) {
            source.abort();
            let real = writer.finish().err().unwrap_or(e);
            return Err(real)
                .with_context(|| format!("cannot write the spool {}", spool_path.display()));
        }
        shown.add(chunk.len() as u64);
        if streamed_once(&mut first) {
            orca_shared::testpoint::point("hot-spooling");
        }
    }
    drop(source);
    writer
        .finish()
        .and_then(hot::SpoolSink::finish)
        .with_context(|| format!("cannot write the spool {}", spool_path.display()))?;
    orca_shared::testpoint::point("hot-spooled");
    let ended = held.end(limit)?;
    shown.finish();

    let shown = Progress::new(&format!("compressing {}", opts.volume), estimate);
    let mut enc = Encoding::new(
        opts.compression,
        opts.level,
        file,
        opts.encryption.as_deref(),
        &shown,
    )?;
    let reader = spool.reader()?;
    match plan {
        Plan::SqlServer { .. } => {
            let mut reader = reader;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                interrupt::check()?;
                let n = reader
                    .read(&mut buf)
                    .with_context(|| format!("cannot read the spool {}", spool_path.display()))?;
                if n == 0 {
                    break;
                }
                enc.feed(&buf[..n])?;
            }
        }
        Plan::Postgres {
            data_dir,
            wal_segment_size,
            ..
        } => {
            let under = |name: &str| {
                if data_dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{data_dir}/{name}")
                }
            };
            let wal_dir = under("pg_wal/");
            let dropped = [
                under("postmaster.pid"),
                under("postmaster.opts"),
                under("backup_label"),
                under("tablespace_map"),
            ];
            let pg_version = under("PG_VERSION");
            let mut owner = (0u64, 0u64);
            hot::rewrite(
                reader,
                |seen| {
                    if seen.path == pg_version {
                        owner = (
                            hot::header_number(seen.header, 108..116),
                            hot::header_number(seen.header, 116..124),
                        );
                    }
                    let in_wal = seen.path.starts_with(&wal_dir) && seen.typeflag != b'5';
                    !(in_wal || dropped.iter().any(|d| d == seen.path))
                },
                |b| {
                    interrupt::check()?;
                    enc.feed(b)
                },
            )?;
            let now = Utc::now().timestamp().max(0) as u64;
            for extra in &ended.extra {
                enc.feed(&hot::file_entry(
                    &extra.path,
                    &extra.contents,
                    0o600,
                    owner.0,
                    owner.1,
                    now,
                )?)?;
            }
            for wal in &ended.wal {
                interrupt::check()?;
                let f = hot::fetch(helper, wal).map_err(|e| {
                    if interrupt::interrupted() {
                        return e;
                    }
                    err!(
                        HotCopyFailed,
                        "the hot copy of container '{}' failed: cannot read WAL segment {wal} from the volume ({}); nothing was kept",
                        target.name,
                        orca_shared::exit::one_line(&format!("{e:#}"))
                    )
                })?;
                if f.contents.len() as u64 != *wal_segment_size {
                    fail!(
                        HotCopyFailed,
                        "the hot copy of container '{}' failed: WAL segment {wal} holds {} bytes, not {wal_segment_size}; nothing was kept",
                        target.name,
                        f.contents.len()
                    );
                }
                enc.feed(&hot::file_entry(
                    wal,
                    &f.contents,
                    f.mode,
                    f.uid,
                    f.gid,
                    f.mtime,
                )?)?;
            }
            enc.feed(&[0u8; 1024])?;
        }
    }
    drop(spool);
    let streamed = enc.finish()?;
    shown.finish();
    Ok((streamed, ended.info))
}

/// The forms of the backup name of `output` that exist (itself first when
/// it does): `x.tar.gz`, `x.tar.zst`, `x.tar`, each also `.age`. A file that
/// is not named as a backup has only its `.age` twin.
fn taken_forms(output: &Path) -> Vec<PathBuf> {
    names::existing_forms(fsutil::parent_dir(output), name_of(output))
}

/// Whether `output` is named as a timestamped backup.
fn is_timestamped(output: &Path) -> bool {
    names::BackupFileName::parse(name_of(output))
        .is_some_and(|b| b.kind() == names::Kind::Timestamped)
}

/// `output` when no form of its name exists (or `overwrite`); else, for a
/// timestamped name, the next free one of its minute; else exit 5.
fn free_output(output: &Path, overwrite: bool) -> anyhow::Result<PathBuf> {
    if overwrite {
        return Ok(output.to_path_buf());
    }
    let mut out = output.to_path_buf();
    while let Some(taken) = taken_forms(&out).first() {
        if !is_timestamped(&out) {
            fail!(
                AlreadyExists,
                "backup {} already exists; it was left untouched (choose another name, or pass --overwrite to replace it)",
                taken.display()
            );
        }
        out = next_name(&out)?;
    }
    Ok(out)
}

/// The next name in the same minute after a timestamped `output`.
fn next_name(output: &Path) -> anyhow::Result<PathBuf> {
    match names::next_in_minute(name_of(output)) {
        Some(n) => Ok(fsutil::parent_dir(output).join(n)),
        None => fail!(
            AlreadyExists,
            "every name for the minute of {} is taken; wait a minute, or give a name with --name",
            output.display()
        ),
    }
}

fn name_of(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}

/// Fingerprints of the `sa` password of the containers on the volume (for
/// orca-restore's "password differs" warning); a container that cannot be
/// inspected just has none.
fn fingerprints(
    volume: &str,
    containers: &[ContainerRef],
) -> Vec<orca_shared::sapassword::Fingerprint> {
    let mut keys = orca_shared::sapassword::Keys::default();
    containers
        .iter()
        .filter_map(|c| {
            let details = docker::container_details(&c.id).ok().flatten()?;
            let (var, pw) = orca_shared::sapassword::from_env(&details.env)?;
            keys.fingerprint(volume, &c.name, &var, &pw).ok()
        })
        .collect()
}

/// `<archive><suffix>`.
pub fn sidecar(archive: &Path, suffix: &str) -> PathBuf {
    let mut s = archive.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The volume's size when its data is visible on this host (native Linux engines).
fn estimate_size(info: &VolumeInfo) -> Option<u64> {
    use std::io::IsTerminal;
    if !io::stderr().is_terminal() || info.mountpoint.is_empty() {
        return None;
    }
    fn walk(dir: &Path, total: &mut u64) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(&entry.path(), total)?;
            } else {
                *total += meta.len();
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(Path::new(&info.mountpoint), &mut total).ok()?;
    Some(total)
}

fn streamed_once(first: &mut bool) -> bool {
    std::mem::replace(first, false)
}

/// What came out of the stream.
pub struct Streamed {
    /// The tar stream's totals.
    pub summary: Summary,
    /// Archive SHA-256.
    pub sha256: String,
    /// Archive size.
    pub size: u64,
}

enum Encoder {
    Gzip(ParGz<FileSink>),
    Zstd(zstd::stream::write::Encoder<'static, ThreadedWriter<FileSink>>),
    Plain(ThreadedWriter<FileSink>),
}

impl Encoder {
    fn new(
        compression: Compression,
        level: i32,
        file: File,
        encryption: Option<&orca_shared::crypt::Recipients>,
    ) -> io::Result<Encoder> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Encrypted, the age header is the file's first write: no byte of
        // the volume ever reaches the disk in the clear.
        let sink = match encryption {
            Some(r) => FileSink::Age(Box::new(r.wrap(HashingWriter::new(file))?)),
            None => FileSink::Plain(HashingWriter::new(file)),
        };
        Ok(match compression {
            Compression::Gzip => Encoder::Gzip(ParGz::new(sink, level.max(1) as u32, threads)?),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(ThreadedWriter::new(sink)?, level)?;
                enc.multithread(threads as u32)?;
                enc.include_checksum(true)?;
                // zstd's default job (4x the window) keeps ~80 MiB in flight with
                // two workers; 2 MiB jobs keep it near 30 MiB for 0.1% in size.
                enc.set_parameter(zstd::zstd_safe::CParameter::JobSize(2 << 20))?;
                Encoder::Zstd(enc)
            }
            Compression::None => Encoder::Plain(ThreadedWriter::new(sink)?),
        })
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(w) => w.write_all(buf),
            Encoder::Zstd(w) => w.write_all(buf),
            Encoder::Plain(w) => w.write_all(buf),
        }
    }

    fn finish(self) -> io::Result<HashingWriter<File>> {
        match self {
            Encoder::Gzip(w) => w.finish()?.finish(),
            Encoder::Zstd(w) => w.finish()?.finish()?.finish(),
            Encoder::Plain(w) => w.finish()?.finish(),
        }
    }
}

/// The archive being written: compression (and encryption) on all cores,
/// the tar stream checked as it passes.
pub struct Encoding<'a> {
    encoder: Option<Encoder>,
    scanner: Scanner<()>,
    shown: &'a Progress,
}

impl<'a> Encoding<'a> {
    /// Start writing into `file`.
    pub fn new(
        compression: Compression,
        level: i32,
        file: File,
        encryption: Option<&orca_shared::crypt::Recipients>,
        shown: &'a Progress,
    ) -> anyhow::Result<Encoding<'a>> {
        Ok(Encoding {
            encoder: Some(
                Encoder::new(compression, level, file, encryption)
                    .context("cannot start compressing")?,
            ),
            scanner: Scanner::new(()),
            shown,
        })
    }

    /// The next bytes of the tar stream.
    pub fn feed(&mut self, chunk: &[u8]) -> anyhow::Result<()> {
        if let Err(e) = self.scanner.feed(chunk) {
            fail!(Failure, "the volume's tar stream is damaged: {e}");
        }
        let Some(encoder) = self.encoder.as_mut() else {
            fail!(Failure, "cannot write the archive: it already failed");
        };
        if let Err(e) = encoder.write_all(chunk) {
            // The pipeline's own error (disk full...) says more than "stopped".
            let real = match self.encoder.take() {
                Some(enc) => enc.finish().err().unwrap_or(e),
                None => e,
            };
            return Err(real).context("cannot write the archive");
        }
        self.shown.add(chunk.len() as u64);
        Ok(())
    }

    /// The stream is complete: finish the archive.
    pub fn finish(self) -> anyhow::Result<Streamed> {
        let (summary, ()) = self.scanner.finish();
        let summary = summary.map_err(|e| {
            err!(
                Failure,
                "the volume's stream from Docker ended early ({e}); is the Docker engine still running?"
            )
        })?;
        let Some(encoder) = self.encoder else {
            fail!(Failure, "cannot write the archive: it already failed");
        };
        let sink = encoder.finish().context("cannot write the archive")?;
        let (_file, sha256, size) = sink.finish();
        Ok(Streamed {
            summary,
            sha256,
            size,
        })
    }
}

/// Stream the helper's `/volume/.` through the encoder into `file`.
pub fn stream_to(
    helper: &HelperContainer,
    file: File,
    compression: Compression,
    level: i32,
    encryption: Option<&orca_shared::crypt::Recipients>,
    shown: &Progress,
) -> anyhow::Result<Streamed> {
    let mut source = ArchiveReader::open(
        helper.id(),
        &format!("{}/.", docker::MOUNT_PATH),
        Mode::Interruptible,
    )?;
    let mut encoder =
        Encoder::new(compression, level, file, encryption).context("cannot start compressing")?;
    let mut scanner = Scanner::new(());
    let mut first = true;
    loop {
        interrupt::check()?;
        let chunk = match source.next_chunk() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                interrupt::check()?;
                if let Some(err) = engine::engine_error_of(&e) {
                    return Err(err);
                }
                return Err(e).context("cannot read the volume's stream from Docker");
            }
        };
        if let Err(e) = scanner.feed(&chunk) {
            source.abort();
            fail!(Failure, "Docker sent a damaged tar stream: {e}");
        }
        if let Err(e) = encoder.write_all(&chunk) {
            source.abort();
            // The pipeline's own error (disk full...) says more than "stopped".
            let real = encoder.finish().err().unwrap_or(e);
            return Err(real).context("cannot write the archive");
        }
        shown.add(chunk.len() as u64);
        if streamed_once(&mut first) {
            orca_shared::testpoint::point("export-streaming");
        }
    }
    interrupt::check()?;
    drop(source);
    let (summary, ()) = scanner.finish();
    let summary = summary.map_err(|e| {
        err!(
            Failure,
            "the volume's stream from Docker ended early ({e}); is the Docker engine still running?"
        )
    })?;
    let sink = encoder.finish().context("cannot write the archive")?;
    let (_file, sha256, size) = sink.finish();
    Ok(Streamed {
        summary,
        sha256,
        size,
    })
}
