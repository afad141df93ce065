//! Loaders against files written by other tools: the SVHN-layout fixtures in
//! tests/fixtures (written by scipy's MAT writer, checked against
//! EXPECTED.txt, which scipy's reader read back; `make_svhn.py` makes both),
//! and IDX files built here byte by byte.

use std::io::Write;
use std::path::{Path, PathBuf};

use kdtui::engine::data::{idx, svhn_mat, DataError, Dataset, PIXELS, SIDE};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// (file, image, row, col, channel, value) and the first labels, from EXPECTED.txt.
struct Expected {
    pixels: Vec<(String, usize, usize, usize, usize, u8)>,
    train_labels: Vec<u8>,
    test_labels: Vec<u8>,
    train_n: usize,
    test_n: usize,
}

fn expected(dir: &Path) -> Expected {
    let text = std::fs::read_to_string(dir.join("EXPECTED.txt")).unwrap();
    let mut e = Expected { pixels: vec![], train_labels: vec![], test_labels: vec![], train_n: 0, test_n: 0 };
    let numbers = |s: &str| -> Vec<u8> { s.split_whitespace().map(|t| t.parse().unwrap()).collect() };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# labels of the first 12 train images: ") {
            e.train_labels = numbers(rest);
        } else if let Some(rest) = line.strip_prefix("# labels of the first 12 test images: ") {
            e.test_labels = numbers(rest);
        } else if let Some(rest) = line.strip_prefix("# train: X shape [32, 32, 3, ") {
            e.train_n = rest.split(']').next().unwrap().parse().unwrap();
        } else if let Some(rest) = line.strip_prefix("# test: X shape [32, 32, 3, ") {
            e.test_n = rest.split(']').next().unwrap().parse().unwrap();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let n = |i: usize| f[i].parse::<usize>().unwrap();
            e.pixels.push((f[0].to_string(), n(1), n(2), n(3), n(4), n(5) as u8));
        }
    }
    assert!(e.pixels.len() >= 10 && e.train_labels.len() == 12 && e.train_n > 0);
    e
}

fn pixel(d: &Dataset, image: usize, row: usize, col: usize, channel: usize) -> u8 {
    d.image(image)[channel * SIDE * SIDE + row * SIDE + col]
}

fn check_fixture(name: &str) {
    let dir = fixtures().join(name);
    let e = expected(&dir);
    let train = svhn_mat::load(&dir.join("train_32x32.mat")).unwrap();
    let test = svhn_mat::load(&dir.join("test_32x32.mat")).unwrap();
    assert_eq!((train.len(), test.len()), (e.train_n, e.test_n));
    assert_eq!(train.images.len(), e.train_n * PIXELS);
    for (file, image, row, col, channel, value) in &e.pixels {
        let d = if file.starts_with("train") { &train } else { &test };
        assert_eq!(pixel(d, *image, *row, *col, *channel), *value, "{name}/{file} image {image} ({row}, {col}, {channel})");
    }
    // 10 stands for the digit 0.
    let map = |v: &[u8]| v.iter().map(|&l| l % 10).collect::<Vec<_>>();
    assert_eq!(train.labels[..12], map(&e.train_labels)[..]);
    assert_eq!(test.labels[..12], map(&e.test_labels)[..]);
    assert!(train.labels.contains(&0), "label 10 must become 0");
}

#[test]
fn svhn_fixture_with_uint8_labels() {
    check_fixture("svhn-format");
}

#[test]
fn svhn_fixture_with_double_labels() {
    check_fixture("svhn-format-ydouble");
}

#[test]
fn channels_rows_and_columns_are_not_swapped() {
    // The fixtures' channels differ on purpose (make_svhn.py): green is the
    // negative of red and blue is red transposed, in every image. A reader
    // that swaps the channel axis, or rows with columns, breaks both.
    for name in ["svhn-format", "svhn-format-ydouble"] {
        for file in ["train_32x32.mat", "test_32x32.mat"] {
            let d = svhn_mat::load(&fixtures().join(name).join(file)).unwrap();
            let mut asymmetric = 0;
            for i in 0..d.len() {
                for row in 0..SIDE {
                    for col in 0..SIDE {
                        let red = pixel(&d, i, row, col, 0);
                        assert_eq!(pixel(&d, i, row, col, 1), 255 - red, "{name}/{file} image {i} ({row}, {col})");
                        assert_eq!(pixel(&d, i, row, col, 2), pixel(&d, i, col, row, 0), "{name}/{file} image {i} ({row}, {col})");
                        asymmetric += usize::from(red != pixel(&d, i, col, row, 0));
                    }
                }
            }
            assert!(asymmetric > d.len() * 100, "{name}/{file}: the images must not be symmetric");
        }
    }
}

