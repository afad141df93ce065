//! One optimisation step (forward, loss, backward, Adam) and the schedule it
//! follows: what a run repeats, and what `kdtui bench` times.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};

use super::optimizer::StudyAdam;
use burn::prelude::*;

use crate::engine::data::batcher::Batch;
use crate::engine::losses::{self, Objective};
use crate::engine::model::{Cnn, TrainBackend};
use crate::study::Config;

/// One optimisation step on `batch`: forward, loss, backward, Adam at `lr`.
/// Returns the updated model and the step's metrics, still on the device
/// (add them to a `Tally`, read it when they are wanted). Nothing here waits
/// for the device: on a GPU a read after every step would stall the queue.
/// A non-finite loss is stepped past; the tally's next read shows it.
///
/// The benchmark (`kdtui bench`) times this same function.
pub fn train_step<B: TrainBackend, O: Optimizer<Cnn<B>, B>>(
    model: Cnn<B>,
    optim: &mut O,
    batch: Batch<B>,
    objective: Objective,
    lr: f64,
) -> (Cnn<B>, StepMetrics<B::InnerBackend>) {
    let (grads, metrics) = device_gradients(&model, batch, objective);
    (optim.step(lr, model, grads), metrics)
}

/// A step's loss summed over its images and its number of right answers,
/// as one tensor [2] on the device.
pub struct StepMetrics<B: Backend>(Tensor<B, 1>);

/// Forward, loss and backward of one batch: the parameters' gradients (none
/// when the loss is not finite), the loss and the number of correct
/// predictions, read from the device.
pub fn gradients<B: TrainBackend>(model: &Cnn<B>, batch: Batch<B>, objective: Objective) -> (Option<GradientsParams>, f64, usize) {
    let images = batch.labels.dims()[0];
    let (grads, metrics) = device_gradients(model, batch, objective);
    let mut tally = Tally::new();
    tally.add(metrics, images);
    let read = tally.read();
    let loss = read.loss_sum / images as f64;
    (loss.is_finite().then_some(grads), loss, read.hits)
}

fn device_gradients<B: TrainBackend>(
    model: &Cnn<B>,
    batch: Batch<B>,
    objective: Objective,
) -> (GradientsParams, StepMetrics<B::InnerBackend>) {
    // [b, 3, 32, 32] -> [b, 10]
    let logits = model.forward(batch.images);
    let images = batch.labels.dims()[0];
    let loss = losses::loss(&objective, logits.clone(), batch.onehot, batch.soft);
    let hits = logits.inner().argmax(1).squeeze_dim::<1>(1).equal(batch.labels.inner()).int().sum().float();
    let metrics = StepMetrics(Tensor::cat(vec![loss.clone().inner().mul_scalar(images as f64), hits], 0));
    (GradientsParams::from_grads(loss.backward(), model), metrics)
}

/// Steps' metrics summed on the device since the last read.
pub struct Tally<B: Backend> {
    sum: Option<Tensor<B, 1>>,
    images: usize,
    steps: usize,
}

/// What a `Tally` held: the sum over its steps of loss x images, right
/// answers, images and steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Read {
    pub loss_sum: f64,
    pub hits: usize,
    pub images: usize,
    pub steps: usize,
}

impl Read {
    /// The mean loss per image (NaN when a step's loss was not finite).
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.images.max(1) as f64
    }
}

/// Reads of training metrics from the device since the process started:
/// a test checks that steps between two reads make none.
#[cfg(feature = "test-hooks")]
static HOST_READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(feature = "test-hooks")]
pub fn host_reads() -> usize {
    HOST_READS.load(std::sync::atomic::Ordering::Relaxed)
}

impl<B: Backend> Tally<B> {
    pub fn new() -> Self {
        Self { sum: None, images: 0, steps: 0 }
    }

    pub fn add(&mut self, step: StepMetrics<B>, images: usize) {
        self.sum = Some(match self.sum.take() {
            Some(sum) => sum + step.0,
            None => step.0,
        });
        self.images += images;
        self.steps += 1;
    }

    /// One read from the device (waits for the steps added), and empty again.
    pub fn read(&mut self) -> Read {
        let (loss_sum, hits) = match self.sum.take() {
            Some(sum) => {
                #[cfg(feature = "test-hooks")]
                HOST_READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let v = sum.into_data().convert::<f32>().into_vec::<f32>().expect("f32 metrics");
                (f64::from(v[0]), v[1].round() as usize)
            }
            None => (0.0, 0),
        };
        let read = Read { loss_sum, hits, images: self.images, steps: self.steps };
        (self.images, self.steps) = (0, 0);
        read
    }
}

impl<B: Backend> Default for Tally<B> {
    fn default() -> Self {
        Self::new()
    }
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
        // The quarters tell a cosine from a straight line (0.075 and 0.025).
        let cosine = |x: f64| 0.05 * (1.0 + (std::f64::consts::PI * x).cos());
        assert!((learning_rate(0.1, 25, 100, 0) - cosine(0.25)).abs() < 1e-12);
        assert!((learning_rate(0.1, 75, 100, 0) - cosine(0.75)).abs() < 1e-12);
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
