//! The integer engine against the float engine it replaces: each kernel
//! against the scalar sums, each layer against the float engine's conv,
//! BatchNorm and quantizer (every bit width, odd sizes, pooling), and the
//! whole network's logits.

use burn::backend::Flex;
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dot::{Tile, TILE};
use super::*;
use crate::engine::model::kernels::{affine_act, affine_act_pool, conv3x3};
use crate::engine::model::quant::weight_from_levels;

type B = Flex;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `kernel`'s sums against the scalar ones, over channel groups, output
/// widths (8-channel remainders included) and part tiles.
fn sums_match(kernel: Kernel) {
    let mut r = rng(1);
    // Codes and weights as large as the kernel stays exact for over up to
    // 9 taps of 27 groups: AVX2, 2 x 15 x 127 < 32,767; its short form,
    // 243 x 2 x 3 x 3.
    let (codes, weight) = if kernel.exact_for(15, 127, 9 * 27) { (16, 127) } else { (4, 3) };
    assert!(kernel.exact_for(codes - 1, weight as u32, 9 * 27));
    for groups in [1, 2, 3, 7, 27] {
        for np in [8, 16, 24, 32, 40, 48, 64] {
            for pixels in 1..=TILE {
                let stride = 4 * groups + r.random_range(0..3) * 4;
                let taps: Vec<usize> = (0..r.random_range(1..10)).map(|_| r.random_range(0..64)).collect();
                let base = r.random_range(0..3);
                // Exactly as long as the tile reads: a kernel reading past it panics.
                let len = base + (pixels - 1) * stride + taps.iter().max().unwrap() + groups * 4;
                let input: Vec<u8> = (0..len).map(|_| r.random_range(0..codes as u8)).collect();
                let weights: Vec<i8> = (0..taps.len() * groups * np * 4).map(|_| r.random_range(-weight..=weight)).collect();
                let tile = Tile { input: &input, base, stride, pixels, taps: &taps, groups };
                let mut want = vec![0i32; TILE * np];
                dot::dot(Kernel::Scalar, &tile, &weights, np, &mut want);
                let mut got = vec![-1i32; TILE * np];
                dot::dot(kernel, &tile, &weights, np, &mut got);
                assert_eq!(&got[..pixels * np], &want[..pixels * np], "{kernel:?}: groups {groups}, np {np}, pixels {pixels}");
            }
        }
    }
}

/// `kernel`'s codes against the scalar path's: signs of both kinds and
/// zero, 1 to 15 levels, outputs that fill their vectors or not.
fn codes_match(kernel: Kernel) {
    let mut r = rng(6);
    let cases = [(2, 16, 12, 3), (27, 32, 24, 3), (5, 48, 33, 15), (1, 16, 1, 1), (2, 8, 6, 3), (3, 24, 24, 3), (4, 40, 35, 7)];
    for (groups, np, cout, levels) in cases {
        let taps: Vec<usize> = (0..9).map(|t| t * 4 * groups).collect();
        let len = 7 * 4 * groups + taps[8] + groups * 4;
        let input: Vec<u8> = (0..len).map(|_| r.random_range(0..=levels as u8)).collect();
        let weights: Vec<i8> = (0..9 * groups * np * 4).map(|_| r.random_range(-3..=3)).collect();
        let sign: Vec<i32> = (0..np).map(|o| [1, -1, 0][o % 3]).collect();
        let thresholds: Vec<i32> = (0..levels * np).map(|_| r.random_range(-60..60)).collect();
        let codes = dot::Codes { sign: &sign, thresholds: &thresholds, levels, cout, eight_bit: false };
        for pixels in [1, 3, 5, TILE] {
            let tile = Tile { input: &input, base: 0, stride: 4 * groups, pixels, taps: &taps, groups };
            // Bytes past `cout` must stay as they were: they are the next pixel's or padding.
            let (mut want, mut got) = (vec![9u8; TILE * np], vec![9u8; TILE * np]);
            let mut acc = vec![0i32; TILE * np];
            dot::dot_codes(Kernel::Scalar, &tile, &weights, np, &codes, &mut dot::Out { out: &mut want, base: 0, stride: np }, &mut acc);
            dot::dot_codes(kernel, &tile, &weights, np, &codes, &mut dot::Out { out: &mut got, base: 0, stride: np }, &mut acc);
            assert_eq!(want, got, "{kernel:?}: {groups} groups, {cout} of {np} outputs, {pixels} pixels");
        }
    }
}

