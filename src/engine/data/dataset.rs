//! What every data source makes and every loader shares: the image
//! geometry, `Dataset`, the errors, and guarded reading of files.

use std::path::{Path, PathBuf};

pub const SIDE: usize = 32;
pub const CHANNELS: usize = 3;
/// Values per image: [channel, row, column], row-major.
pub const PIXELS: usize = CHANNELS * SIDE * SIDE;
pub const CLASSES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("data directory {path} does not exist (set [data] dir in the config{fetch})")]
    MissingDir { path: PathBuf, fetch: &'static str },
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
