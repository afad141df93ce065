use super::*;
use crate::study::{Loss, RunKind};

/// So many test images that the floor never binds.
const MANY: usize = 100_000_000;

fn cell(kind: RunKind, loss: Loss, temperature: Option<f64>, mean_final: f64, std_final: f64, seeds: usize) -> Group {
    Group { kind, loss, temperature, seeds, mean_final, std_final, model_bytes: 1, fidelity: Fidelity::default() }
}

fn group(mean_final: f64, std_final: f64, seeds: usize) -> Group {
    cell(RunKind::Distill, Loss::Soft, Some(5.0), mean_final, std_final, seeds)
}

#[test]
fn t_quantiles_match_the_published_table() {
    // Two-sided 95% (the 0.975 quantile), as printed in standard tables.
    for (df, table) in
        [(1, 12.706), (2, 4.303), (5, 2.571), (10, 2.228), (30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980), (1000, 1.962)]
    {
        let t = t_quantile(0.975, df as f64);
        assert!((t - table).abs() < 5e-4, "df {df}: {t} against {table}");
    }
    // One-sided 99.5% and 99.9%.
    for (p, df, table) in [(0.995, 4, 4.604), (0.995, 10, 3.169), (0.999, 4, 7.173), (0.999, 30, 3.385)] {
        let t = t_quantile(p, df as f64);
        assert!((t - table).abs() < 5e-4, "p {p} df {df}: {t} against {table}");
    }
    assert!((t_two_sided_p(2.228, 10.0) - 0.05).abs() < 1e-4);
}

#[test]
fn welch_on_a_worked_example() {
    // 0.90 ± 0.01 over 3 seeds against 0.88 ± 0.02 over 4: variances of
    // the means 1e-4/3 and 1e-4, so se = sqrt(4e-4/3) = 0.011547 and
    // df = (4e-4/3)^2 / ((1e-4/3)^2/2 + (1e-4)^2/3) = 32/7. p and the
    // 0.975 quantile at df 32/7 from scipy.stats (0.149283, 2.644786).
    let w = Welch::of(&group(0.90, 0.01, 3), &group(0.88, 0.02, 4), MANY).unwrap();
    assert!((w.difference - 0.02).abs() < 1e-12);
    assert!((w.standard_error - 0.011_547_005).abs() < 1e-8, "{w:?}");
    assert!((w.df - 32.0 / 7.0).abs() < 1e-6, "{w:?}");
    assert!((w.p_value() - 0.149_283).abs() < 1e-5, "{}", w.p_value());
    assert!((w.half_width(0.95) - 2.644_786 * 0.011_547_005).abs() < 1e-6, "{}", w.half_width(0.95));
    assert_eq!(Welch::of(&group(0.99, 0.0, 1), &group(0.50, 0.01, 3), MANY), None, "one seed: unknown spread");
}

#[test]
fn holm_steps_down_on_hand_examples() {
    // Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> 0.06 (kept monotone).
    let adjusted = holm_adjusted(&[0.01, 0.04, 0.03, 0.005], 4);
    for (a, want) in adjusted.iter().zip([0.03, 0.06, 0.06, 0.02]) {
        assert!((a - want).abs() < 1e-12, "{adjusted:?}");
    }
    let falls = |adjusted: &[f64]| adjusted.iter().map(|&p| p < ALPHA).collect::<Vec<_>>();
    assert_eq!(falls(&adjusted), [true, false, false, true]);
    // Holm resolves what Bonferroni (0.02 * 2 = 0.04, 0.03 * 2 = 0.06) does not: 0.04, then max(0.04, 0.03).
    assert_eq!(falls(&holm_adjusted(&[0.02, 0.03], 2)), [true, true]);
    // ... and less than uncorrected tests would: only 0.01 * 4 stays below 0.05.
    assert_eq!(falls(&holm_adjusted(&[0.01, 0.02, 0.04, 0.045], 4)), [true, false, false, false]);
    // A planned comparison that could not be made still counts: 0.011 * 5, 0.02 * 4.
    assert_eq!(falls(&holm_adjusted(&[0.011, 0.02], 5)), [false, false]);
}

#[test]
fn an_accuracy_that_is_not_a_number_is_not_tested() {
    // results.json may hold `null` for a diverged run's accuracy; the
    // report, the figure and the monitor's every frame test the family.
    let question = Question::AgainstBaseline { loss: Loss::Soft, temperature: 5.0 };
    let groups = [group(f64::NAN, f64::NAN, 3), cell(RunKind::Baseline, Loss::Hard, None, 0.9, 0.01, 3)];
    let family = Family::test(&[question], &groups, 2000);
    assert_eq!((family.size(), family.made()), (1, 0));
    assert_eq!(interval_95(&groups[0], 2000), None);
}

