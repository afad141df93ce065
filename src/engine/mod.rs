//! The training engine: the backend chosen at run time (`backend`), data
//! sets and batches (`data`), the networks and their CPU kernels (`model`),
//! the distillation losses, training (`train`), inference, model files
//! (`export`) and the benchmark. It reports only through `protocol` and
//! never imports `outputs` or `monitor`.

pub mod backend;
pub mod bench;
pub mod cuda_setup;
pub mod data;
pub mod diagnostics;
pub mod export;
pub mod inference;
pub mod logger;
pub mod losses;
pub mod model;
pub mod train;
