//! The interactive session's state: the study as the events tell it
//! (`StudyState`, shared with `--batch` and the results writer), the table's
//! view of it (`TableView`) and what is on screen. Updated only by
//! `TrainEvent`s from the trainer and `Action`s from the keyboard, read only
//! by `ui::render`.

use std::path::PathBuf;

use super::keys::Action;
use super::ui::table_view::TableView;
use crate::outputs::state::{PlanState, RunRow, StudyState};
use crate::outputs::Results;
use crate::protocol::{Control, TrainEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartFocus {
    Accuracy,
    /// Top-1 agreement with the teacher per epoch.
    Agreement,
    Loss,
}

#[derive(Debug)]
pub struct App {
    pub study: StudyState,
    pub table: TableView,
    pub show_help: bool,
    pub confirm_quit: bool,
    pub should_quit: bool,
    pub chart: ChartFocus,
    /// The detail view of the selected run replaces the charts.
    pub detail: bool,
}

/// Why `kdtui watch` has no pause key: in its hint line, and in full on `p`.
pub const NO_PAUSE_HINT: &str = "no pause here: the runs train in other processes";
pub const NO_PAUSE_WHY: &str = "no pause in kdtui watch: the runs train in other processes (Slurm: scontrol suspend <job>)";

impl App {
    pub fn new(results: Results) -> Self {
        Self::of(StudyState::new(results))
    }

    /// The session of `kdtui watch <dir>`: the same screen, fed by the
    /// directory's files, writing nothing.
    pub fn watching(dir: PathBuf) -> Self {
        Self::of(StudyState::watching(dir))
    }

    fn of(study: StudyState) -> Self {
        Self {
            study,
            table: TableView::default(),
            show_help: false,
            confirm_quit: false,
            should_quit: false,
            chart: ChartFocus::Accuracy,
            detail: false,
        }
    }

    /// Applies one event that `outputs::feed` has already folded into the
    /// study: the selection starts on the first run and follows the run
    /// under way while the user has not moved it elsewhere.
    pub fn follow(&mut self, event: &TrainEvent, current_before: Option<&str>) {
        match event {
            TrainEvent::PlanStarted { .. } => self.table.selected = self.study.runs.first().map(|r| r.spec.run_id.clone()),
            TrainEvent::RunStarted { run_id, .. } if self.table.selected.is_none() || self.table.selected.as_deref() == current_before => {
                self.table.selected = Some(run_id.clone());
            }
            _ => {}
        }
    }

    /// Folds an event into the study (no files written: what `kdtui watch`
    /// and the tests do; a training session goes through `outputs::feed`).
    pub fn on_event(&mut self, event: TrainEvent) -> bool {
        let before = self.study.current.clone();
        let changed = self.study.apply(&event);
        self.follow(&event, before.as_deref());
        changed
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
            Action::TogglePause if self.study.watching.is_some() => self.study.log(NO_PAUSE_WHY),
            Action::TogglePause => match self.study.state {
                PlanState::Running => {
                    self.study.state = PlanState::Paused;
                    return Some(Control::Pause);
                }
                PlanState::Paused => {
                    self.study.state = PlanState::Running;
                    return Some(Control::Resume);
                }
                _ => {}
            },
            Action::NextSort => self.table.next_sort(),
            Action::ReverseSort => self.table.descending = !self.table.descending,
            Action::Up | Action::Down => self.table.move_selection(&self.study.runs, action == Action::Down),
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
                } else if self.table.typing_filter || !self.table.filter.is_empty() {
                    self.table.typing_filter = false;
                    self.table.filter.clear();
                } else {
                    self.detail = false;
                }
            }
            Action::ToggleMark => self.table.toggle_mark(),
            Action::ToggleDetail => self.detail = !self.detail,
            Action::StartFilter => self.table.typing_filter = true,
            Action::FilterChar(c) => {
                self.table.filter.push(c);
                self.table.keep_selection_in_filter(&self.study.runs);
            }
            Action::FilterBack => {
                self.table.filter.pop();
                self.table.keep_selection_in_filter(&self.study.runs);
            }
            Action::FilterDone => self.table.typing_filter = false,
            Action::Quit => {
                // Nothing to stop in `kdtui watch`: it quits at once.
                if self.study.watching.is_none() && matches!(self.study.state, PlanState::Running | PlanState::Paused | PlanState::Starting)
                {
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
        if self.study.state.active() && self.study.state != PlanState::Stopping {
            self.study.state = PlanState::Stopping;
            self.study.log("stopping: the current run ends at its next step");
            return Some(Control::Stop);
        }
        None
    }

    pub fn selected_row(&self) -> Option<&RunRow> {
        self.table.selected.as_deref().and_then(|id| self.study.row(id))
    }

    /// The rows the table shows, in its order.
    pub fn sorted(&self) -> Vec<usize> {
        self.table.sorted(&self.study.runs)
    }
}
