//! `CnnBackend` for burn's `flex` CPU backend: the network's ops go to
//! kdtui's kernels (`cpu`) when the tensors are f32 of the shapes they
//! handle, and to burn's ops otherwise.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::ops::ModuleOps;
use burn::tensor::{DType, TensorMetadata, TensorPrimitive};

use super::{
    adam_step_default, affine_act_default, cpu, norm_act_default, norm_act_grad_default, options, quantize_weights_default,
    quantize_weights_grad_default, Activation, AdamHyper, CnnBackend,
};

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

    fn quantize_weights(w: FlexTensor, bits: u32) -> [FlexTensor; 2] {
        if w.dtype() != DType::F32 {
            return quantize_weights_default::<Self>(w, bits);
        }
        let (q, tanh) = cpu::quantize_weights(Dense::new(&w).f32s(), bits);
        let shape = w.shape();
        [FlexTensor::from_data(TensorData::new(q, shape.clone())), FlexTensor::from_data(TensorData::new(tanh, shape))]
    }

    fn quantize_weights_grad(tanh: FlexTensor, grad: FlexTensor) -> FlexTensor {
        if tanh.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return quantize_weights_grad_default::<Self>(tanh, grad);
        }
        let dw = cpu::quantize_weights_grad(Dense::new(&tanh).f32s(), Dense::new(&grad).f32s());
        FlexTensor::from_data(TensorData::new(dw, tanh.shape()))
    }

    fn norm_act_pool(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        eps: f64,
        act: Activation,
    ) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
        let [b, c, h, w] = x.shape().dims();
        if [&x, &gamma, &beta].iter().any(|t| t.dtype() != DType::F32) || h % 2 != 0 || w % 2 != 0 {
            let [y, mean, var] = Self::norm_act(x, gamma, beta, eps, act);
            let pooled = Self::max_pool2d_with_indices(y, [2, 2], [2, 2], [0, 0], [1, 1], false);
            return (pooled.output, pooled.indices, mean, var);
        }
        let s = cpu::Planes { batch: b, channels: c, pixels: h * w };
        let (out, indices, mean, var) =
            cpu::norm_act_pool(&s, h, w, Dense::new(&x).f32s(), Dense::new(&gamma).f32s(), Dense::new(&beta).f32s(), eps, act.cpu());
        let shape = [b, c, h / 2, w / 2];
        (tensor(out, shape), FlexTensor::from_data(TensorData::new(indices, shape)), tensor(mean, [c]), tensor(var, [c]))
    }

    #[allow(clippy::too_many_arguments)]
    fn norm_act_pool_grad(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        eps: f64,
        act: Activation,
        grad: FlexTensor,
        indices: FlexTensor,
    ) -> [FlexTensor; 3] {
        let [b, c, h, w] = x.shape().dims();
        let floats = [&x, &gamma, &beta, &mean, &var, &grad].iter().all(|t| t.dtype() == DType::F32);
        if !floats || indices.dtype() != DType::I32 || h % 2 != 0 || w % 2 != 0 {
            let full = Self::max_pool2d_with_indices_backward(x.clone(), [2, 2], [2, 2], [0, 0], [1, 1], false, grad, indices).x_grad;
            return Self::norm_act_grad(x, gamma, beta, mean, var, eps, act, full);
        }
        let s = cpu::Planes { batch: b, channels: c, pixels: h * w };
        let (dx, dgamma, dbeta) = cpu::norm_act_pool_grad(
            &s,
            Dense::new(&x).f32s(),
            Dense::new(&gamma).f32s(),
            Dense::new(&beta).f32s(),
            Dense::new(&mean).f32s(),
            Dense::new(&var).f32s(),
            eps,
            act.cpu(),
            Dense::new(&grad).f32s(),
            Dense::new(&indices).i32s(),
        );
        [tensor(dx, [b, c, h, w]), tensor(dgamma, [c]), tensor(dbeta, [c])]
    }

    fn affine_act_pool(x: FlexTensor, scale: FlexTensor, shift: FlexTensor, act: Activation) -> FlexTensor {
        let [b, c, h, w] = x.shape().dims();
        if [&x, &scale, &shift].iter().any(|t| t.dtype() != DType::F32) || h % 2 != 0 || w % 2 != 0 {
            let y = Self::affine_act(x, scale, shift, act);
            return Self::max_pool2d(y, [2, 2], [2, 2], [0, 0], [1, 1], false);
        }
        let s = cpu::Planes { batch: b, channels: c, pixels: h * w };
        let out = cpu::affine_act_pool(&s, h, w, Dense::new(&x).f32s(), Dense::new(&scale).f32s(), Dense::new(&shift).f32s(), act.cpu());
        tensor(out, [b, c, h / 2, w / 2])
    }

    fn norm_act(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, eps: f64, act: Activation) -> [FlexTensor; 3] {
        let [b, c, h, w] = x.shape().dims();
        if [&x, &gamma, &beta].iter().any(|t| t.dtype() != DType::F32) {
            return norm_act_default::<Self>(x, gamma, beta, eps, act);
        }
        let s = cpu::Planes { batch: b, channels: c, pixels: h * w };
        let (out, mean, var) =
            cpu::norm_act(&s, Dense::new(&x).f32s(), Dense::new(&gamma).f32s(), Dense::new(&beta).f32s(), eps, act.cpu());
        [tensor(out, [b, c, h, w]), tensor(mean, [c]), tensor(var, [c])]
    }

    #[allow(clippy::too_many_arguments)]
    fn norm_act_grad(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        eps: f64,
        act: Activation,
        grad: FlexTensor,
    ) -> [FlexTensor; 3] {
        let [b, c, h, w] = x.shape().dims();
        if [&x, &gamma, &beta, &mean, &var, &grad].iter().any(|t| t.dtype() != DType::F32) {
            return norm_act_grad_default::<Self>(x, gamma, beta, mean, var, eps, act, grad);
        }
        let s = cpu::Planes { batch: b, channels: c, pixels: h * w };
        let (dx, dgamma, dbeta) = cpu::norm_act_grad(
            &s,
            Dense::new(&x).f32s(),
            Dense::new(&gamma).f32s(),
            Dense::new(&beta).f32s(),
            Dense::new(&mean).f32s(),
            Dense::new(&var).f32s(),
            eps,
            act.cpu(),
            Dense::new(&grad).f32s(),
        );
        [tensor(dx, [b, c, h, w]), tensor(dgamma, [c]), tensor(dbeta, [c])]
    }

    fn adam_step<const D: usize>(
        param: Tensor<Self, D>,
        grad: Tensor<Self, D>,
        moments: Option<(Tensor<Self, D>, Tensor<Self, D>)>,
        time: usize,
        lr: f64,
        h: AdamHyper,
    ) -> (Tensor<Self, D>, Tensor<Self, D>, Tensor<Self, D>) {
        let shape = param.shape();
        let prim = |t: Tensor<Self, D>| t.into_primitive().tensor();
        let (p, g) = (prim(param), prim(grad));
        if p.dtype() != DType::F32 || g.dtype() != DType::F32 {
            let (p, g) = (Tensor::from_primitive(TensorPrimitive::Float(p)), Tensor::from_primitive(TensorPrimitive::Float(g)));
            return adam_step_default(p, g, moments, time, lr, h);
        }
        let (mut param, grad) = (Dense::new(&p).f32s().to_vec(), Dense::new(&g).f32s().to_vec());
        let (mut m, mut v) = match moments {
            Some((m, v)) => (Dense::new(&prim(m)).f32s().to_vec(), Dense::new(&prim(v)).f32s().to_vec()),
            None => (vec![0.0; param.len()], vec![0.0; param.len()]),
        };
        cpu::adam(&mut param, &grad, &mut m, &mut v, time, lr, h);
        let back = |values: Vec<f32>| {
            Tensor::<Self, D>::from_primitive(TensorPrimitive::Float(FlexTensor::from_data(TensorData::new(values, shape.clone()))))
        };
        (back(param), back(m), back(v))
    }

    fn affine_act(x: FlexTensor, scale: FlexTensor, shift: FlexTensor, act: Activation) -> FlexTensor {
        let [b, c, h, w] = x.shape().dims();
        if [&x, &scale, &shift].iter().any(|t| t.dtype() != DType::F32) {
            return affine_act_default::<Self>(x, scale, shift, act);
        }
        let s = cpu::Planes { batch: b, channels: c, pixels: h * w };
        let out = cpu::affine_act(&s, Dense::new(&x).f32s(), Dense::new(&scale).f32s(), Dense::new(&shift).f32s(), act.cpu());
        tensor(out, [b, c, h, w])
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
