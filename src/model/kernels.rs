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
//! `CnnBackend` is the hook: its default methods are burn's ops; `Flex`
//! overrides them, and `Autodiff<B>` records each op with a backward that
//! calls B's gradient methods.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, FloatTensor, IntTensor, ModuleOps};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, TensorMetadata, TensorPrimitive};
use rayon::prelude::*;

fn options() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

/// A backend that can run the network's convolution, pooling and BatchNorm.
/// The defaults are burn's ops.
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

/// BatchNorm of x [b, c, h, w] with this batch's statistics; also returns
/// the batch's mean and (biased) variance per channel, for the running ones.
pub fn batch_norm<B: CnnBackend>(x: Tensor<B, 4>, gamma: Tensor<B, 1>, beta: Tensor<B, 1>, eps: f64) -> (Tensor<B, 4>, Tensor<B, 1>, Tensor<B, 1>) {
    let [out, mean, var] = B::batch_norm(prim(x), prim(gamma), prim(beta), eps);
    (float(out), float(mean), float(var))
}

/// 2x2 max pooling with stride 2, on any `CnnBackend`.
pub fn max_pool2x2<B: CnnBackend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    float(B::max_pool2x2(prim(x)).0)
}

#[cfg(feature = "cuda")]
impl CnnBackend for burn::backend::Cuda {}

impl<B: CnnBackend, C: CheckpointStrategy> CnnBackend for Autodiff<B, C> {
    fn conv3x3(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Conv3x3;

        impl<B: CnnBackend> Backward<B, 2> for Conv3x3 {
            type State = (NodeId, NodeId);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_weight] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, weight_state) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, B::conv3x3_x_grad(x.clone(), weight.clone(), grad.clone()));
                }
                if let Some(node) = node_weight {
                    grads.register::<B>(node.id, B::conv3x3_weight_grad(x, weight, grad));
                }
            }
        }

        match Conv3x3.prepare::<C>([x.node.clone(), weight.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                prep.finish((x_state, weight_state), B::conv3x3(x.primitive, weight.primitive))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv3x3(x.primitive, weight.primitive)),
        }
    }

    fn batch_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>, eps: f64) -> [FloatTensor<Self>; 3] {
        #[derive(Debug)]
        struct BatchNorm;

        impl<B: CnnBackend> Backward<B, 3> for BatchNorm {
            // x, gamma, the batch's mean and var, epsilon
            type State = (NodeId, NodeId, FloatTensor<B>, FloatTensor<B>, f64);

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, gamma_state, mean, var, eps) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let gamma = checkpointer.retrieve_node_output::<FloatTensor<B>>(gamma_state);
                let [dx, dgamma, dbeta] = B::batch_norm_grad(x, gamma, mean, var, eps, grad);
                for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        match BatchNorm.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let [out, mean, var] = B::batch_norm(x.primitive, gamma.primitive, beta.primitive, eps);
                let out = prep.finish((x_state, gamma_state, mean.clone(), var.clone(), eps), out);
                [out, Self::from_inner(mean), Self::from_inner(var)]
            }
            OpsKind::UnTracked(prep) => {
                let [out, mean, var] = B::batch_norm(x.primitive, gamma.primitive, beta.primitive, eps);
                [prep.finish(out), Self::from_inner(mean), Self::from_inner(var)]
            }
        }
    }

    fn max_pool2x2(x: FloatTensor<Self>) -> (FloatTensor<Self>, IntTensor<Self>) {
        #[derive(Debug)]
        struct MaxPool2x2;

        impl<B: CnnBackend> Backward<B, 1> for MaxPool2x2 {
            type State = (NodeId, IntTensor<B>);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
                let [node_x] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, indices) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, B::max_pool2x2_grad(x, grad, indices));
                }
            }
        }

        match MaxPool2x2.prepare::<C>([x.node.clone()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let (out, indices) = B::max_pool2x2(x.primitive);
                (prep.finish((x_state, indices.clone()), out), indices)
            }
            OpsKind::UnTracked(prep) => {
                let (out, indices) = B::max_pool2x2(x.primitive);
                (prep.finish(out), indices)
            }
        }
    }
}

impl CnnBackend for Flex {
    fn conv3x3(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let Some(shape) = conv_shape(&x, &weight) else {
            return Self::conv2d(x, weight, None, options());
        };
        let out = cpu::forward(&shape, Dense::new(&x).f32s(), Dense::new(&weight).f32s());
        tensor(out, [shape.batch, shape.cout, shape.h, shape.w])
    }

