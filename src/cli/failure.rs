//! How a command fails: its exit status and its one-line reason.

/// How a command failed: its exit status and the reason.
#[derive(Debug)]
pub struct Failure {
    pub(super) code: u8,
    pub(super) error: anyhow::Error,
}

/// A usage or config error: exit status 2.
pub(super) fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 2, error: error.into() }
}

/// Any other failure: exit status 1.
pub(super) fn failed(error: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 1, error: error.into() }
}

/// The exit status after the terminal hung up (SIGHUP) while the monitor
/// was open and could not close itself: training was stopped after saving
/// its checkpoint (README, "Exit status": 129 = 128 + SIGHUP).
pub(super) const HANGUP: i32 = 129;

/// How the monitor stops from outside: `request`, and the exit status above
/// when the screen cannot end the session itself.
pub(super) fn stopping(request: crate::util::signals::StopRequest) -> crate::monitor::screen::Stopping {
    fn exit_after_hangup() -> ! {
        std::process::exit(HANGUP)
    }
    crate::monitor::screen::Stopping { request, exit_after_hangup }
}
