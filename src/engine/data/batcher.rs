//! Turns dataset indices into normalised tensors. Normalisation uses the
//! training set's per-channel mean and standard deviation, applied through a
//! 256-entry lookup table per channel so a batch costs one pass over its bytes.

use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{Dataset, CHANNELS, CLASSES, PIXELS, SIDE};

#[derive(Debug, Clone)]
pub struct Normalizer {
    pub mean: [f32; CHANNELS],
    pub std: [f32; CHANNELS],
    lut: [[f32; 256]; CHANNELS],
}

impl Normalizer {
    /// Per-channel statistics of the training set (pixels scaled to [0, 1]).
    pub fn fit(train: &Dataset) -> Self {
        let mut hist = [[0u64; 256]; CHANNELS];
        for img in train.images.chunks_exact(PIXELS) {
            for (ch, plane) in img.chunks_exact(SIDE * SIDE).enumerate() {
                for &v in plane {
                    hist[ch][v as usize] += 1;
                }
            }
        }
        let mut mean = [0f32; CHANNELS];
        let mut std = [1f32; CHANNELS];
        for ch in 0..CHANNELS {
            let n: u64 = hist[ch].iter().sum::<u64>().max(1);
            let m: f64 = hist[ch].iter().enumerate().map(|(v, &c)| v as f64 / 255.0 * c as f64).sum::<f64>() / n as f64;
            let var: f64 = hist[ch].iter().enumerate().map(|(v, &c)| (v as f64 / 255.0 - m).powi(2) * c as f64).sum::<f64>() / n as f64;
            mean[ch] = m as f32;
            // A constant channel would divide by zero.
            std[ch] = (var.sqrt() as f32).max(1e-3);
        }
        Self::new(mean, std)
    }

    pub fn new(mean: [f32; CHANNELS], std: [f32; CHANNELS]) -> Self {
        let lut = std::array::from_fn(|ch| std::array::from_fn(|v| (v as f32 / 255.0 - mean[ch]) / std[ch]));
        Self { mean, std, lut }
    }

    /// Appends the normalised pixels of image `i` to `out`.
    pub fn extend(&self, data: &Dataset, i: usize, out: &mut Vec<f32>) {
        for (ch, plane) in data.image(i).chunks_exact(SIDE * SIDE).enumerate() {
            let lut = &self.lut[ch];
            out.extend(plane.iter().map(|&v| lut[v as usize]));
        }
    }
}

/// The order a run visits its training images in, epoch by epoch: the
/// previous epoch's order shuffled again by a generator seeded from the run's
/// seed. Nothing of it is stored: a resumed run draws the finished epochs'
/// orders again and continues with the same sequence.
pub struct Shuffle {
    rng: ChaCha8Rng,
    order: Vec<usize>,
}

impl Shuffle {
    pub fn new(images: usize, seed: u64) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_0de5), order: (0..images).collect() }
    }

    /// The order of the next epoch.
    pub fn next_epoch(&mut self) -> &[usize] {
        self.order.shuffle(&mut self.rng);
        &self.order
    }
}

/// The batches of one epoch's `order`: `batch_size` images each, the last
/// one shorter. A last batch of a single image is left out: BatchNorm would
/// divide by its zero variance.
pub fn batches(order: &[usize], batch_size: usize) -> impl Iterator<Item = &[usize]> {
    order.chunks(batch_size).filter(|c| c.len() > 1)
}

/// How many batches `batches` gives for `images` images.
pub fn steps_per_epoch(images: usize, batch_size: usize) -> usize {
    images / batch_size + usize::from(images % batch_size > 1)
}

/// One batch on the device.
pub struct Batch<B: Backend> {
    /// [batch, 3, 32, 32]
    pub images: Tensor<B, 4>,
    /// [batch]
    pub labels: Tensor<B, 1, Int>,
    /// [batch, 10]
    pub onehot: Tensor<B, 2>,
    /// [batch, 10] teacher soft targets, when the run has them.
    pub soft: Option<Tensor<B, 2>>,
}

/// Assembles the batch of `indices`; `soft` holds [n, 10] row-major targets
/// for the whole dataset when given.
pub fn make_batch<B: Backend>(data: &Dataset, norm: &Normalizer, indices: &[usize], soft: Option<&[f32]>, device: &B::Device) -> Batch<B> {
    let n = indices.len();
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    let mut onehot = vec![0f32; n * CLASSES];
    for (row, &i) in indices.iter().enumerate() {
        norm.extend(data, i, &mut pixels);
        let label = data.labels[i] as usize;
        labels.push(label as i64);
        onehot[row * CLASSES + label] = 1.0;
    }
    let images = Tensor::from_data(TensorData::new(pixels, [n, CHANNELS, SIDE, SIDE]), device);
    let labels = Tensor::from_data(TensorData::new(labels, [n]), device);
    let onehot = Tensor::from_data(TensorData::new(onehot, [n, CLASSES]), device);
    let soft = soft.map(|q| {
        let rows: Vec<f32> = indices.iter().flat_map(|&i| q[i * CLASSES..(i + 1) * CLASSES].iter().copied()).collect();
        Tensor::from_data(TensorData::new(rows, [n, CLASSES]), device)
    });
    Batch { images, labels, onehot, soft }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn normalised_training_set_has_zero_mean_unit_std() {
        let data = crate::engine::data::synthetic::generate(200, 5, crate::engine::data::synthetic::Split::Train);
        let norm = Normalizer::fit(&data);
        let mut all = Vec::new();
        for i in 0..data.len() {
            norm.extend(&data, i, &mut all);
        }
        for ch in 0..CHANNELS {
            let vals: Vec<f32> = all.chunks_exact(SIDE * SIDE).skip(ch).step_by(CHANNELS).flatten().copied().collect();
            let m = vals.iter().sum::<f32>() / vals.len() as f32;
            let s = (vals.iter().map(|v| (v - m).powi(2)).sum::<f32>() / vals.len() as f32).sqrt();
            assert!(m.abs() < 1e-3 && (s - 1.0).abs() < 1e-3, "channel {ch}: mean {m} std {s}");
        }
    }

    #[test]
    fn batch_keeps_labels_and_pixel_order() {
        let data = crate::engine::data::synthetic::generate(10, 5, crate::engine::data::synthetic::Split::Train);
        let norm = Normalizer::new([0.0; 3], [1.0; 3]);
        let b = make_batch::<Flex>(&data, &norm, &[3, 7], None, &Default::default());
        assert_eq!(b.images.dims(), [2, 3, 32, 32]);
        let labels = b.labels.into_data().convert::<i64>().to_vec::<i64>().unwrap();
        assert_eq!(labels, vec![data.labels[3] as i64, data.labels[7] as i64]);
        // image 7, channel 1, row 5, column 9
        let px = b.images.slice([1..2, 1..2, 5..6, 9..10]).into_scalar();
        assert!((px - data.image(7)[1024 + 5 * 32 + 9] as f32 / 255.0).abs() < 1e-6);
    }
}
