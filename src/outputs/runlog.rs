//! Per-run metric files, `<results>/metrics/<run_id>.jsonl`: what `kdtui
//! watch` follows to show a study that runs in other processes (the shards
//! of a Slurm array) or that has ended.
//!
//! One JSON object per line, appended as the run's events arrive: `started`
//! (with the epochs a resumed run had already done), `step` (every
//! `log_every` steps), `epoch`, then `finished` or `failed`; and, while the
//! run trains, a `heartbeat` every `[watch] heartbeat_seconds` (with the
//! time and the writer's `lost_after_seconds`), so that a reader can tell a
//! writer that died from a slow one. A line is one `write` call and the file
//! is synced at every epoch's end and every heartbeat. A run that
//! starts again (resumed after a stop, a kill or a Slurm requeue) appends a
//! new `started` whose history replaces what the reader had: epochs logged
//! after the last checkpoint and trained again are not counted twice.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::directory::METRICS_DIR;
use crate::protocol::event::nan_from_null;
use crate::protocol::{EpochMetrics, RunResult, TrainEvent};
use crate::study::WatchConfig;
use crate::util::atomic_file::{append_whole, WriteError};

const EXTENSION: &str = "jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Entry {
    Started {
        epochs: usize,
        steps_per_epoch: usize,
        step: usize,
        history: Vec<EpochMetrics>,
        /// Where it runs: host and process, for a person reading the file.
        host: String,
        pid: u32,
        /// When (Unix seconds); 0 in files of kdtui versions without heartbeats.
        #[serde(default)]
        at: f64,
        #[serde(default)]
        lost_after: f64,
    },
    /// The writer was alive at `at` (Unix seconds); a reader may call the
    /// run lost when no line comes for `lost_after` seconds.
    Heartbeat {
        at: f64,
        lost_after: f64,
    },
    Step {
        epoch: usize,
        step: usize,
        #[serde(deserialize_with = "nan_from_null")]
        loss: f64,
        #[serde(deserialize_with = "nan_from_null")]
        accuracy: f64,
        #[serde(deserialize_with = "nan_from_null")]
        images_per_sec: f64,
    },
    Epoch {
        metrics: EpochMetrics,
    },
    Finished {
        result: RunResult,
    },
    Failed {
        error: String,
    },
}

impl Entry {
    /// The trainer events this line stands for (a start with its time is
    /// also a heartbeat).
    pub fn into_events(self, run_id: String) -> Vec<TrainEvent> {
        let event = match self {
            Entry::Started { epochs, steps_per_epoch, step, history, at, lost_after, .. } => {
                let started = TrainEvent::RunStarted { run_id: run_id.clone(), epochs, steps_per_epoch, step, history };
                if at > 0.0 {
                    return vec![started, TrainEvent::Heartbeat { run_id, at, lost_after }];
                }
                return vec![started];
            }
            Entry::Heartbeat { at, lost_after } => TrainEvent::Heartbeat { run_id, at, lost_after },
            Entry::Step { epoch, step, loss, accuracy, images_per_sec } => TrainEvent::Step {
                run_id,
                epoch,
                step,
                loss: loss as f32,
                accuracy: accuracy as f32,
                images_per_sec: images_per_sec as f32,
            },
            Entry::Epoch { metrics } => TrainEvent::EpochFinished { run_id, metrics },
            Entry::Finished { result } => TrainEvent::RunFinished { result },
            Entry::Failed { error } => TrainEvent::RunFailed { run_id, error },
        };
        vec![event]
    }
}

pub fn path(out: &Path, run_id: &str) -> PathBuf {
    out.join(METRICS_DIR).join(format!("{run_id}.{EXTENSION}"))
}

/// Writes the metric files from the event stream; both consumers (the
/// monitor and `--batch`) feed it every event.
pub struct RunLog {
    out: PathBuf,
    files: HashMap<String, File>,
    failed: bool,
    watch: WatchConfig,
    last_beat: Instant,
}

impl RunLog {
    pub fn new(out: PathBuf) -> Self {
        Self { out, files: HashMap::new(), failed: false, watch: WatchConfig::default(), last_beat: Instant::now() }
    }

    /// Heartbeats as `watch` says (the default: every 30 s, lost after 300).
    pub fn with_watch(mut self, watch: WatchConfig) -> Self {
        self.watch = watch;
        self
    }

    /// Appends a heartbeat to the file of every run under way when one is due.
    pub fn beat(&mut self) -> Result<(), WriteError> {
        if self.failed || self.last_beat.elapsed().as_secs_f64() < self.watch.heartbeat_seconds {
            return Ok(());
        }
        self.last_beat = Instant::now();
        let entry = Entry::Heartbeat { at: crate::util::unix_seconds(), lost_after: self.watch.lost_after_seconds };
        let running: Vec<String> = self.files.keys().cloned().collect();
        let outcome = running.iter().try_for_each(|run_id| self.append(run_id, &entry, true));
        self.settle(outcome)
    }

    /// Handles one event. After the first failure (returned: the caller
    /// decides whether the plan can go on) the metric files are left alone.
    pub fn on_event(&mut self, event: &TrainEvent) -> Result<(), WriteError> {
        if self.failed {
            return Ok(());
        }
        let outcome = self.handle(event);
        self.settle(outcome)
    }

