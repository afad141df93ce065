//! The network's 3x3 convolution (stride 1, padding 1, no bias), 2x2 max
//! pooling and training-mode BatchNorm, with kdtui's own CPU kernels.
//!
//! burn 0.21 computes a convolution's weight gradient for every backend as a
//! second convolution over the batch-transposed input with the output
//! gradient as its kernel (`conv2d_weight_grad_no_groups`): on `flex` that is
//! an im2col whose matrix products have 9 rows, and the weight gradients took
//! most of a teacher step (perf, batch 128). Here, on `flex`, forward, input
//! gradient and weight gradient are matrix products over groups of images
//! (gemm, AVX-512 where the CPU has it), groups spread over rayon's
//! threads: Winograd's F(2x2, 3x3) for layers of 16 channels or more
//! (`cpu/winograd.rs`, 2.25 times fewer multiply-adds; F(4x4, 3x3) forward
//! for wide layers in large batches, `cpu/winograd4.rs`), an im2col product
//! for the first layer's 3. `flex`'s max pooling goes through a general
//! 3D window loop that took a fifth of a step once the convolutions were
//! fixed; a 2x2 window needs none of that. BatchNorm in tensor ops is a
//! dozen passes over the activations each way; here it is two. Other
//! backends (CUDA) keep burn's kernels (BatchNorm: the same formulas in
//! burn's tensor ops).
//!
//! The student's weight quantizer is one op too (`cpu/weights.rs`): tanh
//! once, kept for the gradient, instead of a dozen recorded ops.
//!
//! `CnnBackend` is the hook: its default methods are burn's ops (here);
//! `Flex` overrides them (`flex.rs`, running the slice kernels of `cpu/`),
//! and `Autodiff<B>` records each op with a backward that calls B's
//! gradient methods (`autodiff.rs`).

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{ConvOptions, FloatTensor, IntTensor};
use burn::tensor::{TensorMetadata, TensorPrimitive};

mod autodiff;
pub mod cpu;
mod flex;
#[cfg(all(feature = "test-hooks", feature = "wgpu"))]
pub mod on_devices;

pub(super) fn options() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

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

/// What follows a BatchNorm (`CnnBackend::norm_act`): nothing, ReLU (the
/// teacher), or the k-bit activation quantizer with its straight-through
/// gradient (the student; see `quant::quantize_activations`, its definition
/// in burn's tensor ops).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Identity,
    Relu,
    Quantized { bits: u32, range: f64 },
}

impl Activation {
    /// The activation of a layer with `bits`-bit activations clipped at `range`
    /// (32 bits: float, ReLU).
    pub fn of(bits: u32, range: f64) -> Self {
        if bits >= super::quant::FLOAT_BITS {
            Activation::Relu
        } else {
            Activation::Quantized { bits, range }
        }
    }

    fn levels(bits: u32) -> f64 {
        ((1u64 << bits) - 1) as f64
    }

    /// The same, with the constants the CPU kernels use.
    pub fn cpu(self) -> cpu::Act {
        match self {
            Activation::Identity => cpu::Act::Identity,
            Activation::Relu => cpu::Act::Relu,
            Activation::Quantized { bits, range } => {
                let n = Self::levels(bits);
                cpu::Act::Quantized { range: range as f32, up: (n / range) as f32, down: (range / n) as f32 }
            }
        }
    }

    /// The activation in burn's tensor ops (no gradient: used inside ops
    /// that have their own backward, or in inference).
    fn apply<B: Backend>(self, y: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Activation::Identity => y,
            Activation::Relu => burn::tensor::activation::relu(y),
            Activation::Quantized { bits, range } => {
                let n = Self::levels(bits);
                y.clamp(0.0, range).mul_scalar(n / range).round().mul_scalar(range / n)
            }
        }
    }

    /// 1 where the gradient passes the activation, 0 where it is blocked.
    fn pass<B: Backend>(self, y: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Activation::Identity => y.ones_like(),
            Activation::Relu => y.greater_elem(0.0).float(),
            Activation::Quantized { range, .. } => y.clone().greater_equal_elem(0.0).float() * y.lower_equal_elem(range).float(),
        }
    }
}

