//! Reader for the SVHN cropped-digit files: MATLAB v5 (level 5) MAT files whose
//! data elements are zlib-compressed matrices `X` (uint8 [32, 32, 3, N],
//! column-major) and `y` ([N, 1], uint8 or double, 10 meaning digit 0).

use std::path::Path;

use flate2::read::ZlibDecoder;
use md5::Digest;

use super::dataset::{read_file, DataError, Dataset, CHANNELS, PIXELS, SIDE};

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

const HINT: &str = "; `kdtui data fetch svhn` downloads the official SVHN files into [data] dir";
const HINT_EXTRA: &str = " (use_extra = true reads it); `kdtui data fetch svhn --extra` downloads it into [data] dir";

/// A numeric matrix read from the file: its name, dimensions and values.
#[derive(Debug)]
pub struct Matrix {
    pub name: String,
    pub dims: Vec<usize>,
    pub values: Values,
}

#[derive(Debug)]
pub enum Values {
    U8(Vec<u8>),
    F64(Vec<f64>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::U8(v) => v.len(),
            Values::F64(v) => v.len(),
        }
    }
}

/// The extra training split, read only with `use_extra = true`.
pub const EXTRA: &str = "extra_32x32.mat";

/// MD5 sums of the official files, to tell a user whether theirs is one.
pub const OFFICIAL_MD5: [(&str, &str); 3] = [
    ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    (EXTRA, "a93ce644f1a588dc4d68dda5feec44a7"),
];

/// Loads one SVHN split file into a dataset.
pub fn load(path: &Path) -> Result<Dataset, DataError> {
    load_checked(path).map(|(d, _)| d)
}

/// Loads a split file and says whether it is byte for byte the official one.
pub fn load_checked(path: &Path) -> Result<(Dataset, String), DataError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let bytes = read_file(path, if name == EXTRA { HINT_EXTRA } else { HINT })?;
    let dataset = parse_dataset(path, &bytes)?;
    let md5 = format!("{:x}", md5::Md5::digest(&bytes));
    let note = match OFFICIAL_MD5.iter().find(|(n, _)| *n == name) {
        Some((_, official)) if *official == md5 => format!("{} is the official SVHN file (MD5 {md5})", path.display()),
        Some(_) => format!("{} is not the official SVHN file (MD5 {md5}); results are not comparable with SVHN's", path.display()),
        None => format!("{}: MD5 {md5}", path.display()),
    };
    Ok((dataset, note))
}

fn parse_dataset(path: &Path, bytes: &[u8]) -> Result<Dataset, DataError> {
    dataset(bytes).map_err(|reason| DataError::Corrupt { path: path.to_path_buf(), format: "MATLAB v5 .mat", reason })
}

/// The dataset held by the bytes of an SVHN .mat file.
pub fn dataset(bytes: &[u8]) -> Result<Dataset, String> {
    let matrices = parse(bytes)?;
    let find = |name: &str| matrices.iter().find(|m| m.name == name);
    let x = find("X").ok_or("it has no variable `X`")?;
    let y = find("y").ok_or("it has no variable `y`")?;
    to_dataset(x, y)
}

