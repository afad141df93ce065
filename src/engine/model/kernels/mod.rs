//! The network's 3x3 convolution (stride 1, padding 1, no bias), 2x2 max
//! pooling and training-mode BatchNorm, with kdtui's own CPU kernels.
//!
//! burn 0.21 computes a convolution's weight gradient for every backend as a
//! second convolution over the batch-transposed input with the output
//! gradient as its kernel (`conv2d_weight_grad_no_groups`): on `flex` that is
//! an im2col whose matrix products have 9 rows, and the weight gradients took
//! most of a teacher step (perf, batch 128). Here, on `flex`, forward, input
//! gradient and weight gradient are each one im2col/col2im per image and one
//! well-shaped matrix product (gemm, AVX-512 where the CPU has it), images
//! spread over rayon's threads. `flex`'s max pooling goes through a general
//! 3D window loop that took a fifth of a step once the convolutions were
//! fixed; a 2x2 window needs none of that. BatchNorm in tensor ops is a
//! dozen passes over the activations each way; here it is two. Other
//! backends (CUDA) keep burn's kernels (BatchNorm: the same formulas in
//! burn's tensor ops).
//!
//! `CnnBackend` is the hook: its default methods are burn's ops (here);
//! `Flex` overrides them (`flex.rs`, running the slice kernels of `cpu/`),
//! and `Autodiff<B>` records each op with a backward that calls B's
//! gradient methods (`autodiff.rs`).

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{ConvOptions, FloatTensor, IntTensor};
use burn::tensor::TensorPrimitive;

mod autodiff;
pub mod cpu;
mod flex;

pub(super) fn options() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

/// A backend that can run the network's convolution, pooling and BatchNorm.
/// The defaults are burn's ops.
/// Adam's settings for one step (`CnnBackend::adam_step`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHyper {
    pub beta_1: f64,
    pub beta_2: f64,
    pub epsilon: f64,
    pub weight_decay: f64,
    /// Decay the weights outside Adam's normalisation (AdamW) instead of
    /// adding `weight_decay * w` to the gradient (L2).
    pub decoupled: bool,
}

pub trait CnnBackend: Backend {
    /// x [b, cin, h, w], weight [cout, cin, 3, 3] -> [b, cout, h, w]
    fn conv3x3(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::conv2d(x, weight, None, options())
    }

    /// d loss / d x, given d loss / d output.
    fn conv3x3_x_grad(x: FloatTensor<Self>, weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, grad, options())
    }

    /// d loss / d weight, given d loss / d output.
    fn conv3x3_weight_grad(x: FloatTensor<Self>, weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::conv2d_weight_backward(x, weight, grad, options())
    }

    /// x [b, c, h, w] -> ([b, c, h/2, w/2], where each maximum came from):
    /// 2x2 windows, stride 2.
    fn max_pool2x2(x: FloatTensor<Self>) -> (FloatTensor<Self>, IntTensor<Self>) {
        let out = Self::max_pool2d_with_indices(x, [2, 2], [2, 2], [0, 0], [1, 1], false);
        (out.output, out.indices)
    }

    /// d loss / d x, given d loss / d output and `max_pool2x2`'s indices.
    fn max_pool2x2_grad(x: FloatTensor<Self>, grad: FloatTensor<Self>, indices: IntTensor<Self>) -> FloatTensor<Self> {
        Self::max_pool2d_with_indices_backward(x, [2, 2], [2, 2], [0, 0], [1, 1], false, grad, indices).x_grad
    }

    /// BatchNorm with batch statistics over x [b, c, h, w]:
    /// (gamma * (x - mean) / sqrt(var + eps) + beta, mean [c], biased var [c]).
    fn batch_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, eps: f64) -> [FloatTensor<Self>; 3] {
        batch_norm_default::<Self>(x, gamma, beta, eps)
    }

    /// d loss / d (x, gamma, beta) of `batch_norm`, given d loss / d output
    /// and the batch's mean and var.
    fn batch_norm_grad(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        eps: f64,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        batch_norm_grad_default::<Self>(x, gamma, mean, var, eps, grad)
    }

    /// One Adam step of one parameter tensor: (the parameter, the first and
    /// the second moment) after step number `time` (from 1) at learning rate
    /// `lr`. `moments` is none at the first step: they start at zero.
    fn adam_step<const D: usize>(
        param: Tensor<Self, D>,
        grad: Tensor<Self, D>,
        moments: Option<(Tensor<Self, D>, Tensor<Self, D>)>,
        time: usize,
        lr: f64,
        h: AdamHyper,
    ) -> (Tensor<Self, D>, Tensor<Self, D>, Tensor<Self, D>) {
        let grad = if h.decoupled || h.weight_decay == 0.0 { grad } else { grad + param.clone().mul_scalar(h.weight_decay) };
        let (m, v) = match moments {
            Some((m, v)) => (
                m.mul_scalar(h.beta_1) + grad.clone().mul_scalar(1.0 - h.beta_1),
                v.mul_scalar(h.beta_2) + grad.square().mul_scalar(1.0 - h.beta_2),
            ),
            None => (grad.clone().mul_scalar(1.0 - h.beta_1), grad.square().mul_scalar(1.0 - h.beta_2)),
        };
        let (factor, eps) = adam_factors(time, h);
        let update = m.clone().mul_scalar(factor).div(v.clone().sqrt().add_scalar(eps));
        let param = if h.decoupled && h.weight_decay != 0.0 { param.mul_scalar(1.0 - lr * h.weight_decay) } else { param };
        (param - update.mul_scalar(lr), m, v)
    }
}

