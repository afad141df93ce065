//! kdtui: run, watch and report knowledge-distillation experiments.
//!
//! Data flows one way: `config.toml` -> plan -> training thread ->
//! `TrainEvent`s on a channel -> a consumer (the monitor or the headless
//! writer) -> the results files.
//!
//! The folders are the layers, and a layer imports only the layers below it:
//!
//! ```text
//! cli       arguments, the study session, the subcommands
//! monitor   the interactive screen, the headless writer, kdtui watch
//! outputs   results, statistics, report, figures, TensorBoard, metric files
//! engine    backend choice, data, model and kernels, losses, training, inference, export, bench
//! protocol  TrainEvent, Control, EventSource (the consumers' end of a trainer or of watch's reader)
//! study     config, plan, loss names, the original study's numbers
//! util      crash-safe files, signals, formatting
//! ```
//!
//! `outputs` and `engine` do not import each other: the engine reports
//! through `protocol` alone, so it runs the same under every consumer.
//! `tests/layers.rs` checks the rule.

pub mod cli;
pub mod engine;
pub mod monitor;
pub mod outputs;
pub mod protocol;
pub mod study;
pub mod util;
