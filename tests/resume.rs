//! Nothing lost: a run stopped and resumed ends where an uninterrupted one
//! does, and `kill -9` at any moment loses no finished run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kdtui::engine::backend::{self, Resolved};
use kdtui::outputs::Results;
use kdtui::protocol::{Control, RunResult, RunStatus, TrainEvent};
use kdtui::study::{plan, Config};
use rand::{Rng, SeedableRng};

mod common;
use common::assert_same_training;

fn config(dir: &Path) -> Config {
    let mut c = Config::parse(common::TINY, Path::new("tiny.toml")).unwrap();
    c.plan.checkpoints = dir.join("checkpoints");
    c.data.train_size = 320;
    c.train.log_every = 1;
    c.teacher.epochs = 1;
    c.student.epochs = 2;
    c
}

/// Runs `--only soft-T5` in-process; `stop_when` sees every event and says
/// when to send Stop. Returns the finished (or stopped) runs.
fn run(config: &Config, stop_when: impl Fn(&TrainEvent) -> bool) -> BTreeMap<String, RunResult> {
    let runs = plan::select(config, &["soft-T5".to_string()]).unwrap();
    // Lockstep: the Stop sent in answer to an event lands within a step of
    // it, not after the run has finished on a fast machine.
    let trainer = backend::spawn_lockstep(Resolved::Cpu, common::plan_input(config, runs)).unwrap();
    let mut results = BTreeMap::new();
    for event in trainer.events.iter() {
        if stop_when(&event) {
            trainer.control.send(Control::Stop).unwrap();
        }
        match event {
            TrainEvent::RunFinished { result } => {
                results.insert(result.run_id.clone(), result);
            }
            TrainEvent::RunFailed { run_id, error } => panic!("{run_id} failed: {error}"),
            TrainEvent::Fatal { error } => panic!("{error}"),
            _ => {}
        }
    }
    trainer.thread.join().unwrap();
    results
}

#[test]
fn a_run_stopped_in_its_second_epoch_resumes_to_the_same_metrics() {
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = run(&config(reference_dir.path()), |_| false);
    let soft = &reference["soft-T5-s1"];
    assert_eq!((soft.status, soft.epochs), (RunStatus::Done, 2));

    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    // Stop as the second epoch's first step is reported: the run saves its
    // state between two steps of that epoch.
    let first = run(&config, |e| matches!(e, TrainEvent::Step { run_id, epoch: 2, .. } if run_id == "soft-T5-s1"));
    let stopped = &first["soft-T5-s1"];
    assert_eq!((stopped.status, stopped.epochs), (RunStatus::Interrupted, 1));
    assert_same_training(&reference["teacher"], &first["teacher"]);

    let second = run(&config, |_| false);
    assert!(second["teacher"].reused, "the finished teacher is not retrained");
    let resumed = &second["soft-T5-s1"];
    assert_eq!(resumed.status, RunStatus::Done);
    assert!(!resumed.reused);
    assert_same_training(soft, resumed);

    // A third session finds everything finished and trains nothing.
    let third = run(&config, |e| matches!(e, TrainEvent::Step { .. }));
    assert!(third.values().all(|r| r.reused && r.status == RunStatus::Done), "{third:?}");
    assert_same_training(soft, &third["soft-T5-s1"]);
}

