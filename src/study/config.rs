//! `config.toml`: the whole study plan. Serde structs mirror the file's sections;
//! `validate` rejects impossible settings with the key that holds them.

use std::path::{Path, PathBuf};

use crate::study::Loss;
use crate::util::short_hash;
use serde::{Deserialize, Serialize};

/// Part of every study, teacher and run hash. Bumped when the way a run
/// trains changes for the same settings (3: balanced batches), so that
/// checkpoints, cached teachers and results of an older kdtui are trained
/// again rather than continued or shown as this one's.
pub const TRAINING_VERSION: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: `{key}` {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub plan: PlanConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub teacher: TeacherConfig,
    pub student: StudentConfig,
    pub distill: DistillConfig,
    pub watch: WatchConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    /// Names the checkpoint folder and the report.
    pub name: String,
    /// Every student run is repeated once per seed; the teacher uses the first.
    pub seeds: Vec<u64>,
    pub losses: Vec<Loss>,
    pub temperatures: Vec<f64>,
    /// Run the student trained on hard labels alone (the study's baseline).
    pub baseline: bool,
    /// Run-id selectors; empty means the whole plan (see `train::plan`).
    pub only: Vec<String>,
    pub out: PathBuf,
    pub checkpoints: PathBuf,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    Synthetic,
    Svhn,
    Idx,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub source: DataSource,
    pub dir: PathBuf,
    /// Synthetic data only: number of generated images.
    pub train_size: usize,
    pub test_size: usize,
    /// Synthetic data only: generator seed.
    pub seed: u64,
    /// Use at most this many training / test images (0 = all).
    pub train_limit: usize,
    pub test_limit: usize,
    /// SVHN only: also load `extra_32x32.mat` into the training set.
    pub use_extra: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub batch_size: usize,
    pub eval_batch_size: usize,
    /// The weight decay coefficient (see `weight_decay_mode`).
    pub weight_decay: f64,
    /// `l2`: weight_decay * w is added to every parameter's gradient before
    /// Adam, as an L2 term of the loss would; `decoupled`: the weights
    /// shrink by lr * weight_decay each step, outside Adam (AdamW).
    pub weight_decay_mode: WeightDecay,
    /// Adam's epsilon, added to the root of the second moment.
    pub adam_epsilon: f64,
    /// Epochs over which the learning rate rises linearly from 0 to its
    /// peak before the cosine decay (may be fractional; 0: none).
    pub warmup_epochs: f64,
    /// A step-metrics event every this many optimizer steps.
    pub log_every: usize,
}

/// Where weight decay enters Adam (`[train] weight_decay_mode`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum WeightDecay {
    L2,
    Decoupled,
}