fn to_dataset(x: &Matrix, y: &Matrix) -> Result<Dataset, String> {
    if x.dims.len() != 4 || x.dims[0] != SIDE || x.dims[1] != SIDE || x.dims[2] != CHANNELS {
        return Err(format!("`X` has shape {:?}, expected [32, 32, 3, N]", x.dims));
    }
    let n = x.dims[3];
    let Values::U8(pixels) = &x.values else {
        return Err("`X` is not uint8".into());
    };
    let y_len = element_count(&y.dims).ok_or("`y` has dimensions whose product overflows")?;
    if y_len != n || y.dims.iter().filter(|&&d| d != 1).count() > 1 {
        return Err(format!("`y` has shape {:?}, expected [{n}, 1] to match `X`", y.dims));
    }
    let labels = (0..n)
        .map(|i| {
            let raw = match &y.values {
                Values::U8(v) => v[i] as f64,
                Values::F64(v) => v[i],
            };
            if raw.fract() != 0.0 || !(1.0..=10.0).contains(&raw) {
                return Err(format!("label {raw} of image {i} is outside 1..10"));
            }
            Ok((raw as u8) % 10)
        })
        .collect::<Result<Vec<u8>, String>>()?;
    // Column-major [row, col, channel, image] -> per image [channel][row][col].
    let mut images = vec![0u8; n * PIXELS];
    for (img, out) in images.chunks_exact_mut(PIXELS).enumerate() {
        let src = &pixels[img * PIXELS..(img + 1) * PIXELS];
        for ch in 0..CHANNELS {
            let plane = &src[ch * SIDE * SIDE..(ch + 1) * SIDE * SIDE];
            let dst = &mut out[ch * SIDE * SIDE..(ch + 1) * SIDE * SIDE];
            for col in 0..SIDE {
                for row in 0..SIDE {
                    dst[row * SIDE + col] = plane[col * SIDE + row];
                }
            }
        }
    }
    Ok(Dataset { images, labels })
}

/// Parses every numeric matrix of a level-5 MAT file.
pub fn parse(bytes: &[u8]) -> Result<Vec<Matrix>, String> {
    if bytes.len() < 128 {
        return Err(format!("it is {} bytes long, shorter than the 128-byte MAT header", bytes.len()));
    }
    let little = match &bytes[126..128] {
        b"IM" => true,
        b"MI" => false,
        _ => return Err("the header has no MATLAB v5 endian marker (is it a v7.3/HDF5 or v4 file?)".into()),
    };
    let r = Reader { little };
    let mut out = Vec::new();
    let mut pos = 128;
    while pos < bytes.len() {
        if bytes.len() - pos < 8 {
            // Trailing padding is harmless.
            if bytes[pos..].iter().all(|&b| b == 0) {
                break;
            }
            return Err(format!("truncated data element tag at byte {pos}"));
        }
        let (ty, size, data_at) = r.tag(bytes, pos)?;
        let end = data_at
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| format!("data element at byte {pos} claims {size} bytes but the file ends at {} (truncated?)", bytes.len()))?;
        let data = &bytes[data_at..end];
        match ty {
            MI_COMPRESSED => {
                let inflated = super::dataset::inflate(ZlibDecoder::new(data), data.len())
                    .map_err(|e| format!("compressed element at byte {pos} {e}"))?;
                let (ity, isize, iat) = r.tag(&inflated, 0)?;
                if ity == MI_MATRIX {
                    let iend = iat
                        .checked_add(isize)
                        .filter(|&e| e <= inflated.len())
                        .ok_or_else(|| format!("compressed element at byte {pos} inflates to a truncated matrix"))?;
                    if let Some(m) = r.matrix(&inflated[iat..iend])? {
                        out.push(m);
                    }
                }
                // Compressed elements are not padded.
                pos = end;
            }
            MI_MATRIX => {
                if let Some(m) = r.matrix(data)? {
                    out.push(m);
                }
                pos = pad8(end - 128) + 128;
            }
            _ => pos = pad8(end - 128) + 128,
        }
    }
    Ok(out)
}

/// The number of values a shape holds; None when it overflows (a crafted
/// header must not wrap around to a small count, found by fuzzing).
fn element_count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

struct Reader {
    little: bool,
}

impl Reader {
    fn u32_at(&self, b: &[u8], at: usize) -> Result<u32, String> {
        let s: [u8; 4] = b.get(at..at + 4).and_then(|s| s.try_into().ok()).ok_or_else(|| format!("truncated at byte {at}"))?;
        Ok(if self.little { u32::from_le_bytes(s) } else { u32::from_be_bytes(s) })
    }

