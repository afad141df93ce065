use super::*;
use crate::outputs::fixtures::finished;
use crate::study::{plan::full_plan, Config, RunSpec};

/// A finished default plan whose runs score `accuracy(spec)`.
fn study(seeds: Vec<u64>, accuracy: impl Fn(&RunSpec) -> f64) -> Results {
    let mut config = Config::default();
    config.plan.seeds = seeds;
    let planned = full_plan(&config);
    let runs = planned.iter().map(|spec| finished(spec, accuracy(spec))).collect();
    Results { plan: "t".into(), data: "synthetic: 10 train / 5000 test".into(), test_images: 5000, planned, runs, ..Results::default() }
}

/// A spread of a few tenths of a point over the seeds.
fn jitter(spec: &RunSpec) -> f64 {
    [0.0, 0.003, -0.002, 0.001][spec.seed as usize % 4]
}

fn row<'a>(report: &'a str, starts: &str) -> &'a str {
    report.lines().find(|l| l.starts_with(starts)).unwrap_or_else(|| panic!("no row {starts:?} in\n{report}"))
}

#[test]
fn gt_soft_is_never_a_student_with_a_teacher() {
    // gt_soft far above the rest: were it counted, the mean and the range would show it.
    let report = markdown(&study(vec![1, 2, 3], |s| match s.loss {
        Loss::GtSoft => 0.99,
        Loss::Hard => 0.90,
        _ => 0.80,
    }));
    let with = row(&report, "| quantized student, with teacher");
    assert!(with.contains("mean of 10 cells 80.00%") && !with.contains("99"), "{with}");
    let labels = row(&report, "| quantized student, labels softened by T (`gt_soft`, no teacher)");
    assert!(labels.contains("mean of 5 cells 99.00%"), "{labels}");
    assert!(report.contains("| T | soft | hard_soft | gt_soft (no teacher) |"));
}

/// The rows of the comparisons table: (label, verdict).
fn comparisons(report: &str) -> Vec<(String, String)> {
    let start = report.find("| comparison |").expect("a comparisons table");
    report[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (cells[1].to_string(), cells[cells.len() - 2].to_string())
        })
        .collect()
}

#[test]
fn only_the_planned_family_is_tested_and_its_full_size_is_printed() {
    // One cell far above the others: the old report tested it as "best cell" against the next and the baseline.
    let results = study(vec![1, 2, 3], |s| jitter(s) + if s.loss == Loss::Soft && s.temperature == Some(5.0) { 0.97 } else { 0.90 });
    let report = markdown(&results);
    let rows = comparisons(&report);
    let planned: Vec<String> = planned_questions(&results.planned).into_iter().map(Question::describe).collect();
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(labels, planned, "every row a planned comparison, each once, in plan order");
    assert_eq!(rows.len(), 20, "15 cells against the baseline and 5 hard_soft - gt_soft");
    assert!(report.contains("family of 20 comparisons"), "{report}");
    assert!(report.contains("Made: all 20 planned comparisons."));
    assert!(!report.contains("vs the next") && !report.contains("best cell ("), "no comparison picked after the data");
    let resolved: Vec<&str> = rows.iter().filter(|r| r.1 == "**resolved**").map(|r| r.0.as_str()).collect();
    assert_eq!(resolved, ["soft T=5 − no teacher"]);

    // One seed: nothing can be made, and the family keeps its size.
    let report = markdown(&study(vec![1], |_| 0.9));
    assert!(report.contains("Made: 0 of the 20 planned comparisons"), "{report}");
    assert!(comparisons(&report).iter().all(|r| r.1 == "not made"));
    assert!(report.contains("Resolvable difference.** None"));
}

#[test]
fn the_resolvable_difference_is_printed_for_the_plan_as_run() {
    // Every cell 90.3, 89.8, 90.1% over seeds 1-3 (a std of 0.25 points,
    // under the floor p(1 - p)/n = 1.7893e-5 on 5,000 images): se =
    // sqrt(2 * 1.7893e-5 / 3) = 0.0034538, t at 1 - 0.05/40 with 4 df
    // (scipy.stats.t.ppf) times it: 2.334 points for every cell.
    let results = study(vec![1, 2, 3], |s| 0.9 + jitter(s));
    let report = markdown(&results);
    assert!(report.contains("by **2.33 points** (median over the cells; 2.33 to 2.33)"), "{report}");
}

