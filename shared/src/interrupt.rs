//! Ctrl-C, SIGTERM and SIGHUP (and the Windows console's Ctrl-C and close
//! events): note them, cancel what is in flight, clean up.
//!
//! The handler never exits the process on the first signals: the tool must still
//! remove its temporary file and helper container and restart stopped containers,
//! which needs destructors to run. The first signal sets a flag that long loops
//! check and runs the registered hooks (the engine client cancels its in-flight
//! requests, so nothing waits on a stalled daemon). A third signal exits at
//! once, as an escape hatch, except inside a [`critical`] section (starting
//! stopped containers again, a rollback): those are bounded by deadlines and
//! quitting half-way would leave things worse, so a third signal only says
//! what is being finished.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
type Hook = dyn Fn() + Send + Sync;
static HOOKS: Mutex<Vec<Weak<Hook>>> = Mutex::new(Vec::new());
static CRITICAL: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
/// What quitting at once means now: exit code, the failed record, a message.
static QUIT: Mutex<Option<(i32, String, String)>> = Mutex::new(None);
static NEXT_CRITICAL: AtomicUsize = AtomicUsize::new(0);
/// While set, signals are counted for a child process to be told (see
/// [`defer`]) instead of interrupting this one.
static DEFERRING: AtomicBool = AtomicBool::new(false);
static DEFERRED: AtomicUsize = AtomicUsize::new(0);

/// Install the handler (once per process; later calls do nothing).
pub fn install() {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let result = ctrlc::set_handler(|| {
        if DEFERRING.load(Ordering::SeqCst) {
            let n = DEFERRED.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 1 {
                eprintln!(
                    "interrupted: passing it on to the command and waiting for it to end (interrupt twice more to kill it)"
                );
            }
            return;
        }
        let n = SIGNALS.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            eprintln!(
                "interrupted: stopping and cleaning up (interrupt twice more to quit at once)"
            );
        }
        if n >= 3 {
            let busy = CRITICAL
                .lock()
                .ok()
                .and_then(|c| c.last().map(|(_, what)| what.clone()));
            match busy {
                Some(what) => eprintln!(
                    "interrupted again: still {what}; this cannot be left half-done and ends on its own within its deadline"
                ),
                None => {
                    let quit = QUIT.lock().ok().and_then(|q| q.clone());
                    match quit {
                        Some((code, record, message)) => {
                            eprintln!("interrupted three times: {message}");
                            println!("{record}");
                            std::process::exit(code);
                        }
                        None => {
                            eprintln!("interrupted three times: quitting without cleanup");
                            std::process::exit(130);
                        }
                    }
                }
            }
        }
        run_hooks();
    });
    if let Err(e) = result {
        eprintln!("warning: cannot install the interrupt handler: {e}");
    }
}

/// While the returned value lives, Ctrl-C, SIGTERM and SIGHUP do not
/// interrupt this process: they are counted ([`deferred`]) for it to pass on
/// to a child it waits for (orca-guard's command), and it goes on with its
/// own work once the child has ended.
pub fn defer() -> Deferring {
    DEFERRED.store(0, Ordering::SeqCst);
    DEFERRING.store(true, Ordering::SeqCst);
    Deferring(())
}

/// See [`defer`]; signals interrupt again when dropped.
pub struct Deferring(());

impl Drop for Deferring {
    fn drop(&mut self) {
        DEFERRING.store(false, Ordering::SeqCst);
    }
}

/// How many signals arrived since [`defer`].
pub fn deferred() -> usize {
    DEFERRED.load(Ordering::SeqCst)
}

/// A token cancelled on the first interrupt, for async work to watch (the
/// engine client's calls, S3 requests).
pub fn cancel_token() -> &'static tokio_util::sync::CancellationToken {
    static TOKEN: std::sync::OnceLock<tokio_util::sync::CancellationToken> =
        std::sync::OnceLock::new();
    static HOOK: std::sync::OnceLock<HookGuard> = std::sync::OnceLock::new();
    let token = TOKEN.get_or_init(tokio_util::sync::CancellationToken::new);
    HOOK.get_or_init(|| {
        let t = token.clone();
        on_interrupt(move || t.cancel())
    });
    token
}

/// How many interrupts arrived so far (not counting deferred ones).
pub fn signals() -> usize {
    SIGNALS.load(Ordering::SeqCst)
}

/// Whether an interrupt arrived.
pub fn interrupted() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// `Err(interrupted)` once an interrupt arrived; call it between steps.
pub fn check() -> anyhow::Result<()> {
    if interrupted() {
        crate::fail!(Interrupted, "interrupted");
    }
    Ok(())
}

/// Behave as if the first interrupt arrived (the test points' deadline: a
/// tool a failed test left paused cleans up and ends instead of waiting).
pub(crate) fn raise() {
    if SIGNALS
        .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        run_hooks();
    }
}

fn run_hooks() {
    let hooks = HOOKS.lock().map(|h| h.clone()).unwrap_or_default();
    for hook in hooks.iter().filter_map(Weak::upgrade) {
        hook();
    }
}

/// Runs `hook` on interrupt (from the handler thread) while the guard lives;
/// at once if an interrupt already arrived.
pub struct HookGuard {
    _hook: Arc<Hook>,
}

/// Register `hook` to run on interrupt.
pub fn on_interrupt(hook: impl Fn() + Send + Sync + 'static) -> HookGuard {
    let hook: Arc<Hook> = Arc::new(hook);
    if let Ok(mut hooks) = HOOKS.lock() {
        hooks.retain(|w| w.strong_count() > 0);
        hooks.push(Arc::downgrade(&hook));
    }
    if interrupted() {
        hook();
    }
    HookGuard { _hook: hook }
}

/// While this lives, quitting at once (a third interrupt) exits with `code`
/// and `record` on stdout, saying `message`: a restore in progress quits
/// with its journal left, and says so.
pub struct QuitAs;

/// Set what a quit at once means until the guard goes.
pub fn quit_as(code: i32, record: String, message: String) -> QuitAs {
    if let Ok(mut q) = QUIT.lock() {
        *q = Some((code, record, message));
    }
    QuitAs
}

impl Drop for QuitAs {
    fn drop(&mut self) {
        if let Ok(mut q) = QUIT.lock() {
            *q = None;
        }
    }
}

/// Whether a critical section is running: engine calls then run to their
/// deadline even after Ctrl-C (see [`crate::engine::Mode::Cleanup`]).
pub fn in_critical() -> bool {
    CRITICAL.lock().map(|c| !c.is_empty()).unwrap_or(false)
}

/// While this lives, a third interrupt does not quit the process, and engine
/// calls are not cut short by interrupts.
pub struct Critical {
    id: u64,
}

/// Enter a critical section doing `what` ("starting stopped containers again").
pub fn critical(what: &str) -> Critical {
    let id = NEXT_CRITICAL.fetch_add(1, Ordering::SeqCst) as u64;
    if let Ok(mut c) = CRITICAL.lock() {
        c.push((id, what.to_string()));
    }
    Critical { id }
}

impl Drop for Critical {
    fn drop(&mut self) {
        if let Ok(mut c) = CRITICAL.lock() {
            c.retain(|(id, _)| *id != self.id);
        }
    }
}
