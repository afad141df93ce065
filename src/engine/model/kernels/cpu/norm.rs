//! Training-mode BatchNorm fused with the activation that follows it, on
//! row-major f32 slices in NCHW order. Forward: one pass for each channel's
//! sum and sum of squares, one that writes the activated output. Backward:
//! one pass for the sums the gradient needs, one that writes it; the
//! activation's mask is recomputed from x, never stored. Sums go to f64 per
//! plane, one task per channel adding its planes in one order, so a resumed
//! run repeats an uninterrupted one exactly.

use rayon::prelude::*;

use super::simd::multiversion;
use super::{filled, zeroed};

/// [batch, channels, pixels]: the layout BatchNorm reduces over.
#[derive(Debug, Clone, Copy)]
pub struct Planes {
    pub batch: usize,
    pub channels: usize,
    pub pixels: usize,
}

/// What follows the normalisation, with its constants in f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    Identity,
    /// max(y, 0); gradient where y > 0.
    Relu,
    /// round(clamp(y, 0, range) * up) * down, up = levels / range and
    /// down = range / levels; gradient (straight through) where 0 <= y <= range.
    Quantized {
        range: f32,
        up: f32,
        down: f32,
    },
}

/// Per channel, the sums over the batch of f(image, channel): one task per
/// channel, each adding its planes in one order.
fn channel_sums<const K: usize>(s: &Planes, f: impl Fn(usize, usize) -> [f64; K] + Sync) -> Vec<[f64; K]> {
    (0..s.channels)
        .into_par_iter()
        .map(|c| {
            (0..s.batch).fold([0.0; K], |mut acc, b| {
                for (a, v) in acc.iter_mut().zip(f(b, c)) {
                    *a += v;
                }
                acc
            })
        })
        .collect()
}

/// Where image b's plane of channel c lies.
fn plane(s: &Planes, b: usize, c: usize) -> std::ops::Range<usize> {
    let start = (b * s.channels + c) * s.pixels;
    start..start + s.pixels
}

/// Sums of 16 interleaved lanes, so the compiler keeps them in vector
/// registers; added into f64 at the end. Indexed loops on purpose: the
/// shape the vectoriser turns into one register per k.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn lanes<const K: usize>(n: usize, f: impl Fn(usize) -> [f32; K]) -> [f64; K] {
    let mut acc = [[0f32; 16]; K];
    let whole = n / 16 * 16;
    for start in (0..whole).step_by(16) {
        for lane in 0..16 {
            let v = f(start + lane);
            for k in 0..K {
                acc[k][lane] += v[k];
            }
        }
    }
    let mut out = [0f64; K];
    for k in 0..K {
        out[k] = acc[k].iter().map(|&v| v as f64).sum();
    }
    for i in whole..n {
        let v = f(i);
        for k in 0..K {
            out[k] += v[k] as f64;
        }
    }
    out
}

/// `$body` with `$apply` (the activation) and `$pass` (1 where it passes
/// the gradient) bound to closures of the activation at hand: one loop per
/// activation, each compiled and vectorised on its own.
macro_rules! per_act {
    ($act:expr, |$apply:ident, $pass:ident| $body:expr) => {
        match $act {
            Act::Identity => {
                let $apply = |y: f32| y;
                let $pass = |_: f32| 1f32;
                let _ = (&$apply, &$pass);
                $body
            }
            Act::Relu => {
                let $apply = |y: f32| y.max(0.0);
                let $pass = |y: f32| if y > 0.0 { 1f32 } else { 0.0 };
                let _ = (&$apply, &$pass);
                $body
            }
            Act::Quantized { range, up, down } => {
                let $apply = move |y: f32| (y.clamp(0.0, range) * up).round_ties_even() * down;
                let $pass = move |y: f32| if (0.0..=range).contains(&y) { 1f32 } else { 0.0 };
                let _ = (&$apply, &$pass);
                $body
            }
        }
    };
}

multiversion! {
    /// One plane's sum and sum of squares.
    fn plane_sums(x: &[f32]) -> [f64; 2] {
        lanes(x.len(), |i| [x[i], x[i] * x[i]])
    }
}

multiversion! {
    /// One plane of act(x * k + m).
    fn affine_plane(out: &mut [f32], x: &[f32], k: f32, m: f32, act: Act) {
        let n = out.len().min(x.len());
        let (out, x) = (&mut out[..n], &x[..n]);
        per_act!(act, |apply, pass| out.iter_mut().zip(x).for_each(|(o, &v)| *o = apply(v * k + m)))
    }
}

