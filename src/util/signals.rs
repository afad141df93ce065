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
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(signal, EXIT_ON_SECOND, Arc::clone(&flag))?;
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(StopRequest(flag))
}
