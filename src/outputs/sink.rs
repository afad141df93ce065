//! What both consumers of the event stream (the monitor and `--batch`) do
//! with every event, in one place: the event files as events arrive
//! (TensorBoard's, the per-run metric files), a row in the results when a
//! run ends, and the results files rewritten then. A write that fails is
//! handed back: the consumer stops the plan (training on would produce
//! results nobody gets).

use std::path::{Path, PathBuf};

use super::directory::TENSORBOARD_DIR;
use super::publish::{publish_changes, PublishError, Written};
use super::runlog::RunLog;
use super::store::Results;
use super::tensorboard::Recorder;
use crate::protocol::TrainEvent;
use crate::study::WatchConfig;
use crate::util::atomic_file::WriteError;

/// The files written from the event stream as it arrives, beside the
/// results files: TensorBoard's and the per-run metric files.
pub struct EventFiles {
    tensorboard: Recorder,
    runlog: RunLog,
}

impl EventFiles {
    pub fn new(out: &Path, watch: WatchConfig) -> Self {
        Self { tensorboard: Recorder::new(out.join(TENSORBOARD_DIR)), runlog: RunLog::new(out.to_path_buf()).with_watch(watch) }
    }

    /// The heartbeats of the runs under way, when due: a full disk is an
    /// error, as in `on_event`.
    pub fn beat(&mut self) -> Result<Vec<String>, WriteError> {
        triage([(self.runlog.beat(), METRICS)])
    }

    /// Lines for the log: what could not be written where training can go
    /// on without it. A full disk is an error: every later write there
    /// (checkpoints, results) would fail too, so the plan stops now and
    /// resumes once there is room.
    pub fn on_event(&mut self, event: &TrainEvent) -> Result<Vec<String>, WriteError> {
        triage([(self.tensorboard.on_event(event), TENSORBOARD), (self.runlog.on_event(event), METRICS)])
    }
}

/// What a kind of event file is, and what its loss costs.
type Kind = (&'static str, &'static str);
const TENSORBOARD: Kind = ("TensorBoard files", "training goes on without them");
const METRICS: Kind = ("metric files", "training goes on, kdtui watch will not see it");

/// The first full disk, as an error; other failures as lines for the log.
fn triage<const N: usize>(outcomes: [(Result<(), WriteError>, Kind); N]) -> Result<Vec<String>, WriteError> {
    let mut warnings = vec![];
    for (outcome, (what, consequence)) in outcomes {
        match outcome {
            Ok(()) => {}
            Err(e) if e.is_disk_full() => return Err(e),
            Err(e) => warnings.push(format!("{what} cannot be written ({e}); {consequence}")),
        }
    }
    Ok(warnings)
}

/// The results of a session and the directory they go to.
pub struct Sink {
    out: PathBuf,
    files: EventFiles,
    results: Results,
    written: Written,
    /// Rows recorded since the files were last written.
    unwritten: bool,
}

/// What handling one event gave.
#[derive(Debug, Default)]
pub struct Handled {
    /// Lines for the log: event files that could not be written.
    pub warnings: Vec<String>,
    /// The results files could not be written: stop the plan.
    pub unwritable: Option<PublishError>,
}

impl Sink {
    /// `watch`: the heartbeats written into the metric files.
    pub fn new(out: &Path, results: Results, watch: WatchConfig) -> Self {
        Self { out: out.to_path_buf(), files: EventFiles::new(out, watch), results, written: Written::default(), unwritten: false }
    }

    pub fn out(&self) -> &Path {
        &self.out
    }

    pub fn results(&self) -> &Results {
        &self.results
    }

    /// Called often (every pass of the consumer's loop, whatever the
    /// trainer is doing): writes the heartbeats when due.
    pub fn tick(&mut self) -> Handled {
        match self.files.beat() {
            Ok(warnings) => Handled { warnings, unwritable: None },
            Err(e) => Handled { warnings: vec![], unwritable: Some(e.into()) },
        }
    }

    pub fn into_results(self) -> Results {
        self.results
    }

    /// Feeds the event files; records a run that ended and rewrites the
    /// results files.
    pub fn handle(&mut self, event: &TrainEvent) -> Handled {
        let (warnings, full) = match self.files.on_event(event) {
            Ok(warnings) => (warnings, None),
            Err(e) => (vec![], Some(PublishError::from(e))),
        };
        match event {
            TrainEvent::RunFinished { result } => self.results.record(result.clone()),
            TrainEvent::RunFailed { run_id, error } => self.results.record_failure(run_id.clone(), error.clone()),
            TrainEvent::PlanFinished { stopped } => self.results.stopped = *stopped,
            _ => return Handled { warnings, unwritable: full },
        }
        self.unwritten = true;
        Handled { warnings, unwritable: full.or(self.write().err()) }
    }

    /// Writes the results files when something was recorded since they were
    /// last written (what the trainer said after the plan stopped).
    pub fn flush(&mut self) -> Result<(), PublishError> {
        if self.unwritten {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> Result<(), PublishError> {
        publish_changes(&mut self.results, &self.out, &mut self.written)?;
        self.unwritten = false;
        Ok(())
    }
}
