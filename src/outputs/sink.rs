//! What both consumers of the event stream (the monitor and `--batch`) do
//! with every event, in one place (`feed`): the study's state updated, the
//! event files written as events arrive (TensorBoard's, the per-run metric
//! files), and the results files rewritten when a run ends. A write that
//! fails is a line in the log, or, for the results, a stop: training on
//! would produce results nobody gets.

use std::path::{Path, PathBuf};

use super::directory::TENSORBOARD_DIR;
use super::publish::{publish_changes, PublishError, Written};
use super::runlog::RunLog;
use super::state::StudyState;
use super::store::Results;
use super::tensorboard::Recorder;
use crate::protocol::{Control, TrainEvent};
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

/// Where a session's results go, and what of them is written.
pub struct Sink {
    out: PathBuf,
    files: EventFiles,
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
    pub fn new(out: &Path, watch: WatchConfig) -> Self {
        Self { out: out.to_path_buf(), files: EventFiles::new(out, watch), written: Written::default(), unwritten: false }
    }

    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Called often (every pass of the consumer's loop, whatever the
    /// trainer is doing): writes the heartbeats when due.
    pub fn tick(&mut self) -> Handled {
        match self.files.beat() {
            Ok(warnings) => Handled { warnings, unwritable: None },
            Err(e) => Handled { warnings: vec![], unwritable: Some(e.into()) },
        }
    }

    /// Feeds the event files.
    fn files(&mut self, event: &TrainEvent) -> Handled {
        match self.files.on_event(event) {
            Ok(warnings) => Handled { warnings, unwritable: None },
            Err(e) => Handled { warnings: vec![], unwritable: Some(PublishError::from(e)) },
        }
    }

    /// Rewrites the results files when `changed` (the event ended a run or
    /// the plan: `StudyState::apply` recorded it).
    fn results(&mut self, changed: bool, results: &mut Results) -> Option<PublishError> {
        if !changed {
            return None;
        }
        self.unwritten = true;
        self.write(results).err()
    }

    /// An event that arrived after the session ended (the stopped run's
    /// result): its files written as far as they can be; `flush` then says
    /// whether the results files could be.
    pub fn late(&mut self, event: &TrainEvent, changed: bool, results: &mut Results) {
        let _ = self.files(event);
        let _ = self.results(changed, results);
    }

    /// Writes the results files when something was recorded since they were
    /// last written (what the trainer said after the plan stopped).
    pub fn flush(&mut self, results: &mut Results) -> Result<(), PublishError> {
        if self.unwritten {
            self.write(results)?;
        }
        Ok(())
    }

    fn write(&mut self, results: &mut Results) -> Result<(), PublishError> {
        publish_changes(results, &self.out, &mut self.written)?;
        self.unwritten = false;
        Ok(())
    }
}

/// What a consumer does after feeding an event or a tick.
#[derive(Debug, Default)]
pub struct Fed {
    /// Event files that could not be written (also in the study's log).
    pub warnings: Vec<String>,
    /// The results files cannot be written: the plan is told to stop (the
    /// study's state says why).
    pub unwritable: Option<PublishError>,
    /// For the trainer: `Stop` when the results cannot be written.
    pub control: Option<Control>,
}

/// One event into the study's state and, for a session that writes, its
/// files: the one place where a write's failure becomes a log line (training
/// goes on) or a stop (results nobody would get).
pub fn feed(study: &mut StudyState, sink: Option<&mut Sink>, event: &TrainEvent) -> Fed {
    let Some(sink) = sink else {
        study.apply(event);
        return Fed::default();
    };
    // The event files first, their warnings in the log before the event's own line.
    let mut handled = sink.files(event);
    for warning in &handled.warnings {
        study.log(warning.clone());
    }
    let changed = study.apply(event);
    handled.unwritable = handled.unwritable.or(sink.results(changed, &mut study.results));
    settle(study, handled, false)
}

/// The heartbeats, when due, handled as `feed` handles an event's files.
pub fn tick(study: &mut StudyState, sink: Option<&mut Sink>) -> Fed {
    let handled = sink.map(Sink::tick).unwrap_or_default();
    settle(study, handled, true)
}

/// `log`: the warnings still go into the study's log.
fn settle(study: &mut StudyState, handled: Handled, log: bool) -> Fed {
    for warning in handled.warnings.iter().filter(|_| log) {
        study.log(warning.clone());
    }
    let control = handled.unwritable.as_ref().and_then(|e| study.on_results_unwritable(e.to_string()));
    Fed { warnings: handled.warnings, unwritable: handled.unwritable, control }
}
