//! What the numbers of a study can say: cells (kind, loss, T) averaged over
//! their seeds, the interval of a cell's mean, the family of comparisons the
//! study plans before it has any data (each cell against the student without
//! a teacher, and `hard_soft` against `gt_soft` at each T) tested with
//! Welch's t and corrected for their number by Holm's method, and the sweep
//! (accuracy against T) that the monitor's chart and the report's figure draw.
//!
//! A cell's variance over its seeds is never taken below the sampling
//! variance of one accuracy on the test set, p(1 - p) / n: on n test images
//! accuracies move in steps of 1/n, so a few seeds can agree exactly, and a
//! spread of zero would otherwise resolve any difference at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::protocol::{Diagnostics, RunResult, RunStatus};
use crate::study::{format_temperature, Loss, RunKind, RunSpec};

/// The error rate of the whole family of comparisons (and 1 - the level of
/// a cell's interval).
pub const ALPHA: f64 = 0.05;

/// One (kind, loss, temperature) cell over its seeds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Group {
    pub kind: RunKind,
    pub loss: Loss,
    pub temperature: Option<f64>,
    pub seeds: usize,
    pub mean_final: f64,
    /// Sample standard deviation (n - 1); 0 for a single seed.
    pub std_final: f64,
    pub model_bytes: u64,
    /// Means over the seeds of the final epoch's diagnostics (none where no
    /// run has them: the teacher's agreement, results of earlier versions).
    pub fidelity: Fidelity,
}

impl Group {
    /// The variance of one run's accuracy in this cell: the sample variance
    /// over its seeds, but never below p(1 - p) / n, the sampling variance of
    /// an accuracy p measured on `test_images` images. p is held half an
    /// image away from 0 and 1: a cell whose seeds all get every image right
    /// has not shown that its accuracy cannot vary.
    pub fn run_variance(&self, test_images: usize) -> f64 {
        let n = test_images.max(1) as f64;
        let p = self.mean_final.clamp(0.5 / n, 1.0 - 0.5 / n);
        self.std_final.powi(2).max(p * (1.0 - p) / n)
    }
}

/// A cell's mean final-epoch diagnostics (`protocol::Diagnostics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    pub agreement: Option<f64>,
    pub agreement_on_teacher_errors: Option<f64>,
    pub kl_t1: Option<f64>,
    pub kl_t: Option<f64>,
    pub ece: Option<f64>,
}

impl Fidelity {
    fn of(runs: &[&RunResult]) -> Self {
        let mean = |f: fn(&Diagnostics) -> Option<f64>| {
            let values: Vec<f64> = runs.iter().filter_map(|r| r.diagnostics().and_then(f)).collect();
            (!values.is_empty()).then(|| mean_std(&values).0)
        };
        Fidelity {
            agreement: mean(|d| d.agreement),
            agreement_on_teacher_errors: mean(|d| d.agreement_on_teacher_errors),
            kl_t1: mean(|d| d.kl_t1),
            kl_t: mean(|d| d.kl_t),
            ece: mean(|d| Some(d.ece)),
        }
    }
}

type GroupKey = (RunKind, Loss, Option<u64>);

fn key(r: &RunResult) -> GroupKey {
    (r.kind, r.loss, r.temperature.map(f64::to_bits))
}

/// The cells of `runs`. Completed runs only: interrupted and diverged runs
/// are listed but not averaged.
pub fn groups<'a>(runs: impl IntoIterator<Item = &'a RunResult>) -> Vec<Group> {
    let mut by_key: BTreeMap<GroupKey, Vec<&RunResult>> = BTreeMap::new();
    for r in runs.into_iter().filter(|r| r.status == RunStatus::Done) {
        by_key.entry(key(r)).or_default().push(r);
    }
    by_key
        .into_values()
        .map(|runs| {
            let finals: Vec<f64> = runs.iter().map(|r| r.final_test_accuracy).collect();
            let (mean_final, std_final) = mean_std(&finals);
            Group {
                kind: runs[0].kind,
                loss: runs[0].loss,
                temperature: runs[0].temperature,
                seeds: runs.len(),
                mean_final,
                std_final,
                model_bytes: runs[0].model_bytes,
                fidelity: Fidelity::of(&runs),
            }
        })
        .collect()
}

