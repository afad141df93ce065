//! The teacher (a float VGG-style CNN) and the quantized student share one
//! architecture, `Cnn`; the student differs only in its `Precision`.

pub mod cnn;
pub mod integer;
pub mod kernels;
pub mod norm;
pub mod packed;
pub mod quant;
pub mod size;

pub use cnn::{Cnn, CnnConfig, Precision};
pub use kernels::{CnnBackend, TrainBackend};
