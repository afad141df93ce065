//! `Config::validate`: every impossible setting refused with the key that
//! holds it.

use std::path::Path;

use super::{Config, ConfigError, DataSource};
use crate::study::Loss;

impl Config {
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| Err(ConfigError::Invalid { path: path.to_path_buf(), key: key.to_string(), message });
        if self.plan.name.trim().is_empty() || !self.plan.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return bad("plan.name", format!("must be a non-empty name of letters, digits, '-', '_' or '.', got {:?}", self.plan.name));
        }
        if self.plan.seeds.is_empty() {
            return bad("plan.seeds", "must list at least one seed".into());
        }
        if let Some(loss) = self.plan.losses.iter().find(|l| !l.distills()) {
            return bad(
                "plan.losses",
                format!("lists `{loss}`, the baseline's loss (set plan.baseline = true for it); expected some of {}", Loss::plan_names()),
            );
        }
        if let Some(loss) = repeated(&self.plan.losses) {
            return bad("plan.losses", format!("lists `{loss}` twice; each run id must be unique"));
        }
        if let Some(seed) = repeated(&self.plan.seeds) {
            return bad("plan.seeds", format!("lists {seed} twice; each run id must be unique"));
        }
        if let Some(t) = repeated(&self.plan.temperatures) {
            return bad("plan.temperatures", format!("lists {t} twice; each run id must be unique"));
        }
        if !self.plan.losses.is_empty() && self.plan.temperatures.is_empty() {
            return bad("plan.temperatures", "must list at least one temperature when plan.losses is not empty".into());
        }
        for &t in &self.plan.temperatures {
            if !(t.is_finite() && t >= 1.0) {
                return bad("plan.temperatures", format!("must hold temperatures >= 1, got {t}"));
            }
        }
        if self.train.batch_size < 2 {
            return bad(
                "train.batch_size",
                format!("must be at least 2 (BatchNorm needs two images in a batch), got {}", self.train.batch_size),
            );
        }
        if self.train.eval_batch_size == 0 {
            return bad("train.eval_batch_size", "must be at least 1".into());
        }
        if self.train.log_every == 0 {
            return bad("train.log_every", "must be at least 1".into());
        }
        if !(self.train.weight_decay.is_finite() && self.train.weight_decay >= 0.0) {
            return bad("train.weight_decay", format!("must be >= 0, got {}", self.train.weight_decay));
        }
        if !(self.train.adam_epsilon.is_finite() && self.train.adam_epsilon > 0.0) {
            return bad("train.adam_epsilon", format!("must be > 0, got {}", self.train.adam_epsilon));
        }
        if !(self.train.warmup_epochs.is_finite() && self.train.warmup_epochs >= 0.0) {
            return bad("train.warmup_epochs", format!("must be >= 0, got {}", self.train.warmup_epochs));
        }
        let watch = &self.watch;
        if !(watch.heartbeat_seconds.is_finite() && watch.heartbeat_seconds > 0.0) {
            return bad("watch.heartbeat_seconds", format!("must be > 0, got {}", watch.heartbeat_seconds));
        }
        if !(watch.lost_after_seconds.is_finite() && watch.lost_after_seconds >= 2.0 * watch.heartbeat_seconds) {
            return bad(
                "watch.lost_after_seconds",
                format!(
                    "must be at least twice watch.heartbeat_seconds ({}), or a live run shows as lost between two heartbeats; got {}",
                    watch.heartbeat_seconds, watch.lost_after_seconds
                ),
            );
        }
        for (key, epochs) in [("teacher.epochs", self.teacher.epochs), ("student.epochs", self.student.epochs)] {
            if epochs == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        for (key, lr) in [("teacher.learning_rate", self.teacher.learning_rate), ("student.learning_rate", self.student.learning_rate)] {
            if !(lr.is_finite() && lr > 0.0) {
                return bad(key, format!("must be > 0, got {lr}"));
            }
        }
        for (key, bits) in [
            ("student.w_bits", self.student.w_bits),
            ("student.a_bits", self.student.a_bits),
            ("student.first_last_bits", self.student.first_last_bits),
        ] {
            if !((1..=8).contains(&bits) || bits == 32) {
                return bad(key, format!("must be 1..8, or 32 for float, got {bits}"));
            }
        }
        if !(self.student.a_range.is_finite() && self.student.a_range > 0.0) {
            return bad("student.a_range", format!("must be > 0, got {}", self.student.a_range));
        }
        for (key, widths, hidden) in
            [("teacher", self.teacher.widths, self.teacher.hidden), ("student", self.student.widths, self.student.hidden)]
        {
            if widths.contains(&0) || hidden == 0 {
                return bad(&format!("{key}.widths / {key}.hidden"), "must all be at least 1".into());
            }
        }
        for (key, weight) in [
            ("distill.dkd.alpha", self.distill.dkd.alpha),
            ("distill.dkd.beta", self.distill.dkd.beta),
            ("distill.dist.beta", self.distill.dist.beta),
            ("distill.dist.gamma", self.distill.dist.gamma),
        ] {
            if !(weight.is_finite() && weight >= 0.0) {
                return bad(key, format!("must be >= 0, got {weight}"));
            }
        }
        if let Some(c) = self.distill.soft_weight {
            if !(c.is_finite() && c >= 0.0) {
                return bad("distill.soft_weight", format!("must be >= 0, got {c}"));
            }
        }
        if self.data.source == DataSource::Synthetic && (self.data.train_size == 0 || self.data.test_size == 0) {
            return bad("data.train_size / data.test_size", "must be at least 1 for synthetic data".into());
        }
        Ok(())
    }
}

/// The first value listed twice (as a run id spells it).
fn repeated<T: PartialEq + std::fmt::Display>(values: &[T]) -> Option<&T> {
    values.iter().enumerate().find(|(i, v)| values[..*i].contains(v)).map(|(_, v)| v)
}
