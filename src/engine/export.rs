//! `kdtui export` and `kdtui eval`: a run's model file (`model::packed`), and
//! the test accuracy of a model file or a checkpoint. Both run on the CPU
//! backend: a file exported and evaluated there computes exactly what the
//! run's own evaluation computed (on the CPU).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::backend::Flex;
use burn::module::Module;

use crate::engine::data::batcher::Normalizer;
use crate::engine::data::CLASSES;
use crate::engine::data::{self, DataError};
use crate::engine::diagnostics;
use crate::engine::inference::{argmax, predict, score};
use crate::engine::model::integer::{IntError, IntNet};
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
    #[error("{path}: {source}")]
    Engine { path: PathBuf, source: IntError },
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
    /// The integer engine against the float one, when the integer engine ran.
    pub engine: Option<EngineRun>,
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

/// Which engine runs a quantized student in `eval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// The integer engine (`model::integer`); the default for students.
    Int,
    /// The fp32 simulation training uses.
    Float,
}

/// The integer engine's run beside the float engine's.
pub struct EngineRun {
    pub kernel: String,
    /// Images whose predicted class is the float engine's.
    pub agree: usize,
    /// Images where the two engines' logits differ in more than float
    /// rounding: a code crossed a threshold (first 20 listed).
    pub differ: Vec<usize>,
    pub differ_count: usize,
    pub int_images_per_sec: f64,
    pub float_images_per_sec: f64,
}

/// Test accuracy of a model file or checkpoint over the whole test set of
/// `data`, with its calibration; with the teacher's model file or
/// checkpoint, also the agreement with it and their KL divergence. A
/// quantized student runs on `engine` (the integer engine by default),
/// and on the integer engine also on the float one, to compare.
pub fn eval(
    path: &Path,
    teacher: Option<&Path>,
    engine: Option<Engine>,
    config: &Config,
    config_path: &Path,
    data: &crate::study::config::DataConfig,
) -> Result<Evaluation, EvalError> {
    // The models first: a wrong file is refused before the data is read.
    let loaded_model = load(path, config, config_path)?;
    let quantized = !loaded_model.network.precision.is_float();
    let engine = engine.unwrap_or(if quantized { Engine::Int } else { Engine::Float });
    let teacher = teacher.map(|t| load(t, config, config_path)).transpose()?;
    let device = Default::default();
    let loaded = data::load(data)?;
    // A checkpoint carries no normalisation: fitted once on the training set, for either model.
    let needs_fit = loaded_model.norm.is_none() || teacher.as_ref().is_some_and(|t| t.norm.is_none());
    let fitted = needs_fit.then(|| Normalizer::fit(&loaded.train));
    let pick = |own: &Option<Normalizer>| own.as_ref().or(fitted.as_ref()).cloned().expect("fitted when a model has none");
    let norm = pick(&loaded_model.norm);
    let int = match engine {
        Engine::Int => Some(
            IntNet::new(&loaded_model.network, &loaded_model.values, &norm)
                .map_err(|source| EvalError::Engine { path: path.into(), source })?,
        ),
        Engine::Float => None,
    };
    let started = Instant::now();
    let float_logits = predict(&loaded_model.model, &loaded.test, &norm, config.train.eval_batch_size, &device);
    let float_seconds = started.elapsed().as_secs_f64();
    let (logits, run) = match int {
        None => (float_logits, None),
        Some(net) => {
            // As a process serving the engine runs (docs/INTEGER.md, memory).
            let _small = crate::util::pages::SmallPages::new();
            let mut logits = vec![0f32; loaded.test.len() * CLASSES];
            let started = Instant::now();
            net.logits(&loaded.test.images, &mut logits);
            let int_seconds = started.elapsed().as_secs_f64();
            let run = compare(&logits, &float_logits, net.kernel_name(), loaded.test.len() as f64, int_seconds, float_seconds);
            (logits, Some(run))
        }
    };
    let teacher_logits = teacher.map(|t| predict(&t.model, &loaded.test, &pick(&t.norm), config.train.eval_batch_size, &device));
    let (loss, _) = score(&logits, &loaded.test.labels);
    let predictions: Vec<u8> = logits.chunks_exact(CLASSES).map(|row| argmax(row) as u8).collect();
    Ok(Evaluation {
        model: loaded_model.what,
        correct: predictions.iter().zip(&loaded.test.labels).filter(|(p, l)| p == l).count(),
        images: loaded.test.len(),
        diagnostics: diagnostics::diagnose(&logits, &loaded.test.labels, CLASSES, teacher_logits.as_deref(), None),
        predictions,
        data: loaded.description,
        loss,
        engine: run,
    })
}

