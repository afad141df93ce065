//! The k-bit weight quantizer (`quant::quantize_weights`) and its gradient
//! on slices. In burn's tensor ops it was a dozen recorded ops a layer, its
//! tanh computed on one thread and again in the backward pass (5% of a
//! student's training step in `perf`); here tanh is computed once, on
//! rayon's threads, and kept for the gradient.

use super::filled;

/// Values a task takes. A default student's layers hold 162 to 25,000
/// weights: the larger ones split over the threads, the smallest stay in
/// one task, where a split would cost more than their tanh.
const CHUNK: usize = 4096;

/// (k-bit weights, tanh(w)) of w, `bits` < 32. The same float operations in
/// the same order as `quant::quantize_weights`, so that a packed student,
/// which stores levels, computes with the very weights trained here.
pub fn quantize_weights(w: &[f32], bits: u32) -> (Vec<f32>, Vec<f32>) {
    let tanh = filled(w.len(), CHUNK, |i, out| {
        for (o, v) in out.iter_mut().zip(&w[i * CHUNK..]) {
            *o = v.tanh();
        }
    });
    let d = largest(&tanh).0 * 2.0 + 1e-8;
    let n = ((1u64 << bits) - 1) as f32;
    let q = tanh.iter().map(|&t| ((t / d + 0.5) * n).round_ties_even() / n * 2.0 - 1.0).collect();
    (q, tanh)
}

/// d loss / d w of `quantize_weights`, given tanh(w) and d loss / d q: the
/// formula `quant::weight_grad_of_tanh` derives.
pub fn quantize_weights_grad(tanh: &[f32], grad: &[f32]) -> Vec<f32> {
    assert_eq!(tanh.len(), grad.len(), "one gradient per weight");
    let (max, at) = largest(tanh);
    let d = max * 2.0 + 1e-8;
    let dot: f32 = grad.iter().zip(tanh).map(|(g, t)| 2.0 * g * t).sum();
    let mut out = filled(tanh.len(), CHUNK, |i, out| {
        let start = i * CHUNK;
        for ((o, g), t) in out.iter_mut().zip(&grad[start..]).zip(&tanh[start..]) {
            *o = 2.0 * g / d * (1.0 - t * t);
        }
    });
    if let Some(t) = tanh.get(at) {
        let sign = if *t > 0.0 {
            1.0
        } else if *t < 0.0 {
            -1.0
        } else {
            0.0
        };
        let g_max = -dot / (d * d) * 2.0 * sign;
        out[at] += g_max * (1.0 - t * t);
    }
    out
}

/// (max |t|, the first index where it is: the one burn's `max` backward
/// gives the maximum's gradient to); (0, 0) for none.
fn largest(t: &[f32]) -> (f32, usize) {
    let mut best = (0.0f32, 0usize);
    for (i, v) in t.iter().enumerate() {
        if v.abs() > best.0 {
            best = (v.abs(), i);
        }
    }
    best
}
