use super::*;
use burn::backend::{Autodiff, Flex};
use burn::tensor::Distribution;

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

fn random<B: Backend>(shape: [usize; 4], seed: u64, device: &B::Device) -> Tensor<B, 4> {
    B::seed(device, seed);
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Output and both gradients equal burn's conv2d (its kernels, not ours),
/// for odd sizes and the one-channel and one-pixel-wide edges; 16 and
/// more channels in or out take Winograd's products (forward and weight
/// gradient with 16 in, the input gradient with 16 out).
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
    ] {
        let x = random::<AD>(shape, 1, &device);
        let w = random::<AD>([cout, shape[1], 3, 3], 2, &device);
        let weights = random::<AD>([shape[0], cout, shape[2], shape[3]], 3, &device);

        let (xa, wa) = (x.clone().require_grad(), w.clone().require_grad());
        let ya = conv3x3(xa.clone(), wa.clone());
        let ga = (ya.clone() * weights.clone()).sum().backward();
        let (xb, wb) = (x.require_grad(), w.require_grad());
        let yb = burn::tensor::module::conv2d(xb.clone(), wb.clone(), None, options());
        let gb = (yb.clone() * weights).sum().backward();

        let tol = burn::tensor::Tolerance::<f32>::absolute(1e-4);
        ya.into_data().assert_approx_eq::<f32>(&yb.into_data(), tol);
        let grad = |t: &Tensor<AD, 4>, g| t.grad(g).unwrap().into_data();
        grad(&xa, &ga).assert_approx_eq::<f32>(&grad(&xb, &gb), tol);
        grad(&wa, &ga).assert_approx_eq::<f32>(&grad(&wb, &gb), tol);
    }
}

const ACTIVATIONS: [Activation; 4] =
    [Activation::Identity, Activation::Relu, Activation::Quantized { bits: 2, range: 3.0 }, Activation::Quantized { bits: 4, range: 1.0 }];

/// Elements of two outputs more than 1e-4 apart: only a rounding
/// boundary of the quantizer can part them (the two sides compute the
/// normalised value with other roundings), and then by one level.
fn apart(a: &[f32], b: &[f32], act: Activation) -> usize {
    let level = match act {
        Activation::Quantized { bits, range } => range / ((1u64 << bits) - 1) as f64,
        _ => 0.0,
    } as f32;
    a.iter()
        .zip(b)
        .filter(|(x, y)| (*x - *y).abs() > 1e-4)
        .inspect(|(x, y)| assert!(((*x - *y).abs() - level).abs() < 1e-3, "{x} vs {y}: not one level apart"))
        .count()
}

/// The fused BatchNorm + activation (the CPU kernels behind kdtui's
/// autodiff op) against the same computation in burn's own tensor ops
/// and autodiff: BatchNorm's formulas, then ReLU or the quantizer with
/// its detach-written straight-through estimator. Outputs and the
/// gradients of x, gamma and beta, for odd sizes, a batch of one and
/// the hidden layer's [b, c, 1, 1].
#[test]
fn norm_act_matches_burns_ops_and_autodiff() {
    let device = Default::default();
    for (i, shape) in [[3, 4, 5, 2], [1, 3, 4, 4], [16, 6, 1, 1], [5, 2, 7, 3]].into_iter().enumerate() {
        for act in ACTIVATIONS {
            let seed = 10 * i as u64;
            let x = random::<AD>(shape, seed, &device) * 1.5 + 0.3;
            let weights = random::<AD>(shape, seed + 1, &device);
            let c = shape[1];
            let gamma = Tensor::<AD, 1>::from_floats(&[0.5, 1.0, 2.0, -1.0, 0.8, 1.3][..c], &device);
            let beta = Tensor::<AD, 1>::from_floats(&[0.0, 0.1, -0.2, 1.0, 0.5, -0.4][..c], &device);
            let leaves = || (x.clone().require_grad(), gamma.clone().require_grad(), beta.clone().require_grad());

            let (xa, ga, ba) = leaves();
            let (ours, _, _) = norm_act(xa.clone(), ga.clone(), ba.clone(), 1e-5, act);
            let grads_a = (ours.clone() * weights.clone()).sum().backward();

            let (xb, gb, bb) = leaves();
            let [y, _, _] = batch_norm_default::<AD>(prim(xb.clone()), prim(gb.clone()), prim(bb.clone()), 1e-5);
            let y = float::<AD, 4>(y);
            let theirs = reference_activation(y, act);
            let grads_b = (theirs.clone() * weights).sum().backward();

            let values = |t: Tensor<AD, 4>| t.into_data().to_vec::<f32>().unwrap();
            let flipped = apart(&values(ours), &values(theirs), act);
            assert!(flipped <= 2, "{shape:?} {act:?}: {flipped} outputs differ");
            if flipped > 0 {
                continue; // a flipped level moves the gradients with it
            }
            let tol = burn::tensor::Tolerance::<f32>::absolute(2e-4);
            xa.grad(&grads_a).unwrap().into_data().assert_approx_eq::<f32>(&xb.grad(&grads_b).unwrap().into_data(), tol);
            ga.grad(&grads_a).unwrap().into_data().assert_approx_eq::<f32>(&gb.grad(&grads_b).unwrap().into_data(), tol);
            ba.grad(&grads_a).unwrap().into_data().assert_approx_eq::<f32>(&bb.grad(&grads_b).unwrap().into_data(), tol);
        }
    }
}

