//! Runs a plan: the teacher (trained, or loaded from its checkpoint), its
//! cached logits, then every student run, each in its own training loop.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use crossbeam_channel::{Receiver, Sender};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{decode, encode, PartialEpoch, Prior, Progress, RunStore};
use super::control::{Control, Controls, Flow};
use super::event::{EpochMetrics, RunResult, RunStatus, TrainEvent};
use super::plan::{RunKind, RunSpec};
use crate::config::Config;
use crate::data::batcher::{make_batch, Batch, Normalizer};
use crate::data::{Data, Dataset, CLASSES};
use crate::distill;
use crate::model::size::model_bytes;
use crate::atomic_file::{self, WriteError};
use crate::model::{packed, Cnn, CnnConfig, CnnBackend, Precision, TrainBackend};

/// Everything a plan needs besides the device.
pub struct PlanInput {
    pub config: Config,
    pub runs: Vec<RunSpec>,
    pub data: Data,
    pub device_name: String,
    /// Start over: remove the runs' checkpoints first.
    pub fresh: bool,
    /// Lines for the log before training starts (what became of earlier results, ...).
    pub notes: Vec<String>,
    /// Where each finished run's model file goes (`<run_id>.safetensors`,
    /// `model::packed`); none: not written.
    pub models: Option<PathBuf>,
    /// False for a shard (`--shard`): the teacher must have finished (its
    /// own job trained it); the plan stops with a clear error otherwise,
    /// rather than have every shard train a teacher of its own.
    pub train_teacher: bool,
}

pub fn teacher_config(config: &Config) -> CnnConfig {
    CnnConfig {
        widths: config.teacher.widths,
        hidden: config.teacher.hidden,
        precision: Precision::FLOAT,
    }
}

pub fn student_config(config: &Config) -> CnnConfig {
    CnnConfig {
        widths: config.student.widths,
        hidden: config.student.hidden,
        precision: Precision {
            w_bits: config.student.w_bits,
            a_bits: config.student.a_bits,
            first_last_bits: config.student.first_last_bits,
            a_range: config.student.a_range,
        },
    }
}

/// Runs the whole plan on this thread, reporting through `events`.
pub fn run_plan<B: TrainBackend>(input: PlanInput, device: B::Device, events: Sender<TrainEvent>, control: Receiver<Control>) {
    let norm = Normalizer::fit(&input.data.train);
    let _ = events.send(TrainEvent::PlanStarted {
        plan: input.config.plan.name.clone(),
        runs: input.runs.clone(),
        device: input.device_name.clone(),
        data: input.data.description.clone(),
    });
    for note in input.notes.iter().chain(&input.data.notes) {
        let _ = events.send(TrainEvent::Log { message: note.clone() });
    }
    let mut plan = Plan::<B> {
        controls: Controls::new(control, events.clone()),
        input: &input,
        norm,
        device,
        events,
        panic_in: std::env::var(TEST_PANIC_VAR).ok(),
    };
    let stopped = match plan.run_all() {
        Ok(stopped) => stopped,
        Err(error) => {
            let _ = plan.events.send(TrainEvent::Fatal { error });
            true
        }
    };
    let _ = plan.events.send(TrainEvent::PlanFinished { stopped });
}

/// Names a run id that panics at its first step: lets tests check that a
/// panic in training is contained (a run fails; the plan and the UI go on).
pub const TEST_PANIC_VAR: &str = "KDTUI_TEST_PANIC";

struct Plan<'a, B: TrainBackend> {
    input: &'a PlanInput,
    norm: Normalizer,
    device: B::Device,
    events: Sender<TrainEvent>,
    controls: Controls,
    panic_in: Option<String>,
}

/// What one run produced.
struct Trained<B: TrainBackend> {
    model: Cnn<B>,
    result: RunResult,
}

/// One run to train: what it is, its model, its schedule, its soft targets
/// (distillation) and where its checkpoints go.
#[derive(Clone, Copy)]
struct Job<'a> {
    spec: &'a RunSpec,
    shape: &'a CnnConfig,
    epochs: usize,
    lr: f64,
    soft: Option<&'a [f32]>,
    store: &'a RunStore,
}

/// Why a run did not produce a result.
enum RunError {
    /// Its own fault: the plan goes on without it.
    Failed(String),
    /// The plan cannot go on (its checkpoints cannot be written).
    Fatal(String),
}

