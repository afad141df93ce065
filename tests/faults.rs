//! Faults a long study meets: a run that diverges, a panic in training, a
//! results or checkpoint directory that cannot be written. Each gives a clear
//! message, keeps what was finished and never ends in a panic.

use std::path::Path;
use std::process::{Command, Output};

use kdtui::engine::backend::{self, Resolved};
use kdtui::engine::train::PlanInput;
use kdtui::monitor::headless::{self, BatchError};
use kdtui::outputs::{Results, Sink};
use kdtui::study::{plan, Config};

mod common;
use common::{write, TINY};

fn kdtui(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kdtui")).args(["--batch", "--device", "cpu"]).args(args).current_dir(dir).output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn results_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("results/results.json")).unwrap()).unwrap()
}

/// One in-process test at a time, each from a clean log collector: the
/// engine's collector is one per process, and its panic hook files any
/// thread's panic as a backend's. A trainer beside another could take the
/// error the other injected, and a failing test's panic would fail the next.
static ONE_TRAINER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    let guard = ONE_TRAINER.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    kdtui::engine::logger::drain();
    guard
}

/// The batch writer's error of `plan_in_process`.
fn run_in_process(dir: &Path, inject: impl FnOnce(&mut PlanInput)) -> BatchError {
    plan_in_process(dir, inject).unwrap_err()
}

/// The whole plan of `dir/config.toml` (TINY where there is none) in this
/// process, as `kdtui --batch` runs it, with a fault injected through the
/// library (`inject`).
fn plan_in_process(dir: &Path, inject: impl FnOnce(&mut PlanInput)) -> Result<Results, BatchError> {
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap_or_else(|_| TINY.to_string());
    let mut config = Config::parse(&text, Path::new("config.toml")).unwrap();
    config.plan.checkpoints = dir.join("checkpoints");
    let mut input = common::plan_input(&config, plan::full_plan(&config));
    let results = Results { study_hash: config.study_hash(&input.data.digest), planned: input.runs.clone(), ..Results::default() };
    // Model files where the binary writes them.
    input.models = Some(dir.join("results/models"));
    inject(&mut input);
    let trainer = backend::spawn(Resolved::Cpu, input).unwrap();
    let sink = Sink::new(&dir.join("results"), config.watch.clone());
    headless::run(trainer, sink, results, None)
}

fn run_status<'a>(json: &'a serde_json::Value, id: &str) -> &'a str {
    json["runs"].as_array().unwrap().iter().find(|r| r["run_id"] == id).unwrap()["status"].as_str().unwrap()
}

#[test]
fn a_diverging_teacher_is_marked_and_the_plan_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // Float weights stepped by 3e38 overflow f32 within a step or two.
    write(dir.path(), "config.toml", &TINY.replace("[teacher]\n", "[teacher]\nlearning_rate = 3e38\n"));
    let out = kdtui(dir.path(), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("teacher DIVERGED") && stdout.contains("NaN or infinite loss in epoch 1"), "{stdout}");
    assert!(stdout.contains("baseline-s1 done"), "the plan went on: {stdout}");
    assert!(stdout.contains("soft-T5-s1 FAILED: no teacher: the teacher diverged"), "{stdout}");
    assert!(stderr.contains("1 run(s) failed: soft-T5-s1"), "{stderr}");
    assert!(stdout.contains("gt_soft-T5-s1 done"), "gt_soft needs no teacher: {stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json = results_json(dir.path());
    assert_eq!(run_status(&json, "teacher"), "diverged");
    assert_eq!(run_status(&json, "baseline-s1"), "done");

    // It diverged in its first epoch: there is no good checkpoint to keep, only
    // the verdict, so the next session does not train it again.
    let teacher_dir = std::fs::read_dir(dir.path().join("checkpoints/tiny"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("teacher-"))
        .unwrap();
    assert!(teacher_dir.join("result.json").is_file());
    assert!(!teacher_dir.join("checkpoint.bin").exists());
    let (stdout, _) = text(&kdtui(dir.path(), &[]));
    assert!(!stdout.contains("teacher epoch"), "retrained: {stdout}");
    assert!(stdout.contains("teacher DIVERGED"), "{stdout}");
}

/// A student whose loss stops being finite in its second epoch keeps its
/// first epoch's checkpoint, is listed as diverged with no model file, and
/// the plan goes on; the next session does not train it again.
#[test]
fn a_student_diverging_after_a_good_epoch_keeps_that_epochs_checkpoint() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", &TINY.replace("[student]\nepochs = 1", "[student]\nepochs = 2"));
    let results = plan_in_process(dir.path(), |input| input.hooks.nan_from = Some(("soft-T5-s1".into(), 2))).unwrap();
    let json = results_json(dir.path());
    assert_eq!(run_status(&json, "soft-T5-s1"), "diverged");
    assert_eq!(run_status(&json, "gt_soft-T5-s1"), "done", "the plan went on");
    assert!(results.runs.iter().any(|r| r.run_id == "soft-T5-s1"));
    let run = dir.path().join("checkpoints/tiny/soft-T5-s1");
    let saved = kdtui::engine::train::checkpoint::read_checkpoint(&run.join("checkpoint.bin")).unwrap().expect("its checkpoint");
    assert_eq!((saved.progress.epochs_done, saved.progress.steps_into_epoch), (1, 0), "{:?}", saved.progress.history.len());
    assert!(run.join("result.json").is_file());
    assert!(dir.path().join("results/models/gt_soft-T5-s1.safetensors").is_file(), "no model files written at all");
    assert!(!dir.path().join("results/models/soft-T5-s1.safetensors").exists(), "a diverged model was published");

    let (stdout, _) = text(&kdtui(dir.path(), &[]));
    assert!(stdout.contains("soft-T5-s1 DIVERGED"), "{stdout}");
    assert!(!stdout.contains("soft-T5-s1 epoch"), "retrained: {stdout}");
}

