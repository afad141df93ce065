//! The results of a plan and the files they are written to: `results.json`,
//! `results.csv`, `runs/<run_id>.csv` (per-epoch metrics) and `report.md`.
//! Every file is rewritten atomically as each run finishes, so quitting or a
//! crash never loses a finished run.
//!
//! Several processes may write one results directory (the shards of a Slurm
//! array): each writes under an exclusive lock on `<dir>/.kdtui.lock` and
//! first merges what the others recorded (every run it did not record itself
//! is taken from results.json on disk), so the last writer's files hold every
//! run, each once.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic_file::{self, WriteError};
use crate::distill::Loss;
use crate::report;
use crate::train::{RunKind, RunResult, RunSpec, RunStatus};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Results {
    pub plan: String,
    pub data: String,
    pub test_images: usize,
    pub device: String,
    /// The config that produced the results, verbatim.
    pub config: String,
    /// `Config::study_hash` of that config: a later session with the same
    /// hash continues these results.
    #[serde(default)]
    pub study_hash: String,
    /// Every run of the study has a result (a row, not a failure).
    pub finished: bool,
    /// The last session that wrote these files was stopped before its end.
    pub stopped: bool,
    /// Every run of the study (the config's whole plan) in plan order: the
    /// order of the table, and what `finished` is measured against.
    #[serde(default)]
    pub planned: Vec<RunSpec>,
    pub runs: Vec<RunResult>,
    pub failures: Vec<Failure>,
    /// Runs this session recorded (a row or a failure): in a directory other
    /// processes write too, these are ours and the rest are theirs.
    #[serde(skip)]
    pub own: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub run_id: String,
    pub error: String,
}

/// One (kind, loss, temperature) cell over its seeds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Group {
    pub kind: RunKind,
    pub loss: Loss,
    pub temperature: Option<f64>,
    pub seeds: usize,
    pub mean_final: f64,
    /// Sample standard deviation (n - 1); 0 for a single seed.
    pub std_final: f64,
    pub mean_best: f64,
    pub model_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Report(#[from] report::ReportError),
    #[error("cannot format {path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("cannot lock {path} (it serialises the writers of a shared results directory): {source}")]
    Lock { path: PathBuf, source: std::io::Error },
}

/// Held while a process reads and rewrites a results directory.
pub const LOCK_FILE: &str = ".kdtui.lock";