/// Adam's bias corrections at step `time`, folded as burn's Adam folds them:
/// update = m * factor / (sqrt(v) + eps), with
/// factor = sqrt(1 - beta_2^t) / (1 - beta_1^t) and eps = epsilon * sqrt(1 - beta_2^t).
pub fn adam_factors(time: usize, h: AdamHyper) -> (f64, f64) {
    let t = time as i32;
    let bc2 = (1.0 - h.beta_2.powi(t)).sqrt();
    (bc2 / (1.0 - h.beta_1.powi(t)), h.epsilon * bc2)
}

/// `batch_norm` in burn's tensor ops, for any backend.
pub(super) fn batch_norm_default<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    eps: f64,
) -> [FloatTensor<B>; 3] {
    let x = float::<B, 4>(x);
    let [b, c, _, _] = x.dims();
    let per_row = |v: Tensor<B, 1>| v.reshape([1, c, 1, 1]).repeat_dim(0, b);
    let channel_mean = |t: Tensor<B, 4>| t.mean_dim(3).mean_dim(2).mean_dim(0);
    let mean = channel_mean(x.clone());
    let centred = x - mean.clone().repeat_dim(0, b);
    let var = channel_mean(centred.clone().square());
    let scale = float::<B, 1>(gamma).reshape([1, c, 1, 1]) * (var.clone() + eps).sqrt().recip();
    let out = centred * scale.repeat_dim(0, b) + per_row(float(beta));
    [prim(out), prim(mean.reshape([c])), prim(var.reshape([c]))]
}

/// `batch_norm_grad` in burn's tensor ops, for any backend.
pub(super) fn batch_norm_grad_default<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    var: FloatTensor<B>,
    eps: f64,
    grad: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let (x, grad) = (float::<B, 4>(x), float::<B, 4>(grad));
    let [b, c, h, w] = x.dims();
    let n = (b * h * w) as f64;
    let rows = |v: Tensor<B, 1>| v.reshape([1, c, 1, 1]).repeat_dim(0, b);
    let channel_sum = |t: Tensor<B, 4>| t.sum_dim(3).sum_dim(2).sum_dim(0).reshape([c]);
    let inv_std = (float::<B, 1>(var) + eps).sqrt().recip();
    let xhat = (x - rows(float(mean))) * rows(inv_std.clone());
    let dbeta = channel_sum(grad.clone());
    let dgamma = channel_sum(grad.clone() * xhat.clone());
    // dx = gamma / std / n * (n * dy - sum dy - xhat * sum(dy * xhat))
    let k = float::<B, 1>(gamma) * inv_std / n;
    let dx = (grad * n - rows(dbeta.clone()) - xhat * rows(dgamma.clone())) * rows(k);
    [prim(dx), prim(dgamma), prim(dbeta)]
}

fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// The backends training runs on: autodiff over a `CnnBackend`.
pub trait TrainBackend: AutodiffBackend<InnerBackend: CnnBackend> + CnnBackend {}
impl<B> TrainBackend for B where B: AutodiffBackend<InnerBackend: CnnBackend> + CnnBackend {}

/// The convolution of a tensor, on any `CnnBackend`.
pub fn conv3x3<B: CnnBackend>(x: Tensor<B, 4>, weight: Tensor<B, 4>) -> Tensor<B, 4> {
    float(B::conv3x3(prim(x), prim(weight)))
}

/// BatchNorm of x [b, c, h, w] with this batch's statistics; also returns
/// the batch's mean and (biased) variance per channel, for the running ones.
pub fn batch_norm<B: CnnBackend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    eps: f64,
) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
    let [out, mean, var] = B::batch_norm(prim(x), prim(gamma), prim(beta), eps);
    (float(out), float(mean), float(var))
}

/// 2x2 max pooling with stride 2, on any `CnnBackend`.
pub fn max_pool2x2<B: CnnBackend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    float(B::max_pool2x2(prim(x)).0)
}

