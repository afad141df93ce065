//! Faults a test injects into a run, compiled only with the `test-hooks`
//! feature (which the tests turn on through the dev-dependency on kdtui
//! itself): nothing a user builds can reach them.

/// Which run a test makes fail, and how.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// This run panics at its first step: a panic fails that run alone.
    #[cfg(feature = "test-hooks")]
    pub panic_in: Option<String>,
    /// This run logs an error at its first step, as cubecl's device thread
    /// does when a GPU kernel fails.
    #[cfg(feature = "test-hooks")]
    pub device_error_in: Option<String>,
}

impl Hooks {
    /// Called before the first step a run takes in this session.
    pub(super) fn at_first_step(&self, run_id: &str) {
        #[cfg(feature = "test-hooks")]
        {
            if self.panic_in.as_deref() == Some(run_id) {
                panic!("injected by a test");
            }
            if self.device_error_in.as_deref() == Some(run_id) {
                log::error!(target: "kdtui_test_device", "injected by a test");
            }
        }
        let _ = run_id;
    }
}