impl<B: TrainBackend> Plan<'_, B> {
    fn log(&self, message: impl Into<String>) {
        let _ = self.events.send(TrainEvent::Log { message: message.into() });
    }

    fn fail(&self, run_id: &str, error: impl Into<String>) {
        let _ = self.events.send(TrainEvent::RunFailed {
            run_id: run_id.to_string(),
            error: error.into(),
        });
    }

    /// Says a finished run again (from its checkpoint), without training.
    fn replay(&self, mut result: RunResult) {
        result.reused = true;
        for event in TrainEvent::replay(result) {
            let _ = self.events.send(event);
        }
    }

    /// Looks at every run's checkpoint folder (`--fresh` empties them first)
    /// and says what will be resumed.
    fn survey(&self, stores: &[RunStore]) -> Result<Vec<Prior>, String> {
        if self.input.fresh {
            for store in stores {
                store.discard().map_err(|e| format!("cannot remove {}: {e}", store.dir.display()))?;
            }
            self.log("--fresh: earlier checkpoints of these runs removed; starting over");
        }
        let mut priors = Vec::with_capacity(stores.len());
        for store in stores {
            let (prior, note) = store.survey().map_err(|e| e.to_string())?;
            if let Some(note) = note {
                self.log(note);
            }
            priors.push(prior);
        }
        let finished = priors.iter().filter(|p| matches!(p, Prior::Finished(_))).count();
        let partial: Vec<String> = priors
            .iter()
            .filter_map(|p| match p {
                Prior::Partial(p) => Some(format!("{} (from epoch {}, step {})", p.run_id, p.epochs_done + 1, p.step)),
                _ => None,
            })
            .collect();
        if finished > 0 || !partial.is_empty() {
            let mut line = format!("resuming: {finished} of {} runs already finished (kept, not retrained)", stores.len());
            if !partial.is_empty() {
                line += &format!("; continuing {}", partial.join(", "));
            }
            self.log(line);
        }
        Ok(priors)
    }

    /// Returns whether the plan was stopped, or the reason it cannot go on.
    fn run_all(&mut self) -> Result<bool, String> {
        let config = &self.input.config;
        let runs = &self.input.runs;
        let stores: Vec<RunStore> = runs.iter().map(|spec| RunStore::new(config, spec)).collect();
        let mut priors = self.survey(&stores)?.into_iter();
        if !runs.iter().any(|r| r.kind == RunKind::Teacher) {
            return Ok(false);
        }
        // The study's, not the selection's: a teacher-only session (the
        // teacher job of a Slurm study) leaves the cache its shards read.
        let need_logits = config.plan.losses.iter().any(|l| l.needs_teacher());
        let mut teacher_logits = None;
        let mut no_teacher = "the teacher run failed";
        for (spec, store) in runs.iter().zip(&stores) {
            let prior = priors.next().unwrap_or(Prior::Nothing);
            if self.controls.stopped() {
                return Ok(true);
            }
            if spec.kind == RunKind::Teacher {
                match self.teacher(spec, store, prior, need_logits) {
                    Ok(Some(logits)) => teacher_logits = Some(logits),
                    Ok(None) => no_teacher = "the teacher diverged",
                    Err(RunError::Fatal(e)) => return Err(e),
                    Err(RunError::Failed(e)) => self.fail(&spec.run_id, e),
                }
                continue;
            }
            if let Prior::Finished(result) = prior {
                if result.status == RunStatus::Done && self.model_file_missing(spec) {
                    let shape = student_config(config);
                    match self.load_model(&shape, store) {
                        Some(model) => self.write_model_file(spec, &model, &shape).map_err(|e| e.to_string())?,
                        None => self.log(format!("{}: its checkpoint does not load; no model file written", spec.run_id)),
                    }
                }
                self.replay(result);
                continue;
            }
            let soft = match (spec.loss.needs_teacher(), &teacher_logits) {
                (false, _) => None,
                (true, Some(logits)) => Some(distill::soft_targets(logits, CLASSES, spec.temperature.unwrap_or(1.0))),
                (true, None) => {
                    self.fail(&spec.run_id, format!("no teacher: {no_teacher}, so there are no soft targets"));
                    continue;
                }
            };
            let student = student_config(config);
            let job = Job {
                spec,
                shape: &student,
                epochs: config.student.epochs,
                lr: config.student.learning_rate,
                soft: soft.as_deref(),
                store,
            };
            match self.train_caught(job) {
                Ok(trained) => {
                    let _ = self.events.send(TrainEvent::RunFinished { result: trained.result });
                }
                Err(RunError::Failed(e)) => self.fail(&spec.run_id, e),
                Err(RunError::Fatal(e)) => return Err(e),
            }
        }
        Ok(self.controls.stopped())
    }

    /// `train`, with a panic turned into a failed run.
    fn train_caught(&mut self, job: Job) -> Result<Trained<B>, RunError> {
        let spec = job.spec;
        match catch_unwind(AssertUnwindSafe(|| self.train(job))) {
            Ok(Ok(trained)) => Ok(trained),
            Ok(Err(e)) => Err(RunError::Fatal(format!("{}: cannot save its checkpoint or model file: {e}", spec.run_id))),
            Err(panic) => Err(RunError::Failed(format!("training panicked: {}", panic_message(&panic)))),
        }
    }

    /// Trains the teacher, or resumes it, or loads it when it has finished;
    /// returns its logits over the training set when `need_logits`.
    fn teacher(&mut self, spec: &RunSpec, store: &RunStore, prior: Prior, need_logits: bool) -> Result<Option<Vec<f32>>, RunError> {
        let config = &self.input.config;
        let shape = teacher_config(config);
        let finished = match prior {
            Prior::Finished(result) if result.status == RunStatus::Diverged => {
                self.replay(result);
                return Ok(None);
            }
            Prior::Finished(result) => match self.load_model(&shape, store) {
                Some(model) => Some((model, result)),
                None if !self.input.train_teacher => {
                    return Err(RunError::Fatal(format!(
                        "the teacher's checkpoint in {} does not load; a shard does not retrain it: run `kdtui --batch --only teacher` (the teacher job) again",
                        store.dir.display()
                    )))
                }
                None => {
                    self.log(format!("teacher checkpoint in {} does not load; retraining it", store.dir.display()));
                    store.discard().map_err(|e| RunError::Fatal(format!("cannot remove {}: {e}", store.dir.display())))?;
                    None
                }
            },
            _ if !self.input.train_teacher => {
                return Err(RunError::Fatal(format!(
                    "the teacher has not finished (nothing finished in {}); a shard does not train it: run `kdtui --batch --only teacher` first (the teacher job that `kdtui slurm` writes)",
                    store.dir.display()
                )))
            }
            _ => None,
        };
        let teacher: Cnn<B::InnerBackend> = match finished {
            Some((model, result)) => {
                self.log(format!("teacher reused from {}", store.dir.display()));
                if self.model_file_missing(spec) {
                    self.write_model_file(spec, &model, &shape).map_err(|e| RunError::Fatal(e.to_string()))?;
                }
                self.replay(result);
                model
            }
            None => {
                let trained = self.train_caught(Job {
                    spec,
                    shape: &shape,
                    epochs: config.teacher.epochs,
                    lr: config.teacher.learning_rate,
                    soft: None,
                    store,
                })?;
                let status = trained.result.status;
                let _ = self.events.send(TrainEvent::RunFinished { result: trained.result });
                match status {
                    RunStatus::Done => trained.model.valid(),
                    RunStatus::Interrupted | RunStatus::Diverged => return Ok(None),
                }
            }
        };
        if !need_logits {
            return Ok(None);
        }
        let train = &self.input.data.train;
        if let Some(logits) = store.load_logits(train.len()) {
            self.log("teacher logits read from the cache");
            return Ok(Some(logits));
        }
        let started = Instant::now();
        let logits = predict(&teacher, train, &self.norm, config.train.eval_batch_size, &self.device);
        store
            .save_logits(&logits)
            .map_err(|e| RunError::Fatal(format!("teacher logits: {e}")))?;
        self.log(format!(
            "teacher logits over {} training images computed in {:.1} s and cached",
            train.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok(Some(logits))
    }

    /// The model of a run's checkpoint, in inference mode.
    fn load_model(&self, shape: &CnnConfig, store: &RunStore) -> Option<Cnn<B::InnerBackend>> {
        let saved = store.load()?;
        let record: <Cnn<B> as Module<B>>::Record = decode::<B, _>(saved.model, &self.device)?;
        Some(shape.init::<B>(&self.device).load_record(record).valid())
    }

    /// One run's training loop, from its checkpoint when it has one. Checks the
    /// controls between steps; evaluates on the whole test set and saves a
    /// checkpoint after every epoch, and saves one when stopped between steps.
    fn train(&mut self, job: Job) -> Result<Trained<B>, WriteError> {
        let Job {
            spec,
            shape,
            epochs,
            lr,
            soft,
            store,
        } = job;
        let config = &self.input.config;
        let train = &self.input.data.train;
        let test = &self.input.data.test;
        let batch_size = config.train.batch_size.min(train.len());
        let temperature = spec.temperature.unwrap_or(1.0);
        let objective = Objective {
            loss: spec.loss,
            temperature,
            c: config.soft_weight(temperature),
        };
        let started = Instant::now();

        B::seed(&self.device, spec.seed);
        let mut model: Cnn<B> = shape.init(&self.device);
        let mut optim = adam::<B>(config);
        let mut progress = Progress {
            hash: store.hash.clone(),
            run_id: spec.run_id.clone(),
            epochs_done: 0,
            steps_into_epoch: 0,
            step: 0,
            partial: PartialEpoch::default(),
            history: Vec::new(),
            wall_seconds: 0.0,
        };
        if let Some(saved) = store.load() {
            let model_record: Option<<Cnn<B> as Module<B>>::Record> = decode::<B, _>(saved.model, &self.device);
            let optim_record = saved.optimizer.and_then(|bytes| decode::<B, _>(bytes, &self.device));
            let finished = saved.progress.epochs_done >= epochs;
            match (model_record, optim_record) {
                (Some(m), optim_record) if optim_record.is_some() || finished => {
                    model = model.load_record(m);
                    if let Some(o) = optim_record {
                        optim = optim.load_record(o);
                    }
                    progress = saved.progress;
                    self.log(format!(
                        "{}: resumed from its checkpoint at epoch {}, step {}",
                        spec.run_id,
                        progress.epochs_done + 1,
                        progress.step
                    ));
                }
                _ => self.log(format!("{}: its checkpoint does not load into this model; starting over", spec.run_id)),
            }
        }
        // A last batch of one image would give BatchNorm a zero variance.
        let steps_per_epoch = train.len() / batch_size + usize::from(train.len() % batch_size > 1);
        let _ = self.events.send(TrainEvent::RunStarted {
            run_id: spec.run_id.clone(),
            epochs,
            steps_per_epoch,
            step: progress.step,
            history: progress.history.clone(),
        });

        let mut status = RunStatus::Done;
        let mut step = progress.step;
        let loaded_at_step = step;
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut shuffle = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x5eed_0f_0de5);
        for _ in 0..progress.epochs_done {
            order.shuffle(&mut shuffle);
        }
        let (first_epoch, skip_steps) = (progress.epochs_done + 1, progress.steps_into_epoch);
        let wall_before = progress.wall_seconds;
        'epochs: for epoch in first_epoch..=epochs {
            let epoch_started = Instant::now();
            order.shuffle(&mut shuffle);
            let skip = if epoch == first_epoch { skip_steps } else { 0 };
            let mut partial = std::mem::take(&mut progress.partial);
            let mut steps_in_epoch = skip;
            let mut window = Window::new();
            for indices in order.chunks(batch_size).filter(|c| c.len() > 1).skip(skip) {
                if self.controls.between_steps() == Flow::Stop {
                    status = RunStatus::Interrupted;
                    if step > loaded_at_step {
                        partial.seconds += epoch_started.elapsed().as_secs_f64();
                        progress.steps_into_epoch = steps_in_epoch;
                        progress.partial = partial;
                        progress.step = step;
                        progress.wall_seconds = wall_before + started.elapsed().as_secs_f64();
                        store.save(&progress, &encode::<B, _>(model.clone().into_record()), Some(&encode::<B, _>(optim.to_record())))?;
                    }
                    break 'epochs;
                }
                if step == loaded_at_step && self.panic_in.as_deref() == Some(&spec.run_id) {
                    panic!("injected by {TEST_PANIC_VAR} for a test");
                }
                let batch = make_batch::<B>(train, &self.norm, indices, soft, &self.device);
                let step_lr = cosine_lr(lr, step, epochs * steps_per_epoch);
                let (next, loss_value, hits) = train_step(model, &mut optim, batch, objective, step_lr);
                model = next;
                if !loss_value.is_finite() {
                    let kept = match epoch {
                        1 => "it has no earlier checkpoint".to_string(),
                        _ => format!("its checkpoint of epoch {} is kept", epoch - 1),
                    };
                    self.log(format!("{}: loss became {loss_value} in epoch {epoch}, step {step}; {kept}", spec.run_id));
                    status = RunStatus::Diverged;
                    break 'epochs;
                }

                step += 1;
                steps_in_epoch += 1;
                partial.loss_sum += loss_value * indices.len() as f64;
                partial.correct += hits;
                partial.seen += indices.len();
                window.add(loss_value, hits, indices.len());
                if step % config.train.log_every == 0 {
                    let _ = self.events.send(window.event(&spec.run_id, epoch, step));
                    window = Window::new();
                }
            }
            let (test_loss, test_accuracy) = evaluate(&model.valid(), test, &self.norm, config.train.eval_batch_size, &self.device);
            let seconds = partial.seconds + epoch_started.elapsed().as_secs_f64();
            let seen = partial.seen.max(1) as f64;
            let metrics = EpochMetrics {
                epoch,
                train_loss: partial.loss_sum / seen,
                train_accuracy: partial.correct as f64 / seen,
                test_loss,
                test_accuracy,
                seconds,
                images_per_sec: partial.seen as f64 / seconds,
            };
            let _ = self.events.send(TrainEvent::EpochFinished {
                run_id: spec.run_id.clone(),
                metrics: metrics.clone(),
            });
            progress.history.push(metrics);
            progress.epochs_done = epoch;
            progress.steps_into_epoch = 0;
            progress.step = step;
            progress.wall_seconds = wall_before + started.elapsed().as_secs_f64();
            // The last epoch's checkpoint is the trained model: no optimizer state.
            let optim_bytes = (epoch < epochs).then(|| encode::<B, _>(optim.to_record()));
            store.save(&progress, &encode::<B, _>(model.clone().into_record()), optim_bytes.as_deref())?;
        }

        let history = progress.history;
        let last = history.last();
        let result = RunResult {
            run_id: spec.run_id.clone(),
            kind: spec.kind,
            loss: spec.loss,
            temperature: spec.temperature,
            seed: spec.seed,
            status,
            epochs: history.len(),
            final_test_accuracy: last.map_or(0.0, |m| m.test_accuracy),
            best_test_accuracy: history.iter().map(|m| m.test_accuracy).fold(0.0, f64::max),
            final_train_loss: last.map_or(f64::NAN, |m| m.train_loss),
            model_bytes: model_bytes(shape),
            wall_seconds: wall_before + started.elapsed().as_secs_f64(),
            reused: false,
            history,
        };
        if status != RunStatus::Interrupted {
            store.save_result(&result)?;
        }
        if status == RunStatus::Done {
            self.write_model_file(spec, &model.valid(), shape)?;
        }
        Ok(Trained { model, result })
    }

    fn model_file(&self, spec: &RunSpec) -> Option<PathBuf> {
        Some(self.input.models.as_ref()?.join(format!("{}.safetensors", spec.run_id)))
    }

    fn model_file_missing(&self, spec: &RunSpec) -> bool {
        self.model_file(spec).is_some_and(|path| !path.exists())
    }

    /// A finished run's model file (its size is the run's `model_bytes`).
    fn write_model_file(&self, spec: &RunSpec, model: &Cnn<B::InnerBackend>, shape: &CnnConfig) -> Result<(), WriteError> {
        match self.model_file(spec) {
            Some(path) => atomic_file::write(&path, &packed::pack(model, shape, &self.norm)),
            None => Ok(()),
        }
    }
}

