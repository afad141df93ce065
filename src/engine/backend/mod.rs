//! `--device cpu|cuda[:N]|wgpu[:N]|auto`: which burn backend runs the work, chosen at
//! run time, and the one place that turns that choice into a backend type
//! (`dispatch`): the training thread and the benchmark both go through it.

use std::str::FromStr;

use crossbeam_channel::{Receiver, Sender};

mod cubecl_config;
mod cuda;
pub mod wgpu;
mod work;

pub use work::OnBackend;
use work::ProbeError;

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
    /// `wgpu` (none: the first hardware adapter, else a software one) or `wgpu:N`.
    Wgpu(Option<usize>),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeviceError {
    #[error("unknown device {0:?}: expected cpu, cuda, cuda:N, wgpu, wgpu:N or auto")]
    Unknown(String),
    #[error("--device {0} asks for {1}, but this kdtui was built without it; rebuild with `cargo build --release --features {2}`")]
    NotBuilt(String, &'static str, &'static str),
    #[error("--device {0}: no usable {1} device ({2})")]
    Unavailable(String, &'static str, String),
}

impl FromStr for DeviceChoice {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let numbered = |prefix: &str| s.strip_prefix(prefix).and_then(|n| n.parse::<usize>().ok());
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            "wgpu" => Ok(Self::Wgpu(None)),
            _ => numbered("cuda:")
                .map(Self::Cuda)
                .or_else(|| numbered("wgpu:").map(|n| Self::Wgpu(Some(n))))
                .ok_or_else(|| DeviceError::Unknown(s.to_string())),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Wgpu(None) => f.write_str("wgpu"),
            Self::Wgpu(Some(n)) => write!(f, "wgpu:{n}"),
        }
    }
}

/// A wgpu adapter a choice resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgpuTarget {
    /// Its number in `kdtui doctor`'s list.
    pub index: usize,
    pub selector: wgpu::Selector,
    pub adapter: wgpu::Adapter,
}

/// The backend a choice resolves to on this build and machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Cpu,
    Cuda(usize),
    Wgpu(WgpuTarget),
}

impl Resolved {
    pub fn describe(&self) -> String {
        match self {
            Resolved::Cpu => match rayon::current_num_threads() {
                1 => "cpu (burn flex, 1 thread)".to_string(),
                n => format!("cpu (burn flex, {n} threads)"),
            },
            Resolved::Cuda(n) => format!("cuda:{n} (burn cuda)"),
            Resolved::Wgpu(t) => format!("wgpu:{} (burn wgpu, {})", t.index, t.adapter.describe()),
        }
    }

    /// The `--device` value that names this backend again (for child processes).
    pub fn flag(&self) -> String {
        match self {
            Resolved::Cpu => "cpu".into(),
            Resolved::Cuda(n) => format!("cuda:{n}"),
            Resolved::Wgpu(t) => format!("wgpu:{}", t.index),
        }
    }

    /// Runs on a GPU backend (cubecl): its kernel caches matter.
    pub fn is_cubecl(&self) -> bool {
        !matches!(self, Resolved::Cpu)
    }
}

pub fn resolve(choice: DeviceChoice) -> Result<Resolved, DeviceError> {
    resolve_saying_why(choice).map(|(resolved, _)| resolved)
}

