//! kdtui's CPU kernels, on plain slices: what `flex.rs` runs for the
//! network's convolution, pooling and BatchNorm. Nothing here knows burn.

mod conv;
mod norm;
mod pool;

pub use conv::{forward, weight_grad, x_grad, Shape};
pub use norm::{batch_norm, batch_norm_grad, Planes};
pub use pool::{max_pool2x2, max_pool2x2_grad};