    fn conv3x3_x_grad(x: FlexTensor, weight: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let Some(shape) = conv_shape(&x, &weight).filter(|_| grad.dtype() == DType::F32) else {
            return Self::conv2d_x_backward(x, weight, grad, options());
        };
        let dx = cpu::x_grad(&shape, Dense::new(&weight).f32s(), Dense::new(&grad).f32s());
        tensor(dx, [shape.batch, shape.cin, shape.h, shape.w])
    }

    fn conv3x3_weight_grad(x: FlexTensor, weight: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let Some(shape) = conv_shape(&x, &weight).filter(|_| grad.dtype() == DType::F32) else {
            return Self::conv2d_weight_backward(x, weight, grad, options());
        };
        let dw = cpu::weight_grad(&shape, Dense::new(&x).f32s(), Dense::new(&grad).f32s());
        tensor(dw, [shape.cout, shape.cin, 3, 3])
    }

    fn max_pool2x2(x: FlexTensor) -> (FlexTensor, FlexTensor) {
        let [b, c, h, w] = x.shape().dims();
        if x.dtype() != DType::F32 || h % 2 != 0 || w % 2 != 0 {
            let out = Self::max_pool2d_with_indices(x, [2, 2], [2, 2], [0, 0], [1, 1], false);
            return (out.output, out.indices);
        }
        let (out, indices) = cpu::max_pool2x2(Dense::new(&x).f32s(), b * c, h, w);
        let shape = [b, c, h / 2, w / 2];
        (tensor(out, shape), FlexTensor::from_data(TensorData::new(indices, shape)))
    }

    fn max_pool2x2_grad(x: FlexTensor, grad: FlexTensor, indices: FlexTensor) -> FlexTensor {
        let [b, c, h, w] = x.shape().dims();
        let ours = x.dtype() == DType::F32 && grad.dtype() == DType::F32 && indices.dtype() == DType::I32;
        if !ours || h % 2 != 0 || w % 2 != 0 {
            return Self::max_pool2d_with_indices_backward(x, [2, 2], [2, 2], [0, 0], [1, 1], false, grad, indices).x_grad;
        }
        let dx = cpu::max_pool2x2_grad(Dense::new(&grad).f32s(), Dense::new(&indices).i32s(), b * c, h, w);
        tensor(dx, [b, c, h, w])
    }

    fn batch_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, eps: f64) -> [FlexTensor; 3] {
        let [b, c, h, w] = x.shape().dims();
        if [&x, &gamma, &beta].iter().any(|t| t.dtype() != DType::F32) {
            return batch_norm_default::<Self>(x, gamma, beta, eps);
        }
        let s = cpu::Planes { batch: b, channels: c, pixels: h * w };
        let (out, mean, var) = cpu::batch_norm(&s, Dense::new(&x).f32s(), Dense::new(&gamma).f32s(), Dense::new(&beta).f32s(), eps);
        [tensor(out, [b, c, h, w]), tensor(mean, [c]), tensor(var, [c])]
    }

    fn batch_norm_grad(x: FlexTensor, gamma: FlexTensor, mean: FlexTensor, var: FlexTensor, eps: f64, grad: FlexTensor) -> [FlexTensor; 3] {
        let [b, c, h, w] = x.shape().dims();
        if [&x, &gamma, &mean, &var, &grad].iter().any(|t| t.dtype() != DType::F32) {
            return batch_norm_grad_default::<Self>(x, gamma, mean, var, eps, grad);
        }
        let s = cpu::Planes { batch: b, channels: c, pixels: h * w };
        let (dx, dgamma, dbeta) = cpu::batch_norm_grad(
            &s,
            Dense::new(&x).f32s(),
            Dense::new(&gamma).f32s(),
            Dense::new(&mean).f32s(),
            Dense::new(&var).f32s(),
            eps,
            Dense::new(&grad).f32s(),
        );
        [tensor(dx, [b, c, h, w]), tensor(dgamma, [c]), tensor(dbeta, [c])]
    }
}

/// The shape of one convolution when kdtui's kernels take it: f32, 3x3.
fn conv_shape(x: &FlexTensor, weight: &FlexTensor) -> Option<cpu::Shape> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    let [batch, cin, h, w] = x.shape().dims();
    let [cout, wcin, kh, kw] = weight.shape().dims();
    (wcin == cin && kh == 3 && kw == 3).then_some(cpu::Shape { batch, cin, cout, h, w })
}

