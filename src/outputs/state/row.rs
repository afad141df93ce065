//! A run's row in the study: what the events said of it so far.

use super::history::History;
use crate::protocol::{Diagnostics, EpochMetrics, RunResult};
use crate::study::{original, RunKind, RunSpec};

const STEP_POINTS: usize = 240;

#[derive(Debug, Clone, PartialEq)]
pub enum PlanState {
    Starting,
    Running,
    /// `kdtui watch`: runs train in other processes; this session only reads.
    Watching,
    Paused,
    Stopping,
    Finished,
    Stopped,
    Failed(String),
}

impl PlanState {
    pub fn label(&self) -> &'static str {
        match self {
            PlanState::Starting => "STARTING",
            PlanState::Running => "RUNNING",
            PlanState::Watching => "WATCHING",
            PlanState::Paused => "PAUSED",
            PlanState::Stopping => "STOPPING",
            PlanState::Finished => "FINISHED",
            PlanState::Stopped => "STOPPED",
            PlanState::Failed(_) => "FAILED",
        }
    }

    /// Whether training may still be going on.
    pub fn active(&self) -> bool {
        matches!(self, PlanState::Starting | PlanState::Running | PlanState::Paused | PlanState::Stopping)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RowStatus {
    Queued,
    Running,
    Done,
    Reused,
    Interrupted,
    Diverged,
    Failed(String),
    Skipped,
}

#[derive(Debug, Clone)]
pub struct RunRow {
    pub spec: RunSpec,
    pub status: RowStatus,
    pub epochs: usize,
    pub steps_per_epoch: usize,
    pub step: usize,
    pub epoch: usize,
    pub step_loss: History,
    pub step_accuracy: History,
    pub history: Vec<EpochMetrics>,
    pub result: Option<RunResult>,
    pub images_per_sec: f32,
    /// `kdtui watch`: the last heartbeat of the process training the run
    /// (Unix seconds) and after how long without one it calls the run lost.
    pub alive: Option<(f64, f64)>,
    /// The log has said that this run looks lost (said once per silence).
    pub(super) lost_said: bool,
    /// A step or an epoch of it has been reported since it (re)started.
    pub(super) progressed: bool,
}

impl RunRow {
    pub(super) fn new(spec: RunSpec) -> Self {
        Self {
            spec,
            status: RowStatus::Queued,
            epochs: 0,
            steps_per_epoch: 0,
            step: 0,
            epoch: 0,
            step_loss: History::new(STEP_POINTS),
            step_accuracy: History::new(STEP_POINTS),
            history: Vec::new(),
            result: None,
            images_per_sec: 0.0,
            alive: None,
            lost_said: false,
            progressed: false,
        }
    }

    /// How long the run under way has been silent, once that is longer than
    /// its writer's `lost_after`: its process may have died (a SIGKILL, a
    /// lost node); nothing else can tell that from a slow run.
    pub fn lost_for(&self, now: f64) -> Option<f64> {
        let (at, lost_after) = self.alive?;
        let silent = now - at;
        (self.status == RowStatus::Running && now > 0.0 && silent > lost_after).then_some(silent)
    }

    /// A result with epochs: one stopped in its first epoch has no accuracy
    /// to show (its 0 is no measurement).
    fn measured(&self) -> Option<&RunResult> {
        self.result.as_ref().filter(|r| r.epochs > 0)
    }

    pub fn test_accuracy(&self) -> Option<f64> {
        self.measured().map(|r| r.final_test_accuracy).or_else(|| self.history.last().map(|m| m.test_accuracy))
    }

    pub fn train_loss(&self) -> Option<f64> {
        self.history.last().map(|m| m.train_loss).or_else(|| self.step_loss.last().map(|p| p.1))
    }

    pub fn original(&self) -> Option<f64> {
        match self.spec.kind {
            RunKind::Teacher => Some(original::TEACHER_ACCURACY),
            RunKind::Baseline => Some(original::BASELINE_ACCURACY),
            RunKind::Distill => original::distilled_accuracy(self.spec.loss, self.spec.temperature?),
        }
    }

    pub fn wall_seconds(&self) -> Option<f64> {
        self.result
            .as_ref()
            .map(|r| r.wall_seconds)
            .or_else(|| (!self.history.is_empty()).then(|| self.history.iter().map(|m| m.seconds).sum()))
    }

    /// The diagnostics of its last epoch.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        self.history.last()?.diagnostics.as_ref()
    }

    pub(super) fn progress(&self) -> f64 {
        let total = (self.epochs * self.steps_per_epoch).max(1);
        self.step as f64 / total as f64
    }
}
