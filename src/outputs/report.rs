//! `report.md`: the study's two tables with this plan's numbers beside the
//! original ones, the planned comparisons with their verdicts, the runs and
//! their figures. It states the spread it can measure and draws no
//! conclusion the statistics do not carry: every comparison it tests was
//! fixed by the plan before any run (`stats::planned_questions`) and is
//! corrected for how many there are.

use std::fmt::Write;

mod deployment;

use super::directory::FIGURES_DIR;
use super::stats::{interval_95, planned_questions, resolvable_at_best, standard_error_points, Family, Group, Question};
use super::store::Results;
use crate::study::{format_temperature, original, Loss, RunKind};
use crate::util::format::{megabytes, percent};

/// The sweep figure, inside `FIGURES_DIR`.
pub const SWEEP_FIGURE: &str = "sweep.png";
/// Agreement with the teacher against T, inside `FIGURES_DIR`.
pub const AGREEMENT_FIGURE: &str = "agreement.png";
/// Each cell's difference to the student without a teacher, inside `FIGURES_DIR`.
pub const EFFECTS_FIGURE: &str = "effects.png";

fn cell(g: Option<&Group>, test_images: usize) -> String {
    match (g, g.and_then(|g| interval_95(g, test_images))) {
        (None, _) => "–".into(),
        (Some(g), Some((lo, hi))) => {
            format!("{} ± {:.2} (n={}, 95% CI {lo:.2}–{hi:.2})", percent(g.mean_final), 100.0 * g.std_final, g.seeds)
        }
        (Some(g), None) => percent(g.mean_final),
    }
}

/// The column heading of a loss: `gt_soft` says it has no teacher.
pub fn loss_heading(loss: Loss) -> String {
    if loss.needs_teacher() {
        loss.name().to_string()
    } else {
        format!("{} (no teacher)", loss.name())
    }
}

