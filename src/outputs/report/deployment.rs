//! The report's deployment table: size, accuracy and inference speed of the
//! teacher, the fp32-simulated students and the same students on the integer
//! engine, from the figures each run measured after its last epoch.

use std::fmt::Write;

use crate::outputs::stats::{mean_std, median};
use crate::protocol::{Deployment, IntegerServing, RunResult};
use crate::study::RunKind;
use crate::util::format::{megabytes, percent, thousands};

/// One row: the runs it sums up and their figures.
struct Row<'a> {
    what: &'static str,
    runs: Vec<&'a RunResult>,
    accuracy: Vec<f64>,
    speed: Vec<f64>,
    engine: String,
}

impl Row<'_> {
    fn line(&self, s: &mut String) {
        let several = self.runs.len() > 1;
        let size = self.runs.first().map_or("–".into(), |r| megabytes(r.model_bytes));
        let _ = writeln!(
            s,
            "| {} | {} | {size} | {}{} | {}{} | {} |",
            self.what,
            self.runs.len(),
            percent(mean_std(&self.accuracy).0),
            if several { " (mean)" } else { "" },
            thousands(median(self.speed.clone()).unwrap_or(f64::NAN)),
            if several { " (median)" } else { "" },
            self.engine
        );
    }
}

/// `## Deployment`, when at least one finished run measured its model.
pub(super) fn section(s: &mut String, runs: &[RunResult], test_images: usize) {
    let measured: Vec<(&RunResult, &Deployment)> = runs.iter().filter_map(|r| Some((r, r.deployment.as_ref()?))).collect();
    if measured.is_empty() {
        return;
    }
    let on = |r: &RunResult| if r.device.is_empty() { "the training device".to_string() } else { r.device.clone() };
    let float_row = |what, teacher: bool| {
        let runs: Vec<_> = measured.iter().filter(|(r, _)| (r.kind == RunKind::Teacher) == teacher).collect();
        Row {
            what,
            accuracy: runs.iter().map(|(r, _)| r.final_test_accuracy).collect(),
            speed: runs.iter().map(|(_, d)| d.float_images_per_sec).collect(),
            engine: runs.first().map_or(String::new(), |(r, _)| format!("fp32 on {}", on(r))),
            runs: runs.iter().map(|(r, _)| *r).collect(),
        }
    };
    let teacher = float_row("teacher", true);
    let mut simulated = float_row("student, fp32-simulated", false);
    simulated.engine = format!("{}, quantizers simulated", simulated.engine);
    let integer: Vec<(&RunResult, &Deployment, &IntegerServing)> =
        measured.iter().filter_map(|&(r, d)| Some((r, d, d.integer.as_ref()?))).collect();
    let int_row = Row {
        what: "student, integer engine",
        runs: integer.iter().map(|(r, _, _)| *r).collect(),
        accuracy: integer.iter().map(|(_, _, i)| i.correct as f64 / i.images.max(1) as f64).collect(),
        speed: integer.iter().map(|(_, _, i)| i.images_per_sec).collect(),
        engine: integer.first().map_or(String::new(), |(_, _, i)| format!("{} on the CPU", i.kernel)),
    };

    let _ = writeln!(s, "\n## Deployment\n");
    let _ = writeln!(
        s,
        "What each finished model costs to serve: measured by its run once, right after its last epoch, over the whole test set \
         ({test_images} images; the median of 3 passes after a first, or of fewer where they take over a second), on the machine that trained it while the study ran. \
         Figures of a shared machine taken between runs, not a benchmark: `kdtui bench` holds the machine to one task, \
         alternates rounds and compares with PyTorch. Size: the model's file (`kdtui export`). The student rows take every \
         student together (without a teacher and distilled: one network, so one file size and one speed to expect).\n"
    );
    let _ = writeln!(s, "| model | runs | file | test accuracy | images/s | engine |");
    let _ = writeln!(s, "| --- | --- | --- | --- | --- | --- |");
    for row in [&teacher, &simulated, &int_row].into_iter().filter(|r| !r.runs.is_empty()) {
        row.line(s);
    }
    if integer.is_empty() {
        return;
    }
    let same: usize = integer.iter().map(|(_, _, i)| i.same_class).sum();
    let images: usize = integer.iter().map(|(_, _, i)| i.images).sum();
    let mut ratios: Vec<f64> = integer.iter().map(|(_, d, i)| i.images_per_sec / d.float_images_per_sec).collect();
    ratios.sort_by(f64::total_cmp);
    let (runs, spread) = match integer.len() {
        1 => ("1 run".to_string(), String::new()),
        n => (format!("{n} runs"), format!(" (median of the runs' ratios; {:.2}x to {:.2}x)", ratios[0], ratios[n - 1])),
    };
    let _ = writeln!(
        s,
        "\nThe integer engine runs each student's own weights on integer codes: it gave the fp32-simulated student's class on \
         {same} of {images} test images over {runs} (a difference is float rounding in the simulated path that moved a value \
         across a quantizer's threshold), at {:.2}x its speed{spread}.",
        median(ratios.clone()).unwrap_or(f64::NAN),
    );
}
