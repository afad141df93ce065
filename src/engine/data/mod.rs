//! Datasets: 32x32 RGB images with labels 0..9, from three sources
//! (`synthetic`, `svhn` .mat files, `idx` MNIST-style files).

pub mod batcher;
mod dataset;
pub mod fetch;
#[cfg(feature = "test-hooks")]
pub mod harness;
pub mod idx;
pub mod svhn_mat;
pub mod synthetic;

use std::path::{Path, PathBuf};

use crate::study::config::{DataConfig, DataSource};

pub use dataset::{DataError, Dataset, CHANNELS, CLASSES, PIXELS, SIDE};

/// Train and test sets plus a description for the header and the report.
pub struct Data {
    pub train: Dataset,
    pub test: Dataset,
    pub description: String,
    /// A digest of both sets' images and labels as loaded: what trained
    /// models and cached teacher targets are keyed by (`Data::digest`).
    pub digest: String,
    /// Facts about the files read, worth a line in the log.
    pub notes: Vec<String>,
}

pub fn load(config: &DataConfig) -> Result<Data, DataError> {
    let mut notes = Vec::new();
    let mut svhn = |path: PathBuf| -> Result<Dataset, DataError> {
        let (d, note) = svhn_mat::load_checked(&path)?;
        notes.push(note);
        Ok(d)
    };
    // Where each split came from, for an error that says where to look.
    let (mut train, mut test, what, from) = match config.source {
        DataSource::Synthetic => {
            let started = std::time::Instant::now();
            let train = synthetic::generate(config.train_size, config.seed, synthetic::Split::Train);
            let test = synthetic::generate(config.test_size, config.seed, synthetic::Split::Test);
            notes.push(format!(
                "synthetic data: {} + {} images generated in {:.2} s",
                train.len(),
                test.len(),
                started.elapsed().as_secs_f64()
            ));
            (train, test, "synthetic", ["[data] train_size".to_string(), "[data] test_size".to_string()])
        }
        DataSource::Svhn => {
            let dir = existing_dir(&config.dir, ", or `kdtui data fetch svhn` to download SVHN into it")?;
            let mut train = svhn(dir.join("train_32x32.mat"))?;
            if config.use_extra {
                train.append(svhn(dir.join(svhn_mat::EXTRA))?);
            }
            let test = svhn(dir.join("test_32x32.mat"))?;
            let from = ["train_32x32.mat", "test_32x32.mat"].map(|f| dir.join(f).display().to_string());
            (train, test, "svhn", from)
        }
        DataSource::Idx => {
            let dir = existing_dir(&config.dir, ", or `kdtui data fetch idx --url BASE` to download an MNIST-format set into it")?;
            let train = idx::load_pair(&dir, "train")?;
            let test = idx::load_pair(&dir, "t10k")?;
            if train.size != test.size {
                let size = |(h, w): (usize, usize)| format!("{h}x{w}");
                return Err(DataError::SizeMismatch { train: size(train.size), test: size(test.size), path: test.images_path });
            }
            let from = [&train, &test].map(|s| s.images_path.display().to_string());
            (train.data, test.data, "idx", from)
        }
    };
    train.truncate(config.train_limit);
    test.truncate(config.test_limit);
    for ((split, set), from) in [("train", &train), ("test", &test)].into_iter().zip(from) {
        if set.is_empty() {
            return Err(DataError::Empty { split, from });
        }
    }
    let description = format!("{what}: {} train / {} test", train.len(), test.len());
    let digest = Data::digest(&train, &test);
    Ok(Data { train, test, description, digest, notes })
}

impl Data {
    /// 16 hex digits of the SHA-256 of the images and labels of both sets,
    /// in order: the same for the same data however it was found (another
    /// directory, `.gz` or not), different as soon as one pixel or label or
    /// the order differs. Teacher checkpoints, cached logits and every run's
    /// checkpoint are keyed by it, so files replaced in the same directory
    /// are never trained on with the old images' teacher.
    pub fn digest(train: &Dataset, test: &Dataset) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for set in [train, test] {
            hasher.update((set.len() as u64).to_le_bytes());
            hasher.update(&set.images);
            hasher.update(&set.labels);
        }
        crate::util::short_digest(&hasher.finalize())
    }
}

fn existing_dir(dir: &Path, fetch: &'static str) -> Result<PathBuf, DataError> {
    if dir.is_dir() {
        Ok(dir.to_path_buf())
    } else {
        Err(DataError::MissingDir { path: dir.to_path_buf(), fetch })
    }
}
