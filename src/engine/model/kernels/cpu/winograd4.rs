//! The forward 3x3 convolution by Winograd's F(4x4, 3x3) (Lavin & Gray,
//! 2015, with the interpolation points 0, ±1, ±2): each 4x4 block of
//! outputs from the 6x6 block of inputs around it, 36 multiplications per
//! channel pair where F(2x2, 3x3) (`winograd.rs`) takes 64 for the same 16
//! outputs and the direct sum 144. Wide layers (`winograd::wide`) spend
//! most of their time in the products, so 44% fewer of them is most of a
//! layer's forward pass and of its input gradient (a forward pass of the
//! swapped layer); the weight gradient stays with F(2x2, 3x3).
//!
//! The larger tile's transforms multiply by up to 8 and divide by 24, so
//! the rounding is a few times F(2x2, 3x3)'s: still a small multiple of
//! the float epsilon of the terms' magnitudes, which the tests hold it to.
//!
//! The transforms run a channel at a time over all of a group's tiles, as
//! long vector passes with no scattered writes: the input's Bᵀ down the
//! image's columns along whole rows, then along the rows over every tile
//! at once (4 apart: shuffles, not gathers); the output's Aᵀ along the
//! products' rows (a value per tile), then into each tile's 4-wide row
//! chunks, copied into place. A first version that gathered each tile's 36
//! inputs with scalar or scattered writes spent more in the transforms than
//! the 44% it saved in the products.

use super::shared::{images_per_group, winograd_forward, Shape};
use super::simd::multiversion;

/// Values of a 6x6 input tile: the matrix products of a group.
const POSITIONS: usize = 36;

/// Tiles of 4x4 outputs covering an image: (rows, columns). A side that is
/// not a multiple of 4 has its last tiles hang over the edge; their inputs
/// there are zero and their outputs there are dropped.
fn tiles(h: usize, w: usize) -> (usize, usize) {
    (h.div_ceil(4), w.div_ceil(4))
}

/// Columns (images x tiles) of one group's products: four 16x16 images,
/// sixteen 8x8 ones (as `winograd::COLUMNS`, and for the same reason: the
/// transformed input is read back by 36 products, best from the cache).
pub(super) const COLUMNS: usize = 64;

/// out [b, cout, h, w] = conv(x [b, cin, h, w], weight [cout, cin, 3, 3]).
pub(super) fn forward(s: &Shape, x: &[f32], weight: &[f32]) -> Vec<f32> {
    let (th, tw) = tiles(s.h, s.w);
    let g = images_per_group(COLUMNS, th * tw);
    let u = transform_weights(s.cout, s.cin, weight);
    let input = |x: &[f32], images, v: &mut [f32]| transform_input(x, s.cin, s.h, s.w, images, v);
    let output = |m: &[f32], images, out: &mut [f32]| transform_output(m, s.cout, s.h, s.w, images, out);
    winograd_forward(s, POSITIONS, th * tw, g, x, &u, input, output)
}

/// G g along rows: out[i][ci] = Σ_k G[i][k] g[k][ci], with
/// G = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6],
/// [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]].
#[inline(always)]
fn g_rows([g0, g1, g2]: [&[f32]; 3], out: [&mut [f32]; 6]) {
    const SIXTH: f32 = 1.0 / 6.0;
    let n = out[0].len();
    let (g0, g1, g2) = (&g0[..n], &g1[..n], &g2[..n]);
    let [o0, o1, o2, o3, o4, o5] = out;
    let (o1, o2, o3, o4, o5) = (&mut o1[..n], &mut o2[..n], &mut o3[..n], &mut o4[..n], &mut o5[..n]);
    for i in 0..n {
        let (even, odd) = (g0[i] + g2[i], g1[i]);
        let (outer, middle) = (0.25 * g0[i] + g2[i], 0.5 * g1[i]);
        o0[i] = 0.25 * g0[i];
        o1[i] = -SIXTH * (even + odd);
        o2[i] = -SIXTH * (even - odd);
        // g0/24 ± g1/12 + g2/6 = (g0/4 + g2 ± g1/2) / 6
        o3[i] = SIXTH * (outer + middle);
        o4[i] = SIXTH * (outer - middle);
        o5[i] = g2[i];
    }
}

multiversion! {
    /// U [36, cout, cin] = G g Gᵀ of every 3x3 kernel g of weight [cout,
    /// cin, 3, 3], an output channel at a time with its input channels
    /// along the vectors (a layer's 16k kernels one at a time were a tenth
    /// of a teacher's training step).
    fn transform_weights(cout: usize, cin: usize, weight: &[f32]) -> Vec<f32> {
        let mut u = vec![0f32; POSITIONS * cout * cin];
        // taps[tap][ci] of one output channel; gg[i * 3 + l][ci] = (G g)[i][l].
        let mut taps = vec![0f32; 9 * cin];
        let mut gg = vec![0f32; 18 * cin];
        for co in 0..cout {
            for (ci, kernel) in weight[co * cin * 9..][..cin * 9].chunks_exact(9).enumerate() {
                for (tap, &value) in kernel.iter().enumerate() {
                    taps[tap * cin + ci] = value;
                }
            }
            for l in 0..3 {
                let column = [&taps[l * cin..][..cin], &taps[(3 + l) * cin..][..cin], &taps[(6 + l) * cin..][..cin]];
                g_rows(column, six_rows(&mut gg[l * cin..], 3 * cin, cin));
            }
            for i in 0..6 {
                let row = [&gg[i * 3 * cin..][..cin], &gg[(i * 3 + 1) * cin..][..cin], &gg[(i * 3 + 2) * cin..][..cin]];
                g_rows(row, six_rows(&mut u[(i * 6 * cout + co) * cin..], cout * cin, cin));
            }
        }
        u
    }
}

