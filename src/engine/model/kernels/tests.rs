use super::*;
use burn::backend::{Autodiff, Flex};
use burn::tensor::TensorData;
use rand::{Rng, SeedableRng};

type AD = Autodiff<Flex>;

/// The activation in burn's autodiff ops, as the model computed it before
/// the fused ops: ReLU, or the quantizer with its straight-through estimator.
fn reference_activation(y: Tensor<AD, 4>, act: Activation) -> Tensor<AD, 4> {
    match act {
        Activation::Identity => y,
        Activation::Relu => burn::tensor::activation::relu(y),
        Activation::Quantized { bits, range } => crate::engine::model::quant::quantize_activations(y, bits, range),
    }
}

/// Standard normal values from the test's own generator: burn's
/// `B::seed` seeds one process-wide generator that tests running beside
/// this one draw from too, so its "seeded" inputs changed between runs.
pub(crate) fn normal(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random(), rng.random());
            ((-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn random<B: Backend, const D: usize>(shape: [usize; D], seed: u64, device: &B::Device) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(normal(shape.iter().product(), seed), shape), device)
}

pub(crate) fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Every element within `rel` of its reference, relative to the larger of
/// its own magnitude and the reference's mean magnitude (an element that
/// cancels to near zero is as exact as the terms it sums, not as itself).
pub(crate) fn assert_close(got: &[f32], want: &[f32], rel: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mean = want.iter().map(|w| w.abs() as f64).sum::<f64>() / want.len().max(1) as f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let bound = rel * (w.abs() as f64).max(mean).max(f64::MIN_POSITIVE);
        assert!((*g as f64 - *w as f64).abs() <= bound, "{what}: element {i}: {g} vs {w} (allowed {bound:.2e})");
    }
}

/// Output and both gradients equal burn's conv2d (its kernels, not ours),
/// for odd sizes and the one-channel and one-pixel-wide edges; 16 and
/// more channels in or out take Winograd's products (forward and weight
/// gradient with 16 in, the input gradient with 16 out), 32 and more both
/// ways, with 64 tiles of 4x4 in the batch, its larger tile (forward and
/// input gradient).
#[test]
fn matches_burns_conv2d_and_its_gradients() {
    let device = Default::default();
    for (shape, cout) in [
        ([2, 3, 5, 7], 4),
        ([3, 1, 1, 6], 2),
        ([1, 5, 4, 1], 3),
        ([4, 8, 8, 8], 16),
        ([19, 3, 4, 4], 5),
        ([37, 2, 8, 8], 3),
        ([3, 16, 8, 8], 8),
        ([1, 16, 5, 7], 3),
        ([17, 24, 4, 4], 16),
        ([16, 32, 8, 8], 40),
        ([5, 33, 15, 14], 32),
    ] {
        let x = random::<AD, 4>(shape, 1, &device);
        let w = random::<AD, 4>([cout, shape[1], 3, 3], 2, &device);
        let weights = random::<AD, 4>([shape[0], cout, shape[2], shape[3]], 3, &device);

        let (xa, wa) = (x.clone().require_grad(), w.clone().require_grad());
        let ya = conv3x3(xa.clone(), wa.clone());
        let ga = (ya.clone() * weights.clone()).sum().backward();
        let (xb, wb) = (x.require_grad(), w.require_grad());
        let yb = burn::tensor::module::conv2d(xb.clone(), wb.clone(), None, options());
        let gb = (yb.clone() * weights).sum().backward();

        // Relative to the values' magnitude: the rounding of a sum grows
        // with its terms (288 of them at 32 channels in, which F(4x4, 3x3)
        // rounds a few times as much as the direct sum); a wrong index or
        // sign is off by a whole term. `winograd.rs` holds every path to an
        // exact sum far more tightly.
        let what = format!("{shape:?} -> {cout}");
        assert_close(&values(ya), &values(yb), 1e-4, &format!("{what}: output"));
        let grad = |t: &Tensor<AD, 4>, g| values(t.grad(g).unwrap());
        assert_close(&grad(&xa, &ga), &grad(&xb, &gb), 1e-4, &format!("{what}: dx"));
        assert_close(&grad(&wa, &ga), &grad(&wb, &gb), 1e-4, &format!("{what}: dweight"));
    }
}

const ACTIVATIONS: [Activation; 4] =
    [Activation::Identity, Activation::Relu, Activation::Quantized { bits: 2, range: 3.0 }, Activation::Quantized { bits: 4, range: 1.0 }];

