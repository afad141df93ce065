//! What the study is, before anything runs: the config file, the plan of runs
//! it asks for, the losses' names, and the original study's numbers that
//! every result is set beside.

pub mod config;
pub mod loss;
pub mod original;
pub mod plan;

pub use config::{Config, WatchConfig};
pub use loss::Loss;
pub use plan::{format_temperature, RunKind, RunSpec};
