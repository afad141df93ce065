//! kdtui's CPU kernels, on plain slices: what `flex.rs` runs for the
//! network's convolution, BatchNorm with its activation and pooling, and
//! Adam. Nothing here knows burn.

mod adam;
mod conv;
mod norm;
mod shared;
pub mod simd;
mod weights;
mod winograd;
mod winograd4;

pub use adam::adam;
pub use conv::{forward, gemm_peak_gflops, weight_grad, x_grad, Shape};
pub use norm::{affine_act, affine_act_pool, norm_act, norm_act_grad, norm_act_pool, norm_act_pool_grad, Act, Planes};
pub use weights::{quantize_weights, quantize_weights_grad};

/// A zeroed output buffer, zeroed by rayon's threads together: a step's
/// outputs are megabytes, and `vec![0.0; n]` zeroed them (and took their
/// fresh pages' faults) on the training thread alone while the other core
/// waited, 4% of a student's training samples.
fn zeroed(len: usize) -> Vec<f32> {
    filled(len, 1 << 16, |_, _| {})
}

/// A new buffer of `len` values written by `f(i, chunk)` for each chunk i of
/// `chunk` values (the last may be shorter), chunks on rayon's threads. Each
/// chunk is zeroed just before `f` gets it, so `f` may leave values at zero:
/// the buffer is first touched by the thread that fills it, while it is in
/// that core's cache, not in a zeroing pass of its own (7-8% of a teacher
/// step as a separate pass).
fn filled(len: usize, chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    use rayon::prelude::*;
    use std::mem::MaybeUninit;
    let mut v: Vec<f32> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len].par_chunks_mut(chunk.max(1)).enumerate().for_each(|(i, block)| {
        block.fill(MaybeUninit::new(0.0));
        // SAFETY: every value of `block` was initialised on the line above,
        // and MaybeUninit<f32> has f32's layout.
        let block = unsafe { &mut *(block as *mut [MaybeUninit<f32>] as *mut [f32]) };
        f(i, block);
    });
    // SAFETY: the chunks cover all `len` values, each initialised above.
    unsafe { v.set_len(len) };
    v
}
