//! The training engine through its library API: learning, pause, stop.

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use crossbeam_channel::RecvTimeoutError;

use kdtui::engine::backend::{self, Resolved};
use kdtui::engine::data::batcher::{make_batch, Normalizer, Targets};
use kdtui::engine::data::synthetic::{self, Split};
use kdtui::engine::inference::evaluate;
use kdtui::engine::losses::{self, Objective};
use kdtui::engine::model::{CnnConfig, Precision};
use kdtui::engine::train::PlanInput;
use kdtui::protocol::{Control, TrainEvent};
use kdtui::study::{plan, Config, Loss};

mod common;

type AD = Autodiff<Flex>;

/// Trains a small network for 80 Adam steps on one batch of 32 images;
/// returns the loss of every step and the model.
fn fit_tiny_batch(
    precision: Precision,
    data_seed: u64,
) -> (Vec<f32>, kdtui::engine::model::Cnn<AD>, kdtui::engine::data::Dataset, Normalizer) {
    let device = Default::default();
    let d = synthetic::generate(32, data_seed, Split::Train);
    let norm = Normalizer::fit(&d);
    let cfg = CnnConfig { widths: [8, 16, 16], hidden: 32, precision };
    AD::seed(&device, 3);
    let mut model = cfg.init::<AD>(&device);
    let mut optim = AdamConfig::new().init();
    let all: Vec<usize> = (0..d.len()).collect();
    let mut losses = vec![];
    for _ in 0..80 {
        let b = make_batch::<AD>(&d, &norm, &all, &Targets::new(&d, None, &device), &device);
        let loss = losses::loss(&Objective::of(&Config::default(), Loss::Hard, None), model.forward(b.images), b.onehot, None);
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    (losses, model, d, norm)
}

/// A model that can learn anything must be able to memorise 32 images.
#[test]
fn teacher_overfits_a_tiny_batch() {
    let (losses, model, d, norm) = fit_tiny_batch(Precision::FLOAT, 11);
    assert!(losses[79] < 0.1 * losses[0], "loss {} -> {}", losses[0], losses[79]);
    // The running statistics must have followed: inference mode agrees.
    let (_, acc) = evaluate(&model.valid(), &d, &norm, 16, &Default::default());
    assert!(acc >= 0.9, "inference accuracy on the memorised batch: {acc}");
}

/// The quantized student learns too (the STE carries its gradients).
#[test]
fn quantized_student_learns_a_tiny_batch() {
    let precision = Precision { w_bits: 2, a_bits: 2, first_last_bits: 32, a_range: 3.0 };
    let (losses, ..) = fit_tiny_batch(precision, 12);
    assert!(losses[79] < 0.5 * losses[0], "{losses:?}");
}

fn tiny_config() -> Config {
    let mut c = Config::default();
    c.plan.seeds = vec![1];
    c.plan.losses = vec![Loss::Soft];
    c.plan.temperatures = vec![5.0];
    c.data.train_size = 256;
    c.data.test_size = 64;
    c.train.batch_size = 32;
    c.train.log_every = 1;
    c.teacher.widths = [4, 8, 8];
    c.teacher.hidden = 16;
    c.student.widths = [4, 8, 8];
    c.student.hidden = 16;
    c.teacher.epochs = 50;
    c
}

#[test]
fn pause_holds_the_trainer_still_and_stop_ends_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config();
    config.plan.checkpoints = dir.path().to_path_buf();
    let runs = plan::select(&config, &[]).unwrap();
    // Lockstep: each control lands within a step of the event it answers,
    // however fast the machine runs this tiny plan.
    let trainer = backend::spawn_lockstep(Resolved::Cpu, PlanInput { fresh: true, ..common::plan_input(&config, runs) }).unwrap();
    let wait = Duration::from_secs(60);
    // Run until a few steps have happened.
    let mut steps = 0;
    while steps < 3 {
        if let TrainEvent::Step { .. } = trainer.events.recv_timeout(wait).unwrap() {
            steps += 1;
        }
    }
    trainer.control.send(Control::Pause).unwrap();
    // Drain what was already under way until the trainer says it is paused.
    loop {
        if trainer.events.recv_timeout(wait).unwrap() == TrainEvent::Paused {
            break;
        }
    }
    // Paused: nothing at all arrives (each step of this tiny plan takes milliseconds).
    match trainer.events.recv_timeout(Duration::from_millis(1500)) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("the trainer moved while paused: {other:?}"),
    }
    trainer.control.send(Control::Resume).unwrap();
    assert_eq!(trainer.events.recv_timeout(wait).unwrap(), TrainEvent::Resumed);
    assert!(matches!(trainer.events.recv_timeout(wait).unwrap(), TrainEvent::Step { .. }));

    trainer.control.send(Control::Stop).unwrap();
    let mut finished = None;
    for event in trainer.events.iter() {
        match event {
            TrainEvent::RunFinished { result } => assert_eq!(result.status, kdtui::protocol::RunStatus::Interrupted),
            TrainEvent::PlanFinished { stopped } => finished = Some(stopped),
            TrainEvent::RunStarted { run_id, .. } => panic!("{run_id} started after stop"),
            _ => {}
        }
    }
    assert_eq!(finished, Some(true));
    trainer.thread.join().unwrap();
}

