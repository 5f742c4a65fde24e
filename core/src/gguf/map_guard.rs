//! Surviving a model file that is truncated or rewritten in place while it is mapped.
//!
//! Replacing a model by renaming a new file over it is always safe: the mapping keeps the old
//! file alive (this is how `convert` and `quantize` write). Rewriting it in place (`cp new.gguf
//! model.gguf`, `truncate`, an app's updater writing into the open file) is not: reading a page
//! past the new end raises SIGBUS, which kills the process, and rewritten pages change the
//! weights under a running generation. Reading the whole file into memory instead would double
//! the memory a 3B model needs, so instead:
//!
//! * a SIGBUS at an address inside a registered model mapping is caught: the faulting page is
//!   replaced by a zero page (so the interrupted read completes) and the mapping is marked
//!   damaged. Any other SIGBUS goes to the handler that was there before (by default: the
//!   process dies as it would have without us);
//! * [`FileIdentity`] remembers the size and modification time seen at open, and the forward
//!   pass compares them (one `fstat`) and the damaged mark before and after its work.
//!
//! Either way the pass fails with [`crate::Error::ModelFileChanged`] naming the file, and the
//! model stays unusable until the app opens it again, instead of a crash or silent garbage.
//! On non-Unix targets only the size/time check exists.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Mappings that can be guarded at once; more are still checked through [`FileIdentity`].
const SLOTS: usize = 64;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    damaged: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // only used to initialise the array below
const EMPTY: Slot = Slot { start: AtomicUsize::new(0), len: AtomicUsize::new(0), damaged: AtomicBool::new(false) };
static REGISTRY: [Slot; SLOTS] = [EMPTY; SLOTS];

/// Registration of one mapping; unregisters on drop, which must come before the unmap.
pub(crate) struct MapGuard {
    slot: Option<usize>,
}

impl MapGuard {
    /// Guards `len` bytes at `start` (the mapping of a model file).
    pub(crate) fn register(start: *const u8, len: usize) -> MapGuard {
        if len == 0 || !sys::install() {
            return MapGuard { slot: None };
        }
        for (i, s) in REGISTRY.iter().enumerate() {
            // Claim a free slot by its length (0 = free), then publish the start: the handler
            // only matches slots whose start is set.
            if s.len.compare_exchange(0, len, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                s.damaged.store(false, Ordering::Release);
                s.start.store(start as usize, Ordering::Release);
                return MapGuard { slot: Some(i) };
            }
        }
        MapGuard { slot: None }
    }

    /// Whether a read of the mapping faulted (the file shrank under it, or an I/O error).
    pub(crate) fn damaged(&self) -> bool {
        self.slot.is_some_and(|i| REGISTRY[i].damaged.load(Ordering::Acquire))
    }
}

impl Drop for MapGuard {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            REGISTRY[i].start.store(0, Ordering::Release);
            REGISTRY[i].len.store(0, Ordering::Release);
        }
    }
}

/// The slot whose mapping contains `addr`, if any. Called from the signal handler: atomics
/// only, no allocation, no locks.
fn slot_of(addr: usize) -> Option<&'static Slot> {
    REGISTRY.iter().find(|s| {
        let start = s.start.load(Ordering::Acquire);
        start != 0 && addr >= start && addr - start < s.len.load(Ordering::Acquire)
    })
}

/// Size and modification time of an open file, as seen at open.
#[derive(Debug)]
pub(crate) struct FileIdentity {
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileIdentity {
    pub(crate) fn of(file: &std::fs::File) -> std::io::Result<FileIdentity> {
        let m = file.metadata()?;
        Ok(FileIdentity { len: m.len(), modified: m.modified().ok() })
    }

    /// Whether `file` (the same open file) still has this size and modification time. Through
    /// the open descriptor, so a file renamed over the path does not count: the mapping still
    /// reads the old one.
    pub(crate) fn unchanged(&self, file: &std::fs::File) -> bool {
        file.metadata().is_ok_and(|m| m.len() == self.len && m.modified().ok() == self.modified)
    }
}

#[cfg(unix)]
mod sys {
    use super::slot_of;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    static PAGE: AtomicUsize = AtomicUsize::new(0);
    /// The SIGBUS action before ours, to pass on faults that are not in a model mapping.
    static PREVIOUS: OnceLock<Option<libc::sigaction>> = OnceLock::new();

    /// Installs the handler once per process; false if that failed (then nothing is guarded).
    pub(super) fn install() -> bool {
        PREVIOUS
            .get_or_init(|| {
                // SAFETY: sysconf has no preconditions; sigaction is given a fully initialised
                // struct (zeroed, then the fields that matter) and a valid out-pointer.
                unsafe {
                    PAGE.store(libc::sysconf(libc::_SC_PAGESIZE).max(4096) as usize, Ordering::Release);
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = on_sigbus as *const () as usize;
                    action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                    libc::sigemptyset(&mut action.sa_mask);
                    let mut previous: libc::sigaction = std::mem::zeroed();
                    (libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0).then_some(previous)
                }
            })
            .is_some()
    }

    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
        let addr = unsafe { fault_address(info) };
        if let Some(slot) = slot_of(addr) {
            let page = PAGE.load(Ordering::Acquire);
            let at = addr & !(page - 1);
            // SAFETY: replaces one page inside a live mapping that the registry says is a
            // read-only model map (MAP_FIXED over it is exactly the intent); mmap is a plain
            // system call, safe to make in a signal handler on Linux, Android and Darwin.
            let p = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                slot.damaged.store(true, Ordering::Release);
                return; // the read is retried and now sees zeros
            }
        }
        pass_on(sig, info, ctx);
    }

    /// Hands a fault that is not ours to the previous handler, or, if there was none, restores
    /// the default action so that the retried access ends the process as it would have.
    fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        let previous = PREVIOUS.get().copied().flatten();
        match previous {
            Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
                // SAFETY: `p` is the action the process had installed; calling it with the
                // arguments of the signal is what the kernel would have done.
                unsafe {
                    if p.sa_flags & libc::SA_SIGINFO != 0 {
                        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                            std::mem::transmute(p.sa_sigaction);
                        f(sig, info, ctx)
                    } else {
                        let f: extern "C" fn(libc::c_int) = std::mem::transmute(p.sa_sigaction);
                        f(sig)
                    }
                }
            }
            _ => {
                // SAFETY: a zeroed sigaction with SIG_DFL is valid; the faulting instruction
                // runs again after return and the default action ends the process.
                unsafe {
                    let mut dfl: libc::sigaction = std::mem::zeroed();
                    dfl.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut());
                }
            }
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    unsafe fn fault_address(info: *mut libc::siginfo_t) -> usize {
        (*info).si_addr() as usize
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    unsafe fn fault_address(info: *mut libc::siginfo_t) -> usize {
        (*info).si_addr as usize
    }
}

#[cfg(not(unix))]
mod sys {
    pub(super) fn install() -> bool {
        false
    }
}
