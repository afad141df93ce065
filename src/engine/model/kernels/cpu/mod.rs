//! kdtui's CPU kernels, on plain slices: what `flex.rs` runs for the
//! network's convolution, BatchNorm with its activation and pooling, and
//! Adam. Nothing here knows burn.

mod adam;
mod conv;
mod norm;
pub mod simd;
mod winograd;

pub use adam::adam;
pub use conv::{forward, gemm_peak_gflops, weight_grad, x_grad, Shape};
pub use norm::{affine_act, affine_act_pool, norm_act, norm_act_grad, norm_act_pool, norm_act_pool_grad, Act, Planes};

/// A zeroed output buffer, zeroed by rayon's threads together: a step's
/// outputs are megabytes, and `vec![0.0; n]` zeroed them (and took their
/// fresh pages' faults) on the training thread alone while the other core
/// waited, 4% of a student's training samples.
fn zeroed(len: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v = Vec::with_capacity(len);
    v.par_extend(rayon::iter::repeat_n(0f32, len));
    v
}
