//! What a finished run's model costs to serve, measured once right after
//! its last epoch so that report.md and the monitor can put the student's
//! speed beside its accuracy: the fp32 engine training uses, and for a
//! quantized student the integer engine on the CPU, with how often the two
//! give the same class. One figure per run, taken on the machine that
//! trained it while the study ran; `kdtui bench` is the benchmark.

use std::time::Instant;

use crate::engine::data::batcher::Normalizer;
use crate::engine::data::{Dataset, CLASSES};
use crate::engine::inference::{argmax, predict};
use crate::engine::model::integer::IntNet;
use crate::engine::model::{Cnn, CnnBackend, CnnConfig};
use crate::protocol::{Deployment, IntegerServing};

/// Timed passes over the test set after a first (warm-up) pass; their median
/// is the figure. A pass is a fraction of a second on the default plan; on
/// a slow device (a software GPU: seconds a pass) they stop once a second
/// has gone, after one at least.
const TIMED_PASSES: usize = 3;
const TIMED_SECONDS: f64 = 1.0;

/// `model` (of shape `shape`) over the whole of `test`.
pub(super) fn measure<B: CnnBackend>(
    model: &Cnn<B>,
    shape: &CnnConfig,
    test: &Dataset,
    norm: &Normalizer,
    batch_size: usize,
    device: &B::Device,
) -> Deployment {
    let images = test.len();
    let (float_logits, float_seconds) = timed(|| predict(model, test, norm, batch_size, device));
    // A float model has no integer engine (`IntNet::new` refuses it).
    let integer = IntNet::new(shape, &model.stored_values(), norm).ok().map(|net| {
        let (logits, seconds) = timed(|| {
            let mut out = vec![0f32; images * CLASSES];
            net.logits(&test.images, &mut out);
            out
        });
        let classes = |logits: &[f32]| logits.chunks_exact(CLASSES).map(argmax).collect::<Vec<_>>();
        let (int, float) = (classes(&logits), classes(&float_logits));
        IntegerServing {
            kernel: net.kernel_name(),
            images_per_sec: images as f64 / seconds,
            correct: int.iter().zip(&test.labels).filter(|(c, &l)| **c == l as usize).count(),
            same_class: int.iter().zip(&float).filter(|(a, b)| a == b).count(),
            images,
        }
    });
    Deployment { float_images_per_sec: images as f64 / float_seconds, integer }
}

/// The first pass's output, and the median seconds of the timed passes.
fn timed<T>(mut pass: impl FnMut() -> T) -> (T, f64) {
    let out = pass();
    let mut seconds: Vec<f64> = Vec::with_capacity(TIMED_PASSES);
    while seconds.len() < TIMED_PASSES && (seconds.is_empty() || seconds.iter().sum::<f64>() < TIMED_SECONDS) {
        let started = Instant::now();
        std::hint::black_box(pass());
        seconds.push(started.elapsed().as_secs_f64().max(1e-9));
    }
    seconds.sort_by(f64::total_cmp);
    (out, seconds[(seconds.len() - 1) / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::data::synthetic::{generate, Split};
    use crate::engine::model::Precision;
    use burn::backend::Flex;

    /// A quantized student gets integer figures that agree with its fp32
    /// engine's classes; a float model gets none.
    #[test]
    fn a_student_is_measured_on_both_engines_and_a_teacher_on_one() {
        let device = Default::default();
        let test = generate(40, 3, Split::Test);
        let norm = Normalizer::fit(&test);
        let precision = Precision { w_bits: 2, a_bits: 2, first_last_bits: 32, a_range: 3.0 };
        let student = CnnConfig { widths: [4, 8, 8], hidden: 8, precision };
        let d = measure(&student.init::<Flex>(&device), &student, &test, &norm, 16, &device);
        let int = d.integer.expect("a 2-bit student runs on the integer engine");
        assert_eq!(int.images, 40);
        assert!(int.same_class >= 39, "{int:?}");
        assert!(int.images_per_sec > 0.0 && d.float_images_per_sec > 0.0);
        let teacher = CnnConfig { precision: Precision::FLOAT, ..student.clone() };
        assert!(measure(&teacher.init::<Flex>(&device), &teacher, &test, &norm, 16, &device).integer.is_none());
    }
}