/// A panic inside a run's training (injected through the library: no flag
/// or variable of the binary can) fails that run alone; the headless writer
/// records it and reports it; the next session retries it.
#[test]
fn a_panic_in_training_fails_that_run_only() {
    let _alone = alone();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    let error = run_in_process(dir.path(), |input| input.hooks.panic_in = Some("soft-T5-s1".into()));
    assert!(matches!(&error, BatchError::RunsFailed { list, .. } if list == "soft-T5-s1"), "{error}");
    let json = results_json(dir.path());
    assert_eq!(json["failures"][0]["run_id"], "soft-T5-s1");
    assert!(json["failures"][0]["error"].as_str().unwrap().contains("training panicked: injected"), "{json}");
    assert_eq!(run_status(&json, "gt_soft-T5-s1"), "done", "the plan went on");

    // The next session (the binary, with the same config) retries the failed
    // run and keeps the others.
    let (stdout, _) = text(&kdtui(dir.path(), &[]));
    assert!(stdout.contains("resuming: 3 of 4 runs already finished"), "{stdout}");
    assert!(stdout.contains("soft-T5-s1 done"), "{stdout}");
    assert_eq!(results_json(dir.path())["failures"].as_array().unwrap().len(), 0);
}

/// cubecl reports a failed GPU kernel with `log::error!` from its device
/// thread; the run that was training fails with that message, the others go on.
#[test]
fn an_error_the_backend_logs_fails_that_run() {
    let _alone = alone();
    kdtui::engine::logger::install();
    let dir = tempfile::tempdir().unwrap();
    let error = run_in_process(dir.path(), |input| input.hooks.device_error_in = Some("gt_soft-T5-s1".into()));
    assert!(matches!(&error, BatchError::RunsFailed { list, .. } if list == "gt_soft-T5-s1"), "{error}");
    let json = results_json(dir.path());
    let message = json["failures"][0]["error"].as_str().unwrap();
    assert!(message.contains("the device reported an error: kdtui_test_device: injected by a test"), "{json}");
    assert_eq!(run_status(&json, "soft-T5-s1"), "done", "the plan went on");
}

#[test]
fn unwritable_directories_are_named_before_training_starts() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    write(dir.path(), "results", "a file where the results directory should be");
    let out = kdtui(dir.path(), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("results directory results is not writable"), "{stderr}");
    assert!(!stdout.contains("epoch"), "it trained: {stdout}");

    write(dir.path(), "config.toml", &TINY.replace("[plan]\n", "[plan]\nout = \"out\"\ncheckpoints = \"results\"\n"));
    let out = kdtui(dir.path(), &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("checkpoint directory results/tiny is not writable"), "{stderr}");
}

#[test]
fn results_that_cannot_be_written_stop_the_plan_and_keep_the_earlier_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    assert!(kdtui(dir.path(), &["--only", "baseline"]).status.success());
    let earlier = std::fs::read(dir.path().join("results/results.json")).unwrap();

    // A directory where a results file must go: renaming onto it fails, as a
    // full disk or a read-only mount would make the write fail.
    let blocked = dir.path().join("results/runs/baseline-s1.csv");
    std::fs::remove_file(&blocked).unwrap();
    std::fs::create_dir_all(blocked.join("in-the-way")).unwrap();
    let out = kdtui(dir.path(), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("cannot write results/runs/baseline-s1.csv"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stdout.contains("soft-T5-s1 done"), "the plan went on: {stdout}");
    assert_eq!(std::fs::read(dir.path().join("results/results.json")).unwrap(), earlier, "earlier results changed");
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_plan_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    assert!(kdtui(dir.path(), &["--only", "teacher"]).status.success());
    let teacher_dir = std::fs::read_dir(dir.path().join("checkpoints/tiny")).unwrap().next().unwrap().unwrap().path();
    let logits = teacher_dir.join("train_logits.bin");
    // The teacher alone caches the logits its students will need (a Slurm
    // study's teacher job does); without them, the next session writes them.
    assert!(logits.is_file(), "--only teacher caches the logits");
    std::fs::remove_file(&logits).unwrap();
    std::fs::create_dir_all(logits.join("in-the-way")).unwrap();

    let out = kdtui(dir.path(), &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("train_logits.bin"), "{stderr}");
    assert!(!stdout.contains("soft-T5-s1 done"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(run_status(&results_json(dir.path()), "teacher"), "done");
}
