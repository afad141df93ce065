//! A VGG-style CNN for 32x32 RGB inputs, float or quantized.
//!
//! Five 3x3 conv + BatchNorm + activation layers in three blocks (one conv at
//! 32x32, two at 16x16, two at 8x8), each block followed by a 2x2 max-pool,
//! then a hidden linear layer (+ BatchNorm + activation) and the classifier.
//! With widths [32, 64, 128] and hidden 256 it stores about 0.81M values
//! (3.2 MB in fp32), the size of the study's baseline (3.36 MB).
//!
//! The first block has one conv, not two: a second 32-channel conv at full
//! resolution would add a quarter of the multiply-adds and a third of the
//! elementwise work for 1% more parameters.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::module::linear;
use serde::{Deserialize, Serialize};

use super::kernels::Activation;
use super::kernels::{conv3x3, quantize_weights, CnnBackend};
use super::norm::BatchNorm2d;
use super::quant::{weight_from_levels, weight_levels, FLOAT_BITS};
use crate::engine::data::{CHANNELS, CLASSES};
use crate::study::Config;

/// Bits of weights and activations; 32 everywhere is the float teacher.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Precision {
    pub w_bits: u32,
    pub a_bits: u32,
    /// Weight bits of the first conv and the classifier.
    pub first_last_bits: u32,
    /// Clip window of quantized activations (see `quant::quantize_activations`).
    pub a_range: f64,
}

impl Precision {
    pub const FLOAT: Precision = Precision { w_bits: FLOAT_BITS, a_bits: FLOAT_BITS, first_last_bits: FLOAT_BITS, a_range: 1.0 };

