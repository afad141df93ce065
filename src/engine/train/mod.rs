//! Training: the plan's orchestration (`orchestrate`), one run's loop
//! (`run`), one optimisation step (`step`) and the checkpoints that make a
//! run resumable (`checkpoint`). Runs on the training thread; reports through
//! `TrainEvent`s and takes `Control`s between steps.

pub mod checkpoint;
pub mod optimizer;
mod orchestrate;
mod run;
pub mod step;

pub use orchestrate::{run_plan, PlanInput};
pub use step::{adam, flat_gradients, gradients, host_reads, learning_rate, train_step, Read, Tally};
