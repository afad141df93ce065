//! One run's training loop: resumes from the run's checkpoint when it has
//! one, checks the controls between steps, evaluates on the whole test set
//! and saves a checkpoint after every epoch.

use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;

use super::checkpoint::{decode, encode, PartialEpoch, Progress};
use super::orchestrate::{Job, Plan, Trained};
use super::step::{adam, learning_rate, train_step, Read, Tally};
use crate::engine::data::batcher::{batches, make_batch, steps_per_epoch, Shuffle, Targets};
use crate::engine::data::CLASSES;
use crate::engine::fidelity;
use crate::engine::inference::{predict, score};
use crate::engine::logger;
use crate::engine::losses::Objective;
use crate::engine::model::size::model_bytes;
use crate::engine::model::{Cnn, TrainBackend};
use crate::protocol::{EpochMetrics, Flow, RunResult, RunStatus, TrainEvent};
use crate::study::RunSpec;
use crate::util::atomic_file::WriteError;

/// Why `train` gave no result.
pub(super) enum TrainError {
    /// A checkpoint or model file could not be written: the plan stops.
    Write(WriteError),
    /// The backend logged an error (a GPU kernel that failed on cubecl's
    /// device thread): this run fails with it.
    Device(String),
}

impl From<WriteError> for TrainError {
    fn from(e: WriteError) -> Self {
        TrainError::Write(e)
    }
}

impl<B: TrainBackend> Plan<'_, B> {
    /// What the backend logged since the last look: warnings become log
    /// lines, errors this run's failure.
    fn backend_log(&self) -> Result<(), TrainError> {
        let mut errors = Vec::new();
        for record in logger::drain() {
            match record.error {
                true => errors.push(record.text),
                false => self.log(format!("backend: {}", record.text)),
            }
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(TrainError::Device(errors.join("; "))),
        }
    }

    /// A loss that is not finite: the run stops as diverged, its last epoch
    /// checkpoint kept (the model of the steps since is not saved).
    fn diverged(&self, spec: &RunSpec, epoch: usize, step: usize, loss: f64) -> RunStatus {
        let kept = match epoch {
            1 => "it has no earlier checkpoint".to_string(),
            _ => format!("its checkpoint of epoch {} is kept", epoch - 1),
        };
        self.log(format!("{}: loss became {loss} in epoch {epoch}, by step {step}; {kept}", spec.run_id));
        RunStatus::Diverged
    }

    /// One run's training loop, from its checkpoint when it has one. Checks the
    /// controls between steps; evaluates on the whole test set and saves a
    /// checkpoint after every epoch, and saves one when stopped between steps.
    pub(super) fn train(&mut self, job: Job) -> Result<Trained<B>, TrainError> {
        let Job { spec, shape, epochs, lr, soft, teacher_test, store } = job;
        let config = &self.input.config;
        let train = &self.input.data.train;
        let test = &self.input.data.test;
        let batch_size = config.train.batch_size.min(train.len());
        let objective = Objective::of(config, spec.loss, spec.temperature);
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
        let steps_per_epoch = steps_per_epoch(train.len(), batch_size);
        let targets = Targets::<B>::new(train, soft, &self.device);
        let warmup = (config.train.warmup_epochs * steps_per_epoch as f64).round() as usize;
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
        let mut shuffle = Shuffle::new(train.len(), spec.seed);
        for _ in 0..progress.epochs_done {
            shuffle.next_epoch();
        }
        let (first_epoch, skip_steps) = (progress.epochs_done + 1, progress.steps_into_epoch);
        let wall_before = progress.wall_seconds;
        'epochs: for epoch in first_epoch..=epochs {
            let epoch_started = Instant::now();
            let order = shuffle.next_epoch();
            let skip = if epoch == first_epoch { skip_steps } else { 0 };
            let mut partial = std::mem::take(&mut progress.partial);
            let mut window = Window::new();
            // The steps' metrics stay on the device until a step event or the
            // epoch's end needs them: one read per `log_every` steps.
            let mut tally = Tally::new();
            // steps_in_epoch: the steps of this epoch taken before this one.
            for (steps_in_epoch, indices) in (skip..).zip(batches(order, batch_size).skip(skip)) {
                if self.controls.between_steps() == Flow::Stop {
                    let read = tally.read();
                    if !read.loss_sum.is_finite() {
                        status = self.diverged(spec, epoch, step, read.mean_loss());
                        break 'epochs;
                    }
                    partial.add(&read);
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
                if step == loaded_at_step && self.input.inject_panic.as_deref() == Some(&spec.run_id) {
                    panic!("injected by a test");
                }
                if step == loaded_at_step && self.input.inject_device_error.as_deref() == Some(&spec.run_id) {
                    log::error!(target: "kdtui_test_device", "injected by a test");
                }
                if logger::error_pending() {
                    self.backend_log()?;
                }
                let batch = make_batch::<B>(train, &self.norm, indices, &targets, &self.device);
                let step_lr = learning_rate(lr, step, epochs * steps_per_epoch, warmup);
                let (next, metrics) = train_step(model, &mut optim, batch, objective, step_lr);
                model = next;
                tally.add(metrics, indices.len());
                step += 1;
                if step.is_multiple_of(config.train.log_every) {
                    let read = tally.read();
                    if !read.loss_sum.is_finite() {
                        status = self.diverged(spec, epoch, step, read.mean_loss());
                        break 'epochs;
                    }
                    partial.add(&read);
                    window.add(&read);
                    let _ = self.events.send(window.event(&spec.run_id, epoch, step));
                    window = Window::new();
                }
            }
            let read = tally.read();
            if !read.loss_sum.is_finite() {
                status = self.diverged(spec, epoch, step, read.mean_loss());
                break 'epochs;
            }
            partial.add(&read);
            // One pass over the test set gives the accuracy and the diagnostics.
            let logits = predict(&model.valid(), test, &self.norm, config.train.eval_batch_size, &self.device);
            let (test_loss, test_accuracy) = score(&logits, &test.labels);
            let diagnostics = fidelity::diagnose(&logits, &test.labels, CLASSES, teacher_test, spec.temperature);
            self.backend_log()?;
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
                diagnostics: Some(diagnostics),
            };
            let _ = self.events.send(TrainEvent::EpochFinished { run_id: spec.run_id.clone(), metrics: metrics.clone() });
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
            final_train_loss: last.map_or(f64::NAN, |m| m.train_loss),
            model_bytes: model_bytes(shape),
            wall_seconds: wall_before + started.elapsed().as_secs_f64(),
            reused: false,
            device: self.input.device_name.clone(),
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
}

/// Running metrics over the steps since the last step event.
struct Window {
    started: Instant,
    loss: f64,
    hits: usize,
    images: usize,
}

impl Window {
    fn new() -> Self {
        Self { started: Instant::now(), loss: 0.0, hits: 0, images: 0 }
    }

    fn add(&mut self, read: &Read) {
        self.loss += read.loss_sum;
        self.hits += read.hits;
        self.images += read.images;
    }

    fn event(&self, run_id: &str, epoch: usize, step: usize) -> TrainEvent {
        TrainEvent::Step {
            run_id: run_id.to_string(),
            epoch,
            step,
            loss: (self.loss / self.images.max(1) as f64) as f32,
            accuracy: self.hits as f32 / self.images.max(1) as f32,
            images_per_sec: self.images as f32 / self.started.elapsed().as_secs_f32(),
        }
    }
}
