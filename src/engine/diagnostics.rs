//! What a test-set pass says beyond accuracy: how far a student follows its
//! teacher (top-1 agreement, also on the images the teacher gets wrong, and
//! the KL divergence of their softmax outputs) and how well its confidence
//! matches its accuracy (expected calibration error over 15 equal-width
//! bins, as Guo et al. 2017), with the confusion matrix. Pure functions of
//! the logits: training computes them from the same pass that gives the test
//! accuracy, `kdtui eval --teacher` from a model file's.
//!
//! Accuracy alone cannot say whether a student learned from its teacher:
//! students often match the teacher's accuracy while agreeing with it far
//! less than expected (Stanton et al., "Does Knowledge Distillation Really
//! Work?", NeurIPS 2021).

use super::inference::argmax;
use crate::protocol::{Bin, Diagnostics};

/// Equal-width confidence bins of the calibration error.
pub const ECE_BINS: usize = 15;

/// The diagnostics of `logits` [n, classes] against `labels`; with the
/// teacher's logits over the same images, the fidelity to it (KL at T = 1
/// and, with `temperature`, at the run's T).
pub fn diagnose(logits: &[f32], labels: &[u8], classes: usize, teacher: Option<&[f32]>, temperature: Option<f64>) -> Diagnostics {
    let n = labels.len();
    assert_eq!(logits.len(), n * classes, "one row of logits per label");
    let mut confusion = vec![0u32; classes * classes];
    let mut bins = vec![Bin { images: 0, correct: 0, confidence_sum: 0.0 }; ECE_BINS];
    for (row, &label) in logits.chunks_exact(classes).zip(labels) {
        let predicted = argmax(row);
        confusion[label as usize * classes + predicted] += 1;
        let confidence = softmax(row, 1.0)[predicted];
        // Bin b holds confidences in (b/15, (b+1)/15]; a confidence of
        // exactly 0 (impossible for a softmax) would go to the first.
        let b = ((confidence * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        bins[b].images += 1;
        bins[b].correct += u32::from(predicted == label as usize);
        bins[b].confidence_sum += confidence;
    }
    let ece = bins.iter().map(|b| (f64::from(b.correct) - b.confidence_sum).abs()).sum::<f64>() / n.max(1) as f64;
    let mut d = Diagnostics { agreement: None, agreement_on_teacher_errors: None, kl_t1: None, kl_t: None, ece, bins, confusion };
    if let Some(teacher) = teacher {
        assert_eq!(teacher.len(), logits.len(), "the teacher's logits cover the same images");
        let (mut agree, mut teacher_wrong, mut agree_when_wrong) = (0usize, 0usize, 0usize);
        for ((s, t), &label) in logits.chunks_exact(classes).zip(teacher.chunks_exact(classes)).zip(labels) {
            let same = argmax(s) == argmax(t);
            agree += usize::from(same);
            if argmax(t) != label as usize {
                teacher_wrong += 1;
                agree_when_wrong += usize::from(same);
            }
        }
        d.agreement = Some(agree as f64 / n.max(1) as f64);
        d.agreement_on_teacher_errors = (teacher_wrong > 0).then(|| agree_when_wrong as f64 / teacher_wrong as f64);
        d.kl_t1 = Some(mean_kl(teacher, logits, classes, 1.0));
        d.kl_t = temperature.map(|t| mean_kl(teacher, logits, classes, t));
    }
    d
}

/// softmax(z / T) in f64, shifted by the maximum.
fn softmax(row: &[f32], temperature: f64) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z)) as f64;
    let e: Vec<f64> = row.iter().map(|&z| ((z as f64 - max) / temperature).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

/// Mean over images of KL(p || q), p = softmax(teacher / T), q = softmax(student / T).
fn mean_kl(teacher: &[f32], student: &[f32], classes: usize, temperature: f64) -> f64 {
    let n = teacher.len() / classes;
    let total: f64 = teacher
        .chunks_exact(classes)
        .zip(student.chunks_exact(classes))
        .map(|(t, s)| {
            let (p, q) = (softmax(t, temperature), softmax(s, temperature));
            // p log(p/q), 0 where p underflows to 0; q > 0 always (a softmax in f64 of finite logits).
            p.iter().zip(&q).filter(|(p, _)| **p > 0.0).map(|(p, q)| p * (p / q).ln()).sum::<f64>()
        })
        .sum();
    total / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Three classes, four images, worked by hand.
    #[test]
    fn agreement_and_its_share_on_the_teachers_errors() {
        let labels = [0u8, 1, 2, 2];
        // Teacher: 0, 1, 1 (wrong), 0 (wrong).
        let teacher = [5.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 5.0, 0.0, 5.0, 0.0, 0.0];
        // Student: 0 (agrees), 2 (disagrees), 1 (agrees, on a teacher error), 2 (disagrees).
        let student = [2.0, 1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 2.0, 1.0, 0.0, 1.0, 2.0];
        let d = diagnose(&student, &labels, 3, Some(&teacher), Some(4.0));
        assert_eq!(d.agreement, Some(0.5));
        assert_eq!(d.agreement_on_teacher_errors, Some(0.5));
        // Confusion: row = true, column = predicted; rows sum to class counts.
        assert_eq!(d.confusion, vec![1, 0, 0, 0, 0, 1, 0, 1, 1]);
        let rows: Vec<u32> = d.confusion.chunks(3).map(|r| r.iter().sum()).collect();
        assert_eq!(rows, vec![1, 1, 2]);
        assert_eq!(d.per_class_accuracy(), vec![Some(1.0), Some(0.0), Some(0.5)]);
    }

    /// A tie between the largest logits goes to the first class, for the
    /// teacher and the student alike (as the test accuracy counts it).
    #[test]
    fn ties_go_to_the_first_class() {
        let labels = [1u8, 0];
        let teacher = [1.0, 1.0, 0.0, 3.0];
        let student = [2.0, 2.0, 3.0, 3.0];
        let d = diagnose(&student, &labels, 2, Some(&teacher), None);
        // Teacher predicts 0 (tie) and 1; student 0 (tie) and 0.
        assert_eq!(d.agreement, Some(0.5));
        assert_eq!(d.agreement_on_teacher_errors, Some(0.5), "the teacher is wrong on both");
        assert_eq!(d.confusion, vec![1, 0, 1, 0]);
        assert_eq!(d.kl_t, None, "no temperature, no KL at T");
    }

    /// KL(p || q) for two classes by hand: p = softmax(ln 3, 0) = (3/4, 1/4),
    /// q = (1/2, 1/2): 3/4 ln(3/2) + 1/4 ln(1/2). At T = 2: p = (√3, 1)/(√3 + 1).
    #[test]
    fn kl_divergence_at_one_and_at_the_runs_temperature() {
        let teacher = [3f32.ln(), 0.0];
        let student = [0.0f32, 0.0];
        let d = diagnose(&student, &[0], 2, Some(&teacher), Some(2.0));
        let kl1 = 0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln();
        assert!((d.kl_t1.unwrap() - kl1).abs() < 1e-7, "{:?} vs {kl1}", d.kl_t1);
        let r3 = 3f64.sqrt();
        let (p0, p1) = (r3 / (r3 + 1.0), 1.0 / (r3 + 1.0));
        let kl2 = p0 * (2.0 * p0).ln() + p1 * (2.0 * p1).ln();
        assert!((d.kl_t.unwrap() - kl2).abs() < 1e-7, "{:?} vs {kl2}", d.kl_t);
        let same = diagnose(&teacher, &[0], 2, Some(&teacher), Some(2.0));
        assert!(close(same.kl_t1.unwrap(), 0.0) && same.agreement == Some(1.0));
        assert_eq!(same.agreement_on_teacher_errors, None, "the teacher makes no error");
    }

    /// A model whose confidence is its accuracy in every bin has ECE 0; one
    /// that is always sure and right half the time, 0.5.
    #[test]
    fn calibration_error_by_hand() {
        // Two classes; confidence 0.75 on every image (logits ln 3, 0):
        // right on 3 of 4 images = perfectly calibrated.
        let row = [3f32.ln(), 0.0];
        let logits: Vec<f32> = row.iter().copied().cycle().take(8).collect();
        let d = diagnose(&logits, &[0, 0, 0, 1], 2, None, None);
        assert!(d.ece.abs() < 1e-7, "{}", d.ece);
        // 0.75 lies in bin (11/15, 12/15]: index 11.
        assert_eq!((d.bins[11].images, d.bins[11].correct), (4, 3));
        assert_eq!(d.bins.iter().map(|b| b.images).sum::<u32>(), 4);
        assert_eq!(d.agreement, None, "no teacher, no fidelity");

        // Sure (confidence ~1) and right on 2 of 4: ECE = |0.5 - 1| = 0.5.
        let sure = [30.0f32, 0.0];
        let logits: Vec<f32> = sure.iter().copied().cycle().take(8).collect();
        let d = diagnose(&logits, &[0, 0, 1, 1], 2, None, None);
        assert!((d.ece - 0.5).abs() < 1e-9, "{}", d.ece);

        // Two bins: 0.75-confident and right on 1 of 2 (gap 0.25), ~1-confident
        // and right on 2 of 2 (gap ~0): ECE = 2/4 * 0.25 = 0.125 (ln 3 in f32: to 1e-7).
        let logits = [3f32.ln(), 0.0, 3f32.ln(), 0.0, 30.0, 0.0, 30.0, 0.0];
        let d = diagnose(&logits, &[0, 1, 0, 0], 2, None, None);
        assert!((d.ece - 0.125).abs() < 1e-7, "{}", d.ece);
    }
}