multiversion! {
    /// One plane's sum of gy and of gy * x, gy = g where the activation of
    /// x * k + m passes the gradient.
    fn grad_sums(x: &[f32], g: &[f32], k: f32, m: f32, act: Act) -> [f64; 2] {
        let n = x.len().min(g.len());
        let (x, g) = (&x[..n], &g[..n]);
        per_act!(act, |apply, pass| lanes(n, |i| {
            let gy = g[i] * pass(x[i] * k + m);
            [gy, gy * x[i]]
        }))
    }
}

multiversion! {
    /// One plane of dx = a * gy + b * x + c.
    #[allow(clippy::too_many_arguments)]
    fn dx_plane(dx: &mut [f32], x: &[f32], g: &[f32], k: f32, m: f32, act: Act, coef: [f32; 3]) {
        let n = dx.len().min(x.len()).min(g.len());
        let (dx, x, g) = (&mut dx[..n], &x[..n], &g[..n]);
        let [a, b, c] = coef;
        per_act!(act, |apply, pass| for i in 0..n {
            dx[i] = a * (g[i] * pass(x[i] * k + m)) + b * x[i] + c;
        })
    }
}

multiversion! {
    /// One plane [h, w] of act(x * k + m), 2x2 max-pooled: each window's
    /// maximum and, when `indices` is given, where in the plane it came
    /// from (y * w + x, the first on ties, as burn's max_pool2d says it).
    #[allow(clippy::too_many_arguments)]
    fn affine_pool_plane(out: &mut [f32], indices: Option<&mut [i32]>, x: &[f32], h: usize, w: usize, k: f32, m: f32, act: Act) {
        let (oh, ow) = (h / 2, w / 2);
        let out = &mut out[..oh * ow];
        let x = &x[..h * w];
        // A row pair at a time, in segments of up to 16 windows: activations
        // along the rows first (contiguous, vectorised), then each window's
        // maximum from the two rows' (even, odd) pairs. Taken window by
        // window from the input, the stride-2 reads kept this scalar.
        const SEGMENT: usize = 16;
        let mut indices = indices.map(|indices| &mut indices[..oh * ow]);
        per_act!(act, |apply, pass| {
            let (mut a, mut b) = ([0f32; 2 * SEGMENT], [0f32; 2 * SEGMENT]);
            for y in 0..oh {
                let (top, bottom) = (&x[2 * y * w..][..w], &x[(2 * y + 1) * w..][..w]);
                for first in (0..ow).step_by(SEGMENT) {
                    let n = SEGMENT.min(ow - first);
                    let (a, b) = (&mut a[..2 * n], &mut b[..2 * n]);
                    for (a, &x) in a.iter_mut().zip(&top[2 * first..][..2 * n]) {
                        *a = apply(x * k + m);
                    }
                    for (b, &x) in b.iter_mut().zip(&bottom[2 * first..][..2 * n]) {
                        *b = apply(x * k + m);
                    }
                    let (a, _) = a.as_chunks::<2>();
                    let (b, _) = b.as_chunks::<2>();
                    let out = &mut out[y * ow + first..][..n];
                    match indices.as_deref_mut() {
                        Some(indices) => {
                            let indices = &mut indices[y * ow + first..][..n];
                            let corner = (2 * y * w + 2 * first) as i32;
                            let (w, mut at) = (w as i32, corner);
                            for (((o, index), &[v0, v1]), &[v2, v3]) in out.iter_mut().zip(indices.iter_mut()).zip(a).zip(b) {
                                // `>` keeps the first maximum on ties, as burn's max_pool2d.
                                let (mut best, mut offset) = (v0, 0);
                                if v1 > best {
                                    (best, offset) = (v1, 1);
                                }
                                if v2 > best {
                                    (best, offset) = (v2, w);
                                }
                                if v3 > best {
                                    (best, offset) = (v3, w + 1);
                                }
                                (*o, *index) = (best, at + offset);
                                at += 2;
                            }
                        }
                        None => {
                            for ((o, &[v0, v1]), &[v2, v3]) in out.iter_mut().zip(a).zip(b) {
                                *o = v0.max(v1).max(v2.max(v3));
                            }
                        }
                    }
                }
            }
        })
    }
}