#[test]
fn zero_spread_resolves_nothing_the_test_set_cannot() {
    // Two cells whose three seeds each agree exactly, 0.05 points apart on
    // 2,000 test images (one image): the floor p(1-p)/n keeps them apart
    // by a t of about 0.14, not infinity.
    let question = Question::AgainstBaseline { loss: Loss::Soft, temperature: 5.0 };
    let groups = [group(0.9600, 0.0, 3), cell(RunKind::Baseline, Loss::Hard, None, 0.9595, 0.0, 3)];
    let family = Family::test(&[question], &groups, 2000);
    let c = &family.comparisons[0];
    assert!(!c.resolved(), "{c:?}");
    assert!(c.adjusted_p.unwrap() > 0.8, "{c:?}");
    // Five points apart they are resolved, floor or not.
    let groups = [group(0.96, 0.0, 3), cell(RunKind::Baseline, Loss::Hard, None, 0.91, 0.0, 3)];
    assert!(Family::test(&[question], &groups, 2000).comparisons[0].resolved());
    // Every seed right on every image, or wrong on every one: still a spread, and a test.
    let groups = [group(1.0, 0.0, 3), cell(RunKind::Baseline, Loss::Hard, None, 1.0, 0.0, 3)];
    let c = &Family::test(&[question], &groups, 64).comparisons[0];
    assert!(!c.resolved() && c.test.unwrap().p_value() == 1.0, "{c:?}");
    let groups = [group(0.0, 0.0, 2), cell(RunKind::Baseline, Loss::Hard, None, 0.0, 0.0, 2)];
    assert!(!Family::test(&[question], &groups, 64).comparisons[0].resolved());
}

#[test]
fn the_interval_uses_students_t_and_the_floor() {
    // 4.303 * 0.01 / sqrt(3) = 0.02484
    let (lo, hi) = interval_95(&group(0.9, 0.01, 3), MANY).unwrap();
    assert!((lo - 87.516).abs() < 1e-3 && (hi - 92.484).abs() < 1e-3, "{lo} {hi}");
    assert_eq!(interval_95(&group(0.9, 0.0, 1), MANY), None);
    // No spread over 3 seeds on 100 images: sqrt(0.09 / 100 / 3) * 4.303 = 7.45 points.
    let (lo, hi) = interval_95(&group(0.9, 0.0, 3), 100).unwrap();
    assert!((hi - lo - 2.0 * 7.453).abs() < 1e-2, "{lo} {hi}");
}

fn spec(kind: RunKind, loss: Loss, temperature: Option<f64>, seed: u64) -> RunSpec {
    RunSpec { run_id: format!("{kind:?}-{loss}-{temperature:?}-{seed}"), kind, loss, temperature, seed }
}

#[test]
fn the_family_comes_from_the_plan_not_the_data() {
    let mut planned = vec![spec(RunKind::Teacher, Loss::Hard, None, 1)];
    for seed in [1, 2] {
        planned.push(spec(RunKind::Baseline, Loss::Hard, None, seed));
        for loss in Loss::DISTILLATION {
            for t in [5.0, 50.0] {
                planned.push(spec(RunKind::Distill, loss, Some(t), seed));
            }
        }
    }
    let questions = planned_questions(&planned);
    // 3 losses x 2 T against the baseline, then hard_soft - gt_soft at each T.
    assert_eq!(questions.len(), 8, "{questions:?}");
    assert_eq!(questions[0], Question::AgainstBaseline { loss: Loss::Soft, temperature: 5.0 });
    assert_eq!(questions[7], Question::TeacherAgainstLabels { temperature: 50.0 });
    // Without a baseline only the control comparisons remain; without gt_soft none of them.
    let no_baseline: Vec<RunSpec> = planned.iter().filter(|r| r.kind != RunKind::Baseline).cloned().collect();
    assert_eq!(planned_questions(&no_baseline).len(), 2);
    let no_gt: Vec<RunSpec> = planned.iter().filter(|r| r.loss != Loss::GtSoft).cloned().collect();
    assert_eq!(planned_questions(&no_gt).len(), 4);

    // Only the soft T=5 cell and the baseline finished: one test made of 8,
    // corrected as one of 8 (0.001 * 8 = 0.008).
    let groups = [cell(RunKind::Baseline, Loss::Hard, None, 0.90, 0.001, 3), cell(RunKind::Distill, Loss::Soft, Some(5.0), 0.95, 0.001, 3)];
    let family = Family::test(&questions, &groups, MANY);
    assert_eq!((family.size(), family.made()), (8, 1));
    let c = &family.comparisons[0];
    assert!((c.adjusted_p.unwrap() - (8.0 * c.test.unwrap().p_value()).min(1.0)).abs() < 1e-12);
    // Its interval is the simultaneous one, at 1 - 0.05/8.
    let (lo, hi) = c.interval.unwrap();
    let half = t_quantile(1.0 - 0.05 / 16.0, c.test.unwrap().df) * c.test.unwrap().standard_error;
    assert!(((hi - lo) / 2.0 - 100.0 * half).abs() < 1e-9);
    let (least, median, most) = family.resolvable_against_baseline().unwrap();
    assert!(least == median && median == most && (most - 100.0 * half).abs() < 1e-9);
}

#[test]
fn resolvable_at_best_follows_seeds_and_test_images() {
    // p = 0.9 on 10,000 images, 3 seeds, 15 comparisons: se = sqrt(2 * 9e-6 / 3)
    // = 0.0024495, t at 1 - 0.05/30 with 4 df = 6.254071 (scipy.stats.t.ppf):
    // 1.53193 points.
    let want = 1.53193;
    assert!((resolvable_at_best(0.9, 10_000, 3, 15).unwrap() - want).abs() < 1e-5);
    assert!(resolvable_at_best(0.9, 40_000, 3, 15).unwrap() < want);
    assert!(resolvable_at_best(0.9, 10_000, 5, 15).unwrap() < want);
    assert_eq!(resolvable_at_best(0.9, 10_000, 1, 15), None);
}

#[test]
fn mean_and_sample_std() {
    assert_eq!(mean_std(&[0.9]), (0.9, 0.0));
    let (m, s) = mean_std(&[0.8, 0.9, 1.0]);
    assert!((m - 0.9).abs() < 1e-12 && (s - 0.1).abs() < 1e-12);
}
