//! What the numbers of a study can say: cells (kind, loss, T) averaged over
//! their seeds, the spread and the 95% interval of a cell, whether two cells
//! differ beyond their spread, and the sweep (accuracy against T) that the
//! monitor's chart and the report's figure both draw.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::{Diagnostics, RunResult, RunStatus};
use crate::study::{Loss, RunKind};

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
    pub mean_best: f64,
    pub model_bytes: u64,
    /// Means over the seeds of the final epoch's diagnostics (none where no
    /// run has them: the teacher's agreement, results of earlier versions).
    pub fidelity: Fidelity,
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
            let bests: Vec<f64> = runs.iter().map(|r| r.best_test_accuracy).collect();
            let (mean_final, std_final) = mean_std(&finals);
            Group {
                kind: runs[0].kind,
                loss: runs[0].loss,
                temperature: runs[0].temperature,
                seeds: runs.len(),
                mean_final,
                std_final,
                mean_best: mean_std(&bests).0,
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

/// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom.
fn t_quantile(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
        2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    T.get(df.wrapping_sub(1)).copied().unwrap_or(1.96)
}

/// The 95% confidence interval of a cell's mean over its seeds, in points.
pub fn interval_95(g: &Group) -> Option<(f64, f64)> {
    (g.seeds > 1).then(|| {
        let half = t_quantile(g.seeds - 1) * g.std_final / (g.seeds as f64).sqrt();
        (100.0 * (g.mean_final - half), 100.0 * (g.mean_final + half))
    })
}

/// Whether the difference of two cells' means stands out of their spread over
/// seeds: Welch's test at 95% (the difference beyond t * its standard error,
/// Welch-Satterthwaite degrees of freedom, rounded down). None when either
/// cell has a single seed: its spread is unknown.
pub fn resolved(a: &Group, b: &Group) -> Option<bool> {
    if a.seeds < 2 || b.seeds < 2 {
        return None;
    }
    let (va, vb) = (a.std_final.powi(2) / a.seeds as f64, b.std_final.powi(2) / b.seeds as f64);
    let diff = (a.mean_final - b.mean_final).abs();
    if va + vb == 0.0 {
        return Some(diff > 0.0);
    }
    let df = (va + vb).powi(2) / (va.powi(2) / (a.seeds - 1) as f64 + vb.powi(2) / (b.seeds - 1) as f64);
    Some(diff > t_quantile(df.floor().max(1.0) as usize) * (va + vb).sqrt())
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
        let lines = Loss::DISTILLATION
            .into_iter()
            .map(|loss| {
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
mod tests {
    use super::*;
    use crate::study::{Loss, RunKind};

    fn group(mean_final: f64, std_final: f64, seeds: usize) -> Group {
        Group {
            kind: RunKind::Distill,
            loss: Loss::Soft,
            temperature: Some(5.0),
            seeds,
            mean_final,
            std_final,
            mean_best: mean_final,
            model_bytes: 1,
            fidelity: Fidelity::default(),
        }
    }

    #[test]
    fn the_interval_uses_students_t() {
        // 4.303 * 0.01 / sqrt(3) = 0.02484
        let (lo, hi) = interval_95(&group(0.9, 0.01, 3)).unwrap();
        assert!((lo - 87.516).abs() < 1e-3 && (hi - 92.484).abs() < 1e-3, "{lo} {hi}");
        assert_eq!(interval_95(&group(0.9, 0.0, 1)), None);
    }

    #[test]
    fn a_difference_is_resolved_only_beyond_the_spread_over_seeds() {
        // 1 point apart, 2 points of spread, 3 seeds each: t = 0.61.
        assert_eq!(resolved(&group(0.90, 0.02, 3), &group(0.89, 0.02, 3)), Some(false));
        // 5 points apart, half a point of spread: t = 15.8.
        assert_eq!(resolved(&group(0.95, 0.005, 5), &group(0.90, 0.005, 5)), Some(true));
        // 3 points apart, 1 point of spread, 2 seeds each: t = 3.0, below 4.30 (Welch df 2);
        // 3 seeds and half a point of spread: t = 7.3, above 2.78 (df 4).
        assert_eq!(resolved(&group(0.93, 0.01, 2), &group(0.90, 0.01, 2)), Some(false));
        assert_eq!(resolved(&group(0.93, 0.005, 3), &group(0.90, 0.005, 3)), Some(true));
        assert_eq!(resolved(&group(0.99, 0.0, 1), &group(0.50, 0.01, 3)), None, "one seed: unknown spread");
    }

    #[test]
    fn mean_and_sample_std() {
        assert_eq!(mean_std(&[0.9]), (0.9, 0.0));
        let (m, s) = mean_std(&[0.8, 0.9, 1.0]);
        assert!((m - 0.9).abs() < 1e-12 && (s - 0.1).abs() < 1e-12);
    }
}
