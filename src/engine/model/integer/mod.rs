//! The integer engine: a quantized student run as integers, not simulated
//! in floats.
//!
//! In training (and in the float engine) a k-bit student is simulated:
//! its weights and activations take only 2^k values, but every product is
//! an fp32 product. Here each hidden layer is what those values make it:
//!
//! - a weight of level l (0 ..= n, n = 2^k - 1) is (2l - n) / n, and an
//!   activation of code a is a * d (d = range / (2^k_a - 1)), so a conv's
//!   output is S * d / n with S = sum (2l - n) a, an integer sum of i8 by u8
//!   products (`dot`);
//! - BatchNorm (running statistics: y = conv * scale + shift) and the
//!   activation quantizer (code = round(clamp(y, 0, range) / d)) are
//!   monotone in S, so the code is the number of per-channel integer
//!   thresholds S passes: code >= j iff sign * S >= T_j, the sign being the
//!   sign of BatchNorm's scale (FINN's streamlining);
//! - max-pooling commutes with a monotone quantizer, so it pools codes.
//!
//! The first conv (float pixels, `first.rs`) and the classifier run in
//! fp32 with the weights the float engine uses (a float first layer has no
//! integer weights to be exact with); they are 14% of the default
//! student's multiply-adds. Codes are stored one per byte, channels last and zero-padded,
//! so a 3x3 conv reads 9 taps of contiguous channels.
//!
//! The result equals the simulated student except where the float engine's
//! own rounding puts a value on the other side of a threshold from its
//! exact value: `kdtui eval` counts those images (docs/INTEGER.md).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::cnn::{conv_layers, CnnConfig, Precision};
use super::kernels::cpu::Act;
use super::kernels::Activation;
use super::quant::FLOAT_BITS;
use crate::engine::data::batcher::Normalizer;
use crate::engine::data::{CHANNELS, CLASSES, PIXELS, SIDE};

mod bits;
pub mod dot;
mod first;
mod layer;
pub mod speed;
mod tile;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use bits::BitKernel;
pub use dot::Kernel;
use first::FirstLayer;
pub use layer::{Bits, Fold, Form, IntLayer, Work};

#[derive(Debug, thiserror::Error)]
pub enum IntError {
    #[error(
        "the integer engine runs students whose weights and activations are both quantized (1..8 bits); this model has {w_bits}-bit weights and {a_bits}-bit activations (32 = float): use --engine float"
    )]
    NotQuantized { w_bits: u32, a_bits: u32 },
    #[error("the model's values do not fit its network ({0})")]
    Shape(String),
}

/// Channels rounded up to whole groups of 4 (one `vpdpbusd` lane).
fn group4(c: usize) -> usize {
    c.div_ceil(4) * 4
}

/// BatchNorm's inference scale and shift per channel, in f32 as the float
/// engine computes them (`norm::BatchNorm2d`): scale = gamma / sqrt(var +
/// eps), shift = beta - mean * scale.
fn fold_norm([gamma, beta, mean, var]: [&[f32]; 4]) -> (Vec<f32>, Vec<f32>) {
    let eps = 1e-5f64 as f32;
    let scale: Vec<f32> = gamma.iter().zip(var).map(|(&g, &v)| g / (v + eps).sqrt()).collect();
    let shift = beta.iter().zip(mean).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
    (scale, shift)
}

/// The quantizer's constants: (range, up = levels / range, down = range / levels).
fn act_constants(a_bits: u32, a_range: f64) -> (f32, f32, f32) {
    match Activation::of(a_bits, a_range).cpu() {
        Act::Quantized { range, up, down } => (range, up, down),
        _ => unreachable!("a_bits below 32 quantize"),
    }
}

/// The classifier: float (or dequantized) weights over the hidden layer's
/// activation values.
struct Classifier {
    inputs: usize,
    /// [inputs][10]
    weights: Vec<f32>,
    bias: Vec<f32>,
    down: f32,
}

/// A packed student as integers, ready to run.
pub struct IntNet {
    id: u64,
    kernel: Kernel,
    /// The form each of `layers` runs in.
    forms: Vec<Form>,
    table: [[f32; 256]; CHANNELS],
    first: FirstLayer,
    /// Convs 2 to 5, then the hidden linear layer.
    layers: Vec<IntLayer>,
    classifier: Classifier,
}

