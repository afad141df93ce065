use super::*;
use crate::protocol::RunStatus;
use crate::study::{Loss, RunKind};

fn metrics(epoch: usize, acc: f64) -> EpochMetrics {
    EpochMetrics {
        epoch,
        train_loss: 1.0 / epoch as f64,
        train_accuracy: acc,
        test_loss: 2.0,
        test_accuracy: acc,
        seconds: 2.0,
        images_per_sec: 100.0,
        diagnostics: None,
    }
}

fn started(run_id: &str, history: Vec<EpochMetrics>) -> TrainEvent {
    TrainEvent::RunStarted { run_id: run_id.into(), epochs: 3, steps_per_epoch: 10, step: history.len() * 10, history }
}

fn result(run_id: &str, history: Vec<EpochMetrics>) -> RunResult {
    RunResult {
        run_id: run_id.into(),
        kind: RunKind::Distill,
        loss: Loss::Soft,
        temperature: Some(5.0),
        seed: 1,
        status: RunStatus::Done,
        epochs: history.len(),
        final_test_accuracy: 0.7,
        final_train_loss: 0.3,
        model_bytes: 10,
        wall_seconds: 6.0,
        reused: false,
        device: String::new(),
        history,
        deployment: None,
    }
}

/// A `started` line is read as the start and a heartbeat.
fn without_heartbeats(events: Vec<TrainEvent>) -> Vec<TrainEvent> {
    events.into_iter().filter(|e| !matches!(e, TrainEvent::Heartbeat { .. })).collect()
}

#[test]
fn a_followed_run_reads_back_as_the_events_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RunLog::new(dir.path().to_path_buf());
    let mut follower = Follower::new(dir.path());
    assert!(follower.poll().is_empty(), "no metric files yet");
    let step = TrainEvent::Step { run_id: "soft-T5-s1".into(), epoch: 1, step: 5, loss: f32::NAN, accuracy: 0.25, images_per_sec: 80.0 };
    let written =
        vec![started("soft-T5-s1", vec![]), step, TrainEvent::EpochFinished { run_id: "soft-T5-s1".into(), metrics: metrics(1, 0.5) }];
    for e in &written {
        assert!(log.on_event(e).is_ok());
    }
    let read = without_heartbeats(follower.poll());
    assert_eq!(read.len(), 3);
    assert_eq!(read[0], written[0]);
    assert_eq!(read[2], written[2].clone());
    match &read[1] {
        TrainEvent::Step { loss, step, .. } => assert!(loss.is_nan() && *step == 5, "NaN survives as NaN"),
        other => panic!("{other:?}"),
    }
    // Only what is new comes on the next poll.
    let done = TrainEvent::RunFinished { result: result("soft-T5-s1", vec![metrics(1, 0.5)]) };
    log.on_event(&done).unwrap();
    assert_eq!(follower.poll(), vec![done]);
    assert!(follower.poll().is_empty());
}

#[test]
fn a_torn_line_waits_for_its_end_and_a_killed_writer_is_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let path = path(dir.path(), "baseline-s1");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let line = serde_json::to_string(&Entry::Epoch { metrics: metrics(1, 0.5) }).unwrap();
    let (head, rest) = line.split_at(20);
    std::fs::write(&path, head).unwrap();
    let mut follower = Follower::new(dir.path());
    assert!(follower.poll().is_empty(), "half a line is not read");
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(format!("{rest}\n").as_bytes()).unwrap();
    assert!(matches!(follower.poll()[..], [TrainEvent::EpochFinished { .. }]));

    // A writer killed mid-line; the next session's entry starts a new line.
    f.write_all(b"{\"event\":\"ep").unwrap();
    let mut log = RunLog::new(dir.path().to_path_buf());
    log.on_event(&started("baseline-s1", vec![metrics(1, 0.5)])).unwrap();
    let events = without_heartbeats(follower.poll());
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[0], TrainEvent::Log { message } if message.contains("line 2: skipped")));
    assert_eq!(events[1], started("baseline-s1", vec![metrics(1, 0.5)]));
}

#[test]
fn heartbeats_go_to_the_runs_under_way_and_read_back_with_the_writers_patience() {
    let dir = tempfile::tempdir().unwrap();
    let watch = WatchConfig { heartbeat_seconds: 0.0, lost_after_seconds: 7.0 };
    let mut log = RunLog::new(dir.path().to_path_buf()).with_watch(watch);
    let mut follower = Follower::new(dir.path());
    let before = crate::util::unix_seconds();
    log.on_event(&started("soft-T5-s1", vec![])).unwrap();
    log.beat().unwrap();
    let events = follower.poll();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], started("soft-T5-s1", vec![]));
    for event in &events[1..] {
        match event {
            TrainEvent::Heartbeat { run_id, at, lost_after } => {
                assert_eq!((run_id.as_str(), *lost_after), ("soft-T5-s1", 7.0));
                assert!(*at >= before && *at <= crate::util::unix_seconds(), "{at}");
            }
            other => panic!("{other:?}"),
        }
    }
    // A finished run beats no more.
    log.on_event(&TrainEvent::RunFinished { result: result("soft-T5-s1", vec![]) }).unwrap();
    follower.poll();
    log.beat().unwrap();
    assert!(follower.poll().is_empty());

    // Due every heartbeat_seconds, not at every call.
    let mut log = RunLog::new(dir.path().to_path_buf()).with_watch(WatchConfig::default());
    log.on_event(&started("baseline-s1", vec![])).unwrap();
    follower.poll();
    log.beat().unwrap();
    assert!(follower.poll().is_empty(), "not due for 30 s");
}

#[test]
fn a_replayed_run_is_written_only_where_it_has_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RunLog::new(dir.path().to_path_buf());
    let replay = |log: &mut RunLog| {
        let mut s = started("teacher", vec![metrics(1, 0.9)]);
        if let TrainEvent::RunStarted { steps_per_epoch, .. } = &mut s {
            *steps_per_epoch = 0;
        }
        log.on_event(&s).unwrap();
        log.on_event(&TrainEvent::RunFinished { result: result("teacher", vec![metrics(1, 0.9)]) }).unwrap();
    };
    replay(&mut log);
    let once = std::fs::read_to_string(path(dir.path(), "teacher")).unwrap();
    assert_eq!(once.lines().count(), 2);
    replay(&mut RunLog::new(dir.path().to_path_buf()));
    assert_eq!(std::fs::read_to_string(path(dir.path(), "teacher")).unwrap(), once, "a second session adds nothing");
}
