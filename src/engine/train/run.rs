//! One run's training, in named steps: `resume` (from its checkpoint when
//! it has one), `epoch` (steps, the controls checked between them), then
//! `evaluate` (the whole test set, a checkpoint), and `finish` (its result,
//! with what its model costs to serve, and its model file). Everything it needs comes in a `RunSettings`, resolved
//! once from the study's config and the run's spec, and a `RunContext`, what
//! every run of the plan shares.

use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use crossbeam_channel::Sender;

use super::checkpoint::{decode, encode, initial_model, PartialEpoch, Progress, RunStore};
use super::deploy;
use super::hooks::Hooks;
use super::model_files::ModelFiles;
use super::optimizer::StudyAdam;
use super::step::{learning_rate, train_step, Read, Tally};
use crate::engine::data::batcher::{batches, make_batch, steps_per_epoch, Normalizer, Shuffle, Targets};
use crate::engine::data::{Data, CLASSES};
use crate::engine::diagnostics;
use crate::engine::inference::{predict, score};
use crate::engine::logger;
use crate::engine::losses::Objective;
use crate::engine::model::size::model_bytes;
use crate::engine::model::{Cnn, CnnConfig, TrainBackend};
use crate::protocol::{Controls, EpochMetrics, Flow, RunResult, RunStatus, TrainEvent};
use crate::study::{Config, RunSpec};
use crate::util::atomic_file::WriteError;

/// Everything one run needs, computed once from the study's config and the
/// run's spec: nothing below reads the config.
pub(super) struct RunSettings<'a> {
    pub spec: &'a RunSpec,
    pub shape: CnnConfig,
    pub epochs: usize,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub steps_per_epoch: usize,
    /// Steps of the learning rate's linear rise.
    pub warmup_steps: usize,
    /// A step event every this many steps.
    pub log_every: usize,
    pub eval_batch_size: usize,
    pub objective: Objective,
    pub adam: StudyAdam,
    /// The teacher's targets over the training set (the losses that read them).
    pub soft: Option<&'a [f32]>,
    /// The teacher's test-set logits: the students' fidelity is measured
    /// against them (none for the teacher itself).
    pub teacher_test: Option<&'a [f32]>,
    pub store: &'a RunStore,
}

impl<'a> RunSettings<'a> {
    /// `shape`, `epochs` and `learning_rate`: the teacher's or the student's.
    #[allow(clippy::too_many_arguments)]
    pub fn resolve(
        config: &Config,
        spec: &'a RunSpec,
        (shape, epochs, learning_rate): (CnnConfig, usize, f64),
        train_images: usize,
        soft: Option<&'a [f32]>,
        teacher_test: Option<&'a [f32]>,
        store: &'a RunStore,
    ) -> Self {
        let batch_size = config.train.batch_size.min(train_images);
        let steps_per_epoch = steps_per_epoch(train_images, batch_size);
        Self {
            spec,
            shape,
            epochs,
            learning_rate,
            batch_size,
            steps_per_epoch,
            warmup_steps: (config.train.warmup_epochs * steps_per_epoch as f64).round() as usize,
            log_every: config.train.log_every,
            eval_batch_size: config.train.eval_batch_size,
            objective: Objective::of(config, spec.loss, spec.temperature),
            adam: StudyAdam::new(config),
            soft,
            teacher_test,
            store,
        }
    }
}

/// What every run of a plan shares.
pub(super) struct RunContext<'a, B: TrainBackend> {
    pub data: &'a Data,
    pub norm: &'a Normalizer,
    pub device: &'a B::Device,
    pub device_name: &'a str,
    pub events: &'a Sender<TrainEvent>,
    pub models: &'a ModelFiles,
    pub hooks: &'a Hooks,
}