/// A backend that can run the network's convolution, pooling, BatchNorm
/// with its activation, and Adam. The defaults are burn's ops.
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

    /// k-bit weights of w, any shape (`bits` < 32; `quant::quantize_weights`
    /// says how), and tanh(w), which their gradient needs.
    fn quantize_weights(w: FloatTensor<Self>, bits: u32) -> [FloatTensor<Self>; 2] {
        quantize_weights_default::<Self>(w, bits)
    }

    /// d loss / d w of `quantize_weights`, given tanh(w) and d loss / d q.
    fn quantize_weights_grad(tanh: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        quantize_weights_grad_default::<Self>(tanh, grad)
    }

    /// BatchNorm with batch statistics over x [b, c, h, w], then `act`:
    /// (act(gamma * (x - mean) / sqrt(var + eps) + beta), mean [c], biased var [c]).
    fn norm_act(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        act: Activation,
    ) -> [FloatTensor<Self>; 3] {
        norm_act_default::<Self>(x, gamma, beta, eps, act)
    }

    /// d loss / d (x, gamma, beta) of `norm_act`, given d loss / d output
    /// and the batch's mean and var.
    #[allow(clippy::too_many_arguments)]
    fn norm_act_grad(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        eps: f64,
        act: Activation,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        norm_act_grad_default::<Self>(x, gamma, beta, mean, var, eps, act, grad)
    }

    /// `norm_act`, then 2x2 max pooling with stride 2 (h, w even):
    /// ([b, c, h/2, w/2], where each maximum came from in its plane, mean, var).
    fn norm_act_pool(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
        act: Activation,
    ) -> (FloatTensor<Self>, IntTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [y, mean, var] = Self::norm_act(x, gamma, beta, eps, act);
        let pooled = Self::max_pool2d_with_indices(y, [2, 2], [2, 2], [0, 0], [1, 1], false);
        (pooled.output, pooled.indices, mean, var)
    }

    /// d loss / d (x, gamma, beta) of `norm_act_pool`, given d loss / d
    /// pooled output and where each maximum came from.
    #[allow(clippy::too_many_arguments)]
    fn norm_act_pool_grad(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        eps: f64,
        act: Activation,
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
    ) -> [FloatTensor<Self>; 3] {
        let full = Self::max_pool2d_with_indices_backward(x.clone(), [2, 2], [2, 2], [0, 0], [1, 1], false, grad, indices).x_grad;
        Self::norm_act_grad(x, gamma, beta, mean, var, eps, act, full)
    }

    /// act(x * scale + shift), scale and shift per channel of x [b, c, h, w]:
    /// inference, with the running statistics folded into scale and shift.
    fn affine_act(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>, act: Activation) -> FloatTensor<Self> {
        affine_act_default::<Self>(x, scale, shift, act)
    }

    /// `affine_act`, then 2x2 max pooling (inference).
    fn affine_act_pool(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>, act: Activation) -> FloatTensor<Self> {
        let y = Self::affine_act(x, scale, shift, act);
        Self::max_pool2d(y, [2, 2], [2, 2], [0, 0], [1, 1], false)
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
        adam_step_default(param, grad, moments, time, lr, h)
    }
}

/// `adam_step` in burn's tensor ops, for any backend.
pub(super) fn adam_step_default<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    moments: Option<(Tensor<B, D>, Tensor<B, D>)>,
    time: usize,
    lr: f64,
    h: AdamHyper,
) -> (Tensor<B, D>, Tensor<B, D>, Tensor<B, D>) {
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

/// Adam's bias corrections at step `time`, folded as burn's Adam folds them:
/// update = m * factor / (sqrt(v) + eps), with
/// factor = sqrt(1 - beta_2^t) / (1 - beta_1^t) and eps = epsilon * sqrt(1 - beta_2^t).
pub fn adam_factors(time: usize, h: AdamHyper) -> (f64, f64) {
    let t = time as i32;
    let bc2 = (1.0 - h.beta_2.powi(t)).sqrt();
    (bc2 / (1.0 - h.beta_1.powi(t)), h.epsilon * bc2)
}

/// `quantize_weights` in burn's tensor ops, for any backend.
pub(super) fn quantize_weights_default<B: Backend>(w: FloatTensor<B>, bits: u32) -> [FloatTensor<B>; 2] {
    let shape = w.shape();
    let t = float::<B, 1>(B::float_reshape(w, Shape::new([shape.num_elements()]))).tanh();
    let q = super::quant::quantized_of_tanh(t.clone(), bits);
    [B::float_reshape(prim(q), shape.clone()), B::float_reshape(prim(t), shape)]
}

/// `quantize_weights_grad` in burn's tensor ops, for any backend.
pub(super) fn quantize_weights_grad_default<B: Backend>(tanh: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let shape = tanh.shape();
    let flat = |t: FloatTensor<B>| float::<B, 1>(B::float_reshape(t, Shape::new([shape.num_elements()])));
    B::float_reshape(prim(super::quant::weight_grad_of_tanh(flat(tanh), flat(grad))), shape.clone())
}

/// `norm_act` in burn's tensor ops, for any backend.
pub(super) fn norm_act_default<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    eps: f64,
    act: Activation,
) -> [FloatTensor<B>; 3] {
    let [y, mean, var] = batch_norm_default::<B>(x, gamma, beta, eps);
    [prim(act.apply(float::<B, 4>(y))), mean, var]
}

