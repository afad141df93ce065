//! The original study's numbers (docs/STUDY.md), set beside ours in every
//! report and in the monitor's table.

use crate::study::Loss;

pub const TEACHER_ACCURACY: f64 = 0.9609;
pub const BASELINE_ACCURACY: f64 = 0.9102;
pub const WITH_TEACHER_ACCURACY: f64 = 0.8945;
pub const TEACHER_MB: f64 = 3.36;
pub const STUDENT_MB: f64 = 1.11;
/// Its accuracies were read off one batch of this many test images.
pub const TEST_IMAGES: usize = 256;

pub const TEMPERATURES: [f64; 5] = [5.0, 15.0, 25.0, 50.0, 100.0];

/// Test accuracy of the original run for a loss and temperature, if it had one.
pub fn distilled_accuracy(loss: Loss, temperature: f64) -> Option<f64> {
    let row = TEMPERATURES.iter().position(|&t| t == temperature)?;
    let table: [[f64; 3]; 5] =
        [[0.9336, 0.8789, 0.8789], [0.8867, 0.9063, 0.8984], [0.9102, 0.8984, 0.8750], [0.8694, 0.9141, 0.9063], [0.9180, 0.8984, 0.8750]];
    let col = match loss {
        Loss::Soft => 0,
        Loss::HardSoft => 1,
        Loss::GtSoft => 2,
        _ => return None,
    };
    Some(table[row][col])
}