/// How far a pre-activation may lie from a rounding boundary of the
/// quantizer and still round the other way on one side: the two sides
/// normalise with other roundings (f64 statistics against f32 ones), a few
/// parts in a million.
const NEAR_BOUNDARY: f64 = 1e-4;

/// Pre-activations within `NEAR_BOUNDARY` of a rounding boundary of
/// `act`: where the two sides may round differently (none for Identity and
/// ReLU).
fn near_boundary(pre: &[f32], act: Activation) -> usize {
    let Activation::Quantized { bits, range } = act else { return 0 };
    let level = range / ((1u64 << bits) - 1) as f64;
    let within = |p: f32| {
        let t = (p as f64).clamp(0.0, range) / level;
        (t - t.floor() - 0.5).abs() * level <= NEAR_BOUNDARY
    };
    pre.iter().filter(|&&p| within(p)).count()
}

/// Outputs of two computations of `act` that differ, given the
/// pre-activations `pre` (BatchNorm's output, or the largest of each pool
/// window: the quantizer does not decrease, so it commutes with max). Every
/// element must agree to 1e-5 of its magnitude, except a quantized output
/// whose pre-activation lies within `NEAR_BOUNDARY` of a rounding boundary:
/// that one may land one level over. Identity and ReLU allow no flip.
fn flips(ours: &[f32], theirs: &[f32], pre: &[f32], act: Activation, what: &str) -> usize {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    let mean = theirs.iter().map(|v| v.abs() as f64).sum::<f64>() / theirs.len().max(1) as f64;
    let mut flipped = 0;
    for (i, ((&a, &b), &p)) in ours.iter().zip(theirs).zip(pre).enumerate() {
        let diff = (a as f64 - b as f64).abs();
        if diff <= 1e-5 * (b.abs() as f64).max(mean).max(f64::MIN_POSITIVE) {
            continue;
        }
        let Activation::Quantized { bits, range } = act else {
            panic!("{what}: element {i}: {a} vs {b}, and {act:?} has no rounding to flip");
        };
        let level = range / ((1u64 << bits) - 1) as f64;
        let t = (p as f64).clamp(0.0, range) / level;
        let from_boundary = (t - t.floor() - 0.5).abs() * level;
        assert!(
            (diff - level).abs() < 1e-5 && from_boundary <= NEAR_BOUNDARY,
            "{what}: element {i}: {a} vs {b} (pre-activation {p}, {from_boundary:.2e} from a rounding boundary): not a flip at a boundary"
        );
        flipped += 1;
    }
    flipped
}

/// Gradient tolerance, relative (see `assert_close`): f32 sums over a
/// plane in another order part the two sides by a few parts in a million.
const GRAD_REL: f64 = 1e-4;

/// The gradients of three leaves, ours against the reference's.
type Grads = <AD as burn::tensor::backend::AutodiffBackend>::Gradients;

/// The leaves a BatchNorm case differentiates: x, gamma, beta.
type Leaves = (Tensor<AD, 4>, Tensor<AD, 1>, Tensor<AD, 1>);

fn assert_grads_close((xa, ga, ba): &Leaves, ours: &Grads, (xb, gb, bb): &Leaves, theirs: &Grads, what: &str) {
    assert_close(&values(xa.grad(ours).unwrap()), &values(xb.grad(theirs).unwrap()), GRAD_REL, &format!("{what}: dx"));
    assert_close(&values(ga.grad(ours).unwrap()), &values(gb.grad(theirs).unwrap()), GRAD_REL, &format!("{what}: dgamma"));
    assert_close(&values(ba.grad(ours).unwrap()), &values(bb.grad(theirs).unwrap()), GRAD_REL, &format!("{what}: dbeta"));
}

