//! Ctrl-C, SIGTERM and SIGHUP: note them, stop the running child, clean up.
//!
//! The handler never exits the process on the first signals: the tool must still
//! remove its temporary file and helper container and restart stopped containers,
//! which needs destructors to run. The first signal sets a flag that long loops
//! check and kills the registered child processes (a `docker cp` blocked on a
//! stalled daemon would otherwise never return). A third signal exits at once,
//! as an escape hatch when cleanup itself hangs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
type Hook = dyn Fn() + Send + Sync;
static HOOKS: Mutex<Vec<Weak<Hook>>> = Mutex::new(Vec::new());

/// Install the handler (once per process; later calls do nothing).
pub fn install() {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let result = ctrlc::set_handler(|| {
        let n = SIGNALS.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            eprintln!(
                "interrupted: stopping and cleaning up (interrupt twice more to quit at once)"
            );
        }
        if n >= 3 {
            eprintln!("interrupted three times: quitting without cleanup");
            std::process::exit(130);
        }
        run_hooks();
    });
    if let Err(e) = result {
        eprintln!("warning: cannot install the interrupt handler: {e}");
    }
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

fn run_hooks() {
    let hooks = HOOKS.lock().map(|h| h.clone()).unwrap_or_default();
    for hook in hooks.iter().filter_map(Weak::upgrade) {
        hook();
    }
}

/// Runs `hook` on interrupt (from the handler thread) while the guard lives;
/// at once if an interrupt already arrived. Used to stop blocked reads.
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

/// Keeps a child registered for killing on interrupt until dropped.
pub struct ChildGuard {
    handle: Arc<duct::Handle>,
    hook: Option<HookGuard>,
}

impl ChildGuard {
    /// Register `handle`; if an interrupt already arrived, kill it right away.
    pub fn new(handle: duct::Handle) -> Self {
        Self::with(handle, true)
    }

    /// `interruptible: false` leaves the child alone on Ctrl-C (cleanup work
    /// that must finish); it is still killed if its guard goes early.
    pub fn with(handle: duct::Handle, interruptible: bool) -> Self {
        let handle = Arc::new(handle);
        let weak = Arc::downgrade(&handle);
        let hook = interruptible.then(|| {
            on_interrupt(move || {
                if let Some(h) = weak.upgrade() {
                    let _ = h.kill();
                }
            })
        });
        ChildGuard { handle, hook }
    }

    /// Whether an interrupt stops this child.
    pub fn interruptible(&self) -> bool {
        self.hook.is_some()
    }

    /// The child.
    pub fn handle(&self) -> &duct::Handle {
        &self.handle
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // A child still running when its guard goes (an error path) must not
        // outlive us: kill it and reap it.
        if let Ok(None) = self.handle.try_wait() {
            let _ = self.handle.kill();
        }
    }
}