/// Six rows of `n` values of `buf`, `stride` apart from its start, each
/// writable: the rows a transform writes together.
#[inline(always)]
fn six_rows(buf: &mut [f32], stride: usize, n: usize) -> [&mut [f32]; 6] {
    let (r0, rest) = buf.split_at_mut(stride);
    let (r1, rest) = rest.split_at_mut(stride);
    let (r2, rest) = rest.split_at_mut(stride);
    let (r3, rest) = rest.split_at_mut(stride);
    let (r4, r5) = rest.split_at_mut(stride);
    [&mut r0[..n], &mut r1[..n], &mut r2[..n], &mut r3[..n], &mut r4[..n], &mut r5[..n]]
}

/// Four rows of `n` values of `buf`, `stride` apart from its start, each
/// writable.
#[inline(always)]
fn four_rows(buf: &mut [f32], stride: usize, n: usize) -> [&mut [f32]; 4] {
    let (r0, rest) = buf.split_at_mut(stride);
    let (r1, rest) = rest.split_at_mut(stride);
    let (r2, r3) = rest.split_at_mut(stride);
    [&mut r0[..n], &mut r1[..n], &mut r2[..n], &mut r3[..n]]
}

/// Six rows of `n` values of `buf`, `stride` apart from its start.
#[inline(always)]
fn six(buf: &[f32], stride: usize, n: usize) -> [&[f32]; 6] {
    let row = |k: usize| &buf[k * stride..][..n];
    [row(0), row(1), row(2), row(3), row(4), row(5)]
}

/// Bᵀ along rows: out[i][col] = Σ_k Bᵀ[i][k] d[k][col], with
/// Bᵀ = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
/// [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]].
#[inline(always)]
fn b_t(d: [&[f32]; 6], out: [&mut [f32]; 6]) {
    let n = out[0].len();
    let [d0, d1, d2, d3, d4, d5] = d;
    let (d0, d1, d2, d3, d4, d5) = (&d0[..n], &d1[..n], &d2[..n], &d3[..n], &d4[..n], &d5[..n]);
    let [o0, o1, o2, o3, o4, o5] = out;
    let (o1, o2, o3, o4, o5) = (&mut o1[..n], &mut o2[..n], &mut o3[..n], &mut o4[..n], &mut o5[..n]);
    for i in 0..n {
        let (d0, d1, d2, d3, d4, d5) = (d0[i], d1[i], d2[i], d3[i], d4[i], d5[i]);
        o0[i] = 4.0 * d0 - 5.0 * d2 + d4;
        o1[i] = d3 + d4 - 4.0 * (d1 + d2);
        o2[i] = d4 - d3 + 4.0 * (d1 - d2);
        o3[i] = d4 - d2 - 2.0 * (d1 - d3);
        o4[i] = d4 - d2 + 2.0 * (d1 - d3);
        o5[i] = 4.0 * d1 - 5.0 * d3 + d5;
    }
}

/// Aᵀ along rows: out[a][col] = Σ_k Aᵀ[a][k] m[k][col], with
/// Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
/// [0, 1, -1, 8, -8, 1]].
#[inline(always)]
fn a_t(m: [&[f32]; 6], out: [&mut [f32]; 4]) {
    let n = out[0].len();
    let [m0, m1, m2, m3, m4, m5] = m;
    let (m0, m1, m2, m3, m4, m5) = (&m0[..n], &m1[..n], &m2[..n], &m3[..n], &m4[..n], &m5[..n]);
    let [o0, o1, o2, o3] = out;
    let (o1, o2, o3) = (&mut o1[..n], &mut o2[..n], &mut o3[..n]);
    for i in 0..n {
        let (sum12, diff12, sum34, diff34) = (m1[i] + m2[i], m1[i] - m2[i], m3[i] + m4[i], m3[i] - m4[i]);
        o0[i] = m0[i] + sum12 + sum34;
        o1[i] = diff12 + 2.0 * diff34;
        o2[i] = sum12 + 4.0 * sum34;
        o3[i] = diff12 + 8.0 * diff34 + m5[i];
    }
}

