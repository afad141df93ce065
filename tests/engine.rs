//! The training engine through its library API: learning, pause, stop.

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use crossbeam_channel::RecvTimeoutError;

use kdtui::engine::backend::{self, Resolved};
use kdtui::engine::data::batcher::{make_batch, Normalizer};
use kdtui::engine::data::synthetic::{self, Split};
use kdtui::engine::data::{self, Data};
use kdtui::engine::inference::evaluate;
use kdtui::engine::losses;
use kdtui::engine::model::{CnnConfig, Precision};
use kdtui::engine::train::PlanInput;
use kdtui::protocol::{Control, TrainEvent};
use kdtui::study::{plan, Config, Loss};

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
        let b = make_batch::<AD>(&d, &norm, &all, None, &device);
        let loss = losses::loss(Loss::Hard, model.forward(b.images), b.onehot, None, 1.0, 1.0);
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
    let data: Data = data::load(&config.data).unwrap();
    let trainer = backend::spawn(
        Resolved::Cpu,
        PlanInput {
            config,
            runs,
            data,
            device_name: String::new(),
            fresh: true,
            notes: vec![],
            models: None,
            train_teacher: true,
            inject_panic: None,
        },
    );
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
