//! The results directory: what it holds, and what becomes of an earlier
//! study's files when a session opens it (continued, or set aside).

use std::fs::File;
use std::path::{Path, PathBuf};

use super::store::Results;
use crate::util::atomic_file;

/// The table, every run's row, the study's config and plan (written last: its
/// presence means the files beside it are current).
pub const RESULTS_JSON: &str = "results.json";
pub const RESULTS_CSV: &str = "results.csv";
pub const REPORT_MD: &str = "report.md";
/// `<run_id>.csv`: a run's epochs.
pub const RUNS_DIR: &str = "runs";
/// The report's PNG figures.
pub const FIGURES_DIR: &str = "figures";
/// Model files of finished runs (`<run_id>.safetensors`), written by the trainer.
pub const MODELS_DIR: &str = "models";
/// TensorBoard event files, a directory per run.
pub const TENSORBOARD_DIR: &str = "tensorboard";
/// Per-run metric files (`<run_id>.jsonl`) that `kdtui watch` follows.
pub const METRICS_DIR: &str = "metrics";

#[derive(Debug, thiserror::Error)]
#[error("cannot lock {path} (it serialises the writers of a shared results directory): {source}")]
pub struct LockError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Held while a process reads and rewrites a results directory.
pub const LOCK_FILE: &str = ".kdtui.lock";

/// Waits for the exclusive lock on `dir` (flock; on NFS the client maps it to
/// a POSIX lock, which NFSv4 and lockd share between nodes). Released when
/// the returned file is dropped.
pub fn lock(dir: &Path) -> Result<File, LockError> {
    let path = dir.join(LOCK_FILE);
    let err = |source| LockError { path: path.clone(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(err)?;
    file.lock().map_err(err)?;
    Ok(file)
}

impl Results {
    /// The results.json of `dir`, when it holds a readable one.
    pub fn load(dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(dir.join(RESULTS_JSON)).ok()?).ok()
    }
}

/// Everything a study writes into its results directory.
const RESULT_FILES: [&str; 8] = [RESULTS_JSON, RESULTS_CSV, REPORT_MD, RUNS_DIR, FIGURES_DIR, MODELS_DIR, TENSORBOARD_DIR, METRICS_DIR];

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
    SetAside { from: PathBuf, to: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// Checks that `out` can be written (before any training), and decides what
/// becomes of results already there: the same study is continued; another
/// study's results (or any, with `fresh`) are moved into
/// `out/previous-<unix time>/`, never overwritten.
pub fn open(out: &Path, study_hash: &str, fresh: bool) -> Result<Opened, OpenError> {
    atomic_file::check_writable(out).map_err(|e| OpenError::NotWritable { path: e.path, source: e.source })?;
    // Shards of one study open the directory at the same time.
    let _lock = lock(out)?;

    // `out` itself was cleaned by check_writable.
    for sub in [RUNS_DIR, FIGURES_DIR, MODELS_DIR] {
        atomic_file::remove_leftovers(&out.join(sub));
    }
    // An empty folder holds no earlier results (and may be a mount point,
    // which could not be moved).
    let holds_something = |path: &Path| path.is_file() || std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some());
    let present: Vec<&str> = RESULT_FILES.into_iter().filter(|f| holds_something(&out.join(f))).collect();
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
    let stamp = crate::util::unix_time();
    let mut aside = out.join(format!("previous-{stamp}"));
    for n in 1.. {
        if !aside.exists() {
            break;
        }
        aside = out.join(format!("previous-{stamp}-{n}"));
    }
    for f in present {
        let (from, to) = (out.join(f), aside.join(f));
        std::fs::create_dir_all(&aside).and_then(|_| std::fs::rename(&from, &to)).map_err(|source| OpenError::SetAside {
            from,
            to,
            source,
        })?;
    }
    Ok(Opened { previous: None, note: Some(format!("earlier results in {} ({why}) moved to {}", out.display(), aside.display())) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::publish::publish;

    #[test]
    fn same_study_continues_and_another_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        let opened = open(&out, "aaaa", false).unwrap();
        assert!(opened.previous.is_none() && opened.note.is_none());
        let mut results = Results { study_hash: "aaaa".into(), ..Results::default() };
        publish(&mut results, &out).unwrap();
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
    fn empty_folders_are_not_earlier_results() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        for sub in [MODELS_DIR, METRICS_DIR] {
            std::fs::create_dir_all(out.join(sub)).unwrap();
        }
        let opened = open(&out, "aaaa", false).unwrap();
        assert!(opened.previous.is_none() && opened.note.is_none(), "{:?}", opened.note);
        assert!(out.join(MODELS_DIR).is_dir() && out.join(METRICS_DIR).is_dir(), "left where they are");
    }

    #[test]
    fn a_file_in_the_way_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        std::fs::write(&out, "not a directory").unwrap();
        let e = open(&out, "aaaa", false).err().unwrap().to_string();
        assert!(e.contains("results directory") && e.contains(&out.display().to_string()), "{e}");
    }
}
