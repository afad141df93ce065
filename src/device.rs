//! `--device cpu|cuda[:N]|auto`: picks the burn backend at run time and starts
//! the plan on a background thread with it.

use std::str::FromStr;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::train::runner::{run_plan, PlanInput};
use crate::train::{Control, TrainEvent};

/// The CPU backend: burn's pure-Rust `flex` (SIMD gemm, rayon). Chosen by
/// measurement over `ndarray`; see README.
pub type CpuBackend = burn::backend::Flex;
pub type CpuTrainBackend = burn::backend::Autodiff<CpuBackend>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeviceError {
    #[error("unknown device {0:?}: expected cpu, cuda, cuda:N or auto")]
    Unknown(String),
    #[error("--device {0} asks for CUDA, but this kdtui was built without it; rebuild with `cargo build --release --features cuda`")]
    NotBuilt(String),
    #[error("--device {0}: no usable CUDA device ({1})")]
    Unavailable(String, String),
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::Unknown(other.to_string())),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The backend a choice resolves to on this build and machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Cpu,
    Cuda(usize),
}

impl Resolved {
    pub fn describe(self) -> String {
        match self {
            Resolved::Cpu => match rayon::current_num_threads() {
                1 => "cpu (burn flex, 1 thread)".to_string(),
                n => format!("cpu (burn flex, {n} threads)"),
            },
            Resolved::Cuda(n) => format!("cuda:{n} (burn cuda)"),
        }
    }
}

pub fn resolve(choice: DeviceChoice) -> Result<Resolved, DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok(Resolved::Cpu),
        DeviceChoice::Cuda(n) => cuda::probe(n).map(|_| Resolved::Cuda(n)).map_err(|e| match e {
            cuda::ProbeError::NotBuilt => DeviceError::NotBuilt(choice.to_string()),
            cuda::ProbeError::Failed(why) => DeviceError::Unavailable(choice.to_string(), why),
        }),
        DeviceChoice::Auto => Ok(match cuda::probe(0) {
            Ok(()) => Resolved::Cuda(0),
            Err(_) => Resolved::Cpu,
        }),
    }
}

/// Name of the training thread (the TUI's panic hook tells it apart).
pub const TRAIN_THREAD: &str = "kdtui-train";

/// A panic on the training thread is caught there and reported as a failed
/// run; this keeps the default hook from also printing it (with a backtrace
/// hint) over the batch output or the TUI. Other threads' panics go to the
/// hook that was installed before.
pub fn quiet_trainer_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some(TRAIN_THREAD) {
            previous(info);
        }
    }));
}

/// The UI's ends of a running plan.
pub struct Trainer {
    pub events: Receiver<TrainEvent>,
    pub control: Sender<Control>,
    pub thread: JoinHandle<()>,
}

/// Starts the plan on a background thread on the resolved device.
pub fn spawn(resolved: Resolved, mut input: PlanInput) -> Trainer {
    let (event_tx, events) = crossbeam_channel::unbounded();
    let (control, control_rx) = crossbeam_channel::unbounded();
    input.device_name = resolved.describe();
    let thread = std::thread::Builder::new()
        .name(TRAIN_THREAD.into())
        .spawn(move || match resolved {
            Resolved::Cpu => run_plan::<CpuTrainBackend>(input, Default::default(), event_tx, control_rx),
            Resolved::Cuda(n) => cuda::run(n, input, event_tx, control_rx),
        })
        .expect("spawning the training thread");
    Trainer {
        events,
        control,
        thread,
    }
}

/// `kdtui bench --measure`: one model's figures on the resolved device, in this process.
pub fn measure(resolved: Resolved, config: &crate::config::Config, model: crate::bench::Model, timing: crate::bench::Timing) -> crate::bench::Measurement {
    match resolved {
        Resolved::Cpu => crate::bench::measure::<CpuTrainBackend>(config, model, timing, Default::default(), &resolved.describe()),
        Resolved::Cuda(n) => cuda::measure(n, config, model, timing),
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use burn::backend::cuda::CudaDevice;
    use burn::backend::{Autodiff, Cuda};
    use burn::prelude::*;

    pub enum ProbeError {
        #[allow(dead_code)]
        NotBuilt,
        Failed(String),
    }

    /// Runs one tiny op on the device: cubecl panics when no driver or GPU is
    /// there, and we want a message instead.
    pub fn probe(n: usize) -> Result<(), ProbeError> {
        // SAFETY: only tries to dlopen the driver library; no CUDA call is made.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(ProbeError::Failed(
                "the NVIDIA driver library libcuda is not installed or not on the loader path".into(),
            ));
        }
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = std::panic::catch_unwind(|| {
            let device = CudaDevice::new(n);
            let t = Tensor::<Cuda, 1>::from_floats([1.0, 2.0], &device);
            t.sum().into_scalar()
        });
        std::panic::set_hook(quiet);
        match outcome {
            Ok(v) if v == 3.0 => Ok(()),
            Ok(v) => Err(ProbeError::Failed(format!("a test sum gave {v}, not 3"))),
            Err(p) => Err(ProbeError::Failed(crate::train::runner::panic_message(&p))),
        }
    }

    pub fn run(n: usize, input: PlanInput, events: Sender<TrainEvent>, control: Receiver<Control>) {
        run_plan::<Autodiff<Cuda>>(input, CudaDevice::new(n), events, control)
    }

    pub fn measure(n: usize, config: &crate::config::Config, model: crate::bench::Model, timing: crate::bench::Timing) -> crate::bench::Measurement {
        let name = Resolved::Cuda(n).describe();
        crate::bench::measure::<Autodiff<Cuda>>(config, model, timing, CudaDevice::new(n), &name)
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use super::*;

    pub enum ProbeError {
        NotBuilt,
        #[allow(dead_code)]
        Failed(String),
    }

    pub fn probe(_n: usize) -> Result<(), ProbeError> {
        Err(ProbeError::NotBuilt)
    }

    pub fn run(_n: usize, _input: PlanInput, _events: Sender<TrainEvent>, _control: Receiver<Control>) {
        unreachable!("resolve() never picks CUDA in a build without it")
    }

    pub fn measure(_n: usize, _config: &crate::config::Config, _model: crate::bench::Model, _timing: crate::bench::Timing) -> crate::bench::Measurement {
        unreachable!("resolve() never picks CUDA in a build without it")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:2".parse(), Ok(DeviceChoice::Cuda(2)));
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert!("gpu".parse::<DeviceChoice>().is_err());
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let e = resolve(DeviceChoice::Cuda(0)).unwrap_err();
        assert!(e.to_string().contains("--features cuda"), "{e}");
        assert_eq!(resolve(DeviceChoice::Auto), Ok(Resolved::Cpu));
    }
}