    /// Returns (type, byte count, offset of the data) of the element at `at`,
    /// handling the small-element form that packs type and size in 4 bytes.
    fn tag(&self, b: &[u8], at: usize) -> Result<(u32, usize, usize), String> {
        let first = self.u32_at(b, at)?;
        if first >> 16 != 0 {
            Ok((first & 0xffff, (first >> 16) as usize, at + 4))
        } else {
            Ok((first, self.u32_at(b, at + 4)? as usize, at + 8))
        }
    }

    /// Sub-elements in order: array flags, dimensions, name, real part.
    fn matrix(&self, b: &[u8]) -> Result<Option<Matrix>, String> {
        let mut pos = 0;
        let mut next = || -> Result<(u32, &[u8]), String> {
            let (ty, size, at) = self.tag(b, pos)?;
            let data = b.get(at..at + size).ok_or("matrix sub-element is truncated")?;
            pos = if at == pos + 4 { pos + 8 } else { at + pad8(size) };
            Ok((ty, data))
        };
        let (_, flags) = next()?;
        if flags.len() < 4 {
            return Err("matrix array flags are truncated".into());
        }
        let class = self.u32_at(flags, 0)? & 0xff;
        // Only numeric classes (6 double .. 13 uint32, 14/15 int64/uint64) hold pixel data.
        if !(6..=15).contains(&class) {
            return Ok(None);
        }
        let (_, dims_raw) = next()?;
        let dims = (0..dims_raw.len() / 4).map(|i| self.u32_at(dims_raw, i * 4).map(|d| d as usize)).collect::<Result<Vec<_>, _>>()?;
        let (_, name) = next()?;
        let name = String::from_utf8_lossy(name).to_string();
        let (ty, real) = next()?;
        let values = self.numbers(ty, real, class)?;
        let expected = element_count(&dims).ok_or_else(|| format!("`{name}` has dimensions {dims:?} whose product overflows"))?;
        if values.len() != expected {
            return Err(format!("`{name}` has {} values but its shape {dims:?} needs {expected} (truncated?)", values.len()));
        }
        Ok(Some(Matrix { name, dims, values }))
    }

    /// MATLAB may store a class's values in a smaller type; widen them to the
    /// class: uint8 stays bytes, everything else becomes f64.
    fn numbers(&self, ty: u32, d: &[u8], class: u32) -> Result<Values, String> {
        const UINT8_CLASS: u32 = 9;
        if class == UINT8_CLASS && ty == MI_UINT8 {
            return Ok(Values::U8(d.to_vec()));
        }
        let width = match ty {
            MI_INT8 | MI_UINT8 => 1,
            MI_INT16 | MI_UINT16 => 2,
            MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
            MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
            other => return Err(format!("unsupported numeric data type {other}")),
        };
        let get = |i: usize| -> f64 {
            let s = &d[i * width..(i + 1) * width];
            let mut a = [0u8; 8];
            if self.little {
                a[..width].copy_from_slice(s);
            } else {
                for (k, &byte) in s.iter().rev().enumerate() {
                    a[k] = byte;
                }
            }
            match ty {
                MI_INT8 => a[0] as i8 as f64,
                MI_UINT8 => a[0] as f64,
                MI_INT16 => i16::from_le_bytes([a[0], a[1]]) as f64,
                MI_UINT16 => u16::from_le_bytes([a[0], a[1]]) as f64,
                MI_INT32 => i32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                MI_UINT32 => u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                MI_SINGLE => f32::from_le_bytes([a[0], a[1], a[2], a[3]]) as f64,
                MI_DOUBLE => f64::from_le_bytes(a),
                MI_INT64 => i64::from_le_bytes(a) as f64,
                _ => u64::from_le_bytes(a) as f64,
            }
        };
        let values: Vec<f64> = (0..d.len() / width).map(get).collect();
        if class == UINT8_CLASS {
            if values.iter().any(|v| !(0.0..=255.0).contains(v)) {
                return Err("uint8 matrix holds values outside 0..255".into());
            }
            return Ok(Values::U8(values.into_iter().map(|v| v as u8).collect()));
        }
        Ok(Values::F64(values))
    }
}
