//! Each integer layer of a student's shape timed in every form this CPU
//! runs (`kdtui bench --int-layers`): what `BitKernel::wins` is set from.
//! One thread, as each of the engine's threads runs whole images.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::layer::{Bits, Fold, Form, IntLayer, Work};
use super::{group4, IntError};
use super::{BitKernel, Kernel};
use crate::engine::model::cnn::conv_layers;
use crate::engine::model::CnnConfig;

/// One layer in one form at one pair of bit widths.
#[derive(Debug, Clone)]
pub struct LayerSpeed {
    /// "conv3 12->12 at 16x16, pooled", "hidden 384->64".
    pub layer: String,
    pub w_bits: u32,
    pub a_bits: u32,
    pub form: Form,
    /// The layer's own multiply-adds (padding not counted) per second.
    pub macs_per_sec: f64,
    /// Whether this is the form `IntNet::new` runs the layer in.
    pub chosen: bool,
}

/// The integer layers of `network`'s shape (convs 2 to 5, the hidden
/// layer) with random weights and codes, at each of `bits`, each form timed
/// for about `seconds`.
pub fn layer_speeds(network: &CnnConfig, bits: &[(u32, u32)], seconds: f64) -> Result<Vec<LayerSpeed>, IntError> {
    let mut r = ChaCha8Rng::seed_from_u64(17);
    let mut rows = Vec::new();
    for &(w_bits, a_bits) in bits {
        let mut side = 16;
        let convs = conv_layers(network.widths);
        let mut shapes = Vec::new();
        for (i, &(cin, cout)) in convs.iter().enumerate().skip(1) {
            let pool = i == 2 || i == 4;
            let name = format!("conv{} {cin}->{cout} at {side}x{side}{}", i + 1, if pool { ", pooled" } else { "" });
            shapes.push((name, cin, cout, side, pool, 9));
            if pool {
                side /= 2;
            }
        }
        let inputs = network.widths[2] * side * side;
        shapes.push((format!("hidden {inputs}->{}", network.hidden), group4(network.widths[2]) * side * side, network.hidden, 1, false, 1));
        for (name, cin, cout, side, pool, taps) in shapes {
            let fan_in = if taps == 9 { cin * 9 } else { cin };
            let n_w = (1u32 << w_bits) - 1;
            let levels: Vec<f32> = (0..fan_in * cout).map(|_| r.random_range(0..=n_w) as f32).collect();
            let (gamma, beta, mean, var) = (vec![1.0; cout], vec![0.5; cout], vec![0.0; cout], vec![1.0; cout]);
            let fold = Fold { levels: &levels, w_bits, norm: [&gamma, &beta, &mean, &var], a_bits, a_range: 3.0 };
            let layer =
                if taps == 9 { IntLayer::conv(&fold, cin, cout, side, pool)? } else { IntLayer::linear(&fold, cin, cin, cout, Some)? };
            let n_a = (1u32 << a_bits) - 1;
            let input: Vec<u8> = (0..layer.input_len()).map(|_| r.random_range(0..=n_a) as u8).collect();
            let mut out = vec![0u8; (layer.out_side() + 2).pow(2) * layer.out_channels()];
            let macs = (side * side * fan_in * cout) as f64;
            let engine = layer.form(Kernel::best(), Bits::Auto(BitKernel::best()));
            for form in layer.forms() {
                let (mut full, mut work) = (Vec::new(), Work::default());
                let mut pass = || layer.forward(form, &input, &mut out, usize::from(taps == 9), &mut full, &mut work);
                pass();
                let (started, mut passes) = (Instant::now(), 0u64);
                while started.elapsed().as_secs_f64() < seconds {
                    for _ in 0..16 {
                        pass();
                    }
                    passes += 16;
                }
                let macs_per_sec = passes as f64 * macs / started.elapsed().as_secs_f64();
                rows.push(LayerSpeed { layer: name.clone(), w_bits, a_bits, form, macs_per_sec, chosen: form == engine });
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::Precision;

    /// Every layer in every form gets a figure, at each pair of widths.
    #[test]
    fn every_layer_and_form_is_timed() {
        let precision = Precision { w_bits: 2, a_bits: 2, first_last_bits: 32, a_range: 3.0 };
        let network = CnnConfig { widths: [6, 12, 24], hidden: 64, precision };
        let rows = layer_speeds(&network, &[(1, 1), (8, 8)], 0.001).unwrap();
        let layers = |bits: (u32, u32)| rows.iter().filter(|r| (r.w_bits, r.a_bits) == bits).map(|r| r.layer.as_str()).collect::<Vec<_>>();
        let one = layers((1, 1));
        for name in ["conv2 6->12 at 16x16", "conv3 12->12 at 16x16, pooled", "conv5 24->24 at 8x8, pooled", "hidden 384->64"] {
            assert!(one.contains(&name), "{name}: {one:?}");
        }
        assert!(rows.iter().all(|r| r.macs_per_sec > 0.0));
        // No bit-serial form past 4 bits.
        assert!(rows.iter().filter(|r| r.w_bits == 8).all(|r| matches!(r.form, Form::Bytes(_))));
        assert!(rows.iter().any(|r| r.w_bits == 1 && matches!(r.form, Form::Bits(_))));
    }
}
