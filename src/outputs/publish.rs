//! Writing a study's results files, in the order that keeps them
//! consistent when the process dies at any point: the per-run CSVs, the
//! figures and report.md, results.csv, and results.json last (its presence
//! means the others are current). Every file goes through a temporary name
//! and a rename, so each is the old version or the new one, never torn.

use std::collections::HashMap;
use std::hash::Hasher;
use std::path::{Path, PathBuf};

use super::directory::{lock, LockError, FIGURES_DIR, REPORT_MD, RESULTS_CSV, RESULTS_JSON, RUNS_DIR};
use super::figures::{self, FigureError};
use super::store::Results;
use super::{report, tables};
use crate::protocol::RunResult;
use crate::util::atomic_file::{self, WriteError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Figure(#[from] FigureError),
    #[error("cannot format {path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// Writes every results file into `dir`, under its lock, after merging what
/// other processes recorded there (see `store`).
pub fn publish(results: &mut Results, dir: &Path) -> Result<(), PublishError> {
    publish_changes(results, dir, &mut Written::default())
}

/// What one process has written of each run: a digest of the row its CSV
/// and figure were drawn from. A study of hundreds of runs rewrites its
/// tables after every run; redrawing every run's figure each time made the
/// write grow with the number of finished runs until it outlasted a run.
#[derive(Debug, Default)]
pub struct Written(HashMap<String, u64>);

/// `publish`, writing a run's CSV and figure only when its row differs from
/// what `written` says this process last wrote (or the files are missing).
/// The tables, the sweep figure and report.md cover every run: always.
pub fn publish_changes(results: &mut Results, dir: &Path, written: &mut Written) -> Result<(), PublishError> {
    let _lock = lock(dir)?;
    if let Some(disk) = Results::load(dir) {
        results.merge(disk);
    }
    results.settle();
    for r in &results.runs {
        let digest = row_digest(r);
        let (csv, figure) = run_paths(dir, r);
        let current = written.0.get(&r.run_id) == Some(&digest) && csv.exists() && figure.as_ref().is_none_or(|f| f.exists());
        if !current {
            write_run(r, &csv, figure.as_deref())?;
            written.0.insert(r.run_id.clone(), digest);
        }
    }
    // The figures take the longest: before the two tables, so a kill
    // between those two (which must agree) stays unlikely.
    write_summary(results, dir)?;
    let csv_path = dir.join(RESULTS_CSV);
    let text = tables::results_csv(results).map_err(|e| format_err(csv_path.clone(), e))?;
    atomic_file::write(&csv_path, text.as_bytes())?;
    let json = serde_json::to_vec_pretty(results).expect("results serialise");
    atomic_file::write(&dir.join(RESULTS_JSON), &json)?;
    Ok(())
}

/// The figures, then `report.md` (which embeds them), into `dir`: what
/// `kdtui report` rebuilds from results.json. Returns the number of figures.
pub fn write_report(results: &Results, dir: &Path) -> Result<usize, PublishError> {
    let mut count = 0;
    for run in &results.runs {
        if let (_, Some(figure)) = run_paths(dir, run) {
            figures::run_figure(run, &figure)?;
            count += 1;
        }
    }
    Ok(count + write_summary(results, dir)?)
}

fn format_err(path: PathBuf, e: csv::Error) -> PublishError {
    PublishError::Format { path, message: e.to_string() }
}

/// A run's CSV, and its figure when it has epochs to draw.
fn run_paths(dir: &Path, run: &RunResult) -> (PathBuf, Option<PathBuf>) {
    let csv = dir.join(RUNS_DIR).join(format!("{}.csv", run.run_id));
    let figure = (!run.history.is_empty()).then(|| dir.join(FIGURES_DIR).join(format!("{}.png", run.run_id)));
    (csv, figure)
}

fn write_run(run: &RunResult, csv: &Path, figure: Option<&Path>) -> Result<(), PublishError> {
    let text = tables::run_csv(run).map_err(|e| format_err(csv.to_path_buf(), e))?;
    atomic_file::write(csv, text.as_bytes())?;
    if let Some(figure) = figure {
        figures::run_figure(run, figure)?;
    }
    Ok(())
}

/// The sweep, agreement and effects figures and report.md; how many figures there were to draw.
fn write_summary(results: &Results, dir: &Path) -> Result<usize, PublishError> {
    let sweep = figures::sweep_figure(results, &dir.join(FIGURES_DIR).join(report::SWEEP_FIGURE))?;
    let agreement = figures::agreement_figure(results, &dir.join(FIGURES_DIR).join(report::AGREEMENT_FIGURE))?;
    let effects = figures::effects_figure(results, &dir.join(FIGURES_DIR).join(report::EFFECTS_FIGURE))?;
    atomic_file::write(&dir.join(REPORT_MD), report::markdown(results).as_bytes())?;
    Ok(usize::from(sweep) + usize::from(agreement) + usize::from(effects))
}

fn row_digest(run: &RunResult) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(&serde_json::to_vec(run).expect("a row serialises"));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::fixtures::finished as row;

    /// Shards write one directory at once, each after every run: the files
    /// end with every run once, in plan order, whatever the interleaving.
    #[test]
    fn concurrent_writers_merge_every_run_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        let mut config = crate::study::Config::default();
        config.plan.seeds = vec![1];
        config.plan.temperatures = vec![5.0, 15.0];
        let planned = crate::study::plan::full_plan(&config);
        let base = Results { study_hash: "aaaa".into(), planned: planned.clone(), ..Results::default() };
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
                        publish(&mut mine, out).unwrap();
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
        publish(&mut retry, &out).unwrap();
        let on_disk = Results::load(&out).unwrap();
        assert!(on_disk.failures.is_empty() && on_disk.finished);
        assert_eq!(on_disk.runs.len(), planned.len());
    }
}