/// The kernels `KDTUI_SIMD` allows on this CPU (the capped reruns of the
/// suite take the others).
#[test]
fn every_kernel_gives_the_scalar_sums_and_codes() {
    let kernels = Kernel::available();
    assert!(kernels.contains(&Kernel::Scalar));
    for k in kernels {
        sums_match(k);
        codes_match(k);
    }
}

/// The VNNI kernels on this CPU whatever `KDTUI_SIMD` caps.
#[test]
#[cfg_attr(kdtui_no_avx512vnni, ignore = "this CPU has no AVX-512 VNNI")]
fn the_vnni_kernel_gives_the_scalar_sums_and_codes() {
    sums_match(Kernel::Avx512Vnni);
    codes_match(Kernel::Avx512Vnni);
}

#[test]
#[cfg_attr(kdtui_no_avxvnni, ignore = "this CPU has no AVX-VNNI (Alder Lake and later, Zen 5 have it)")]
fn the_avx_vnni_kernel_gives_the_scalar_sums_and_codes() {
    sums_match(Kernel::AvxVnni);
    codes_match(Kernel::AvxVnni);
}

#[test]
fn avx2_is_refused_where_its_16_bit_pairs_could_saturate() {
    assert!(Kernel::Avx2.exact_for(3, 3, 1000));
    assert!(Kernel::Avx2.exact_for(127, 127, 1000));
    assert!(!Kernel::Avx2.exact_for(255, 128, 1));
    assert!(Kernel::Avx512Vnni.exact_for(255, 128, 1000) && Kernel::Scalar.exact_for(255, 128, 1000));
    // 16-bit sums: 2-bit layers of the default student (18 a step, at most
    // 96 steps), not 4-bit ones over as many.
    assert_eq!(Kernel::Avx2.for_layer(3, 3, 96), Kernel::Avx2Short);
    assert_eq!(Kernel::Avx2.for_layer(15, 15, 96), Kernel::Avx2);
    assert_eq!(Kernel::Avx2.for_layer(255, 128, 1), Kernel::Scalar);
    assert_eq!(Kernel::Avx512Vnni.for_layer(255, 128, 1000), Kernel::Avx512Vnni);
}

/// A random BatchNorm of `c` channels: scales of both signs and one zero.
fn random_norm(r: &mut ChaCha8Rng, c: usize) -> [Vec<f32>; 4] {
    let gamma = (0..c).map(|i| if i == 2 { 0.0 } else { r.random_range(0.3..1.5) * if i % 3 == 1 { -1.0 } else { 1.0 } }).collect();
    let beta = (0..c).map(|_| r.random_range(0.0..2.0)).collect();
    let mean = (0..c).map(|_| r.random_range(-1.0..1.0)).collect();
    let var = (0..c).map(|_| r.random_range(0.2..3.0)).collect();
    [gamma, beta, mean, var]
}

/// The float engine's layer: conv of the codes' values with the levels'
/// weights, BatchNorm's affine and the quantizer (and a 2x2 max-pool), as
/// codes [cout][side'][side'].
#[allow(clippy::too_many_arguments)]
fn float_layer(
    codes: &[u8],
    levels: &[f32],
    norm: &[Vec<f32>; 4],
    cin: usize,
    cout: usize,
    side: usize,
    bits: (u32, u32),
    pool: bool,
) -> Vec<u8> {
    let (w_bits, a_bits) = bits;
    let (_, _, down) = act_constants(a_bits, 3.0);
    let device = Default::default();
    let x: Vec<f32> = codes.iter().map(|&c| c as f32 * down).collect();
    let x = Tensor::<B, 4>::from_data(TensorData::new(x, [1, cin, side, side]), &device);
    let w = Tensor::<B, 1>::from_data(TensorData::new(levels.to_vec(), [levels.len()]), &device);
    let w = weight_from_levels(w, w_bits).reshape([cout, cin, 3, 3]);
    let t = |v: &Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v.clone(), [cout]), &device);
    let [gamma, beta, mean, var] = norm;
    let scale = t(gamma) / (t(var) + 1e-5).sqrt();
    let shift = t(beta) - t(mean) * scale.clone();
    let y = conv3x3(x, w);
    let act = Activation::of(a_bits, 3.0);
    let y = if pool { affine_act_pool(y, scale, shift, act) } else { affine_act(y, scale, shift, act) };
    y.into_data().to_vec::<f32>().unwrap().iter().map(|&v| (v / down).round() as u8).collect()
}

