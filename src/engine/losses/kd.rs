//! Hinton et al.'s knowledge distillation and the original study's losses:
//! `hard`, `soft`, `hard_soft`, `gt_soft` (docs/STUDY.md).
//!
//! All cross-entropies go through `log_softmax`, which subtracts the row maximum,
//! so T = 100 with large logits stays finite.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::objective::Objective;

/// Mean over the batch of -sum_i target_i * log softmax(logits / temperature)_i.
///
/// logits, target: [batch, classes]; target rows sum to 1.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, target: Tensor<B, 2>, temperature: f64) -> Tensor<B, 1> {
    let scaled = if temperature == 1.0 { logits } else { logits / temperature };
    let log_p = log_softmax(scaled, 1);
    (target * log_p).sum_dim(1).mean().neg()
}

/// CE(z, gt).
pub fn hard<B: Backend>(logits: Tensor<B, 2>, onehot: Tensor<B, 2>) -> Tensor<B, 1> {
    cross_entropy(logits, onehot, 1.0)
}

/// c * CE(softmax(z/T), q_T): the teacher's targets alone.
pub fn soft<B: Backend>(o: &Objective, logits: Tensor<B, 2>, teacher: Tensor<B, 2>) -> Tensor<B, 1> {
    cross_entropy(logits, teacher, o.temperature) * o.soft_weight
}

/// CE(z, gt) + c * CE(softmax(z/T), q_T).
pub fn hard_soft<B: Backend>(o: &Objective, logits: Tensor<B, 2>, onehot: Tensor<B, 2>, teacher: Tensor<B, 2>) -> Tensor<B, 1> {
    hard(logits.clone(), onehot) + soft(o, logits, teacher)
}

/// CE(z, gt) + c * CE(softmax(z/T), gt): the labels softened by T, no teacher.
pub fn gt_soft<B: Backend>(o: &Objective, logits: Tensor<B, 2>, onehot: Tensor<B, 2>) -> Tensor<B, 1> {
    hard(logits.clone(), onehot.clone()) + cross_entropy(logits, onehot, o.temperature) * o.soft_weight
}