/// How the integer engine's logits compare with the float engine's. Both
/// compute the same function up to float rounding, so logits a code apart
/// differ by at least one weight's worth; rounding alone stays under
/// 1e-3 of the logits' scale.
fn compare(int: &[f32], float: &[f32], kernel: String, images: f64, int_seconds: f64, float_seconds: f64) -> EngineRun {
    let mut differ = Vec::new();
    let mut agree = 0;
    for (i, (a, b)) in int.chunks_exact(CLASSES).zip(float.chunks_exact(CLASSES)).enumerate() {
        agree += usize::from(argmax(a) == argmax(b));
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        if a.iter().zip(b).any(|(x, y)| (x - y).abs() > 1e-3 * scale) {
            differ.push(i);
        }
    }
    EngineRun {
        kernel,
        agree,
        differ_count: differ.len(),
        differ: differ.into_iter().take(20).collect(),
        int_images_per_sec: images / int_seconds.max(1e-9),
        float_images_per_sec: images / float_seconds.max(1e-9),
    }
}

/// A model file or checkpoint as `eval` uses it.
struct Loaded {
    model: Cnn<Cpu>,
    network: CnnConfig,
    /// The stored values (`CnnConfig::layout` order), for the integer engine.
    values: Vec<Vec<f32>>,
    /// The input normalisation it carries (a checkpoint carries none: its
    /// training set's is fitted).
    norm: Option<Normalizer>,
    /// What it is, in words.
    what: String,
}

/// A model file or checkpoint.
fn load(path: &Path, config: &Config, config_path: &Path) -> Result<Loaded, EvalError> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::Read { path: path.into(), source })?;
    let device = Default::default();
    if bytes.starts_with(b"KDCKPT01") {
        let saved = checkpoint::read_checkpoint(path)
            .map_err(|why| EvalError::Checkpoint { path: path.into(), why })?
            .ok_or_else(|| EvalError::Unknown { path: path.into() })?;
        let teacher = saved.progress.run_id == "teacher";
        let (shape, what) = if teacher { (CnnConfig::teacher(config), "teacher") } else { (CnnConfig::student(config), "student") };
        let trained = checkpoint_model(saved.model, &shape).ok_or_else(|| EvalError::WrongModel {
            path: path.into(),
            what,
            config: config_path.into(),
        })?;
        // The stored values of the checkpoint's model, and the model a model
        // file of them gives: the float engine computes what export's file would.
        let values = trained.stored_values();
        let stored = packed::Stored { network: shape.clone(), normalizer: Normalizer::new([0.0; 3], [1.0; 3]), values };
        let desc = format!("checkpoint of `{}` ({what}, epoch {})", saved.progress.run_id, saved.progress.epochs_done);
        return Ok(Loaded { model: stored.model(&device), network: shape, values: stored.values, norm: None, what: desc });
    }
    let stored = packed::read(&bytes).map_err(|source| match source {
        PackedError::NotSafetensors(_) => EvalError::Unknown { path: path.into() },
        source => EvalError::Packed { path: path.into(), source },
    })?;
    let p = stored.network.precision;
    let what = if p.is_float() {
        "float model file (teacher)".to_string()
    } else {
        format!("packed student ({}-bit weights, {}-bit activations)", p.w_bits, p.a_bits)
    };
    let model = stored.model(&device);
    Ok(Loaded { model, network: stored.network, values: stored.values, norm: Some(stored.normalizer), what })
}
