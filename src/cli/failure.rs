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
