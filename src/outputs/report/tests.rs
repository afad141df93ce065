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