impl<B: TrainBackend> RunContext<'_, B> {
    fn log(&self, message: String) {
        let _ = self.events.send(TrainEvent::Log { message });
    }

    fn send(&self, event: TrainEvent) {
        let _ = self.events.send(event);
    }

    /// What the backend logged since the last look: warnings become log
    /// lines, errors this run's failure.
    fn backend_log(&self) -> Result<(), TrainError> {
        let (mut errors, mut lost) = (Vec::new(), Vec::new());
        for record in logger::drain() {
            match (record.device_lost, record.error) {
                (true, _) => lost.push(record.text),
                (false, true) => errors.push(record.text),
                (false, false) => self.log(format!("backend: {}", record.text)),
            }
        }
        if !lost.is_empty() {
            return Err(TrainError::DeviceLost(lost));
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(TrainError::Device(errors.join("; "))),
        }
    }
}

/// Why `train` gave no result.
pub(super) enum TrainError {
    /// A checkpoint or model file could not be written: the plan stops.
    Write(WriteError),
    /// The backend logged an error (a GPU kernel that failed on cubecl's
    /// device thread): this run fails with it.
    Device(String),
    /// A thread of the backend panicked (cubecl's device server): the
    /// device is of no further use in this process, and the plan stops.
    DeviceLost(Vec<String>),
}

impl From<WriteError> for TrainError {
    fn from(e: WriteError) -> Self {
        TrainError::Write(e)
    }
}

/// What one run produced.
pub(super) struct Trained<B: TrainBackend> {
    pub model: Cnn<B>,
    pub result: RunResult,
}

/// How an epoch's steps ended.
enum Steps {
    /// All of them: the epoch is evaluated.
    Done,
    /// Stopped between two steps, or diverged: the run ends so.
    Ended(RunStatus),
}

/// One run's training from its checkpoint (when it has one) to its result.
pub(super) fn train<B: TrainBackend>(ctx: &RunContext<B>, controls: &mut Controls, s: &RunSettings) -> Result<Trained<B>, TrainError> {
    let mut run = resume(ctx, s);
    ctx.send(TrainEvent::RunStarted {
        run_id: s.spec.run_id.clone(),
        epochs: s.epochs,
        steps_per_epoch: s.steps_per_epoch,
        step: run.progress.step,
        history: run.progress.history.clone(),
    });
    let mut status = RunStatus::Done;
    for epoch in run.progress.epochs_done + 1..=s.epochs {
        match run.epoch(ctx, controls, s, epoch)? {
            Steps::Done => run.evaluate(ctx, s, epoch)?,
            Steps::Ended(end) => {
                status = end;
                break;
            }
        }
    }
    run.finish(ctx, s, status)
}

/// A run under way: its model, optimizer and where it stands.
struct Run<B: TrainBackend, O> {
    /// Out only while a step takes it (`train_step` takes the model by value).
    model: Option<Cnn<B>>,
    optim: O,
    progress: Progress,
    targets: Targets<B>,
    shuffle: Shuffle,
    /// The step the run (re)started at: a stop before any step saves nothing.
    loaded_at_step: usize,
    /// The run's wall time before this session.
    wall_before: f64,
    started: Instant,
    /// The epoch under way: when it started, what it has summed so far.
    epoch_started: Instant,
    partial: PartialEpoch,
}

/// A fresh model and optimizer for the run's seed, replaced by its
/// checkpoint's when that loads.
fn resume<B: TrainBackend>(ctx: &RunContext<B>, s: &RunSettings) -> Run<B, impl Optimizer<Cnn<B>, B>> {
    let spec = s.spec;
    let mut model: Cnn<B> = initial_model(&s.shape, spec.seed, ctx.device);
    let mut optim = s.adam.init::<B>();
    let mut progress = Progress {
        hash: s.store.hash.clone(),
        run_id: spec.run_id.clone(),
        epochs_done: 0,
        steps_into_epoch: 0,
        step: 0,
        partial: PartialEpoch::default(),
        history: Vec::new(),
        wall_seconds: 0.0,
    };
    if let Some(saved) = s.store.load() {
        let model_record: Option<<Cnn<B> as Module<B>>::Record> = decode::<B, _>(saved.model, ctx.device);
        let optim_record = saved.optimizer.and_then(|bytes| decode::<B, _>(bytes, ctx.device));
        let finished = saved.progress.epochs_done >= s.epochs;
        match (model_record, optim_record) {
            (Some(m), optim_record) if optim_record.is_some() || finished => {
                model = model.load_record(m);
                if let Some(o) = optim_record {
                    optim = optim.load_record(o);
                }
                progress = saved.progress;
                ctx.log(format!(
                    "{}: resumed from its checkpoint at epoch {}, step {}",
                    spec.run_id,
                    progress.epochs_done + 1,
                    progress.step
                ));
            }
            _ => ctx.log(format!("{}: its checkpoint does not load into this model; starting over", spec.run_id)),
        }
    }
    let mut shuffle = Shuffle::new(ctx.data.train.len(), spec.seed);
    for _ in 0..progress.epochs_done {
        shuffle.next_epoch();
    }
    Run {
        model: Some(model),
        optim,
        targets: Targets::<B>::new(&ctx.data.train, s.soft, ctx.device),
        shuffle,
        loaded_at_step: progress.step,
        wall_before: progress.wall_seconds,
        started: Instant::now(),
        epoch_started: Instant::now(),
        partial: PartialEpoch::default(),
        progress,
    }
}