/// The tensor-op versions other backends run (forward, backward,
/// inference) equal the CPU kernels.
#[test]
fn norm_act_formulas_agree_with_the_kernels() {
    let device = Default::default();
    let x = random::<Flex>([3, 4, 5, 2], 6, &device) * 3.0 + 1.0;
    let grad = random::<Flex>([3, 4, 5, 2], 7, &device);
    let gamma = Tensor::<Flex, 1>::from_floats([0.5, 1.0, 2.0, -1.0], &device);
    let beta = Tensor::<Flex, 1>::from_floats([0.0, 0.1, -0.2, 3.0], &device);
    let eps = 1e-5;
    let tol = burn::tensor::Tolerance::<f32>::absolute(1e-4);
    for act in ACTIVATIONS {
        let ours = <Flex as CnnBackend>::norm_act(prim(x.clone()), prim(gamma.clone()), prim(beta.clone()), eps, act);
        let theirs = norm_act_default::<Flex>(prim(x.clone()), prim(gamma.clone()), prim(beta.clone()), eps, act);
        let flat = |t: &FloatTensor<Flex>| float::<Flex, 1>(t.clone()).into_data().to_vec::<f32>().unwrap();
        assert_eq!(apart(&flat(&ours[0]), &flat(&theirs[0]), act), 0, "{act:?}");
        for (a, b) in ours[1..].iter().zip(&theirs[1..]) {
            a.clone().into_data().assert_approx_eq::<f32>(&b.clone().into_data(), tol);
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
            a.clone().into_data().assert_approx_eq::<f32>(&b.clone().into_data(), tol);
        }
        let scale = gamma.clone().mul_scalar(0.7);
        let shift = beta.clone().add_scalar(0.2);
        let fused = <Flex as CnnBackend>::affine_act(prim(x.clone()), prim(scale.clone()), prim(shift.clone()), act);
        let tensor_ops = affine_act_default::<Flex>(prim(x.clone()), prim(scale), prim(shift), act);
        assert_eq!(apart(&flat(&fused), &flat(&tensor_ops), act), 0, "{act:?} inference");
    }
}

/// The fused Adam step equals the tensor-op one other backends run, in
/// both weight decay modes, over steps with and without moments.
#[test]
fn adam_step_matches_the_tensor_ops() {
    let device = Default::default();
    for decoupled in [false, true] {
        let h = AdamHyper { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8, weight_decay: 0.05, decoupled };
        let mut fused = (random::<Flex>([2, 3, 4, 5], 1, &device), None);
        let mut ops = (fused.0.clone(), None);
        for time in 1..=3 {
            let grad = random::<Flex>([2, 3, 4, 5], 10 + time as u64, &device).mul_scalar(10f32.powi(-(time as i32)));
            let (p, m, v) = <Flex as CnnBackend>::adam_step(fused.0, grad.clone(), fused.1, time, 1e-2, h);
            fused = (p, Some((m, v)));
            let (p, m, v) = adam_step_default(ops.0, grad, ops.1, time, 1e-2, h);
            ops = (p, Some((m, v)));
        }
        let tol = burn::tensor::Tolerance::<f32>::absolute(1e-6);
        fused.0.into_data().assert_approx_eq::<f32>(&ops.0.into_data(), tol);
        let ((m1, v1), (m2, v2)) = (fused.1.unwrap(), ops.1.unwrap());
        m1.into_data().assert_approx_eq::<f32>(&m2.into_data(), tol);
        v1.into_data().assert_approx_eq::<f32>(&v2.into_data(), tol);
    }
}

