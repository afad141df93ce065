//! The 3x3 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin &
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2015): each
//! 2x2 block of outputs from the 4x4 block of inputs around it, with 16
//! multiplications per channel pair where the direct sum takes 36. The
//! image is cut into those tiles; each tile's inputs are transformed
//! (V = Bᵀ d B, additions only), the weights once per call (U = G g Gᵀ);
//! then each of a tile's 16 positions is one matrix product over channels,
//! M[pos] = U[pos] [cout, cin] · V[pos] [cin, tiles], and the outputs come
//! back as Y = Aᵀ m A. For the network's layers (16 to 128 channels on
//! 16x16 and 8x8 images) that is 2.25 times fewer multiply-adds than the
//! im2col product, and a 4-fold copy of the input where im2col made a
//! 9-fold one. The weight gradient is the adjoint of the same products:
//! dU[pos] = dM[pos] · V[pos]ᵀ with dM = A dY Aᵀ, then dg = Gᵀ dU G.
//! Layers of 32 channels or more on both sides, in batches of 64 tiles of
//! 4x4 or more, take the larger tile of `winograd4.rs` for their forward
//! pass (see `wide`).
//!
//! The transforms add and subtract before they multiply, so the rounding
//! differs from the direct sum's by a few ulps of the terms: the tests hold
//! every path to an exact sum.

use super::shared::{images_per_group, matmul, sum_over_tasks, winograd_forward, with_scratch, Shape};
use super::simd::multiversion;
use super::winograd4;

/// Positions of a 4x4 input tile: the matrix products of a group.
const POSITIONS: usize = 16;

/// Whether a layer goes through Winograd's products: with fewer input
/// channels the products are too thin to gain (the first layer's 3
/// channels stay with im2col, whose inner dimension is 27).
pub(super) fn suits(s: &Shape) -> bool {
    s.cin >= 16
}

/// Whether a layer's forward pass takes F(4x4, 3x3) (`winograd4.rs`): 44%
/// fewer multiplications, for transforms that cost more per output and per
/// channel, and a quarter of the tiles. Measured (`kdtui bench --measure`,
/// 2-core Zen 4, AVX-512 and AVX2): the teacher's layers (32 to 128
/// channels) train 7-14% and infer at batch 256 16-46% faster with it; the
/// default student's 24-channel layer trained about 10% slower, and the
/// teacher at batch 1 (4 tiles of an 8x8 image: products 4 columns wide)
/// inferred a third slower, so those keep F(2x2, 3x3): a layer takes the
/// larger tile when it is wide and its batch has at least a group's
/// columns of 4x4 tiles.
pub(super) fn wide(s: &Shape) -> bool {
    s.cin >= 32 && s.cout >= 32 && s.batch * s.h.div_ceil(4) * s.w.div_ceil(4) >= winograd4::COLUMNS
}

/// Tiles of 2x2 outputs covering an image: (rows, columns). An odd side's
/// last tile hangs over the edge; its inputs there are zero and its outputs
/// there are dropped.
fn tiles(h: usize, w: usize) -> (usize, usize) {
    (h.div_ceil(2), w.div_ceil(2))
}

/// Columns (images x tiles) of one group's products: one 16x16 image, four
/// 8x8 ones. Far fewer than the im2col path's 512: a group's transformed
/// input is 16 x cin x columns values and is read back by 16 products, best
/// from the core's own cache. Measured (`kdtui bench`, teacher training,
/// AVX-512 and AVX2, when every forward pass took this tile): 64 and 128
/// columns 5-10% faster than 256, 512 slower again.
const COLUMNS: usize = 64;

/// Images per group (see `conv::images_per_group`).
fn group(s: &Shape) -> usize {
    let (th, tw) = tiles(s.h, s.w);
    images_per_group(COLUMNS, th * tw)
}

/// out [b, cout, h, w] = conv(x [b, cin, h, w], weight [cout, cin, 3, 3]).
pub(super) fn forward(s: &Shape, x: &[f32], weight: &[f32]) -> Vec<f32> {
    let (th, tw) = tiles(s.h, s.w);
    let u = transform_weights(s.cout, s.cin, weight);
    let input = |x: &[f32], images: usize, v: &mut [f32]| transform_input(x, s.cin, s.h, s.w, images, v, images * th * tw);
    let output = |m: &[f32], images: usize, out: &mut [f32]| transform_output(m, s.cout, s.h, s.w, images, out, images * th * tw);
    winograd_forward(s, POSITIONS, th * tw, group(s), x, &u, input, output)
}