/// The exact value y * up of output (o, y, x) before rounding, in f64:
/// where it lies within `tol` of a rounding boundary, float rounding may
/// put the float engine on either side.
#[allow(clippy::too_many_arguments)]
fn near_a_threshold(
    codes: &[u8],
    levels: &[f32],
    norm: &[Vec<f32>; 4],
    cin: usize,
    side: usize,
    bits: (u32, u32),
    at: (usize, usize, usize),
) -> bool {
    let (w_bits, a_bits) = bits;
    let (o, py, px) = at;
    let n = ((1u32 << w_bits) - 1) as f64;
    let (_, up, down) = act_constants(a_bits, 3.0);
    let mut s = 0i64;
    for c in 0..cin {
        for ky in 0..3 {
            for kx in 0..3 {
                let (y, x) = ((py + ky) as i64 - 1, (px + kx) as i64 - 1);
                if (0..side as i64).contains(&y) && (0..side as i64).contains(&x) {
                    let a = codes[(c * side + y as usize) * side + x as usize] as i64;
                    let l = levels[((o * cin + c) * 3 + ky) * 3 + kx] as i64;
                    s += (2 * l - n as i64) * a;
                }
            }
        }
    }
    let (scale, shift) = fold_norm([&norm[0], &norm[1], &norm[2], &norm[3]]);
    let v = (s as f64 * down as f64 / n * scale[o] as f64 + shift[o] as f64) * up as f64;
    let frac = v - v.floor();
    (frac - 0.5).abs() < 1e-4 * v.abs().max(1.0)
}