/// The weights as the float engine uses them: floats as they are, levels
/// as `quant::weight_from_levels` maps them (in f32, in its order).
fn dequantized(values: &[f32], bits: u32) -> Vec<f32> {
    if bits >= FLOAT_BITS {
        return values.to_vec();
    }
    let n = ((1u64 << bits) - 1) as f64 as f32;
    values.iter().map(|&l| l / n * 2.0 - 1.0).collect()
}

impl IntNet {
    /// The engine for a student of shape `network` from its stored values
    /// (`CnnConfig::layout` order, levels for quantized weights), with the
    /// fastest kernel this CPU has, each layer in the form that measured
    /// fastest for it.
    pub fn new(network: &CnnConfig, values: &[Vec<f32>], normalizer: &Normalizer) -> Result<Self, IntError> {
        Self::with_kernels(network, values, normalizer, Kernel::best(), Bits::Auto(BitKernel::best()))
    }

    pub fn with_kernels(
        network: &CnnConfig,
        values: &[Vec<f32>],
        normalizer: &Normalizer,
        kernel: Kernel,
        bits: Bits,
    ) -> Result<Self, IntError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let Precision { w_bits, a_bits, first_last_bits, a_range } = network.precision;
        if !(1..=8).contains(&w_bits) || !(1..=8).contains(&a_bits) {
            return Err(IntError::NotQuantized { w_bits, a_bits });
        }
        let layout = network.layout();
        if values.len() != layout.len() || layout.iter().zip(values).any(|(s, v)| v.len() != s.shape.iter().product::<usize>()) {
            return Err(IntError::Shape("values do not follow the layout".into()));
        }
        let norm_at = |i: usize| -> [&[f32]; 4] { std::array::from_fn(|k| values[i + 1 + k].as_slice()) };
        let (range, up, _) = act_constants(a_bits, a_range);
        let convs = conv_layers(network.widths);
        let c1 = convs[0].1;
        let (scale, shift) = fold_norm(norm_at(0));
        // Zero weights past c1: `first_conv` takes channels in groups.
        let mut weights = dequantized(&values[0], first_last_bits);
        weights.resize((c1 + first::PAST) * 27, 0.0);
        let first = FirstLayer { cout: c1, weights, scale, shift, act: (range, up) };
        let mut layers = Vec::new();
        let mut side = SIDE / 2;
        for (i, &(cin, cout)) in convs.iter().enumerate().skip(1) {
            let at = i * 5;
            let fold = Fold { levels: &values[at], w_bits, norm: norm_at(at), a_bits, a_range };
            let pool = i == 2 || i == 4;
            layers.push(IntLayer::conv(&fold, cin, cout, side, pool)?);
            if pool {
                side /= 2;
            }
        }
        // The hidden layer reads the last conv's pooled codes channels last,
        // [y][x][c]; its stored rows are in the float engine's [c][y][x] order.
        let w3 = network.widths[2];
        let (cp, positions) = (group4(w3), side * side);
        let at = 25;
        let fold = Fold { levels: &values[at], w_bits, norm: norm_at(at), a_bits, a_range };
        layers.push(IntLayer::linear(&fold, positions * cp, w3 * positions, network.hidden, |i| {
            let (s, c) = (i / cp, i % cp);
            (c < w3).then_some(c * positions + s)
        })?);
        let (_, _, down) = act_constants(a_bits, a_range);
        let classifier = Classifier {
            inputs: network.hidden,
            weights: dequantized(&values[at + 5], first_last_bits),
            bias: values[at + 6].clone(),
            down,
        };
        let forms: Vec<Form> = layers.iter().map(|l| l.form(kernel, bits)).collect();
        for (layer, &form) in layers.iter_mut().zip(&forms) {
            layer.keep_only(form);
        }
        Ok(Self { id: NEXT_ID.fetch_add(1, Ordering::Relaxed), kernel, forms, table: *normalizer.table(), first, layers, classifier })
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The kernels its layers run, in words: each form once, in layer order.
    pub fn kernel_name(&self) -> String {
        let mut names: Vec<&str> = Vec::new();
        for name in self.forms.iter().map(|f| f.name()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.join(" + ")
    }

    /// Bytes the engine holds for its weights and thresholds.
    pub fn weight_bytes(&self) -> usize {
        let first = (self.first.weights.len() + 2 * self.first.scale.len()) * 4;
        let layers: usize = self.layers.iter().map(IntLayer::weight_bytes).sum();
        first + layers + (self.classifier.weights.len() + CLASSES) * 4
    }

    /// Bytes of one thread's buffers for this network (`Scratch`).
    pub fn scratch_bytes(&self) -> usize {
        let mut s = Scratch::default();
        s.fit(self);
        let acc = self.layers.iter().map(|l| l.acc_len()).max().unwrap_or(0);
        let bits = self.layers.iter().zip(&self.forms).filter(|(_, f)| matches!(f, Form::Bits(_))).map(|(l, _)| l.bit_work_len()).max();
        s.planes.len() * 4 + s.buffers.iter().chain(&s.full).map(Vec::len).sum::<usize>() + acc * 4 + bits.unwrap_or(0)
    }

    /// Logits [n, 10] of `images` (n x [3][32][32] bytes), images spread
    /// over rayon's threads.
    pub fn logits(&self, images: &[u8], out: &mut [f32]) {
        const CHUNK: usize = 4;
        assert_eq!(images.len() / PIXELS * CLASSES, out.len(), "one row of logits per image");
        out.par_chunks_mut(CLASSES * CHUNK).zip(images.par_chunks(PIXELS * CHUNK)).for_each(|(out, images)| {
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                scratch.fit(self);
                for (out, image) in out.chunks_exact_mut(CLASSES).zip(images.chunks_exact(PIXELS)) {
                    self.image(image, &mut scratch, out);
                }
            })
        });
    }

    fn image(&self, image: &[u8], s: &mut Scratch, logits: &mut [f32]) {
        let p = SIDE + 2;
        for (c, plane) in image.chunks_exact(SIDE * SIDE).enumerate() {
            let table = &self.table[c];
            for (y, row) in plane.chunks_exact(SIDE).enumerate() {
                let to = &mut s.planes[(c * p + y + 1) * p + 1..][..SIDE];
                for (t, &v) in to.iter_mut().zip(row) {
                    *t = table[v as usize];
                }
            }
        }
        let f = &self.first;
        f.forward(&s.planes, self.layers[0].cin, &mut s.buffers[0]);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let (done, rest) = s.buffers.split_at_mut(i + 1);
            // The conv layers' outputs are padded images; the last conv's
            // feeds the hidden layer flat, and the hidden layer's is flat.
            let pad = usize::from(i + 1 < last);
            layer.forward(self.forms[i], &done[i], &mut rest[0], pad, &mut s.full[i], &mut s.work);
        }
        let c = &self.classifier;
        let hidden = &s.buffers[last + 1];
        logits.copy_from_slice(&c.bias);
        let mut sums = [0f32; CLASSES];
        for (j, &code) in hidden[..c.inputs].iter().enumerate() {
            let x = code as f32 * c.down;
            for (sum, &w) in sums.iter_mut().zip(&c.weights[j * CLASSES..(j + 1) * CLASSES]) {
                *sum += x * w;
            }
        }
        for (l, s) in logits.iter_mut().zip(sums) {
            *l += s;
        }
    }
}

/// One thread's buffers for one network: allocated when the thread first
/// runs that network, reused for every image after.
#[derive(Default)]
struct Scratch {
    net: u64,
    planes: Vec<f32>,
    /// The input of each integer layer, and the hidden layer's output.
    buffers: Vec<Vec<u8>>,
    /// Each layer's codes before pooling.
    full: Vec<Vec<u8>>,
    work: Work,
}

impl Scratch {
    fn fit(&mut self, net: &IntNet) {
        if self.net == net.id {
            return;
        }
        // Zeroed: the padding borders are never written after this.
        self.planes = vec![0.0; CHANNELS * (SIDE + 2) * (SIDE + 2)];
        self.buffers = net.layers.iter().map(|l| vec![0; l.input_len()]).collect();
        self.buffers.push(vec![0; net.layers.last().expect("a hidden layer").out_channels()]);
        self.full = net.layers.iter().map(|l| vec![0; l.side * l.side * l.out_channels()]).collect();
        self.net = net.id;
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[cfg(test)]
mod tests;