/// `resolve`, and one line for each thing a person should know about the
/// choice: for `auto`, why it passed over CUDA or an adapter (someone who
/// expected a GPU is told, not left to wonder why training is slow); for a
/// software adapter, that it is one.
pub fn resolve_saying_why(choice: DeviceChoice) -> Result<(Resolved, Vec<String>), DeviceError> {
    let unavailable = |what, why| DeviceError::Unavailable(choice.to_string(), what, why);
    match choice {
        DeviceChoice::Cpu => Ok((Resolved::Cpu, vec![])),
        DeviceChoice::Cuda(n) => cuda::probe(n).map(|_| (Resolved::Cuda(n), vec![])).map_err(|e| match e {
            ProbeError::NotBuilt => DeviceError::NotBuilt(choice.to_string(), "CUDA", "cuda"),
            ProbeError::Failed(why) => unavailable("CUDA", why),
        }),
        DeviceChoice::Wgpu(want) => {
            if !wgpu::BUILT {
                return Err(DeviceError::NotBuilt(choice.to_string(), "wgpu", "wgpu"));
            }
            let adapters = wgpu::adapters();
            let index = wgpu::choose(&adapters, want).map_err(|why| unavailable("wgpu", why))?;
            let target = wgpu_target(&adapters, index).map_err(|why| unavailable("wgpu", why))?;
            let note = target.adapter.is_software().then(|| {
                format!(
                    "--device {choice}: {} is a software device on the CPU: a check of the GPU code path, slower than --device cpu",
                    target.adapter.describe()
                )
            });
            Ok((Resolved::Wgpu(target), note.into_iter().collect()))
        }
        DeviceChoice::Auto => {
            let mut notes = vec![];
            match cuda::probe(0) {
                Ok(()) => return Ok((Resolved::Cuda(0), notes)),
                Err(ProbeError::NotBuilt) => {}
                Err(ProbeError::Failed(why)) => notes.push(format!("--device auto: CUDA is not usable ({why})")),
            }
            if wgpu::BUILT {
                let adapters = wgpu::adapters();
                let (chosen, skipped) = wgpu::auto_choice(&adapters);
                notes.extend(skipped);
                match chosen.map(|i| wgpu_target(&adapters, i)) {
                    Some(Ok(target)) => return Ok((Resolved::Wgpu(target), notes)),
                    Some(Err(why)) => notes.push(format!("--device auto: wgpu is not usable ({why})")),
                    None => {}
                }
            }
            if !notes.is_empty() {
                notes.push("--device auto: no usable GPU; training on the CPU. `kdtui doctor` lists what each GPU backend needs".into());
            }
            Ok((Resolved::Cpu, notes))
        }
    }
}

/// Adapter `index`, once a tiny op has run on it.
fn wgpu_target(adapters: &[wgpu::Adapter], index: usize) -> Result<WgpuTarget, String> {
    let selector = wgpu::selector(adapters, index)?;
    match wgpu::probe(selector) {
        Ok(()) => Ok(WgpuTarget { index, selector, adapter: adapters[index].clone() }),
        Err(ProbeError::NotBuilt) => Err("this kdtui was built without wgpu".into()),
        Err(ProbeError::Failed(why)) => Err(format!("wgpu:{index}, {}: {why}", adapters[index].describe())),
    }
}

/// Where cubecl keeps, across processes, what it learns on a GPU: the
/// autotune results of each kernel and shape and the compiled kernels.
/// In `.cubecl/` beside the checkpoints (`checkpoints` is a config's
/// `[plan] checkpoints`, shared by a Slurm study's tasks, and by `kdtui
/// bench` with the same config), so the second process does not tune and
/// compile again. Call before any GPU use (the probes included); a note for
/// the log when it cannot be done.
pub fn keep_kernel_caches_in(checkpoints: &std::path::Path) -> Option<String> {
    cubecl_config::keep_caches_in(&checkpoints.join(".cubecl")).err().map(|why| {
        format!("cubecl's kernel caches stay in its default place ({why}); the first steps of each process tune and compile again")
    })
}

/// What `--device cuda:N` needs on this machine, each piece with what was
/// found, ending at the first missing one (`kdtui doctor`).
pub fn cuda_requirements(n: usize) -> Vec<(&'static str, Result<String, String>)> {
    cuda::requirements(n)
}

/// The wgpu adapters this machine has, in `--device wgpu:N` order, or why
/// there are none (`kdtui doctor`).
pub fn wgpu_adapters() -> Result<Vec<wgpu::Adapter>, String> {
    if !wgpu::BUILT {
        return Err("this kdtui was built without wgpu (rebuild with `--features wgpu`)".into());
    }
    let adapters = wgpu::adapters();
    if adapters.is_empty() {
        Err(wgpu::no_adapter())
    } else {
        Ok(adapters)
    }
}