/// The cell `r` belongs to, among `groups`.
pub fn group_of<'a>(groups: &'a [Group], r: &RunResult) -> Option<&'a Group> {
    groups.iter().find(|g| (g.kind, g.loss, g.temperature.map(f64::to_bits)) == key(r))
}

/// The median of `values`; none of none.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// Mean and sample standard deviation (n - 1); NaN for no values, 0 std for one.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

fn students_t(df: f64) -> StudentsT {
    StudentsT::new(0.0, 1.0, df).expect("degrees of freedom are positive and finite")
}

/// The `p` quantile of Student's t with `df` (> 0, not necessarily whole)
/// degrees of freedom.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    students_t(df).inverse_cdf(p)
}

/// The two-sided p-value of `t` under Student's t with `df` degrees of freedom.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    (2.0 * students_t(df).sf(t.abs())).min(1.0)
}

/// The 95% confidence interval of a cell's mean over its seeds, in points
/// (the cell's variance floored as `Group::run_variance` says).
pub fn interval_95(g: &Group, test_images: usize) -> Option<(f64, f64)> {
    let half =
        t_quantile(1.0 - ALPHA / 2.0, g.seeds.saturating_sub(1).max(1) as f64) * (g.run_variance(test_images) / g.seeds as f64).sqrt();
    (g.seeds > 1 && g.mean_final.is_finite() && half.is_finite()).then_some((100.0 * (g.mean_final - half), 100.0 * (g.mean_final + half)))
}

/// Welch's t-test of the difference of two cells' means (a minus b), with
/// each cell's variance floored (`Group::run_variance`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// Mean of a minus mean of b (accuracy, 0..1).
    pub difference: f64,
    pub standard_error: f64,
    /// Welch-Satterthwaite degrees of freedom (not rounded).
    pub df: f64,
}

impl Welch {
    /// None when either cell has a single seed (its spread over seeds is
    /// unknown), or when the numbers allow no test: an accuracy that is not a
    /// number (results.json may hold `null`) or no test images.
    pub fn of(a: &Group, b: &Group, test_images: usize) -> Option<Welch> {
        if a.seeds < 2 || b.seeds < 2 {
            return None;
        }
        let va = a.run_variance(test_images) / a.seeds as f64;
        let vb = b.run_variance(test_images) / b.seeds as f64;
        let df = (va + vb).powi(2) / (va.powi(2) / (a.seeds - 1) as f64 + vb.powi(2) / (b.seeds - 1) as f64);
        let welch = Welch { difference: a.mean_final - b.mean_final, standard_error: (va + vb).sqrt(), df };
        let finite = welch.difference.is_finite() && welch.standard_error.is_finite() && df.is_finite();
        (finite && welch.standard_error > 0.0 && df > 0.0).then_some(welch)
    }

    pub fn p_value(&self) -> f64 {
        t_two_sided_p(self.difference / self.standard_error, self.df)
    }

    /// Half the width of the two-sided interval at `confidence` (0..1), in accuracy.
    pub fn half_width(&self, confidence: f64) -> f64 {
        t_quantile(1.0 - (1.0 - confidence) / 2.0, self.df) * self.standard_error
    }
}