pub fn markdown(results: &Results) -> String {
    let groups = results.groups();
    let n = results.test_images;
    let find = |kind: RunKind, loss: Loss, t: Option<f64>| groups.iter().find(|g| g.kind == kind && g.loss == loss && g.temperature == t);
    let teacher = find(RunKind::Teacher, Loss::Hard, None);
    let baseline = find(RunKind::Baseline, Loss::Hard, None);
    let distilled: Vec<&Group> = groups.iter().filter(|g| g.kind == RunKind::Distill).collect();

    let mut s = String::new();
    let _ = writeln!(s, "# kdtui report: {}\n", results.plan);
    summary(&mut s, results, teacher);
    students_table(&mut s, teacher, baseline, &distilled, n);

    let losses = results.losses();
    let mut temperatures: Vec<f64> = distilled.iter().filter_map(|g| g.temperature).collect();
    temperatures.extend(original::TEMPERATURES);
    temperatures.sort_by(f64::total_cmp);
    temperatures.dedup();
    let _ = writeln!(s, "\n## Distillation: test accuracy by loss and temperature\n");
    let _ = writeln!(
        s,
        "Each cell: original / ours (final epoch, whole test set): mean ± sample standard deviation over the seeds, and the 95% \
         interval of the mean over seeds: where other seeds would put it on this test set. Each run's variance is taken no \
         lower than the test set's sampling variance p(1 − p)/n, so seeds that agree closely still get a width. Another test \
         set would move every cell by about {:.2} points more (one standard error of an accuracy on {n} images): comparisons \
         between our cells share it, a comparison with the original's numbers does not.\n",
        standard_error_points(baseline.or(teacher).map_or(0.9, |g| g.mean_final), n)
    );
    let headings: Vec<String> = losses.iter().map(|&l| loss_heading(l)).collect();
    let _ = writeln!(s, "| T | {} |", headings.join(" | "));
    let _ = writeln!(s, "| --- |{}", " --- |".repeat(losses.len()));
    for &t in &temperatures {
        let cells: Vec<String> = losses
            .iter()
            .map(|&l| {
                let orig = original::distilled_accuracy(l, t).map_or("–".into(), percent);
                format!("{orig} / {}", cell(find(RunKind::Distill, l, Some(t)), n))
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

    let family = Family::test(&planned_questions(&results.planned), &groups, n);
    effects_section(&mut s, results, &family, &groups);
    fidelity_section(&mut s, &groups, &temperatures);

    if !results.failures.is_empty() {
        let _ = writeln!(s, "\n## Failed runs\n");
        for f in &results.failures {
            let _ = writeln!(s, "- `{}`: {}", f.run_id, f.error);
        }
    }

    deployment::section(&mut s, &results.runs, n);

    let _ = writeln!(s, "\n## Runs\n");
    let _ = writeln!(s, "| run | status | epochs | final test acc | train loss | size | wall time |");
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- | --- |");
    for r in &results.runs {
        let _ = writeln!(
            s,
            "| {} | {:?}{} | {} | {} | {:.4} | {} | {:.1} s |",
            r.run_id,
            r.status,
            if r.reused { " (reused)" } else { "" },
            r.epochs,
            percent(r.final_test_accuracy),
            r.final_train_loss,
            megabytes(r.model_bytes),
            r.wall_seconds
        );
    }
    let _ = writeln!(s, "\n## Curves\n");
    let _ = writeln!(
        s,
        "Train and test accuracy and loss per epoch (test: the whole test set; train: the run's own objective, averaged over the epoch), \
         and the final epoch's reliability diagram: test accuracy against confidence in 15 bins (on the diagonal: calibrated). \
         The result of a run is its final epoch; the curves show how it got there, not a choice among epochs.\n"
    );
    for r in results.runs.iter().filter(|r| !r.history.is_empty()) {
        let _ = writeln!(s, "![{0}]({FIGURES_DIR}/{0}.png)\n", r.run_id);
    }
    let _ = writeln!(s, "\n## Config\n\n```toml\n{}```", results.config);
    s
}

/// The lines under the title: state of the plan, data, device, time, and
/// what one test image weighs.
fn summary(s: &mut String, results: &Results, teacher: Option<&Group>) {
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
    if let Some(t) = results.planned.iter().find(|p| p.kind == RunKind::Teacher) {
        let list: Vec<String> = results.student_seeds().iter().map(u64::to_string).collect();
        let _ = writeln!(
            s,
            "- seeds: every student cell is trained once per seed ({}); the teacher once (seed {}), so the spread over seeds is \
             that of students of one teacher",
            list.join(", "),
            t.seed
        );
    }
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
        "- accuracies are the final epoch's, measured on the whole test set ({} images): one standard error is about {:.2} points \
         at {}; the original read its numbers off one batch of {} images (about {:.2} points)\n",
        results.test_images,
        standard_error_points(p, results.test_images),
        percent(p),
        original::TEST_IMAGES,
        standard_error_points(0.9, original::TEST_IMAGES),
    );
}

/// Teacher, student without a teacher, students with a teacher (`soft`,
/// `hard_soft`) and students of softened labels (`gt_soft`), beside the
/// original's, with the model sizes and what each side's size counts.
fn students_table(s: &mut String, teacher: Option<&Group>, baseline: Option<&Group>, distilled: &[&Group], n: usize) {
    let _ = writeln!(s, "## Teacher and students\n");
    let _ = writeln!(s, "| run | original accuracy | ours | original size | ours |");
    let _ = writeln!(s, "| --- | --- | --- | --- | --- |");
    let size = |g: Option<&Group>| g.map_or("–".into(), |g| megabytes(g.model_bytes));
    let _ = writeln!(
        s,
        "| teacher (float) | {} | {} | {:.2} MB | {} |",
        percent(original::TEACHER_ACCURACY),
        cell(teacher, n),
        original::TEACHER_MB,
        size(teacher)
    );
    let _ = writeln!(
        s,
        "| quantized student, no teacher | {} | {} | {:.2} MB | {} |",
        percent(original::BASELINE_ACCURACY),
        cell(baseline, n),
        original::STUDENT_MB,
        size(baseline)
    );
    let rows: [(&str, String, bool); 2] = [
        ("quantized student, with teacher (`soft`, `hard_soft`)", percent(original::WITH_TEACHER_ACCURACY), true),
        ("quantized student, labels softened by T (`gt_soft`, no teacher)", "–".into(), false),
    ];
    for (what, orig, with_teacher) in rows {
        let cells: Vec<&Group> = distilled.iter().copied().filter(|g| g.loss.needs_teacher() == with_teacher).collect();
        if cells.is_empty() {
            continue;
        }
        let means: Vec<f64> = cells.iter().map(|g| g.mean_final).collect();
        let (lo, hi) = means.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &m| (lo.min(m), hi.max(m)));
        let avg = means.iter().sum::<f64>() / means.len() as f64;
        let _ = writeln!(
            s,
            "| {what} | {orig} | mean of {} cells {} (range {} – {}) | {:.2} MB | {} |",
            means.len(),
            percent(avg),
            percent(lo),
            percent(hi),
            original::STUDENT_MB,
            megabytes(cells[0].model_bytes)
        );
    }
    let _ = writeln!(
        s,
        "\nSizes: ours are the model files' lengths: k bits per quantized weight, packed, and fp32 for the float layers \
         (first conv and classifier by default), BatchNorm and the input normalisation. The original's 1.11 MB is a third of \
         its 3.36 MB teacher, far more than packed 2-bit weights would take (about a sixteenth plus the float layers); it gives \
         neither its student's widths nor how it stored the weights, so its figure most likely counts them unpacked (a byte or a \
         float each) and the two size columns do not measure the same thing."
    );
}

/// The planned comparisons: what they are, how they are corrected, what the
/// plan could resolve, a row each with its verdict, and the effects figure.
fn effects_section(s: &mut String, results: &Results, family: &Family, groups: &[Group]) {
    let _ = writeln!(s, "\n## Comparisons planned before the data\n");
    if results.planned.is_empty() {
        let _ = writeln!(s, "results.json lists no planned runs (an earlier kdtui wrote it), so no comparison was planned.");
        return;
    }
    if family.size() == 0 {
        let _ = writeln!(s, "The plan makes no comparison: it has no distilled cell beside a baseline or a `gt_soft` control.");
        return;
    }
    // From the plan, not from what has finished: a report written before the
    // students end must not blame the seeds.
    let planned_seeds = results.student_seeds();
    let baseline_planned = results.planned.iter().any(|r| r.kind == RunKind::Baseline);
    let against = family.comparisons.iter().filter(|c| matches!(c.question, Question::AgainstBaseline { .. })).count();
    let controls = family.size() - against;
    let mut parts = Vec::new();
    if against > 0 {
        parts.push(format!("each of the {against} distilled cells against the student without a teacher"));
    }
    if controls > 0 {
        parts.push(format!(
            "`hard_soft` against `gt_soft` at each of {controls} temperatures (the teacher's soft targets against the label \
             softened by the same T: what the teacher adds)"
        ));
    }
    let _ = writeln!(
        s,
        "The plan fixes its family of {} comparisons from the config, before any run: {}. Each is Welch's t-test of the \
         difference of two cells' final test accuracies over their seeds; a cell's variance is never taken below p(1 − p)/n, \
         the sampling variance of one accuracy on these {} test images, so seeds that agree exactly resolve nothing the test \
         set cannot. The family is corrected with Holm's step-down method at a family-wise error rate of 5%: **resolved** means \
         the Holm-adjusted p is below 0.05. Intervals are simultaneous 95% intervals (each at 1 − 0.05/{}): an interval that \
         excludes zero is resolved; Holm may resolve a few more. There is no \"best cell\" test: picking the largest of many \
         cells and then testing it would find a winner in noise.\n",
        family.size(),
        parts.join("; and "),
        results.test_images,
        family.size()
    );
    let made = family.made();
    if made < family.size() {
        let why = if planned_seeds.len() < 2 {
            "the plan runs every cell with a single seed, so no spread is known"
        } else {
            "a comparison needs both its cells finished over two seeds or more"
        };
        let _ = writeln!(
            s,
            "Made: {made} of the {} planned comparisons ({why}); the correction still counts all {}.\n",
            family.size(),
            family.size()
        );
    } else {
        let _ = writeln!(s, "Made: all {made} planned comparisons.\n");
    }
    let seeds = groups.iter().filter(|g| g.kind == RunKind::Baseline).map(|g| g.seeds).max().unwrap_or(1);
    let p = groups.iter().find(|g| g.kind == RunKind::Baseline).map_or(0.9, |g| g.mean_final);
    match (family.resolvable_against_baseline(), resolvable_at_best(p, results.test_images, seeds, family.size())) {
        (Some((least, median, most)), Some(best)) => {
            let _ = writeln!(
                s,
                "**Resolvable difference.** With {seeds} seeds and {} test images, a cell had to differ from the student without a \
                 teacher by **{median:.2} points** (median over the cells; {least:.2} to {most:.2}) to be resolved whatever the \
                 other comparisons show. With every cell's spread at the test set's floor it would be {best:.2} points: more test \
                 images lower that floor, more seeds lower both. A smaller difference may be real; this plan cannot tell.\n",
                results.test_images
            );
        }
        _ if planned_seeds.len() < 2 => {
            let _ = writeln!(
                s,
                "**Resolvable difference.** None: with one seed per cell the spread over seeds is unknown, so no difference is \
                 resolved, however large it looks. Set `[plan] seeds = [1, 2, 3]` (or more) to measure it.\n"
            );
        }
        _ if !baseline_planned => {
            let _ =
                writeln!(s, "**Resolvable difference.** None: the plan has no student without a teacher to measure the cells against.\n");
        }
        _ => {
            let _ = writeln!(
                s,
                "**Resolvable difference.** Not yet: it needs the student without a teacher and a distilled cell each \
                 finished over two seeds or more.\n"
            );
        }
    }
    let _ = writeln!(s, "| comparison | difference (points) | simultaneous 95% interval | p | Holm-adjusted p | verdict |");
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
    for c in &family.comparisons {
        let row = match (c.test, c.interval, c.adjusted_p) {
            (Some(w), Some((lo, hi)), Some(adjusted)) => format!(
                "{:+.2} | {lo:+.2} to {hi:+.2} | {} | {} | {}",
                100.0 * w.difference,
                p_value(w.p_value()),
                p_value(adjusted),
                match (c.resolved(), lo <= 0.0 && hi >= 0.0) {
                    // Holm's later steps test at less than the intervals' 1 - 0.05/m.
                    (true, true) => "**resolved** (Holm's step-down; the interval is at its first step's level)",
                    (true, false) => "**resolved**",
                    (false, _) => "not resolved",
                }
            ),
            _ => "– | – | – | – | not made".into(),
        };
        let _ = writeln!(s, "| {} | {row} |", c.question.describe());
    }
    if made > 0 {
        let _ = writeln!(
            s,
            "\n![Differences to the student without a teacher]({FIGURES_DIR}/{EFFECTS_FIGURE})\n\nEach distilled cell's mean \
             minus the student without a teacher, by loss and T, with its simultaneous 95% interval; filled: resolved after \
             Holm's correction, hollow: not resolved."
        );
    }
    let _ = writeln!(
        s,
        "\nWhat these numbers cannot bear: a difference that is not resolved is not shown to be zero, only not told apart from \
         it; every student learned from one teacher, so a cell's spread leaves out how much another teacher would change it; \
         all runs are measured on one test set.{}",
        if results.data.starts_with("synthetic") {
            " On the built-in synthetic data they say how the losses behave on that data, not on SVHN: conclusions about SVHN \
             need the real files (`configs/svhn.toml`)."
        } else {
            ""
        }
    );
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
    for &loss in Loss::ALL {
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

/// A p-value with the digits it needs: `0.032`, `< 0.001`.
fn p_value(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

#[cfg(test)]
mod tests;