multiversion! {
    /// One plane's sum of gy and gy * x over the pooled maxima only (the
    /// other positions get no gradient), gy = g where the activation passes.
    fn pool_grad_sums(x: &[f32], g: &[f32], indices: &[i32], k: f32, m: f32, act: Act) -> [f64; 2] {
        let n = g.len().min(indices.len());
        per_act!(act, |apply, pass| lanes(n, |i| {
            let xi = x[indices[i] as usize];
            let gy = g[i] * pass(xi * k + m);
            [gy, gy * xi]
        }))
    }
}

multiversion! {
    /// One plane of dx = a * gy + b * x + c, gy non-zero only at the maxima.
    #[allow(clippy::too_many_arguments)]
    fn pool_dx_plane(dx: &mut [f32], x: &[f32], g: &[f32], indices: &[i32], k: f32, m: f32, act: Act, coef: [f32; 3]) {
        let n = dx.len().min(x.len());
        let [a, b, c] = coef;
        for i in 0..n {
            dx[i] = b * x[i] + c;
        }
        per_act!(act, |apply, pass| for (&gi, &at) in g.iter().zip(indices) {
            let at = at as usize;
            dx[at] += a * (gi * pass(x[at] * k + m));
        })
    }
}

/// `affine_act`, then 2x2 max pooling, in one pass (inference): planes are
/// [h, w] (even), the output [h/2, w/2].
pub fn affine_act_pool(s: &Planes, h: usize, w: usize, x: &[f32], scale: &[f32], shift: &[f32], act: Act) -> Vec<f32> {
    let pooled = (h / 2) * (w / 2);
    filled(s.batch * s.channels * pooled, pooled, |bc, out| {
        let x = &x[bc * s.pixels..(bc + 1) * s.pixels];
        affine_pool_plane(out, None, x, h, w, scale[bc % s.channels], shift[bc % s.channels], act);
    })
}

/// `norm_act`, then 2x2 max pooling: the activated full-size output is
/// never written. Returns (pooled, where each maximum came from, mean, var).
#[allow(clippy::too_many_arguments)]
pub fn norm_act_pool(
    s: &Planes,
    h: usize,
    w: usize,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    act: Act,
) -> (Vec<f32>, Vec<i32>, Vec<f32>, Vec<f32>) {
    let (mean, var, scale, shift) = statistics(s, x, gamma, beta, eps);
    let pooled = (h / 2) * (w / 2);
    let mut out = zeroed(s.batch * s.channels * pooled);
    let mut indices = vec![0i32; out.len()];
    out.par_chunks_mut(pooled.max(1)).zip(indices.par_chunks_mut(pooled.max(1))).enumerate().for_each(|(bc, (out, idx))| {
        let c = bc % s.channels;
        affine_pool_plane(out, Some(idx), &x[bc * s.pixels..(bc + 1) * s.pixels], h, w, scale[c], shift[c], act);
    });
    (out, indices, mean, var)
}

/// (dx, dgamma, dbeta) of `norm_act_pool`, from the pooled output's gradient g.
#[allow(clippy::too_many_arguments)]
pub fn norm_act_pool_grad(
    s: &Planes,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    act: Act,
    g: &[f32],
    indices: &[i32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let pooled = g.len() / (s.batch * s.channels).max(1);
    let at = |b: usize, c: usize| (b * s.channels + c) * pooled..(b * s.channels + c + 1) * pooled;
    backward(
        s,
        gamma,
        beta,
        mean,
        var,
        eps,
        |b, c, scale, shift| {
            let r = at(b, c);
            pool_grad_sums(&x[plane(s, b, c)], &g[r.clone()], &indices[r], scale, shift, act)
        },
        |bc, dx, scale, shift, coef| {
            let r = bc * pooled..(bc + 1) * pooled;
            pool_dx_plane(dx, &x[bc * s.pixels..(bc + 1) * s.pixels], &g[r.clone()], &indices[r], scale, shift, act, coef);
        },
    )
}

/// Per channel, gamma / std and beta - mean * gamma / std.
fn affine(gamma: &[f32], beta: &[f32], mean: &[f64], inv_std: &[f64]) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma.iter().zip(inv_std).map(|(&g, &k)| (g as f64 * k) as f32).collect();
    let shift: Vec<f32> = beta.iter().zip(mean).zip(&scale).map(|((&b, &m), &k)| b - m as f32 * k).collect();
    (scale, shift)
}