/// Each batch's soft targets are the teacher's targets of exactly the images
/// in that batch, under shuffling: through the logits cache, the conversion
/// to targets at T, a run's epoch orders and its batches, as a run uses them.
/// The fake teacher's logits encode the image index, and so do the images.
#[test]
fn soft_targets_follow_their_images_through_cache_shuffle_and_batches() {
    use kdtui::engine::data::batcher::{batches, Shuffle};
    use kdtui::engine::data::{Dataset, CLASSES, PIXELS};
    use kdtui::engine::train::checkpoint::RunStore;

    let n = 300;
    // Image i: its first two bytes are i, big-endian; its label is i mod 10.
    let mut images = vec![0u8; n * PIXELS];
    for i in 0..n {
        images[i * PIXELS] = (i >> 8) as u8;
        images[i * PIXELS + 1] = (i & 0xff) as u8;
    }
    let train = Dataset { images, labels: (0..n).map(|i| (i % 10) as u8).collect() };
    let index_of = |pixels: &[f32]| -> usize {
        // Normalised with mean 0 and std 1/255 below: pixel value v reads back as v.
        (pixels[0].round() as usize) << 8 | pixels[1].round() as usize
    };
    // The fake teacher: row i's logits put i / 100 on class i mod 10 and
    // i / 1000 on the next, so no two rows are alike.
    let logits: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..CLASSES).map(move |k| match (k + 10 - i % 10) % 10 {
                0 => i as f32 / 100.0,
                1 => i as f32 / 1000.0,
                _ => 0.0,
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.plan.checkpoints = dir.path().to_path_buf();
    let teacher = &plan::full_plan(&config)[0];
    let store = RunStore::new(&config, "digest", teacher);
    store.save_logits(&logits).unwrap();
    let cached = store.load_logits(n).unwrap();
    let temperature = 15.0;
    let soft = losses::soft_targets(&cached, CLASSES, temperature);
    let expected = losses::soft_targets(&logits, CLASSES, temperature);

    let norm = Normalizer::new([0.0; 3], [1.0 / 255.0; 3]);
    let device = Default::default();
    // Uploaded once, gathered per batch on the device, as a run does.
    let targets = Targets::<Flex>::new(&train, Some(&soft), &device);
    let mut shuffle = Shuffle::new(n, 1);
    let mut seen = 0;
    for _ in 0..3 {
        let order = shuffle.next_epoch().to_vec();
        assert_ne!(order, (0..n).collect::<Vec<_>>(), "the order is shuffled");
        for indices in batches(&order, 32) {
            let batch = make_batch::<Flex>(&train, &norm, indices, &targets, &device);
            let pixels = batch.images.into_data().to_vec::<f32>().unwrap();
            let labels = batch.labels.into_data().convert::<i64>().to_vec::<i64>().unwrap();
            let onehot = batch.onehot.into_data().to_vec::<f32>().unwrap();
            let targets = batch.soft.unwrap().into_data().to_vec::<f32>().unwrap();
            for (row, image) in pixels.chunks_exact(PIXELS).enumerate() {
                let i = index_of(image);
                assert_eq!(i, indices[row], "the batch holds its indices' images");
                assert_eq!(&targets[row * CLASSES..(row + 1) * CLASSES], &expected[i * CLASSES..(i + 1) * CLASSES], "image {i}'s targets");
                assert_eq!(labels[row], (i % 10) as i64, "image {i}'s label");
                assert_eq!(onehot[row * CLASSES + i % 10], 1.0, "image {i}'s one-hot row");
                assert_eq!(onehot[row * CLASSES..(row + 1) * CLASSES].iter().sum::<f32>(), 1.0);
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 3 * n);
}

/// The teacher's targets reach the gradients: on the same weights and batch,
/// a distillation step's gradients differ from a baseline step's, and from
/// those of the same step with another teacher's targets.
#[test]
fn a_distillation_steps_gradients_carry_the_teacher_targets() {
    use kdtui::engine::train::gradients;
    let device = Default::default();
    let d = synthetic::generate(16, 3, Split::Train);
    let norm = Normalizer::fit(&d);
    let all: Vec<usize> = (0..d.len()).collect();
    let cfg = CnnConfig { widths: [4, 8, 8], hidden: 16, precision: Precision::FLOAT };
    AD::seed(&device, 5);
    let model = cfg.init::<AD>(&device);
    // Two teachers that disagree: each image's favourite class is shifted by `shift`.
    let targets = |shift: usize| -> Vec<f32> {
        let logits: Vec<f32> =
            (0..d.len() * 10).map(|i| if i % 10 == (i / 10 + shift) % 10 { 8.0 } else { (i % 7) as f32 / 7.0 }).collect();
        losses::soft_targets(&logits, 10, 5.0)
    };
    let (q1, q2) = (targets(0), targets(3));
    let grad = |objective: Objective, soft: Option<&[f32]>| -> Vec<f32> {
        let batch = make_batch::<AD>(&d, &norm, &all, &Targets::new(&d, soft, &device), &device);
        let (grads, loss, _) = gradients(&model, batch, objective);
        assert!(loss.is_finite());
        kdtui::engine::train::flat_gradients(&model, &grads.unwrap())
    };
    let baseline = grad(Objective::of(&Config::default(), Loss::Hard, None), None);
    let distilled = |q: &[f32]| grad(Objective::of(&Config::default(), Loss::HardSoft, Some(5.0)), Some(q));
    let (with_q1, with_q2) = (distilled(&q1), distilled(&q2));
    let differ = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert_eq!(baseline.len(), with_q1.len());
    assert!(differ(&baseline, &with_q1) > 1e-3, "the soft term changed nothing");
    assert!(differ(&with_q1, &with_q2) > 1e-3, "other targets, same gradients");
    assert_eq!(differ(&with_q1, &distilled(&q1)), 0.0, "the same step twice gives the same gradients");
}
