//! Adam as the study uses it, with the weight decay where the config puts it:
//! `l2` adds `weight_decay * w` to the gradient before Adam's normalisation
//! (what an L2 term of the loss does), `decoupled` shrinks the weights by
//! `lr * weight_decay` outside it (AdamW, Loshchilov and Hutter 2019).
//!
//! Why both: with `l2`, the decay term takes part in Adam's per-parameter
//! normalisation, and where the loss's own gradient is tiny (the `soft` loss
//! at high T, whose gradient shrinks as 1/T^2) the decay dominates it and the
//! student learns little (docs/STUDY.md). burn's `Adam` has only the
//! first, its `AdamW` only the second, and a run's checkpoint must hold one
//! optimizer type whichever the config picks: hence this one.
//!
//! One step of one tensor is a backend op (`CnnBackend::adam_step`): burn's
//! tensor ops by default, one fused pass on the CPU backend.

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{LearningRate, SimpleOptimizer};
use burn::prelude::*;
use burn::record::Record;

use crate::engine::model::kernels::AdamHyper;
use crate::engine::model::{Cnn, CnnBackend, TrainBackend};
use crate::study::config::{Config, WeightDecay};

#[derive(Debug, Clone, Copy)]
pub struct StudyAdam {
    hyper: AdamHyper,
}

/// One tensor's moments and the steps taken.
#[derive(Record, Clone)]
pub struct StudyAdamState<B: Backend, const D: usize> {
    pub time: usize,
    pub moment_1: Tensor<B, D>,
    pub moment_2: Tensor<B, D>,
}

impl StudyAdam {
    pub fn new(config: &Config) -> Self {
        let train = &config.train;
        Self {
            hyper: AdamHyper {
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: train.adam_epsilon,
                weight_decay: train.weight_decay,
                decoupled: train.weight_decay_mode == WeightDecay::Decoupled,
            },
        }
    }

    /// The optimizer of a model, as every run starts with it.
    pub fn init<B: TrainBackend>(self) -> OptimizerAdaptor<Self, Cnn<B>, B>
    where
        Cnn<B>: AutodiffModule<B>,
    {
        OptimizerAdaptor::from(self)
    }
}

impl<B: CnnBackend> SimpleOptimizer<B> for StudyAdam {
    type State<const D: usize> = StudyAdamState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let (time, moments) = match state {
            Some(s) => (s.time + 1, Some((s.moment_1, s.moment_2))),
            None => (1, None),
        };
        let (param, moment_1, moment_2) = B::adam_step(tensor, grad, moments, time, lr, self.hyper);
        (param, Some(StudyAdamState { time, moment_1, moment_2 }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        StudyAdamState { time: state.time, moment_1: state.moment_1.to_device(device), moment_2: state.moment_2.to_device(device) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::{AdamConfig, AdamWConfig};

    /// Three steps of one tensor, with gradients that change sign and scale.
    fn run<O: SimpleOptimizer<Flex>>(optim: &O) -> Vec<f32> {
        let device = Default::default();
        let mut w = Tensor::<Flex, 2>::from_floats([[0.5, -1.0, 2.0], [0.0, 0.3, -0.7]], &device);
        let mut state = None;
        for step in 0..3 {
            let scale = [1.0, -0.01, 1e-4][step];
            let grad = Tensor::<Flex, 2>::from_floats([[0.2, -0.4, 0.1], [1.0, 0.0, -0.3]], &device).mul_scalar(scale);
            let (next, s) = optim.step(1e-2, w, grad, state);
            (w, state) = (next, s);
        }
        w.into_data().to_vec::<f32>().unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    fn config(mode: WeightDecay) -> Config {
        let mut c = Config::default();
        c.train.weight_decay = 0.05;
        c.train.weight_decay_mode = mode;
        c.train.adam_epsilon = 1e-8;
        c
    }

    /// `l2` is burn's Adam with its (coupled) weight decay; `decoupled` is
    /// burn's AdamW: the same updates, step by step.
    #[test]
    fn both_modes_are_the_adam_they_name() {
        let burn_adam = AdamConfig::new().with_epsilon(1e-8).with_weight_decay(Some(WeightDecayConfig::new(0.05))).build();
        close(&run(&StudyAdam::new(&config(WeightDecay::L2))), &run(&burn_adam));
        let burn_adamw = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.05).build();
        close(&run(&StudyAdam::new(&config(WeightDecay::Decoupled))), &run(&burn_adamw));
        // And they differ from each other: the decay is not where it was.
        let (l2, decoupled) = (run(&StudyAdam::new(&config(WeightDecay::L2))), run(&StudyAdam::new(&config(WeightDecay::Decoupled))));
        assert!(l2.iter().zip(&decoupled).any(|(a, b)| (a - b).abs() > 1e-4), "{l2:?} {decoupled:?}");
    }
}