/// Waits for the exclusive lock on `dir` (flock; on NFS the client maps it to
/// a POSIX lock, which NFSv4 and lockd share between nodes). Released when
/// the returned file is dropped.
pub fn lock(dir: &Path) -> Result<File, ResultsError> {
    let path = dir.join(LOCK_FILE);
    let err = |source| ResultsError::Lock { path: path.clone(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(err)?;
    file.lock().map_err(err)?;
    Ok(file)
}

pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

type GroupKey = (RunKind, Loss, Option<u64>);

fn key(r: &RunResult) -> GroupKey {
    (r.kind, r.loss, r.temperature.map(f64::to_bits))
}

impl Results {
    /// Completed runs only: interrupted and diverged runs are listed but not averaged.
    pub fn groups(&self) -> Vec<Group> {
        let mut by_key: BTreeMap<GroupKey, Vec<&RunResult>> = BTreeMap::new();
        for r in self.runs.iter().filter(|r| r.status == RunStatus::Done) {
            by_key.entry(key(r)).or_default().push(r);
        }
        by_key
            .into_values()
            .map(|runs| {
                let finals: Vec<f64> = runs.iter().map(|r| r.final_test_accuracy).collect();
                let bests: Vec<f64> = runs.iter().map(|r| r.best_test_accuracy).collect();
                let (mean_final, std_final) = mean_std(&finals);
                Group {
                    kind: runs[0].kind,
                    loss: runs[0].loss,
                    temperature: runs[0].temperature,
                    seeds: runs.len(),
                    mean_final,
                    std_final,
                    mean_best: mean_std(&bests).0,
                    model_bytes: runs[0].model_bytes,
                }
            })
            .collect()
    }

    pub fn group_of(&self, r: &RunResult) -> Option<Group> {
        self.groups().into_iter().find(|g| (g.kind, g.loss, g.temperature.map(f64::to_bits)) == key(r))
    }

    /// Records a finished run, replacing an earlier row of the same run.
    pub fn record(&mut self, result: RunResult) {
        self.own.insert(result.run_id.clone());
        self.failures.retain(|f| f.run_id != result.run_id);
        match self.runs.iter_mut().find(|r| r.run_id == result.run_id) {
            Some(slot) => *slot = result,
            None => self.runs.push(result),
        }
    }

    pub fn record_failure(&mut self, run_id: String, error: String) {
        self.own.insert(run_id.clone());
        self.failures.retain(|f| f.run_id != run_id);
        self.failures.push(Failure { run_id, error });
    }

    pub fn to_csv(&self) -> Result<String, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "run_id",
            "kind",
            "loss",
            "temperature",
            "seed",
            "status",
            "epochs",
            "final_test_accuracy",
            "best_test_accuracy",
            "final_train_loss",
            "model_bytes",
            "wall_seconds",
            "group_seeds",
            "group_mean_final_test_accuracy",
            "group_std_final_test_accuracy",
        ])?;
        for r in &self.runs {
            let g = self.group_of(r);
            w.write_record([
                r.run_id.clone(),
                format!("{:?}", r.kind).to_lowercase(),
                r.loss.name().to_string(),
                r.temperature.map(|t| t.to_string()).unwrap_or_default(),
                r.seed.to_string(),
                format!("{:?}", r.status).to_lowercase(),
                r.epochs.to_string(),
                format!("{:.6}", r.final_test_accuracy),
                format!("{:.6}", r.best_test_accuracy),
                format!("{:.6}", r.final_train_loss),
                r.model_bytes.to_string(),
                format!("{:.2}", r.wall_seconds),
                g.as_ref().map(|g| g.seeds.to_string()).unwrap_or_default(),
                g.as_ref().map(|g| format!("{:.6}", g.mean_final)).unwrap_or_default(),
                g.as_ref().map(|g| format!("{:.6}", g.std_final)).unwrap_or_default(),
            ])?;
        }
        let bytes = w.into_inner().map_err(|e| e.into_error())?;
        Ok(String::from_utf8(bytes).expect("csv of utf-8 fields"))
    }

    fn run_csv(r: &RunResult) -> Result<String, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds", "images_per_sec"])?;
        for m in &r.history {
            w.write_record([
                m.epoch.to_string(),
                format!("{:.6}", m.train_loss),
                format!("{:.6}", m.train_accuracy),
                format!("{:.6}", m.test_loss),
                format!("{:.6}", m.test_accuracy),
                format!("{:.3}", m.seconds),
                format!("{:.1}", m.images_per_sec),
            ])?;
        }
        let bytes = w.into_inner().map_err(|e| e.into_error())?;
        Ok(String::from_utf8(bytes).expect("csv of utf-8 fields"))
    }

    /// Takes what other writers of `disk` (the same study) recorded for the
    /// runs this session has not: their rows and failures replace ours.
    fn merge(&mut self, disk: Results) {
        if disk.study_hash != self.study_hash {
            return;
        }
        let theirs: BTreeSet<String> = disk
            .runs
            .iter()
            .map(|r| &r.run_id)
            .chain(disk.failures.iter().map(|f| &f.run_id))
            .filter(|id| !self.own.contains(*id))
            .cloned()
            .collect();
        self.runs.retain(|r| !theirs.contains(&r.run_id));
        self.failures.retain(|f| !theirs.contains(&f.run_id));
        self.runs.extend(disk.runs.into_iter().filter(|r| theirs.contains(&r.run_id)));
        self.failures.extend(disk.failures.into_iter().filter(|f| theirs.contains(&f.run_id)));
    }

    /// Rows in plan order (whoever finished first), and `finished` from them.
    fn settle(&mut self) {
        let planned = &self.planned;
        let position = |id: &str| planned.iter().position(|p| p.run_id == id).unwrap_or(usize::MAX);
        self.runs.sort_by_key(|r| position(&r.run_id));
        self.failures.sort_by_key(|f| position(&f.run_id));
        self.finished = !self.planned.is_empty()
            && self
                .planned
                .iter()
                .all(|p| self.runs.iter().any(|r| r.run_id == p.run_id && r.status != RunStatus::Interrupted));
    }

    /// Writes every results file into `dir`, under its lock, after merging
    /// what other processes recorded there (see the module's comment).
    pub fn write(&mut self, dir: &Path) -> Result<(), ResultsError> {
        let _lock = lock(dir)?;
        if let Some(disk) = Self::load(dir) {
            self.merge(disk);
        }
        self.settle();
        self.write_files(dir)
    }

    fn write_files(&self, dir: &Path) -> Result<(), ResultsError> {
        let format_err = |path: PathBuf, e: csv::Error| ResultsError::Format {
            path,
            message: e.to_string(),
        };
        for r in &self.runs {
            let path = dir.join("runs").join(format!("{}.csv", r.run_id));
            let text = Self::run_csv(r).map_err(|e| format_err(path.clone(), e))?;
            atomic_file::write(&path, text.as_bytes())?;
        }
        // The figures take the longest: before the two tables, so a kill
        // between those two (which must agree) stays unlikely.
        report::write(self, dir)?;
        let csv_path = dir.join("results.csv");
        let text = self.to_csv().map_err(|e| format_err(csv_path.clone(), e))?;
        atomic_file::write(&csv_path, text.as_bytes())?;
        // results.json last: its presence means the others are current.
        let json = serde_json::to_vec_pretty(self).expect("results serialise");
        atomic_file::write(&dir.join("results.json"), &json)?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).ok()?).ok()
    }
}

