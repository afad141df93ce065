//! What the training thread tells its consumers (the TUI or the batch writer).
//! Small owned values only: consumers never touch the trainer's state.

use serde::{Deserialize, Serialize};

use crate::study::{Loss, RunKind, RunSpec};

#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    PlanStarted {
        plan: String,
        runs: Vec<RunSpec>,
        device: String,
        data: String,
        /// The test set's size: the report's statistics need it, and `kdtui
        /// watch` knows it only from here.
        test_images: usize,
    },
    /// Something worth a line in a log: checkpoint saved, teacher reused, ...
    Log {
        message: String,
    },
    RunStarted {
        run_id: String,
        epochs: usize,
        /// 0 in a replay (`TrainEvent::replay`): a run that finished earlier,
        /// told again without training.
        steps_per_epoch: usize,
        /// Steps already taken: non-zero when the run resumes from a checkpoint.
        step: usize,
        /// Epochs finished before this session (resumed runs).
        history: Vec<EpochMetrics>,
    },
    /// Metrics of the last `log_every` steps.
    Step {
        run_id: String,
        epoch: usize,
        /// Steps done in this run so far.
        step: usize,
        loss: f32,
        accuracy: f32,
        images_per_sec: f32,
    },
    EpochFinished {
        run_id: String,
        metrics: EpochMetrics,
    },
    RunFinished {
        result: RunResult,
    },
    RunFailed {
        run_id: String,
        error: String,
    },
    /// The process training `run_id` was alive at `at` (Unix seconds), and
    /// calls the run lost after `lost_after` seconds without another. Read
    /// from the metric files by `kdtui watch`; a trainer never sends it.
    Heartbeat {
        run_id: String,
        at: f64,
        lost_after: f64,
    },
    Paused,
    Resumed,
    /// The plan cannot go on (a checkpoint cannot be written, ...); the
    /// trainer stops and `PlanFinished { stopped: true }` follows.
    Fatal {
        error: String,
    },
    PlanFinished {
        stopped: bool,
    },
}

impl TrainEvent {
    /// A run that finished earlier, told as it would be told live: its start
    /// (with no steps to take) and its result.
    pub fn replay(result: RunResult) -> [TrainEvent; 2] {
        [
            TrainEvent::RunStarted {
                run_id: result.run_id.clone(),
                epochs: result.epochs,
                steps_per_epoch: 0,
                step: 0,
                history: result.history.clone(),
            },
            TrainEvent::RunFinished { result },
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    #[serde(deserialize_with = "nan_from_null")]
    pub train_loss: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub train_accuracy: f64,
    /// Hard-label cross-entropy on the whole test set.
    #[serde(deserialize_with = "nan_from_null")]
    pub test_loss: f64,
    /// Accuracy on the whole test set.
    #[serde(deserialize_with = "nan_from_null")]
    pub test_accuracy: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub seconds: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub images_per_sec: f64,
    /// What the test-set pass of this epoch says beyond accuracy (absent in
    /// files of kdtui versions before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Diagnostics>,
}

/// Fidelity to the teacher and calibration, from the logits of one pass
/// over the whole test set (`engine::diagnostics` computes them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Share of test images whose top-1 class is the teacher's (students only).
    #[serde(default)]
    pub agreement: Option<f64>,
    /// The same over the images the teacher gets wrong (none when it gets none wrong).
    #[serde(default)]
    pub agreement_on_teacher_errors: Option<f64>,
    /// Mean KL(teacher || student) of the softmax at T = 1, in nats (students only).
    #[serde(default)]
    pub kl_t1: Option<f64>,
    /// The same at the run's temperature (distillation runs only).
    #[serde(default)]
    pub kl_t: Option<f64>,
    /// Expected calibration error: over 15 equal-width bins of the top-1
    /// probability, the image-weighted mean of |accuracy - confidence|.
    pub ece: f64,
    /// The reliability diagram behind `ece`: per bin, images, right answers,
    /// and the sum of their confidences.
    pub bins: Vec<Bin>,
    /// Row = true class, column = predicted class; row-major, classes x classes.
    pub confusion: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub images: u32,
    pub correct: u32,
    pub confidence_sum: f64,
}

impl RunResult {
    /// The diagnostics of its last epoch (none in files of earlier versions).
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        self.history.last()?.diagnostics.as_ref()
    }
}

impl Diagnostics {
    pub fn classes(&self) -> usize {
        (self.confusion.len() as f64).sqrt() as usize
    }

    /// Test accuracy of each class (none for a class without test images).
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        let k = self.classes();
        self.confusion
            .chunks_exact(k.max(1))
            .enumerate()
            .map(|(class, row)| {
                let total: u32 = row.iter().sum();
                (total > 0).then(|| f64::from(row[class]) / f64::from(total))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Done,
    /// Stopped by the user before its last epoch.
    Interrupted,
    /// The loss became NaN or infinite.
    Diverged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub run_id: String,
    pub kind: RunKind,
    pub loss: Loss,
    pub temperature: Option<f64>,
    pub seed: u64,
    pub status: RunStatus,
    pub epochs: usize,
    #[serde(deserialize_with = "nan_from_null")]
    pub final_test_accuracy: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub final_train_loss: f64,
    pub model_bytes: u64,
    #[serde(deserialize_with = "nan_from_null")]
    pub wall_seconds: f64,
    /// Loaded from a checkpoint instead of trained in this session.
    pub reused: bool,
    /// Where it trained (`cpu (burn flex, 2 threads)`, `cuda:0 (burn cuda)`;
    /// empty in results written before kdtui recorded it). Checkpoints are
    /// shared across devices, so one table can mix them; the report says so.
    #[serde(default)]
    pub device: String,
    pub history: Vec<EpochMetrics>,
    /// How fast its model serves, measured once after its last epoch (none
    /// for a run that did not finish, and in results written before kdtui
    /// measured it).
    #[serde(default)]
    pub deployment: Option<Deployment>,
}

/// A finished run's model at inference over the whole test set, measured
/// right after training on the machine that trained it: one figure per run
/// taken as the study ran, not a benchmark (`kdtui bench` is that).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The fp32 engine training uses (the fp32-simulated student, for a
    /// student) on the run's device, at the eval batch size.
    pub float_images_per_sec: f64,
    /// The integer engine on the CPU, for a quantized student.
    pub integer: Option<IntegerServing>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegerServing {
    /// The kernel it ran (`avx512-vnni`, ...).
    pub kernel: String,
    pub images_per_sec: f64,
    /// Test images it classified correctly, of `images`.
    pub correct: usize,
    /// Test images where its class is the fp32 engine's.
    pub same_class: usize,
    pub images: usize,
}

/// JSON has no NaN or infinity: serde_json writes them as `null` (a run that
/// diverged before its first epoch has no train loss), and this reads `null`
/// back as NaN instead of refusing the whole file.
pub(crate) fn nan_from_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_survive_a_json_round_trip_as_nan() {
        let m = EpochMetrics {
            diagnostics: None,
            epoch: 1,
            train_loss: f64::NAN,
            train_accuracy: 0.5,
            test_loss: f64::INFINITY,
            test_accuracy: 0.5,
            seconds: 1.0,
            images_per_sec: 2.0,
        };
        let back: EpochMetrics = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert!(back.train_loss.is_nan() && back.test_loss.is_nan());
        assert_eq!(back.test_accuracy, 0.5);
    }
}