    /// A failure ends the metric files of this session.
    fn settle(&mut self, outcome: Result<(), (String, std::io::Error)>) -> Result<(), WriteError> {
        outcome.map_err(|(run_id, source)| {
            self.failed = true;
            self.files.clear();
            WriteError { path: path(&self.out, &run_id), source }
        })
    }

    /// The run whose file failed, and why.
    fn handle(&mut self, event: &TrainEvent) -> Result<(), (String, std::io::Error)> {
        match event {
            TrainEvent::RunStarted { run_id, epochs, steps_per_epoch, step, history } => {
                let path = path(&self.out, run_id);
                // A run finished in an earlier session is replayed with no
                // steps: its file already tells it, unless this results
                // directory is new to it.
                let replay = *steps_per_epoch == 0; // see `TrainEvent::replay`
                if replay && path.exists() {
                    return Ok(());
                }
                let file = open_for_append(&path).map_err(run(run_id))?;
                self.files.insert(run_id.clone(), file);
                self.append(
                    run_id,
                    &Entry::Started {
                        epochs: *epochs,
                        steps_per_epoch: *steps_per_epoch,
                        step: *step,
                        history: history.clone(),
                        host: crate::util::atomic_file::host(),
                        pid: std::process::id(),
                        at: crate::util::unix_seconds(),
                        lost_after: self.watch.lost_after_seconds,
                    },
                    true,
                )?;
            }
            TrainEvent::Step { run_id, epoch, step, loss, accuracy, images_per_sec } => {
                let entry = Entry::Step {
                    epoch: *epoch,
                    step: *step,
                    loss: f64::from(*loss),
                    accuracy: f64::from(*accuracy),
                    images_per_sec: f64::from(*images_per_sec),
                };
                self.append(run_id, &entry, false)?;
            }
            TrainEvent::EpochFinished { run_id, metrics } => {
                self.append(run_id, &Entry::Epoch { metrics: metrics.clone() }, true)?;
            }
            TrainEvent::RunFinished { result } => {
                self.append(&result.run_id, &Entry::Finished { result: result.clone() }, true)?;
                self.files.remove(&result.run_id);
            }
            TrainEvent::RunFailed { run_id, error } => {
                // A run can fail before it starts (no teacher): its file begins here.
                if !self.files.contains_key(run_id) {
                    let file = open_for_append(&path(&self.out, run_id)).map_err(run(run_id))?;
                    self.files.insert(run_id.clone(), file);
                }
                self.append(run_id, &Entry::Failed { error: error.clone() }, true)?;
                self.files.remove(run_id);
            }
            _ => {}
        }
        Ok(())
    }

    /// Appends one line, all or nothing (`atomic_file::append_whole`).
    fn append(&mut self, run_id: &str, entry: &Entry, sync: bool) -> Result<(), (String, std::io::Error)> {
        let Some(file) = self.files.get_mut(run_id) else { return Ok(()) };
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other).map_err(run(run_id))?;
        line.push(b'\n');
        append_whole(file, &path(&self.out, run_id), &line, sync).map_err(run(run_id))
    }
}

/// An error with the run whose file it concerns.
fn run(id: &str) -> impl FnOnce(std::io::Error) -> (String, std::io::Error) + '_ {
    move |e| (id.to_string(), e)
}

/// Opens for appending; a last line torn by a killed writer is ended first,
/// so the next entry starts a line of its own.
fn open_for_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).read(true).open(path)?;
    let len = file.metadata()?.len();
    if len > 0 {
        let mut last = [0u8];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(file)
}

/// Reads the metric files of a results directory as they grow.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    files: HashMap<String, Tail>,
}

#[derive(Debug, Default)]
struct Tail {
    offset: u64,
    /// Bytes after the last newline: a line still being written.
    partial: Vec<u8>,
    line: usize,
}

impl Follower {
    pub fn new(out: &Path) -> Self {
        Self { dir: out.join(METRICS_DIR), files: HashMap::new() }
    }

    /// The run ids that have a metric file.
    pub fn runs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return vec![] };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(&format!(".{EXTENSION}")).map(str::to_string)
            })
            .collect();
        ids.sort();
        ids
    }

    /// Every whole line appended since the last call, as events, and a
    /// note for each line that does not parse (skipped).
    pub fn poll(&mut self) -> Vec<TrainEvent> {
        let mut events = vec![];
        for run_id in self.runs() {
            let path = self.dir.join(format!("{run_id}.{EXTENSION}"));
            let tail = self.files.entry(run_id.clone()).or_default();
            let Ok(mut file) = File::open(&path) else { continue };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len < tail.offset {
                // Replaced (the directory was set aside and a study started over).
                *tail = Tail::default();
            }
            if len == tail.offset || file.seek(SeekFrom::Start(tail.offset)).is_err() {
                continue;
            }
            let mut fresh = vec![];
            let Ok(n) = file.take(len - tail.offset).read_to_end(&mut fresh) else { continue };
            tail.offset += n as u64;
            tail.partial.extend_from_slice(&fresh);
            let Some(end) = tail.partial.iter().rposition(|&b| b == b'\n') else { continue };
            let whole: Vec<u8> = tail.partial.drain(..=end).collect();
            for line in whole.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                tail.line += 1;
                match serde_json::from_slice::<Entry>(line) {
                    Ok(entry) => events.extend(entry.into_events(run_id.clone())),
                    Err(e) => events.push(TrainEvent::Log {
                        message: format!("{} line {}: skipped, not a metric entry ({e})", path.display(), tail.line),
                    }),
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests;
