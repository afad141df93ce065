//! One optimisation step (forward, loss, backward, Adam) and the schedule it
//! follows: what a run repeats, and what `kdtui bench` times.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
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
    // [b, 3, 32, 32] -> [b, 10]
    let logits = model.forward(batch.images);
    let Objective { loss, temperature, c } = objective;
    let loss = losses::loss(loss, logits.clone(), batch.onehot, batch.soft, temperature, c);
    let loss_value: f64 = loss.clone().into_scalar().elem();
    if !loss_value.is_finite() {
        return (model, loss_value, 0);
    }
    let hits: i64 = logits.argmax(1).squeeze_dim::<1>(1).equal(batch.labels).int().sum().into_scalar().elem();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optim.step(lr, model, grads), loss_value, hits as usize)
}

/// A fresh Adam with the config's weight decay, as every run starts with.
pub fn adam<B: TrainBackend>(config: &Config) -> impl Optimizer<Cnn<B>, B> {
    AdamConfig::new().with_weight_decay(Some(WeightDecayConfig::new(config.train.weight_decay as f32))).init::<B, Cnn<B>>()
}

/// Cosine decay from `base` at step 0 towards 0 at `total`: short runs end
/// on small steps instead of bouncing at the full learning rate.
pub fn cosine_lr(base: f64, step: usize, total: usize) -> f64 {
    let progress = step as f64 / total.max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

#[cfg(test)]
mod tests {
    use super::cosine_lr;

    #[test]
    fn cosine_schedule_starts_full_and_decays() {
        assert_eq!(cosine_lr(0.1, 0, 100), 0.1);
        assert!((cosine_lr(0.1, 50, 100) - 0.05).abs() < 1e-12);
        assert!(cosine_lr(0.1, 99, 100) < 0.001);
        assert!(cosine_lr(0.1, 99, 100) > 0.0);
    }
}
