//! The study as a session knows it, from the events alone: a pure reducer
//! (`apply`: `TrainEvent` -> run rows + the one `Results`) that every
//! consumer folds the stream with: the monitor draws it, `--batch` formats
//! lines from it, and the `Sink` writes its `Results` (with what other
//! shards wrote merged in, which the monitor then shows too).

pub mod history;
mod row;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

pub use row::{PlanState, RowStatus, RunRow};

use super::stats::{group_of, Group};
use super::store::Results;
use crate::protocol::{Control, RunStatus, TrainEvent};
use crate::study::RunKind;

const LOG_LINES: usize = 200;

#[derive(Debug)]
pub struct StudyState {
    pub plan: String,
    pub device: String,
    pub data: String,
    pub state: PlanState,
    pub runs: Vec<RunRow>,
    /// The run training now (this session's trainer runs one at a time).
    pub current: Option<String>,
    /// The results: every run's row, recorded as runs end. The `Sink`
    /// writes them (merging other shards' rows in), so there is one copy.
    pub results: Results,
    /// Runs started in this session, replays included: `--batch`'s [k/n].
    pub started: usize,
    pub log: VecDeque<(Duration, String)>,
    pub elapsed: Duration,
    /// `kdtui watch`: the results directory followed, read-only.
    pub watching: Option<PathBuf>,
    /// The wall clock (Unix seconds) as the session last set it: what a
    /// heartbeat's age is measured against. 0 until set.
    pub clock: f64,
}

impl StudyState {
    pub fn new(results: Results) -> Self {
        Self {
            plan: results.plan.clone(),
            device: results.device.clone(),
            data: results.data.clone(),
            state: PlanState::Starting,
            runs: Vec::new(),
            current: None,
            results,
            started: 0,
            log: VecDeque::new(),
            elapsed: Duration::ZERO,
            watching: None,
            clock: 0.0,
        }
    }

    /// The study of `kdtui watch <dir>`: fed by the directory's files.
    pub fn watching(dir: PathBuf) -> Self {
        Self { watching: Some(dir), ..Self::new(Results::default()) }
    }

    /// In `kdtui watch`: FINISHED once every run has ended, WATCHING while
    /// any has not (a requeued run starts again).
    fn settle_watch_state(&mut self) {
        if self.watching.is_none() || self.runs.is_empty() {
            return;
        }
        let ended = self.done_count() == self.runs.len();
        self.state = match (ended, &self.state) {
            (true, _) => PlanState::Finished,
            (false, PlanState::Finished | PlanState::Starting) => PlanState::Watching,
            (false, other) => other.clone(),
        };
    }

    fn row_mut(&mut self, run_id: &str) -> Option<&mut RunRow> {
        self.runs.iter_mut().find(|r| r.spec.run_id == run_id)
    }

    pub fn row(&self, run_id: &str) -> Option<&RunRow> {
        self.runs.iter().find(|r| r.spec.run_id == run_id)
    }