/// `norm_act_grad` in burn's tensor ops, for any backend: the activation's
/// mask from the recomputed normalised x, then BatchNorm's gradient.
#[allow(clippy::too_many_arguments)]
pub(super) fn norm_act_grad_default<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    mean: FloatTensor<B>,
    var: FloatTensor<B>,
    eps: f64,
    act: Activation,
    grad: FloatTensor<B>,
) -> [FloatTensor<B>; 3] {
    let xt = float::<B, 4>(x.clone());
    let [b, c, _, _] = xt.dims();
    let rows = |v: Tensor<B, 1>| v.reshape([1, c, 1, 1]).repeat_dim(0, b);
    let scale = float::<B, 1>(gamma.clone()) * (float::<B, 1>(var.clone()) + eps).sqrt().recip();
    let shift = float::<B, 1>(beta) - float::<B, 1>(mean.clone()) * scale.clone();
    let y = xt * rows(scale) + rows(shift);
    let through = float::<B, 4>(grad) * act.pass(y);
    batch_norm_grad_default::<B>(x, gamma, mean, var, eps, prim(through))
}

/// `affine_act` in burn's tensor ops, for any backend.
pub(super) fn affine_act_default<B: Backend>(
    x: FloatTensor<B>,
    scale: FloatTensor<B>,
    shift: FloatTensor<B>,
    act: Activation,
) -> FloatTensor<B> {
    let x = float::<B, 4>(x);
    let [b, c, _, _] = x.dims();
    let rows = |v: Tensor<B, 1>| v.reshape([1, c, 1, 1]).repeat_dim(0, b);
    prim(act.apply(x * rows(float(scale)) + rows(float(shift))))
}

/// `batch_norm` in burn's tensor ops, for any backend.
fn batch_norm_default<B: Backend>(x: FloatTensor<B>, gamma: FloatTensor<B>, beta: FloatTensor<B>, eps: f64) -> [FloatTensor<B>; 3] {
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
fn batch_norm_grad_default<B: Backend>(
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

/// k-bit weights in [-1, 1] with their straight-through gradient, on any
/// `CnnBackend`: `quant::quantize_weights` as one op, tanh computed once
/// (burn's tanh backward computes it again), not a dozen recorded ops.
pub fn quantize_weights<B: CnnBackend, const D: usize>(w: Tensor<B, D>, bits: u32) -> Tensor<B, D> {
    if bits >= super::quant::FLOAT_BITS {
        return w;
    }
    let [q, _] = B::quantize_weights(prim(w), bits);
    float(q)
}

/// BatchNorm of x [b, c, h, w] with this batch's statistics, then `act`;
/// also returns the batch's mean and (biased) variance per channel, for the
/// running ones.
pub fn norm_act<B: CnnBackend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    eps: f64,
    act: Activation,
) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
    let [out, mean, var] = B::norm_act(prim(x), prim(gamma), prim(beta), eps, act);
    (float(out), float(mean), float(var))
}

/// act(x * scale + shift) with per-channel scale and shift (inference).
pub fn affine_act<B: CnnBackend>(x: Tensor<B, 4>, scale: Tensor<B, 1>, shift: Tensor<B, 1>, act: Activation) -> Tensor<B, 4> {
    float(B::affine_act(prim(x), prim(scale), prim(shift), act))
}

/// `norm_act`, then 2x2 max pooling: [b, c, h, w] -> [b, c, h/2, w/2],
/// with the batch's mean and variance per channel.
pub fn norm_act_pool<B: CnnBackend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    eps: f64,
    act: Activation,
) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
    let (out, _, mean, var) = B::norm_act_pool(prim(x), prim(gamma), prim(beta), eps, act);
    (float(out), float(mean), float(var))
}

/// `affine_act`, then 2x2 max pooling (inference).
pub fn affine_act_pool<B: CnnBackend>(x: Tensor<B, 4>, scale: Tensor<B, 1>, shift: Tensor<B, 1>, act: Activation) -> Tensor<B, 4> {
    float(B::affine_act_pool(prim(x), prim(scale), prim(shift), act))
}

// The GPU backends run burn's ops (the defaults above): cubecl fuses them.
#[cfg(feature = "cuda")]
impl CnnBackend for burn::backend::Cuda {}
#[cfg(feature = "wgpu")]
impl CnnBackend for burn::backend::Wgpu {}

#[cfg(test)]
pub(crate) mod tests;
