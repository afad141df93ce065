//! Transparent huge pages off for a stretch of a process. The allocator
//! (mimalloc) asks the kernel for 2 MiB pages on its arena, which suits
//! training (large tensors, fewer TLB misses) but not a process serving the
//! integer engine, whose working set is a few hundred KiB: there the first
//! byte a thread touches in a fresh 2 MiB region makes all of it resident
//! (docs/INTEGER.md, memory). Linux only; elsewhere nothing changes.

/// prctl's unused arguments: the kernel reads them as unsigned longs.
#[cfg(target_os = "linux")]
const NONE: libc::c_ulong = 0;

/// While alive, pages the process faults in are small; dropping it gives
/// back the setting it found (pages already faulted in stay as they are).
/// Guards nest when dropped in the order they were made (one thread's
/// scopes); the flag is the process's, so guards on several threads at
/// once would not.
pub struct SmallPages {
    #[cfg(target_os = "linux")]
    was_off: Option<bool>,
}

impl SmallPages {
    /// Turns huge pages off for the process (`PR_SET_THP_DISABLE`, what
    /// `MIMALLOC_ALLOW_THP=0` does at start-up). Where the kernel refuses,
    /// nothing changes and `active` says so.
    pub fn new() -> Self {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: prctl with integer arguments reads and writes no memory of ours.
            let was = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, NONE, NONE, NONE, NONE) };
            let was_off = (was >= 0 && unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1 as libc::c_ulong, NONE, NONE, NONE) } == 0)
                .then_some(was == 1);
            Self { was_off }
        }
        #[cfg(not(target_os = "linux"))]
        Self {}
    }

    /// Whether huge pages are off now.
    pub fn active(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: as in `new`.
            self.was_off.is_some() && unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, NONE, NONE, NONE, NONE) } == 1
        }
        #[cfg(not(target_os = "linux"))]
        false
    }
}

impl Default for SmallPages {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SmallPages {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(false) = self.was_off {
            // SAFETY: as in `new`.
            unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, NONE, NONE, NONE, NONE) };
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn off() -> bool {
        // SAFETY: as in `SmallPages::new`.
        unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, NONE, NONE, NONE, NONE) == 1 }
    }

    /// Off while the guard lives, back as it was after. (The flag is the
    /// process's: no other test of the library touches it.)
    #[test]
    fn huge_pages_are_off_while_the_guard_lives() {
        let before = off();
        {
            let guard = SmallPages::new();
            assert!(guard.active() && off());
            let nested = SmallPages::new();
            drop(nested);
            assert!(off(), "an inner guard gives back what it found: off");
        }
        assert_eq!(off(), before);
    }
}
