//! 2x2 max pooling with stride 2 on row-major f32 planes, and its gradient.

use rayon::prelude::*;

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
