//! The losses a run minimises, one file of maths each; `study::loss` names
//! them. `loss` and `teacher_targets` below are the dispatch: the one place
//! that maps a name to its maths.
//!
//! - `kd`: the original study's `hard`, `soft`, `hard_soft`, `gt_soft`
//!   (Hinton et al. 2015).
//! - `dkd`: decoupled KD (Zhao et al., CVPR 2022).
//! - `dist`: DIST, correlation instead of KL (Huang et al., NeurIPS 2022).
//! - `logit_std`: logit standardisation (Sun et al., CVPR 2024).
//!
//! Every loss but `soft` is CE(z, gt) plus c times its own teacher term, c
//! being `[distill] soft_weight` (T^2 when absent), so the losses differ in
//! that term alone and the sweep compares like with like.

mod dist;
mod dkd;
mod kd;
mod logit_std;
mod objective;

use burn::prelude::*;

use crate::study::Loss;

pub use kd::{cross_entropy, soft_targets};
pub use objective::Objective;

/// The loss of one step, averaged over the batch.
///
/// logits: [batch, classes] student logits; onehot: [batch, classes] ground
/// truth; teacher: [batch, classes] the teacher's targets as
/// `teacher_targets` made them (none for a loss that needs no teacher).
pub fn loss<B: Backend>(o: &Objective, logits: Tensor<B, 2>, onehot: Tensor<B, 2>, teacher: Option<Tensor<B, 2>>) -> Tensor<B, 1> {
    let teacher = || teacher.clone().unwrap_or_else(|| unreachable!("{} runs get the teacher's targets", o.loss));
    match o.loss {
        Loss::Hard => kd::hard(logits, onehot),
        Loss::Soft => kd::soft(o, logits, teacher()),
        Loss::HardSoft => kd::hard_soft(o, logits, onehot, teacher()),
        Loss::GtSoft => kd::gt_soft(o, logits, onehot),
        Loss::Dkd => dkd::loss(o, logits, onehot, teacher()),
        Loss::Dist => dist::loss(o, logits, onehot, teacher()),
        Loss::LogitStd => logit_std::loss(o, logits, onehot, teacher()),
    }
}

/// What a run's steps read of the teacher, from its cached logits (row-major
/// [images, classes]), made once per run: softmax(t / T) unless the loss
/// transforms the logits first.
pub fn teacher_targets(o: &Objective, logits: &[f32], classes: usize) -> Vec<f32> {
    match o.loss {
        Loss::LogitStd => logit_std::targets(o, logits, classes),
        _ => kd::soft_targets(logits, classes, o.temperature),
    }
}

/// The checks every loss's tests make.
#[cfg(test)]
pub(crate) mod check {
    use burn::backend::{Autodiff, Flex};
    use burn::prelude::*;

    use super::{loss, Objective};
    use crate::study::config::DistillConfig;
    use crate::study::Loss;

    type AD = Autodiff<Flex>;

    /// `loss` at `temperature`, its teacher term weighted by `soft_weight`,
    /// the `[distill]` parameters at their defaults.
    pub fn objective(loss: Loss, temperature: f64, soft_weight: f64) -> Objective {
        Objective { loss, temperature, soft_weight, distill: DistillConfig::default() }
    }

    pub fn tensor<B: Backend>(rows: &[Vec<f32>]) -> Tensor<B, 2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::<B, 1>::from_floats(flat.as_slice(), &Default::default()).reshape([rows.len(), rows[0].len()])
    }

    /// The loss's value on these rows.
    pub fn value(o: &Objective, z: &[Vec<f32>], onehot: &[Vec<f32>], teacher: &[Vec<f32>]) -> f64 {
        let v = loss::<Flex>(o, tensor(z), tensor(onehot), Some(tensor(teacher)));
        f64::from(v.into_scalar())
    }

    /// `gradient_matches_finite_differences` on three images of four
    /// classes, teacher targets not the student's (three rows: DIST's
    /// intra-class term correlates each class over the batch).
    pub fn gradient_on_three_images(o: &Objective) {
        let z = [vec![1.0, 2.0, 3.0, -0.5], vec![0.5, -1.0, 2.0, 0.0], vec![0.0, 1.0, -1.0, 0.5]];
        let gt = [vec![0.0, 0.0, 1.0, 0.0], vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 0.0, 0.0]];
        let q = [vec![0.5, 0.2, 0.2, 0.1], vec![0.1, 0.3, 0.4, 0.2], vec![0.25, 0.25, 0.1, 0.4]];
        gradient_matches_finite_differences(o, &z, &gt, &q);
    }

    /// The gradient with respect to the logits from autodiff equals a
    /// central finite difference of the loss's value, entry by entry.
    pub fn gradient_matches_finite_differences(o: &Objective, z: &[Vec<f32>], onehot: &[Vec<f32>], teacher: &[Vec<f32>]) {
        let logits = tensor::<AD>(z).require_grad();
        let grads = loss(o, logits.clone(), tensor(onehot), Some(tensor(teacher))).backward();
        let got = logits.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        let h = 1e-2f32;
        let classes = z[0].len();
        for (i, &g) in got.iter().enumerate() {
            let nudged = |by: f32| {
                let mut z = z.to_vec();
                z[i / classes][i % classes] += by;
                value(o, &z, onehot, teacher)
            };
            let want = (nudged(h) - nudged(-h)) / (2.0 * f64::from(h));
            assert!(
                (f64::from(g) - want).abs() < 2e-3 * want.abs().max(1.0),
                "{}: d/dz[{i}] by autodiff {g}, by finite differences {want}",
                o.loss
            );
        }
    }
}
