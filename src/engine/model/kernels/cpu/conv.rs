//! The 3x3 convolution (stride 1, padding 1, no bias) on row-major f32
//! slices in NCHW order: forward, input gradient and weight gradient. Layers
//! with 16 input channels or more go to Winograd's products (`winograd.rs`;
//! `winograd4.rs` forward where both sides have 32 channels or more and
//! the batch 64 tiles of 4x4);
//! the others take an im2col per image (its transpose, im2row, for the
//! weight gradient) and one matrix product per group of images (gemm,
//! AVX-512 where the CPU has it), groups spread over rayon's threads.

use super::filled;
use super::shared::{images_per_group, matmul, sum_over_tasks, with_scratch};
use super::simd::multiversion;
use super::{winograd, winograd4};

pub use super::shared::Shape;

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

/// rows [h * w, cin * 9] of one image [cin, h, w]: row p holds pixel p's
/// taps (c, ky, kx), zero outside the image; the weight gradient's operand.
/// im2col's transpose: gemm multiplies it as it lies, where it gathered
/// im2col's columns with a stride of a whole row before every product
/// (its packing was a quarter of a 2-bit student's training step).
fn im2row(s: &Shape, image: &[f32], rows: &mut [f32]) {
    im2row_image(image, s.cin, s.h, s.w, rows)
}

multiversion! {
    /// `im2row` (a function of plain arguments, as `multiversion!` needs):
    /// pixel by pixel, each row written in order, three values at a time
    /// from the three input rows of its window (written column by column,
    /// a stride of a row apart, it took a fifth of a student's step).
    fn im2row_image(image: &[f32], cin: usize, h: usize, w: usize, rows: &mut [f32]) {
        let taps = cin * 9;
        for y in 0..h {
            for x in 0..w {
                let row = &mut rows[(y * w + x) * taps..][..taps];
                let inside = y > 0 && y + 1 < h && x > 0 && x + 1 < w;
                for (c, out) in row.chunks_exact_mut(9).enumerate() {
                    let plane = &image[c * h * w..(c + 1) * h * w];
                    if inside {
                        let at = (y - 1) * w + x - 1;
                        out[0..3].copy_from_slice(&plane[at..at + 3]);
                        out[3..6].copy_from_slice(&plane[at + w..at + w + 3]);
                        out[6..9].copy_from_slice(&plane[at + 2 * w..at + 2 * w + 3]);
                        continue;
                    }
                    for (tap, v) in out.iter_mut().enumerate() {
                        let (sy, sx) = ((y + tap / 3) as isize - 1, (x + tap % 3) as isize - 1);
                        let within = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                        *v = if within { plane[sy as usize * w + sx as usize] } else { 0.0 };
                    }
                }
            }
        }
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

/// out [b, cout, h, w] = conv(x [b, cin, h, w], weight [cout, cin, 3, 3]):
/// Winograd's products where the layer suits them (the larger tile where it
/// is wide), else im2col's.
pub fn forward(s: &Shape, x: &[f32], weight: &[f32]) -> Vec<f32> {
    if winograd::wide(s) {
        winograd4::forward(s, x, weight)
    } else if winograd::suits(s) {
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

/// dweight [cout, cin, 3, 3] from x [b, cin, h, w] and the output gradient
/// g [b, cout, h, w]: Winograd's products where the layer suits them, else
/// im2row's.
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
        with_scratch(taps * g * p, s.cout * g * p, |rows, gathered| {
            for first in images_of_task.clone().step_by(g) {
                let images = g.min(images_of_task.end - first);
                let n = images * p;
                for j in 0..images {
                    let b = first + j;
                    im2row(s, &x[b * s.cin * p..(b + 1) * s.cin * p], &mut rows[j * p * taps..(j + 1) * p * taps]);
                }
                let block = &grad[first * s.cout * p..][..images * s.cout * p];
                let lhs = if images == 1 {
                    block
                } else {
                    gather(block, s.cout, p, images, gathered);
                    &gathered[..s.cout * n]
                };
                // [cout, images * p] · [images * p, taps], summed over the groups
                matmul(s.cout, taps, n, dw, true, lhs, false, &rows[..n * taps], false);
            }
        })
    })
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