/// Holm's step-down adjusted p-values for a family of `family_size`
/// hypotheses of which `p_values` were tested (the untested ones count as
/// never rejected, so planning a comparison and not making it never makes
/// the others easier to resolve). Reject where the adjusted p is below alpha.
pub fn holm_adjusted(p_values: &[f64], family_size: usize) -> Vec<f64> {
    assert!(family_size >= p_values.len(), "a family holds every test made");
    let mut order: Vec<usize> = (0..p_values.len()).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![1.0; p_values.len()];
    let mut running: f64 = 0.0;
    for (step, &i) in order.iter().enumerate() {
        running = running.max(((family_size - step) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// A comparison the study plans from its config alone, before any run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Question {
    /// A distilled cell against the student without a teacher.
    AgainstBaseline { loss: Loss, temperature: f64 },
    /// `hard_soft` against `gt_soft` at one T: the teacher's targets against
    /// the label softened by the same T, the original's control.
    TeacherAgainstLabels { temperature: f64 },
}

impl Question {
    /// The two cells compared (first minus second).
    fn cells(self) -> [(RunKind, Loss, Option<f64>); 2] {
        match self {
            Question::AgainstBaseline { loss, temperature } => {
                [(RunKind::Distill, loss, Some(temperature)), (RunKind::Baseline, Loss::Hard, None)]
            }
            Question::TeacherAgainstLabels { temperature } => {
                [(RunKind::Distill, Loss::HardSoft, Some(temperature)), (RunKind::Distill, Loss::GtSoft, Some(temperature))]
            }
        }
    }

    pub fn describe(self) -> String {
        match self {
            Question::AgainstBaseline { loss, temperature } => {
                format!("{} T={} − no teacher", loss.name(), format_temperature(temperature))
            }
            Question::TeacherAgainstLabels { temperature } => format!("hard_soft − gt_soft at T={}", format_temperature(temperature)),
        }
    }
}

/// The family of comparisons a plan makes, fixed by its runs before any
/// data: every distilled cell against the baseline (when the plan has one),
/// then `hard_soft` against `gt_soft` at every T the plan runs both at.
pub fn planned_questions(planned: &[RunSpec]) -> Vec<Question> {
    let mut cells: Vec<(Loss, f64)> = Vec::new();
    for r in planned.iter().filter(|r| r.kind == RunKind::Distill) {
        if let Some(t) = r.temperature {
            if !cells.contains(&(r.loss, t)) {
                cells.push((r.loss, t));
            }
        }
    }
    let mut questions = Vec::new();
    if planned.iter().any(|r| r.kind == RunKind::Baseline) {
        questions.extend(cells.iter().map(|&(loss, temperature)| Question::AgainstBaseline { loss, temperature }));
    }
    for &(loss, temperature) in &cells {
        if loss == Loss::HardSoft && cells.contains(&(Loss::GtSoft, temperature)) {
            questions.push(Question::TeacherAgainstLabels { temperature });
        }
    }
    questions
}

/// One planned comparison and what the data say of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub question: Question,
    /// None when it could not be made: a cell has no finished run, or one seed.
    pub test: Option<Welch>,
    /// Holm-adjusted over the family; None when not made.
    pub adjusted_p: Option<f64>,
    /// The difference and its simultaneous interval (1 - ALPHA / m, m the
    /// family's size), in points.
    pub interval: Option<(f64, f64)>,
}

impl Comparison {
    /// Resolved at the family's error rate: Holm-adjusted p below ALPHA.
    pub fn resolved(&self) -> bool {
        self.adjusted_p.is_some_and(|p| p < ALPHA)
    }

    /// The difference, first minus second, in points.
    pub fn difference_points(&self) -> Option<f64> {
        self.test.map(|w| 100.0 * w.difference)
    }
}

/// The planned comparisons of a study, tested and corrected together.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub comparisons: Vec<Comparison>,
}

impl Family {
    /// Tests `questions` on `groups`, Holm-corrected over all of them (made or not).
    pub fn test(questions: &[Question], groups: &[Group], test_images: usize) -> Self {
        let find =
            |(kind, loss, t): (RunKind, Loss, Option<f64>)| groups.iter().find(|g| g.kind == kind && g.loss == loss && g.temperature == t);
        let tests: Vec<Option<Welch>> = questions
            .iter()
            .map(|q| {
                let [a, b] = q.cells();
                Welch::of(find(a)?, find(b)?, test_images)
            })
            .collect();
        let made: Vec<f64> = tests.iter().flatten().map(Welch::p_value).collect();
        let mut adjusted = holm_adjusted(&made, questions.len()).into_iter();
        let simultaneous = 1.0 - ALPHA / questions.len().max(1) as f64;
        let comparisons = questions
            .iter()
            .zip(tests)
            .map(|(&question, test)| Comparison {
                question,
                test,
                adjusted_p: test.and_then(|_| adjusted.next()),
                interval: test.map(|w| {
                    let half = w.half_width(simultaneous);
                    (100.0 * (w.difference - half), 100.0 * (w.difference + half))
                }),
            })
            .collect();
        Family { comparisons }
    }

    /// m: the comparisons planned, made or not.
    pub fn size(&self) -> usize {
        self.comparisons.len()
    }

    /// The comparisons that could be made.
    pub fn made(&self) -> usize {
        self.comparisons.iter().filter(|c| c.test.is_some()).count()
    }

    /// The smallest difference from the baseline each made comparison
    /// resolves whatever the others show (half its simultaneous interval,
    /// where Holm's first step tests): the least, the median and the largest
    /// over the cells, in points.
    pub fn resolvable_against_baseline(&self) -> Option<(f64, f64, f64)> {
        let mut halves: Vec<f64> = self
            .comparisons
            .iter()
            .filter(|c| matches!(c.question, Question::AgainstBaseline { .. }))
            .filter_map(|c| c.interval.map(|(lo, hi)| (hi - lo) / 2.0))
            .collect();
        halves.sort_by(f64::total_cmp);
        Some((*halves.first()?, halves[halves.len() / 2], *halves.last()?))
    }
}

/// The smallest difference a cell against the baseline could resolve if
/// every cell's spread over `seeds` seeds were at the test set's floor (p(1 -
/// p) / n at accuracy `p`): about the best a plan with these seeds and test
/// set can do (cells further from 50% have a slightly lower floor).
pub fn resolvable_at_best(p: f64, test_images: usize, seeds: usize, family_size: usize) -> Option<f64> {
    (seeds > 1 && family_size > 0).then(|| {
        let variance = p * (1.0 - p) / test_images.max(1) as f64;
        let standard_error = (2.0 * variance / seeds as f64).sqrt();
        let df = 2.0 * (seeds - 1) as f64;
        100.0 * t_quantile(1.0 - ALPHA / (2.0 * family_size as f64), df) * standard_error
    })
}

/// One standard error of an accuracy p measured on n images, in points.
pub fn standard_error_points(p: f64, n: usize) -> f64 {
    100.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt()
}

/// Test accuracy against T: a line per distillation loss and the two
/// reference levels, from a study's cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// Per loss with at least one finished cell: its cells in T order.
    pub lines: Vec<(Loss, Vec<SweepPoint>)>,
    /// Mean final accuracy of the teacher and of the student without a teacher.
    pub teacher: Option<f64>,
    pub baseline: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepPoint {
    pub temperature: f64,
    pub mean: f64,
    pub std: f64,
    pub seeds: usize,
}

impl Sweep {
    pub fn of(groups: &[Group]) -> Self {
        let lines = Loss::ALL
            .iter()
            .map(|&loss| {
                let mut points: Vec<SweepPoint> = groups
                    .iter()
                    .filter(|g| g.kind == RunKind::Distill && g.loss == loss)
                    .filter_map(|g| Some(SweepPoint { temperature: g.temperature?, mean: g.mean_final, std: g.std_final, seeds: g.seeds }))
                    .collect();
                points.sort_by(|a, b| a.temperature.total_cmp(&b.temperature));
                (loss, points)
            })
            .filter(|(_, points)| !points.is_empty())
            .collect();
        let reference = |kind: RunKind| groups.iter().find(|g| g.kind == kind).map(|g| g.mean_final);
        Sweep { lines, teacher: reference(RunKind::Teacher), baseline: reference(RunKind::Baseline) }
    }

    /// The points of one loss (empty when it has none).
    pub fn line(&self, loss: Loss) -> &[SweepPoint] {
        self.lines.iter().find(|(l, _)| *l == loss).map_or(&[], |(_, p)| p)
    }
}

#[cfg(test)]
mod tests;