/// act(x * scale + shift) per channel, in one pass: what training's forward
/// writes, and inference with the running statistics folded into scale and
/// shift.
pub fn affine_act(s: &Planes, x: &[f32], scale: &[f32], shift: &[f32], act: Act) -> Vec<f32> {
    filled(x.len(), s.pixels, |bc, out| {
        let x = &x[bc * s.pixels..(bc + 1) * s.pixels];
        affine_plane(out, x, scale[bc % s.channels], shift[bc % s.channels], act);
    })
}

/// The batch's mean and biased var per channel, and the scale and shift
/// (gamma / std, beta - mean * gamma / std) they give.
fn statistics(s: &Planes, x: &[f32], gamma: &[f32], beta: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = (s.batch * s.pixels) as f64;
    let sums = channel_sums(s, |b, c| plane_sums(&x[plane(s, b, c)]));
    let mean: Vec<f64> = sums.iter().map(|[sum, _]| sum / n).collect();
    let var: Vec<f64> = sums.iter().zip(&mean).map(|([_, squares], m)| (squares / n - m * m).max(0.0)).collect();
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let (scale, shift) = affine(gamma, beta, &mean, &inv_std);
    let narrow = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    (narrow(mean), narrow(var), scale, shift)
}

/// act(gamma * (x - mean) / sqrt(var + eps) + beta) with the batch's mean and
/// biased var per channel; returns (output, mean, var).
pub fn norm_act(s: &Planes, x: &[f32], gamma: &[f32], beta: &[f32], eps: f64, act: Act) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mean, var, scale, shift) = statistics(s, x, gamma, beta, eps);
    (affine_act(s, x, &scale, &shift, act), mean, var)
}

/// (dx, dgamma, dbeta) of `norm_act`, from the output gradient g.
#[allow(clippy::too_many_arguments)]
pub fn norm_act_grad(
    s: &Planes,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    act: Act,
    g: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    backward(
        s,
        gamma,
        beta,
        mean,
        var,
        eps,
        |b, c, scale, shift| {
            let r = plane(s, b, c);
            grad_sums(&x[r.clone()], &g[r], scale, shift, act)
        },
        |bc, dx, scale, shift, coef| {
            let r = bc * s.pixels..(bc + 1) * s.pixels;
            dx_plane(dx, &x[r.clone()], &g[r], scale, shift, act, coef);
        },
    )
}

/// The backward pass BatchNorm + activation (+ pooling) share: per channel,
/// the sum of gy and of gy * x (`sums(b, c, scale, shift)` for one plane;
/// gy is the gradient that reaches the normalisation), then dgamma, dbeta
/// and the coefficients of dx = a * gy + b * x + c, with which
/// `write(b * channels + c, dx plane, scale, shift, [a, b, c])` fills dx.
#[allow(clippy::too_many_arguments)]
fn backward(
    s: &Planes,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    sums: impl Fn(usize, usize, f32, f32) -> [f64; 2] + Sync,
    write: impl Fn(usize, &mut [f32], f32, f32, [f32; 3]) + Sync,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = (s.batch * s.pixels) as f64;
    let mean64: Vec<f64> = mean.iter().map(|&m| m as f64).collect();
    let inv_std: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + eps).sqrt()).collect();
    let (scale, shift) = affine(gamma, beta, &mean64, &inv_std);
    let sums = channel_sums(s, |b, c| sums(b, c, scale[c], shift[c]));
    let dbeta: Vec<f64> = sums.iter().map(|[sum, _]| *sum).collect();
    let dgamma: Vec<f64> = sums.iter().zip(&mean64).zip(&inv_std).map(|(([sum, sum_x], m), k)| (sum_x - m * sum) * k).collect();
    // dx = gamma / std / n * (n * gy - dbeta - xhat * dgamma) = a * gy + b * x + c per channel.
    let coef: Vec<[f32; 3]> = (0..s.channels)
        .map(|c| {
            let k = gamma[c] as f64 * inv_std[c] / n;
            let xk = dgamma[c] * inv_std[c];
            [(k * n) as f32, (-k * xk) as f32, (k * (xk * mean64[c] - dbeta[c])) as f32]
        })
        .collect();
    let dx = filled(s.batch * s.channels * s.pixels, s.pixels, |bc, dx| {
        let c = bc % s.channels;
        write(bc, dx, scale[c], shift[c], coef[c]);
    });
    let narrow = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    (dx, narrow(dgamma), narrow(dbeta))
}
