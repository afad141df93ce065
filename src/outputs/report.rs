//! `report.md`: the study's two tables with this plan's numbers beside the
//! original ones, the runs, and the comparisons the original drew
//! conclusions from, each with whether the spread over seeds resolves it.
//! It states the spread it can measure and draws no conclusion the numbers
//! do not carry. `publish` writes it with its figures.

use std::fmt::Write;

use super::directory::FIGURES_DIR;
use super::stats::{interval_95, resolved, standard_error_points, Group};
use super::store::Results;
use crate::study::{format_temperature, original, Loss, RunKind};
use crate::util::format::{megabytes, percent};

/// The sweep figure, inside `FIGURES_DIR`.
pub const SWEEP_FIGURE: &str = "sweep.png";
/// Agreement with the teacher against T, inside `FIGURES_DIR`.
pub const AGREEMENT_FIGURE: &str = "agreement.png";

fn cell(g: Option<&Group>) -> String {
    match g {
        None => "–".into(),
        Some(g) if g.seeds > 1 => {
            let (lo, hi) = interval_95(g).expect("several seeds");
            format!("{} ± {:.2} (n={}, 95% CI {lo:.2}–{hi:.2})", percent(g.mean_final), 100.0 * g.std_final, g.seeds)
        }
        Some(g) => percent(g.mean_final),
    }
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
    // Checkpoints carry over between devices (a teacher trained on a GPU
    // teaches a CPU session): say where each run trained when they differ.
    let mut trained_on: Vec<&str> = results.runs.iter().map(|r| r.device.as_str()).filter(|d| !d.is_empty()).collect();
    trained_on.sort();
    trained_on.dedup();
    if trained_on.len() > 1 || trained_on.first().is_some_and(|d| *d != results.device) {
        let list: Vec<String> =
            trained_on.iter().map(|d| format!("{d} ({} runs)", results.runs.iter().filter(|r| r.device == *d).count())).collect();
        let _ = writeln!(s, "- runs trained on: {}", list.join(", "));
    }
    let total: f64 = results.runs.iter().map(|r| r.wall_seconds).filter(|t| t.is_finite()).sum();
    let _ = writeln!(s, "- training time: {:.1} s over all runs (per run in \"Runs\" below)", total);
    let p = teacher.map_or(0.9, |g| g.mean_final);
    let _ = writeln!(
        s,
        "- accuracies are measured on the whole test set ({} images): one standard error is about {:.2} points at {}; \
         the original read its numbers off one batch of {} images (about {:.2} points)\n",
        results.test_images,
        standard_error_points(p, results.test_images),
        percent(p),
        original::TEST_IMAGES,
        standard_error_points(0.9, original::TEST_IMAGES),
    );

    let _ = writeln!(s, "## Teacher and students\n");
    let _ = writeln!(s, "| run | original accuracy | ours | original size | ours |");
    let _ = writeln!(s, "| --- | --- | --- | --- | --- |");
    let _ = writeln!(
        s,
        "| teacher (float) | {} | {} | {:.2} MB | {} |",
        percent(original::TEACHER_ACCURACY),
        cell(teacher),
        original::TEACHER_MB,
        teacher.map_or("–".into(), |g| megabytes(g.model_bytes))
    );
    let _ = writeln!(
        s,
        "| quantized student, no teacher | {} | {} | {:.2} MB | {} |",
        percent(original::BASELINE_ACCURACY),
        cell(baseline),
        original::STUDENT_MB,
        baseline.map_or("–".into(), |g| megabytes(g.model_bytes))
    );
    if !distilled.is_empty() {
        let means: Vec<f64> = distilled.iter().map(|g| g.mean_final).collect();
        let (lo, hi) = means.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &m| (lo.min(m), hi.max(m)));
        let avg = means.iter().sum::<f64>() / means.len() as f64;
        let _ = writeln!(
            s,
            "| quantized student, with teacher | {} | mean of {} distilled cells {} (range {} – {}) | {:.2} MB | {} |",
            percent(original::WITH_TEACHER_ACCURACY),
            means.len(),
            percent(avg),
            percent(lo),
            percent(hi),
            original::STUDENT_MB,
            megabytes(distilled[0].model_bytes)
        );
    }

    let losses = Loss::DISTILLATION;
    let mut temperatures: Vec<f64> = distilled.iter().filter_map(|g| g.temperature).collect();
    temperatures.extend(original::TEMPERATURES);
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
                let orig = original::distilled_accuracy(l, t).map_or("–".into(), percent);
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

    fidelity_section(&mut s, &groups, &temperatures);

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
            percent(r.final_test_accuracy),
            percent(r.best_test_accuracy),
            r.final_train_loss,
            megabytes(r.model_bytes),
            r.wall_seconds
        );
    }
    let _ = writeln!(s, "\n## Curves\n");
    let _ = writeln!(
        s,
        "Train and test accuracy and loss per epoch (test: the whole test set; train: the run's own objective, averaged over the epoch), \
         and the final epoch's reliability diagram: test accuracy against confidence in 15 bins (on the diagonal: calibrated).\n"
    );
    for r in results.runs.iter().filter(|r| !r.history.is_empty()) {
        let _ = writeln!(s, "![{0}]({FIGURES_DIR}/{0}.png)\n", r.run_id);
    }
    let _ = writeln!(s, "\n## Config\n\n```toml\n{}```", results.config);
    s
}