/// dweight [cout, cin, 3, 3] from x [b, cin, h, w] and the output gradient
/// g [b, cout, h, w], summed over tasks of images in a fixed order (a
/// resumed run repeats an uninterrupted one).
pub(super) fn weight_grad(s: &Shape, x: &[f32], grad: &[f32]) -> Vec<f32> {
    let (th, tw) = tiles(s.h, s.w);
    let (p, g) = (s.h * s.w, group(s));
    let du = sum_over_tasks(s.batch, POSITIONS * s.cout * s.cin, |images_of_task, du| {
        with_scratch(POSITIONS * s.cin * g * th * tw, POSITIONS * s.cout * g * th * tw, |v, dm| {
            for first in images_of_task.clone().step_by(g) {
                let images = g.min(images_of_task.end - first);
                let n = images * th * tw;
                transform_input(&x[first * s.cin * p..][..images * s.cin * p], s.cin, s.h, s.w, images, v, n);
                transform_grad(&grad[first * s.cout * p..][..images * s.cout * p], s.cout, s.h, s.w, images, dm, n);
                for pos in 0..POSITIONS {
                    let du = &mut du[pos * s.cout * s.cin..][..s.cout * s.cin];
                    let (dm, v) = (&dm[pos * s.cout * n..][..s.cout * n], &v[pos * s.cin * n..][..s.cin * n]);
                    // [cout, images * tiles] · [images * tiles, cin] (V transposed), summed over the groups
                    matmul(s.cout, s.cin, n, du, true, dm, false, v, true);
                }
            }
        })
    });
    weights_from_transformed(s.cout, s.cin, &du)
}

/// G v for a 3-vector v, G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]].
#[inline(always)]
fn g_times([a, b, c]: [f32; 3]) -> [f32; 4] {
    [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]
}

/// Gᵀ v for a 4-vector v.
#[inline(always)]
fn g_t_times([a, b, c, d]: [f32; 4]) -> [f32; 3] {
    [a + 0.5 * (b + c), 0.5 * (b - c), 0.5 * (b + c) + d]
}

/// U [16, cout, cin] = G g Gᵀ of every 3x3 kernel g of weight [cout, cin, 3, 3].
fn transform_weights(cout: usize, cin: usize, weight: &[f32]) -> Vec<f32> {
    let mut u = vec![0f32; POSITIONS * cout * cin];
    for co in 0..cout {
        for ci in 0..cin {
            let g = &weight[(co * cin + ci) * 9..][..9];
            // G g: column l of the kernel through G.
            let mut gg = [[0f32; 3]; 4];
            for l in 0..3 {
                let column = g_times([g[l], g[3 + l], g[6 + l]]);
                for i in 0..4 {
                    gg[i][l] = column[i];
                }
            }
            for (i, row) in gg.iter().enumerate() {
                for (j, value) in g_times(*row).into_iter().enumerate() {
                    u[((i * 4 + j) * cout + co) * cin + ci] = value;
                }
            }
        }
    }
    u
}

/// dweight [cout, cin, 3, 3] = Gᵀ dU G from dU [16, cout, cin].
fn weights_from_transformed(cout: usize, cin: usize, du: &[f32]) -> Vec<f32> {
    let mut dw = vec![0f32; cout * cin * 9];
    for co in 0..cout {
        for ci in 0..cin {
            let mut tile = [[0f32; 4]; 4];
            for (pos, value) in tile.as_flattened_mut().iter_mut().enumerate() {
                *value = du[(pos * cout + co) * cin + ci];
            }
            // Gᵀ dU: column j of the tile through Gᵀ.
            let mut rows = [[0f32; 4]; 3];
            for j in 0..4 {
                let column = g_t_times([tile[0][j], tile[1][j], tile[2][j], tile[3][j]]);
                for k in 0..3 {
                    rows[k][j] = column[k];
                }
            }
            let out = &mut dw[(co * cin + ci) * 9..][..9];
            for (k, row) in rows.iter().enumerate() {
                out[k * 3..k * 3 + 3].copy_from_slice(&g_t_times(*row));
            }
        }
    }
    dw
}

/// The four `len`-long slices of `buf` that start at `starts` (increasing,
/// at least `len` apart), each writable: the rows one pass of a transform
/// writes side by side.
#[inline(always)]
fn four_mut(buf: &mut [f32], starts: [usize; 4], len: usize) -> [&mut [f32]; 4] {
    let (first, rest) = buf[starts[0]..].split_at_mut(starts[1] - starts[0]);
    let (second, rest) = rest.split_at_mut(starts[2] - starts[1]);
    let (third, fourth) = rest.split_at_mut(starts[3] - starts[2]);
    [&mut first[..len], &mut second[..len], &mut third[..len], &mut fourth[..len]]
}