/// Each conv layer against the float engine's, at every bit width the
/// config allows, odd channel counts, sides that leave part tiles, and
/// channel counts on both sides of 16 (the float engine's Winograd path).
#[test]
fn each_layer_gives_the_float_engines_codes() {
    let mut r = rng(2);
    let mut crossings = 0;
    let mut outputs = 0;
    for (w_bits, a_bits) in [(1, 1), (2, 2), (1, 4), (3, 2), (4, 4), (2, 8), (7, 3), (8, 2), (8, 8), (5, 6)] {
        for (cin, cout, side) in [(3, 5, 6), (5, 17, 10), (17, 7, 4), (12, 24, 8)] {
            let n_w = (1u32 << w_bits) - 1;
            let n_a = (1u32 << a_bits) - 1;
            let levels: Vec<f32> = (0..cout * cin * 9).map(|_| r.random_range(0..=n_w) as f32).collect();
            let norm = random_norm(&mut r, cout);
            // Inputs as codes [cin][side][side]; the layer reads them padded, channels last.
            let codes: Vec<u8> = (0..cin * side * side).map(|_| r.random_range(0..=n_a) as u8).collect();
            let fold = Fold { levels: &levels, w_bits, norm: [&norm[0], &norm[1], &norm[2], &norm[3]], a_bits, a_range: 3.0 };
            for pool in [false, true] {
                let layer = IntLayer::conv(&fold, cin, cout, side, pool).unwrap();
                let cp = group4(cin);
                let mut input = vec![0u8; layer.input_len()];
                for c in 0..cin {
                    for y in 0..side {
                        for x in 0..side {
                            input[((y + 1) * (side + 2) + x + 1) * cp + c] = codes[(c * side + y) * side + x];
                        }
                    }
                }
                let want = float_layer(&codes, &levels, &norm, cin, cout, side, (w_bits, a_bits), pool);
                let os = layer.out_side();
                let oc = layer.out_channels();
                let forms = layer.forms();
                // The bit-serial form up to 4-bit weights and codes.
                assert_eq!(forms.iter().any(|f| matches!(f, Form::Bits(_))), w_bits <= 4 && a_bits <= 4, "{w_bits}/{a_bits}");
                for form in forms {
                    let mut out = vec![0u8; (os + 2) * (os + 2) * oc];
                    layer.forward(form, &input, &mut out, 1, &mut Vec::new(), &mut layer::Work::default());
                    for o in 0..cout {
                        for y in 0..os {
                            for x in 0..os {
                                let got = out[((y + 1) * (os + 2) + x + 1) * oc + o];
                                let float = want[(o * os + y) * os + x];
                                outputs += 1;
                                if got == float {
                                    continue;
                                }
                                // The float engine crossed a threshold: only where the exact value is at one.
                                let window: Vec<(usize, usize)> = if pool {
                                    vec![(2 * y, 2 * x), (2 * y, 2 * x + 1), (2 * y + 1, 2 * x), (2 * y + 1, 2 * x + 1)]
                                } else {
                                    vec![(y, x)]
                                };
                                let near = window
                                    .iter()
                                    .any(|&(py, px)| near_a_threshold(&codes, &levels, &norm, cin, side, (w_bits, a_bits), (o, py, px)));
                                assert!(
                                    near,
                                    "{form:?}, {w_bits}-bit weights, {a_bits}-bit codes, {cin}->{cout} at {side}, pool {pool}: \
                                     output ({o}, {y}, {x}) is {got}, the float engine's {float}, away from any threshold"
                                );
                                crossings += 1;
                            }
                        }
                    }
                    // The border and the padding channels stay zero.
                    for y in 0..os + 2 {
                        for x in 0..os + 2 {
                            for c in 0..oc {
                                let inside = (1..=os).contains(&y) && (1..=os).contains(&x) && c < cout;
                                if !inside {
                                    assert_eq!(out[(y * (os + 2) + x) * oc + c], 0);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // A handful at most: rounding crosses a threshold rarely.
    assert!(crossings * 1000 <= outputs, "{crossings} of {outputs} outputs crossed a threshold");
}

/// Pooling codes gives what pooling values would: the quantizer is monotone.
#[test]
fn pooling_codes_equals_coding_pooled_values() {
    let mut r = rng(3);
    let (cin, cout, side) = (6, 12, 8);
    let levels: Vec<f32> = (0..cout * cin * 9).map(|_| r.random_range(0..=3) as f32).collect();
    let norm = random_norm(&mut r, cout);
    let fold = Fold { levels: &levels, w_bits: 2, norm: [&norm[0], &norm[1], &norm[2], &norm[3]], a_bits: 2, a_range: 3.0 };
    let (full, pooled) = (IntLayer::conv(&fold, cin, cout, side, false).unwrap(), IntLayer::conv(&fold, cin, cout, side, true).unwrap());
    let input: Vec<u8> = (0..full.input_len()).map(|i| if i % 8 < cin { r.random_range(0..=3) } else { 0 }).collect();
    let input: Vec<u8> = input
        .chunks(8)
        .enumerate()
        .flat_map(|(p, px)| {
            let (y, x) = (p / (side + 2), p % (side + 2));
            let border = y == 0 || x == 0 || y == side + 1 || x == side + 1;
            px.iter().map(move |&v| if border { 0 } else { v })
        })
        .collect();
    let oc = full.out_channels();
    let (mut a, mut b) = (vec![0u8; side * side * oc], vec![0u8; side * side / 4 * oc]);
    let form = full.form(Kernel::best(), Bits::Off);
    full.forward(form, &input, &mut a, 0, &mut Vec::new(), &mut layer::Work::default());
    pooled.forward(form, &input, &mut b, 0, &mut Vec::new(), &mut layer::Work::default());
    for y in 0..side / 2 {
        for x in 0..side / 2 {
            for c in 0..cout {
                let at = |yy: usize, xx: usize| a[(yy * side + xx) * oc + c];
                let max = at(2 * y, 2 * x).max(at(2 * y, 2 * x + 1)).max(at(2 * y + 1, 2 * x)).max(at(2 * y + 1, 2 * x + 1));
                assert_eq!(b[(y * side / 2 + x) * oc + c], max);
            }
        }
    }
}

fn student(bits: (u32, u32), first_last_bits: u32) -> CnnConfig {
    CnnConfig { widths: [5, 9, 18], hidden: 13, precision: Precision { w_bits: bits.0, a_bits: bits.1, first_last_bits, a_range: 3.0 } }
}

/// A student with BatchNorm statistics moved off their start, as stored values.
fn trained_values(network: &CnnConfig) -> Vec<Vec<f32>> {
    use burn::backend::Autodiff;
    use burn::tensor::Distribution;
    let device = Default::default();
    <B as burn::tensor::backend::Backend>::seed(&device, 11);
    let model = network.init::<Autodiff<B>>(&device);
    let x = Tensor::<Autodiff<B>, 4>::random([8, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    let _ = model.forward(x);
    use burn::module::AutodiffModule;
    model.valid().stored_values()
}

/// The whole network: the float engine's classes on (nearly) every image,
/// its logits where no code crossed a threshold, the same logits from every
/// kernel, byte or bit-serial, and at every batch size.
#[test]
fn the_network_gives_the_float_engines_predictions() {
    use crate::engine::data::synthetic::{generate, Split};
    use crate::engine::inference::{argmax, predict};
    let data = generate(64, 5, Split::Test);
    let norm = Normalizer::fit(&data);
    for (bits, first_last) in [((2, 2), 32), ((1, 1), 32), ((4, 3), 8), ((8, 8), 2)] {
        let network = student(bits, first_last);
        let values = trained_values(&network);
        let stored = crate::engine::model::packed::Stored { network: network.clone(), normalizer: norm.clone(), values: values.clone() };
        let float = predict(&stored.model::<B>(&Default::default()), &data, &norm, 16, &Default::default());
        let mut reference: Option<Vec<f32>> = None;
        let bytes = Kernel::available().into_iter().map(|k| (k, Bits::Off));
        let bit_serial = BitKernel::available().into_iter().map(|b| (Kernel::best(), Bits::Always(b)));
        for (kernel, bits) in bytes.chain(bit_serial) {
            let net = IntNet::with_kernels(&network, &values, &norm, kernel, bits).unwrap();
            let bit_layers = net.forms.iter().filter(|f| matches!(f, Form::Bits(_))).count();
            assert_eq!(bit_layers, if matches!(bits, Bits::Always(_)) && bits_up_to_4(bits_of(&network)) { 5 } else { 0 }, "{bits:?}");
            let mut logits = vec![0f32; data.len() * CLASSES];
            net.logits(&data.images, &mut logits);
            let mut one = vec![0f32; CLASSES];
            net.logits(data.image(5), &mut one);
            assert_eq!(&one[..], &logits[5 * CLASSES..6 * CLASSES], "batch 1 gives batch 64's row");
            match &reference {
                None => reference = Some(logits.clone()),
                Some(r) => assert_eq!(r, &logits, "{kernel:?}, {bits:?} against the scalar kernel"),
            }
            let mut close = 0;
            let mut same_class = 0;
            for (a, b) in logits.chunks_exact(CLASSES).zip(float.chunks_exact(CLASSES)) {
                same_class += usize::from(argmax(a) == argmax(b));
                let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
                close += usize::from(a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-3 * scale));
            }
            assert!(close >= 60, "{bits:?}: {close} of 64 images with the float engine's logits");
            assert!(same_class >= 63, "{bits:?}: {same_class} of 64 with the float engine's class");
        }
    }
}

fn bits_of(network: &CnnConfig) -> (u32, u32) {
    (network.precision.w_bits, network.precision.a_bits)
}

fn bits_up_to_4((w, a): (u32, u32)) -> bool {
    w <= 4 && a <= 4
}

#[test]
fn float_students_are_refused_with_the_way_out() {
    let network = CnnConfig { precision: Precision { a_bits: 32, ..student((2, 2), 32).precision }, ..student((2, 2), 32) };
    let values = trained_values(&network);
    let e = IntNet::new(&network, &values, &Normalizer::new([0.0; 3], [1.0; 3])).err().unwrap();
    assert!(e.to_string().contains("--engine float"), "{e}");
}
