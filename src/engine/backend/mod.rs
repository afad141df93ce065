//! `--device cpu|cuda[:N]|auto`: which burn backend runs the work, chosen at
//! run time, and the one place that turns that choice into a backend type
//! (`dispatch`): the training thread and the benchmark both go through it.

use std::str::FromStr;

use crossbeam_channel::{Receiver, Sender};

use super::model::TrainBackend;
use super::train::{run_plan, PlanInput};
use crate::protocol::source::TRAIN_THREAD;
use crate::protocol::{Control, EventSource, TrainEvent};

/// The CPU backend: burn's pure-Rust `flex` (SIMD gemm, rayon), with
/// kdtui's own convolution, norm and Adam kernels (docs/KERNELS.md).
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

    /// The `--device` value that names this backend again (for child processes).
    pub fn flag(self) -> String {
        match self {
            Resolved::Cpu => "cpu".into(),
            Resolved::Cuda(n) => format!("cuda:{n}"),
        }
    }
}

pub fn resolve(choice: DeviceChoice) -> Result<Resolved, DeviceError> {
    resolve_saying_why(choice).map(|(resolved, _)| resolved)
}

/// `resolve`, and for `auto` on a build with CUDA that found no usable GPU,
/// why it fell back to the CPU: a person who expected the GPU is told, not
/// left to wonder why training is slow.
pub fn resolve_saying_why(choice: DeviceChoice) -> Result<(Resolved, Option<String>), DeviceError> {
    match choice {
        DeviceChoice::Cpu => Ok((Resolved::Cpu, None)),
        DeviceChoice::Cuda(n) => cuda::probe(n).map(|_| (Resolved::Cuda(n), None)).map_err(|e| match e {
            cuda::ProbeError::NotBuilt => DeviceError::NotBuilt(choice.to_string()),
            cuda::ProbeError::Failed(why) => DeviceError::Unavailable(choice.to_string(), why),
        }),
        DeviceChoice::Auto => Ok(match cuda::probe(0) {
            Ok(()) => (Resolved::Cuda(0), None),
            Err(cuda::ProbeError::NotBuilt) => (Resolved::Cpu, None),
            Err(cuda::ProbeError::Failed(why)) => (Resolved::Cpu, Some(auto_fallback_note(&why))),
        }),
    }
}

fn auto_fallback_note(why: &str) -> String {
    format!("--device auto: no usable GPU ({why}); training on the CPU. `kdtui doctor` lists what CUDA needs")
}

/// Where cubecl keeps, across processes, what it learns on a GPU: the
/// autotune results of each kernel and shape and the compiled PTX. Beside
/// the checkpoints (shared by a Slurm study's tasks), so the second process
/// does not tune and compile again. Call before any CUDA use (the probe
/// included); a note for the log when it cannot be done.
pub fn keep_kernel_caches_in(root: &std::path::Path) -> Option<String> {
    cuda::keep_caches_in(root).err().map(|why| {
        format!("cubecl's kernel caches stay in its default place ({why}); the first steps of each process tune and compile again")
    })
}

/// What `--device cuda:N` needs on this machine, each piece with what was
/// found, ending at the first missing one (`kdtui doctor`).
pub fn cuda_requirements(n: usize) -> Vec<(&'static str, Result<String, String>)> {
    cuda::requirements(n)
}

/// Work that runs on whichever backend `--device` resolved to.
pub trait OnBackend {
    type Output;
    /// `name` describes the device, for the header and the report.
    fn run<B: TrainBackend>(self, device: B::Device, name: &str) -> Self::Output;
}

/// Runs `work` on the backend `resolved` names: the one place where a
/// run-time choice becomes a backend type.
pub fn dispatch<W: OnBackend>(resolved: Resolved, work: W) -> W::Output {
    let name = resolved.describe();
    match resolved {
        Resolved::Cpu => work.run::<CpuTrainBackend>(Default::default(), &name),
        Resolved::Cuda(n) => cuda::dispatch(n, work, &name),
    }
}

