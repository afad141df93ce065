//! MNIST-format IDX files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte`, raw
//! or `.gz`). Grayscale images up to 32x32 are centred on a 32x32 canvas and
//! repeated into 3 channels, so every model sees the same input shape.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{read_file, DataError, Dataset, CHANNELS, CLASSES, PIXELS, SIDE};

const FORMAT: &str = "IDX";

/// One split read from IDX files: the dataset, and the images' own size
/// before padding (train and test must agree on it).
pub struct Split {
    pub data: Dataset,
    pub size: (usize, usize),
    pub images_path: PathBuf,
}

/// Loads `<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]`.
pub fn load_pair(dir: &Path, prefix: &str) -> Result<Split, DataError> {
    let images_path = find(dir, &format!("{prefix}-images-idx3-ubyte"));
    let labels_path = find(dir, &format!("{prefix}-labels-idx1-ubyte"));
    let (dims, pixels) = read_idx(&images_path, 3)?;
    let (ldims, labels) = read_idx(&labels_path, 1)?;
    let corrupt = |path: &Path, reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        format: FORMAT,
        reason,
    };
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if h > SIDE || w > SIDE || h == 0 || w == 0 {
        return Err(corrupt(&images_path, format!("images are {h}x{w}; kdtui takes at most {SIDE}x{SIDE}")));
    }
    if ldims[0] != n {
        return Err(corrupt(&labels_path, format!("it has {} labels for {n} images in {}", ldims[0], images_path.display())));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= CLASSES) {
        return Err(corrupt(&labels_path, format!("label {l} of item {i} is outside 0..9")));
    }
    let (top, left) = ((SIDE - h) / 2, (SIDE - w) / 2);
    let mut images = vec![0u8; n * PIXELS];
    for (img, out) in images.chunks_exact_mut(PIXELS).enumerate() {
        let src = &pixels[img * h * w..(img + 1) * h * w];
        for ch in 0..CHANNELS {
            for r in 0..h {
                let dst = ch * SIDE * SIDE + (top + r) * SIDE + left;
                out[dst..dst + w].copy_from_slice(&src[r * w..(r + 1) * w]);
            }
        }
    }
    Ok(Split {
        data: Dataset { images, labels },
        size: (h, w),
        images_path,
    })
}

fn find(dir: &Path, stem: &str) -> PathBuf {
    let raw = dir.join(stem);
    let gz = dir.join(format!("{stem}.gz"));
    if !raw.exists() && gz.exists() {
        gz
    } else {
        raw
    }
}

/// Reads an unsigned-byte IDX file with `rank` dimensions: (dims, data).
pub fn read_idx(path: &Path, rank: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        format: FORMAT,
        reason,
    };
    let raw = read_file(path, " (put MNIST-style IDX files, raw or .gz, into [data] dir)")?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| corrupt(format!("gzip stream does not inflate: {e}")))?;
        out
    } else {
        raw
    };
    parse(&bytes, rank).map_err(corrupt)
}

/// Parses IDX bytes of unsigned-byte type and the given rank.
pub fn parse(bytes: &[u8], rank: usize) -> Result<(Vec<usize>, Vec<u8>), String> {
    if bytes.len() < 4 {
        return Err("shorter than the 4-byte magic number".into());
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err("bad magic number (expected 00 00 08 0N)".into());
    }
    if bytes[2] != 0x08 {
        return Err(format!("element type 0x{:02x}; only unsigned bytes (0x08) are supported", bytes[2]));
    }
    if bytes[3] as usize != rank {
        return Err(format!("{} dimensions, expected {rank}", bytes[3]));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err("truncated header".into());
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or("dimensions overflow")?;
    let data = &bytes[header..];
    if data.len() != expected {
        return Err(format!(
            "header promises {expected} bytes of data ({dims:?}) but {} follow (truncated?)",
            data.len()
        ));
    }
    Ok((dims, data.to_vec()))
}