    pub fn is_float(&self) -> bool {
        *self == Self::FLOAT
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CnnConfig {
    pub widths: [usize; 3],
    pub hidden: usize,
    pub precision: Precision,
}

impl CnnConfig {
    /// The teacher's network as the config gives it: float everywhere.
    pub fn teacher(config: &Config) -> Self {
        Self { widths: config.teacher.widths, hidden: config.teacher.hidden, precision: Precision::FLOAT }
    }

    /// The student's network as the config gives it: its bits and clip window.
    pub fn student(config: &Config) -> Self {
        Self {
            widths: config.student.widths,
            hidden: config.student.hidden,
            precision: Precision {
                w_bits: config.student.w_bits,
                a_bits: config.student.a_bits,
                first_last_bits: config.student.first_last_bits,
                a_range: config.student.a_range,
            },
        }
    }
}

/// (input, output) channels of each conv layer.
pub fn conv_layers([w1, w2, w3]: [usize; 3]) -> [(usize, usize); 5] {
    [(CHANNELS, w1), (w1, w2), (w2, w2), (w2, w3), (w3, w3)]
}

/// Conv layers followed by a 2x2 max-pool.
const POOL_AFTER: [usize; 3] = [0, 2, 4];

impl CnnConfig {
    /// Multiply-adds of one image's forward pass: the convolutions and the
    /// two linear layers (the elementwise work is not counted).
    pub fn forward_multiply_adds(&self) -> u64 {
        let mut side = 32u64;
        let mut total = 0u64;
        for (i, (input, output)) in conv_layers(self.widths).into_iter().enumerate() {
            total += side * side * 9 * input as u64 * output as u64;
            if POOL_AFTER.contains(&i) {
                side /= 2;
            }
        }
        let flat = (self.widths[2] * 16) as u64;
        total + flat * self.hidden as u64 + (self.hidden * CLASSES) as u64
    }

    /// Multiply-adds the integer engine does in integers for one image: all
    /// but the first conv's and the classifier's (which stay in fp32).
    pub fn integer_multiply_adds(&self) -> u64 {
        let (input, output) = conv_layers(self.widths)[0];
        self.forward_multiply_adds() - 32 * 32 * 9 * (input * output) as u64 - (self.hidden * CLASSES) as u64
    }

    /// Floating-point operations (2 per multiply-add) of training on one
    /// image: the forward products, and in backward the input gradient of
    /// every layer but the first (the images need none) and every weight
    /// gradient, each as large as its forward product.
    pub fn training_flops(&self) -> u64 {
        let (input, output) = conv_layers(self.widths)[0];
        let first = 32 * 32 * 9 * (input * output) as u64;
        2 * (3 * self.forward_multiply_adds() - first)
    }
}

/// conv 3x3 (no bias: BatchNorm follows) -> BatchNorm -> activation.
#[derive(Module, Debug)]
pub struct ConvBlock<B: Backend> {
    conv: Conv2d<B>,
    norm: BatchNorm2d<B>,
    w_bits: u32,
    a_bits: u32,
    a_range: f64,
}

impl<B: Backend> ConvBlock<B> {
    fn new(input: usize, output: usize, w_bits: u32, p: Precision, device: &B::Device) -> Self {
        Self {
            conv: Conv2dConfig::new([input, output], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            norm: BatchNorm2d::new(output, device),
            w_bits,
            a_bits: p.a_bits,
            a_range: p.a_range,
        }
    }
}

impl<B: CnnBackend> ConvBlock<B> {
    /// [batch, in, h, w] -> [batch, out, h, w], or [batch, out, h/2, w/2]
    /// with `pool` (a 2x2 max-pool, in the same op as the norm and activation).
    fn forward(&self, x: Tensor<B, 4>, pool: bool) -> Tensor<B, 4> {
        let weight = quantize_weights(self.conv.weight.val(), self.w_bits);
        let x = conv3x3(x, weight);
        let act = Activation::of(self.a_bits, self.a_range);
        if pool {
            self.norm.forward_act_pool(x, act)
        } else {
            self.norm.forward_act(x, act)
        }
    }
}

#[derive(Module, Debug)]
pub struct Cnn<B: Backend> {
    blocks: Vec<ConvBlock<B>>,
    hidden: Linear<B>,
    hidden_norm: BatchNorm2d<B>,
    classifier: Linear<B>,
    w_bits: u32,
    a_bits: u32,
    a_range: f64,
    last_bits: u32,
}

/// The teacher is the float configuration of the same network.
pub type TeacherCnn<B> = Cnn<B>;
/// The student is its quantized configuration.
pub type QuantStudent<B> = Cnn<B>;

impl CnnConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Cnn<B> {
        let p = self.precision;
        let w3 = self.widths[2];
        let blocks = conv_layers(self.widths)
            .iter()
            .enumerate()
            .map(|(i, &(input, output))| {
                let w_bits = if i == 0 { p.first_last_bits } else { p.w_bits };
                ConvBlock::new(input, output, w_bits, p, device)
            })
            .collect();
        Cnn {
            blocks,
            hidden: LinearConfig::new(w3 * 16, self.hidden).with_bias(false).init(device),
            hidden_norm: BatchNorm2d::new(self.hidden, device),
            classifier: LinearConfig::new(self.hidden, CLASSES).init(device),
            w_bits: p.w_bits,
            a_bits: p.a_bits,
            a_range: p.a_range,
            last_bits: p.first_last_bits,
        }
    }
}

impl<B: CnnBackend> Cnn<B> {
    /// images [batch, 3, 32, 32] (normalised) -> logits [batch, 10]
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut x = images;
        for (i, block) in self.blocks.iter().enumerate() {
            // Pooled blocks halve the side: 32 -> 16 -> 8 -> 4.
            x = block.forward(x, POOL_AFTER.contains(&i));
        }
        // [b, w3, 4, 4] -> [b, w3 * 16]
        let x: Tensor<B, 2> = x.flatten(1, 3);
        let x = linear(x, quantize_weights(self.hidden.weight.val(), self.w_bits), None);
        // [b, hidden] -> [b, hidden, 1, 1] for the norm, and back.
        let [b, h] = x.dims();
        let x: Tensor<B, 2> =
            self.hidden_norm.forward_act(x.reshape([b, h, 1, 1]), Activation::of(self.a_bits, self.a_range)).reshape([b, h]);
        let bias = self.classifier.bias.as_ref().map(|b| b.val());
        linear(x, quantize_weights(self.classifier.weight.val(), self.last_bits), bias)
    }
}

/// One tensor of a model file: burn's parameter path, shape, and the bits its
/// values are stored at (32: float values; fewer: quantized weights, stored as
/// their level indices, see `quant::weight_levels`).
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub name: String,
    pub shape: Vec<usize>,
    pub bits: u32,
}

const NORM_PARTS: [&str; 4] = ["gamma", "beta", "running_mean", "running_var"];

impl CnnConfig {
    /// Every tensor of the network, in the order `Cnn::stored` gives them.
    pub fn layout(&self) -> Vec<Slot> {
        let p = self.precision;
        let slot = |name: String, shape: Vec<usize>, bits: u32| Slot { name, shape, bits };
        let norm = |prefix: &str, c: usize| NORM_PARTS.map(|part| slot(format!("{prefix}.{part}"), vec![c], FLOAT_BITS));
        let mut out = Vec::new();
        for (i, (input, output)) in conv_layers(self.widths).into_iter().enumerate() {
            let bits = if i == 0 { p.first_last_bits } else { p.w_bits };
            out.push(slot(format!("blocks.{i}.conv.weight"), vec![output, input, 3, 3], bits.min(FLOAT_BITS)));
            out.extend(norm(&format!("blocks.{i}.norm"), output));
        }
        out.push(slot("hidden.weight".into(), vec![self.widths[2] * 16, self.hidden], p.w_bits.min(FLOAT_BITS)));
        out.extend(norm("hidden_norm", self.hidden));
        out.push(slot("classifier.weight".into(), vec![self.hidden, CLASSES], p.first_last_bits.min(FLOAT_BITS)));
        out.push(slot("classifier.bias".into(), vec![CLASSES], FLOAT_BITS));
        out
    }
}