/// The fused BatchNorm + activation (the CPU kernels behind kdtui's
/// autodiff op) against the same computation in burn's own tensor ops
/// and autodiff: BatchNorm's formulas, then ReLU or the quantizer with
/// its detach-written straight-through estimator. Outputs and the
/// gradients of x, gamma and beta, for odd sizes, a batch of one and
/// the hidden layer's [b, c, 1, 1]. The straight-through gradient does not
/// depend on the level an output rounds to, so a flipped output leaves
/// every gradient comparable: all of them are compared.
#[test]
fn norm_act_matches_burns_ops_and_autodiff() {
    let device = Default::default();
    let mut flipped = 0;
    for (i, shape) in [[3, 4, 5, 2], [1, 3, 4, 4], [16, 6, 1, 1], [5, 2, 7, 3]].into_iter().enumerate() {
        for act in ACTIVATIONS {
            let seed = 10 * i as u64;
            let x = random::<AD, 4>(shape, seed, &device) * 1.5 + 0.3;
            let weights = random::<AD, 4>(shape, seed + 1, &device);
            let c = shape[1];
            let gamma = Tensor::<AD, 1>::from_floats(&[0.5, 1.0, 2.0, -1.0, 0.8, 1.3][..c], &device);
            let beta = Tensor::<AD, 1>::from_floats(&[0.0, 0.1, -0.2, 1.0, 0.5, -0.4][..c], &device);
            let leaves = || (x.clone().require_grad(), gamma.clone().require_grad(), beta.clone().require_grad());

            let a = leaves();
            let (xa, ga, ba) = a.clone();
            let (ours, _, _) = norm_act(xa.clone(), ga.clone(), ba.clone(), 1e-5, act);
            let grads_a = (ours.clone() * weights.clone()).sum().backward();

            let b = leaves();
            let (xb, gb, bb) = b.clone();
            let [y, _, _] = batch_norm_default::<AD>(prim(xb.clone()), prim(gb.clone()), prim(bb.clone()), 1e-5);
            let y = float::<AD, 4>(y);
            let theirs = reference_activation(y.clone(), act);
            let grads_b = (theirs.clone() * weights).sum().backward();

            let what = format!("{shape:?} {act:?}");
            flipped += flips(&values(ours), &values(theirs), &values(y), act, &what);
            assert_grads_close(&a, &grads_a, &b, &grads_b, &what);
        }
    }
    // The inputs are fixed: this is how many lie at a boundary today.
    assert!(flipped <= 2, "{flipped} quantized outputs flipped");
}

/// The tensor-op versions other backends run (forward, backward,
/// inference) equal the CPU kernels.
#[test]
fn norm_act_formulas_agree_with_the_kernels() {
    let device = Default::default();
    let x = random::<Flex, 4>([3, 4, 5, 2], 6, &device) * 3.0 + 1.0;
    let grad = random::<Flex, 4>([3, 4, 5, 2], 7, &device);
    let gamma = Tensor::<Flex, 1>::from_floats([0.5, 1.0, 2.0, -1.0], &device);
    let beta = Tensor::<Flex, 1>::from_floats([0.0, 0.1, -0.2, 3.0], &device);
    let eps = 1e-5;
    let flat = |t: &FloatTensor<Flex>| values(float::<Flex, 1>(t.clone()));
    let pre = norm_act_default::<Flex>(prim(x.clone()), prim(gamma.clone()), prim(beta.clone()), eps, Activation::Identity);
    for act in ACTIVATIONS {
        let ours = <Flex as CnnBackend>::norm_act(prim(x.clone()), prim(gamma.clone()), prim(beta.clone()), eps, act);
        let theirs = norm_act_default::<Flex>(prim(x.clone()), prim(gamma.clone()), prim(beta.clone()), eps, act);
        assert_eq!(flips(&flat(&ours[0]), &flat(&theirs[0]), &flat(&pre[0]), act, "forward"), 0, "{act:?}");
        for (a, b) in ours[1..].iter().zip(&theirs[1..]) {
            assert_close(&flat(a), &flat(b), 1e-5, &format!("{act:?} statistics"));
        }
        let [_, mean, var] = ours;
        let grads = |fused: bool| {
            let args = (prim(x.clone()), prim(gamma.clone()), prim(beta.clone()), mean.clone(), var.clone());
            if fused {
                <Flex as CnnBackend>::norm_act_grad(args.0, args.1, args.2, args.3, args.4, eps, act, prim(grad.clone()))
            } else {
                norm_act_grad_default::<Flex>(args.0, args.1, args.2, args.3, args.4, eps, act, prim(grad.clone()))
            }
        };
        for (a, b) in grads(true).iter().zip(&grads(false)) {
            assert_close(&flat(a), &flat(b), GRAD_REL, &format!("{act:?} gradients"));
        }
        let scale = gamma.clone().mul_scalar(0.7);
        let shift = beta.clone().add_scalar(0.2);
        let fused = <Flex as CnnBackend>::affine_act(prim(x.clone()), prim(scale.clone()), prim(shift.clone()), act);
        let tensor_ops = affine_act_default::<Flex>(prim(x.clone()), prim(scale.clone()), prim(shift.clone()), act);
        let pre = affine_act_default::<Flex>(prim(x.clone()), prim(scale), prim(shift), Activation::Identity);
        assert_eq!(flips(&flat(&fused), &flat(&tensor_ops), &flat(&pre), act, "inference"), 0, "{act:?} inference");
    }
}

