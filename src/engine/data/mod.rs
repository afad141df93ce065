//! Datasets: 32x32 RGB images with labels 0..9, from three sources
//! (`synthetic`, `svhn` .mat files, `idx` MNIST-style files).

pub mod batcher;
pub mod harness;
pub mod idx;
pub mod svhn_mat;
pub mod synthetic;

use std::path::{Path, PathBuf};

use crate::study::config::{DataConfig, DataSource};

pub const SIDE: usize = 32;
pub const CHANNELS: usize = 3;
/// Values per image: [channel, row, column], row-major.
pub const PIXELS: usize = CHANNELS * SIDE * SIDE;
pub const CLASSES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data directory {path} does not exist (set [data] dir in config.toml)")]
    MissingDir { path: PathBuf },
    #[error("data file {path} is missing{hint}")]
    MissingFile { path: PathBuf, hint: String },
    #[error("cannot read data file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("data file {path} is not a valid {format} file: {reason}")]
    Corrupt { path: PathBuf, format: &'static str, reason: String },
    #[error("the {split} set is empty ({from})")]
    Empty { split: &'static str, from: String },
    #[error("train images are {train} but test images are {test} ({path}); both splits must have one image size")]
    SizeMismatch { train: String, test: String, path: PathBuf },
}

/// Images as u8 in [n][channel][row][column] order, labels 0..9.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// Keeps the first `limit` images (0 keeps all).
    pub fn truncate(&mut self, limit: usize) {
        if limit > 0 && limit < self.len() {
            self.labels.truncate(limit);
            self.images.truncate(limit * PIXELS);
        }
    }

    pub fn append(&mut self, other: Dataset) {
        self.images.extend(other.images);
        self.labels.extend(other.labels);
    }
}

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
            let dir = existing_dir(&config.dir)?;
            let mut train = svhn(dir.join("train_32x32.mat"))?;
            if config.use_extra {
                train.append(svhn(dir.join("extra_32x32.mat"))?);
            }
            let test = svhn(dir.join("test_32x32.mat"))?;
            let from = ["train_32x32.mat", "test_32x32.mat"].map(|f| dir.join(f).display().to_string());
            (train, test, "svhn", from)
        }
        DataSource::Idx => {
            let dir = existing_dir(&config.dir)?;
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

fn existing_dir(dir: &Path) -> Result<PathBuf, DataError> {
    if dir.is_dir() {
        Ok(dir.to_path_buf())
    } else {
        Err(DataError::MissingDir { path: dir.to_path_buf() })
    }
}

pub(crate) fn read_file(path: &Path, hint: &str) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::MissingFile { path: path.to_path_buf(), hint: hint.to_string() }
        } else {
            DataError::Io { path: path.to_path_buf(), source }
        }
    })
}

/// Real data compresses a few times at most; a stream that inflates past
/// this many times its compressed size is a zip bomb or garbage, refused
/// before it takes all memory.
const MAX_INFLATION: usize = 1000;

/// Reads a decompressor to its end, or says why not ("does not inflate: ...").
pub(crate) fn inflate(decoder: impl std::io::Read, compressed: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let limit = compressed.saturating_mul(MAX_INFLATION).max(1 << 20);
    let mut out = Vec::new();
    decoder.take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| format!("does not inflate: {e}"))?;
    if out.len() > limit {
        return Err(format!("inflates to more than {MAX_INFLATION} times its {compressed} bytes; refused"));
    }
    Ok(out)
}
