//! The results of a plan and the files they are written to: `results.json`,
//! `results.csv`, `runs/<run_id>.csv` (per-epoch metrics) and `report.md`.
//! Every file is rewritten atomically as each run finishes, so quitting or a
//! crash never loses a finished run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic_file::{self, WriteError};
use crate::distill::Loss;
use crate::report;
use crate::train::{RunKind, RunResult, RunStatus};

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
    pub finished: bool,
    pub stopped: bool,
    pub runs: Vec<RunResult>,
    pub failures: Vec<Failure>,
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
        self.failures.retain(|f| f.run_id != result.run_id);
        match self.runs.iter_mut().find(|r| r.run_id == result.run_id) {
            Some(slot) => *slot = result,
            None => self.runs.push(result),
        }
    }

    pub fn record_failure(&mut self, run_id: String, error: String) {
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

    /// Writes every results file into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), ResultsError> {
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

/// What a results directory holds: `Results::write`'s files and the two above.
const RESULT_FILES: [&str; 7] = ["results.json", "results.csv", "report.md", "runs", report::FIGURES_DIR, MODELS_DIR, TENSORBOARD_DIR];

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
        let results = Results {
            study_hash: "aaaa".into(),
            ..Results::default()
        };
        results.write(&out).unwrap();
        assert_eq!(open(&out, "aaaa", false).unwrap().previous, Some(results.clone()));

        let opened = open(&out, "bbbb", false).unwrap();
        assert!(opened.previous.is_none());
        assert!(opened.note.unwrap().contains("another config"));
        assert!(!out.join("results.json").exists());
        let aside: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
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
        let asides = std::fs::read_dir(&out).unwrap().count();
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

    #[test]
    fn mean_and_sample_std() {
        assert_eq!(mean_std(&[0.9]), (0.9, 0.0));
        let (m, s) = mean_std(&[0.8, 0.9, 1.0]);
        assert!((m - 0.9).abs() < 1e-12 && (s - 0.1).abs() < 1e-12);
    }
}
