//! `--fresh` through the binary, in `--batch`: it removes the checkpoints
//! of the runs it starts over (finished ones too) and of no other run, and
//! moves the earlier results aside rather than deleting them. The
//! interactive prompt's "y" and "n" are in tests/tmux.rs.

mod common;

use std::path::Path;
use std::process::Command;

use common::{write, TINY};

fn batch(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kdtui")).args(["--batch", "--device", "cpu"]).args(args).current_dir(dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// A file only a run folder that was not removed still holds.
const MARK: &str = "kept-by-test";

#[test]
fn fresh_removes_the_selected_runs_checkpoints_only_and_moves_results_aside() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    batch(dir.path(), &[]);
    let plan = dir.path().join("checkpoints/tiny");
    let teacher = common::teacher_checkpoint(dir.path(), "tiny").parent().unwrap().to_path_buf();
    let runs = [teacher.clone(), plan.join("baseline-s1"), plan.join("soft-T5-s1"), plan.join("gt_soft-T5-s1")];
    for run in &runs {
        assert!(run.join("result.json").is_file(), "{} did not finish", run.display());
        std::fs::write(run.join(MARK), "").unwrap();
    }
    // Without --fresh every finished run is kept.
    let again = batch(dir.path(), &["--only", "soft-T5-s1"]);
    let earlier_plain = std::fs::read(dir.path().join("results/results.json")).unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&earlier_plain).unwrap();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 4);
    assert!(!again.contains("--fresh"), "{again}");
    assert!(runs.iter().all(|r| r.join(MARK).is_file()), "a plain second session removed a checkpoint");

    // --fresh --only soft-T5-s1: that run and the teacher it needs (the
    // selection always holds the teacher) start over, finished as they
    // were; the others are untouched.
    let said = batch(dir.path(), &["--fresh", "--only", "soft-T5-s1"]);
    assert!(said.contains("--fresh: earlier checkpoints of these runs removed; starting over"), "{said}");
    assert!(said.contains("teacher epoch 1/2") && said.contains("soft-T5-s1 epoch 1/1"), "both trained again: {said}");
    for (run, removed) in runs.iter().zip([true, false, true, false]) {
        assert_eq!(!run.join(MARK).exists(), removed, "{}: removed should be {removed}", run.display());
        assert!(run.join("result.json").is_file(), "{}", run.display());
    }

    // The earlier results moved to results/previous-<time>, whole.
    let aside: Vec<_> = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("previous-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(said.contains(&format!("moved to {}", Path::new("results").join(aside[0].file_name().unwrap()).display())), "{said}");
    for file in ["results.json", "results.csv", "report.md", "models/soft-T5-s1.safetensors"] {
        assert!(aside[0].join(file).is_file(), "{file} not moved aside");
    }
    // The results.json set aside lists all four runs, as the sessions before
    // wrote it; the new one lists this session's runs.
    let moved = std::fs::read(aside[0].join("results.json")).unwrap();
    assert_eq!(moved, earlier_plain, "the results set aside are not the last ones written");
    let now: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("results/results.json")).unwrap()).unwrap();
    let ids: Vec<&str> = now["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["teacher", "soft-T5-s1"], "the new results hold the runs of this session");
}