/// What a step minimises: the run's loss at its temperature, soft term weighted by c.
#[derive(Debug, Clone, Copy)]
pub struct Objective {
    pub loss: distill::Loss,
    pub temperature: f64,
    pub c: f64,
}

/// One optimisation step on `batch`: forward, loss, backward, Adam at `lr`.
/// Returns the updated model, the loss and the number of correct predictions.
/// A non-finite loss is returned, not stepped past: the caller decides.
///
/// The benchmark (`kdtui bench`) times this same function.
pub fn train_step<B: TrainBackend, O: Optimizer<Cnn<B>, B>>(
    model: Cnn<B>,
    optim: &mut O,
    batch: Batch<B>,
    objective: Objective,
    lr: f64,
) -> (Cnn<B>, f64, usize) {
    // [b, 3, 32, 32] -> [b, 10]
    let logits = model.forward(batch.images);
    let Objective { loss, temperature, c } = objective;
    let loss = distill::loss(loss, logits.clone(), batch.onehot, batch.soft, temperature, c);
    let loss_value: f64 = loss.clone().into_scalar().elem();
    if !loss_value.is_finite() {
        return (model, loss_value, 0);
    }
    let hits: i64 = logits
        .argmax(1)
        .squeeze_dim::<1>(1)
        .equal(batch.labels)
        .int()
        .sum()
        .into_scalar()
        .elem();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optim.step(lr, model, grads), loss_value, hits as usize)
}