multiversion! {
    /// V [16, c, ld] of `images` images [c, h, w]: column j * tiles + ty * tw + tx
    /// holds Bᵀ d B of the 4x4 inputs from row 2ty - 1 and column 2tx - 1,
    /// Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
    /// Bᵀ down the columns first, along whole rows; then along the rows,
    /// one pass over all of a plane's tiles at once (tiles are two columns
    /// apart: the stride-2 reads vectorise over a long loop, not over a
    /// row's 4 to 16 tiles), with the tiles at either end of a row fixed up
    /// after.
    fn transform_input(x: &[f32], c: usize, h: usize, w: usize, images: usize, v: &mut [f32], ld: usize) {
        let (th, tw) = tiles(h, w);
        let t = th * tw;
        // e[i][1 + ty * 2tw + column]: Bᵀ d down the columns for row i of the
        // tiles in row ty; zero before the first value, after the last, and
        // in the column past an odd w (never written).
        let len = 2 * t + 2;
        let mut e = vec![0f32; 4 * len];
        let zeros = vec![0f32; w];
        for image in 0..images {
            for ch in 0..c {
                let plane = &x[(image * c + ch) * h * w..][..h * w];
                let row = |y: isize| if y >= 0 && (y as usize) < h { &plane[y as usize * w..][..w] } else { &zeros[..w] };
                for ty in 0..th {
                    let top = 2 * ty as isize - 1;
                    let (d0, d1, d2, d3) = (row(top), row(top + 1), row(top + 2), row(top + 3));
                    let at = 1 + ty * 2 * tw;
                    let [e0, e1, e2, e3] = four_mut(&mut e, [at, len + at, 2 * len + at, 3 * len + at], w);
                    let outs = e0.iter_mut().zip(e1.iter_mut()).zip(e2.iter_mut()).zip(e3.iter_mut());
                    let ins = d0.iter().zip(d1).zip(d2.iter().zip(d3));
                    for ((((e0, e1), e2), e3), ((d0, d1), (d2, d3))) in outs.zip(ins) {
                        (*e0, *e1, *e2, *e3) = (d0 - d2, d1 + d2, d2 - d1, d1 - d3);
                    }
                }
                for i in 0..4 {
                    let p = &e[i * len..][..len];
                    let base = |j: usize| ((i * 4 + j) * c + ch) * ld + image * t;
                    let [o0, o1, o2, o3] = four_mut(v, [base(0), base(1), base(2), base(3)], t);
                    // Tile f reads (a0, a1, a2, a3) = p[2f .. 2f + 4]: pairs f and f + 1.
                    let (pairs, _) = p.as_chunks::<2>();
                    let outs = o0.iter_mut().zip(o1.iter_mut()).zip(o2.iter_mut()).zip(o3.iter_mut());
                    for ((((o0, o1), o2), o3), (&[a0, a1], &[a2, a3])) in outs.zip(pairs.iter().zip(&pairs[1..])) {
                        (*o0, *o1, *o2, *o3) = (a0 - a2, a1 + a2, a2 - a1, a1 - a3);
                    }
                    // A row's first tile read the row before's last value as a0, its
                    // last tile the next row's first as a3: both are padding, zero.
                    for ty in 0..th {
                        let (first, last) = (ty * tw, ty * tw + tw - 1);
                        o0[first] = -p[2 * first + 2];
                        o3[last] = p[2 * last + 1];
                    }
                }
            }
        }
    }
}

