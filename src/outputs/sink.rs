//! What both consumers of the event stream (the monitor and `--batch`) do
//! with every event, in one place: the event files as events arrive
//! (TensorBoard's, the per-run metric files), a row in the results when a
//! run ends, and the results files rewritten then. A write that fails is
//! handed back: the consumer stops the plan (training on would produce
//! results nobody gets).

use std::path::{Path, PathBuf};

use super::directory::TENSORBOARD_DIR;
use super::publish::{publish, PublishError};
use super::runlog::RunLog;
use super::store::Results;
use super::tensorboard::Recorder;
use crate::protocol::TrainEvent;

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

    /// Lines for the log: what could not be written (training goes on).
    pub fn on_event(&mut self, event: &TrainEvent) -> Vec<String> {
        [self.tensorboard.on_event(event), self.runlog.on_event(event)].into_iter().flatten().collect()
    }
}

/// The results of a session and the directory they go to.
pub struct Sink {
    out: PathBuf,
    files: EventFiles,
    results: Results,
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
        Self { out: out.to_path_buf(), files: EventFiles::new(out), results, unwritten: false }
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
        let warnings = self.files.on_event(event);
        match event {
            TrainEvent::RunFinished { result } => self.results.record(result.clone()),
            TrainEvent::RunFailed { run_id, error } => self.results.record_failure(run_id.clone(), error.clone()),
            TrainEvent::PlanFinished { stopped } => self.results.stopped = *stopped,
            _ => return Handled { warnings, unwritable: None },
        }
        self.unwritten = true;
        Handled { warnings, unwritable: self.write().err() }
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
        publish(&mut self.results, &self.out)?;
        self.unwritten = false;
        Ok(())
    }
}