/// A fresh Adam with the config's weight decay, as every run starts with.
pub fn adam<B: TrainBackend>(config: &Config) -> impl Optimizer<Cnn<B>, B> {
    AdamConfig::new()
        .with_weight_decay(Some(WeightDecayConfig::new(config.train.weight_decay as f32)))
        .init::<B, Cnn<B>>()
}

/// Cosine decay from `base` at step 0 towards 0 at `total`: short runs end
/// on small steps instead of bouncing at the full learning rate.
pub fn cosine_lr(base: f64, step: usize, total: usize) -> f64 {
    let progress = step as f64 / total.max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

/// Running metrics over the steps since the last step event.
struct Window {
    started: Instant,
    loss: f64,
    hits: usize,
    images: usize,
    steps: usize,
}

impl Window {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            loss: 0.0,
            hits: 0,
            images: 0,
            steps: 0,
        }
    }

    fn add(&mut self, loss: f64, hits: usize, images: usize) {
        self.loss += loss;
        self.hits += hits;
        self.images += images;
        self.steps += 1;
    }

    fn event(&self, run_id: &str, epoch: usize, step: usize) -> TrainEvent {
        TrainEvent::Step {
            run_id: run_id.to_string(),
            epoch,
            step,
            loss: (self.loss / self.steps.max(1) as f64) as f32,
            accuracy: self.hits as f32 / self.images.max(1) as f32,
            images_per_sec: self.images as f32 / self.started.elapsed().as_secs_f32(),
        }
    }
}

