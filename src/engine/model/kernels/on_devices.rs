//! kdtui's ops from the same inputs on the CPU kernels and on wgpu, for the
//! GPU-path test (tests/gpu_path.rs compares what these return). In the
//! library rather than in the test so that their generic code is compiled
//! with the rest of the crate: instantiated in the test binary (burn's
//! fusion and cubecl ops for wgpu, with autodiff) it alone took 3 min 34 s
//! of a CI build, the last part on one core.

use burn::backend::wgpu::WgpuDevice;
use burn::backend::{Autodiff, Flex, Wgpu};
use burn::prelude::*;
use rand::{Rng, SeedableRng};

use super::{affine_act_pool, conv3x3, norm_act, norm_act_pool, Activation, AdamHyper, CnnBackend, TrainBackend};

/// Where an op runs.
#[derive(Clone, Copy)]
pub enum On<'a> {
    Cpu,
    Wgpu(&'a WgpuDevice),
}

/// One layer's forward and gradients: conv3x3, then the BatchNorm +
/// activation (+ pool) op, against a fixed weighting of the output. Returns
/// the output, the batch mean and variance, and the gradients of the input,
/// the weight, gamma and beta, in that order.
pub fn layer(on: On, shape: [usize; 4], cout: usize, act: Activation, pool: bool) -> Vec<Vec<f32>> {
    match on {
        On::Cpu => layer_on::<Autodiff<Flex>>(shape, cout, act, pool, &Default::default()),
        On::Wgpu(device) => layer_on::<Autodiff<Wgpu>>(shape, cout, act, pool, device),
    }
}

/// Inference's op (BatchNorm folded into a per-channel affine op, then the
/// activation and 2x2 pooling) on a [3, 4, 6, 8] input.
pub fn inference(on: On, act: Activation) -> Vec<f32> {
    fn run<B: CnnBackend>(act: Activation, device: &B::Device) -> Vec<f32> {
        let x = host::<B, 4>([3, 4, 6, 8], 6, device);
        let (scale, shift) = (host::<B, 1>([4], 7, device), host::<B, 1>([4], 8, device));
        values(affine_act_pool(x, scale, shift, act))
    }
    match on {
        On::Cpu => run::<Flex>(act, &Default::default()),
        On::Wgpu(device) => run::<Wgpu>(act, device),
    }
}

/// Three Adam steps over [130, 257] values (more than one CPU chunk), with
/// gradients that shrink tenfold each step: the parameters and both moments.
pub fn adam(on: On, hyper: AdamHyper) -> Vec<Vec<f32>> {
    fn steps<B: CnnBackend>(h: AdamHyper, device: &B::Device) -> Vec<Vec<f32>> {
        let mut state = (host::<B, 2>([130, 257], 9, device), None);
        for time in 1..=3 {
            let grad = host::<B, 2>([130, 257], 10 + time as u64, device).mul_scalar(10f32.powi(-(time as i32)));
            let (p, m, v) = B::adam_step(state.0, grad, state.1, time, 1e-2, h);
            state = (p, Some((m, v)));
        }
        let (m, v) = state.1.expect("three steps ran");
        vec![values(state.0), values(m), values(v)]
    }
    match on {
        On::Cpu => steps::<Flex>(hyper, &Default::default()),
        On::Wgpu(device) => steps::<Wgpu>(hyper, device),
    }
}

/// Host-side inputs from a seeded generator: the same numbers for both
/// backends and on every run.
fn host<B: Backend, const D: usize>(shape: [usize; D], seed: u64, device: &B::Device) -> Tensor<B, D> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-2.0..2.0)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("f32 values")
}

fn layer_on<B: TrainBackend>(shape: [usize; 4], cout: usize, act: Activation, pool: bool, device: &B::Device) -> Vec<Vec<f32>> {
    let x = host::<B, 4>(shape, 1, device).require_grad();
    let w = host::<B, 4>([cout, shape[1], 3, 3], 2, device).require_grad();
    let gamma = host::<B, 1>([cout], 3, device).require_grad();
    let beta = host::<B, 1>([cout], 4, device).require_grad();
    let y = conv3x3(x.clone(), w.clone());
    let (out, mean, var) =
        if pool { norm_act_pool(y, gamma.clone(), beta.clone(), 1e-5, act) } else { norm_act(y, gamma.clone(), beta.clone(), 1e-5, act) };
    let weights = host::<B, 4>(out.dims(), 5, device);
    let grads = (out.clone() * weights).sum().backward();
    let g = |t: &Tensor<B, 4>| values(t.grad(&grads).expect("a gradient"));
    let g1 = |t: &Tensor<B, 1>| values(t.grad(&grads).expect("a gradient"));
    vec![values(out), values(mean), values(var), g(&x), g(&w), g1(&gamma), g1(&beta)]
}
