//! Runs a plan: the teacher (trained, or loaded from its checkpoint), its
//! cached logits, then every student run, each in its own training loop.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use crossbeam_channel::{Receiver, Sender};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::checkpoint::TeacherStore;
use super::control::{Control, Controls, Flow};
use super::event::{EpochMetrics, RunResult, RunStatus, TrainEvent};
use super::plan::{RunKind, RunSpec};
use crate::config::Config;
use crate::data::batcher::{make_batch, Normalizer};
use crate::data::{Data, Dataset, CLASSES};
use crate::distill;
use crate::model::size::model_bytes;
use crate::model::{Cnn, CnnConfig, Precision};

/// Everything a plan needs besides the device.
pub struct PlanInput {
    pub config: Config,
    pub runs: Vec<RunSpec>,
    pub data: Data,
    pub device_name: String,
    /// Retrain the teacher even when a matching checkpoint exists.
    pub fresh: bool,
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
pub fn run_plan<B: AutodiffBackend>(input: PlanInput, device: B::Device, events: Sender<TrainEvent>, control: Receiver<Control>) {
    let norm = Normalizer::fit(&input.data.train);
    let _ = events.send(TrainEvent::PlanStarted {
        plan: input.config.plan.name.clone(),
        runs: input.runs.clone(),
        device: input.device_name.clone(),
        data: input.data.description.clone(),
    });
    for note in &input.data.notes {
        let _ = events.send(TrainEvent::Log { message: note.clone() });
    }
    let mut plan = Plan::<B> {
        controls: Controls::new(control, events.clone()),
        input: &input,
        norm,
        device,
        events,
    };
    let stopped = plan.run_all();
    let _ = plan.events.send(TrainEvent::PlanFinished { stopped });
}

struct Plan<'a, B: AutodiffBackend> {
    input: &'a PlanInput,
    norm: Normalizer,
    device: B::Device,
    events: Sender<TrainEvent>,
    controls: Controls,
}

/// What one run produced.
struct Trained<B: AutodiffBackend> {
    model: Cnn<B>,
    result: RunResult,
}

