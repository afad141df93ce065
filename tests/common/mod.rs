//! What several test files share: a tiny plan that trains in seconds.
#![allow(dead_code)]

use std::path::Path;

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
