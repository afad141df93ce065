//! `report.md`: the study's two tables with this plan's numbers beside the
//! original ones. It states the spread it can measure and draws no conclusion.

use std::fmt::Write;

use crate::distill::Loss;
use crate::results::{Group, Results};
use crate::study;
use crate::train::plan::format_temperature;
use crate::train::RunKind;

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn cell(g: Option<&Group>) -> String {
    match g {
        None => "–".into(),
        Some(g) if g.seeds > 1 => format!("{} ± {:.2} (n={})", pct(g.mean_final), 100.0 * g.std_final, g.seeds),
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
        "finished"
    } else if results.stopped {
        "stopped before the end"
    } else {
        "in progress"
    };
    let _ = writeln!(s, "- plan: {status}; {} runs recorded, {} failed", results.runs.len(), results.failures.len());
    let _ = writeln!(s, "- data: {}", results.data);
    let _ = writeln!(s, "- device: {}", results.device);
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

    let _ = writeln!(s, "\n## How far the numbers can be read\n");
    let multi_seed = groups.iter().any(|g| g.seeds > 1);
    if multi_seed {
        let max_std = groups.iter().map(|g| g.std_final).fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "The largest spread over seeds in one cell is {:.2} points (sample std). Differences between cells smaller than \
             about twice that are not resolved by this study.",
            100.0 * max_std
        );
    } else {
        let _ = writeln!(
            s,
            "Every cell is a single run (one seed), so the spread over seeds is unknown: differences between cells of a \
             few points are not resolved. Set `[plan] seeds = [1, 2, 3]` to measure it."
        );
    }

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
    let _ = writeln!(s, "\n## Config\n\n```toml\n{}```", results.config);
    s
}
