//! What the im2col and the Winograd convolutions both build on: the
//! layer's shape, the matrix product, the split of the batch into tasks
//! that sums in a fixed order, and each thread's scratch buffers.

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use super::filled;

#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub batch: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub(super) fn pixels(&self) -> usize {
        self.h * self.w
    }
    /// Rows of an image's column matrix: (input channel, ky, kx).
    pub(super) fn taps(&self) -> usize {
        self.cin * 9
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

/// Images per task of `weight_grad`: a fixed split, so the sum over the
/// batch is added in the same order whatever the threads do, and a
/// resumed run repeats an uninterrupted one exactly.
pub(super) const IMAGES_PER_TASK: usize = 16;

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

/// The forward pass both Winograd tiles share (`winograd.rs`,
/// `winograd4.rs`): per group of images, their inputs transformed into V
/// [positions, cin, columns], one product per position with the
/// transformed weights U [positions, cout, cin], and the products M
/// [positions, cout, columns] transformed back into the group's outputs.
/// `input(x, images, v)` and `output(m, images, out)` are the tile's two
/// transforms; a group has `group` images of `tiles` tiles each.
#[allow(clippy::too_many_arguments)]
pub(super) fn winograd_forward(
    s: &Shape,
    positions: usize,
    tiles: usize,
    group: usize,
    x: &[f32],
    u: &[f32],
    input: impl Fn(&[f32], usize, &mut [f32]) + Sync,
    output: impl Fn(&[f32], usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let p = s.pixels();
    filled(s.batch * s.cout * p, group * s.cout * p, |gi, out| {
        let images = out.len() / (s.cout * p);
        let n = images * tiles;
        with_scratch(positions * s.cin * n, positions * s.cout * n, |v, m| {
            let first = gi * group;
            input(&x[first * s.cin * p..][..images * s.cin * p], images, v);
            for pos in 0..positions {
                let u = &u[pos * s.cout * s.cin..][..s.cout * s.cin];
                let m = &mut m[pos * s.cout * n..][..s.cout * n];
                // [cout, cin] · [cin, images * tiles]
                matmul(s.cout, n, s.cin, m, false, u, false, &v[pos * s.cin * n..][..s.cin * n], false);
            }
            output(m, images, out);
        })
    })
}
