//! The 3x3 convolution (stride 1, padding 1, no bias) on row-major f32
//! slices in NCHW order: forward, input gradient and weight gradient. Layers
//! with 16 input channels or more go to Winograd's products (`winograd.rs`);
//! the others take an im2col per image and one matrix product per group of
//! images (gemm, AVX-512 where the CPU has it), groups spread over rayon's
//! threads.

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use super::filled;
use super::simd::multiversion;
use super::winograd;

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
/// the image shifted by (ky - 1, kx - 1), zero outside it. Rows start `ld`
/// values apart (a group of images' columns side by side).
fn im2col(s: &Shape, image: &[f32], cols: &mut [f32], ld: usize) {
    for c in 0..s.cin {
        let plane = &image[c * s.h * s.w..(c + 1) * s.h * s.w];
        im2col_plane(plane, s.h, s.w, &mut cols[c * 9 * ld..], ld);
    }
}

multiversion! {
    /// The nine shifted copies of one plane [h, w], rows `ld` apart. Plain
    /// loops rather than `copy_from_slice`: rows are 8 to 32 values, where a
    /// call to memcpy costs more than the copy.
    fn im2col_plane(plane: &[f32], h: usize, w: usize, cols: &mut [f32], ld: usize) {
        for ky in 0..3 {
            for kx in 0..3 {
                let row = &mut cols[(ky * 3 + kx) * ld..][..h * w];
                for y in 0..h {
                    let out = &mut row[y * w..(y + 1) * w];
                    let sy = y as isize + ky as isize - 1;
                    if sy < 0 || sy >= h as isize {
                        out.iter_mut().for_each(|o| *o = 0.0);
                        continue;
                    }
                    let src = &plane[sy as usize * w..(sy as usize + 1) * w];
                    match kx {
                        0 => {
                            out[0] = 0.0;
                            for (o, &v) in out[1..].iter_mut().zip(&src[..w - 1]) {
                                *o = v;
                            }
                        }
                        1 => {
                            for (o, &v) in out.iter_mut().zip(src) {
                                *o = v;
                            }
                        }
                        _ => {
                            for (o, &v) in out[..w - 1].iter_mut().zip(&src[1..]) {
                                *o = v;
                            }
                            out[w - 1] = 0.0;
                        }
                    }
                }
            }
        }
    }
}

/// dst [m, n] (= or +=) lhs [m, k] · rhs [k, n], all row-major with the
/// given row strides; `lhs_t` / `rhs_t` read the operand transposed.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(m: usize, n: usize, k: usize, dst: &mut [f32], accumulate: bool, lhs: &[f32], lhs_t: bool, rhs: &[f32], rhs_t: bool) {
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

/// Columns (images x pixels) of one matrix product: enough that gemm runs
/// near its peak on the small late layers (8x8 pixels: 8 images a product)
/// and packs the weights once for all of them, few enough that a group's
/// column matrix stays in cache.
const COLUMNS: usize = 512;

/// Images per product.
fn group(s: &Shape) -> usize {
    images_per_group(COLUMNS, s.pixels())
}

/// Images of `per_image` columns each that make about `columns` columns;
/// at most `IMAGES_PER_TASK`, and dividing it, so the weight gradient's
/// groups never straddle two of `sum_over_tasks`' tasks.
pub(super) fn images_per_group(columns: usize, per_image: usize) -> usize {
    let mut g = (columns / per_image).clamp(1, IMAGES_PER_TASK);
    while !IMAGES_PER_TASK.is_multiple_of(g) {
        g -= 1;
    }
    g
}

/// Image `j` of a group's [c, images * p] matrix is its columns j*p..(j+1)*p;
/// in NCHW it is [c, p] at its own offset. Copies between the two.
fn gather(block: &[f32], c: usize, p: usize, images: usize, matrix: &mut [f32]) {
    let n = images * p;
    for j in 0..images {
        for ch in 0..c {
            matrix[ch * n + j * p..][..p].copy_from_slice(&block[(j * c + ch) * p..][..p]);
        }
    }
}

fn scatter(matrix: &[f32], c: usize, p: usize, images: usize, block: &mut [f32]) {
    let n = images * p;
    for j in 0..images {
        for ch in 0..c {
            block[(j * c + ch) * p..][..p].copy_from_slice(&matrix[ch * n + j * p..][..p]);
        }
    }
}

thread_local! {
    /// Each thread's column and product matrices, kept from one call to the
    /// next: a step convolves the same shapes every time, and a fresh
    /// zeroed buffer per task cost 5% of a training step in memset alone.
    static SCRATCH: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// `f` with two of this thread's scratch buffers, `a` and `b` values long.
/// Their contents are whatever the last call left: callers write before
/// they read.
pub(super) fn with_scratch<T>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> T) -> T {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let [first, second] = &mut *scratch;
        for (buffer, len) in [(&mut *first, a), (&mut *second, b)] {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
        }
        f(&mut first[..a], &mut second[..b])
    })
}

/// out [b, cout, h, w] = conv(x [b, cin, h, w], weight [cout, cin, 3, 3]):
/// Winograd's products where the layer suits them, else im2col's.
pub fn forward(s: &Shape, x: &[f32], weight: &[f32]) -> Vec<f32> {
    if winograd::suits(s) {
        winograd::forward(s, x, weight)
    } else {
        forward_im2col(s, x, weight)
    }
}