/// Every finished run in the results directory, read as a person's tools
/// would: results.json and results.csv must parse, and agree. results.csv is
/// written just before results.json (the commit point, see `publish`): a
/// kill between the two leaves the CSV one run ahead, never behind.
fn finished_runs(out: &Path) -> BTreeMap<String, f64> {
    let Some(results) = Results::load(out) else {
        assert!(!out.join("results.json").exists(), "results.json exists but does not parse");
        return BTreeMap::new();
    };
    let mut done = BTreeMap::new();
    for r in &results.runs {
        let again = done.insert(r.run_id.clone(), r.final_test_accuracy);
        assert!(again.is_none(), "{} recorded twice", r.run_id);
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv beside results.json");
    let csv_ids: Vec<&str> = csv.lines().skip(1).map(|line| line.split(',').next().unwrap_or("")).collect();
    for r in &results.runs {
        assert!(csv_ids.contains(&r.run_id.as_str()), "{} in results.json, not in results.csv:\n{csv}", r.run_id);
    }
    assert!(csv_ids.len() <= results.runs.len() + 1, "results.csv more than one run ahead of results.json:\n{csv}");
    results.runs.iter().filter(|r| r.status == RunStatus::Done).map(|r| (r.run_id.clone(), r.final_test_accuracy)).collect()
}

/// Lines of training progress in the metric files under `out`: steps,
/// epochs and finished runs (heartbeats, which come with time, not counted).
fn progress_lines(out: &Path) -> usize {
    let Ok(files) = std::fs::read_dir(out.join("metrics")) else { return 0 };
    files
        .filter_map(|f| std::fs::read_to_string(f.ok()?.path()).ok())
        .map(|text| {
            text.lines()
                .filter(|l| ["\"event\":\"step\"", "\"event\":\"epoch\"", "\"event\":\"finished\""].iter().any(|e| l.contains(e)))
                .count()
        })
        .sum()
}

#[test]
fn kill_9_at_random_moments_loses_no_finished_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut text =
        common::TINY.replace("train_size = 192", "train_size = 512").replace("batch_size = 32", "batch_size = 32\nlog_every = 1");
    text = text.replace("[student]\nepochs = 1", "[student]\nepochs = 2");
    common::write(dir.path(), "config.toml", &text);
    let kdtui = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kdtui"));
        c.args(["--batch", "--device", "cpu"]).current_dir(dir.path()).stdout(Stdio::null()).stderr(Stdio::piped());
        c
    };
    // A plan that is never interrupted: the numbers to reach, and how much
    // progress (metric lines) it writes, to spread the kills over.
    let clean = tempfile::tempdir().unwrap();
    common::write(clean.path(), "config.toml", &text);
    let status = Command::new(env!("CARGO_BIN_EXE_kdtui"))
        .args(["--batch", "--device", "cpu"])
        .current_dir(clean.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let plan_lines = progress_lines(&clean.path().join("results"));
    assert!(plan_lines >= 100, "{plan_lines} progress lines: too few to spread kills over");

    let out = dir.path().join("results");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let mut seen: BTreeMap<String, f64> = BTreeMap::new();
    let mut kills = 0;
    let mut completed = false;
    for _ in 0..60 {
        // Killed once this session has written 1 to a quarter of a plan's
        // progress (steps, epochs, finished runs), or left to end: kills
        // land on progress, never on a share of a measured duration, so at
        // least three land before the plan can finish however fast it runs.
        let target = progress_lines(&out) + rng.random_range(1..=plan_lines / 4);
        let mut child = kdtui().spawn().unwrap();
        let spawned = std::time::Instant::now();
        let ended = loop {
            assert!(spawned.elapsed() < Duration::from_secs(120), "a session neither progressed nor ended in 120 s");
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if progress_lines(&out) >= target {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if let Some(status) = ended {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(status.success(), "{err}");
            completed = true;
        } else {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
        }
        let now = finished_runs(&out);
        for (id, acc) in &seen {
            assert_eq!(now.get(id), Some(acc), "{id} lost or changed after a kill");
        }
        seen = now;
        if completed {
            break;
        }
    }
    if !completed {
        let status = kdtui().status().unwrap();
        assert!(status.success());
    }
    println!("{kills} kills over a plan of {plan_lines} progress lines");
    assert!(kills >= 3, "only {kills} kills landed: the test no longer tests");
    let results = Results::load(&out).unwrap();
    assert!(results.finished);
    let ids: Vec<&str> = results.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(results.runs.iter().all(|r| r.status == RunStatus::Done));
    for entry in walk(dir.path()) {
        assert!(!entry.contains("kdtui-tmp"), "temporary file left behind: {entry}");
    }

    // And the numbers are those of the plan that was never interrupted.
    let reference = Results::load(&clean.path().join("results")).unwrap();
    for r in &reference.runs {
        let resumed = results.runs.iter().find(|x| x.run_id == r.run_id).unwrap();
        assert_same_training(r, resumed);
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

#[test]
fn a_changed_config_sets_stale_checkpoints_and_results_aside() {
    let dir = tempfile::tempdir().unwrap();
    let kdtui = |config: &str| {
        common::write(dir.path(), "config.toml", config);
        let out = Command::new(env!("CARGO_BIN_EXE_kdtui"))
            .args(["--batch", "--device", "cpu", "--only", "baseline"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    kdtui(common::TINY);
    let earlier = std::fs::read(dir.path().join("results/results.json")).unwrap();

    let stdout = kdtui(&common::TINY.replace("[student]\n", "[student]\nw_bits = 4\n"));
    assert!(stdout.contains("teacher reused"), "student bits do not touch the teacher: {stdout}");
    assert!(stdout.contains("is for another config; set aside in checkpoints/tiny/baseline-s1.stale-"), "{stdout}");
    assert!(stdout.contains("baseline-s1 epoch 1/1"), "retrained: {stdout}");
    assert!(stdout.contains("(another config) moved to results/previous-"), "{stdout}");
    let previous = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("previous-"))
        .unwrap();
    assert_eq!(std::fs::read(previous.join("results.json")).unwrap(), earlier, "earlier results kept as they were");
}
