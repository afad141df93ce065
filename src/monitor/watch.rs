//! `kdtui watch <results dir>`: the monitor over a study that trains in other
//! processes (the shards of a Slurm array, a `--batch` session elsewhere) or
//! that has ended. A thread reads the directory, never writes it, and sends
//! the same `TrainEvent`s a trainer would: the plan from results.json, then
//! every line of the per-run metric files (`runlog`) as they grow.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::outputs::runlog::Follower;
use crate::outputs::Results;
use crate::protocol::{Control, EventSource, TrainEvent};
use crate::study::RunSpec;

/// How often the metric files are read.
const POLL: Duration = Duration::from_millis(250);
/// How often results.json is read again (a new study in the same directory).
const RELOAD: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{0} is not a directory; kdtui watch takes the results directory of a study (its [plan] out or --out, `results` by default)")]
    NotADirectory(PathBuf),
    #[error("cannot start the thread that reads {0}: {1}")]
    Thread(PathBuf, std::io::Error),
}

/// Starts the reader; stops when sent `Control::Stop` or when the receiver goes.
pub fn spawn(dir: PathBuf) -> Result<EventSource, WatchError> {
    if !dir.is_dir() {
        return Err(WatchError::NotADirectory(dir));
    }
    let (events_tx, events) = crossbeam_channel::unbounded();
    let (control, control_rx) = crossbeam_channel::unbounded();
    let name = dir.clone();
    let thread = std::thread::Builder::new()
        .name("kdtui-watch".into())
        .spawn(move || {
            let mut reader = Reader::new(dir);
            loop {
                // A round's events go together: the screen never shows the
                // plan without the runs' progress read in the same round.
                for event in reader.step() {
                    if events_tx.send(event).is_err() {
                        return;
                    }
                }
                match control_rx.recv_timeout(POLL) {
                    Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                }
            }
        })
        .map_err(|e| WatchError::Thread(name, e))?;
    Ok(EventSource { events, control, thread })
}

/// The study a results directory holds, read step by step.
struct Reader {
    dir: PathBuf,
    study: Option<String>,
    follower: Follower,
    last_load: Option<Instant>,
    said_waiting: bool,
}

impl Reader {
    fn new(dir: PathBuf) -> Self {
        Self { follower: Follower::new(&dir), dir, study: None, last_load: None, said_waiting: false }
    }

    /// One round: (re)read results.json when due, then the metric files.
    fn step(&mut self) -> Vec<TrainEvent> {
        let mut events = vec![];
        if self.last_load.is_none_or(|t| t.elapsed() >= RELOAD) || self.study.is_none() {
            self.last_load = Some(Instant::now());
            match Results::load(&self.dir) {
                Some(results) if self.study.as_deref() != Some(&results.study_hash) => {
                    if self.study.is_some() {
                        events.push(TrainEvent::Log { message: format!("another study started in {}; showing it", self.dir.display()) });
                    }
                    self.study = Some(results.study_hash.clone());
                    self.follower = Follower::new(&self.dir);
                    events.extend(opening(&self.dir, results, &self.follower.runs()));
                }
                Some(_) => {}
                None if self.study.is_none() && !self.said_waiting => {
                    self.said_waiting = true;
                    events.push(TrainEvent::Log {
                        message: format!(
                            "waiting for {}: no study has written there yet (a Slurm study starts with its teacher job)",
                            self.dir.join("results.json").display()
                        ),
                    });
                }
                None => {}
            }
        }
        if self.study.is_some() {
            events.extend(self.follower.poll());
        }
        events
    }
}

/// The plan and what results.json holds for runs without a metric file
/// (results written before metric files existed).
fn opening(dir: &Path, results: Results, with_files: &[String]) -> Vec<TrainEvent> {
    let runs: Vec<RunSpec> = if results.planned.is_empty() {
        results
            .runs
            .iter()
            .map(|r| RunSpec { run_id: r.run_id.clone(), kind: r.kind, loss: r.loss, temperature: r.temperature, seed: r.seed })
            .collect()
    } else {
        results.planned.clone()
    };
    let mut events = vec![
        TrainEvent::PlanStarted {
            plan: results.plan.clone(),
            runs,
            device: results.device.clone(),
            data: results.data.clone(),
            test_images: results.test_images,
        },
        TrainEvent::Log {
            message: format!(
                "watching {} (read-only): {} runs recorded, {} with metric files",
                dir.display(),
                results.runs.len(),
                with_files.len()
            ),
        },
    ];
    let has_file = |id: &str| with_files.iter().any(|f| f == id);
    for result in results.runs.into_iter().filter(|r| !has_file(&r.run_id)) {
        events.extend(TrainEvent::replay(result));
    }
    for failure in results.failures.into_iter().filter(|f| !has_file(&f.run_id)) {
        events.push(TrainEvent::RunFailed { run_id: failure.run_id, error: failure.error });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::publish;
    use crate::outputs::runlog::RunLog;

    /// Events until `pred` holds for one, within a few seconds.
    fn wait_for(source: &EventSource, pred: impl Fn(&TrainEvent) -> bool) -> Vec<TrainEvent> {
        let mut seen = vec![];
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(event) = source.events.recv_timeout(Duration::from_millis(100)) {
                let hit = pred(&event);
                seen.push(event);
                if hit {
                    return seen;
                }
            }
        }
        panic!("not seen in 10 s; got {seen:?}");
    }

    #[test]
    fn follows_a_directory_that_another_process_writes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_path_buf();
        let source = spawn(out.clone()).unwrap();
        let seen = wait_for(&source, |e| matches!(e, TrainEvent::Log { .. }));
        assert!(matches!(&seen[0], TrainEvent::Log { message } if message.contains("waiting for")));

        let mut config = crate::study::Config::default();
        config.plan.seeds = vec![1];
        let mut results = Results {
            plan: "study".into(),
            study_hash: "aaaa".into(),
            planned: crate::study::plan::full_plan(&config),
            ..Results::default()
        };
        publish(&mut results, &out).unwrap();
        let seen = wait_for(&source, |e| matches!(e, TrainEvent::PlanStarted { .. }));
        assert!(matches!(seen.last(), Some(TrainEvent::PlanStarted { runs, .. }) if runs.len() == 17));

        let started = TrainEvent::RunStarted { run_id: "baseline-s1".into(), epochs: 2, steps_per_epoch: 10, step: 0, history: vec![] };
        RunLog::new(out.clone()).on_event(&started).unwrap();
        let seen = wait_for(&source, |e| matches!(e, TrainEvent::RunStarted { .. }));
        assert_eq!(seen.last(), Some(&started));

        // Another study in the same directory: shown from its start.
        results.study_hash = "bbbb".into();
        results.plan = "other".into();
        std::fs::remove_file(out.join("results.json")).unwrap();
        publish(&mut results, &out).unwrap();
        let seen = wait_for(&source, |e| matches!(e, TrainEvent::PlanStarted { plan, .. } if plan == "other"));
        assert!(seen.iter().any(|e| matches!(e, TrainEvent::Log { message } if message.contains("another study"))));

        source.control.send(Control::Stop).unwrap();
        source.thread.join().unwrap();
    }

    #[test]
    fn a_missing_directory_is_refused() {
        let e = spawn("/nonexistent/results".into()).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/results is not a directory"), "{e}");
    }
}
