//! The model file kdtui exports (`kdtui export`, and `models/<run_id>.safetensors`
//! in every results directory): a safetensors file that holds a quantized
//! student at its bit width, or a float teacher, with what it takes to run it.
//!
//! Format `kdtui-cnn`, version 1 (docs/MODEL_FORMAT.md):
//! - Metadata (strings): `format`, `format_version`, `network` (JSON: widths,
//!   hidden, precision: w_bits, a_bits, first_last_bits, a_range), `quantized`
//!   (JSON: name -> {bits, shape} of every packed tensor) and `encoding`.
//! - Float tensors (BatchNorm, biases, float layers) as F32 in their own shape;
//!   `input.mean` and `input.std` (F32 [3]) normalise the pixels (x / 255 - mean) / std.
//! - Each quantized weight tensor as U8 [bytes]: level indices l in
//!   0 ..= 2^k - 1, k bits each, packed least significant bit first in the
//!   row-major order of its `shape`. The weight is `2 * (l / (2^k - 1)) - 1`.
//!
//! The file is the model's size: the results table reports its length.

use std::collections::{BTreeMap, HashMap};

use burn::prelude::*;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::cnn::{Cnn, CnnConfig, Slot};
use super::quant::FLOAT_BITS;
use crate::engine::data::batcher::Normalizer;
use crate::engine::data::CHANNELS;

pub const FORMAT: &str = "kdtui-cnn";
pub const FORMAT_VERSION: &str = "1";
const ENCODING: &str = "quantized tensors: U8, k-bit level indices l packed LSB first in row-major order; weight = 2 * (l / (2^k - 1)) - 1";

#[derive(Debug, thiserror::Error)]
pub enum PackedError {
    #[error("not a safetensors file: {0}")]
    NotSafetensors(String),
    #[error("not a kdtui model file (metadata `format` is {0:?}, expected \"{FORMAT}\")")]
    Format(Option<String>),
    #[error("model file format version {0} is not one this kdtui reads (it reads {FORMAT_VERSION})")]
    Version(String),
    #[error("damaged model file: {0}")]
    Damaged(String),
}

#[derive(Serialize, Deserialize)]
struct QuantizedInfo {
    bits: u32,
    shape: Vec<usize>,
}

/// A model file's contents: the network, its input normalisation and the
/// values of every tensor of `CnnConfig::layout`, in layout order
/// (quantized weights as their level indices, as stored).
pub struct Stored {
    pub network: CnnConfig,
    pub normalizer: Normalizer,
    pub values: Vec<Vec<f32>>,
}

/// A model read back from its file.
pub struct Unpacked<B: Backend> {
    pub network: CnnConfig,
    pub normalizer: Normalizer,
    pub model: Cnn<B>,
}

/// Packs `values` (each in 0 ..= 2^bits - 1) at `bits` bits each, LSB first.
pub fn pack_bits(values: impl IntoIterator<Item = u32>, count: usize, bits: u32) -> Vec<u8> {
    let mut out = vec![0u8; (count * bits as usize).div_ceil(8)];
    for (i, v) in values.into_iter().enumerate() {
        for b in 0..bits as usize {
            if v >> b & 1 == 1 {
                let at = i * bits as usize + b;
                out[at / 8] |= 1 << (at % 8);
            }
        }
    }
    out
}

