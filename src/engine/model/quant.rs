//! DoReFa-style quantizers with a straight-through estimator (STE).
//!
//! burn has no quantization-aware training, so the STE is written with
//! `detach`: `x + (q(x) - x).detach()` equals q(x) in the forward pass and has
//! gradient 1 with respect to x in the backward pass.

use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::IndexingUpdateOp;

/// 32 bits means "leave it in float".
pub const FLOAT_BITS: u32 = 32;

/// The level index (0 ..= 2^bits - 1, as floats) of each k-bit weight: what a
/// packed student stores. Weights below 32 bits only.
pub fn weight_levels<B: Backend, const D: usize>(w: Tensor<B, D>, bits: u32) -> Tensor<B, D> {
    weight_unit(w).mul_scalar(levels(bits)).round()
}

/// A k-bit weight from its level: `2 * (level / n) - 1`, n = 2^bits - 1,
/// the very float operations `quantize_weights` applies, so a packed student
/// computes with bit-identical weights.
pub fn weight_from_levels<B: Backend, const D: usize>(level: Tensor<B, D>, bits: u32) -> Tensor<B, D> {
    level.div_scalar(levels(bits)).mul_scalar(2.0).sub_scalar(1.0)
}

fn levels(bits: u32) -> f64 {
    ((1u64 << bits) - 1) as f64
}

/// tanh-normalised weights in [0, 1].
fn weight_unit<B: Backend, const D: usize>(w: Tensor<B, D>) -> Tensor<B, D> {
    unit_of_tanh(w.tanh())
}

/// `weight_unit` from t = tanh(w): t / (2 max|t| + 1e-8) + 0.5.
fn unit_of_tanh<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    let max = t.clone().abs().max().unsqueeze::<D>();
    // 1e-8 keeps an all-zero tensor from dividing by zero.
    t / (max * 2.0 + 1e-8) + 0.5
}

/// `quantize_weights`' value from t = tanh(w), in burn's tensor ops: what
/// the network's fused quantizer (`kernels::quantize_weights`) computes on
/// backends without a kernel of their own, and the same float operations in
/// the same order as `quantize_weights`.
pub fn quantized_of_tanh<B: Backend>(t: Tensor<B, 1>, bits: u32) -> Tensor<B, 1> {
    weight_from_levels(unit_of_tanh(t).mul_scalar(levels(bits)).round(), bits)
}

/// `quantize_weights`' gradient d loss / d w from t = tanh(w) and d loss /
/// d q, in burn's tensor ops (see `quantized_of_tanh`). With the divisor
/// d = 2 max|t| + 1e-8: the straight-through estimator gives d q / d unit
/// = 2; unit = t / d + 0.5 passes 1 / d to t and -t / d^2 to d; d passes
/// 2 sign(t) to the largest |t| (the first, as burn's `max` backward picks
/// one); t passes 1 - t^2 to w.
pub fn weight_grad_of_tanh<B: Backend>(t: Tensor<B, 1>, grad: Tensor<B, 1>) -> Tensor<B, 1> {
    let (max, at) = t.clone().abs().max_dim_with_indices(0);
    let d = max * 2.0 + 1e-8;
    let g_unit = grad.mul_scalar(2.0);
    let g_d = -(g_unit.clone() * t.clone()).sum() / d.clone().powi_scalar(2);
    let g_max = g_d * 2.0 * t.clone().select(0, at.clone()).sign();
    let g_t = (g_unit / d).select_assign(0, at, g_max, IndexingUpdateOp::Add);
    g_t * (t.powi_scalar(2).neg() + 1.0)
}

/// k-bit weights in [-1, 1]: tanh-normalised to [0, 1], quantized, mapped back.
/// The network runs it as one op (`kernels::quantize_weights`); this,
/// recorded op by op, is its definition and the tests' reference.
///
/// The straight-through estimator is written `q + (u - u.detach())` here, not
/// `u + (q - u).detach()`: both have gradient 1, but only the first is exactly
/// q in the forward pass (the second can be an ulp off), and a packed student,
/// which stores levels, must compute with the very weights that were evaluated.
pub fn quantize_weights<B: Backend, const D: usize>(w: Tensor<B, D>, bits: u32) -> Tensor<B, D> {
    if bits >= FLOAT_BITS {
        return w;
    }
    let unit = weight_unit(w);
    let q = weight_from_levels(unit.clone().mul_scalar(levels(bits)).round().detach(), bits);
    // d q / d unit = 2 through the straight-through estimator.
    q + (unit.clone() - unit.detach()).mul_scalar(2.0)
}

