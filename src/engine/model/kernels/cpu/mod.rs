//! kdtui's CPU kernels, on plain slices: what `flex.rs` runs for the
//! network's convolution, BatchNorm with its activation and pooling, and
//! Adam. Nothing here knows burn.

mod adam;
mod conv;
mod norm;
pub mod simd;

pub use adam::adam;
pub use conv::{forward, gemm_peak_gflops, weight_grad, x_grad, Shape};
pub use norm::{affine_act, affine_act_pool, norm_act, norm_act_grad, norm_act_pool, norm_act_pool_grad, Act, Planes};
