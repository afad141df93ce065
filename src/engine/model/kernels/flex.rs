//! `CnnBackend` for burn's `flex` CPU backend: the network's ops go to
//! kdtui's kernels (`cpu`) when the tensors are f32 of the shapes they
//! handle, and to burn's ops otherwise.

use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::ops::ModuleOps;
use burn::tensor::{DType, TensorMetadata};

use super::{batch_norm_default, batch_norm_grad_default, cpu, options, CnnBackend};

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
