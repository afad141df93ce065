//! The table's own state: its order, its filter, the selected run and the
//! runs marked for the compare chart. Pure functions of the study's rows, so
//! the monitor's sorting and selection are tested without a screen.

use ratatui::style::Color;

use crate::outputs::state::{status_word, RunRow};

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

/// The compare chart's colours, in marking order.
const MARK_COLORS: [ratatui::style::Color; 6] = {
    use ratatui::style::Color::*;
    [LightCyan, LightMagenta, LightGreen, LightYellow, LightRed, LightBlue]
};

#[derive(Debug, Clone)]
pub struct TableView {
    pub sort: Column,
    pub descending: bool,
    /// The selected run's id: selection follows the run when the order changes.
    pub selected: Option<String>,
    /// Runs marked for the compare chart, in the order they were marked.
    pub marked: Vec<String>,
    /// The table shows only runs whose id starts with this.
    pub filter: String,
    /// Keys go to `filter` (after `/`, until enter or esc).
    pub typing_filter: bool,
}

impl Default for TableView {
    fn default() -> Self {
        Self { sort: Column::Run, descending: false, selected: None, marked: vec![], filter: String::new(), typing_filter: false }
    }
}

impl TableView {
    pub fn next_sort(&mut self) {
        let i = Column::ALL.iter().position(|&c| c == self.sort).unwrap_or(0);
        self.sort = Column::ALL[(i + 1) % Column::ALL.len()];
    }

    /// Marks the selected run, or unmarks it.
    pub fn toggle_mark(&mut self) {
        if let Some(id) = self.selected.clone() {
            match self.marked.iter().position(|m| *m == id) {
                Some(i) => {
                    self.marked.remove(i);
                }
                None => self.marked.push(id),
            }
        }
    }

    /// The colour of a marked run in the compare chart (and its id in the table).
    pub fn mark_color(&self, run_id: &str) -> Option<Color> {
        let i = self.marked.iter().position(|m| m == run_id)?;
        Some(MARK_COLORS[i % MARK_COLORS.len()])
    }

    /// The selected run, or the first that the filter shows when it hides
    /// the selected one.
    pub fn keep_selection_in_filter(&mut self, rows: &[RunRow]) {
        let order = self.sorted(rows);
        let shown = self.selected.as_deref().is_some_and(|id| order.iter().any(|&i| rows[i].spec.run_id == id));
        if !shown {
            if let Some(&first) = order.first() {
                self.selected = Some(rows[first].spec.run_id.clone());
            }
        }
    }

    /// The rows the table shows (those the filter lets through), in its order.
    pub fn sorted(&self, rows: &[RunRow]) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].spec.run_id.starts_with(&self.filter)).collect();
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
            let (ka, kb) = (key(&rows[a]), key(&rows[b]));
            let ord = ka.cmp_present(&kb, self.descending);
            ord.then(a.cmp(&b))
        });
        if self.sort == Column::Run && self.descending {
            idx.reverse();
        }
        idx
    }

    pub fn move_selection(&mut self, rows: &[RunRow], down: bool) {
        let order = self.sorted(rows);
        if order.is_empty() {
            return;
        }
        let pos = self.selected.as_deref().and_then(|id| order.iter().position(|&i| rows[i].spec.run_id == id)).unwrap_or(0);
        let next = if down { (pos + 1).min(order.len() - 1) } else { pos.saturating_sub(1) };
        self.selected = Some(rows[order[next]].spec.run_id.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::fixtures::finished;
    use crate::outputs::{Results, StudyState};
    use crate::protocol::TrainEvent;
    use crate::study::{plan, Config};

    /// A one-seed default plan with two runs finished: soft-T5 at 90%, the
    /// baseline at 95%.
    fn rows() -> Vec<RunRow> {
        let mut config = Config::default();
        config.plan.seeds = vec![1];
        let runs = plan::full_plan(&config);
        let mut study = StudyState::new(Results::default());
        let events = [
            TrainEvent::PlanStarted { plan: "p".into(), runs: runs.clone(), device: "cpu".into(), data: "d".into(), test_images: 10 },
            TrainEvent::RunFinished { result: finished(&runs[2], 0.90) },
            TrainEvent::RunFinished { result: finished(&runs[1], 0.95) },
        ];
        for event in &events {
            study.apply(event);
        }
        study.runs
    }

    fn ids(rows: &[RunRow], order: &[usize]) -> Vec<String> {
        order.iter().map(|&i| rows[i].spec.run_id.clone()).collect()
    }

    #[test]
    fn sorting_by_accuracy_puts_rows_without_one_last_either_way() {
        let rows = rows();
        let mut view = TableView { sort: Column::TestAccuracy, ..TableView::default() };
        assert_eq!(ids(&rows, &view.sorted(&rows))[..3], ["soft-T5-s1", "baseline-s1", "teacher"]);
        view.descending = true;
        assert_eq!(ids(&rows, &view.sorted(&rows))[..3], ["baseline-s1", "soft-T5-s1", "teacher"]);
        view.sort = Column::Run;
        assert_eq!(ids(&rows, &view.sorted(&rows))[0], "gt_soft-T100-s1", "plan order, reversed");
    }

    #[test]
    fn the_filter_keeps_the_selection_among_the_rows_it_shows() {
        let rows = rows();
        let mut view = TableView { selected: Some("teacher".into()), filter: "hard_soft".into(), ..TableView::default() };
        view.keep_selection_in_filter(&rows);
        assert_eq!(view.selected.as_deref(), Some("hard_soft-T5-s1"));
        assert_eq!(view.sorted(&rows).len(), 5);
        for _ in 0..10 {
            view.move_selection(&rows, true);
        }
        assert_eq!(view.selected.as_deref(), Some("hard_soft-T100-s1"), "down stops at the last row shown");
        view.move_selection(&rows, false);
        assert_eq!(view.selected.as_deref(), Some("hard_soft-T50-s1"));
    }

    #[test]
    fn marks_toggle_and_keep_their_colours_in_marking_order() {
        let mut view = TableView { selected: Some("a".into()), ..TableView::default() };
        view.toggle_mark();
        view.selected = Some("b".into());
        view.toggle_mark();
        assert_eq!(view.mark_color("a"), Some(MARK_COLORS[0]));
        assert_eq!(view.mark_color("b"), Some(MARK_COLORS[1]));
        view.selected = Some("a".into());
        view.toggle_mark();
        assert_eq!(view.mark_color("a"), None);
        assert_eq!(view.mark_color("b"), Some(MARK_COLORS[0]), "b is now the first marked");
    }
}
