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
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: one_line_toml_error(&e, text) })?;
        config.validate(path)?;
        Ok(config)
    }

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

/// The first value listed twice (as a run id spells it).
fn repeated<T: PartialEq + std::fmt::Display>(values: &[T]) -> Option<&T> {
    values.iter().enumerate().find(|(i, v)| values[..*i].contains(v)).map(|(_, v)| v)
}

/// toml's message spans several lines with a source excerpt; this keeps one
/// line: where, which key, what was wrong, and a suggestion for a misspelt
/// key or value.
fn one_line_toml_error(e: &toml::de::Error, text: &str) -> String {
    let mut msg = e.message().trim().lines().map(str::trim).collect::<Vec<_>>().join("; ");
    for (rust, plain) in [
        ("expected usize", "expected a whole number >= 0"),
        ("expected u64", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected f64", "expected a number"),
    ] {
        msg = msg.replace(rust, plain);
    }
    if let Some(suggestion) = suggestion(&msg) {
        msg += &format!("; did you mean `{suggestion}`?");
    }
    let Some(span) = e.span() else { return msg };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    match key_at(text, span.start) {
        Some(key) if !msg.contains("unknown field") => format!("line {line}, column {column}: `{key}`: {msg}"),
        _ => format!("line {line}, column {column}: {msg}"),
    }
}

/// The closest candidate of a serde "unknown field/variant `x`, expected one
/// of `a`, `b`" message, when it is close enough to be a likely typo.
fn suggestion(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `").or_else(|| msg.strip_prefix("unknown variant `"))?;
    let (given, rest) = rest.split_once('`')?;
    let candidates = rest.split('`').skip(1).step_by(2);
    candidates
        .map(|c| (strsim::damerau_levenshtein(&given.to_lowercase(), &c.to_lowercase()), c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 4) && d < c.len())
        .min()
        .map(|(_, c)| c.to_string())
}

/// `section.key` of the `key = value` line holding byte `at`, if it is one.
fn key_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let section = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match section {
        Some(section) => format!("{section}.{key}"),
        None => key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_round_trips() {
        let c = Config::default();
        let text = c.to_toml();
        let back = Config::parse(&text, Path::new("x.toml")).unwrap();
        assert_eq!(c, back);
    }

    #[test]
    fn shipped_config_is_the_default() {
        let text = include_str!("../../config.toml");
        let c = Config::parse(text, Path::new("config.toml")).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse("[student]\nw_bits = 9\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("student.w_bits"), "{e}");
        let e = Config::parse("[plan]\ntemperatures = [0.5]\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("plan.temperatures"), "{e}");
        let e = Config::parse("[plan]\nlosses = [\"sofft\"]\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("sofft"), "{e}");
        let e = Config::parse("[train]\nbatch_sise = 3\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(e.to_string().contains("batch_sise"), "{e}");
    }

    #[test]
    fn misspellings_get_a_suggestion_and_far_misses_do_not() {
        let msg = |text: &str| Config::parse(text, Path::new("c.toml")).unwrap_err().to_string();
        assert!(msg("[train]\nbatch_sise = 3\n").ends_with("did you mean `batch_size`?"));
        assert!(msg("[trian]\n").ends_with("did you mean `train`?"));
        assert!(msg("[plan]\nlosses = [\"sofft\"]\n").ends_with("did you mean `soft`?"));
        assert!(msg("[data]\nsource = \"SVHN\"\n").ends_with("did you mean `svhn`?"));
        assert!(!msg("[train]\ncolour = 3\n").contains("did you mean"));
    }

    #[test]
    fn wrong_types_name_the_key_in_plain_words() {
        let e = Config::parse("[plan]\nname = \"x\"\n\n[train]\nbatch_size = \"big\"\n", Path::new("c.toml")).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("line 5, column 14: `train.batch_size`: invalid type: string \"big\", expected a whole number >= 0"), "{e}");
    }

    #[test]
    fn teacher_hash_follows_the_teacher_and_the_data_content() {
        let a = Config::default();
        let mut b = a.clone();
        b.student.w_bits = 4;
        b.data.dir = "moved/elsewhere".into();
        b.train.log_every = 99;
        assert_eq!(a.teacher_hash("d1"), b.teacher_hash("d1"), "student, paths and logging do not shape the teacher");
        assert_ne!(a.teacher_hash("d1"), a.teacher_hash("d2"), "other images, another teacher");
        b.teacher.epochs += 1;
        assert_ne!(a.teacher_hash("d1"), b.teacher_hash("d1"));
    }

    #[test]
    fn study_hash_follows_the_study_and_the_data_content() {
        let a = Config::default();
        let mut b = a.clone();
        b.plan.only = vec!["soft".into()];
        b.data.dir = "moved".into();
        assert_eq!(a.study_hash("d1"), b.study_hash("d1"));
        assert_ne!(a.study_hash("d1"), a.study_hash("d2"));
        b.student.epochs += 1;
        assert_ne!(a.study_hash("d1"), b.study_hash("d1"));
    }
}