/// The fused Adam step equals the tensor-op one other backends run, in
/// both weight decay modes, over steps with and without moments, on a
/// tensor of four of the kernel's chunks and a ragged end (threads take one
/// each). Moments and parameters are compared relative to their magnitude
/// (`assert_close`): an absolute 1e-6 let a second moment of ~1e-3 be off
/// by 0.1%.
#[test]
fn adam_step_matches_the_tensor_ops() {
    let device = Default::default();
    let shape = [2, 3, 4, 2731]; // 65,544 values: four chunks and a ragged end
    for decoupled in [false, true] {
        let h = AdamHyper { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8, weight_decay: 0.05, decoupled };
        let mut fused = (random::<Flex, 4>(shape, 1, &device), None);
        let mut ops = (fused.0.clone(), None);
        for time in 1..=3 {
            let grad = random::<Flex, 4>(shape, 10 + time as u64, &device).mul_scalar(10f32.powi(-(time as i32)));
            let (p, m, v) = <Flex as CnnBackend>::adam_step(fused.0, grad.clone(), fused.1, time, 1e-2, h);
            fused = (p, Some((m, v)));
            let (p, m, v) = adam_step_default(ops.0, grad, ops.1, time, 1e-2, h);
            ops = (p, Some((m, v)));
        }
        let what = if decoupled { "decoupled" } else { "L2" };
        assert_close(&values(fused.0), &values(ops.0), 1e-6, &format!("{what}: parameters"));
        let ((m1, v1), (m2, v2)) = (fused.1.unwrap(), ops.1.unwrap());
        assert_close(&values(m1), &values(m2), 1e-5, &format!("{what}: first moments"));
        assert_close(&values(v1), &values(v2), 1e-5, &format!("{what}: second moments"));
    }
}

/// The fused BatchNorm + activation + 2x2 max-pool against burn's own
/// ops and autodiff: the BatchNorm formulas, the activation with its
/// straight-through estimator, burn's max_pool2d. Outputs, gradients of
/// x, gamma and beta; quantized outputs make ties in most windows (the
/// first maximum wins, as in burn), a batch of one, odd counts and rows
/// of more windows than the kernel takes at once included. Any element
/// that may round the other way (not only a window's maximum: in a window
/// of tied levels it can move which one is first) can move the gradient,
/// so only cases without such an element compare gradients: every
/// Identity and ReLU case, and at least a quarter of the quantized ones.
#[test]
fn norm_act_pool_matches_burns_ops_and_autodiff() {
    let device = Default::default();
    let (mut quantized, mut compared) = (0, [0, 0]);
    for (i, shape) in [[3, 4, 4, 6], [1, 2, 2, 2], [5, 3, 8, 8], [2, 2, 4, 36]].into_iter().enumerate() {
        for act in ACTIVATIONS {
            let seed = 100 + 10 * i as u64;
            let x = random::<AD, 4>(shape, seed, &device) * 1.5 + 0.3;
            let weights = random::<AD, 4>([shape[0], shape[1], shape[2] / 2, shape[3] / 2], seed + 1, &device);
            let c = shape[1];
            let gamma = Tensor::<AD, 1>::from_floats(&[0.5, 1.0, 2.0, -1.0][..c], &device);
            let beta = Tensor::<AD, 1>::from_floats(&[0.0, 0.1, -0.2, 1.0][..c], &device);
            let leaves = || (x.clone().require_grad(), gamma.clone().require_grad(), beta.clone().require_grad());

            let a = leaves();
            let (xa, ga, ba) = a.clone();
            let (ours, _, _) = norm_act_pool(xa.clone(), ga.clone(), ba.clone(), 1e-5, act);
            let grads_a = (ours.clone() * weights.clone()).sum().backward();

            let b = leaves();
            let (xb, gb, bb) = b.clone();
            let [y, _, _] = batch_norm_default::<AD>(prim(xb.clone()), prim(gb.clone()), prim(bb.clone()), 1e-5);
            let y = float::<AD, 4>(y);
            let pool = |t| burn::tensor::module::max_pool2d(t, [2, 2], [2, 2], [0, 0], [1, 1], false);
            let unpooled = values(y.clone());
            let pre = pool(y.clone());
            let theirs = pool(reference_activation(y, act));
            let grads_b = (theirs.clone() * weights).sum().backward();

            let what = format!("{shape:?} {act:?}");
            let is_quantized = usize::from(matches!(act, Activation::Quantized { .. }));
            quantized += is_quantized;
            let flipped = flips(&values(ours), &values(theirs), &values(pre), act, &what);
            if near_boundary(&unpooled, act) == 0 {
                assert_eq!(flipped, 0, "{what}: a flip with no element near a boundary");
                assert_grads_close(&a, &grads_a, &b, &grads_b, &what);
                compared[is_quantized] += 1;
            }
        }
    }
    assert_eq!(compared[0], 8, "every Identity and ReLU case compares its gradients");
    assert!(4 * compared[1] >= quantized, "gradients compared in only {} of {quantized} quantized cases", compared[1]);
}

