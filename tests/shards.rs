//! `--shard I/N`, `kdtui slurm` and `kdtui watch` as a user meets them,
//! without Slurm (tests/slurm.rs runs them on a real one).

use std::path::Path;
use std::process::Stdio;

use assert_cmd::Command;

mod common;
use common::{write, TINY};

fn kdtui(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kdtui").unwrap();
    cmd.current_dir(dir);
    cmd
}

/// results.csv without the wall-time column (it differs between any two runs).
fn table(results: &Path) -> Vec<String> {
    let csv = std::fs::read_to_string(results.join("results.csv")).unwrap();
    let wall = csv.lines().next().unwrap().split(',').position(|c| c == "wall_seconds").expect("a wall_seconds column");
    csv.lines()
        .map(|l| {
            let mut fields: Vec<&str> = l.split(',').collect();
            fields.remove(wall);
            fields.join(",")
        })
        .collect()
}

#[test]
fn shards_run_at_once_and_merge_into_the_single_machine_table() {
    let dir = tempfile::tempdir().unwrap();
    let (sharded, single) = (dir.path().join("sharded"), dir.path().join("single"));
    for d in [&sharded, &single] {
        std::fs::create_dir(d).unwrap();
        write(d, "config.toml", TINY);
    }

    // Before the teacher has finished, a shard refuses and trains nothing.
    let early = kdtui(&sharded).args(["--batch", "--device", "cpu", "--shard", "0/2"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the teacher has not finished") && stderr.contains("--only teacher"), "{stderr}");
    assert!(
        !sharded
            .join("checkpoints/tiny")
            .read_dir()
            .is_ok_and(|mut d| d.any(|e| { e.unwrap().file_name().to_string_lossy().starts_with("teacher") })),
        "no teacher trained by a shard"
    );

    let teacher = kdtui(&sharded).args(["--batch", "--device", "cpu", "--only", "teacher"]).output().unwrap();
    assert!(teacher.status.success(), "{}", String::from_utf8_lossy(&teacher.stderr));
    assert!(String::from_utf8_lossy(&teacher.stdout).contains("teacher logits over 192 training images computed"));

    // Both shards at once, into one results directory.
    let spawn = |i: usize| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kdtui"))
            .args(["--batch", "--device", "cpu", "--shard", &format!("{i}/2")])
            .current_dir(&sharded)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [spawn(0), spawn(1)];
    let outputs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for (i, out) in outputs.iter().enumerate() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "shard {i}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("teacher done") && stdout.contains("reused from checkpoint"), "{stdout}");
    }
    let shard0 = String::from_utf8_lossy(&outputs[0].stdout);
    assert!(shard0.contains("shard 0/2: 2 of the plan's 3 student runs: baseline-s1, gt_soft-T5-s1"), "{shard0}");
    assert!(!shard0.contains(" soft-T5-s1 done"), "soft-T5-s1 is shard 1's: {shard0}");

    let all = kdtui(&single).args(["--batch", "--device", "cpu"]).output().unwrap();
    assert!(all.status.success());
    let merged = table(&sharded.join("results"));
    assert_eq!(merged.len(), 5, "header and one row per run: {merged:?}");
    assert_eq!(merged, table(&single.join("results")));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(sharded.join("results/results.json")).unwrap()).unwrap();
    assert_eq!(json["finished"], true);

    // Running a shard again trains nothing and writes no second row.
    let again = kdtui(&sharded).args(["--batch", "--device", "cpu", "--shard", "1/2"]).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("soft-T5-s1 done: final test acc"));
    assert!(String::from_utf8_lossy(&again.stdout).contains("reused from checkpoint"));
    assert_eq!(table(&sharded.join("results")), merged);
    let log = std::fs::read_to_string(sharded.join("results/metrics/soft-T5-s1.jsonl")).unwrap();
    assert_eq!(log.matches("\"event\":\"finished\"").count(), 1, "{log}");
}

#[test]
fn bad_shards_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    for (args, words) in [
        (vec!["--batch", "--shard", "2/2"], "expected I/N with 0 <= I < N"),
        (vec!["--batch", "--shard", "x"], "expected I/N"),
        (vec!["--batch", "--shard", "0/2", "--fresh"], "cannot be used with"),
        (vec!["--shard", "0/2"], "--batch"),
    ] {
        let out = kdtui(dir.path()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
    assert!(!dir.path().join("results").exists(), "nothing written");
}

#[test]
fn slurm_writes_the_scripts_and_refuses_what_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    let out = kdtui(dir.path()).args(["slurm", "--device", "cuda", "--", "--partition=gpu"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("3 array tasks for 3 student runs"), "default: a task per run: {stdout}");
    let students = std::fs::read_to_string(dir.path().join("slurm/students.sbatch")).unwrap();
    assert!(students.contains("#SBATCH --array=0-2") && students.contains("#SBATCH --gres=gpu:1"));
    assert!(students.contains("#SBATCH --partition=gpu"));
    let config = dir.path().canonicalize().unwrap().join("config.toml");
    assert!(students.contains(&format!("--config {}", config.display())), "absolute paths: {students}");
    let submit = dir.path().join("slurm/submit.sh");
    assert!(std::fs::read_to_string(&submit).unwrap().contains("--dependency=afterok:"));
    assert!(dir.path().join("slurm/logs").is_dir(), "Slurm does not create the log folder itself");

    for (args, words) in [
        (vec!["slurm", "--array-size", "4"], "more than the plan's 3 student runs"),
        (vec!["slurm", "--array-size", "0"], "at least 1"),
        (vec!["slurm", "--device", "tpu"], "a Slurm study runs on `cpu` or `cuda`"),
        (vec!["slurm", "--", "--array=1-3"], "kdtui sets it itself"),
        (vec!["slurm", "--config", "nope.toml"], "nope.toml"),
    ] {
        let out = kdtui(dir.path()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(words) && stderr.lines().count() == 1, "{args:?}: {stderr}");
    }
}

#[test]
fn watch_needs_a_directory_and_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let out = kdtui(dir.path()).args(["watch", "no-such-dir"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such-dir is not a directory"), "{stderr}");
    std::fs::create_dir(dir.path().join("results")).unwrap();
    let out = kdtui(dir.path()).args(["watch"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kdtui watch needs a terminal"), "{stderr}");
}