/// The fused BatchNorm + activation + 2x2 max-pool against burn's own
/// ops and autodiff: the BatchNorm formulas, the activation with its
/// straight-through estimator, burn's max_pool2d. Outputs, gradients of
/// x, gamma and beta; quantized outputs make ties in most windows (the
/// first maximum wins, as in burn), a batch of one, odd counts and rows
/// of more windows than the kernel takes at once included.
#[test]
fn norm_act_pool_matches_burns_ops_and_autodiff() {
    let device = Default::default();
    for (i, shape) in [[3, 4, 4, 6], [1, 2, 2, 2], [5, 3, 8, 8], [2, 2, 4, 36]].into_iter().enumerate() {
        for act in ACTIVATIONS {
            let seed = 100 + 10 * i as u64;
            let x = random::<AD>(shape, seed, &device) * 1.5 + 0.3;
            let weights = random::<AD>([shape[0], shape[1], shape[2] / 2, shape[3] / 2], seed + 1, &device);
            let c = shape[1];
            let gamma = Tensor::<AD, 1>::from_floats(&[0.5, 1.0, 2.0, -1.0][..c], &device);
            let beta = Tensor::<AD, 1>::from_floats(&[0.0, 0.1, -0.2, 1.0][..c], &device);
            let leaves = || (x.clone().require_grad(), gamma.clone().require_grad(), beta.clone().require_grad());

            let (xa, ga, ba) = leaves();
            let (ours, _, _) = norm_act_pool(xa.clone(), ga.clone(), ba.clone(), 1e-5, act);
            let grads_a = (ours.clone() * weights.clone()).sum().backward();

            let (xb, gb, bb) = leaves();
            let [y, _, _] = batch_norm_default::<AD>(prim(xb.clone()), prim(gb.clone()), prim(bb.clone()), 1e-5);
            let y = float::<AD, 4>(y);
            let y = reference_activation(y, act);
            let theirs = burn::tensor::module::max_pool2d(y, [2, 2], [2, 2], [0, 0], [1, 1], false);
            let grads_b = (theirs.clone() * weights).sum().backward();

            let values = |t: Tensor<AD, 4>| t.into_data().to_vec::<f32>().unwrap();
            let flipped = apart(&values(ours), &values(theirs), act);
            assert!(flipped <= 1, "{shape:?} {act:?}: {flipped} outputs differ");
            if flipped > 0 {
                continue;
            }
            let tol = burn::tensor::Tolerance::<f32>::absolute(2e-4);
            xa.grad(&grads_a).unwrap().into_data().assert_approx_eq::<f32>(&xb.grad(&grads_b).unwrap().into_data(), tol);
            ga.grad(&grads_a).unwrap().into_data().assert_approx_eq::<f32>(&gb.grad(&grads_b).unwrap().into_data(), tol);
            ba.grad(&grads_a).unwrap().into_data().assert_approx_eq::<f32>(&bb.grad(&grads_b).unwrap().into_data(), tol);
        }
    }
}

/// Inference's fused affine + activation + pool equals its parts.
#[test]
fn affine_act_pool_equals_its_parts() {
    let device = Default::default();
    let scale = Tensor::<Flex, 1>::from_floats([0.5, 1.0, 2.0, -1.0], &device);
    let shift = Tensor::<Flex, 1>::from_floats([0.0, 0.1, -0.2, 1.0], &device);
    // 36 columns: 18 windows a row, more than one segment of the kernel's.
    for (act, x) in
        ACTIVATIONS.into_iter().flat_map(|act| [[3, 4, 6, 8], [2, 4, 2, 36]].map(|shape| (act, random::<Flex>(shape, 9, &device) * 2.0)))
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