impl WeightDecay {
    /// The name `config.toml` uses.
    pub fn name(self) -> &'static str {
        match self {
            WeightDecay::L2 => "l2",
            WeightDecay::Decoupled => "decoupled",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TeacherConfig {
    pub epochs: usize,
    pub learning_rate: f64,
    /// Output channels of the three conv blocks (one 3x3 conv in the first,
    /// two in the others).
    pub widths: [usize; 3],
    /// Width of the hidden fully connected layer.
    pub hidden: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StudentConfig {
    pub epochs: usize,
    pub learning_rate: f64,
    pub w_bits: u32,
    pub a_bits: u32,
    /// Weight bits of the first conv and the last linear layer (32 = float,
    /// as DoReFa keeps them).
    pub first_last_bits: u32,
    /// Quantized activations are clipped to [0, a_range] (BatchNorm units)
    /// before rounding; 1.0 is plain DoReFa.
    pub a_range: f64,
    pub widths: [usize; 3],
    pub hidden: usize,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DistillConfig {
    /// Weight c of the soft term of every loss but `soft`; absent means
    /// T^2 (Hinton et al.).
    pub soft_weight: Option<f64>,
    /// Weight `soft` (which has no hard term) by c too. The original did
    /// not: its gradient then shrinks as 1/T^2 (docs/STUDY.md).
    pub scale_soft: bool,
    /// `dkd`'s own weights. Left out of the file (and so of every hash)
    /// while they are the defaults: adding the loss changed no study's hash.
    #[serde(skip_serializing_if = "is_default")]
    pub dkd: DkdConfig,
    /// `dist`'s own weights, likewise.
    #[serde(skip_serializing_if = "is_default")]
    pub dist: DistConfig,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Decoupled KD (Zhao et al., CVPR 2022): the weights of its target-class
/// and non-target-class terms. Defaults: the paper's (alpha 1, beta 8).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DkdConfig {
    pub alpha: f64,
    pub beta: f64,
}

impl Default for DkdConfig {
    fn default() -> Self {
        Self { alpha: 1.0, beta: 8.0 }
    }
}

/// DIST (Huang et al., NeurIPS 2022): the weights of its inter-class (each
/// image's classes) and intra-class (each class over the batch) correlation
/// terms. Defaults: the paper's ImageNet setting (beta 1, gamma 1).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DistConfig {
    pub beta: f64,
    pub gamma: f64,
}

impl Default for DistConfig {
    fn default() -> Self {
        Self { beta: 1.0, gamma: 1.0 }
    }
}

/// How a running study shows that it is alive to `kdtui watch`, which cannot
/// otherwise tell a task killed elsewhere (SIGKILL, a lost node) from a slow
/// one. Not part of the study: changing it changes no result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// A training session appends a heartbeat to the metric file of each
    /// run it trains this often (also during a long evaluation).
    pub heartbeat_seconds: f64,
    /// `kdtui watch` shows a running run as `lost?` once its last heartbeat
    /// is older than this (the writer's setting travels with its heartbeats).
    pub lost_after_seconds: f64,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self { heartbeat_seconds: 30.0, lost_after_seconds: 300.0 }
    }
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            name: "study".into(),
            seeds: vec![1, 2, 3],
            losses: Loss::DISTILLATION.to_vec(),
            temperatures: vec![5.0, 15.0, 25.0, 50.0, 100.0],
            baseline: true,
            only: vec![],
            out: "results".into(),
            checkpoints: "checkpoints".into(),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            source: DataSource::Synthetic,
            dir: "data".into(),
            train_size: 10_000,
            test_size: 5_000,
            seed: 7,
            train_limit: 0,
            test_limit: 0,
            use_extra: false,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            eval_batch_size: 500,
            weight_decay: 5e-4,
            weight_decay_mode: WeightDecay::Decoupled,
            adam_epsilon: 1e-8,
            warmup_epochs: 0.5,
            log_every: 5,
        }
    }
}

impl Default for TeacherConfig {
    fn default() -> Self {
        Self { epochs: 10, learning_rate: 2e-3, widths: [32, 64, 128], hidden: 256 }
    }
}

impl Default for StudentConfig {
    fn default() -> Self {
        Self { epochs: 11, learning_rate: 2e-2, w_bits: 2, a_bits: 2, first_last_bits: 32, a_range: 3.0, widths: [6, 12, 24], hidden: 64 }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: toml_error::one_line(&e, text) })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Hash of everything that shapes the teacher: its checkpoint is reused only
    /// when this is unchanged.
    ///
    /// `data_digest` is the digest of the data as loaded (`Data::digest`):
    /// the images, not the `[data]` settings that found them, shape a model.
    pub fn teacher_hash(&self, data_digest: &str) -> String {
        let key = serde_json::json!({
            "data": data_digest,
            "teacher": self.teacher,
            "train": self.training(),
            "seed": self.plan.seeds[0],
            "version": TRAINING_VERSION,
        });
        short_hash(key.to_string().as_bytes())
    }

    /// The `[train]` settings that shape a model: all but logging and the
    /// evaluation batch size.
    pub fn training(&self) -> TrainConfig {
        TrainConfig { log_every: 0, eval_batch_size: 0, ..self.train.clone() }
    }

    /// Hash of the config and the data less what only picks, places or
    /// displays runs (`plan.only`, paths, logging and evaluation batch size,
    /// the `[data]` settings once the data they found is in the digest):
    /// results written under the same study hash belong to one study and are
    /// continued.
    pub fn study_hash(&self, data_digest: &str) -> String {
        let mut c = self.clone();
        c.plan.only.clear();
        c.plan.out = PathBuf::new();
        c.plan.checkpoints = PathBuf::new();
        c.train = self.training();
        c.data = DataConfig::default();
        c.watch = WatchConfig::default();
        short_hash(serde_json::json!({ "config": c, "data": data_digest, "version": TRAINING_VERSION }).to_string().as_bytes())
    }

    /// c, the weight of a run's soft term at `temperature`: T^2 unless
    /// `[distill] soft_weight` says otherwise; for `soft`, 1 unless
    /// `[distill] scale_soft`.
    pub fn soft_weight(&self, loss: Loss, temperature: f64) -> f64 {
        match loss {
            Loss::Soft if !self.distill.scale_soft => 1.0,
            Loss::Hard => 0.0,
            _ => self.distill.soft_weight.unwrap_or(temperature * temperature),
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config always serialises")
    }
}

mod toml_error;
mod validate;

#[cfg(test)]
mod tests;
