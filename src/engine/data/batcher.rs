//! Turns dataset indices into normalised tensors. Normalisation uses the
//! training set's per-channel mean and standard deviation, applied through a
//! 256-entry lookup table per channel so a batch costs one pass over its bytes.

use std::ops::Range;

use burn::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::dataset::{Dataset, CHANNELS, CLASSES, PIXELS, SIDE};

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

    /// The normalised value of each pixel byte, per channel: what `extend`
    /// computes, for engines that normalise pixels themselves.
    pub fn table(&self) -> &[[f32; 256]; CHANNELS] {
        &self.lut
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

/// The batches of one epoch's `order`, as equal in size as `batch_size`
/// allows: ceil(n / batch_size) batches whose sizes differ by at most one
/// (7,000 images in batches of 128 give 55 of 127 or 128, not 54 of 128 and
/// one of 88). On a GPU every new shape costs an autotune round and cubecl
/// buckets batch sizes by powers of two, so two sizes one apart share a
/// bucket where a short last batch (41 of SVHN's 73,257) starts another; and
/// no step runs on a handful of images whose BatchNorm statistics are noise.
/// A batch of a single image (only with `batch_size` 1, or 2 on an odd
/// count) is left out: BatchNorm would divide by its zero variance.
pub fn batches(order: &[usize], batch_size: usize) -> impl Iterator<Item = &[usize]> {
    balanced(order.len(), batch_size).map(move |r| &order[r]).filter(|c| c.len() > 1)
}

/// How many batches `batches` gives for `images` images.
pub fn steps_per_epoch(images: usize, batch_size: usize) -> usize {
    balanced(images, batch_size).filter(|r| r.len() > 1).count()
}

/// `n` items cut into ceil(n / size) consecutive ranges whose lengths
/// differ by at most one, the longer ones first.
pub fn balanced(n: usize, size: usize) -> impl Iterator<Item = Range<usize>> {
    let count = n.div_ceil(size.max(1));
    let (base, longer) = match count {
        0 => (0, 0),
        _ => (n / count, n % count),
    };
    (0..count).map(move |k| {
        let start = k * base + k.min(longer);
        start..start + base + usize::from(k < longer)
    })
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

/// What a run's steps need of every training image besides its pixels,
/// uploaded once per run: labels, one-hot rows and the teacher's soft
/// targets. A step then uploads its images and their indices and gathers
/// its rows on the device; on a GPU the targets were two more host-to-device
/// copies per step.
pub struct Targets<B: Backend> {
    /// [n]
    labels: Tensor<B, 1, Int>,
    /// [n, 10]
    onehot: Tensor<B, 2>,
    /// [n, 10]
    soft: Option<Tensor<B, 2>>,
}

impl<B: Backend> Targets<B> {
    /// `soft`: [n, 10] row-major targets for the whole dataset, when the run has them.
    pub fn new(data: &Dataset, soft: Option<&[f32]>, device: &B::Device) -> Self {
        let n = data.len();
        let labels: Vec<i64> = data.labels.iter().map(|&l| i64::from(l)).collect();
        let mut onehot = vec![0f32; n * CLASSES];
        for (row, &label) in data.labels.iter().enumerate() {
            onehot[row * CLASSES + label as usize] = 1.0;
        }
        Self {
            labels: Tensor::from_data(TensorData::new(labels, [n]), device),
            onehot: Tensor::from_data(TensorData::new(onehot, [n, CLASSES]), device),
            soft: soft.map(|q| Tensor::from_data(TensorData::new(q.to_vec(), [n, CLASSES]), device)),
        }
    }
}

/// The normalised pixels of the images `indices`, [n, 3, 32, 32] on the device.
pub fn images<B: Backend>(data: &Dataset, norm: &Normalizer, indices: &[usize], device: &B::Device) -> Tensor<B, 4> {
    let mut pixels = Vec::with_capacity(indices.len() * PIXELS);
    for &i in indices {
        norm.extend(data, i, &mut pixels);
    }
    Tensor::from_data(TensorData::new(pixels, [indices.len(), CHANNELS, SIDE, SIDE]), device)
}

/// Assembles the batch of `indices`: their images uploaded, their targets
/// gathered from `targets` (made from the same `data`) on the device.
pub fn make_batch<B: Backend>(data: &Dataset, norm: &Normalizer, indices: &[usize], targets: &Targets<B>, device: &B::Device) -> Batch<B> {
    let rows: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    let rows = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [indices.len()]), device);
    Batch {
        images: images(data, norm, indices, device),
        labels: targets.labels.clone().select(0, rows.clone()),
        onehot: targets.onehot.clone().select(0, rows.clone()),
        soft: targets.soft.clone().map(|q| q.select(0, rows)),
    }
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
        let device = Default::default();
        let b = make_batch::<Flex>(&data, &norm, &[3, 7], &Targets::new(&data, None, &device), &device);
        assert_eq!(b.images.dims(), [2, 3, 32, 32]);
        let labels = b.labels.into_data().convert::<i64>().to_vec::<i64>().unwrap();
        assert_eq!(labels, vec![data.labels[3] as i64, data.labels[7] as i64]);
        // image 7, channel 1, row 5, column 9
        let px = b.images.slice([1..2, 1..2, 5..6, 9..10]).into_scalar();
        assert!((px - data.image(7)[1024 + 5 * 32 + 9] as f32 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn batches_are_balanced_and_cover_the_epoch_once() {
        for (n, size) in [(7000, 128), (73_257, 128), (129, 128), (128, 128), (5, 2), (3, 2), (1, 4), (0, 4), (10, 1), (2000, 500)] {
            let order: Vec<usize> = (0..n).rev().collect();
            let sizes: Vec<usize> = batches(&order, size).map(<[usize]>::len).collect();
            assert_eq!(sizes.len(), steps_per_epoch(n, size), "{n} by {size}");
            if sizes.is_empty() {
                continue;
            }
            let (min, max) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
            assert!(max <= size && max - min <= 1 && min >= 2, "{n} by {size}: sizes {min}..{max}");
            let dropped = n - sizes.iter().sum::<usize>();
            // Only single-image batches are dropped.
            assert!(dropped == 0 || max == 2 || size == 1, "{n} by {size}: {dropped} images left out");
            let seen: Vec<usize> = batches(&order, size).flatten().copied().collect();
            assert_eq!(seen, order[..seen.len()], "batches are consecutive slices of the order");
        }
        assert_eq!(steps_per_epoch(7000, 128), 55);
        assert_eq!(batches(&(0..7000).collect::<Vec<_>>(), 128).map(<[usize]>::len).max(), Some(128));
    }
}