/// A tensor's values as one row-major slice: borrowed when the tensor is
/// laid out that way already (the usual case), copied once when not.
struct Dense(FlexTensor);

impl Dense {
    fn new(t: &FlexTensor) -> Self {
        Dense(t.to_contiguous())
    }

    fn f32s(&self) -> &[f32] {
        &self.0.storage::<f32>()[..self.0.shape().num_elements()]
    }

    fn i32s(&self) -> &[i32] {
        &self.0.storage::<i32>()[..self.0.shape().num_elements()]
    }
}



fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The kernels, on row-major f32 slices in NCHW order.
pub mod cpu {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    pub struct Shape {
        pub batch: usize,
        pub cin: usize,
        pub cout: usize,
        pub h: usize,
        pub w: usize,
    }

    impl Shape {
        fn pixels(&self) -> usize {
            self.h * self.w
        }
        /// Rows of an image's column matrix: (input channel, ky, kx).
        fn taps(&self) -> usize {
            self.cin * 9
        }
    }

    /// cols [cin * 9, h * w] of one image [cin, h, w]: row (c, ky, kx) holds
    /// the image shifted by (ky - 1, kx - 1), zero outside it.
    fn im2col(s: &Shape, image: &[f32], cols: &mut [f32]) {
        let (h, w) = (s.h, s.w);
        for c in 0..s.cin {
            let plane = &image[c * h * w..(c + 1) * h * w];
            for ky in 0..3 {
                for kx in 0..3 {
                    let row = &mut cols[((c * 3 + ky) * 3 + kx) * h * w..][..h * w];
                    for y in 0..h {
                        let out = &mut row[y * w..(y + 1) * w];
                        let sy = y as isize + ky as isize - 1;
                        if sy < 0 || sy >= h as isize {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &plane[sy as usize * w..(sy as usize + 1) * w];
                        match kx {
                            0 => {
                                out[0] = 0.0;
                                out[1..].copy_from_slice(&src[..w - 1]);
                            }
                            1 => out.copy_from_slice(src),
                            _ => {
                                out[..w - 1].copy_from_slice(&src[1..]);
                                out[w - 1] = 0.0;
                            }
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of `im2col`: adds each row of cols, shifted back, into image.
    fn col2im(s: &Shape, cols: &[f32], image: &mut [f32]) {
        let (h, w) = (s.h, s.w);
        image.fill(0.0);
        for c in 0..s.cin {
            let plane = &mut image[c * h * w..(c + 1) * h * w];
            for ky in 0..3 {
                for kx in 0..3 {
                    let row = &cols[((c * 3 + ky) * 3 + kx) * h * w..][..h * w];
                    for y in 0..h {
                        let sy = y as isize + ky as isize - 1;
                        if sy < 0 || sy >= h as isize {
                            continue;
                        }
                        let src = &row[y * w..(y + 1) * w];
                        let dst = &mut plane[sy as usize * w..(sy as usize + 1) * w];
                        let (d, s) = match kx {
                            0 => (&mut dst[..w - 1], &src[1..]),
                            1 => (dst, src),
                            _ => (&mut dst[1..], &src[..w - 1]),
                        };
                        for (d, s) in d.iter_mut().zip(s) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }

    /// dst [m, n] (= or +=) lhs [m, k] · rhs [k, n], all row-major with the
    /// given row strides; `lhs_t` / `rhs_t` read the operand transposed.
    #[allow(clippy::too_many_arguments)]
    fn matmul(m: usize, n: usize, k: usize, dst: &mut [f32], accumulate: bool, lhs: &[f32], lhs_t: bool, rhs: &[f32], rhs_t: bool) {
        assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n);
        let (lhs_cs, lhs_rs) = if lhs_t { (m as isize, 1) } else { (1, k as isize) };
        let (rhs_cs, rhs_rs) = if rhs_t { (k as isize, 1) } else { (1, n as isize) };
        // SAFETY: the assert above keeps every index the strides reach inside the slices.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                accumulate,
                lhs.as_ptr(),
                lhs_cs,
                lhs_rs,
                rhs.as_ptr(),
                rhs_cs,
                rhs_rs,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }

    /// [batch, channels, pixels]: the layout BatchNorm reduces over.
    #[derive(Debug, Clone, Copy)]
    pub struct Planes {
        pub batch: usize,
        pub channels: usize,
        pub pixels: usize,
    }

    /// Per channel, the sums over the batch of f(image plane) applied to
    /// its values, in f64: one task per channel, each adding in one order.
    fn channel_sums(s: &Planes, f: impl Fn(usize, usize) -> f64 + Sync) -> Vec<f64> {
        (0..s.channels).into_par_iter().map(|c| (0..s.batch).map(|b| f(b, c)).sum()).collect()
    }

    /// Where image b's plane of channel c lies.
    fn plane(s: &Planes, b: usize, c: usize) -> std::ops::Range<usize> {
        let start = (b * s.channels + c) * s.pixels;
        start..start + s.pixels
    }

    /// (gamma * (x - mean) / sqrt(var + eps) + beta, mean, biased var), per channel.
    pub fn batch_norm(s: &Planes, x: &[f32], gamma: &[f32], beta: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let n = (s.batch * s.pixels) as f64;
        let mean: Vec<f64> = channel_sums(s, |b, c| x[plane(s, b, c)].iter().map(|&v| v as f64).sum::<f64>())
            .into_iter()
            .map(|sum| sum / n)
            .collect();
        // Two passes (mean, then squares about it), as burn's: no cancellation.
        let var: Vec<f64> = channel_sums(s, |b, c| {
            let m = mean[c];
            x[plane(s, b, c)].iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>()
        })
        .into_iter()
        .map(|sum| sum / n)
        .collect();
        let scale: Vec<f32> = (0..s.channels).map(|c| (gamma[c] as f64 / (var[c] + eps).sqrt()) as f32).collect();
        let shift: Vec<f32> = (0..s.channels).map(|c| beta[c] - (mean[c] as f32) * scale[c]).collect();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(s.pixels).enumerate().for_each(|(bc, out)| {
            let c = bc % s.channels;
            let src = &x[bc * s.pixels..(bc + 1) * s.pixels];
            for (o, &v) in out.iter_mut().zip(src) {
                *o = v * scale[c] + shift[c];
            }
        });
        let narrow = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
        (out, narrow(mean), narrow(var))
    }

    /// (dx, dgamma, dbeta) of `batch_norm`, from the output gradient g.
    pub fn batch_norm_grad(s: &Planes, x: &[f32], gamma: &[f32], mean: &[f32], var: &[f32], eps: f64, g: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let n = (s.batch * s.pixels) as f64;
        let inv_std: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + eps).sqrt()).collect();
        let dbeta = channel_sums(s, |b, c| g[plane(s, b, c)].iter().map(|&v| v as f64).sum::<f64>());
        let dgamma = channel_sums(s, |b, c| {
            let (m, k) = (mean[c] as f64, inv_std[c]);
            let r = plane(s, b, c);
            g[r.clone()].iter().zip(&x[r]).map(|(&g, &x)| g as f64 * (x as f64 - m) * k).sum::<f64>()
        });
        // dx = gamma / std / n * (n * g - dbeta - xhat * dgamma), as a * g + b * x + c per channel
        let coef: Vec<[f32; 3]> = (0..s.channels)
            .map(|c| {
                let k = gamma[c] as f64 * inv_std[c] / n;
                let xk = dgamma[c] * inv_std[c];
                [(k * n) as f32, (-k * xk) as f32, (k * (xk * mean[c] as f64 - dbeta[c])) as f32]
            })
            .collect();
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(s.pixels).enumerate().for_each(|(bc, dx)| {
            let [a, b, c] = coef[bc % s.channels];
            let r = bc * s.pixels..(bc + 1) * s.pixels;
            for ((d, &g), &x) in dx.iter_mut().zip(&g[r.clone()]).zip(&x[r]) {
                *d = a * g + b * x + c;
            }
        });
        let narrow = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
        (dx, narrow(dgamma), narrow(dbeta))
    }

    /// Each 2x2 window of `planes` planes [h, w] (h, w even): its maximum and
    /// the index (y * w + x) in the plane it came from, the first on ties.
    pub fn max_pool2x2(x: &[f32], planes: usize, h: usize, w: usize) -> (Vec<f32>, Vec<i32>) {
        let (oh, ow) = (h / 2, w / 2);
        let mut out = vec![0f32; planes * oh * ow];
        let mut indices = vec![0i32; planes * oh * ow];
        out.par_chunks_mut(oh * ow).zip(indices.par_chunks_mut(oh * ow)).enumerate().for_each(|(p, (out, idx))| {
            let plane = &x[p * h * w..(p + 1) * h * w];
            for y in 0..oh {
                for x in 0..ow {
                    let top = 2 * y * w + 2 * x;
                    let mut best = top;
                    for i in [top + 1, top + w, top + w + 1] {
                        // `>` keeps the first maximum on ties.
                        if plane[i] > plane[best] {
                            best = i;
                        }
                    }
                    out[y * ow + x] = plane[best];
                    idx[y * ow + x] = best as i32;
                }
            }
        });
        (out, indices)
    }

    /// The gradient of `max_pool2x2`: each output's gradient goes to where its maximum came from.
    pub fn max_pool2x2_grad(grad: &[f32], indices: &[i32], planes: usize, h: usize, w: usize) -> Vec<f32> {
        let pooled = (h / 2) * (w / 2);
        let mut dx = vec![0f32; planes * h * w];
        dx.par_chunks_mut(h * w).enumerate().for_each(|(p, dx)| {
            let range = p * pooled..(p + 1) * pooled;
            for (&g, &i) in grad[range.clone()].iter().zip(&indices[range]) {
                dx[i as usize] += g;
            }
        });
        dx
    }

    /// out [b, cout, h, w] = conv(x [b, cin, h, w], weight [cout, cin, 3, 3])
    pub fn forward(s: &Shape, x: &[f32], weight: &[f32]) -> Vec<f32> {
        let (p, taps) = (s.pixels(), s.taps());
        let mut out = vec![0f32; s.batch * s.cout * p];
        out.par_chunks_mut(s.cout * p).enumerate().for_each_init(
            || vec![0f32; taps * p],
            |cols, (b, out)| {
                im2col(s, &x[b * s.cin * p..(b + 1) * s.cin * p], cols);
                // [cout, taps] · [taps, p]
                matmul(s.cout, p, taps, out, false, weight, false, cols, false);
            },
        );
        out
    }

    /// dx [b, cin, h, w] from weight and the output gradient g [b, cout, h, w].
    pub fn x_grad(s: &Shape, weight: &[f32], g: &[f32]) -> Vec<f32> {
        let (p, taps) = (s.pixels(), s.taps());
        let mut dx = vec![0f32; s.batch * s.cin * p];
        dx.par_chunks_mut(s.cin * p).enumerate().for_each_init(
            || vec![0f32; taps * p],
            |cols, (b, dx)| {
                // [taps, cout] (weight transposed) · [cout, p]
                matmul(taps, p, s.cout, cols, false, weight, true, &g[b * s.cout * p..(b + 1) * s.cout * p], false);
                col2im(s, cols, dx);
            },
        );
        dx
    }

    /// Images per task of `weight_grad`: a fixed split, so the sum over the
    /// batch is added in the same order whatever the threads do, and a
    /// resumed run repeats an uninterrupted one exactly.
    const IMAGES_PER_TASK: usize = 16;

    /// dweight [cout, cin, 3, 3] from x [b, cin, h, w] and g [b, cout, h, w].
    pub fn weight_grad(s: &Shape, x: &[f32], g: &[f32]) -> Vec<f32> {
        let (p, taps) = (s.pixels(), s.taps());
        let partial: Vec<Vec<f32>> = (0..s.batch.div_ceil(IMAGES_PER_TASK))
            .into_par_iter()
            .map(|task| {
                let mut dw = vec![0f32; s.cout * taps];
                let mut cols = vec![0f32; taps * p];
                for b in task * IMAGES_PER_TASK..((task + 1) * IMAGES_PER_TASK).min(s.batch) {
                    im2col(s, &x[b * s.cin * p..(b + 1) * s.cin * p], &mut cols);
                    // [cout, p] · [p, taps] (cols transposed), summed over images
                    matmul(s.cout, taps, p, &mut dw, true, &g[b * s.cout * p..(b + 1) * s.cout * p], false, &cols, true);
                }
                dw
            })
            .collect();
        let mut parts = partial.into_iter();
        let mut dw = parts.next().unwrap_or_else(|| vec![0f32; s.cout * taps]);
        for part in parts {
            dw.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
        }
        dw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
