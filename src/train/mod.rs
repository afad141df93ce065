//! Runs a plan on a background thread: `TrainEvent`s out, `Control` in.

pub mod checkpoint;
pub mod control;
pub mod event;
pub mod plan;
pub mod runner;

pub use control::Control;
pub use event::{EpochMetrics, RunResult, RunStatus, TrainEvent};
pub use plan::{RunKind, RunSpec};
