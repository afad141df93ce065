//! What passes between the training thread and its consumers: `TrainEvent`s
//! out (small owned values), `Control`s in, and the `EventSource` handle that
//! holds both ends. `kdtui watch` hands the monitor the same handle, fed
//! from files instead of a trainer.

pub mod control;
pub mod event;
pub mod source;

pub use control::{Control, Controls, Flow};
pub use event::{Bin, Deployment, Diagnostics, EpochMetrics, IntegerServing, RunResult, RunStatus, TrainEvent};
pub use source::EventSource;