/// The training thread could not be started (the system's thread limit).
#[derive(Debug, thiserror::Error)]
#[error("cannot start the training thread: {0}")]
pub struct SpawnError(#[from] std::io::Error);

/// Starts the plan on a background thread on the resolved device.
pub fn spawn(resolved: Resolved, input: PlanInput) -> Result<EventSource, SpawnError> {
    spawn_with(resolved, input, crossbeam_channel::unbounded())
}

/// `spawn`, with the trainer waiting at each event until it is received:
/// a control sent in answer to an event then arrives before the training
/// has gone more than one step further, whatever the machine's speed. For
/// tests that stop a run at a chosen moment.
pub fn spawn_lockstep(resolved: Resolved, input: PlanInput) -> Result<EventSource, SpawnError> {
    spawn_with(resolved, input, crossbeam_channel::bounded(0))
}

fn spawn_with(
    resolved: Resolved,
    input: PlanInput,
    (events_tx, events): (Sender<TrainEvent>, Receiver<TrainEvent>),
) -> Result<EventSource, SpawnError> {
    struct Plan {
        input: PlanInput,
        events: Sender<TrainEvent>,
        control: Receiver<Control>,
    }
    impl OnBackend for Plan {
        type Output = ();
        fn run<B: TrainBackend>(mut self, device: B::Device, name: &str) {
            self.input.device_name = name.to_string();
            run_plan::<B>(self.input, device, self.events, self.control)
        }
    }
    let (control, control_rx) = crossbeam_channel::unbounded();
    let plan = Plan { input, events: events_tx, control: control_rx };
    let thread = std::thread::Builder::new().name(TRAIN_THREAD.into()).spawn(move || dispatch(resolved, plan))?;
    Ok(EventSource { events, control, thread })
}

// The library's own unit tests leave CUDA out: instantiating the training
// loop and the benchmark for burn's CUDA backend is most of the library's
// compile time, and no unit test runs on a GPU (the binary and the
// integration tests keep it).
#[cfg(all(feature = "cuda", not(test)))]
mod cuda {
    use super::*;
    use crate::engine::cuda_setup;
    use burn::backend::cuda::CudaDevice;
    use burn::backend::{Autodiff, Cuda};
    use burn::prelude::*;

    pub enum ProbeError {
        #[allow(dead_code)]
        NotBuilt,
        Failed(String),
    }

    /// What a run on cuda:n needs, checked in order, each with what was
    /// found; the list ends at the first piece missing.
    pub fn requirements(n: usize) -> Vec<(&'static str, Result<String, String>)> {
        let mut found = Vec::new();
        let mut check = |what: &'static str, outcome: Result<String, String>| {
            let ok = outcome.is_ok();
            found.push((what, outcome));
            ok
        };
        // SAFETY: only tries to dlopen the driver library; no CUDA call is made.
        let driver = unsafe { cudarc::driver::sys::is_culib_present() };
        if !check(
            "driver library",
            driver
                .then(|| "libcuda loads".into())
                .ok_or_else(|| "the NVIDIA driver library libcuda is not installed or not on the loader path".into()),
        ) {
            return found;
        }
        let mut version = 0;
        // SAFETY: the library is loaded; the call writes one int.
        let answer = cudarc::driver::result::init()
            .and_then(|()| unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }.result())
            .and_then(|()| cudarc::driver::result::device::get_count())
            .map_err(|e| format!("the CUDA driver does not answer: {e}"));
        let count = answer.clone().unwrap_or(0).max(0) as usize;
        if !check("driver", answer.map(|c| format!("CUDA {}, {c} device(s)", cuda_setup::version_name(version)))) {
            return found;
        }
        if !check(
            "device",
            if n < count {
                Ok(format!("cuda:{n}"))
            } else {
                Err(format!("this machine has {count} CUDA device(s); cuda:{n} is not one of them"))
            },
        ) {
            return found;
        }
        // SAFETY: only tries to dlopen libnvrtc.
        if !check(
            "NVRTC",
            if unsafe { cudarc::nvrtc::sys::is_culib_present() } { Ok("libnvrtc loads".into()) } else { Err(cuda_setup::nvrtc_missing()) },
        ) {
            return found;
        }
        let (mut major, mut minor) = (0, 0);
        // SAFETY: libnvrtc is loaded; the call writes two ints.
        let nvrtc = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
        let nvrtc = match nvrtc {
            cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS => {
                cuda_setup::check_nvrtc_version((major, minor), version).map(|()| format!("NVRTC {major}.{minor}"))
            }
            e => Err(format!("NVRTC does not answer: {e:?}")),
        };
        if !check("NVRTC version", nvrtc) {
            return found;
        }
        let dir = cuda_setup::toolkit_dir(std::env::var_os("CUDA_PATH"), |p| p.exists());
        check("CUDA headers", cuda_setup::check_headers(dir.as_deref()).map(|h| h.display().to_string()));
        found
    }

    /// Checks `requirements`, then runs one tiny op on the device: cubecl
    /// panics when a piece is missing, and we want a message instead.
    pub fn probe(n: usize) -> Result<(), ProbeError> {
        if let Some((_, Err(why))) = requirements(n).pop() {
            return Err(ProbeError::Failed(why));
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
            Ok(3.0) => Ok(()),
            Ok(v) => Err(ProbeError::Failed(format!("a test sum gave {v}, not 3"))),
            Err(p) => Err(ProbeError::Failed(crate::util::panic_message(&p))),
        }
    }

    pub fn dispatch<W: OnBackend>(n: usize, work: W, name: &str) -> W::Output {
        work.run::<Autodiff<Cuda>>(CudaDevice::new(n), name)
    }

    /// Points cubecl's autotune results and compiled kernels at `root`
    /// (kept across processes and nodes). cubecl reads its configuration
    /// once, at its first use: this must come before any device is touched.
    pub fn keep_caches_in(root: &std::path::Path) -> Result<(), String> {
        use burn::cubecl::config::cache::CacheConfig;
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        config.autotune.cache = CacheConfig::File(root.to_path_buf());
        config.compilation.cache = Some(CacheConfig::File(root.to_path_buf()));
        // `set` panics once the configuration has been read: say so instead.
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = std::panic::catch_unwind(|| CubeClRuntimeConfig::set(config));
        std::panic::set_hook(quiet);
        outcome.map_err(|_| "cubecl had already read its configuration".to_string())
    }
}

#[cfg(not(all(feature = "cuda", not(test))))]
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

    pub fn keep_caches_in(_root: &std::path::Path) -> Result<(), String> {
        Ok(())
    }

    pub fn requirements(_n: usize) -> Vec<(&'static str, Result<String, String>)> {
        vec![("CUDA backend", Err("this kdtui was built without it (--no-default-features)".into()))]
    }

    pub fn dispatch<W: OnBackend>(_n: usize, _work: W, _name: &str) -> W::Output {
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

    #[test]
    fn auto_says_why_it_did_not_take_the_gpu() {
        let note = auto_fallback_note("libcuda.so.1 not found");
        assert!(note.contains("no usable GPU (libcuda.so.1 not found); training on the CPU") && note.contains("kdtui doctor"), "{note}");
        // Unit tests build without CUDA: nothing to explain (tests/cli.rs
        // checks the binary, which has it).
        assert_eq!(resolve_saying_why(DeviceChoice::Auto).unwrap(), (Resolved::Cpu, None));
    }

    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let e = resolve(DeviceChoice::Cuda(0)).unwrap_err();
        assert!(e.to_string().contains("--features cuda"), "{e}");
        assert_eq!(resolve(DeviceChoice::Auto), Ok(Resolved::Cpu));
    }
}
