//! Training-mode BatchNorm on row-major f32 slices in NCHW order: two
//! passes forward (statistics, output) and two back, sums in f64, one task
//! per channel so every sum is added in one order.

use rayon::prelude::*;

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
    let mean: Vec<f64> =
        channel_sums(s, |b, c| x[plane(s, b, c)].iter().map(|&v| v as f64).sum::<f64>()).into_iter().map(|sum| sum / n).collect();
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
pub fn batch_norm_grad(
    s: &Planes,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
    g: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
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