/// The convolution per group of images: their column matrices side by side
/// and one product.
pub(super) fn forward_im2col(s: &Shape, x: &[f32], weight: &[f32]) -> Vec<f32> {
    let (p, taps, g) = (s.pixels(), s.taps(), group(s));
    filled(s.batch * s.cout * p, g * s.cout * p, |gi, out| {
        let images = out.len() / (s.cout * p);
        let n = images * p;
        with_scratch(taps * n, s.cout * n, |cols, product| {
            for j in 0..images {
                let b = gi * g + j;
                im2col(s, &x[b * s.cin * p..(b + 1) * s.cin * p], &mut cols[j * p..], n);
            }
            // [cout, taps] · [taps, images * p]
            if images == 1 {
                matmul(s.cout, n, taps, out, false, weight, false, cols, false);
            } else {
                matmul(s.cout, n, taps, product, false, weight, false, cols, false);
                scatter(product, s.cout, p, images, out);
            }
        })
    })
}

/// dx [b, cin, h, w] from weight and the output gradient g [b, cout, h, w]:
/// the convolution of g with the weights flipped in space and their two
/// channel axes swapped, computed as `forward` computes one. Its products
/// have cout * 9 as inner dimension, where the adjoint formulation (W^T g,
/// then col2im) had cout, and a scatter-add of nine shifted copies.
pub fn x_grad(s: &Shape, weight: &[f32], grad: &[f32]) -> Vec<f32> {
    let mut flipped = vec![0f32; weight.len()];
    for co in 0..s.cout {
        for ci in 0..s.cin {
            for tap in 0..9 {
                flipped[(ci * s.cout + co) * 9 + tap] = weight[(co * s.cin + ci) * 9 + (8 - tap)];
            }
        }
    }
    let swapped = Shape { cin: s.cout, cout: s.cin, ..*s };
    forward(&swapped, grad, &flipped)
}

/// Images per task of `weight_grad`: a fixed split, so the sum over the
/// batch is added in the same order whatever the threads do, and a
/// resumed run repeats an uninterrupted one exactly.
pub(super) const IMAGES_PER_TASK: usize = 16;

/// dweight [cout, cin, 3, 3] from x [b, cin, h, w] and the output gradient
/// g [b, cout, h, w]: Winograd's products where the layer suits them, else
/// im2col's.
pub fn weight_grad(s: &Shape, x: &[f32], grad: &[f32]) -> Vec<f32> {
    if winograd::suits(s) {
        winograd::weight_grad(s, x, grad)
    } else {
        weight_grad_im2col(s, x, grad)
    }
}

/// The weight gradient per group: one product over all its images' pixels.
pub(super) fn weight_grad_im2col(s: &Shape, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (p, taps, g) = (s.pixels(), s.taps(), group(s));
    sum_over_tasks(s.batch, s.cout * taps, |images_of_task, dw| {
        with_scratch(taps * g * p, s.cout * g * p, |cols, gathered| {
            for first in images_of_task.clone().step_by(g) {
                let images = g.min(images_of_task.end - first);
                let n = images * p;
                for j in 0..images {
                    let b = first + j;
                    im2col(s, &x[b * s.cin * p..(b + 1) * s.cin * p], &mut cols[j * p..], n);
                }
                let block = &grad[first * s.cout * p..][..images * s.cout * p];
                let lhs = if images == 1 {
                    block
                } else {
                    gather(block, s.cout, p, images, gathered);
                    &gathered[..s.cout * n]
                };
                // [cout, images * p] · [images * p, taps] (cols transposed), summed over the groups
                matmul(s.cout, taps, n, dw, true, lhs, false, &cols[..taps * n], true);
            }
        })
    })
}

/// The sum over the batch of what `task` adds into a zeroed buffer of `len`
/// values for each task of `IMAGES_PER_TASK` images (the last may have
/// fewer), tasks on rayon's threads and their buffers added in task order:
/// the same sum, bit for bit, however the threads ran.
pub(super) fn sum_over_tasks(batch: usize, len: usize, task: impl Fn(Range<usize>, &mut [f32]) + Sync) -> Vec<f32> {
    let partial: Vec<Vec<f32>> = (0..batch.div_ceil(IMAGES_PER_TASK))
        .into_par_iter()
        .map(|i| {
            let mut sum = vec![0f32; len];
            task(i * IMAGES_PER_TASK..((i + 1) * IMAGES_PER_TASK).min(batch), &mut sum);
            sum
        })
        .collect();
    let mut parts = partial.into_iter();
    let mut sum = parts.next().unwrap_or_else(|| vec![0f32; len]);
    for part in parts {
        sum.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    sum
}

/// What this machine's matrix products reach: every thread of rayon's pool
/// multiplies its own 384x384 matrices (fp32, in cache, the way the conv
/// kernels call gemm: one product per thread) for about `seconds`; the
/// total GFLOP/s. `kdtui bench` reports training speed as a fraction of it,
/// a limit measured rather than computed from a clock rate that turbo and
/// a shared machine make uncertain.
pub fn gemm_peak_gflops(seconds: f64) -> f64 {
    const N: usize = 384;
    let budget = std::time::Duration::from_secs_f64(seconds);
    let started = std::time::Instant::now();
    let products: usize = rayon::broadcast(|_| {
        let lhs = vec![0.5f32; N * N];
        let rhs = vec![0.25f32; N * N];
        let mut dst = vec![0f32; N * N];
        let mut done = 0;
        while done < 2 || started.elapsed() < budget {
            matmul(N, N, N, &mut dst, done > 0, &lhs, false, &rhs, false);
            done += 1;
        }
        done
    })
    .into_iter()
    .sum();
    (products * 2 * N * N * N) as f64 / started.elapsed().as_secs_f64() / 1e9
}
