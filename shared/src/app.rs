//! The `main` every tool shares: parse flags, read the record, load config, run,
//! and turn the outcome into one JSON record on stdout and an exit code.
//!
//! Order matters for pipelines: a usage error is this step's own failure; a
//! failed record on stdin is passed on unchanged with its exit code, so
//! `a | b | c` ends with the first failure; otherwise the step runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::config::{Config, Loaded};
use crate::exit::{self, ErrorKind};
use crate::interrupt;
use crate::record::{Record, Source};

/// Flags every tool has.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct CommonArgs {
    /// Config file [default: $ORCA_CONFIG, else <base>/config.json]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print a completion script for SHELL (bash, zsh, fish, powershell, elvish) and exit
    #[arg(long, value_name = "SHELL", hide = true)]
    pub completions: Option<clap_complete::Shell>,
}

/// Whether a tool reads the JSON record on stdin (the stdin contract in
/// docs/record.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdinUse {
    /// The command line gives all the step needs: stdin is not read, so an
    /// idle stdin never hangs the tool and a `while read` loop keeps its input.
    Never,
    /// A pipeline step: read the record when stdin is not a terminal.
    IfPiped,
    /// `-` was given: read the record even from a terminal.
    Always,
}

/// A tool's parsed flags, which include [`CommonArgs`].
pub trait ToolArgs: Parser {
    /// The common flags.
    fn common(&self) -> &CommonArgs;

    /// Whether to read the record on stdin.
    fn stdin(&self) -> StdinUse {
        StdinUse::IfPiped
    }
}

/// `impl ToolArgs` for a clap struct with a `common: CommonArgs` field;
/// `tool_args!(Cli, stdin = |cli: &Cli| ...)` also says when it reads stdin.
#[macro_export]
macro_rules! tool_args {
    ($cli:ty) => {
        impl $crate::app::ToolArgs for $cli {
            fn common(&self) -> &$crate::app::CommonArgs {
                &self.common
            }
        }
    };
    ($cli:ty, stdin = $f:expr) => {
        impl $crate::app::ToolArgs for $cli {
            fn common(&self) -> &$crate::app::CommonArgs {
                &self.common
            }
            fn stdin(&self) -> $crate::app::StdinUse {
                let f: fn(&$cli) -> $crate::app::StdinUse = $f;
                f(self)
            }
        }
    };
}

/// clap value parser for the `-` argument ("read the record on stdin").
pub fn dash(value: &str) -> Result<String, String> {
    if value == "-" {
        Ok(value.to_string())
    } else {
        Err("the only argument this tool takes is `-` (read a JSON record on stdin)".into())
    }
}

/// `StdinUse` for a tool whose ARCHIVE argument may be given: a path needs no
/// record, `-` forces reading one, nothing reads one from a pipe.
pub fn archive_stdin(archive: Option<&std::path::Path>) -> StdinUse {
    match archive {
        Some(p) if p.as_os_str() == "-" => StdinUse::Always,
        Some(_) => StdinUse::Never,
        None => StdinUse::IfPiped,
    }
}

/// What a tool's `run` gets: the record to extend, the config, its name.
pub struct Ctx {
    /// The tool's name, for messages.
    pub tool: &'static str,
    /// The record read on stdin (or a fresh one); the output record.
    pub record: Record,
    /// Whether a record came on stdin.
    pub source: Source,
    /// The configuration in effect.
    pub config: Config,
    /// Where the configuration came from.
    pub loaded: Loaded,
    /// Text to print on stdout instead of the JSON record (orca-list's
    /// `--format table`, the one non-JSON stdout, on request).
    pub stdout_text: Option<String>,
}

impl Ctx {
    /// A warning on stderr.
    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("{}: warning: {}", self.tool, msg.as_ref());
    }

    /// A note on stderr.
    pub fn note(&self, msg: impl AsRef<str>) {
        eprintln!("{}: {}", self.tool, msg.as_ref());
    }
}

/// Run one tool's library code in this process on `ctx`'s record, as if it
/// were run as `tool args...` in a pipe (orca-backup, orca-guard): its
/// messages carry its name, its flags are parsed as its own.
pub fn run_step<A: clap::Parser>(
    ctx: &mut Ctx,
    tool: &'static str,
    args: Vec<String>,
    run: fn(A, &mut Ctx) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let cli = A::try_parse_from(std::iter::once(tool.to_string()).chain(args))
        .map_err(|e| crate::err!(Usage, "{tool}: {}", exit::one_line(&e.to_string())))?;
    let outer = std::mem::replace(&mut ctx.tool, tool);
    let r = run(cli, ctx).and_then(|()| interrupt::check());
    ctx.tool = outer;
    r
}

/// Start a tool that runs others in-process (orca-backup): the interrupt
/// handler, the config, the engine's deadlines; when the config cannot be
/// loaded, the error is on stderr and the failed record (not yet printed)
/// is returned.
pub fn context(tool: &'static str, common: &CommonArgs) -> Result<Ctx, Record> {
    interrupt::install();
    let loaded = match Config::load(common.config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            let kind = exit::kind_of(&e);
            let message = exit::message_of(&e, kind);
            eprintln!("{tool}: {message}");
            let mut record = Record::new();
            record.set_failure(kind, &message, tool);
            return Err(record);
        }
    };
    loaded.print_warnings(tool);
    crate::engine::configure(loaded.config.timeouts());
    Ok(Ctx {
        tool,
        record: Record::new(),
        source: Source::Fresh,
        config: loaded.config.clone(),
        loaded,
        stdout_text: None,
    })
}

