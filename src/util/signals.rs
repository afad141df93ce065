//! Ctrl-C (in `--batch`), a closed terminal (SIGHUP) and SIGTERM (a scheduler
//! preempting the job) ask the plan to stop between steps, so the run under
//! way saves its checkpoint and the results files are written. A second
//! signal ends the process at once (files are still never torn: every write
//! is atomic).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Set once a stop signal has arrived.
#[derive(Clone)]
pub struct StopRequest(Arc<AtomicBool>);

impl StopRequest {
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Exit status after a second signal: 128 + SIGINT, as shells report it.
const EXIT_ON_SECOND: i32 = 130;

pub fn install() -> std::io::Result<StopRequest> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        let flag = Arc::clone(&flag);
        // One swap both reads and sets the flag: with a load and then a
        // store, two signals handled at once on two threads (both pending
        // while the process was stopped, then SIGCONT) could each find it
        // unset, and neither would exit.
        // SAFETY: the action only swaps an atomic and calls _exit, both
        // async-signal-safe.
        unsafe {
            signal_hook::low_level::register(signal, move || {
                if flag.swap(true, Ordering::SeqCst) {
                    signal_hook::low_level::exit(EXIT_ON_SECOND);
                }
            })
        }?;
    }
    Ok(StopRequest(flag))
}
