//! Model size: the length of the model's file (`packed`): fp32 for float
//! parameters, k bits per quantized weight (packed per tensor), fp32 for
//! everything else that must be kept (biases, BatchNorm scale, shift, running
//! mean and variance, the input normalisation), plus the file's header.

use super::cnn::{conv_layers, CnnConfig};
use super::quant::FLOAT_BITS;
use crate::engine::data::CLASSES;

/// Parameter counts of one layer: weights (quantizable) and float extras.
struct Layer {
    weights: u64,
    weight_bits: u32,
    float_extras: u64,
}

fn layers(config: &CnnConfig) -> Vec<Layer> {
    let p = config.precision;
    let w3 = config.widths[2] as u64;
    let mut out: Vec<Layer> = conv_layers(config.widths)
        .iter()
        .map(|&(input, output)| (input as u64, output as u64))
        .enumerate()
        .map(|(i, (input, output))| Layer {
            weights: input * output * 9,
            weight_bits: if i == 0 { p.first_last_bits } else { p.w_bits },
            // BatchNorm: gamma, beta, running mean, running variance.
            float_extras: 4 * output,
        })
        .collect();
    let hidden = config.hidden as u64;
    out.push(Layer { weights: w3 * 16 * hidden, weight_bits: p.w_bits, float_extras: 4 * hidden });
    out.push(Layer { weights: hidden * CLASSES as u64, weight_bits: p.first_last_bits, float_extras: CLASSES as u64 });
    out
}

/// Size in bytes: the length of the model's file, which `kdtui export` writes.
pub fn model_bytes(config: &CnnConfig) -> u64 {
    super::packed::file_len(config)
}

/// Bytes of the stored values alone, without the file's header and input normalisation.
pub fn value_bytes(config: &CnnConfig) -> u64 {
    layers(config)
        .iter()
        .map(|l| {
            let bits = l.weight_bits.min(FLOAT_BITS) as u64;
            (l.weights * bits).div_ceil(8) + 4 * l.float_extras
        })
        .sum()
}

/// Stored values, BatchNorm running statistics included (as `Module::num_params` counts them).
pub fn stored_values(config: &CnnConfig) -> u64 {
    layers(config).iter().map(|l| l.weights + l.float_extras).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::Precision;
    use burn::backend::Flex;
    use burn::module::Module;

    fn config(precision: Precision) -> CnnConfig {
        CnnConfig { widths: [32, 64, 128], hidden: 256, precision }
    }

    #[test]
    fn counts_agree_with_the_module() {
        let c = config(Precision::FLOAT);
        let model = c.init::<Flex>(&Default::default());
        assert_eq!(model.num_params() as u64, stored_values(&c));
    }

    #[test]
    fn the_file_is_its_values_plus_a_small_header() {
        for c in [config(Precision::FLOAT), config(Precision { w_bits: 2, a_bits: 2, first_last_bits: 32, a_range: 3.0 })] {
            let header = model_bytes(&c) - value_bytes(&c);
            // 8-byte length, JSON header (names, shapes, offsets, metadata), 2 x 3 normalisation floats.
            assert!((24..4096).contains(&header), "{header}");
        }
    }

    /// The figures docs/MODEL_FORMAT.md and docs/STUDY.md state for the
    /// default teacher and student, exactly: a change to the model or the
    /// file format that moves them must move the docs too.
    #[test]
    fn the_default_models_have_the_sizes_the_docs_state() {
        let defaults = crate::study::Config::default();
        let teacher = CnnConfig::teacher(&defaults);
        let student = CnnConfig::student(&defaults);
        assert_eq!(stored_values(&teacher), 806_890);
        assert_eq!(model_bytes(&teacher), 3_230_808);
        assert_eq!((student.widths, student.hidden), ([6, 12, 24], 64));
        assert_eq!(model_bytes(&student), 17_422);
    }

    #[test]
    fn teacher_is_near_the_study_baseline_and_student_smaller() {
        let teacher = model_bytes(&config(Precision::FLOAT));
        assert!((3_000_000..3_600_000).contains(&teacher), "{teacher}");
        let student = model_bytes(&config(Precision { w_bits: 2, a_bits: 2, first_last_bits: 32, a_range: 3.0 }));
        // 2-bit weights are 1/16 of fp32; float first/last layers and BN stay.
        assert!(student < teacher / 10, "{student} vs {teacher}");
        let one_bit = model_bytes(&config(Precision { w_bits: 1, a_bits: 1, first_last_bits: 1, a_range: 3.0 }));
        assert!(one_bit < student);
    }
}
