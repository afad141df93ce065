//! Training: the plan's orchestration (`orchestrate`), one run's loop
//! (`run`, from its resolved `RunSettings`), one optimisation step (`step`),
//! the checkpoints that make a run resumable (`checkpoint`), the finished
//! runs' model files (`model_files`), what a finished model costs to serve
//! (`deploy`) and the faults tests inject (`hooks`). Runs on the training
//! thread; reports through `TrainEvent`s and takes `Control`s between steps.

pub mod checkpoint;
mod deploy;
mod hooks;
mod model_files;
pub mod optimizer;
mod orchestrate;
mod run;
pub mod step;

pub use hooks::Hooks;
pub use orchestrate::{run_plan, PlanInput};
#[cfg(feature = "test-hooks")]
pub use step::host_reads;
pub use step::{adam, flat_gradients, gradients, learning_rate, train_step, Read, Tally};
