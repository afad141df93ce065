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
    /// This run asks its device for one buffer larger than any device
    /// holds, at its first step: a real failure of the backend, for the
    /// GPU backends (tests/gpu_path.rs).
    #[cfg(feature = "test-hooks")]
    pub oversized_in: Option<String>,
}

impl Hooks {
    /// Called before the first step a run takes in this session.
    pub(super) fn at_first_step<B: burn::tensor::backend::Backend>(&self, run_id: &str, device: &B::Device) {
        #[cfg(feature = "test-hooks")]
        {
            if self.panic_in.as_deref() == Some(run_id) {
                panic!("injected by a test");
            }
            if self.device_error_in.as_deref() == Some(run_id) {
                log::error!(target: "kdtui_test_device", "injected by a test");
            }
            if self.oversized_in.as_deref() == Some(run_id) {
                // 2^40 floats, 4 TiB: beyond every device's largest buffer.
                let huge = burn::tensor::Tensor::<B, 1>::ones([1usize << 40], device);
                let _ = huge.sum().into_scalar();
            }
        }
        let _ = (run_id, device);
    }
}
