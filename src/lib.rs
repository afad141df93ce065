//! kdtui: run, watch and report knowledge-distillation experiments.
//!
//! Data flows one way: `config.toml` -> plan -> training thread -> `TrainEvent`s
//! on a channel -> a consumer (the batch writer, or the TUI).

pub mod app;
pub mod atomic_file;
pub mod batch;
pub mod bench;
pub mod config;
pub mod data;
pub mod device;
pub mod distill;
pub mod export;
pub mod figures;
pub mod keys;
pub mod model;
pub mod report;
pub mod results;
pub mod runlog;
pub mod signals;
pub mod slurm;
pub mod study;
pub mod tensorboard;
pub mod train;
pub mod tui;
pub mod ui;
pub mod watch;
