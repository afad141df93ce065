//! Decoupled knowledge distillation (Zhao et al., "Decoupled Knowledge
//! Distillation", CVPR 2022): Hinton's KL split into a target-class term
//! (TCKD: the binary "right class or not" probabilities) and a non-target
//! term (NCKD: the distribution over the wrong classes alone), weighted
//! apart so the second is not damped when the teacher is confident.
//!
//! dkd = CE(z, gt) + c * (alpha * TCKD + beta * NCKD), both at temperature T,
//! alpha and beta from `[distill.dkd]`.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::kd::hard;
use super::objective::Objective;

/// Below every real logit / T: the softmax over the other classes.
const MASK: f64 = 1.0e4;
/// Floor of a probability under a log: 0 * log 0 counts as 0.
const TINY: f64 = 1.0e-12;

/// logits, onehot, teacher (softmax of the teacher's logits / T): [batch, classes].
pub fn loss<B: Backend>(o: &Objective, logits: Tensor<B, 2>, onehot: Tensor<B, 2>, teacher: Tensor<B, 2>) -> Tensor<B, 1> {
    let classes = logits.dims()[1] as f64;
    let others = onehot.clone().neg().add_scalar(1.0);
    let scaled = logits.clone() / o.temperature;
    let log_p = log_softmax(scaled.clone(), 1);
    let log_p_others = log_softmax(scaled - onehot.clone() * MASK, 1);
    // Student, [batch, 1]: log p_t, and log(1 - p_t) = log p_j - log p^_j for
    // any wrong class j (their mean over the wrong classes is exact, and
    // stays finite where 1 - p_t rounds to 0).
    let log_pt = (log_p.clone() * onehot.clone()).sum_dim(1);
    let log_not_pt = ((log_p - log_p_others.clone()) * others.clone()).sum_dim(1) / (classes - 1.0);
    // Teacher, [batch, 1].
    let qt = (teacher.clone() * onehot.clone()).sum_dim(1);
    let not_qt = qt.clone().neg().add_scalar(1.0);
    let xlogx = |x: Tensor<B, 2>| x.clone() * x.clamp_min(TINY).log();
    let tckd = xlogx(qt.clone()) - qt * log_pt + xlogx(not_qt.clone()) - not_qt.clone() * log_not_pt;
    let q_others = teacher * others / not_qt.clamp_min(TINY);
    let nckd = (xlogx(q_others.clone()) - q_others * log_p_others).sum_dim(1);
    let dkd = o.distill.dkd;
    let decoupled = (tckd * dkd.alpha + nckd * dkd.beta).mean();
    hard(logits, onehot) + decoupled * o.soft_weight
}

#[cfg(test)]
mod tests {
    use super::super::check::{self, value};
    use super::super::Objective;
    use crate::study::Loss;

    fn objective(temperature: f64, soft_weight: f64) -> Objective {
        check::objective(Loss::Dkd, temperature, soft_weight)
    }

    // z = (1, 2, 3), label 2, T = 2, c = 4, alpha 1, beta 8. The teacher's
    // logits (3, 1, 0.5) at T = 2 give q = (0.6044545, 0.2223664, 0.1731791);
    // the student's p = softmax(z/2) = (0.1863237, 0.3071959, 0.5064804).
    // TCKD = 0.1731791 ln(0.1731791/0.5064804) + 0.8268209 ln(0.8268209/0.4935196)
    //      = -0.1858488 + 0.4266607 = 0.2408119
    // Wrong classes: q^ = (0.7310586, 0.2689414), p^ = (0.3775407, 0.6224593)
    // NCKD = 0.7310586 ln(1.9363703) + 0.2689414 ln(0.4320626) = 0.4830947 - 0.2256915 = 0.2574032
    // hard = 0.4076060; dkd = 0.4076060 + 4 (0.2408119 + 8 x 0.2574032) = 9.6077548
    #[test]
    fn matches_the_hand_worked_value() {
        let q = vec![0.604_454_5, 0.222_366_4, 0.173_179_1];
        let v = value(&objective(2.0, 4.0), &[vec![1.0, 2.0, 3.0]], &[vec![0.0, 0.0, 1.0]], &[q]);
        assert!((v - 9.607_754_8).abs() < 1e-4, "{v}");
    }

    #[test]
    fn a_student_that_is_its_teacher_pays_only_the_hard_term() {
        let z = vec![1.0, 2.0, 3.0];
        let p = super::super::kd::soft_targets(&z, 3, 5.0);
        let v = value(&objective(5.0, 25.0), &[z], &[vec![0.0, 0.0, 1.0]], &[p]);
        assert!((v - 0.407_606).abs() < 1e-4, "{v}");
    }

    #[test]
    fn its_gradient_is_the_finite_difference_one() {
        check::gradient_on_three_images(&objective(2.0, 4.0));
    }
}
