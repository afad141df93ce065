//! What the device modules share with the dispatcher above them: the work
//! a backend runs, and how a probe of a device fails.

use crate::engine::model::TrainBackend;

/// Work that runs on whichever backend `--device` resolved to.
pub trait OnBackend {
    type Output;
    /// `name` describes the device, for the header and the report.
    fn run<B: TrainBackend>(self, device: B::Device, name: &str) -> Self::Output;
}

/// Why a GPU backend cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// This kdtui was built without the backend.
    NotBuilt,
    /// Built in, but the machine cannot run it: why, in words.
    Failed(String),
}

/// Runs one tiny op on a device of backend `B` (`device` makes it): cubecl
/// panics where a driver, a library or an adapter is missing, or a kernel
/// cannot be compiled, and a person should read a message instead. Only
/// where a GPU backend is built (the unit tests leave them out).
#[cfg(all(any(feature = "cuda", feature = "wgpu"), not(test)))]
pub fn probe_sum<B: burn::tensor::backend::Backend>(device: impl FnOnce() -> B::Device + std::panic::UnwindSafe) -> Result<(), ProbeError> {
    use burn::tensor::{ElementConversion, Tensor};
    let sum = without_panicking(|| Tensor::<B, 1>::from_floats([1.0, 2.0], &device()).sum().into_scalar().elem::<f32>());
    match sum {
        Ok(3.0) => Ok(()),
        Ok(v) => Err(ProbeError::Failed(format!("a test sum gave {v}, not 3"))),
        Err(why) => Err(ProbeError::Failed(why)),
    }
}

/// Runs `probe` with panics turned into `Err`: cubecl panics (on the
/// calling thread or its device thread) where a driver, a library or an
/// adapter is missing, and a person should read a message instead.
// Only the GPU backends' code calls it: a CPU-only build has no caller.
#[cfg_attr(not(any(feature = "cuda", feature = "wgpu")), allow(dead_code))]
pub fn without_panicking<T>(probe: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(probe);
    std::panic::set_hook(quiet);
    outcome.map_err(|p| crate::util::panic_message(&*p))
}
