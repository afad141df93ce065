//! The interactive session's state: updated only by `TrainEvent`s from the
//! trainer and `Action`s from the keyboard, read only by `ui::render`.

pub mod history;

use std::collections::VecDeque;
use std::time::Duration;

use history::History;

use super::keys::Action;
use crate::outputs::stats::{group_of, Group};
use crate::outputs::Results;
use crate::protocol::{Control, Diagnostics, EpochMetrics, RunResult, RunStatus, TrainEvent};
use crate::study::{original, RunKind, RunSpec};

const LOG_LINES: usize = 200;
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
    lost_said: bool,
    /// A step or an epoch of it has been reported since it (re)started.
    progressed: bool,
}

impl RunRow {
    fn new(spec: RunSpec) -> Self {
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

    fn progress(&self) -> f64 {
        let total = (self.epochs * self.steps_per_epoch).max(1);
        self.step as f64 / total as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Run,
    Status,
    Loss,
    Temperature,
    Seed,
    TestAccuracy,
    TrainLoss,
    Size,
    Time,
    Original,
    /// Top-1 agreement with the teacher, last epoch.
    Agreement,
    /// Expected calibration error, last epoch.
    Ece,
}

impl Column {
    pub const ALL: [Column; 12] = [
        Column::Run,
        Column::Status,
        Column::Loss,
        Column::Temperature,
        Column::Seed,
        Column::TestAccuracy,
        Column::TrainLoss,
        Column::Size,
        Column::Time,
        Column::Original,
        Column::Agreement,
        Column::Ece,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Run => "run",
            Column::Status => "status",
            Column::Loss => "loss",
            Column::Temperature => "T",
            Column::Seed => "seed",
            Column::TestAccuracy => "test acc",
            Column::TrainLoss => "train loss",
            Column::Size => "size",
            Column::Time => "time",
            Column::Original => "orig (Δ)",
            Column::Agreement => "agree",
            Column::Ece => "ECE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartFocus {
    Accuracy,
    /// Top-1 agreement with the teacher per epoch.
    Agreement,
    Loss,
}

#[derive(Debug)]
pub struct App {
    pub plan: String,
    pub device: String,
    pub data: String,
    pub state: PlanState,
    pub runs: Vec<RunRow>,
    pub sort: Column,
    pub descending: bool,
    /// The selected run's id: selection follows the run when the order changes.
    pub selected: Option<String>,
    pub log: VecDeque<(Duration, String)>,
    pub elapsed: Duration,
    pub show_help: bool,
    pub confirm_quit: bool,
    pub should_quit: bool,
    pub chart: ChartFocus,
    pub current: Option<String>,
    pub results: Results,
    /// `kdtui watch`: the results directory followed, read-only.
    pub watching: Option<std::path::PathBuf>,
    /// The wall clock (Unix seconds) as the session last set it: what a
    /// heartbeat's age is measured against. 0 until set.
    pub clock: f64,
    /// Runs marked for the compare chart, in the order they were marked.
    pub marked: Vec<String>,
    /// The detail view of the selected run replaces the charts.
    pub detail: bool,
    /// The table shows only runs whose id starts with this.
    pub filter: String,
    /// Keys go to `filter` (after `/`, until enter or esc).
    pub typing_filter: bool,
}

/// The compare chart's colours, in marking order.
const MARK_COLORS: [ratatui::style::Color; 6] = {
    use ratatui::style::Color::*;
    [LightCyan, LightMagenta, LightGreen, LightYellow, LightRed, LightBlue]
};

/// Why `kdtui watch` has no pause key: in its hint line, and in full on `p`.
pub const NO_PAUSE_HINT: &str = "no pause here: the runs train in other processes";
pub const NO_PAUSE_WHY: &str = "no pause in kdtui watch: the runs train in other processes (Slurm: scontrol suspend <job>)";

impl App {
    pub fn new(results: Results) -> Self {
        Self {
            plan: results.plan.clone(),
            device: results.device.clone(),
            data: results.data.clone(),
            state: PlanState::Starting,
            runs: Vec::new(),
            sort: Column::Run,
            descending: false,
            selected: None,
            log: VecDeque::new(),
            elapsed: Duration::ZERO,
            show_help: false,
            confirm_quit: false,
            should_quit: false,
            chart: ChartFocus::Accuracy,
            current: None,
            results,
            watching: None,
            clock: 0.0,
            marked: Vec::new(),
            detail: false,
            filter: String::new(),
            typing_filter: false,
        }
    }

    /// The session of `kdtui watch <dir>`: the same screen, fed by the
    /// directory's files, writing nothing.
    pub fn watching(dir: std::path::PathBuf) -> Self {
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

    pub fn selected_row(&self) -> Option<&RunRow> {
        self.selected.as_deref().and_then(|id| self.row(id))
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

    /// Applies one trainer event. Returns whether the results files should be
    /// rewritten (a run ended).
    pub fn on_event(&mut self, event: TrainEvent) -> bool {
        let ended = self.apply(event);
        self.settle_watch_state();
        ended
    }

    fn apply(&mut self, event: TrainEvent) -> bool {
        match event {
            TrainEvent::PlanStarted { plan, runs, device, data, test_images } => {
                // What the sweep panel's verdicts need; `kdtui watch` starts
                // from empty results and learns them only here.
                self.results.planned.clone_from(&runs);
                self.results.test_images = test_images;
                self.plan = plan;
                self.device = device;
                self.data = data;
                self.runs = runs.into_iter().map(RunRow::new).collect();
                self.selected = self.runs.first().map(|r| r.spec.run_id.clone());
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
                let follow = self.selected == self.current || self.selected.is_none();
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
                if follow {
                    self.selected = Some(run_id.clone());
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

    /// Applies a key action; returns a message for the trainer, if any.
    pub fn on_action(&mut self, action: Action) -> Option<Control> {
        if self.confirm_quit {
            match action {
                Action::Confirm | Action::Quit | Action::ForceQuit => {
                    self.confirm_quit = false;
                    return self.quit();
                }
                Action::Cancel => self.confirm_quit = false,
                _ => {}
            }
            return None;
        }
        match action {
            Action::TogglePause if self.watching.is_some() => self.log(NO_PAUSE_WHY),
            Action::TogglePause => match self.state {
                PlanState::Running => {
                    self.state = PlanState::Paused;
                    return Some(Control::Pause);
                }
                PlanState::Paused => {
                    self.state = PlanState::Running;
                    return Some(Control::Resume);
                }
                _ => {}
            },
            Action::NextSort => {
                let i = Column::ALL.iter().position(|&c| c == self.sort).unwrap_or(0);
                self.sort = Column::ALL[(i + 1) % Column::ALL.len()];
            }
            Action::ReverseSort => self.descending = !self.descending,
            Action::Up | Action::Down => self.move_selection(action == Action::Down),
            Action::SwitchChart => {
                self.chart = match self.chart {
                    ChartFocus::Accuracy => ChartFocus::Agreement,
                    ChartFocus::Agreement => ChartFocus::Loss,
                    ChartFocus::Loss => ChartFocus::Accuracy,
                }
            }
            Action::ToggleHelp => self.show_help = !self.show_help,
            Action::Cancel => {
                // One thing at a time, the one on top first.
                if self.show_help {
                    self.show_help = false;
                } else if self.typing_filter || !self.filter.is_empty() {
                    self.typing_filter = false;
                    self.filter.clear();
                } else {
                    self.detail = false;
                }
            }
            Action::ToggleMark => {
                if let Some(id) = self.selected.clone() {
                    match self.marked.iter().position(|m| *m == id) {
                        Some(i) => {
                            self.marked.remove(i);
                        }
                        None => self.marked.push(id),
                    }
                }
            }
            Action::ToggleDetail => self.detail = !self.detail,
            Action::StartFilter => self.typing_filter = true,
            Action::FilterChar(c) => {
                self.filter.push(c);
                self.keep_selection_in_filter();
            }
            Action::FilterBack => {
                self.filter.pop();
                self.keep_selection_in_filter();
            }
            Action::FilterDone => self.typing_filter = false,
            Action::Quit => {
                // Nothing to stop in `kdtui watch`: it quits at once.
                if self.watching.is_none() && matches!(self.state, PlanState::Running | PlanState::Paused | PlanState::Starting) {
                    self.confirm_quit = true;
                } else {
                    return self.quit();
                }
            }
            Action::ForceQuit => return self.quit(),
            Action::Confirm => {}
        }
        None
    }

    fn quit(&mut self) -> Option<Control> {
        self.should_quit = true;
        if self.state.active() && self.state != PlanState::Stopping {
            self.state = PlanState::Stopping;
            self.log("stopping: the current run ends at its next step");
            return Some(Control::Stop);
        }
        None
    }

    /// Row indices in display order.
    /// The colour of a marked run in the compare chart (and its id in the table).
    pub fn mark_color(&self, run_id: &str) -> Option<ratatui::style::Color> {
        let i = self.marked.iter().position(|m| m == run_id)?;
        Some(MARK_COLORS[i % MARK_COLORS.len()])
    }

    /// The selected run, or the first that the filter shows when it hides
    /// the selected one.
    fn keep_selection_in_filter(&mut self) {
        let order = self.sorted();
        let shown = self.selected.as_deref().is_some_and(|id| order.iter().any(|&i| self.runs[i].spec.run_id == id));
        if !shown {
            if let Some(&first) = order.first() {
                self.selected = Some(self.runs[first].spec.run_id.clone());
            }
        }
    }

    /// The rows the table shows (those the filter lets through), in its order.
    pub fn sorted(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.runs.len()).filter(|&i| self.runs[i].spec.run_id.starts_with(&self.filter)).collect();
        let key = |r: &RunRow| -> SortKey {
            match self.sort {
                Column::Run => SortKey::None,
                Column::Status => SortKey::Text(status_word(&r.status).to_string()),
                Column::Loss => SortKey::Text(r.spec.loss.name().to_string()),
                Column::Temperature => SortKey::Num(r.spec.temperature),
                Column::Seed => SortKey::Num(Some(r.spec.seed as f64)),
                Column::TestAccuracy => SortKey::Num(r.test_accuracy()),
                Column::TrainLoss => SortKey::Num(r.train_loss()),
                Column::Size => SortKey::Num(r.result.as_ref().map(|r| r.model_bytes as f64)),
                Column::Time => SortKey::Num(r.wall_seconds()),
                Column::Original => SortKey::Num(r.original()),
                Column::Agreement => SortKey::Num(r.diagnostics().and_then(|d| d.agreement)),
                Column::Ece => SortKey::Num(r.diagnostics().map(|d| d.ece)),
            }
        };
        // Stable sort on plan order; rows without a value sort last either way.
        idx.sort_by(|&a, &b| {
            let (ka, kb) = (key(&self.runs[a]), key(&self.runs[b]));
            let ord = ka.cmp_present(&kb, self.descending);
            ord.then(a.cmp(&b))
        });
        if self.sort == Column::Run && self.descending {
            idx.reverse();
        }
        idx
    }

    fn move_selection(&mut self, down: bool) {
        let order = self.sorted();
        if order.is_empty() {
            return;
        }
        let pos = self.selected.as_deref().and_then(|id| order.iter().position(|&i| self.runs[i].spec.run_id == id)).unwrap_or(0);
        let next = if down { (pos + 1).min(order.len() - 1) } else { pos.saturating_sub(1) };
        self.selected = Some(self.runs[order[next]].spec.run_id.clone());
    }

    /// Mean ± std of the final test accuracy over seeds for a finished row's
    /// cell, when the cell has more than one finished seed.
    pub fn seed_spread(&self, groups: &[Group], row: &RunRow) -> Option<(f64, f64, usize)> {
        let g = group_of(groups, row.result.as_ref()?)?;
        (g.seeds > 1).then_some((g.mean_final, g.std_final, g.seeds))
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

enum SortKey {
    None,
    Text(String),
    Num(Option<f64>),
}

impl SortKey {
    fn cmp_present(&self, other: &SortKey, descending: bool) -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        let flip = |o: std::cmp::Ordering| if descending { o.reverse() } else { o };
        match (self, other) {
            (SortKey::Text(a), SortKey::Text(b)) => flip(a.cmp(b)),
            (SortKey::Num(Some(a)), SortKey::Num(Some(b))) => flip(a.total_cmp(b)),
            (SortKey::Num(Some(_)), SortKey::Num(None)) => Less,
            (SortKey::Num(None), SortKey::Num(Some(_))) => Greater,
            _ => Equal,
        }
    }
}
