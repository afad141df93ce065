//! Inference: logits of a model over a dataset in batches, and the test
//! loss and accuracy they give. Training evaluates with it after every
//! epoch, the teacher caches its logits with it, `kdtui eval` scores with it.

use super::data::batcher::{balanced, images, Normalizer};
use super::data::{Dataset, CLASSES};
use super::model::{Cnn, CnnBackend};
use burn::tensor::Tensor;

/// Logits [n, 10] row-major for every image of `data`, in inference mode,
/// in balanced batches of at most `batch_size` (one autotune bucket on a GPU,
/// as in training). The batches' logits are read back together, once: a read
/// per batch would make a GPU wait for its queue to drain each time.
pub fn predict<B: CnnBackend>(model: &Cnn<B>, data: &Dataset, norm: &Normalizer, batch_size: usize, device: &B::Device) -> Vec<f32> {
    if data.is_empty() {
        return Vec::new();
    }
    let all: Vec<usize> = (0..data.len()).collect();
    let logits: Vec<_> =
        balanced(data.len(), batch_size).map(|range| model.forward(images::<B>(data, norm, &all[range], device))).collect();
    let out = Tensor::cat(logits, 0).into_data().convert::<f32>().into_vec::<f32>().expect("f32 logits");
    debug_assert_eq!(out.len(), data.len() * CLASSES);
    out
}

/// (mean hard-label cross-entropy, accuracy) over the whole of `data`.
pub fn evaluate<B: CnnBackend>(model: &Cnn<B>, data: &Dataset, norm: &Normalizer, batch_size: usize, device: &B::Device) -> (f64, f64) {
    score(&predict(model, data, norm, batch_size, device), &data.labels)
}

/// (mean hard-label cross-entropy, accuracy) of logits [n, 10] against `labels`.
pub fn score(logits: &[f32], labels: &[u8]) -> (f64, f64) {
    let (mut loss, mut correct) = (0.0f64, 0usize);
    for (row, &label) in logits.chunks_exact(CLASSES).zip(labels) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z)) as f64;
        let lse = max + row.iter().map(|&z| (z as f64 - max).exp()).sum::<f64>().ln();
        loss += lse - row[label as usize] as f64;
        correct += usize::from(argmax(row) == label as usize);
    }
    let n = labels.len().max(1) as f64;
    (loss / n, correct as f64 / n)
}

/// The predicted class: the first of the largest logits.
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &z)| if z > row[best] { i } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::data::synthetic::{generate, Split};
    use crate::engine::model::{CnnConfig, Precision};
    use burn::backend::Flex;

    /// `predict`'s row i is image i's logits (what the teacher's cache and
    /// every target computed from it rely on), batches and a partial last
    /// batch included.
    #[test]
    fn predict_keeps_the_dataset_order() {
        let device = Default::default();
        let data = generate(7, 2, Split::Test);
        let norm = Normalizer::fit(&data);
        let model = CnnConfig { widths: [4, 4, 4], hidden: 8, precision: Precision::FLOAT }.init::<Flex>(&device);
        let all = predict(&model, &data, &norm, 3, &device);
        assert_eq!(all.len(), 7 * CLASSES);
        for i in 0..data.len() {
            let alone = predict(&model, &Dataset { images: data.image(i).to_vec(), labels: vec![data.labels[i]] }, &norm, 1, &device);
            for (a, b) in all[i * CLASSES..(i + 1) * CLASSES].iter().zip(&alone) {
                assert!((a - b).abs() < 1e-5, "image {i}: {a} vs {b}");
            }
        }
    }
}