#[test]
fn truncated_and_corrupt_mat_files_name_the_file() {
    let bytes = std::fs::read(fixtures().join("svhn-format-ydouble/train_32x32.mat")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated.mat", bytes[..bytes.len() / 2].to_vec()),
        ("header_only.mat", bytes[..128].to_vec()),
        ("tiny.mat", bytes[..40].to_vec()),
        ("garbled.mat", {
            let mut b = bytes.clone();
            for x in b[200..600].iter_mut() {
                *x ^= 0x5a;
            }
            b
        }),
        ("not_a_mat.mat", b"hello, this is not a MATLAB file at all".repeat(10)),
    ];
    for (name, data) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        let err = svhn_mat::load(&path).unwrap_err();
        assert!(matches!(err, DataError::Corrupt { .. }), "{name}: {err}");
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    let missing = svhn_mat::load(&dir.path().join("train_32x32.mat")).unwrap_err();
    assert!(matches!(missing, DataError::MissingFile { .. }), "{missing}");
    assert!(missing.to_string().contains("train_32x32.mat"));
}

/// A MAT file with a single uncompressed uint8 matrix named `X`, and no `y`.
#[test]
fn mat_without_y_is_an_error() {
    let mut b = vec![b' '; 116];
    b.extend_from_slice(&[0u8; 8]);
    b.extend_from_slice(&0x0100u16.to_le_bytes());
    b.extend_from_slice(b"IM");
    let mut m = Vec::new();
    let mut sub = |ty: u32, data: &[u8]| {
        m.extend_from_slice(&ty.to_le_bytes());
        m.extend_from_slice(&(data.len() as u32).to_le_bytes());
        m.extend_from_slice(data);
        m.resize(m.len().div_ceil(8) * 8, 0);
    };
    sub(6, &[9, 0, 0, 0, 0, 0, 0, 0]); // array flags: class uint8
    sub(5, &[32, 0, 0, 0, 32, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0]); // dims [32, 32, 3, 1]
    sub(1, b"X");
    sub(2, &vec![7u8; PIXELS]);
    b.extend_from_slice(&14u32.to_le_bytes());
    b.extend_from_slice(&(m.len() as u32).to_le_bytes());
    b.extend_from_slice(&m);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("only_x.mat");
    std::fs::write(&path, &b).unwrap();
    let matrices = svhn_mat::parse(&b).unwrap();
    assert_eq!(matrices.len(), 1);
    assert_eq!(matrices[0].dims, vec![32, 32, 3, 1]);
    let err = svhn_mat::load(&path).unwrap_err();
    assert!(err.to_string().contains("no variable `y`"), "{err}");
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_raw_and_gz_are_padded_to_32_and_repeated_to_3_channels() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3;
    let pixels: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), idx_bytes(&[n as u32, 28, 28], &pixels)).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), gz(&idx_bytes(&[n as u32], &[7, 0, 9]))).unwrap();
    let d = idx::load_pair(dir.path(), "train").unwrap().data;
    assert_eq!(d.labels, vec![7, 0, 9]);
    // 28x28 sits at offset (2, 2) of the 32x32 canvas, border zero.
    for ch in 0..3 {
        assert_eq!(pixel(&d, 1, 2 + 5, 2 + 9, ch), pixels[28 * 28 + 5 * 28 + 9]);
        assert_eq!(pixel(&d, 1, 0, 0, ch), 0);
        assert_eq!(pixel(&d, 2, 31, 31, ch), 0);
    }
}

#[test]
fn idx_errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let img = idx_bytes(&[2, 28, 28], &vec![1u8; 2 * 28 * 28]);
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &img[..img.len() - 10]).unwrap();
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx_bytes(&[2], &[1, 2])).unwrap();
    let err = idx::load_pair(dir.path(), "t10k").err().unwrap();
    assert!(err.to_string().contains("t10k-images-idx3-ubyte") && err.to_string().contains("truncated"), "{err}");

    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), &img).unwrap();
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx_bytes(&[2], &[1, 12])).unwrap();
    let err = idx::load_pair(dir.path(), "t10k").err().unwrap();
    assert!(err.to_string().contains("label 12"), "{err}");

    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx_bytes(&[3], &[1, 2, 3])).unwrap();
    let err = idx::load_pair(dir.path(), "t10k").err().unwrap();
    assert!(err.to_string().contains("3 labels for 2 images"), "{err}");

    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte.gz"), b"\x1f\x8b not really gzip").unwrap();
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let err = idx::load_pair(dir.path(), "t10k").err().unwrap();
    assert!(err.to_string().contains("t10k-labels-idx1-ubyte.gz") && err.to_string().contains("gzip"), "{err}");

    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte.gz"), gz(&idx_bytes(&[1], &[4]))).unwrap();
    let big = idx_bytes(&[1, 40, 40], &[0u8; 1600]);
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), big).unwrap();
    let err = idx::load_pair(dir.path(), "t10k").err().unwrap();
    assert!(err.to_string().contains("40x40"), "{err}");
}
