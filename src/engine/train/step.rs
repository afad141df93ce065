//! One optimisation step (forward, loss, backward, Adam) and the schedule it
//! follows: what a run repeats, and what `kdtui bench` times.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};

use super::optimizer::StudyAdam;
use burn::prelude::*;

use crate::engine::data::batcher::Batch;
use crate::engine::losses;
use crate::engine::model::{Cnn, TrainBackend};
use crate::study::{Config, Loss};

/// What a step minimises: the run's loss at its temperature, soft term weighted by c.
#[derive(Debug, Clone, Copy)]
pub struct Objective {
    pub loss: Loss,
    pub temperature: f64,
    pub c: f64,
}

/// One optimisation step on `batch`: forward, loss, backward, Adam at `lr`.
/// Returns the updated model, the loss and the number of correct predictions.
/// A non-finite loss is returned, not stepped past: the caller decides.
///
/// The benchmark (`kdtui bench`) times this same function.
pub fn train_step<B: TrainBackend, O: Optimizer<Cnn<B>, B>>(
    model: Cnn<B>,
    optim: &mut O,
    batch: Batch<B>,
    objective: Objective,
    lr: f64,
) -> (Cnn<B>, f64, usize) {
    match gradients(&model, batch, objective) {
        (Some(grads), loss, hits) => (optim.step(lr, model, grads), loss, hits),
        (None, loss, _) => (model, loss, 0),
    }
}

/// Forward, loss and backward of one batch: the parameters' gradients (none
/// when the loss is not finite), the loss and the number of correct
/// predictions.
pub fn gradients<B: TrainBackend>(model: &Cnn<B>, batch: Batch<B>, objective: Objective) -> (Option<GradientsParams>, f64, usize) {
    // [b, 3, 32, 32] -> [b, 10]
    let logits = model.forward(batch.images);
    let Objective { loss, temperature, c } = objective;
    let loss = losses::loss(loss, logits.clone(), batch.onehot, batch.soft, temperature, c);
    let loss_value: f64 = loss.clone().into_scalar().elem();
    if !loss_value.is_finite() {
        return (None, loss_value, 0);
    }
    let hits: i64 = logits.argmax(1).squeeze_dim::<1>(1).equal(batch.labels).int().sum().into_scalar().elem();
    (Some(GradientsParams::from_grads(loss.backward(), model)), loss_value, hits as usize)
}

/// Every parameter's gradient in `grads`, flattened in the model's parameter
/// order (zeros for a parameter without one): what tests compare.
pub fn flat_gradients<B: TrainBackend>(model: &Cnn<B>, grads: &GradientsParams) -> Vec<f32> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: Vec<f32>,
    }
    impl<B: TrainBackend> ModuleVisitor<B> for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            match self.grads.get::<B::InnerBackend, D>(param.id) {
                Some(g) => self.out.extend(g.into_data().convert::<f32>().into_vec::<f32>().expect("f32 gradients")),
                None => self.out.extend(std::iter::repeat_n(0.0, param.shape().num_elements())),
            }
        }
    }
    let mut collect = Collect { grads, out: Vec::new() };
    model.visit(&mut collect);
    collect.out
}

/// A fresh Adam with the config's settings, as every run starts with.
pub fn adam<B: TrainBackend>(config: &Config) -> impl Optimizer<Cnn<B>, B> {
    StudyAdam::new(config).init::<B>()
}

/// The learning rate of `step` of `total`: a linear rise from 0 over the
/// first `warmup` steps (Adam's first steps, on moments estimated from a
/// handful of batches, are the least reliable), then a cosine decay from
/// `base` towards 0 at `total`, so a run ends on small steps instead of
/// bouncing at the full rate.
pub fn learning_rate(base: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / total.saturating_sub(warmup).max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

#[cfg(test)]
mod tests {
    use super::learning_rate;

    #[test]
    fn cosine_schedule_starts_full_and_decays() {
        assert_eq!(learning_rate(0.1, 0, 100, 0), 0.1);
        assert!((learning_rate(0.1, 50, 100, 0) - 0.05).abs() < 1e-12);
        assert!(learning_rate(0.1, 99, 100, 0) < 0.001);
        assert!(learning_rate(0.1, 99, 100, 0) > 0.0);
    }

    #[test]
    fn warm_up_rises_to_the_peak_then_the_cosine_takes_over() {
        assert!((learning_rate(0.1, 0, 110, 10) - 0.01).abs() < 1e-12);
        assert!((learning_rate(0.1, 4, 110, 10) - 0.05).abs() < 1e-12);
        assert_eq!(learning_rate(0.1, 10, 110, 10), 0.1);
        assert!((learning_rate(0.1, 60, 110, 10) - 0.05).abs() < 1e-12);
        assert!(learning_rate(0.1, 109, 110, 10) < 0.001);
    }
}