/// Agreement with the teacher, KL and calibration by loss and temperature
/// (means over seeds of the final epoch), and the agreement figure.
fn fidelity_section(s: &mut String, groups: &[Group], temperatures: &[f64]) {
    if groups.iter().all(|g| g.fidelity.ece.is_none()) {
        return;
    }
    let pct = |x: Option<f64>| x.map_or("–".into(), |x| format!("{:.1}%", 100.0 * x));
    let num = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.3}"));
    let row = |what: &str, g: &Group| {
        let f = &g.fidelity;
        format!(
            "| {what} | {} | {} | {} | {} | {} | {} |",
            pct(f.agreement),
            pct(f.agreement_on_teacher_errors),
            num(f.kl_t1),
            num(f.kl_t),
            num(f.ece),
            percent(g.mean_final)
        )
    };
    let _ = writeln!(s, "\n## Fidelity to the teacher and calibration\n");
    let _ = writeln!(
        s,
        "Accuracy alone cannot say whether a student learned from its teacher (students often match its accuracy while \
         agreeing with it far less: Stanton et al., NeurIPS 2021). On the whole test set, final epoch, mean over seeds: \
         **agreement**, the share of images whose top-1 class is the teacher's, and the same on the images the teacher gets \
         wrong; **KL**, KL(teacher || student) of the softmax outputs in nats, at T = 1 and at the run's T; **ECE**, the \
         expected calibration error (15 equal-width confidence bins; 0 is calibrated).\n"
    );
    let _ = writeln!(s, "| run | agreement | on teacher errors | KL at T=1 | KL at T | ECE | test acc |");
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- |");
    for g in groups.iter().filter(|g| g.kind != RunKind::Distill) {
        let what = if g.kind == RunKind::Teacher { "teacher" } else { "student, no teacher" };
        let _ = writeln!(s, "{}", row(what, g));
    }
    for &loss in &Loss::DISTILLATION {
        for &t in temperatures {
            if let Some(g) = groups.iter().find(|g| g.kind == RunKind::Distill && g.loss == loss && g.temperature == Some(t)) {
                let _ = writeln!(s, "{}", row(&format!("{} T={}", loss.name(), format_temperature(t)), g));
            }
        }
    }
    if groups.iter().any(|g| g.kind == RunKind::Distill && g.fidelity.agreement.is_some()) {
        let _ = writeln!(
            s,
            "\n![Agreement with the teacher against T]({FIGURES_DIR}/{AGREEMENT_FIGURE})\n\nTop-1 agreement with the teacher \
             against T, a line per loss (mean over seeds); grey dashed: the student without a teacher."
        );
    }
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