/// Logits [n, 10] row-major for every image of `data`, in inference mode.
pub fn predict<B: CnnBackend>(model: &Cnn<B>, data: &Dataset, norm: &Normalizer, batch_size: usize, device: &B::Device) -> Vec<f32> {
    let all: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(data.len() * CLASSES);
    for indices in all.chunks(batch_size) {
        let batch = make_batch::<B>(data, norm, indices, None, device);
        let logits = model.forward(batch.images);
        out.extend(logits.into_data().convert::<f32>().into_vec::<f32>().expect("f32 logits"));
    }
    out
}

/// (mean hard-label cross-entropy, accuracy) over the whole of `data`.
pub fn evaluate<B: CnnBackend>(model: &Cnn<B>, data: &Dataset, norm: &Normalizer, batch_size: usize, device: &B::Device) -> (f64, f64) {
    score(&predict(model, data, norm, batch_size, device), &data.labels)
}

/// (mean hard-label cross-entropy, accuracy) of logits [n, 10] against `labels`.
pub fn score(logits: &[f32], labels: &[u8]) -> (f64, f64) {
    let (mut loss, mut correct) = (0.0f64, 0usize);
    for (row, &label) in logits.chunks_exact(CLASSES).zip(labels) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z)) as f64;
        let lse = max + row.iter().map(|&z| (z as f64 - max).exp()).sum::<f64>().ln();
        loss += lse - row[label as usize] as f64;
        correct += usize::from(argmax(row) == label as usize);
    }
    let n = labels.len().max(1) as f64;
    (loss / n, correct as f64 / n)
}

/// The predicted class: the first of the largest logits.
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &z)| if z > row[best] { i } else { best })
}

pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::cosine_lr;

    #[test]
    fn cosine_schedule_starts_full_and_decays() {
        assert_eq!(cosine_lr(0.1, 0, 100), 0.1);
        assert!((cosine_lr(0.1, 50, 100) - 0.05).abs() < 1e-12);
        assert!(cosine_lr(0.1, 99, 100) < 0.001);
        assert!(cosine_lr(0.1, 99, 100) > 0.0);
    }
}