/// Model files of finished runs (`<run_id>.safetensors`), written by the trainer.
pub const MODELS_DIR: &str = "models";
/// TensorBoard event files, a directory per run.
pub const TENSORBOARD_DIR: &str = "tensorboard";

/// The files written from the event stream as it arrives, beside the
/// results files: TensorBoard's and the per-run metric files. Both consumers
/// (the monitor and `--batch`) feed it every event.
pub struct EventFiles {
    tensorboard: crate::tensorboard::Recorder,
    runlog: crate::runlog::RunLog,
}

impl EventFiles {
    pub fn new(out: &Path) -> Self {
        Self {
            tensorboard: crate::tensorboard::Recorder::new(out.join(TENSORBOARD_DIR)),
            runlog: crate::runlog::RunLog::new(out.to_path_buf()),
        }
    }

    /// Lines for the log: what could not be written (training goes on).
    pub fn on_event(&mut self, event: &crate::train::TrainEvent) -> Vec<String> {
        [self.tensorboard.on_event(event), self.runlog.on_event(event)].into_iter().flatten().collect()
    }
}

/// What a results directory holds: `Results::write`'s files, the two above and
/// the per-run metric files (`runlog`).
const RESULT_FILES: [&str; 8] = [
    "results.json",
    "results.csv",
    "report.md",
    "runs",
    report::FIGURES_DIR,
    MODELS_DIR,
    TENSORBOARD_DIR,
    crate::runlog::METRICS_DIR,
];

/// What a results directory holds for a new session.
pub struct Opened {
    /// Results of the same study to continue from.
    pub previous: Option<Results>,
    /// Worth a line in the log: older results set aside, ...
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("results directory {path} is not writable: {source}")]
    NotWritable { path: PathBuf, source: std::io::Error },
    #[error("cannot move earlier results from {from} to {to}: {source}")]
    SetAside {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] ResultsError),
}