multiversion! {
    /// V [36, c, n] of `images` images [c, h, w], n = images x tiles:
    /// column j * tiles + ty * tw + tx holds Bᵀ d B of the 6x6 inputs from
    /// row 4ty - 1 and column 4tx - 1 (zero outside the image). Bᵀ down the
    /// columns first, along whole rows; then along the rows, one pass over
    /// all the group's tiles at once (tiles are 4 columns apart: the reads
    /// vectorise as shuffles over a long loop, not over a row's 2 to 8
    /// tiles), with the tiles at either end of a row fixed up after.
    fn transform_input(x: &[f32], c: usize, h: usize, w: usize, images: usize, v: &mut [f32]) {
        let (th, tw) = tiles(h, w);
        let n = images * th * tw;
        // e[i][1 + (image * th + ty) * 4tw + column]: Bᵀ d down the columns
        // for row i of the tiles in that tile row; zero before the first
        // value, after the last, and in the columns past w (never written).
        let len = 4 * n + 4;
        let mut e = vec![0f32; 6 * len];
        let zeros = vec![0f32; w];
        for ch in 0..c {
            for image in 0..images {
                let plane = &x[(image * c + ch) * h * w..][..h * w];
                let row = |y: isize| if y >= 0 && (y as usize) < h { &plane[y as usize * w..][..w] } else { &zeros[..w] };
                for ty in 0..th {
                    let top = 4 * ty as isize - 1;
                    let d = [row(top), row(top + 1), row(top + 2), row(top + 3), row(top + 4), row(top + 5)];
                    b_t(d, six_rows(&mut e[1 + (image * th + ty) * 4 * tw..], len, w));
                }
            }
            for i in 0..6 {
                let p = &e[i * len..][..len];
                let [o0, o1, o2, o3, o4, o5] = six_rows(&mut v[(i * 6 * c + ch) * n..], c * n, n);
                // Tile f reads p[4f .. 4f + 6]: chunk f and the first two of chunk f + 1.
                let (chunks, _) = p.as_chunks::<4>();
                let outs = o0.iter_mut().zip(o1.iter_mut()).zip(o2.iter_mut().zip(o3.iter_mut())).zip(o4.iter_mut().zip(o5.iter_mut()));
                for ((((o0, o1), (o2, o3)), (o4, o5)), (&[d0, d1, d2, d3], &[d4, d5, _, _])) in outs.zip(chunks.iter().zip(&chunks[1..])) {
                    *o0 = 4.0 * d0 - 5.0 * d2 + d4;
                    *o1 = d3 + d4 - 4.0 * (d1 + d2);
                    *o2 = d4 - d3 + 4.0 * (d1 - d2);
                    *o3 = d4 - d2 - 2.0 * (d1 - d3);
                    *o4 = d4 - d2 + 2.0 * (d1 - d3);
                    *o5 = 4.0 * d1 - 5.0 * d3 + d5;
                }
                // A row's first tile read the row before's last value as d0,
                // its last tile the next row's first as d5: both are padding,
                // zero, and only o0 and o5 have a term in them.
                for r in 0..images * th {
                    let (first, last) = (4 * r * tw, 4 * (r * tw + tw - 1));
                    o0[r * tw] = -5.0 * p[first + 2] + p[first + 4];
                    o5[r * tw + tw - 1] = 4.0 * p[last + 1] - 5.0 * p[last + 3];
                }
            }
        }
    }
}

multiversion! {
    /// `images` output images [c, h, w] from the products M [36, c, n]: each
    /// tile's 4x4 block is Aᵀ m A, computed for all the group's tiles in one
    /// pass into four rows per tile row, then copied into place (the rows
    /// and columns past the image's edge dropped).
    fn transform_output(m: &[f32], c: usize, h: usize, w: usize, images: usize, out: &mut [f32]) {
        let (th, tw) = tiles(h, w);
        let n = images * th * tw;
        // r[a * 6 + jj]: Aᵀ m down the tile's columns; z[a][(image * th + ty)
        // * 4tw + column]: output row 4ty + a of the image (to column 4tw).
        let mut r = vec![0f32; 24 * n];
        let mut z = vec![0f32; 16 * n];
        for ch in 0..c {
            for jj in 0..6 {
                a_t(six(&m[(jj * c + ch) * n..], 6 * c * n, n), four_rows(&mut r[jj * n..], 6 * n, n));
            }
            for a in 0..4 {
                let [m0, m1, m2, m3, m4, m5] = six(&r[a * 6 * n..], n, n);
                let (z, _) = z[a * 4 * n..][..4 * n].as_chunks_mut::<4>();
                let ins = m0.iter().zip(m1).zip(m2.iter().zip(m3)).zip(m4.iter().zip(m5));
                for (z, (((m0, m1), (m2, m3)), (m4, m5))) in z.iter_mut().zip(ins) {
                    let (sum12, diff12, sum34, diff34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
                    *z = [m0 + sum12 + sum34, diff12 + 2.0 * diff34, sum12 + 4.0 * sum34, diff12 + 8.0 * diff34 + m5];
                }
            }
            for image in 0..images {
                let plane = &mut out[(image * c + ch) * h * w..][..h * w];
                for (y, row) in plane.chunks_exact_mut(w).enumerate() {
                    row.copy_from_slice(&z[(y % 4) * 4 * n + (image * th + y / 4) * 4 * tw..][..w]);
                }
            }
        }
    }
}
