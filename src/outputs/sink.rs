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
use crate::util::atomic_file::WriteError;

/// The files written from the event stream as it arrives, beside the
/// results files: TensorBoard's and the per-run metric files.
pub struct EventFiles {
    tensorboard: Recorder,
    runlog: RunLog,
}

impl EventFiles {
    pub fn new(out: &Path) -> Self {
        Self { tensorboard: Recorder::new(out.join(TENSORBOARD_DIR)), runlog: RunLog::new(out.to_path_buf()) }
    }

    /// Lines for the log: what could not be written where training can go
    /// on without it. A full disk is an error: every later write there
    /// (checkpoints, results) would fail too, so the plan stops now and
    /// resumes once there is room.
    pub fn on_event(&mut self, event: &TrainEvent) -> Result<Vec<String>, WriteError> {
        let tensorboard = self.tensorboard.on_event(event).map_err(|e| (e, "TensorBoard files", "training goes on without them"));
        let runlog = self.runlog.on_event(event).map_err(|e| (e, "metric files", "training goes on, kdtui watch will not see it"));
        let mut warnings = vec![];
        for (e, what, consequence) in [tensorboard, runlog].into_iter().filter_map(Result::err) {
            if e.is_disk_full() {
                return Err(e);
            }
            warnings.push(format!("{what} cannot be written ({e}); {consequence}"));
        }
        Ok(warnings)
    }
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
    pub fn new(out: &Path, results: Results) -> Self {
        Self { out: out.to_path_buf(), files: EventFiles::new(out), results, written: Written::default(), unwritten: false }
    }

    pub fn results(&self) -> &Results {
        &self.results
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