multiversion! {
    /// `images` output images [c, h, w] from the products M [16, c, ld]:
    /// each tile's 2x2 block is Aᵀ m A, Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]],
    /// computed for all tiles of a plane in one pass into two rows per tile
    /// row, then copied into place.
    fn transform_output(m: &[f32], c: usize, h: usize, w: usize, images: usize, out: &mut [f32], ld: usize) {
        let (th, tw) = tiles(h, w);
        let t = th * tw;
        // z[a][ty * 2tw + column]: output row 2ty + a (to column 2tw, past an odd w).
        let mut z = vec![0f32; 4 * t];
        let mut vertical = vec![0f32; 8 * t];
        for image in 0..images {
            for ch in 0..c {
                let base = ch * ld + image * t;
                let at = |pos: usize| &m[pos * c * ld + base..][..t];
                // Aᵀ down the columns: for each column jj of the tiles, their rows
                // m0 + m1 + m2 (top) and m1 - m2 - m3 (bottom).
                let (top, bottom) = vertical.split_at_mut(4 * t);
                for jj in 0..4 {
                    let (m0, m1, m2, m3) = (at(jj), at(4 + jj), at(8 + jj), at(12 + jj));
                    let outs = top[jj * t..][..t].iter_mut().zip(bottom[jj * t..][..t].iter_mut());
                    for ((top, bottom), ((m0, m1), (m2, m3))) in outs.zip(m0.iter().zip(m1).zip(m2.iter().zip(m3))) {
                        (*top, *bottom) = (m0 + m1 + m2, m1 - m2 - m3);
                    }
                }
                // ... then along the rows, into output rows 2ty (from top) and 2ty + 1.
                let (z0, z1) = z.split_at_mut(2 * t);
                for (rows, z) in [(&*top, z0), (&*bottom, z1)] {
                    let (z, _) = z.as_chunks_mut::<2>();
                    let (v0, v1, v2, v3) = (&rows[..t], &rows[t..2 * t], &rows[2 * t..3 * t], &rows[3 * t..]);
                    for (z, ((v0, v1), (v2, v3))) in z.iter_mut().zip(v0.iter().zip(v1).zip(v2.iter().zip(v3))) {
                        *z = [v0 + v1 + v2, v1 - v2 - v3];
                    }
                }
                let plane = &mut out[(image * c + ch) * h * w..][..h * w];
                for (y, row) in plane.chunks_exact_mut(w).enumerate() {
                    row.copy_from_slice(&z[(y % 2) * 2 * t + (y / 2) * 2 * tw..][..w]);
                }
            }
        }
    }
}

