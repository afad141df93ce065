//! `kdtui export` and `kdtui eval`: a run's model file (`model::packed`), and
//! the test accuracy of a model file or a checkpoint. Both run on the CPU
//! backend: a file exported and evaluated there computes exactly what the
//! run's own evaluation computed (on the CPU).

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::module::Module;

use crate::engine::data::batcher::Normalizer;
use crate::engine::data::CLASSES;
use crate::engine::data::{self, DataError};
use crate::engine::diagnostics;
use crate::engine::inference::{argmax, predict, score};
use crate::engine::model::packed::{self, PackedError};
use crate::engine::model::size::stored_values;
use crate::engine::model::{Cnn, CnnConfig};
use crate::engine::train::checkpoint::{self, RunStore};
use crate::protocol::Diagnostics;
use crate::study::config::{Config, DataSource};
use crate::study::plan::{self, RunKind};
use crate::util::atomic_file::{self, WriteError};

type Cpu = Flex;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no run `{run_id}` in the plan of {config} (its runs: {known})")]
    UnknownRun { run_id: String, config: PathBuf, known: String },
    #[error("run `{run_id}` has no checkpoint in {dir}: train it first (kdtui --batch --only {run_id})")]
    NotTrained { run_id: String, dir: PathBuf },
    #[error("the checkpoint of `{run_id}` ({path}) does not load into the model of this config")]
    WrongModel { run_id: String, path: PathBuf },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// What `export` wrote.
pub struct Exported {
    pub path: PathBuf,
    pub bytes: u64,
    /// The run has not finished: the file holds its latest checkpoint.
    pub unfinished: Option<String>,
}

/// The model of a checkpoint's record, when it is a model of `shape`.
fn checkpoint_model(record: Vec<u8>, shape: &CnnConfig) -> Option<Cnn<Cpu>> {
    let device = Default::default();
    let record = checkpoint::decode::<Cpu, <Cnn<Cpu> as Module<Cpu>>::Record>(record, &device)?;
    // burn loads a record of other shapes without complaint; the forward pass would panic.
    let model = shape.init::<Cpu>(&device).load_record(record);
    (model.num_params() as u64 == stored_values(shape)).then_some(model)
}

