//! Runs a plan: the teacher (trained, or loaded from its checkpoint), its
//! cached logits, then every student run, each in its own training loop
//! (`run::train`, given its resolved `RunSettings`). Decides what each run
//! needs, what is reused and what a failure means for the rest of the plan.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;

use burn::module::{AutodiffModule, Module};
use crossbeam_channel::{Receiver, Sender};

use super::checkpoint::{decode, Prior, RunStore};
use super::hooks::Hooks;
use super::model_files::ModelFiles;
use super::run::{self, RunContext, RunSettings, TrainError, Trained};
use crate::engine::data::batcher::Normalizer;
use crate::engine::data::{Data, CLASSES};
use crate::engine::inference::predict;
use crate::engine::logger;
use crate::engine::losses::{self, Objective};
use crate::engine::model::{Cnn, CnnConfig, TrainBackend};
use crate::protocol::{Control, Controls, RunResult, RunStatus, TrainEvent};
use crate::study::{Config, RunKind, RunSpec};

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
    /// Faults a test injects (empty unless built with `test-hooks`).
    pub hooks: Hooks,
}

/// Runs the whole plan on this thread, reporting through `events`.
pub fn run_plan<B: TrainBackend>(input: PlanInput, device: B::Device, events: Sender<TrainEvent>, control: Receiver<Control>) {
    let norm = Normalizer::fit(&input.data.train);
    let _ = events.send(TrainEvent::PlanStarted {
        plan: input.config.plan.name.clone(),
        runs: input.runs.clone(),
        device: input.device_name.clone(),
        data: input.data.description.clone(),
        test_images: input.data.test.len(),
    });
    for note in input.notes.iter().chain(&input.data.notes) {
        let _ = events.send(TrainEvent::Log { message: note.clone() });
    }
    let models = ModelFiles::new(input.models.clone());
    let mut plan = PlanRunner::<B> { controls: Controls::new(control, events.clone()), input: &input, norm, device, events, models };
    let stopped = match plan.run_all() {
        Ok(stopped) => stopped,
        Err(error) => {
            let _ = plan.events.send(TrainEvent::Fatal { error });
            true
        }
    };
    let _ = plan.events.send(TrainEvent::PlanFinished { stopped });
}

/// A plan on its way through its runs (the training thread's state).
struct PlanRunner<'a, B: TrainBackend> {
    input: &'a PlanInput,
    norm: Normalizer,
    device: B::Device,
    events: Sender<TrainEvent>,
    controls: Controls,
    models: ModelFiles,
}

/// What the students need of a finished teacher: its logits over the
/// training set (the soft targets; only when a loss needs them) and over the
/// test set (agreement and KL).
struct TeacherLogits {
    train: Option<Vec<f32>>,
    test: Vec<f32>,
}

/// Why a run did not produce a result.
enum RunError {
    /// Its own fault: the plan goes on without it.
    Failed(String),
    /// The plan cannot go on (its checkpoints cannot be written).
    Fatal(String),
}

