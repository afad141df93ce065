//! What several test files share: a tiny plan that trains in seconds.
#![allow(dead_code)]

use std::path::Path;

use kdtui::engine::data;
use kdtui::engine::train::PlanInput;
use kdtui::study::{Config, RunSpec};

/// Four runs (teacher, baseline, soft-T5, gt_soft-T5) on a few hundred
/// synthetic images with a narrow model.
pub const TINY: &str = r#"
[plan]
name = "tiny"
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
        inject_panic: None,
        inject_device_error: None,
    }
}