/// Writes the model file of `run_id` (from its checkpoint) to `path`.
pub fn export(config: &Config, config_path: &Path, run_id: &str, path: &Path) -> Result<Exported, ExportError> {
    let runs = plan::full_plan(config);
    let spec = runs.iter().find(|s| s.run_id == run_id).ok_or_else(|| ExportError::UnknownRun {
        run_id: run_id.into(),
        config: config_path.to_path_buf(),
        known: runs.iter().map(|s| s.run_id.as_str()).collect::<Vec<_>>().join(", "),
    })?;
    // The checkpoints are keyed by the data as loaded, and the model file
    // carries the training set's normalisation.
    let data = data::load(&config.data)?;
    let store = RunStore::new(config, &data.digest, spec);
    let saved = store.load().ok_or_else(|| ExportError::NotTrained { run_id: run_id.into(), dir: store.dir.clone() })?;
    let (shape, epochs) = match spec.kind {
        RunKind::Teacher => (CnnConfig::teacher(config), config.teacher.epochs),
        _ => (CnnConfig::student(config), config.student.epochs),
    };
    let unfinished = (saved.progress.epochs_done < epochs)
        .then(|| format!("`{run_id}` has trained {} of {epochs} epochs; the file holds that checkpoint", saved.progress.epochs_done));
    let model = checkpoint_model(saved.model, &shape)
        .ok_or_else(|| ExportError::WrongModel { run_id: run_id.into(), path: store.dir.join("checkpoint.bin") })?;
    let bytes = packed::pack(&model, &shape, &Normalizer::fit(&data.train));
    atomic_file::write(path, &bytes)?;
    Ok(Exported { path: path.to_path_buf(), bytes: bytes.len() as u64, unfinished })
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Packed { path: PathBuf, source: PackedError },
    #[error("{path} is a damaged kdtui checkpoint ({why})")]
    Checkpoint { path: PathBuf, why: String },
    #[error("{path} does not load into the {what} of {config}: was it written under another config? (--config)")]
    WrongModel { path: PathBuf, what: &'static str, config: PathBuf },
    #[error("{path} is neither a kdtui model file (.safetensors) nor a kdtui checkpoint (checkpoint.bin)")]
    Unknown { path: PathBuf },
    #[error("--data {0}: expected `synthetic` or a directory holding test_32x32.mat (SVHN) or t10k-images-idx3-ubyte[.gz] (IDX)")]
    DataChoice(String),
    #[error(transparent)]
    Data(#[from] DataError),
}

pub struct Evaluation {
    /// What was evaluated: "packed 2-bit student", ...
    pub model: String,
    /// The predicted class of every test image, in order.
    pub predictions: Vec<u8>,
    pub data: String,
    pub correct: usize,
    pub images: usize,
    pub loss: f64,
    /// Calibration and the confusion matrix; agreement and KL when a
    /// teacher was given.
    pub diagnostics: Diagnostics,
}

impl Evaluation {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images.max(1) as f64
    }
}

/// The data `--data` names, or the config's.
pub fn data_config(config: &Config, choice: Option<&str>) -> Result<crate::study::config::DataConfig, EvalError> {
    let mut data = config.data.clone();
    match choice {
        None => {}
        Some("synthetic") => data.source = DataSource::Synthetic,
        Some(dir) => {
            let d = Path::new(dir);
            data.dir = d.to_path_buf();
            data.source = if d.join("test_32x32.mat").exists() {
                DataSource::Svhn
            } else if ["t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"].iter().any(|f| d.join(f).exists()) {
                DataSource::Idx
            } else {
                return Err(EvalError::DataChoice(dir.into()));
            };
        }
    }
    Ok(data)
}

/// Test accuracy of a model file or checkpoint over the whole test set of
/// `data`, with its calibration; with the teacher's model file or
/// checkpoint, also the agreement with it and their KL divergence.
pub fn eval(
    path: &Path,
    teacher: Option<&Path>,
    config: &Config,
    config_path: &Path,
    data: &crate::study::config::DataConfig,
) -> Result<Evaluation, EvalError> {
    // The models first: a wrong file is refused before the data is read.
    let (model, norm, what) = load(path, config, config_path)?;
    let teacher = teacher.map(|t| load(t, config, config_path)).transpose()?;
    let device = Default::default();
    let loaded = data::load(data)?;
    // A checkpoint carries no normalisation: fitted once on the training set, for either model.
    let needs_fit = norm.is_none() || teacher.as_ref().is_some_and(|(_, t_norm, _)| t_norm.is_none());
    let fitted = needs_fit.then(|| Normalizer::fit(&loaded.train));
    let pick = |own: &Option<Normalizer>| own.as_ref().or(fitted.as_ref()).cloned().expect("fitted when a model has none");
    let logits = predict(&model, &loaded.test, &pick(&norm), config.train.eval_batch_size, &device);
    let teacher_logits = teacher.map(|(t, t_norm, _)| predict(&t, &loaded.test, &pick(&t_norm), config.train.eval_batch_size, &device));
    let (loss, _) = score(&logits, &loaded.test.labels);
    let predictions: Vec<u8> = logits.chunks_exact(CLASSES).map(|row| argmax(row) as u8).collect();
    Ok(Evaluation {
        model: what,
        correct: predictions.iter().zip(&loaded.test.labels).filter(|(p, l)| p == l).count(),
        images: loaded.test.len(),
        diagnostics: diagnostics::diagnose(&logits, &loaded.test.labels, CLASSES, teacher_logits.as_deref(), None),
        predictions,
        data: loaded.description,
        loss,
    })
}

/// A model file or checkpoint: the network, the input normalisation it
/// carries (a checkpoint carries none: its training set's is fitted), and
/// what it is, in words.
fn load(path: &Path, config: &Config, config_path: &Path) -> Result<(Cnn<Cpu>, Option<Normalizer>, String), EvalError> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::Read { path: path.into(), source })?;
    let device = Default::default();
    if bytes.starts_with(b"KDCKPT01") {
        let saved = checkpoint::read_checkpoint(path)
            .map_err(|why| EvalError::Checkpoint { path: path.into(), why })?
            .ok_or_else(|| EvalError::Unknown { path: path.into() })?;
        let teacher = saved.progress.run_id == "teacher";
        let (shape, what) = if teacher { (CnnConfig::teacher(config), "teacher") } else { (CnnConfig::student(config), "student") };
        let model = checkpoint_model(saved.model, &shape).ok_or_else(|| EvalError::WrongModel {
            path: path.into(),
            what,
            config: config_path.into(),
        })?;
        let desc = format!("checkpoint of `{}` ({what}, epoch {})", saved.progress.run_id, saved.progress.epochs_done);
        return Ok((model, None, desc));
    }
    let unpacked = packed::unpack::<Cpu>(&bytes, &device).map_err(|source| match source {
        PackedError::NotSafetensors(_) => EvalError::Unknown { path: path.into() },
        source => EvalError::Packed { path: path.into(), source },
    })?;
    let p = unpacked.network.precision;
    let desc = if p.is_float() {
        "float model file (teacher)".to_string()
    } else {
        format!("packed student ({}-bit weights, {}-bit activations)", p.w_bits, p.a_bits)
    };
    Ok((unpacked.model, Some(unpacked.normalizer), desc))
}
