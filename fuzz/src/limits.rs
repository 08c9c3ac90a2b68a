//! What makes an input a failure besides a panic: running too long, or allocating without
//! bound. Both are detected while the parser still runs, so the input is saved here and the
//! process exits: a stuck parser cannot be interrupted, and an allocation failure aborts.
//!
//! The input under test is published in [`CURRENT`] before each run. A watchdog thread
//! compares the run's start with the per-input time limit; [`LimitedAlloc`], the fuzzer's
//! global allocator, counts the bytes allocated while a run is armed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The input being run, and where to save it if it fails fatally.
#[derive(Debug, Default)]
pub struct Current {
    /// Target name, for the message.
    pub target: &'static str,
    /// `fuzz/crashes/<target>/` (None before the first run).
    pub crash_dir: Option<PathBuf>,
    /// The input bytes.
    pub input: Vec<u8>,
}

/// The input being run; locked by the fuzz loop only between runs.
pub static CURRENT: Mutex<Current> = Mutex::new(Current {
    target: "",
    crash_dir: None,
    input: Vec::new(),
});

/// Nanoseconds since [`epoch`] at which the current run started; 0 between runs.
static RUN_STARTED: AtomicU64 = AtomicU64::new(0);
/// Live heap bytes allocated by the whole process (what [`LimitedAlloc`] counts).
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
/// Highest [`LIVE_BYTES`] a run may reach; `usize::MAX` between runs.
static LIVE_LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Set once a fatal failure is being saved: allocations then bypass the limit.
static FATAL: AtomicBool = AtomicBool::new(false);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Marks the start of a run that may allocate `heap_limit` bytes beyond what is live now.
pub fn arm(heap_limit: usize) {
    let live = LIVE_BYTES.load(Ordering::Relaxed);
    LIVE_LIMIT.store(live.saturating_add(heap_limit), Ordering::Relaxed);
    RUN_STARTED.store(now_ns().max(1), Ordering::Release);
}

/// Marks the end of a run.
pub fn disarm() {
    RUN_STARTED.store(0, Ordering::Release);
    LIVE_LIMIT.store(usize::MAX, Ordering::Relaxed);
}

/// Starts the thread that ends the process when one run exceeds `limit`.
pub fn start_watchdog(limit: Duration) {
    let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(50));
        let started = RUN_STARTED.load(Ordering::Acquire);
        if started != 0 && now_ns().saturating_sub(started) > limit_ns {
            save_current_and_exit(&format!(
                "ran longer than {limit:?} (a loop without bound?)"
            ));
        }
    });
}

/// Saves the current input as a failure of kind `why` and exits with status 3.
pub fn save_current_and_exit(why: &str) -> ! {
    FATAL.store(true, Ordering::SeqCst);
    // A poisoned lock still holds the input: the loop only writes it between runs.
    let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = current.crash_dir.clone().unwrap_or_default();
    let path = crate::engine::save_failure(&dir, "fatal", &current.input);
    eprintln!(
        "fuzz {}: FATAL: the input {} {why}",
        current.target,
        path.map_or_else(|e| format!("(not saved: {e})"), |p| p.display().to_string())
    );
    std::process::exit(3);
}

/// The system allocator, counting live bytes and stopping a run that exceeds its limit.
pub struct LimitedAlloc;

impl LimitedAlloc {
    fn admit(&self, size: usize) {
        let live = LIVE_BYTES
            .fetch_add(size, Ordering::Relaxed)
            .saturating_add(size);
        if live > LIVE_LIMIT.load(Ordering::Relaxed) && !FATAL.load(Ordering::Relaxed) {
            save_current_and_exit(&format!(
                "allocated without bound ({live} live heap bytes at a request of {size})"
            ));
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's layout and pointer unchanged;
// the counting around it touches only atomics. `save_current_and_exit` may allocate from
// inside `alloc`: FATAL is set first, so those nested calls skip the limit and go straight to
// `System`, and the process exits without returning.
unsafe impl GlobalAlloc for LimitedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.admit(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.admit(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            self.admit(new_size - layout.size());
        } else {
            LIVE_BYTES.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: as for `dealloc`; `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