multiversion! {
    /// dM [16, c, ld] from the output gradient of `images` images [c, h, w]:
    /// each tile's A dY Aᵀ, the adjoint of `transform_output` (a tile's
    /// outputs past an odd edge do not exist: zero gradient).
    fn transform_grad(grad: &[f32], c: usize, h: usize, w: usize, images: usize, dm: &mut [f32], ld: usize) {
        let (th, tw) = tiles(h, w);
        let t = th * tw;
        // z[a][ty * 2tw + column]: gradient row 2ty + a, zero past the edges
        // (those values are never written).
        let mut z = vec![0f32; 4 * t];
        for image in 0..images {
            for ch in 0..c {
                let plane = &grad[(image * c + ch) * h * w..][..h * w];
                for (y, row) in plane.chunks_exact(w).enumerate() {
                    z[(y % 2) * 2 * t + (y / 2) * 2 * tw..][..w].copy_from_slice(row);
                }
                let (z0, z1) = z.split_at(2 * t);
                let base = ch * ld + image * t;
                // A down the columns, (g0, g0 + g1, g0 - g1, -g1), then along the
                // rows the same: row i of the tile from (l, r), its columns.
                for i in 0..4 {
                    let at = |jj: usize| (i * 4 + jj) * c * ld + base;
                    let [o0, o1, o2, o3] = four_mut(dm, [at(0), at(1), at(2), at(3)], t);
                    let (z0, _) = z0.as_chunks::<2>();
                    let (z1, _) = z1.as_chunks::<2>();
                    let outs = o0.iter_mut().zip(o1.iter_mut()).zip(o2.iter_mut()).zip(o3.iter_mut());
                    for ((((o0, o1), o2), o3), (&[e0, d0], &[e1, d1])) in outs.zip(z0.iter().zip(z1)) {
                        let (l, r) = match i {
                            0 => (e0, d0),
                            1 => (e0 + e1, d0 + d1),
                            2 => (e0 - e1, d0 - d1),
                            _ => (-e1, -d1),
                        };
                        (*o0, *o1, *o2, *o3) = (l, l + r, l - r, -r);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conv;
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        // A fixed, irregular sequence in [-1, 1): no two neighbours alike.
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed.wrapping_mul(40503)) >> 8) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The convolution and its weight and input gradients summed in f64,
    /// with the sums of the terms' magnitudes that bound a float sum's
    /// rounding.
    fn exact(s: &Shape, x: &[f32], weight: &[f32], grad: &[f32]) -> [(Vec<f64>, Vec<f64>); 3] {
        let mut out = (vec![0f64; s.batch * s.cout * s.h * s.w], vec![0f64; s.batch * s.cout * s.h * s.w]);
        let mut dw = (vec![0f64; s.cout * s.cin * 9], vec![0f64; s.cout * s.cin * 9]);
        let mut dx = (vec![0f64; x.len()], vec![0f64; x.len()]);
        for b in 0..s.batch {
            for co in 0..s.cout {
                for y in 0..s.h {
                    for xx in 0..s.w {
                        let o = ((b * s.cout + co) * s.h + y) * s.w + xx;
                        for ci in 0..s.cin {
                            for k in 0..9 {
                                let (sy, sx) = ((y + k / 3) as isize - 1, (xx + k % 3) as isize - 1);
                                if sy < 0 || sx < 0 || sy >= s.h as isize || sx >= s.w as isize {
                                    continue;
                                }
                                let xi = ((b * s.cin + ci) * s.h + sy as usize) * s.w + sx as usize;
                                let input = x[xi] as f64;
                                let wi = (co * s.cin + ci) * 9 + k;
                                dx.0[xi] += grad[o] as f64 * weight[wi] as f64;
                                dx.1[xi] += (grad[o] as f64 * weight[wi] as f64).abs();
                                out.0[o] += weight[wi] as f64 * input;
                                out.1[o] += (weight[wi] as f64 * input).abs();
                                dw.0[wi] += grad[o] as f64 * input;
                                dw.1[wi] += (grad[o] as f64 * input).abs();
                            }
                        }
                    }
                }
            }
        }
        [out, dw, dx]
    }

    /// Every element within 1e-5 of the magnitude of its terms: float
    /// rounding, where a wrong index or sign is off by a whole term.
    fn close(got: &[f32], (want, magnitude): &(Vec<f64>, Vec<f64>), what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, ((g, w), m)) in got.iter().zip(want).zip(magnitude).enumerate() {
            assert!((*g as f64 - w).abs() <= 1e-5 * m.max(1.0), "{what}: element {i}: {g} vs {w} (terms {m})");
        }
    }

    #[test]
    fn both_paths_equal_the_exact_sums() {
        let (mut winograd_dx, mut wide_dx) = (0, 0);
        for (batch, cin, cout, h, w) in [
            (2, 3, 4, 5, 7),
            (1, 16, 8, 8, 8),
            (3, 5, 2, 1, 6),
            (2, 4, 3, 6, 1),
            (1, 1, 1, 1, 1),
            (19, 16, 5, 8, 8),
            (37, 2, 3, 16, 16),
            (5, 7, 9, 3, 3),
            (2, 32, 16, 32, 32),
            (3, 5, 16, 7, 5),
            (1, 16, 24, 4, 6),
            // Sides that are no multiple of F(4x4, 3x3)'s tile or one tile
            // (both ends' fix-ups on one), and groups of 16 8x8 images with
            // a short last one.
            (3, 16, 7, 9, 10),
            (3, 16, 8, 4, 4),
            (2, 17, 3, 2, 13),
            (21, 24, 16, 8, 8),
            (16, 32, 40, 8, 8),
            (5, 33, 32, 15, 14),
            (15, 32, 32, 8, 8),
        ] {
            let s = Shape { batch, cin, cout, h, w };
            let x = values(batch * cin * h * w, 1);
            let weight = values(cout * cin * 9, 2);
            let grad = values(batch * cout * h * w, 3);
            let what = format!("{s:?}");
            let [out, dw, dx] = exact(&s, &x, &weight, &grad);
            close(&forward(&s, &x, &weight), &out, &format!("{what} forward"));
            close(&winograd4::forward(&s, &x, &weight), &out, &format!("{what} forward, F(4x4, 3x3)"));
            close(&weight_grad(&s, &x, &grad), &dw, &format!("{what} weight gradient"));
            close(&conv::forward_im2col(&s, &x, &weight), &out, &format!("{what} forward, im2col"));
            close(&conv::weight_grad_im2col(&s, &x, &grad), &dw, &format!("{what} weight gradient, im2col"));
            // The input gradient is a forward pass of the swapped layer:
            // Winograd's where 16 or more channels come out of this one.
            winograd_dx += usize::from(suits(&Shape { cin: cout, cout: cin, ..s }));
            wide_dx += usize::from(wide(&Shape { cin: cout, cout: cin, ..s }));
            close(&conv::x_grad(&s, &weight, &grad), &dx, &format!("{what} input gradient"));
        }
        // The list must keep shapes whose input gradient suits Winograd
        // (x_grad is a forward pass of the swapped layer, which dispatches),
        // and layers wide enough for F(4x4, 3x3) both ways (with a batch
        // that fills a group, and one short of it).
        assert_eq!(winograd_dx, 7, "input gradients through Winograd");
        assert_eq!(wide_dx, 2, "input gradients through F(4x4, 3x3)");
    }
}