/// Inference's fused affine + activation + pool equals its parts.
#[test]
fn affine_act_pool_equals_its_parts() {
    let device = Default::default();
    let scale = Tensor::<Flex, 1>::from_floats([0.5, 1.0, 2.0, -1.0], &device);
    let shift = Tensor::<Flex, 1>::from_floats([0.0, 0.1, -0.2, 1.0], &device);
    // 36 columns: 18 windows a row, more than one segment of the kernel's.
    for (act, x) in
        ACTIVATIONS.into_iter().flat_map(|act| [[3, 4, 6, 8], [2, 4, 2, 36]].map(|shape| (act, random::<Flex, 4>(shape, 9, &device) * 2.0)))
    {
        let fused = affine_act_pool(x.clone(), scale.clone(), shift.clone(), act);
        let parts = burn::tensor::module::max_pool2d(
            affine_act(x.clone(), scale.clone(), shift.clone(), act),
            [2, 2],
            [2, 2],
            [0, 0],
            [1, 1],
            false,
        );
        fused.into_data().assert_eq(&parts.into_data(), true);
    }
}

/// The fused weight quantizer gives the very values of the recorded
/// reference, `quant::quantize_weights` (a packed student relies on it),
/// and its gradients: the CPU kernel, and burn's ops that the GPU backends
/// run, for one value, odd shapes, more than one task's chunk, and weights
/// all zero.
#[test]
fn quantize_weights_matches_the_recorded_reference() {
    fn check<const D: usize>(shape: [usize; D], w: Vec<f32>, bits: u32) {
        let device = Default::default();
        let what = format!("{shape:?} at {bits} bits");
        let w = Tensor::<AD, D>::from_data(TensorData::new(w, shape), &device);
        let upstream = random::<AD, D>(shape, 21, &device);
        let run = |fused: bool| {
            let leaf = w.clone().require_grad();
            let q = if fused {
                quantize_weights(leaf.clone(), bits)
            } else {
                crate::engine::model::quant::quantize_weights(leaf.clone(), bits)
            };
            let grads = (q.clone() * upstream.clone()).sum().backward();
            (values(q), values(leaf.grad(&grads).expect("a weight gradient")))
        };
        let ((q, g), (q_ref, g_ref)) = (run(true), run(false));
        assert_eq!(q, q_ref, "{what}: fused values");
        // A gradient is a difference of terms of size |upstream| / max|tanh w|
        // (a single weight's nearly cancels to zero): its error scales with them.
        let max_tanh = values(w.clone()).iter().fold(0f32, |m, v| m.max(v.tanh().abs()));
        let up = values(upstream.clone());
        let terms = up.iter().map(|v| v.abs()).sum::<f32>() / up.len() as f32 / (max_tanh + 1e-8);
        let near = |got: &[f32], what: &str| {
            for (i, (a, b)) in got.iter().zip(&g_ref).enumerate() {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(terms), "{what}: element {i}: {a} vs {b} (terms {terms})");
            }
        };
        near(&g, &format!("{what}: fused gradient"));
        let [q, tanh] = quantize_weights_default::<Flex>(prim(w.inner()), bits);
        assert_eq!(values(float::<Flex, D>(q)), q_ref, "{what}: burn-ops values");
        let g = quantize_weights_grad_default::<Flex>(tanh, prim(upstream.inner()));
        near(&values(float::<Flex, D>(g)), &format!("{what}: burn-ops gradient"));
    }
    for bits in [1, 2, 4] {
        check([1], normal(1, 11), bits);
        check([7], normal(7, 12), bits);
        check([5, 3, 3, 3], normal(135, 13), bits);
        check([71, 127], normal(71 * 127, 14), bits);
        check([2, 2], vec![0.0; 4], bits);
    }
}