/// Runs `work` on the backend `resolved` names: the one place where a
/// run-time choice becomes a backend type.
pub fn dispatch<W: OnBackend + Send>(resolved: Resolved, work: W) -> W::Output
where
    W::Output: Send,
{
    let name = resolved.describe();
    match resolved {
        Resolved::Cpu => on_own_threads(|| work.run::<CpuTrainBackend>(Default::default(), &name)),
        Resolved::Cuda(n) => cuda::dispatch(n, work, &name),
        Resolved::Wgpu(t) => wgpu::dispatch(t.selector, work, &name),
    }
}

/// Runs `f` on one of the threads of a rayon pool of its own.
///
/// The CPU kernels split each op over rayon's threads. From a thread
/// outside the pool, each op is injected into it and the caller sleeps
/// until the op ends: a hand-off each way, dozens of times a step. From
/// one of the pool's threads, that thread takes its share and another
/// steals the rest. The student's training step ran 12% to 20% faster so
/// (two sets of three alternating runs of `kdtui bench --measure student`,
/// 2 threads: medians 6,445 -> 7,720 and 6,030 -> 6,787 images/s). A pool
/// of its own, not the global
/// one: a run blocked on its channel (lockstep, pause) then holds no thread
/// that other callers' rayon work waits for. The threads carry the training
/// thread's name, so their panics are the run's (`quiet_trainer_panics`).
fn on_own_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().thread_name(|_| TRAIN_THREAD.into()).build() {
        Ok(pool) => pool.install(f),
        // At the system's thread limit: the global pool, from outside.
        Err(_) => f(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:2".parse(), Ok(DeviceChoice::Cuda(2)));
        assert_eq!("wgpu".parse(), Ok(DeviceChoice::Wgpu(None)));
        assert_eq!("wgpu:1".parse(), Ok(DeviceChoice::Wgpu(Some(1))));
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        for bad in ["gpu", "cuda:x", "wgpu:", "wgpu:-1", "vulkan"] {
            let e = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(e.to_string().contains("expected cpu, cuda, cuda:N, wgpu, wgpu:N or auto"), "{e}");
        }
        for name in ["cpu", "cuda:2", "wgpu", "wgpu:3", "auto"] {
            assert_eq!(name.parse::<DeviceChoice>().unwrap().to_string(), name);
        }
    }

    /// CPU work runs on a thread of its own pool (each op's split then
    /// starts inside the pool), named as the training thread.
    #[test]
    fn cpu_work_runs_inside_a_pool_of_its_own() {
        struct Where;
        impl OnBackend for Where {
            type Output = (Option<usize>, Option<String>);
            fn run<B: TrainBackend>(self, _device: B::Device, _name: &str) -> Self::Output {
                (rayon::current_thread_index(), std::thread::current().name().map(str::to_string))
            }
        }
        let (index, name) = dispatch(Resolved::Cpu, Where);
        assert!(index.is_some(), "the work ran outside rayon's threads");
        assert_eq!(name.as_deref(), Some(TRAIN_THREAD));
    }

    #[test]
    fn without_the_gpu_backends_auto_is_the_cpu_and_says_nothing() {
        // Unit tests build without CUDA and wgpu: nothing to explain
        // (tests/cli.rs and tests/gpu_path.rs check the binary, which has them).
        assert_eq!(resolve_saying_why(DeviceChoice::Auto).unwrap(), (Resolved::Cpu, vec![]));
    }

    #[test]
    fn a_backend_left_out_of_the_build_is_a_clear_error() {
        let e = resolve(DeviceChoice::Cuda(0)).unwrap_err();
        assert!(e.to_string().contains("asks for CUDA") && e.to_string().contains("--features cuda"), "{e}");
        let e = resolve(DeviceChoice::Wgpu(Some(1))).unwrap_err();
        assert!(e.to_string().contains("--device wgpu:1 asks for wgpu") && e.to_string().contains("--features wgpu"), "{e}");
        assert!(wgpu_adapters().unwrap_err().contains("built without wgpu"));
    }
}