impl<B: TrainBackend, O: Optimizer<Cnn<B>, B>> Run<B, O> {
    fn model(&self) -> &Cnn<B> {
        self.model.as_ref().expect("a run holds its model between steps")
    }

    /// The steps of `epoch` (after those a resumed run already took), the
    /// controls checked between two.
    fn epoch(&mut self, ctx: &RunContext<B>, controls: &mut Controls, s: &RunSettings, epoch: usize) -> Result<Steps, TrainError> {
        self.epoch_started = Instant::now();
        let order = self.shuffle.next_epoch().to_vec();
        // A resumed run's first epoch goes on where it stopped.
        let skip = self.progress.steps_into_epoch;
        self.partial = std::mem::take(&mut self.progress.partial);
        let mut window = Window::new();
        // The steps' metrics stay on the device until a step event or the
        // epoch's end needs them: one read per `log_every` steps.
        let mut tally = Tally::new();
        let train = &ctx.data.train;
        // steps_in_epoch: the steps of this epoch taken before this one.
        for (steps_in_epoch, indices) in (skip..).zip(batches(&order, s.batch_size).skip(skip)) {
            if controls.between_steps() == Flow::Stop {
                let Some(read) = self.read(ctx, s, &mut tally, epoch) else { return Ok(Steps::Ended(RunStatus::Diverged)) };
                self.partial.add(&read);
                self.save_stopped(s, steps_in_epoch)?;
                return Ok(Steps::Ended(RunStatus::Interrupted));
            }
            if self.progress.step == self.loaded_at_step {
                ctx.hooks.at_first_step::<B>(&s.spec.run_id, ctx.device);
            }
            if logger::error_pending() {
                ctx.backend_log()?;
            }
            let batch = make_batch::<B>(train, ctx.norm, indices, &self.targets, ctx.device);
            let step_lr = learning_rate(s.learning_rate, self.progress.step, s.epochs * s.steps_per_epoch, s.warmup_steps);
            let step_lr = ctx.hooks.learning_rate(&s.spec.run_id, epoch, step_lr);
            let model = self.model.take().expect("a run holds its model between steps");
            let (next, metrics) = train_step(model, &mut self.optim, batch, s.objective, step_lr);
            self.model = Some(next);
            tally.add(metrics, indices.len());
            self.progress.step += 1;
            if self.progress.step.is_multiple_of(s.log_every) {
                let Some(read) = self.read(ctx, s, &mut tally, epoch) else { return Ok(Steps::Ended(RunStatus::Diverged)) };
                self.partial.add(&read);
                window.add(&read);
                ctx.send(window.event(&s.spec.run_id, epoch, self.progress.step));
                window = Window::new();
            }
        }
        let Some(read) = self.read(ctx, s, &mut tally, epoch) else { return Ok(Steps::Ended(RunStatus::Diverged)) };
        self.partial.add(&read);
        Ok(Steps::Done)
    }

