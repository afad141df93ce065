//! `report.md` and its figures: the study's two tables with this plan's
//! numbers beside the original ones, the curves of every run and the sweep.
//! It states the spread it can measure and draws no conclusion the numbers do
//! not carry. `kdtui report` rebuilds both from `results.json`.

use std::fmt::Write;
use std::path::Path;

use crate::atomic_file::{self, WriteError};
use crate::distill::Loss;
use crate::figures::{self, FigureError};
use crate::results::{Group, Results};
use crate::study;
use crate::train::plan::format_temperature;
use crate::train::RunKind;

/// Figures, inside the results directory.
pub const FIGURES_DIR: &str = "figures";
const SWEEP_FIGURE: &str = "sweep.png";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Figure(#[from] FigureError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Writes the figures, then `report.md` (which embeds them), into `dir`.
/// Returns the number of figures written.
pub fn write(results: &Results, dir: &Path) -> Result<usize, ReportError> {
    let figures_dir = dir.join(FIGURES_DIR);
    let mut count = 0;
    for run in results.runs.iter().filter(|r| !r.history.is_empty()) {
        figures::run_figure(run, &figures_dir.join(format!("{}.png", run.run_id)))?;
        count += 1;
    }
    let sweep = figures::sweep_figure(results, &figures_dir.join(SWEEP_FIGURE))?;
    count += usize::from(sweep);
    atomic_file::write(&dir.join("report.md"), markdown(results).as_bytes())?;
    Ok(count)
}

/// Two-sided 97.5% quantile of Student's t with `df` degrees of freedom.
fn t_quantile(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110,
        2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
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

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn cell(g: Option<&Group>) -> String {
    match g {
        None => "–".into(),
        Some(g) if g.seeds > 1 => {
            let (lo, hi) = interval_95(g).expect("several seeds");
            format!("{} ± {:.2} (n={}, 95% CI {lo:.2}–{hi:.2})", pct(g.mean_final), 100.0 * g.std_final, g.seeds)
        }
        Some(g) => pct(g.mean_final),
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// One standard error of an accuracy p measured on n images, in points.
pub fn standard_error_points(p: f64, n: usize) -> f64 {
    100.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt()
}

pub fn markdown(results: &Results) -> String {
    let groups = results.groups();
    let find = |kind: RunKind, loss: Loss, t: Option<f64>| groups.iter().find(|g| g.kind == kind && g.loss == loss && g.temperature == t);
    let teacher = find(RunKind::Teacher, Loss::Hard, None);
    let baseline = find(RunKind::Baseline, Loss::Hard, None);
    let distilled: Vec<&Group> = groups.iter().filter(|g| g.kind == RunKind::Distill).collect();

    let mut s = String::new();
    let _ = writeln!(s, "# kdtui report: {}\n", results.plan);
    let status = if results.finished {
        "finished".to_string()
    } else if results.stopped {
        "stopped before the end".to_string()
    } else if results.planned.is_empty() {
        "in progress".to_string()
    } else {
        let ended = results.planned.iter().filter(|p| results.runs.iter().any(|r| r.run_id == p.run_id)).count();
        format!("not finished: {ended} of the study's {} runs have a result", results.planned.len())
    };
    let _ = writeln!(s, "- plan: {status}; {} runs recorded, {} failed", results.runs.len(), results.failures.len());
    let _ = writeln!(s, "- data: {} images", results.data);
    let _ = writeln!(s, "- device and backend: {}", results.device);
    let total: f64 = results.runs.iter().map(|r| r.wall_seconds).filter(|t| t.is_finite()).sum();
    let _ = writeln!(s, "- training time: {:.1} s over all runs (per run in \"Runs\" below)", total);
    let p = teacher.map_or(0.9, |g| g.mean_final);
    let _ = writeln!(
        s,
        "- accuracies are measured on the whole test set ({} images): one standard error is about {:.2} points at {}; \
         the original read its numbers off one batch of {} images (about {:.2} points)\n",
        results.test_images,
        standard_error_points(p, results.test_images),
        pct(p),
        study::TEST_IMAGES,
        standard_error_points(0.9, study::TEST_IMAGES),
    );

    let _ = writeln!(s, "## Teacher and students\n");
    let _ = writeln!(s, "| run | original accuracy | ours | original size | ours |");
    let _ = writeln!(s, "| --- | --- | --- | --- | --- |");
    let _ = writeln!(
        s,
        "| teacher (float) | {} | {} | {:.2} MB | {} |",
        pct(study::TEACHER_ACCURACY),
        cell(teacher),
        study::TEACHER_MB,
        teacher.map_or("–".into(), |g| mb(g.model_bytes))
    );
    let _ = writeln!(
        s,
        "| quantized student, no teacher | {} | {} | {:.2} MB | {} |",
        pct(study::BASELINE_ACCURACY),
        cell(baseline),
        study::STUDENT_MB,
        baseline.map_or("–".into(), |g| mb(g.model_bytes))
    );
    if !distilled.is_empty() {
        let means: Vec<f64> = distilled.iter().map(|g| g.mean_final).collect();
        let (lo, hi) = means.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &m| (lo.min(m), hi.max(m)));
        let avg = means.iter().sum::<f64>() / means.len() as f64;
        let _ = writeln!(
            s,
            "| quantized student, with teacher | {} | mean of {} distilled cells {} (range {} – {}) | {:.2} MB | {} |",
            pct(study::WITH_TEACHER_ACCURACY),
            means.len(),
            pct(avg),
            pct(lo),
            pct(hi),
            study::STUDENT_MB,
            mb(distilled[0].model_bytes)
        );
    }

    let losses = [Loss::Soft, Loss::HardSoft, Loss::GtSoft];
    let mut temperatures: Vec<f64> = distilled.iter().filter_map(|g| g.temperature).collect();
    temperatures.extend(study::TEMPERATURES);
    temperatures.sort_by(f64::total_cmp);
    temperatures.dedup();
    let _ = writeln!(s, "\n## Distillation: test accuracy by loss and temperature\n");
    let _ = writeln!(s, "Each cell: original / ours.\n");
    let _ = writeln!(s, "| T | soft | hard_soft | gt_soft |");
    let _ = writeln!(s, "| --- | --- | --- | --- |");
    for &t in &temperatures {
        let cells: Vec<String> = losses
            .iter()
            .map(|&l| {
                let orig = study::original_accuracy(l, t).map_or("–".into(), pct);
                format!("{orig} / {}", cell(find(RunKind::Distill, l, Some(t))))
            })
            .collect();
        let _ = writeln!(s, "| {} | {} |", format_temperature(t), cells.join(" | "));
    }

    if !distilled.is_empty() {
        let _ = writeln!(
            s,
            "\n![Test accuracy against T]({FIGURES_DIR}/{SWEEP_FIGURE})\n\nTest accuracy against T, a line per loss (ours; bars: one \
             standard deviation over seeds where there are several). Grey: our teacher (solid) and our student without a teacher \
             (dashed). Triangles: the original study's numbers, each read off one 256-image batch."
        );
    }

    let _ = writeln!(s, "\n## How far the numbers can be read\n");
    let multi_seed = groups.iter().any(|g| g.seeds > 1);
    if multi_seed {
        let _ = writeln!(
            s,
            "Cells with several seeds show mean ± sample standard deviation and the 95% confidence interval of the mean \
             (Student's t). A difference between two cells counts as resolved when Welch's t-test over the seeds puts it \
             outside its 95% interval around zero."
        );
    } else {
        let _ = writeln!(
            s,
            "Every cell is a single run (one seed), so the spread over seeds is unknown: no difference between cells is \
             resolved, however large it looks. Set `[plan] seeds = [1, 2, 3]` to measure it."
        );
    }
    comparisons(&mut s, baseline, &distilled);

    if !results.failures.is_empty() {
        let _ = writeln!(s, "\n## Failed runs\n");
        for f in &results.failures {
            let _ = writeln!(s, "- `{}`: {}", f.run_id, f.error);
        }
    }

    let _ = writeln!(s, "\n## Runs\n");
    let _ = writeln!(s, "| run | status | epochs | final test acc | best test acc | train loss | size | wall time |");
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &results.runs {
        let _ = writeln!(
            s,
            "| {} | {:?}{} | {} | {} | {} | {:.4} | {} | {:.1} s |",
            r.run_id,
            r.status,
            if r.reused { " (reused)" } else { "" },
            r.epochs,
            pct(r.final_test_accuracy),
            pct(r.best_test_accuracy),
            r.final_train_loss,
            mb(r.model_bytes),
            r.wall_seconds
        );
    }
    let _ = writeln!(s, "\n## Curves\n");
    let _ = writeln!(s, "Train and test accuracy and loss per epoch (test: the whole test set; train: the run's own objective, averaged over the epoch).\n");
    for r in results.runs.iter().filter(|r| !r.history.is_empty()) {
        let _ = writeln!(s, "![{0}]({FIGURES_DIR}/{0}.png)\n", r.run_id);
    }
    let _ = writeln!(s, "\n## Config\n\n```toml\n{}```", results.config);
    s
}

/// The comparisons the original study drew conclusions from, each with
/// whether this study resolves it.
fn comparisons(s: &mut String, baseline: Option<&Group>, distilled: &[&Group]) {
    if distilled.is_empty() {
        return;
    }
    let label = |g: &Group| format!("{} T={}", g.loss.name(), g.temperature.map(format_temperature).unwrap_or_default());
    let verdict = |a: &Group, b: &Group| match resolved(a, b) {
        Some(true) => "resolved".to_string(),
        Some(false) => "**not resolved**: within the spread over seeds".to_string(),
        None => "**not resolved**: one seed, spread unknown".to_string(),
    };
    let _ = writeln!(s, "\nDifferences (first minus second):\n");
    let mut line = |what: String, a: &Group, b: &Group| {
        let _ = writeln!(s, "- {what}: {:+.2} points; {}", 100.0 * (a.mean_final - b.mean_final), verdict(a, b));
    };
    let mut ranked: Vec<&Group> = distilled.to_vec();
    ranked.sort_by(|a, b| b.mean_final.total_cmp(&a.mean_final));
    if let [best, second, ..] = ranked[..] {
        line(format!("best cell ({}) vs the next ({})", label(best), label(second)), best, second);
    }
    if let Some(b) = baseline {
        line(format!("best cell ({}) vs the student without a teacher", label(ranked[0])), ranked[0], b);
    }
    for hs in distilled.iter().filter(|g| g.loss == Loss::HardSoft) {
        if let Some(gs) = distilled.iter().find(|g| g.loss == Loss::GtSoft && g.temperature == hs.temperature) {
            line(format!("hard_soft vs gt_soft at T={}", hs.temperature.map(format_temperature).unwrap_or_default()), hs, gs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