impl<B: AutodiffBackend> Plan<'_, B> {
    fn log(&self, message: impl Into<String>) {
        let _ = self.events.send(TrainEvent::Log { message: message.into() });
    }

    fn fail(&self, run_id: &str, error: impl Into<String>) {
        let _ = self.events.send(TrainEvent::RunFailed {
            run_id: run_id.to_string(),
            error: error.into(),
        });
    }

    /// Returns whether the plan was stopped.
    fn run_all(&mut self) -> bool {
        let config = &self.input.config;
        let runs = &self.input.runs;
        let Some(teacher_spec) = runs.iter().find(|r| r.kind == RunKind::Teacher) else {
            return false;
        };
        let need_logits = runs.iter().any(|r| r.loss.needs_teacher());
        let teacher_logits = match self.teacher(teacher_spec, need_logits) {
            Ok(logits) => logits,
            Err(TeacherOutcome::Stopped) => return true,
            Err(TeacherOutcome::Failed(e)) => {
                self.fail(&teacher_spec.run_id, e.clone());
                None
            }
        };

        for spec in runs.iter().filter(|r| r.kind != RunKind::Teacher) {
            if self.controls.stopped() {
                return true;
            }
            let soft = match (spec.loss.needs_teacher(), &teacher_logits) {
                (false, _) => None,
                (true, Some(logits)) => Some(distill::soft_targets(logits, CLASSES, spec.temperature.unwrap_or(1.0))),
                (true, None) => {
                    self.fail(&spec.run_id, "no teacher: its run failed, so there are no soft targets");
                    continue;
                }
            };
            let student = student_config(config);
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                self.train(spec, &student, config.student.epochs, config.student.learning_rate, soft.as_deref())
            }));
            match outcome {
                Ok(trained) => {
                    let _ = self.events.send(TrainEvent::RunFinished { result: trained.result });
                }
                Err(panic) => self.fail(&spec.run_id, format!("training panicked: {}", panic_message(&panic))),
            }
        }
        self.controls.stopped()
    }

    /// Trains or loads the teacher and returns its logits over the training set
    /// when `need_logits`.
    fn teacher(&mut self, spec: &RunSpec, need_logits: bool) -> Result<Option<Vec<f32>>, TeacherOutcome> {
        let config = &self.input.config;
        let shape = teacher_config(config);
        let hash = config.teacher_hash();
        let store = TeacherStore::new(&config.plan.checkpoints, &config.plan.name, &hash);
        let fresh_model = || shape.init::<B::InnerBackend>(&self.device);

        let loaded = match self.input.fresh {
            true => None,
            false => store
                .load_result()
                .filter(|r| r.status == RunStatus::Done)
                .and_then(|r| Some((store.load_model(fresh_model(), &self.device)?, r))),
        };
        let teacher: Cnn<B::InnerBackend> = match loaded {
            Some((model, mut result)) => {
                self.log(format!("teacher reused from {} (config hash {hash})", store.dir.display()));
                let _ = self.events.send(TrainEvent::RunStarted {
                    run_id: spec.run_id.clone(),
                    epochs: result.epochs,
                    steps_per_epoch: 0,
                });
                result.reused = true;
                let _ = self.events.send(TrainEvent::RunFinished { result });
                model
            }
            None => {
                let trained = catch_unwind(AssertUnwindSafe(|| {
                    self.train(spec, &shape, config.teacher.epochs, config.teacher.learning_rate, None)
                }))
                .map_err(|p| TeacherOutcome::Failed(format!("training panicked: {}", panic_message(&p))))?;
                let status = trained.result.status;
                if status == RunStatus::Done {
                    let saved = store.save_model(trained.model.valid()).and_then(|_| store.save_result(&trained.result));
                    match saved {
                        Ok(()) => self.log(format!("teacher checkpoint saved in {}", store.dir.display())),
                        Err(e) => self.log(format!("teacher checkpoint not saved: {e}")),
                    }
                }
                let _ = self.events.send(TrainEvent::RunFinished {
                    result: trained.result,
                });
                match status {
                    RunStatus::Done => trained.model.valid(),
                    RunStatus::Interrupted => return Err(TeacherOutcome::Stopped),
                    RunStatus::Diverged => {
                        return Err(TeacherOutcome::Failed("the teacher diverged (NaN or infinite loss)".into()))
                    }
                }
            }
        };
        if !need_logits {
            return Ok(None);
        }
        let train = &self.input.data.train;
        if let Some(logits) = store.load_logits(train.len()).filter(|_| !self.input.fresh) {
            self.log("teacher logits read from the cache");
            return Ok(Some(logits));
        }
        let started = Instant::now();
        let logits = predict(&teacher, train, &self.norm, config.train.eval_batch_size, &self.device);
        if let Err(e) = store.save_logits(&logits) {
            self.log(format!("teacher logits not cached: {e}"));
        }
        self.log(format!(
            "teacher logits over {} training images computed in {:.1} s and cached",
            train.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok(Some(logits))
    }

    /// One run's training loop. Checks the controls between steps; evaluates on
    /// the whole test set after every epoch.
    fn train(&mut self, spec: &RunSpec, shape: &CnnConfig, epochs: usize, lr: f64, soft: Option<&[f32]>) -> Trained<B> {
        let config = &self.input.config;
        let train = &self.input.data.train;
        let test = &self.input.data.test;
        let batch_size = config.train.batch_size.min(train.len());
        let temperature = spec.temperature.unwrap_or(1.0);
        let c = config.soft_weight(temperature);
        let started = Instant::now();

        B::seed(&self.device, spec.seed);
        let mut model: Cnn<B> = shape.init(&self.device);
        let mut optim = AdamConfig::new()
            .with_weight_decay(Some(WeightDecayConfig::new(config.train.weight_decay as f32)))
            .init();
        // A last batch of one image would give BatchNorm a zero variance.
        let steps_per_epoch = train.len() / batch_size + usize::from(train.len() % batch_size > 1);
        let _ = self.events.send(TrainEvent::RunStarted {
            run_id: spec.run_id.clone(),
            epochs,
            steps_per_epoch,
        });

        let mut status = RunStatus::Done;
        let mut history = Vec::new();
        let mut step = 0;
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut shuffle = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x5eed_0f_0de5);
        'epochs: for epoch in 1..=epochs {
            let epoch_started = Instant::now();
            order.shuffle(&mut shuffle);
            let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
            let mut window = Window::new();
            for indices in order.chunks(batch_size).filter(|c| c.len() > 1) {
                if self.controls.between_steps() == Flow::Stop {
                    status = RunStatus::Interrupted;
                    break 'epochs;
                }
                let batch = make_batch::<B>(train, &self.norm, indices, soft, &self.device);
                // [b, 3, 32, 32] -> [b, 10]
                let logits = model.forward(batch.images);
                let loss = distill::loss(spec.loss, logits.clone(), batch.onehot, batch.soft, temperature, c);
                let loss_value: f64 = loss.clone().into_scalar().elem();
                if !loss_value.is_finite() {
                    self.log(format!("{}: loss became {loss_value} at epoch {epoch}, step {step}", spec.run_id));
                    status = RunStatus::Diverged;
                    break 'epochs;
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
                model = optim.step(cosine_lr(lr, step, epochs * steps_per_epoch), model, grads);

                step += 1;
                loss_sum += loss_value * indices.len() as f64;
                correct += hits as usize;
                seen += indices.len();
                window.add(loss_value, hits as usize, indices.len());
                if step % config.train.log_every == 0 {
                    let _ = self.events.send(window.event(&spec.run_id, epoch, step));
                    window = Window::new();
                }
            }
            let (test_loss, test_accuracy) = evaluate(&model.valid(), test, &self.norm, config.train.eval_batch_size, &self.device);
            let seconds = epoch_started.elapsed().as_secs_f64();
            let metrics = EpochMetrics {
                epoch,
                train_loss: loss_sum / seen.max(1) as f64,
                train_accuracy: correct as f64 / seen.max(1) as f64,
                test_loss,
                test_accuracy,
                seconds,
                images_per_sec: seen as f64 / seconds,
            };
            let _ = self.events.send(TrainEvent::EpochFinished {
                run_id: spec.run_id.clone(),
                metrics: metrics.clone(),
            });
            history.push(metrics);
        }

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
            wall_seconds: started.elapsed().as_secs_f64(),
            reused: false,
            history,
        };
        Trained { model, result }
    }
}

