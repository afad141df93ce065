//! What several test files share: a tiny plan that trains in seconds.
#![allow(dead_code)]

use std::path::Path;

use kdtui::engine::data;
use kdtui::engine::train::{Hooks, PlanInput};
use kdtui::protocol::RunResult;
use kdtui::study::{Config, RunSpec};

/// Four runs (teacher, baseline, soft-T5, gt_soft-T5) on a few hundred
/// synthetic images with a narrow model.
pub const TINY: &str = r#"
[plan]
name = "tiny"
seeds = [1]
losses = ["soft", "gt_soft"]
temperatures = [5.0]
[data]
train_size = 192
test_size = 64
[train]
batch_size = 32
eval_batch_size = 64
[teacher]
epochs = 2
widths = [4, 8, 8]
hidden = 16
[student]
epochs = 1
widths = [4, 8, 8]
hidden = 16
"#;

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// `runs` of `config` as a session would hand them to the trainer (its data
/// loaded, nothing injected, the teacher trained when needed).
pub fn plan_input(config: &Config, runs: Vec<RunSpec>) -> PlanInput {
    PlanInput {
        config: config.clone(),
        runs,
        data: data::load(&config.data).unwrap(),
        device_name: String::new(),
        fresh: false,
        notes: vec![],
        models: None,
        train_teacher: true,
        hooks: Hooks::default(),
    }
}

/// The same training: epoch for epoch, equal accuracies and losses equal
/// to float noise (a resumed run sums in another order only across a stop).
pub fn assert_same_training(a: &RunResult, b: &RunResult) {
    assert_eq!(a.epochs, b.epochs);
    for (x, y) in a.history.iter().zip(&b.history) {
        assert_eq!(x.epoch, y.epoch);
        assert!((x.train_loss - y.train_loss).abs() < 1e-5, "{x:?}\n{y:?}");
        assert!((x.test_loss - y.test_loss).abs() < 1e-5, "{x:?}\n{y:?}");
        assert_eq!(x.train_accuracy, y.train_accuracy, "{x:?}\n{y:?}");
        assert_eq!(x.test_accuracy, y.test_accuracy, "{x:?}\n{y:?}");
    }
}

/// The steps run `run_id`'s metric file (`results/metrics/<run>.jsonl`
/// under `dir`) has logged, in order.
pub fn logged_steps(dir: &Path, run_id: &str) -> Vec<usize> {
    steps_in(&dir.join(format!("results/metrics/{run_id}.jsonl")))
}

/// The steps a metric file has logged, in order (none while it is missing).
pub fn steps_in(metrics: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(metrics).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "step")
        .filter_map(|v| v["step"].as_u64())
        .map(|s| s as usize)
        .collect()
}

/// Waits until the teacher of the plan `child` runs in `dir` has logged
/// step `at_least`; fails if `child` ends first or `within` passes.
pub fn wait_for_teacher_step(dir: &Path, child: &mut std::process::Child, at_least: usize, within: std::time::Duration) {
    wait_for_step(&dir.join("results/metrics/teacher.jsonl"), child, at_least, within);
}

/// Waits until the metric file `metrics` of a run `child` trains has logged
/// step `at_least`; fails if `child` ends first or `within` passes.
pub fn wait_for_step(metrics: &Path, child: &mut std::process::Child, at_least: usize, within: std::time::Duration) {
    let start = std::time::Instant::now();
    while steps_in(metrics).last().is_none_or(|&s| s < at_least) {
        assert!(child.try_wait().unwrap().is_none(), "kdtui ended before step {at_least}");
        assert!(start.elapsed() < within, "no step {at_least} within {within:?}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The teacher's `checkpoint.bin` of plan `plan` under `dir/checkpoints`.
pub fn teacher_checkpoint(dir: &Path, plan: &str) -> std::path::PathBuf {
    let folders = std::fs::read_dir(dir.join("checkpoints").join(plan)).unwrap();
    let teacher = folders.map(|e| e.unwrap().path()).find(|p| p.file_name().unwrap().to_string_lossy().starts_with("teacher-"));
    teacher.expect("no teacher checkpoint folder").join("checkpoint.bin")
}
