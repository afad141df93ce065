//! What a run's steps minimise, resolved once from the config: the loss,
//! its temperature, its weight and the losses' own parameters.

use crate::study::config::DistillConfig;
use crate::study::{Config, Loss};

/// What a step minimises: the run's loss at its temperature, the weight c of
/// its teacher term, and the losses' own parameters.
#[derive(Debug, Clone, Copy)]
pub struct Objective {
    pub loss: Loss,
    pub temperature: f64,
    /// c: the weight of the soft (teacher or softened-label) term.
    pub soft_weight: f64,
    /// `[distill]`: the parameters some losses have of their own.
    pub distill: DistillConfig,
}

impl Objective {
    /// A run's objective as `config` sets it (temperature 1 for runs without one).
    pub fn of(config: &Config, loss: Loss, temperature: Option<f64>) -> Self {
        let temperature = temperature.unwrap_or(1.0);
        Self { loss, temperature, soft_weight: config.soft_weight(loss, temperature), distill: config.distill }
    }
}