impl<B: Backend> Cnn<B> {
    /// The tensors of `CnnConfig::layout`, flattened: quantized weights as
    /// their levels, everything else as it is.
    pub fn stored(&self) -> Vec<Tensor<B, 1>> {
        fn flat<B: Backend, const D: usize>(t: Tensor<B, D>, bits: u32) -> Tensor<B, 1> {
            let t = if bits < FLOAT_BITS { weight_levels(t, bits) } else { t };
            t.flatten(0, D - 1)
        }
        let mut out = Vec::new();
        for block in &self.blocks {
            out.push(flat(block.conv.weight.val(), block.w_bits));
            out.extend(block.norm.parts());
        }
        out.push(flat(self.hidden.weight.val(), self.w_bits));
        out.extend(self.hidden_norm.parts());
        out.push(flat(self.classifier.weight.val(), self.last_bits));
        out.push(self.classifier.bias.as_ref().expect("the classifier has a bias").val());
        out
    }

    /// `stored`, read back as f32 values: what a model file holds.
    pub fn stored_values(&self) -> Vec<Vec<f32>> {
        self.stored().into_iter().map(|t| t.into_data().convert::<f32>().into_vec::<f32>().expect("f32 values")).collect()
    }

    /// The model `stored` was taken from, given its tensors in layout order.
    /// Quantized weights come back as the weights the quantizer gave in
    /// training (bit for bit) and are used as they are: the returned model
    /// computes exactly what the trained one did, in inference mode.
    pub fn from_stored(config: &CnnConfig, tensors: Vec<Tensor<B, 1>>, device: &B::Device) -> Self {
        let layout = config.layout();
        assert_eq!(tensors.len(), layout.len(), "one tensor per slot of the layout");
        let mut model: Cnn<B> = config.init(device);
        let mut values = layout.into_iter().zip(tensors).map(|(slot, t)| {
            let t = if slot.bits < FLOAT_BITS { weight_from_levels(t, slot.bits) } else { t };
            (slot.shape, t)
        });
        let values = &mut values;
        for block in &mut model.blocks {
            let (shape, w) = next_value(values);
            block.conv.weight = Param::from_tensor(w.reshape([shape[0], shape[1], shape[2], shape[3]]));
            block.w_bits = FLOAT_BITS;
            block.norm = next_norm(block.norm.clone(), values);
        }
        let (shape, w) = next_value(values);
        model.hidden.weight = Param::from_tensor(w.reshape([shape[0], shape[1]]));
        model.hidden_norm = next_norm(model.hidden_norm.clone(), values);
        let (shape, w) = next_value(values);
        model.classifier.weight = Param::from_tensor(w.reshape([shape[0], shape[1]]));
        model.classifier.bias = Some(Param::from_tensor(next_value(values).1));
        model.w_bits = FLOAT_BITS;
        model.last_bits = FLOAT_BITS;
        model
    }
}

/// The next (shape, values) of `from_stored`'s layout walk.
fn next_value<B: Backend>(values: &mut impl Iterator<Item = (Vec<usize>, Tensor<B, 1>)>) -> (Vec<usize>, Tensor<B, 1>) {
    values.next().expect("layout and model agree")
}

/// `norm` with its four vectors taken from the walk, in `BatchNorm2d::parts` order.
fn next_norm<B: Backend>(norm: BatchNorm2d<B>, values: &mut impl Iterator<Item = (Vec<usize>, Tensor<B, 1>)>) -> BatchNorm2d<B> {
    norm.with_parts(std::array::from_fn(|_| next_value(values).1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_counted_layer_by_layer() {
        let net = CnnConfig { widths: [32, 64, 128], hidden: 256, precision: Precision::FLOAT };
        // By hand: 32x32 3->32, 16x16 32->64 and 64->64, 8x8 64->128 and 128->128, then 2048->256 and 256->10.
        let convs = 1024 * 9 * 3 * 32 + 256 * 9 * (32 * 64 + 64 * 64) + 64 * 9 * (64 * 128 + 128 * 128);
        assert_eq!(net.forward_multiply_adds(), convs + 2048 * 256 + 2560);
        assert_eq!(net.training_flops(), 2 * (3 * (convs + 2048 * 256 + 2560) - 1024 * 9 * 3 * 32));
    }
}
