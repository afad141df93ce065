//! What a study leaves behind: the results (`store`), their statistics
//! (`stats`), the results directory (`directory`), the files written from it
//! in crash-safe order (`publish`: CSV tables, report.md, figures,
//! results.json), the files written from the event stream as it arrives
//! (`tensorboard`, `runlog`), the study's `state` every consumer folds the
//! events into, and the `sink` that writes it.

pub mod directory;
pub mod figures;
pub mod publish;
pub mod report;
pub mod runlog;
pub mod sink;
pub mod state;
pub mod stats;
pub mod store;
pub mod tables;
pub mod tensorboard;

pub use publish::{publish, PublishError};
pub use sink::{feed, tick, Fed, Sink};
pub use state::StudyState;
pub use store::{Failure, Results};

/// What the outputs' unit tests share.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::protocol::{RunResult, RunStatus};
    use crate::study::RunSpec;

    /// `spec` finished after one epoch at test accuracy `accuracy`.
    pub fn finished(spec: &RunSpec, accuracy: f64) -> RunResult {
        RunResult {
            run_id: spec.run_id.clone(),
            kind: spec.kind,
            loss: spec.loss,
            temperature: spec.temperature,
            seed: spec.seed,
            status: RunStatus::Done,
            epochs: 1,
            final_test_accuracy: accuracy,
            final_train_loss: 0.1,
            model_bytes: 1000,
            wall_seconds: 1.0,
            reused: false,
            device: String::new(),
            history: vec![],
            deployment: None,
        }
    }
}