/// Checks that `out` can be written (before any training), and decides what
/// becomes of results already there: the same study is continued; another
/// study's results (or any, with `fresh`) are moved into
/// `out/previous-<unix time>/`, never overwritten.
pub fn open(out: &Path, study_hash: &str, fresh: bool) -> Result<Opened, OpenError> {
    atomic_file::check_writable(out).map_err(|e| OpenError::NotWritable {
        path: e.path,
        source: e.source,
    })?;
    // Shards of one study open the directory at the same time.
    let _lock = lock(out)?;

    for sub in ["", "runs", report::FIGURES_DIR, MODELS_DIR] {
        atomic_file::remove_leftovers(&out.join(sub));
    }
    let present: Vec<&str> = RESULT_FILES.into_iter().filter(|f| out.join(f).exists()).collect();
    if present.is_empty() {
        return Ok(Opened { previous: None, note: None });
    }
    let why = match Results::load(out) {
        Some(p) if p.study_hash == study_hash && !fresh => {
            return Ok(Opened {
                note: Some(format!("continuing the results in {} ({} runs recorded)", out.display(), p.runs.len())),
                previous: Some(p),
            })
        }
        Some(_) if fresh => "--fresh",
        Some(_) => "another config",
        None => "unreadable results.json",
    };
    // Unique even for two sessions set aside within one second.
    let stamp = crate::train::checkpoint::unix_time();
    let mut aside = out.join(format!("previous-{stamp}"));
    for n in 1.. {
        if !aside.exists() {
            break;
        }
        aside = out.join(format!("previous-{stamp}-{n}"));
    }
    for f in present {
        let (from, to) = (out.join(f), aside.join(f));
        std::fs::create_dir_all(&aside)
            .and_then(|_| std::fs::rename(&from, &to))
            .map_err(|source| OpenError::SetAside { from, to, source })?;
    }
    Ok(Opened {
        previous: None,
        note: Some(format!("earlier results in {} ({why}) moved to {}", out.display(), aside.display())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_study_continues_and_another_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        let opened = open(&out, "aaaa", false).unwrap();
        assert!(opened.previous.is_none() && opened.note.is_none());
        let mut results = Results {
            study_hash: "aaaa".into(),
            ..Results::default()
        };
        results.write(&out).unwrap();
        assert_eq!(open(&out, "aaaa", false).unwrap().previous, Some(results.clone()));

        let opened = open(&out, "bbbb", false).unwrap();
        assert!(opened.previous.is_none());
        assert!(opened.note.unwrap().contains("another config"));
        assert!(!out.join("results.json").exists());
        let aside: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).filter(|p| !p.ends_with(LOCK_FILE)).collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert_eq!(Results::load(&aside[0]), Some(results));
    }

    #[test]
    fn two_set_asides_in_one_second_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        for hash in ["aaaa", "bbbb", "cccc"] {
            std::fs::create_dir_all(out.join(TENSORBOARD_DIR).join("teacher")).unwrap();
            std::fs::write(out.join(TENSORBOARD_DIR).join("teacher/events"), hash).unwrap();
            let opened = open(&out, hash, false).unwrap();
            assert!(opened.note.unwrap().contains("moved to"));
        }
        let asides = std::fs::read_dir(&out).unwrap().filter(|e| e.as_ref().unwrap().file_name() != LOCK_FILE).count();
        assert_eq!(asides, 3, "three sessions, three folders");
    }

    #[test]
    fn a_file_in_the_way_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        std::fs::write(&out, "not a directory").unwrap();
        let e = open(&out, "aaaa", false).err().unwrap().to_string();
        assert!(e.contains("results directory") && e.contains(&out.display().to_string()), "{e}");
    }

    fn row(spec: &RunSpec, acc: f64) -> RunResult {
        RunResult {
            run_id: spec.run_id.clone(),
            kind: spec.kind,
            loss: spec.loss,
            temperature: spec.temperature,
            seed: spec.seed,
            status: RunStatus::Done,
            epochs: 1,
            final_test_accuracy: acc,
            best_test_accuracy: acc,
            final_train_loss: 1.0,
            model_bytes: 100,
            wall_seconds: 1.0,
            reused: false,
            history: vec![],
        }
    }

    /// Shards write one directory at once, each after every run: the files
    /// end with every run once, in plan order, whatever the interleaving.
    #[test]
    fn concurrent_writers_merge_every_run_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        let mut config = crate::config::Config::default();
        config.plan.temperatures = vec![5.0, 15.0];
        let planned = crate::train::plan::full_plan(&config);
        let base = Results {
            study_hash: "aaaa".into(),
            planned: planned.clone(),
            ..Results::default()
        };
        let shards = 3;
        std::thread::scope(|scope| {
            for index in 0..shards {
                let (out, planned, mut mine) = (&out, &planned, base.clone());
                scope.spawn(move || {
                    for (k, spec) in planned.iter().enumerate().filter(|(k, _)| k % shards == index) {
                        if spec.run_id == "soft-T15-s1" {
                            mine.record_failure(spec.run_id.clone(), "boom".into());
                        } else {
                            mine.record(row(spec, k as f64 / 100.0));
                        }
                        mine.write(out).unwrap();
                    }
                });
            }
        });
        let on_disk = Results::load(&out).unwrap();
        let ids: Vec<&str> = on_disk.runs.iter().map(|r| r.run_id.as_str()).collect();
        let expected: Vec<&str> = planned.iter().map(|p| p.run_id.as_str()).filter(|id| *id != "soft-T15-s1").collect();
        assert_eq!(ids, expected, "every run once, in plan order");
        assert_eq!(on_disk.failures.len(), 1);
        assert!(!on_disk.finished, "a failed run leaves the study unfinished");
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + expected.len());

        // The failed run, retried by its shard, replaces the failure.
        let mut retry = base.clone();
        retry.record(row(&planned[planned.iter().position(|p| p.run_id == "soft-T15-s1").unwrap()], 0.5));
        retry.write(&out).unwrap();
        let on_disk = Results::load(&out).unwrap();
        assert!(on_disk.failures.is_empty() && on_disk.finished);
        assert_eq!(on_disk.runs.len(), planned.len());
    }

    #[test]
    fn mean_and_sample_std() {
        assert_eq!(mean_std(&[0.9]), (0.9, 0.0));
        let (m, s) = mean_std(&[0.8, 0.9, 1.0]);
        assert!((m - 0.9).abs() < 1e-12 && (s - 0.1).abs() < 1e-12);
    }
}
