//! The 3x3 convolution (stride 1, padding 1, no bias) on row-major f32
//! slices in NCHW order: forward, input gradient and weight gradient, each
//! one im2col (or col2im) per image and one matrix product shaped for gemm,
//! images spread over rayon's threads.

use rayon::prelude::*;

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