pub fn unpack_bits(bytes: &[u8], count: usize, bits: u32) -> Vec<u32> {
    (0..count)
        .map(|i| {
            (0..bits as usize).fold(0u32, |v, b| {
                let at = i * bits as usize + b;
                v | (u32::from(bytes[at / 8] >> (at % 8) & 1) << b)
            })
        })
        .collect()
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// One tensor's bytes as stored: F32 little-endian, or packed levels.
fn encode_slot(slot: &Slot, values: &[f32]) -> Vec<u8> {
    if slot.bits < FLOAT_BITS {
        // Levels are whole numbers held in floats: exact as u32.
        pack_bits(values.iter().map(|&v| v as u32), values.len(), slot.bits)
    } else {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

fn serialize(network: &CnnConfig, norm: &Normalizer, data: Vec<Vec<u8>>) -> Vec<u8> {
    let layout = network.layout();
    let quantized: BTreeMap<&str, QuantizedInfo> = layout
        .iter()
        .filter(|s| s.bits < FLOAT_BITS)
        .map(|s| (s.name.as_str(), QuantizedInfo { bits: s.bits, shape: s.shape.clone() }))
        .collect();
    let metadata = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("format_version".to_string(), FORMAT_VERSION.to_string()),
        ("network".to_string(), serde_json::to_string(network).expect("network serialises")),
        ("quantized".to_string(), serde_json::to_string(&quantized).expect("quantized serialises")),
        ("encoding".to_string(), ENCODING.to_string()),
    ]);
    let input: Vec<(String, Vec<u8>)> = [("input.mean", norm.mean), ("input.std", norm.std)]
        .into_iter()
        .map(|(name, v)| (name.to_string(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let mut views: Vec<(String, TensorView)> = layout
        .iter()
        .zip(&data)
        .map(|(slot, bytes)| {
            let (dtype, shape) = if slot.bits < FLOAT_BITS { (Dtype::U8, vec![bytes.len()]) } else { (Dtype::F32, slot.shape.clone()) };
            (slot.name.clone(), TensorView::new(dtype, shape, bytes).expect("sizes follow the layout"))
        })
        .collect();
    for (name, bytes) in &input {
        views.push((name.clone(), TensorView::new(Dtype::F32, vec![CHANNELS], bytes).expect("three floats")));
    }
    sorted_metadata(safetensors::serialize(views, Some(metadata)).expect("in-memory serialisation"))
}

/// safetensors writes the metadata map in `HashMap` order, which changes
/// from process to process: the same model gave files that differ in their
/// bytes (`kdtui export` against the plan's own file). The header again with
/// every key sorted (tensor entries too; readers go by their offsets): the
/// same length, as only the order moves.
fn sorted_metadata(mut file: Vec<u8>) -> Vec<u8> {
    let len = u64::from_le_bytes(file[..8].try_into().expect("an 8-byte length")) as usize;
    let text = std::str::from_utf8(&file[8..8 + len]).expect("safetensors writes a UTF-8 header");
    let mut header: BTreeMap<String, serde_json::Value> = serde_json::from_str(text.trim_end()).expect("its own header parses");
    if let Some(meta) = header.get_mut("__metadata__") {
        let sorted: BTreeMap<String, String> = serde_json::from_value(meta.take()).expect("metadata is strings");
        *meta = serde_json::to_value(sorted).expect("strings serialise");
    }
    let mut sorted = serde_json::to_string(&header).expect("the header serialises").into_bytes();
    assert!(sorted.len() <= len, "the sorted header grew");
    sorted.resize(len, b' ');
    file[8..8 + len].copy_from_slice(&sorted);
    file
}

/// The model file of `model` (of shape `network`, inputs normalised by `norm`).
pub fn pack<B: Backend>(model: &Cnn<B>, network: &CnnConfig, norm: &Normalizer) -> Vec<u8> {
    let data = network.layout().iter().zip(model.stored_values()).map(|(slot, values)| encode_slot(slot, &values)).collect();
    serialize(network, norm, data)
}

/// Length in bytes of the model file of any model of shape `network`: the
/// model size kdtui reports. (The header does not depend on the values.)
pub fn file_len(network: &CnnConfig) -> u64 {
    let data = network.layout().iter().map(|slot| encode_slot(slot, &vec![0.0; numel(&slot.shape)])).collect();
    serialize(network, &Normalizer::new([0.0; CHANNELS], [1.0; CHANNELS]), data).len() as u64
}

/// Reads a model file onto `device`.
pub fn unpack<B: Backend>(bytes: &[u8], device: &B::Device) -> Result<Unpacked<B>, PackedError> {
    let stored = read(bytes)?;
    let model = stored.model(device);
    Ok(Unpacked { network: stored.network, normalizer: stored.normalizer, model })
}

impl Stored {
    /// The float engine's model of these values.
    pub fn model<B: Backend>(&self, device: &B::Device) -> Cnn<B> {
        let tensors = self.values.iter().map(|v| Tensor::<B, 1>::from_data(TensorData::new(v.clone(), [v.len()]), device));
        Cnn::from_stored(&self.network, tensors.collect(), device)
    }
}

/// Reads a model file's values, checked against its network's layout.
pub fn read(bytes: &[u8]) -> Result<Stored, PackedError> {
    let damaged = |why: String| PackedError::Damaged(why);
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| PackedError::NotSafetensors(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    match meta.get("format") {
        Some(f) if f == FORMAT => {}
        other => return Err(PackedError::Format(other.cloned())),
    }
    let version = meta.get("format_version").cloned().unwrap_or_default();
    if version != FORMAT_VERSION {
        return Err(PackedError::Version(version));
    }
    let network: CnnConfig = meta
        .get("network")
        .ok_or_else(|| damaged("no `network` in its metadata".into()))
        .and_then(|n| serde_json::from_str(n).map_err(|e| damaged(format!("metadata `network`: {e}"))))?;
    let p = network.precision;
    // Sizes beyond any CNN of this shape would only overflow the arithmetic below.
    let size_ok = |n: usize| (1..=1 << 16).contains(&n);
    let sizes_ok = network.widths.iter().all(|&w| size_ok(w)) && size_ok(network.hidden);
    let bits_ok = ![p.w_bits, p.a_bits, p.first_last_bits].contains(&0) && p.a_range.is_finite() && p.a_range > 0.0;
    if !(sizes_ok && bits_ok) {
        return Err(damaged(format!("metadata `network` describes no network: {network:?}")));
    }
    let file = SafeTensors::deserialize(bytes).map_err(|e| PackedError::NotSafetensors(e.to_string()))?;
    let floats = |name: &str, shape: &[usize]| -> Result<Vec<f32>, PackedError> {
        let t = file.tensor(name).map_err(|_| damaged(format!("tensor `{name}` is missing")))?;
        if t.dtype() != Dtype::F32 || t.shape() != shape {
            return Err(damaged(format!("tensor `{name}` is {:?} {:?}, expected F32 {shape:?}", t.dtype(), t.shape())));
        }
        Ok(t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
    };
    let mut values = Vec::new();
    for slot in network.layout() {
        let n = numel(&slot.shape);
        let slot_values = if slot.bits < FLOAT_BITS {
            let t = file.tensor(&slot.name).map_err(|_| damaged(format!("tensor `{}` is missing", slot.name)))?;
            let want = (n * slot.bits as usize).div_ceil(8);
            if t.dtype() != Dtype::U8 || t.shape() != [want] {
                return Err(damaged(format!(
                    "tensor `{}` is {:?} {:?}, expected U8 [{want}] ({n} {}-bit levels)",
                    slot.name,
                    t.dtype(),
                    t.shape(),
                    slot.bits
                )));
            }
            unpack_bits(t.data(), n, slot.bits).into_iter().map(|l| l as f32).collect()
        } else {
            floats(&slot.name, &slot.shape)?
        };
        values.push(slot_values);
    }
    let three = |name: &str| -> Result<[f32; CHANNELS], PackedError> {
        let v = floats(name, &[CHANNELS])?;
        Ok([v[0], v[1], v[2]])
    };
    let normalizer = Normalizer::new(three("input.mean")?, three("input.std")?);
    if normalizer.std.iter().chain(&normalizer.mean).any(|v| !v.is_finite()) || normalizer.std.iter().any(|&s| s <= 0.0) {
        return Err(damaged(format!(
            "`input.mean` must be finite and `input.std` positive, are {:?} and {:?}",
            normalizer.mean, normalizer.std
        )));
    }
    Ok(Stored { network, normalizer, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::Precision;
    use burn::backend::Flex;

    #[test]
    fn bits_round_trip_at_every_width() {
        for bits in 1..=8u32 {
            let values: Vec<u32> = (0..37u32).map(|i| (i * 7 + 3) % (1 << bits)).collect();
            let packed = pack_bits(values.iter().copied(), values.len(), bits);
            assert_eq!(packed.len(), (37 * bits as usize).div_ceil(8));
            assert_eq!(unpack_bits(&packed, values.len(), bits), values, "{bits} bits");
        }
        // LSB first: levels 1, 2, 3, 0 at 2 bits are 0b00_11_10_01.
        assert_eq!(pack_bits([1, 2, 3, 0], 4, 2), vec![0b0011_1001]);
    }

    fn student() -> CnnConfig {
        CnnConfig { widths: [4, 8, 8], hidden: 16, precision: Precision { w_bits: 2, a_bits: 2, first_last_bits: 32, a_range: 3.0 } }
    }

    #[test]
    fn file_len_is_the_length_of_every_file_of_that_network() {
        let network = student();
        let norm = Normalizer::new([0.4, 0.5, 0.6], [0.2, 0.25, 0.3]);
        let model = network.init::<Flex>(&Default::default());
        assert_eq!(pack(&model, &network, &norm).len() as u64, file_len(&network));
        let teacher = CnnConfig { precision: Precision::FLOAT, ..network };
        let model = teacher.init::<Flex>(&Default::default());
        assert_eq!(pack(&model, &teacher, &norm).len() as u64, file_len(&teacher));
    }

    /// The packed model computes bit for bit what the trained one did.
    #[test]
    fn a_packed_student_gives_the_very_logits_of_the_trained_one() {
        use burn::backend::Autodiff;
        use burn::module::AutodiffModule;
        use burn::tensor::Distribution;
        let device = Default::default();
        let network = student();
        let model = network.init::<Autodiff<Flex>>(&device);
        // A forward pass in training mode moves BatchNorm's running statistics off their start.
        let x = Tensor::<Autodiff<Flex>, 4>::random([8, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let _ = model.forward(x);
        let trained = model.valid();
        let norm = Normalizer::new([0.4, 0.5, 0.6], [0.2, 0.25, 0.3]);
        let back = unpack::<Flex>(&pack(&trained, &network, &norm), &device).unwrap();
        assert_eq!(back.network, network);
        assert_eq!((back.normalizer.mean, back.normalizer.std), (norm.mean, norm.std));
        let x = Tensor::<Flex, 4>::random([16, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let want = trained.forward(x.clone()).into_data().to_vec::<f32>().unwrap();
        let got = back.model.forward(x).into_data().to_vec::<f32>().unwrap();
        assert_eq!(want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), got.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
    }

    #[test]
    fn damaged_and_foreign_files_are_refused_with_a_reason() {
        let network = student();
        let norm = Normalizer::new([0.4, 0.5, 0.6], [0.2, 0.25, 0.3]);
        let bytes = pack(&network.init::<Flex>(&Default::default()), &network, &norm);
        assert!(unpack::<Flex>(&bytes, &Default::default()).is_ok());
        let e = unpack::<Flex>(&bytes[..bytes.len() - 1], &Default::default()).err().unwrap();
        assert!(matches!(e, PackedError::NotSafetensors(_)), "{e}");
        let e = unpack::<Flex>(b"hello", &Default::default()).err().unwrap();
        assert!(matches!(e, PackedError::NotSafetensors(_)), "{e}");
        let other = safetensors::serialize(Vec::<(String, TensorView)>::new(), None).unwrap();
        let e = unpack::<Flex>(&other, &Default::default()).err().unwrap();
        assert!(e.to_string().contains("not a kdtui model file"), "{e}");
    }
}