#[test]
fn a_report_written_before_the_students_finish_does_not_blame_the_seeds() {
    // What `publish` writes as a three-seed plan starts: only the teacher is done.
    let mut results = study(vec![1, 2, 3], |_| 0.9);
    results.runs.retain(|r| r.kind == RunKind::Teacher);
    let report = markdown(&results);
    assert!(report.contains("Made: 0 of the 20 planned comparisons (a comparison needs both its cells finished"), "{report}");
    assert!(report.contains("**Resolvable difference.** Not yet"), "{report}");
    assert!(!report.contains("single seed") && !report.contains("one seed per cell"), "{report}");
    // A plan without a baseline says so, rather than asking for seeds.
    let mut results = study(vec![1, 2, 3], |_| 0.9);
    results.planned.retain(|r| r.kind != RunKind::Baseline);
    results.runs.retain(|r| r.kind != RunKind::Baseline);
    let report = markdown(&results);
    assert!(report.contains("family of 5 comparisons") && report.contains("Made: all 5"), "{report}");
    assert!(report.contains("**Resolvable difference.** None: the plan has no student without a teacher"), "{report}");
}

#[test]
fn the_deployment_table_sums_up_what_each_run_measured() {
    use crate::protocol::{Deployment, IntegerServing};
    // Results from before kdtui measured serving: no section.
    assert!(!markdown(&study(vec![1], |_| 0.9)).contains("## Deployment"));
    let mut results = study(vec![1], |_| 0.9);
    let n = results.runs.len();
    assert_eq!(n, 17, "the teacher, the baseline and 15 distilled students");
    for (i, r) in results.runs.iter_mut().enumerate() {
        // Run i (the teacher is 0) serves fp32 at 10,000 + 100 i images/s;
        // the students' integer engine at 3x that, but the last at 2x. Each
        // student has 4,500 of 5,000 right on it and one image moved, run 1 two.
        let float = 10_000.0 + 100.0 * i as f64;
        let integer = (r.kind != RunKind::Teacher).then(|| IntegerServing {
            kernel: "avx2 (vpmaddubsw)".into(),
            images_per_sec: float * if i == n - 1 { 2.0 } else { 3.0 },
            correct: 4500,
            same_class: if i == 1 { 4998 } else { 4999 },
            images: 5000,
        });
        r.deployment = Some(Deployment { float_images_per_sec: float, integer });
        r.device = "cpu (burn flex, 2 threads)".into();
    }
    let report = markdown(&results);
    let section = &report[report.find("## Deployment").expect("a deployment section")..report.find("## Runs").unwrap()];
    // Size: the fixtures' 1,000-byte model files.
    assert!(section.contains("| teacher | 1 | 0.00 MB | 90.00% | 10,000 | fp32 on cpu (burn flex, 2 threads) |"), "{section}");
    // Students 1-16: the median of 10,100 .. 11,600 is 10,850.
    let simulated = "| student, fp32-simulated | 16 | 0.00 MB | 90.00% (mean) | 10,850 (median) | fp32 on cpu (burn flex, 2 threads), quantizers simulated |";
    assert!(section.contains(simulated), "{section}");
    // 21,200 (the last, at 2x), then 30,300 .. 34,500: the 8th and 9th are 32,100 and 32,400.
    let integer = "| student, integer engine | 16 | 0.00 MB | 90.00% (mean) | 32,250 (median) | avx2 (vpmaddubsw) on the CPU |";
    assert!(section.contains(integer), "{section}");
    assert!(section.contains("class on 79983 of 80000 test images over 16 runs"), "{section}");
    assert!(section.contains("at 3.00x its speed (median of the runs' ratios; 2.00x to 3.00x)"), "{section}");
    // One student: no median, no range.
    results.runs.truncate(2);
    let report = markdown(&results);
    assert!(report.contains("class on 4998 of 5000 test images over 1 run (") && report.contains("at 3.00x its speed."), "{report}");
}
