//! On a GPU every read of a value from the device waits for its queue to
//! drain; a read after every step makes training wait on the host. The
//! training loop keeps each step's loss and right answers on the device and
//! reads them once per step event (`log_every` steps) and at the end of an
//! epoch: the steps between make no read. Counted here on the CPU backend,
//! which runs the same loop (`train::host_reads` counts the loop's reads).
//! Alone in its file: the count is per process.

use std::path::Path;

use kdtui::engine::backend::{self, Resolved};
use kdtui::engine::train::host_reads;
use kdtui::protocol::TrainEvent;
use kdtui::study::{plan, Config};

mod common;

/// Reads a run of `epochs` epochs of `steps` steps makes with events every
/// `log_every` steps: one per event, and one at an epoch's end unless an
/// event has just read everything.
fn expected(epochs: usize, steps: usize, log_every: usize) -> usize {
    let events = (1..=epochs * steps).filter(|k| k.is_multiple_of(log_every)).count();
    let tails = (1..=epochs).filter(|e| !(e * steps).is_multiple_of(log_every)).count();
    events + tails
}

fn reads_of_tiny_plan(log_every: usize) -> (usize, Vec<TrainEvent>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::parse(common::TINY, Path::new("tiny.toml")).unwrap();
    config.plan.checkpoints = dir.path().join("checkpoints");
    config.train.log_every = log_every;
    let before = host_reads();
    let trainer = backend::spawn(Resolved::Cpu, common::plan_input(&config, plan::full_plan(&config))).unwrap();
    let events: Vec<TrainEvent> = trainer.events.iter().collect();
    trainer.thread.join().unwrap();
    (host_reads() - before, events)
}

#[test]
fn steps_between_two_step_events_read_nothing_from_the_device() {
    // TINY: 192 images in batches of 32 (6 steps an epoch); the teacher
    // trains 2 epochs, baseline, soft-T5 and gt_soft-T5 one each.
    let runs = [(2, 6), (1, 6), (1, 6), (1, 6)];
    for log_every in [1000, 4, 1] {
        let (reads, events) = reads_of_tiny_plan(log_every);
        let finished = events.iter().filter(|e| matches!(e, TrainEvent::RunFinished { .. })).count();
        assert_eq!(finished, 4, "{events:?}");
        let want: usize = runs.iter().map(|&(epochs, steps)| expected(epochs, steps, log_every)).sum();
        assert_eq!(reads, want, "log_every = {log_every}");
        let step_events = events.iter().filter(|e| matches!(e, TrainEvent::Step { .. })).count();
        assert_eq!(step_events, runs.iter().map(|&(e, s)| e * s / log_every).sum::<usize>());
    }
    // With no step event in an epoch, its 6 steps make one read, at its end.
    assert_eq!(expected(2, 6, 1000), 2);
    assert_eq!(expected(2, 6, 1), 12);
}
