//! DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher",
//! NeurIPS 2022): match the teacher's predictions up to scale and shift, by
//! Pearson correlation rather than KL: between each image's class
//! probabilities (inter-class) and between each class's probabilities over
//! the batch (intra-class).
//!
//! dist = CE(z, gt) + c * (beta * (1 - mean_i rho(p_i, q_i)) + gamma * (1 - mean_j rho(p_.j, q_.j))),
//! p = softmax(z / T), q = softmax(teacher / T), beta and gamma from `[distill.dist]`.

use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::kd::hard;
use super::objective::Objective;

/// Keeps a correlation with a constant vector at 0 instead of 0 / 0, and
/// its gradient finite.
const EPS: f64 = 1.0e-8;

/// logits, onehot, teacher (softmax of the teacher's logits / T): [batch, classes].
pub fn loss<B: Backend>(o: &Objective, logits: Tensor<B, 2>, onehot: Tensor<B, 2>, teacher: Tensor<B, 2>) -> Tensor<B, 1> {
    let p = softmax(logits.clone() / o.temperature, 1);
    let inter = pearson(p.clone(), teacher.clone(), 1).neg().add_scalar(1.0);
    let intra = pearson(p, teacher, 0).neg().add_scalar(1.0);
    let dist = o.distill.dist;
    hard(logits, onehot) + (inter * dist.beta + intra * dist.gamma) * o.soft_weight
}

/// The mean over the other dimension of the Pearson correlation of `a` and
/// `b` along `dim` (1: each row, 0: each column): [1].
fn pearson<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>, dim: usize) -> Tensor<B, 1> {
    let a = a.clone() - a.mean_dim(dim);
    let b = b.clone() - b.mean_dim(dim);
    let cov = (a.clone() * b.clone()).sum_dim(dim);
    // Each norm's square root taken apart and off 0: a constant row (a
    // collapsed 2-bit student) then has a finite gradient, not 0 * inf.
    let norm = |x: Tensor<B, 2>| (x.clone() * x).sum_dim(dim).add_scalar(EPS * EPS).sqrt();
    (cov / (norm(a) * norm(b))).mean()
}

#[cfg(test)]
mod tests {
    use super::super::check::{self, value};
    use super::super::Objective;
    use crate::study::Loss;

    fn objective(temperature: f64, soft_weight: f64) -> Objective {
        check::objective(Loss::Dist, temperature, soft_weight)
    }

    fn rows(values: [[f32; 3]; 3]) -> Vec<Vec<f32>> {
        values.iter().map(|r| r.to_vec()).collect()
    }

    // Three images, T = 2, c = 4, beta = gamma = 1. Student logits
    // (1, 2, 3), (0.5, -1, 2), (0, 1, -1), labels 2, 0, 1; teacher logits
    // (3, 1, 0.5), (0, 1, 2), (1, 0, 2). At T = 2:
    // p = (0.1863237, 0.3071959, 0.5064804), (0.2786007, 0.1316017, 0.5897977), (0.3071959, 0.5064804, 0.1863237)
    // q = (0.6044545, 0.2223664, 0.1731791), (0.1863237, 0.3071959, 0.5064804), (0.3071959, 0.1863237, 0.5064804)
    // Rows' correlations -0.8474101, 0.7630961, -0.9607936: inter = 1 + 0.3483692 = 1.3483692
    // Columns' -0.8712705, -0.9649832, -0.3209728: intra = 1 + 0.7190755 = 1.7190755
    // hard = mean(0.4076060, 1.7413113, 0.4076060) = 0.8521744
    // dist = 0.8521744 + 4 (1.3483692 + 1.7190755) = 13.1219533
    #[test]
    fn matches_the_hand_worked_value() {
        let z = rows([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [0.0, 1.0, -1.0]]);
        let gt = rows([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        let q = rows([
            [0.604_454_5, 0.222_366_4, 0.173_179_1],
            [0.186_323_7, 0.307_195_9, 0.506_480_4],
            [0.307_195_9, 0.186_323_7, 0.506_480_4],
        ]);
        let v = value(&objective(2.0, 4.0), &z, &gt, &q);
        assert!((v - 13.121_953_3).abs() < 1e-3, "{v}");
    }

    /// Pearson's correlation ignores scale and shift: a student whose
    /// probabilities are an affine map of the teacher's pays no DIST term.
    #[test]
    fn an_affine_copy_of_the_teacher_pays_only_the_hard_term() {
        let z = rows([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [0.0, 1.0, -1.0]]);
        let gt = rows([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        let p: Vec<Vec<f32>> = z.iter().map(|r| super::super::kd::soft_targets(r, 3, 2.0)).collect();
        let v = value(&objective(2.0, 4.0), &z, &gt, &p);
        assert!((v - 0.852_174_4).abs() < 1e-4, "{v}");
    }

    #[test]
    fn its_gradient_is_the_finite_difference_one() {
        check::gradient_on_three_images(&objective(2.0, 4.0));
    }
}
