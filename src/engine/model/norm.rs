//! BatchNorm over [batch, channels, height, width], with the activation that
//! follows it in the same op.
//!
//! burn's own `BatchNorm` broadcasts [1, C, 1, 1] statistics against the input
//! and transposes it to reduce; on `flex` both fall off the SIMD paths onto a
//! scalar strided iterator, which took about a third of a teacher training
//! step (perf, batch 128). And the activation quantizer in tensor ops is half
//! a dozen more passes each way, each allocating. Training goes through
//! `kernels::norm_act`, one op with its own backward (on `flex`, kdtui's
//! kernels: a pass for the statistics and one for the activated output, two
//! back); inference through `kernels::affine_act`, one pass with the running
//! statistics. The arithmetic is burn's BatchNorm's, which the test below
//! holds it to.

use burn::module::{Param, RunningState};
use burn::nn::Initializer;
use burn::prelude::*;

use super::kernels::{affine_act, affine_act_pool, norm_act, norm_act_pool, Activation, CnnBackend};

#[derive(Module, Debug)]
pub struct BatchNorm2d<B: Backend> {
    gamma: Param<Tensor<B, 1>>,
    beta: Param<Tensor<B, 1>>,
    running_mean: RunningState<Tensor<B, 1>>,
    running_var: RunningState<Tensor<B, 1>>,
    momentum: f64,
    epsilon: f64,
}

impl<B: Backend> BatchNorm2d<B> {
    pub fn new(channels: usize, device: &B::Device) -> Self {
        Self {
            gamma: Initializer::Ones.init([channels], device),
            beta: Initializer::Zeros.init([channels], device),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            momentum: 0.1,
            epsilon: 1e-5,
        }
    }
}

impl<B: Backend> BatchNorm2d<B> {
    /// gamma, beta, running mean, running variance: what a model file stores.
    pub fn parts(&self) -> [Tensor<B, 1>; 4] {
        [self.gamma.val(), self.beta.val(), self.running_mean.value(), self.running_var.value()]
    }

    /// The same norm with its four vectors replaced (in `parts` order).
    pub fn with_parts(self, [gamma, beta, mean, var]: [Tensor<B, 1>; 4]) -> Self {
        Self {
            gamma: Param::from_tensor(gamma),
            beta: Param::from_tensor(beta),
            running_mean: RunningState::new(mean),
            running_var: RunningState::new(var),
            ..self
        }
    }
}

impl<B: CnnBackend> BatchNorm2d<B> {
    /// [b, c, h, w] -> [b, c, h, w]; batch statistics while autodiff is on
    /// (training), running statistics otherwise.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_act(x, Activation::Identity)
    }

    /// `act` of `forward`, in one op.
    pub fn forward_act(&self, x: Tensor<B, 4>, act: Activation) -> Tensor<B, 4> {
        self.forward_with(x, act, false)
    }

    /// `act` of `forward` and a 2x2 max-pool, in one op: [b, c, h, w] -> [b, c, h/2, w/2].
    pub fn forward_act_pool(&self, x: Tensor<B, 4>, act: Activation) -> Tensor<B, 4> {
        self.forward_with(x, act, true)
    }

    fn forward_with(&self, x: Tensor<B, 4>, act: Activation, pool: bool) -> Tensor<B, 4> {
        if !B::ad_enabled(&x.device()) {
            let scale = self.gamma.val() / (self.running_var.value() + self.epsilon).sqrt();
            let shift = self.beta.val() - self.running_mean.value() * scale.clone();
            return if pool { affine_act_pool(x, scale, shift, act) } else { affine_act(x, scale, shift, act) };
        }
        let (gamma, beta) = (self.gamma.val(), self.beta.val());
        let (out, mean, var) =
            if pool { norm_act_pool(x, gamma, beta, self.epsilon, act) } else { norm_act(x, gamma, beta, self.epsilon, act) };
        let m = self.momentum;
        let update = |state: &RunningState<Tensor<B, 1>>, batch: Tensor<B, 1>| {
            let old = state.value_sync();
            state.update((old * (1.0 - m) + batch.detach() * m).detach());
        };
        update(&self.running_mean, mean);
        update(&self.running_var, var);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::nn::BatchNormConfig;

    type AD = Autodiff<Flex>;

    /// Same outputs, gradients and running statistics as burn's BatchNorm,
    /// to a few parts in a million: swapping the biased and unbiased
    /// variance (0.42% on the outputs at these 120 values a channel, about
    /// 0.26% on the running variance after one step) fails it.
    #[test]
    fn matches_burns_batchnorm() {
        use crate::engine::model::kernels::tests::{assert_close, normal, values};
        let device = Default::default();
        let ours = BatchNorm2d::<AD>::new(3, &device);
        let theirs = BatchNormConfig::new(3).init::<AD>(&device);
        let shape = [4, 3, 5, 6];
        let tensor = |seed| Tensor::<AD, 4>::from_data(burn::tensor::TensorData::new(normal(360, seed), shape), &device);
        let x = tensor(1) * 2.0 + 1.0;
        let weights = tensor(2);

        let xa = x.clone().require_grad();
        let ya = ours.forward(xa.clone());
        let ga = (ya.clone() * weights.clone()).sum().backward();
        let xb = x.clone().require_grad();
        let yb = theirs.forward(xb.clone());
        let gb = (yb.clone() * weights).sum().backward();

        assert_close(&values(ya), &values(yb), 1e-5, "outputs");
        assert_close(&values(xa.grad(&ga).unwrap()), &values(xb.grad(&gb).unwrap()), 1e-4, "dx");
        assert_close(&values(ours.running_mean.value()), &values(theirs.running_mean.value()), 1e-5, "running mean");
        assert_close(&values(ours.running_var.value()), &values(theirs.running_var.value()), 1e-5, "running var");

        // Inference mode uses the running statistics, as burn's does.
        let x_inner = x.inner();
        let yi = ours.valid().forward(x_inner.clone());
        let yj = theirs.valid().forward(x_inner);
        assert_close(&values(yi), &values(yj), 1e-5, "inference outputs");
    }
}