#[cfg(feature = "cuda")]
impl CnnBackend for burn::backend::Cuda {}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::Distribution;

    type AD = Autodiff<Flex>;

    fn random<B: Backend>(shape: [usize; 4], seed: u64, device: &B::Device) -> Tensor<B, 4> {
        B::seed(device, seed);
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    /// Output and both gradients equal burn's conv2d (its kernels, not ours),
    /// for odd sizes and the one-channel and one-pixel-wide edges.
    #[test]
    fn matches_burns_conv2d_and_its_gradients() {
        let device = Default::default();
        for (shape, cout) in [([2, 3, 5, 7], 4), ([3, 1, 1, 6], 2), ([1, 5, 4, 1], 3), ([4, 8, 8, 8], 16)] {
            let x = random::<AD>(shape, 1, &device);
            let w = random::<AD>([cout, shape[1], 3, 3], 2, &device);
            let weights = random::<AD>([shape[0], cout, shape[2], shape[3]], 3, &device);

            let (xa, wa) = (x.clone().require_grad(), w.clone().require_grad());
            let ya = conv3x3(xa.clone(), wa.clone());
            let ga = (ya.clone() * weights.clone()).sum().backward();
            let (xb, wb) = (x.require_grad(), w.require_grad());
            let yb = burn::tensor::module::conv2d(xb.clone(), wb.clone(), None, options());
            let gb = (yb.clone() * weights).sum().backward();

            let tol = burn::tensor::Tolerance::<f32>::absolute(1e-4);
            ya.into_data().assert_approx_eq::<f32>(&yb.into_data(), tol);
            let grad = |t: &Tensor<AD, 4>, g| t.grad(g).unwrap().into_data();
            grad(&xa, &ga).assert_approx_eq::<f32>(&grad(&xb, &gb), tol);
            grad(&wa, &ga).assert_approx_eq::<f32>(&grad(&wb, &gb), tol);
        }
    }

    /// The tensor-op BatchNorm other backends run (forward and backward)
    /// equals the CPU kernels, which `norm::tests` holds to burn's BatchNorm.
    #[test]
    fn batch_norm_formulas_agree_with_the_kernels() {
        let device = Default::default();
        let x = random::<Flex>([3, 4, 5, 2], 6, &device) * 3.0 + 1.0;
        let grad = random::<Flex>([3, 4, 5, 2], 7, &device);
        let gamma = Tensor::<Flex, 1>::from_floats([0.5, 1.0, 2.0, -1.0], &device);
        let beta = Tensor::<Flex, 1>::from_floats([0.0, 0.1, -0.2, 3.0], &device);
        let eps = 1e-5;
        let ours = <Flex as CnnBackend>::batch_norm(prim(x.clone()), prim(gamma.clone()), prim(beta.clone()), eps);
        let theirs = batch_norm_default::<Flex>(prim(x.clone()), prim(gamma.clone()), prim(beta), eps);
        let tol = burn::tensor::Tolerance::<f32>::absolute(1e-4);
        for (a, b) in ours.iter().zip(&theirs) {
            a.clone().into_data().assert_approx_eq::<f32>(&b.clone().into_data(), tol);
        }
        let [_, mean, var] = ours;
        let args = || (prim(x.clone()), prim(gamma.clone()), mean.clone(), var.clone(), eps, prim(grad.clone()));
        let (x1, g1, m1, v1, e1, d1) = args();
        let ours = <Flex as CnnBackend>::batch_norm_grad(x1, g1, m1, v1, e1, d1);
        let (x2, g2, m2, v2, e2, d2) = args();
        let theirs = batch_norm_grad_default::<Flex>(x2, g2, m2, v2, e2, d2);
        for (a, b) in ours.iter().zip(&theirs) {
            a.clone().into_data().assert_approx_eq::<f32>(&b.clone().into_data(), tol);
        }
    }

    /// Output and gradient equal burn's max_pool2d, ties and negative values included.
    #[test]
    fn max_pool_matches_burns() {
        let device = Default::default();
        for shape in [[2, 3, 4, 6], [1, 1, 2, 2], [3, 2, 8, 8]] {
            // Rounded to a coarse grid so windows hold ties.
            let x = (random::<AD>(shape, 4, &device) * 2.0).round();
            let weights = random::<AD>([shape[0], shape[1], shape[2] / 2, shape[3] / 2], 5, &device);
            let xa = x.clone().require_grad();
            let ya = max_pool2x2(xa.clone());
            let ga = (ya.clone() * weights.clone()).sum().backward();
            let xb = x.require_grad();
            let yb = burn::tensor::module::max_pool2d(xb.clone(), [2, 2], [2, 2], [0, 0], [1, 1], false);
            let gb = (yb.clone() * weights).sum().backward();
            ya.into_data().assert_eq(&yb.into_data(), true);
            xa.grad(&ga).unwrap().into_data().assert_eq(&xb.grad(&gb).unwrap().into_data(), true);
        }
    }
}