/// Run a tool: `fn main() -> ExitCode { app::main::<Cli>("orca-x", orca_x::run) }`.
pub fn main<A: ToolArgs>(
    tool: &'static str,
    run: fn(A, &mut Ctx) -> anyhow::Result<()>,
) -> ExitCode {
    main_then(tool, run, None)
}

/// A tool's first and last word (orca-guard's notifications): `before`
/// sees the parsed flags before anything runs; `then` gets the final record
/// (success or failure set) before it is written, the config when it could
/// be read, and how long the run took.
pub struct Hooks<A> {
    /// Called with the flags once they parsed.
    pub before: fn(&A),
    /// Called with the final record of a run that got past its flags.
    pub then: fn(&mut Record, Option<&Config>, std::time::Duration),
}

/// [`main`], with [`Hooks`]: `then` runs on the final record of a run that
/// got as far as loading its config (it gets `None` when the config could
/// not be read), not on usage errors or a failed record on stdin.
pub fn main_then<A: ToolArgs>(
    tool: &'static str,
    run: fn(A, &mut Ctx) -> anyhow::Result<()>,
    hooks: Option<Hooks<A>>,
) -> ExitCode {
    let started = std::time::Instant::now();
    interrupt::install();
    let command = A::command()
        .after_help(exit::EXIT_STATUS_HELP)
        .name(tool)
        .bin_name(tool);
    let matches = match command.try_get_matches() {
        Ok(m) => m,
        Err(e) => return clap_failure(tool, e),
    };
    let args = match A::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => return clap_failure(tool, e),
    };
    if let Some(shell) = args.common().completions {
        let mut cmd = A::command().name(tool).bin_name(tool);
        clap_complete::generate(shell, &mut cmd, tool, &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Some(h) = &hooks {
        (h.before)(&args);
    }

    let read = match args.stdin() {
        StdinUse::Never => Ok((Record::new(), Source::Fresh)),
        StdinUse::IfPiped => Record::from_stdin(false),
        StdinUse::Always => Record::from_stdin(true),
    };
    let (record, source) = match read {
        Ok(r) => r,
        Err(e) => return fail(tool, Record::new(), &e),
    };
    if let Some(code) = record.failure_exit_code() {
        // Pass the first failure on, unchanged.
        let _ = record.write_stdout();
        return ExitCode::from(code);
    }
    let loaded = match Config::load(args.common().config.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            let Some(h) = &hooks else {
                return fail(tool, record, &e);
            };
            let mut record = record;
            let kind = exit::kind_of(&e);
            let message = exit::message_of(&e, kind);
            eprintln!("{tool}: {message}");
            record.set_failure(kind, &message, tool);
            (h.then)(&mut record, None, started.elapsed());
            let _ = record.write_stdout();
            return ExitCode::from(kind.exit_code());
        }
    };
    loaded.print_warnings(tool);
    crate::engine::configure(loaded.config.timeouts());
    let mut ctx = Ctx {
        tool,
        record,
        source,
        config: loaded.config.clone(),
        loaded,
        stdout_text: None,
    };
    let outcome = run(args, &mut ctx).and_then(|()| interrupt::check());
    if let Some(text) = ctx.stdout_text.take() {
        return text_outcome(tool, &text, outcome);
    }
    let Some(hooks) = hooks else {
        return match outcome {
            Ok(()) => {
                ctx.record.set_success();
                match ctx.record.write_stdout() {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("{tool}: cannot write the record to stdout: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => fail(tool, ctx.record, &e),
        };
    };
    let code = match outcome {
        Ok(()) => {
            ctx.record.set_success();
            0
        }
        Err(e) => {
            let kind = exit::kind_of(&e);
            let message = exit::message_of(&e, kind);
            eprintln!("{tool}: {message}");
            ctx.record.set_failure(kind, &message, tool);
            kind.exit_code()
        }
    };
    (hooks.then)(&mut ctx.record, Some(&ctx.config), started.elapsed());
    match ctx.record.write_stdout() {
        Ok(()) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{tool}: cannot write the record to stdout: {e}");
            if code == 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::from(code)
            }
        }
    }
}

fn text_outcome(tool: &str, text: &str, outcome: anyhow::Result<()>) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let kind = exit::kind_of(&e);
            eprintln!("{tool}: {}", exit::message_of(&e, kind));
            ExitCode::from(kind.exit_code())
        }
    }
}

/// Report `err` on stderr and in the record, and return its exit code.
pub fn fail(tool: &str, mut record: Record, err: &anyhow::Error) -> ExitCode {
    let kind = exit::kind_of(err);
    let message = exit::message_of(err, kind);
    eprintln!("{tool}: {message}");
    record.set_failure(kind, &message, tool);
    let _ = record.write_stdout();
    ExitCode::from(kind.exit_code())
}

/// A flag error: clap's explanation on stderr, a failed record (exit 2).
pub fn clap_failure(tool: &str, e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind as K;
    match e.kind() {
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            // clap's full explanation (with usage) for humans on stderr...
            let _ = e.print();
            // ...and its first line in the record for scripts.
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_string();
            let mut record = Record::new();
            let message = format!("{first} (see {tool} --help)");
            record.set_failure(ErrorKind::Usage, &exit::one_line(&message), tool);
            let _ = record.write_stdout();
            ExitCode::from(ErrorKind::Usage.exit_code())
        }
    }
}