    /// The tally's sums, or none when the loss is no longer finite: the run
    /// stops as diverged, its last epoch's checkpoint kept (the model of the
    /// steps since is not saved). The one divergence check of the loop.
    fn read(&self, ctx: &RunContext<B>, s: &RunSettings, tally: &mut Tally<B::InnerBackend>, epoch: usize) -> Option<Read> {
        let read = tally.read();
        if read.loss_sum.is_finite() {
            return Some(read);
        }
        let kept = match epoch {
            1 => "it has no earlier checkpoint".to_string(),
            _ => format!("its checkpoint of epoch {} is kept", epoch - 1),
        };
        let (run_id, loss, step) = (&s.spec.run_id, read.mean_loss(), self.progress.step);
        ctx.log(format!("{run_id}: loss became {loss} in epoch {epoch}, by step {step}; {kept}"));
        None
    }

    /// Stopped between steps: a checkpoint of where it stands, unless it
    /// has taken no step since it was loaded.
    fn save_stopped(&mut self, s: &RunSettings, steps_in_epoch: usize) -> Result<(), TrainError> {
        if self.progress.step > self.loaded_at_step {
            self.partial.seconds += self.epoch_started.elapsed().as_secs_f64();
            self.progress.steps_into_epoch = steps_in_epoch;
            self.progress.partial = std::mem::take(&mut self.partial);
            self.progress.wall_seconds = self.wall_before + self.started.elapsed().as_secs_f64();
            let optim = encode::<B, _>(self.optim.to_record());
            s.store.save(&self.progress, &encode::<B, _>(self.model().clone().into_record()), Some(&optim))?;
        }
        Ok(())
    }

    /// One pass over the whole test set gives the epoch's accuracy and
    /// diagnostics; the epoch's metrics are told and checkpointed.
    fn evaluate(&mut self, ctx: &RunContext<B>, s: &RunSettings, epoch: usize) -> Result<(), TrainError> {
        let test = &ctx.data.test;
        let logits = predict(&self.model().valid(), test, ctx.norm, s.eval_batch_size, ctx.device);
        let (test_loss, test_accuracy) = score(&logits, &test.labels);
        let diagnostics = diagnostics::diagnose(&logits, &test.labels, CLASSES, s.teacher_test, s.spec.temperature);
        ctx.backend_log()?;
        let partial = std::mem::take(&mut self.partial);
        let seconds = partial.seconds + self.epoch_started.elapsed().as_secs_f64();
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
        ctx.send(TrainEvent::EpochFinished { run_id: s.spec.run_id.clone(), metrics: metrics.clone() });
        let progress = &mut self.progress;
        progress.history.push(metrics);
        progress.epochs_done = epoch;
        progress.steps_into_epoch = 0;
        progress.wall_seconds = self.wall_before + self.started.elapsed().as_secs_f64();
        // The last epoch's checkpoint is the trained model: no optimizer state.
        let optim_bytes = (epoch < s.epochs).then(|| encode::<B, _>(self.optim.to_record()));
        s.store.save(&self.progress, &encode::<B, _>(self.model().clone().into_record()), optim_bytes.as_deref())?;
        Ok(())
    }

    /// The run's result (kept with its checkpoint unless it was stopped) and,
    /// when it is done, its model file.
    fn finish(mut self, ctx: &RunContext<B>, s: &RunSettings, status: RunStatus) -> Result<Trained<B>, TrainError> {
        let spec = s.spec;
        let model = self.model.take().expect("a run holds its model between steps");
        let history = self.progress.history;
        let last = history.last();
        let deployment = (status == RunStatus::Done)
            .then(|| deploy::measure(&model.valid(), &s.shape, &ctx.data.test, ctx.norm, s.eval_batch_size, ctx.device));
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
            model_bytes: model_bytes(&s.shape),
            wall_seconds: self.wall_before + self.started.elapsed().as_secs_f64(),
            reused: false,
            device: ctx.device_name.to_string(),
            history,
            deployment,
        };
        if status != RunStatus::Interrupted {
            s.store.save_result(&result)?;
        }
        if status == RunStatus::Done {
            ctx.models.write(spec, &model.valid(), &s.shape, ctx.norm)?;
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