/// softmax(logits / temperature) over rows of a row-major [n, classes] slice, in f64
/// for stability; used to turn cached teacher logits into targets once per run.
pub fn soft_targets(logits: &[f32], classes: usize, temperature: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks_exact(classes) {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64 / temperature));
        let exps: Vec<f64> = row.iter().map(|&z| (z as f64 / temperature - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        out.extend(exps.iter().map(|e| (e / sum) as f32));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{loss, Objective};
    use super::*;
    use crate::study::Loss;
    use burn::backend::Flex;

    type B = Flex;

    fn t(rows: &[[f32; 3]]) -> Tensor<B, 2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::<B, 1>::from_floats(flat.as_slice(), &Default::default()).reshape([rows.len(), 3])
    }

    fn obj(loss: Loss, temperature: f64, soft_weight: f64) -> Objective {
        super::super::check::objective(loss, temperature, soft_weight)
    }

    fn scalar(x: Tensor<B, 1>) -> f64 {
        x.into_scalar() as f64
    }

    // Worked by hand: logits z = (1, 2, 3), label = class 2.
    // log softmax(z) = z - ln(e + e^2 + e^3) = z - 3.40760596
    // hard = 3.40760596 - 3 = 0.40760596
    const Z: [f32; 3] = [1.0, 2.0, 3.0];
    const GT: [f32; 3] = [0.0, 0.0, 1.0];

    #[test]
    fn hard_matches_hand_value() {
        let v = scalar(loss(&obj(Loss::Hard, 5.0, 25.0), t(&[Z]), t(&[GT]), None));
        assert!((v - 0.407_605_96).abs() < 1e-5, "{v}");
    }

    #[test]
    fn soft_matches_hand_value() {
        // T = 2: z/T = (0.5, 1, 1.5); lse = ln(1.6487213 + 2.7182818 + 4.4816891)
        //   = ln 8.8486922 = 2.1802696
        // log p = (-1.6802696, -1.1802696, -0.6802696)
        // q = (0.2, 0.3, 0.5): CE = 0.2*1.6802696 + 0.3*1.1802696 + 0.5*0.6802696
        //   = 0.3360539 + 0.3540809 + 0.3401348 = 1.0302696
        let q = [0.2, 0.3, 0.5];
        let v = scalar(loss(&obj(Loss::Soft, 2.0, 1.0), t(&[Z]), t(&[GT]), Some(t(&[q]))));
        assert!((v - 1.030_269_6).abs() < 1e-5, "{v}");
        // c weights it as it weights the other losses' soft terms.
        let v = scalar(loss(&obj(Loss::Soft, 2.0, 4.0), t(&[Z]), t(&[GT]), Some(t(&[q]))));
        assert!((v - 4.0 * 1.030_269_6).abs() < 1e-4, "{v}");
    }

    #[test]
    fn hard_soft_and_gt_soft_match_hand_values() {
        let q = [0.2, 0.3, 0.5];
        // hard_soft = 0.4076060 + 4 * 1.0302696 = 4.5286844
        let v = scalar(loss(&obj(Loss::HardSoft, 2.0, 4.0), t(&[Z]), t(&[GT]), Some(t(&[q]))));
        assert!((v - 4.528_684_4).abs() < 1e-5, "{v}");
        // gt_soft: the soft term against gt at T = 2 is -log p_2 = 0.6802696;
        // 0.4076060 + 4 * 0.6802696 = 3.1286844
        let v = scalar(loss(&obj(Loss::GtSoft, 2.0, 4.0), t(&[Z]), t(&[GT]), None));
        assert!((v - 3.128_684_4).abs() < 1e-5, "{v}");
    }

    #[test]
    fn batch_mean() {
        // second row: uniform logits -> hard = ln 3 = 1.09861229
        let v = scalar(loss(&obj(Loss::Hard, 1.0, 1.0), t(&[Z, [0.0; 3]]), t(&[GT, GT]), None));
        assert!((v - (0.407_605_96 + 1.098_612_29) / 2.0).abs() < 1e-5, "{v}");
    }

    #[test]
    fn stable_at_high_temperature_and_large_logits() {
        let z = [[1.0e4, -1.0e4, 3.0e3]];
        for kind in [Loss::Hard, Loss::Soft, Loss::HardSoft, Loss::GtSoft] {
            let q = soft_targets(&[9.0e3, -9.0e3, 0.0], 3, 100.0);
            let q = t(&[[q[0], q[1], q[2]]]);
            let v = scalar(loss(&obj(kind, 100.0, 1.0e4), t(&z), t(&[GT]), Some(q)));
            assert!(v.is_finite(), "{kind}: {v}");
        }
    }

    #[test]
    fn soft_targets_flatten_with_temperature() {
        let q1 = soft_targets(&[1.0, 2.0, 3.0], 3, 1.0);
        let q100 = soft_targets(&[1.0, 2.0, 3.0], 3, 100.0);
        assert!((q1.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((q1[2] - 0.665_240_9).abs() < 1e-6);
        assert!(q100.iter().all(|&p| (p - 1.0 / 3.0).abs() < 0.01));
    }

    /// The gradient of each loss with respect to the student's logits equals
    /// the textbook one, row by row and averaged over the batch:
    /// d/dz CE(z, y) = softmax(z) - y, and d/dz CE(softmax(z/T), q) =
    /// (softmax(z/T) - q) / T, the soft term weighted by c.
    #[test]
    fn gradients_match_the_hand_derived_ones() {
        use burn::backend::Autodiff;
        type AD = Autodiff<Flex>;
        let z = [[1.0f32, 2.0, 3.0], [0.5, -1.0, 2.0]];
        let y = [[0.0f32, 0.0, 1.0], [1.0, 0.0, 0.0]];
        let q = [[0.2f32, 0.3, 0.5], [0.6, 0.1, 0.3]];
        let (t, c) = (2.0, 4.0);
        let softmax = |row: &[f32; 3], t: f64| -> Vec<f64> {
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 / t).exp()).collect();
            let sum: f64 = e.iter().sum();
            e.iter().map(|v| v / sum).collect()
        };
        let device = Default::default();
        let tensor = |rows: &[[f32; 3]; 2]| {
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            Tensor::<AD, 1>::from_floats(flat.as_slice(), &device).reshape([2, 3])
        };
        for kind in [Loss::Hard, Loss::Soft, Loss::HardSoft, Loss::GtSoft] {
            let logits = tensor(&z).require_grad();
            let value = loss(&obj(kind, t, c), logits.clone(), tensor(&y), Some(tensor(&q)));
            let grads = value.backward();
            let got = logits.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
            for b in 0..2 {
                let (p1, pt) = (softmax(&z[b], 1.0), softmax(&z[b], t));
                for k in 0..3 {
                    let hard = p1[k] - y[b][k] as f64;
                    let soft = |target: f64| (pt[k] - target) / t;
                    let want = match kind {
                        Loss::Hard => hard,
                        Loss::Soft => c * soft(q[b][k] as f64),
                        Loss::HardSoft => hard + c * soft(q[b][k] as f64),
                        Loss::GtSoft => hard + c * soft(y[b][k] as f64),
                        _ => unreachable!("the original study's losses only"),
                    } / 2.0;
                    assert!((got[b * 3 + k] as f64 - want).abs() < 1e-5, "{kind}: d/dz[{b}][{k}] = {}, by hand {want}", got[b * 3 + k]);
                }
            }
        }
    }

    /// The shared finite-difference check agrees with the hand-derived
    /// gradients above, so it can stand alone for the losses without them.
    #[test]
    fn gradients_match_finite_differences() {
        let z = [vec![1.0, 2.0, 3.0], vec![0.5, -1.0, 2.0]];
        let y = [vec![0.0, 0.0, 1.0], vec![1.0, 0.0, 0.0]];
        let q = [vec![0.2, 0.3, 0.5], vec![0.6, 0.1, 0.3]];
        for kind in [Loss::Hard, Loss::Soft, Loss::HardSoft, Loss::GtSoft] {
            super::super::check::gradient_matches_finite_differences(&obj(kind, 2.0, 4.0), &z, &y, &q);
        }
    }
}