/// Cosine decay from `base` at step 0 towards 0 at `total`: short runs end
/// on small steps instead of bouncing at the full learning rate.
pub fn cosine_lr(base: f64, step: usize, total: usize) -> f64 {
    let progress = step as f64 / total.max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

enum TeacherOutcome {
    Stopped,
    Failed(String),
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
pub fn predict<B: Backend>(model: &Cnn<B>, data: &Dataset, norm: &Normalizer, batch_size: usize, device: &B::Device) -> Vec<f32> {
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
pub fn evaluate<B: Backend>(model: &Cnn<B>, data: &Dataset, norm: &Normalizer, batch_size: usize, device: &B::Device) -> (f64, f64) {
    let logits = predict(model, data, norm, batch_size, device);
    let (mut loss, mut correct) = (0.0f64, 0usize);
    for (row, &label) in logits.chunks_exact(CLASSES).zip(&data.labels) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z)) as f64;
        let lse = max + row.iter().map(|&z| (z as f64 - max).exp()).sum::<f64>().ln();
        loss += lse - row[label as usize] as f64;
        let predicted = row.iter().enumerate().fold(0, |best, (i, &z)| if z > row[best] { i } else { best });
        correct += usize::from(predicted == label as usize);
    }
    let n = data.len().max(1) as f64;
    (loss / n, correct as f64 / n)
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