/// k-bit activations: clipped to [0, range], quantized to 2^k uniform levels
/// (0, range / (2^k - 1), ..., range); float activations are ReLU.
///
/// DoReFa clips to [0, 1]. Behind BatchNorm (unit variance) that window passes
/// gradient for only a third of the units and saturates the rest: a 2-bit
/// student clipped at 1 reached 18.6% test accuracy where clipped at 3 it
/// reached 73.6% (same 2 epochs of 2,560 synthetic images). `range` is that
/// window, in BatchNorm's units; 1 gives plain DoReFa.
pub fn quantize_activations<B: Backend, const D: usize>(x: Tensor<B, D>, bits: u32, range: f64) -> Tensor<B, D> {
    if bits >= FLOAT_BITS {
        return relu(x);
    }
    // Written as few whole-tensor passes as possible: this runs on every
    // activation of every layer, forward and backward.
    let n = ((1u64 << bits) - 1) as f64;
    let clipped = x.clamp(0.0, range);
    let q = (clipped.clone() * (n / range)).round() * (range / n);
    clipped.clone() + (q - clipped).detach()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use std::collections::BTreeSet;

    type B = Flex;
    type AD = Autodiff<Flex>;

    fn levels(t: Tensor<B, 1>) -> BTreeSet<i64> {
        t.into_data().to_vec::<f32>().unwrap().into_iter().map(|v| (v * 1e5).round() as i64).collect()
    }

    fn spread(n: usize) -> Tensor<B, 1> {
        let v: Vec<f32> = (0..n).map(|i| -3.0 + 6.0 * i as f32 / (n - 1) as f32).collect();
        Tensor::from_floats(v.as_slice(), &Default::default())
    }

    #[test]
    fn k_bits_give_2_pow_k_levels() {
        for bits in 1..=4u32 {
            let w = levels(quantize_weights(spread(1001), bits));
            assert_eq!(w.len(), 1 << bits, "weights at {bits} bits: {w:?}");
            assert_eq!(*w.first().unwrap(), -100_000);
            assert_eq!(*w.last().unwrap(), 100_000);
            let a = levels(quantize_activations(spread(1001), bits, 1.0));
            assert_eq!(a.len(), 1 << bits, "activations at {bits} bits: {a:?}");
            assert_eq!(*a.first().unwrap(), 0);
            assert_eq!(*a.last().unwrap(), 100_000);
        }
    }

    #[test]
    fn two_bit_levels_are_uniform() {
        let w = levels(quantize_weights(spread(101), 2));
        assert_eq!(w.into_iter().collect::<Vec<_>>(), vec![-100_000, -33_333, 33_333, 100_000]);
    }

    #[test]
    fn activation_range_scales_the_levels() {
        let a = levels(quantize_activations(spread(1001), 2, 3.0));
        assert_eq!(a.into_iter().collect::<Vec<_>>(), vec![0, 100_000, 200_000, 300_000]);
    }

    #[test]
    fn float_bits_leave_weights_alone() {
        let x = spread(11);
        let y = quantize_weights(x.clone(), 32);
        assert_eq!(x.into_data(), y.into_data());
    }

    #[test]
    fn activation_gradients_pass_the_straight_through_estimator() {
        let device = Default::default();
        let x = Tensor::<AD, 1>::from_floats([0.1, 0.4, 0.6, 0.9, 1.5, -0.5], &device).require_grad();
        let y = quantize_activations(x.clone(), 2, 1.0);
        let grads = y.sum().backward();
        let g = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
        // Inside the clip range the rounding passes gradient 1; outside, the clip blocks it.
        assert_eq!(g, vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }

    /// The straight-through estimator's promise for weights: the gradient of
    /// a quantized weight is the gradient of the unrounded map it rounds,
    /// 2 * unit(w) - 1 with unit(w) = tanh(w) / (2 max|tanh(w)|) + 0.5, the
    /// maximum's dependence on every weight included. Checked against
    /// central differences of that map, computed here in f64.
    #[test]
    fn weight_gradients_are_those_of_the_tanh_normalisation() {
        let w = [0.3f64, -0.2, 0.05, 0.8, -0.9];
        let upstream = [1.0f64, 2.0, 3.0, 4.0, -1.5];
        let unrounded = |w: &[f64]| -> f64 {
            let max = w.iter().map(|v| v.tanh().abs()).fold(0.0, f64::max);
            w.iter().zip(&upstream).map(|(v, g)| g * (2.0 * (v.tanh() / (2.0 * max + 1e-8) + 0.5) - 1.0)).sum()
        };
        let h = 1e-6;
        let numeric: Vec<f64> = (0..w.len())
            .map(|i| {
                let (mut up, mut down) = (w, w);
                up[i] += h;
                down[i] -= h;
                (unrounded(&up) - unrounded(&down)) / (2.0 * h)
            })
            .collect();
        let device = Default::default();
        let as_f32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let g32: Vec<f32> = upstream.iter().map(|&v| v as f32).collect();
        for bits in [1, 2, 4] {
            let weights = Tensor::<AD, 1>::from_floats(as_f32.as_slice(), &device).require_grad();
            let grads = (quantize_weights(weights.clone(), bits) * Tensor::from_floats(g32.as_slice(), &device)).sum().backward();
            let got = weights.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
            for (i, (&g, &n)) in got.iter().zip(&numeric).enumerate() {
                assert!((g as f64 - n).abs() < 1e-4 * n.abs().max(1.0), "{bits} bits, weight {i}: STE gradient {g}, numeric {n}");
            }
        }
    }
}
