//! Logit standardisation (Sun et al., "Logit Standardization in Knowledge
//! Distillation", CVPR 2024): z-score each image's logits, teacher's and
//! student's, before the temperature, so the student matches the teacher's
//! ranking and relative gaps rather than its logits' scale, which a small
//! (here: 2-bit) network may not reach.
//!
//! logit_std = CE(z, gt) + c * CE(softmax(Z(z) / T), softmax(Z(t) / T)),
//! Z(x) = (x - mean x) / (std x + 1e-7), the sample standard deviation (n - 1) as the paper's code takes it.

use burn::prelude::*;

use super::kd::{cross_entropy, hard, soft_targets};
use super::objective::Objective;

/// Keeps a row of equal logits finite.
const EPS: f64 = 1.0e-7;

/// logits, onehot: [batch, classes]; teacher: `targets` of the teacher's logits.
pub fn loss<B: Backend>(o: &Objective, logits: Tensor<B, 2>, onehot: Tensor<B, 2>, teacher: Tensor<B, 2>) -> Tensor<B, 1> {
    let classes = logits.dims()[1] as f64;
    let centred = logits.clone() - logits.clone().mean_dim(1);
    let std = ((centred.clone() * centred.clone()).sum_dim(1) / (classes - 1.0)).sqrt();
    let standardised = centred / std.add_scalar(EPS);
    hard(logits, onehot) + cross_entropy(standardised, teacher, o.temperature) * o.soft_weight
}

/// softmax(Z(t) / T) of each row of the teacher's logits, in f64.
pub fn targets(o: &Objective, logits: &[f32], classes: usize) -> Vec<f32> {
    let mut standardised = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(classes) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / classes as f64;
        let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / (classes as f64 - 1.0);
        standardised.extend(row.iter().map(|&v| ((f64::from(v) - mean) / (var.sqrt() + EPS)) as f32));
    }
    soft_targets(&standardised, classes, o.temperature)
}

#[cfg(test)]
mod tests {
    use super::super::check::{self, value};
    use super::super::Objective;
    use crate::study::Loss;

    fn objective(temperature: f64, soft_weight: f64) -> Objective {
        check::objective(Loss::LogitStd, temperature, soft_weight)
    }

    // z = (1, 2, 3), label 2, T = 2, c = 4; teacher logits t = (3, 1, 0.5).
    // Z(z) = (-1, 0, 1) (mean 2, sample std 1); Z(t) = (1.1338934, -0.3779645, -0.7559289)
    // (mean 1.5, sample std 1.3228757). Targets softmax(Z(t)/2) = (0.5381296, 0.2526918, 0.2091786);
    // log softmax(Z(z)/2) = (-1.6802696, -1.1802696, -0.6802696);
    // CE = 0.5381296 x 1.6802696 + 0.2526918 x 1.1802696 + 0.2091786 x 0.6802696 = 1.3447452
    // logit_std = 0.4076060 + 4 x 1.3447452 = 5.7865866
    #[test]
    fn matches_the_hand_worked_value() {
        let o = objective(2.0, 4.0);
        let q = super::targets(&o, &[3.0, 1.0, 0.5], 3);
        for (got, want) in q.iter().zip([0.538_129_6, 0.252_691_8, 0.209_178_6]) {
            assert!((got - want).abs() < 1e-6, "{q:?}");
        }
        let v = value(&o, &[vec![1.0, 2.0, 3.0]], &[vec![0.0, 0.0, 1.0]], &[q]);
        assert!((v - 5.786_586_6).abs() < 1e-4, "{v}");
    }

    /// Scale and shift of the teacher's logits change nothing: only their
    /// ranking and relative gaps reach the student.
    #[test]
    fn the_teachers_scale_and_shift_do_not_matter() {
        let o = objective(4.0, 16.0);
        let (a, b) = (super::targets(&o, &[3.0, 1.0, 0.5], 3), super::targets(&o, &[16.0, 6.0, 3.5], 3));
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6), "{a:?} {b:?}");
    }

    #[test]
    fn its_gradient_is_the_finite_difference_one() {
        check::gradient_on_three_images(&objective(2.0, 4.0));
    }
}
