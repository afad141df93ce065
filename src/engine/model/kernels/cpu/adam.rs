//! One Adam step of one parameter tensor in a single pass over its values
//! (burn's tensor ops take a dozen, each allocating).

use rayon::prelude::*;

use crate::engine::model::kernels::{adam_factors, AdamHyper};

/// Values per task: large tensors are split over the threads, small ones not.
const CHUNK: usize = 1 << 14;

/// Updates `param`, `m` and `v` in place with `grad`, at step `time` (from 1);
/// `m` and `v` are zeros at the first step. The arithmetic is `adam_step`'s.
pub fn adam(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], time: usize, lr: f64, h: AdamHyper) {
    let (factor, eps) = adam_factors(time, h);
    let (b1, b2) = (h.beta_1 as f32, h.beta_2 as f32);
    let (one_b1, one_b2) = ((1.0 - h.beta_1) as f32, (1.0 - h.beta_2) as f32);
    let (factor, eps, lr32) = (factor as f32, eps as f32, lr as f32);
    let l2 = if h.decoupled { 0.0 } else { h.weight_decay as f32 };
    let keep = if h.decoupled { (1.0 - lr * h.weight_decay) as f32 } else { 1.0 };
    param.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK)).zip(m.par_chunks_mut(CHUNK)).zip(v.par_chunks_mut(CHUNK)).for_each(
        |(((p, g), m), v)| {
            for i in 0..p.len() {
                let g = g[i] + l2 * p[i];
                m[i] = b1 * m[i] + one_b1 * g;
                v[i] = b2 * v[i] + one_b2 * (g * g);
                let update = m[i] * factor / (v[i].sqrt() + eps);
                p[i] = p[i] * keep - lr32 * update;
            }
        },
    );
}
