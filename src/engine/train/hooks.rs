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
    /// This run's learning rate is NaN from this epoch (from 1) on: its
    /// weights, then its loss, stop being finite, as a real divergence's do.
    #[cfg(feature = "test-hooks")]
    pub nan_from: Option<(String, usize)>,
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

    /// The learning rate a step of `run_id` in `epoch` takes.
    pub(super) fn learning_rate(&self, run_id: &str, epoch: usize, lr: f64) -> f64 {
        #[cfg(feature = "test-hooks")]
        if self.nan_from.as_ref().is_some_and(|(id, from)| id == run_id && epoch >= *from) {
            return f64::NAN;
        }
        let _ = (run_id, epoch);
        lr
    }
}