impl<B: TrainBackend> PlanRunner<'_, B> {
    fn log(&self, message: impl Into<String>) {
        let _ = self.events.send(TrainEvent::Log { message: message.into() });
    }

    fn fail(&self, run_id: &str, error: impl Into<String>) {
        let _ = self.events.send(TrainEvent::RunFailed { run_id: run_id.to_string(), error: error.into() });
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
        let digest = &self.input.data.digest;
        let stores: Vec<RunStore> = runs.iter().map(|spec| RunStore::new(config, digest, spec)).collect();
        let mut priors = self.survey(&stores)?.into_iter();
        if !runs.iter().any(|r| r.kind == RunKind::Teacher) {
            return Ok(false);
        }
        // The study's, not the selection's: a teacher-only session (the
        // teacher job of a Slurm study) leaves the cache its shards read.
        let need_logits = config.plan.losses.iter().any(|l| l.needs_teacher());
        let mut teacher_logits: Option<TeacherLogits> = None;
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
                if result.status == RunStatus::Done && self.models.missing(spec) {
                    let shape = CnnConfig::student(config);
                    match self.load_model(&shape, store) {
                        Some(model) => self.models.write(spec, &model, &shape, &self.norm).map_err(|e| e.to_string())?,
                        None => self.log(format!("{}: its checkpoint does not load; no model file written", spec.run_id)),
                    }
                }
                self.replay(result);
                continue;
            }
            let soft = match (spec.loss.needs_teacher(), teacher_logits.as_ref().and_then(|t| t.train.as_deref())) {
                (false, _) => None,
                (true, Some(logits)) => Some(losses::teacher_targets(&Objective::of(config, spec.loss, spec.temperature), logits, CLASSES)),
                (true, None) => {
                    self.fail(&spec.run_id, format!("no teacher: {no_teacher}, so there are no soft targets"));
                    continue;
                }
            };
            let student = (CnnConfig::student(config), config.student.epochs, config.student.learning_rate);
            let teacher_test = teacher_logits.as_ref().map(|t| t.test.as_slice());
            let settings = RunSettings::resolve(config, spec, student, self.input.data.train.len(), soft.as_deref(), teacher_test, store);
            match self.train_caught(&settings) {
                Ok(trained) => {
                    let _ = self.events.send(TrainEvent::RunFinished { result: trained.result });
                }
                Err(RunError::Failed(e)) => self.fail(&spec.run_id, e),
                Err(RunError::Fatal(e)) => return Err(e),
            }
        }
        Ok(self.controls.stopped())
    }

    /// `run::train`, with a panic turned into a failed run.
    fn train_caught(&mut self, settings: &RunSettings) -> Result<Trained<B>, RunError> {
        let spec = settings.spec;
        let context = RunContext {
            data: &self.input.data,
            norm: &self.norm,
            device: &self.device,
            device_name: &self.input.device_name,
            events: &self.events,
            models: &self.models,
            hooks: &self.input.hooks,
        };
        let controls = &mut self.controls;
        match catch_unwind(AssertUnwindSafe(|| run::train(&context, controls, settings))) {
            Ok(Ok(trained)) => Ok(trained),
            Ok(Err(TrainError::Write(e))) => {
                Err(RunError::Fatal(format!("{}: cannot save its checkpoint or model file: {e}", spec.run_id)))
            }
            Ok(Err(TrainError::Device(e))) => Err(RunError::Failed(format!("the device reported an error: {e}"))),
            Ok(Err(TrainError::DeviceLost(lost))) => Err(device_lost(&spec.run_id, &lost)),
            Err(panic) => {
                let panic = crate::util::panic_message(&*panic);
                // The training thread often panics only because a backend
                // thread did first ("the server is down"): name that cause.
                let lost: Vec<String> = logger::drain().into_iter().filter(|r| r.device_lost).map(|r| r.text).collect();
                match lost.first() {
                    None => Err(RunError::Failed(format!("training panicked: {panic}"))),
                    Some(_) => Err(device_lost(&spec.run_id, &lost)),
                }
            }
        }
    }

    /// Trains the teacher, or resumes it, or loads it when it has finished;
    /// returns its logits over the test set, and over the training set when
    /// `need_logits` (both cached in its checkpoint folder).
    fn teacher(&mut self, spec: &RunSpec, store: &RunStore, prior: Prior, need_logits: bool) -> Result<Option<TeacherLogits>, RunError> {
        let config = &self.input.config;
        let shape = CnnConfig::teacher(config);
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
                if self.models.missing(spec) {
                    self.models.write(spec, &model, &shape, &self.norm).map_err(|e| RunError::Fatal(e.to_string()))?;
                }
                self.replay(result);
                model
            }
            None => {
                let teacher = (shape.clone(), config.teacher.epochs, config.teacher.learning_rate);
                let settings = RunSettings::resolve(config, spec, teacher, self.input.data.train.len(), None, None, store);
                let trained = self.train_caught(&settings)?;
                let status = trained.result.status;
                let _ = self.events.send(TrainEvent::RunFinished { result: trained.result });
                match status {
                    RunStatus::Done => trained.model.valid(),
                    RunStatus::Interrupted | RunStatus::Diverged => return Ok(None),
                }
            }
        };
        let test_set = &self.input.data.test;
        let test = match store.load_test_logits(test_set.len()) {
            Some(logits) => logits,
            None => {
                let logits = predict(&teacher, test_set, &self.norm, config.train.eval_batch_size, &self.device);
                store.save_test_logits(&logits).map_err(|e| RunError::Fatal(format!("teacher test logits: {e}")))?;
                logits
            }
        };
        if !need_logits {
            return Ok(Some(TeacherLogits { train: None, test }));
        }
        let train = &self.input.data.train;
        if let Some(logits) = store.load_logits(train.len()) {
            self.log("teacher logits read from the cache");
            return Ok(Some(TeacherLogits { train: Some(logits), test }));
        }
        let started = Instant::now();
        let logits = predict(&teacher, train, &self.norm, config.train.eval_batch_size, &self.device);
        store.save_logits(&logits).map_err(|e| RunError::Fatal(format!("teacher logits: {e}")))?;
        self.log(format!(
            "teacher logits over {} training images computed in {:.1} s and cached",
            train.len(),
            started.elapsed().as_secs_f64()
        ));
        Ok(Some(TeacherLogits { train: Some(logits), test }))
    }

    /// The model of a run's checkpoint, in inference mode.
    fn load_model(&self, shape: &CnnConfig, store: &RunStore) -> Option<Cnn<B::InnerBackend>> {
        let saved = store.load()?;
        let record: <Cnn<B> as Module<B>>::Record = decode::<B, _>(saved.model, &self.device)?;
        Some(shape.init::<B>(&self.device).load_record(record).valid())
    }
}

/// A backend thread panicked while `run_id` trained: cubecl's device server
/// is down for the rest of the process, so every later run would fail too.
/// The first panic is the cause; the others follow from it.
fn device_lost(run_id: &str, panics: &[String]) -> RunError {
    let first = panics.first().map_or("", |p| p.as_str()).replace(" No backtrace available", "");
    let more = match panics.len() {
        0 | 1 => String::new(),
        n => format!(" ({} more panics followed)", n - 1),
    };
    RunError::Fatal(format!(
        "{run_id}: the GPU backend failed: {first}{more}. Its device cannot be used again in this process: the plan stops \
         (finished runs and checkpoints are kept; run kdtui again to go on)"
    ))
}