    pub fn log(&mut self, line: impl Into<String>) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back((self.elapsed, line.into()));
    }

    pub fn tick(&mut self, elapsed: Duration) {
        self.elapsed = elapsed;
    }

    /// Sets the wall clock; says in the log when a watched run has gone
    /// silent for longer than its writer allows.
    pub fn set_clock(&mut self, unix_now: f64) {
        self.clock = unix_now;
        let mut newly_lost = vec![];
        for row in &mut self.runs {
            match row.lost_for(unix_now) {
                Some(silent) if !row.lost_said => {
                    row.lost_said = true;
                    newly_lost.push(format!(
                        "{}: no heartbeat for {}; its process may have died (a killed task, a lost node); it continues when its task runs again",
                        row.spec.run_id,
                        format_age(silent)
                    ));
                }
                _ => {}
            }
        }
        for line in newly_lost {
            self.log(line);
        }
    }

    pub fn done_count(&self) -> usize {
        self.runs.iter().filter(|r| !matches!(r.status, RowStatus::Queued | RowStatus::Running)).count()
    }

    /// Applies one event. Returns whether the results changed (a run ended,
    /// the plan ended): what the results files are rewritten for.
    pub fn apply(&mut self, event: &TrainEvent) -> bool {
        let changed = self.reduce(event.clone());
        self.settle_watch_state();
        changed
    }

    fn reduce(&mut self, event: TrainEvent) -> bool {
        match event {
            TrainEvent::PlanStarted { plan, runs, device, data, test_images } => {
                // What the sweep panel's verdicts need; `kdtui watch` starts
                // from empty results and learns them only here. A session's
                // results already plan the whole study, which a selection
                // or a shard (`runs`) is only part of. `kdtui watch` takes
                // each study the directory says it holds.
                if self.results.planned.is_empty() || self.watching.is_some() {
                    self.results.planned.clone_from(&runs);
                }
                self.results.test_images = test_images;
                self.plan = plan;
                self.device = device;
                self.data = data;
                self.runs = runs.into_iter().map(RunRow::new).collect();
                if self.watching.is_some() {
                    self.state = PlanState::Watching;
                } else if self.state == PlanState::Starting {
                    self.state = PlanState::Running;
                }
                self.log(format!("plan {} started: {} runs", self.plan, self.runs.len()));
                false
            }
            TrainEvent::Log { message } => {
                self.log(message);
                false
            }
            TrainEvent::RunStarted { run_id, epochs, steps_per_epoch, step, history } => {
                self.started += 1;
                if let Some(row) = self.row_mut(&run_id) {
                    row.status = RowStatus::Running;
                    // A run started again (resumed, requeued) has no result yet.
                    row.result = None;
                    row.epochs = epochs;
                    row.steps_per_epoch = steps_per_epoch;
                    row.step = step;
                    row.epoch = history.len() + 1;
                    row.history = history;
                    row.alive = None;
                    row.lost_said = false;
                    row.progressed = false;
                }
                self.log(format!("{run_id} started"));
                self.current = Some(run_id);
                false
            }
            TrainEvent::Step { run_id, epoch, step, loss, accuracy, images_per_sec } => {
                if let Some(row) = self.row_mut(&run_id) {
                    row.step = step;
                    row.epoch = epoch;
                    row.images_per_sec = images_per_sec;
                    row.step_loss.push(step as f64, loss as f64);
                    row.step_accuracy.push(step as f64, accuracy as f64);
                    row.progressed = true;
                }
                false
            }
            TrainEvent::EpochFinished { run_id, metrics } => {
                if let Some(row) = self.row_mut(&run_id) {
                    row.epoch = metrics.epoch + 1;
                    row.history.push(metrics);
                    row.progressed = true;
                }
                false
            }
            TrainEvent::RunFinished { result } => {
                let line = match result.status {
                    RunStatus::Done => format!(
                        "{} finished: test accuracy {:.2}%{}",
                        result.run_id,
                        100.0 * result.final_test_accuracy,
                        if result.reused { " (reused checkpoint)" } else { "" }
                    ),
                    RunStatus::Interrupted => format!("{} interrupted after {} epochs", result.run_id, result.epochs),
                    RunStatus::Diverged => format!("{} diverged in epoch {}", result.run_id, result.epochs + 1),
                };
                self.log(line);
                if let Some(row) = self.row_mut(&result.run_id) {
                    row.status = match (result.status, result.reused) {
                        (RunStatus::Done, true) => RowStatus::Reused,
                        (RunStatus::Done, false) => RowStatus::Done,
                        (RunStatus::Interrupted, _) => RowStatus::Interrupted,
                        (RunStatus::Diverged, _) => RowStatus::Diverged,
                    };
                    if row.history.is_empty() {
                        row.history = result.history.clone();
                    }
                    row.epochs = result.epochs.max(row.epochs);
                    row.result = Some(result.clone());
                }
                self.results.record(result);
                true
            }
            TrainEvent::RunFailed { run_id, error } => {
                self.log(format!("{run_id} FAILED: {error}"));
                if let Some(row) = self.row_mut(&run_id) {
                    row.status = RowStatus::Failed(error.clone());
                }
                self.results.record_failure(run_id, error);
                true
            }
            TrainEvent::Heartbeat { run_id, at, lost_after } => {
                let back = self.row_mut(&run_id).is_some_and(|row| {
                    row.alive = Some((at, lost_after));
                    std::mem::take(&mut row.lost_said)
                });
                if back {
                    self.log(format!("{run_id}: heartbeat again"));
                }
                false
            }
            TrainEvent::Paused => {
                if self.state == PlanState::Running {
                    self.state = PlanState::Paused;
                }
                self.log("training paused");
                false
            }
            TrainEvent::Resumed => {
                if self.state == PlanState::Paused {
                    self.state = PlanState::Running;
                }
                self.log("training resumed");
                false
            }
            TrainEvent::Fatal { error } => {
                self.log(format!("the plan cannot go on: {error}"));
                self.state = PlanState::Failed(error);
                false
            }
            TrainEvent::PlanFinished { stopped } => {
                self.results.stopped = stopped;
                for row in &mut self.runs {
                    if row.status == RowStatus::Queued {
                        row.status = RowStatus::Skipped;
                    }
                }
                if !matches!(self.state, PlanState::Failed(_)) {
                    self.state = if stopped { PlanState::Stopped } else { PlanState::Finished };
                }
                self.log(if stopped { "plan stopped" } else { "plan finished" });
                self.current = None;
                true
            }
        }
    }

    /// The training thread ended without saying the plan finished.
    pub fn on_trainer_died(&mut self, why: String) {
        self.log(format!("training thread ended: {why}"));
        self.state = PlanState::Failed(why);
        for row in &mut self.runs {
            if row.status == RowStatus::Running {
                row.status = RowStatus::Failed("training thread ended".into());
            }
        }
    }

    /// The results files cannot be written (disk full, permissions): training
    /// on would produce results nobody gets, so the plan stops.
    pub fn on_results_unwritable(&mut self, error: String) -> Option<Control> {
        let running = self.state.active();
        self.log(format!("cannot write results, stopping: {error}"));
        self.state = PlanState::Failed(format!("cannot write results: {error}"));
        running.then_some(Control::Stop)
    }

    /// A run has started on a GPU and no step has come back yet: cubecl
    /// compiles (and autotunes) each new kernel on its first use, which can
    /// take a while; the header says so instead of looking stalled.
    pub fn compiling_kernels(&self) -> bool {
        self.state == PlanState::Running
            && self.device.starts_with("cuda")
            && self
                .current
                .as_deref()
                .and_then(|id| self.row(id))
                .is_some_and(|r| r.status == RowStatus::Running && r.steps_per_epoch > 0 && !r.progressed)
    }

    /// Mean ± std of the final test accuracy over seeds for a finished row's
    /// cell, when the cell has more than one finished seed.
    pub fn seed_spread(&self, groups: &[Group], row: &RunRow) -> Option<(f64, f64, usize)> {
        let g = group_of(groups, row.result.as_ref()?)?;
        (g.seeds > 1).then_some((g.mean_final, g.std_final, g.seeds))
    }

    pub fn teacher_accuracy(&self) -> Option<f64> {
        self.runs.iter().find(|r| r.spec.kind == RunKind::Teacher).and_then(|r| r.result.as_ref()).map(|r| r.final_test_accuracy)
    }

    /// (current run remaining, plan remaining), estimated from the runs so far.
    pub fn eta(&self) -> (Option<Duration>, Option<Duration>) {
        let current = self.current.as_deref().and_then(|id| self.row(id)).filter(|r| r.status == RowStatus::Running);
        let current_left = current.and_then(|row| {
            let spent = row.history.iter().map(|m| m.seconds).sum::<f64>();
            let p = row.progress();
            (p > 0.02 && spent > 0.0).then(|| spent / p * (1.0 - p))
        });
        let finished: Vec<f64> = self
            .runs
            .iter()
            .filter(|r| r.spec.kind != RunKind::Teacher && r.status == RowStatus::Done)
            .filter_map(|r| r.wall_seconds())
            .collect();
        let queued = self.runs.iter().filter(|r| r.status == RowStatus::Queued).count();
        let plan_left = if self.watching.is_some() {
            // Runs elsewhere go several at a time, on hardware this cannot see.
            None
        } else if queued == 0 {
            current_left
        } else if finished.is_empty() {
            None
        } else {
            let per_run = finished.iter().sum::<f64>() / finished.len() as f64;
            Some(current_left.unwrap_or(0.0) + per_run * queued as f64)
        };
        (current_left.map(Duration::from_secs_f64), plan_left.map(Duration::from_secs_f64))
    }

    pub fn throughput(&self) -> Option<f32> {
        if self.watching.is_some() {
            // Several runs train at once, one per task: their sum.
            let sum: f32 = self.runs.iter().filter(|r| r.status == RowStatus::Running).map(|r| r.images_per_sec).sum();
            return (sum > 0.0).then_some(sum);
        }
        let row = self.current.as_deref().and_then(|id| self.row(id))?;
        (row.images_per_sec > 0.0).then_some(row.images_per_sec)
    }
}

/// A silence as a person reads it: 45s, 12m, 3h.
pub fn format_age(seconds: f64) -> String {
    match seconds {
        s if s < 60.0 => format!("{s:.0}s"),
        s if s < 3600.0 => format!("{:.0}m", (s / 60.0).floor()),
        s => format!("{:.0}h", (s / 3600.0).floor()),
    }
}

pub fn status_word(s: &RowStatus) -> &'static str {
    match s {
        RowStatus::Queued => "queued",
        RowStatus::Running => "running",
        RowStatus::Done => "done",
        // Finished in an earlier session (or a reused teacher): not retrained.
        RowStatus::Reused => "done (kept)",
        RowStatus::Interrupted => "interrupted",
        RowStatus::Diverged => "diverged",
        RowStatus::Failed(_) => "failed",
        RowStatus::Skipped => "skipped",
    }
}
