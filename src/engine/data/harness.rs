//! What the fuzz targets (`fuzz/`) and `tests/fuzz_smoke.rs` check on
//! arbitrary bytes: the file readers return a dataset or an error and never
//! panic, and a dataset they return is whole (one label per image, every
//! label a class). Public so that the nightly-only fuzz crate and the stable
//! test suite run the same checks.

use super::dataset::{Dataset, CLASSES, PIXELS};
use super::{idx, svhn_mat};

fn check(d: &Dataset) {
    assert_eq!(d.images.len(), d.labels.len() * PIXELS, "images and labels disagree");
    assert!(d.labels.iter().all(|&l| (l as usize) < CLASSES), "a label outside 0..9");
}

/// Bytes as an SVHN `.mat` file; whether they gave a dataset (then checked).
pub fn mat(bytes: &[u8]) -> bool {
    let parsed = svhn_mat::dataset(bytes);
    if let Ok(d) = &parsed {
        check(d);
    }
    parsed.is_ok()
}

/// Bytes as a pair of IDX files (raw or gzipped): the first byte says where
/// the images file ends and the labels file begins. Whether they gave a
/// dataset (then checked).
pub fn idx(bytes: &[u8]) -> bool {
    let Some((&cut, rest)) = bytes.split_first() else { return false };
    let at = rest.len() * cut as usize / 256;
    let (images, labels) = rest.split_at(at);
    let images = idx::decode(images.to_vec(), 3);
    let labels = idx::decode(labels.to_vec(), 1);
    if let (Ok(images), Ok(labels)) = (images, labels) {
        assert_eq!(images.0.len(), 3);
        assert_eq!(labels.0.len(), 1);
        if let Ok((d, _)) = idx::pair(images, labels) {
            check(&d);
            return true;
        }
    }
    false
}
