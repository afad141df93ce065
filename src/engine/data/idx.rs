//! MNIST-format IDX files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte`, raw
//! or `.gz`). Grayscale images up to 32x32 are centred on a 32x32 canvas and
//! repeated into 3 channels, so every model sees the same input shape.

use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::dataset::{read_file, DataError, Dataset, CHANNELS, CLASSES, PIXELS, SIDE};

const FORMAT: &str = "IDX";

/// The four files of a set, without `.gz`, each with its rank: images
/// [n, h, w], labels [n].
pub const FILES: [(&str, usize); 4] =
    [("train-images-idx3-ubyte", 3), ("train-labels-idx1-ubyte", 1), ("t10k-images-idx3-ubyte", 3), ("t10k-labels-idx1-ubyte", 1)];

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
    let corrupt = |path: &Path, reason: String| DataError::Corrupt { path: path.to_path_buf(), format: FORMAT, reason };
    let images = read_file(&images_path, HINT)?;
    let images = decode(images, 3).map_err(|e| corrupt(&images_path, e))?;
    let labels = read_file(&labels_path, HINT)?;
    let labels = decode(labels, 1).map_err(|e| corrupt(&labels_path, e))?;
    let (data, size) = pair(images, labels).map_err(|e| match e {
        PairError::Images(why) => corrupt(&images_path, why),
        PairError::Labels(why) => corrupt(&labels_path, why.replace("{images}", &images_path.display().to_string())),
    })?;
    Ok(Split { data, size, images_path })
}

const HINT: &str = " (put MNIST-style IDX files, raw or .gz, into [data] dir; `kdtui data fetch idx --url BASE` downloads them)";

/// Which of the two files a pairing problem is in.
pub enum PairError {
    Images(String),
    Labels(String),
}

/// Images [n, h, w] and labels [n] as one dataset on the 32x32 RGB canvas,
/// and the images' own size.
pub fn pair((dims, pixels): (Vec<usize>, Vec<u8>), (ldims, labels): (Vec<usize>, Vec<u8>)) -> Result<(Dataset, (usize, usize)), PairError> {
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if h > SIDE || w > SIDE || h == 0 || w == 0 {
        return Err(PairError::Images(format!("images are {h}x{w}; kdtui takes at most {SIDE}x{SIDE}")));
    }
    if ldims[0] != n {
        return Err(PairError::Labels(format!("it has {} labels for {n} images in {{images}}", ldims[0])));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= CLASSES) {
        return Err(PairError::Labels(format!("label {l} of item {i} is outside 0..9")));
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
    Ok((Dataset { images, labels }, (h, w)))
}

/// The file of `stem` that the loader reads: the raw one, else its `.gz`.
pub fn find(dir: &Path, stem: &str) -> PathBuf {
    let raw = dir.join(stem);
    let gz = dir.join(format!("{stem}.gz"));
    if !raw.exists() && gz.exists() {
        gz
    } else {
        raw
    }
}

/// The bytes of an IDX file, raw or gzipped, as (dims, data).
pub fn decode(raw: Vec<u8>, rank: usize) -> Result<(Vec<usize>, Vec<u8>), String> {
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        super::dataset::inflate(GzDecoder::new(raw.as_slice()), raw.len()).map_err(|e| format!("gzip stream {e}"))?
    } else {
        raw
    };
    parse(&bytes, rank)
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
    let dims: Vec<usize> = (0..rank).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or("dimensions overflow")?;
    let data = &bytes[header..];
    if data.len() != expected {
        return Err(format!("header promises {expected} bytes of data ({dims:?}) but {} follow (truncated?)", data.len()));
    }
    Ok((dims, data.to_vec()))
}
