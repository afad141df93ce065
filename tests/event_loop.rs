//! The monitor's real event loop (`monitor::screen::event_loop`) driven by a
//! scripted trainer thread and scripted keys, on a `TestBackend`, writing
//! real results files: the path a training session takes, without a
//! terminal or a model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Sender};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

use kdtui::monitor::app::App;
use kdtui::monitor::screen::event_loop;
use kdtui::outputs::state::PlanState;
use kdtui::outputs::{Results, Sink};
use kdtui::protocol::{Control, EpochMetrics, EventSource, RunResult, RunStatus, TrainEvent};
use kdtui::study::{RunKind, RunSpec, WatchConfig};

fn spec(run_id: &str, kind: RunKind, seed: u64) -> RunSpec {
    RunSpec { run_id: run_id.into(), kind, loss: kdtui::study::Loss::Hard, temperature: None, seed }
}

fn result(spec: &RunSpec, status: RunStatus, epochs: usize) -> RunResult {
    let history: Vec<EpochMetrics> = (1..=epochs)
        .map(|epoch| EpochMetrics {
            epoch,
            train_loss: 0.5,
            train_accuracy: 0.8,
            test_loss: 0.4,
            test_accuracy: 0.9,
            seconds: 1.0,
            images_per_sec: 100.0,
            diagnostics: None,
        })
        .collect();
    RunResult {
        run_id: spec.run_id.clone(),
        kind: spec.kind,
        loss: spec.loss,
        temperature: None,
        seed: spec.seed,
        status,
        epochs,
        final_test_accuracy: 0.9,
        final_train_loss: 0.5,
        model_bytes: 1000,
        wall_seconds: 1.0,
        reused: false,
        device: String::new(),
        history,
        deployment: None,
    }
}

/// A trainer thread that trains `runs[0]` and starts `runs[1]`; when
/// `stop_first`, it waits for `Stop` before saying how that run ended.
fn scripted(runs: Vec<RunSpec>, stop_first: bool, done: Arc<AtomicBool>) -> EventSource {
    let (events, events_rx): (Sender<TrainEvent>, _) = unbounded();
    let (control, control_rx) = unbounded();
    let thread = std::thread::spawn(move || {
        let say = |e: TrainEvent| events.send(e).unwrap();
        say(TrainEvent::PlanStarted {
            plan: "scripted".into(),
            runs: runs.clone(),
            device: "cpu".into(),
            data: "none".into(),
            test_images: 100,
        });
        let teacher = &runs[0];
        say(TrainEvent::RunStarted { run_id: teacher.run_id.clone(), epochs: 2, steps_per_epoch: 5, step: 0, history: vec![] });
        say(TrainEvent::Step { run_id: teacher.run_id.clone(), epoch: 1, step: 5, loss: 0.5, accuracy: 0.8, images_per_sec: 100.0 });
        let finished = result(teacher, RunStatus::Done, 2);
        for metrics in finished.history.clone() {
            say(TrainEvent::EpochFinished { run_id: teacher.run_id.clone(), metrics });
        }
        say(TrainEvent::RunFinished { result: finished });
        let student = &runs[1];
        say(TrainEvent::RunStarted { run_id: student.run_id.clone(), epochs: 2, steps_per_epoch: 5, step: 0, history: vec![] });
        let stopped = stop_first && {
            // Until the monitor says stop (after the user's q and y).
            while control_rx.recv_timeout(Duration::from_secs(20)).unwrap() != Control::Stop {}
            true
        };
        let status = if stopped { RunStatus::Interrupted } else { RunStatus::Done };
        say(TrainEvent::RunFinished { result: result(student, status, if stopped { 0 } else { 2 }) });
        say(TrainEvent::PlanFinished { stopped });
        done.store(true, Ordering::SeqCst);
    });
    EventSource { events: events_rx, control, thread }
}

fn key(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn screen(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let area = buffer.area;
    (0..area.height)
        .map(|y| (0..area.width).map(|x| buffer[(x, y)].symbol().to_string()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

fn plan() -> Vec<RunSpec> {
    vec![spec("teacher", RunKind::Teacher, 1), spec("baseline-s1", RunKind::Baseline, 1), spec("baseline-s2", RunKind::Baseline, 2)]
}

/// A whole plan through the loop: every event folded into the one study
/// state, the results files written as runs end (with another shard's row
/// merged in, which the monitor then holds too), and `q` after the end
/// quits without asking.
#[test]
fn a_finished_plan_is_on_screen_and_in_the_files_and_q_quits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let planned = plan();
    // Another shard finished baseline-s2 earlier in the same directory.
    let mut other = Results { plan: "scripted".into(), study_hash: "h".into(), planned: planned.clone(), ..Results::default() };
    other.record(result(&planned[2], RunStatus::Done, 2));
    kdtui::outputs::publish(&mut other, &out).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let trainer = scripted(planned[..2].to_vec(), false, Arc::clone(&done));
    let mut app = App::new(Results { plan: "scripted".into(), study_hash: "h".into(), planned: planned.clone(), ..Results::default() });
    let mut sink = Sink::new(&out, WatchConfig::default());
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    // q on the pass after the one that first saw the trainer done: that
    // pass drained PlanFinished, so q finds the plan over and quits at once.
    let (mut seen_done, deadline) = (false, Instant::now() + Duration::from_secs(60));
    event_loop(&mut terminal, &mut app, &trainer, Some(&mut sink), None, || {
        assert!(Instant::now() < deadline, "the loop did not end");
        if seen_done {
            return Ok(Some(key('q')));
        }
        seen_done = done.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        Ok(None)
    })
    .unwrap();

    assert_eq!(app.study.state, PlanState::Finished);
    assert!(app.should_quit && !app.confirm_quit, "q after the end quits at once");
    let ids: Vec<&str> = app.study.results.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["teacher", "baseline-s1", "baseline-s2"], "the other shard's row is in the study the monitor shows");
    let on_disk = Results::load(&out).unwrap();
    assert_eq!(on_disk.runs.len(), 3);
    assert!(on_disk.finished && !on_disk.stopped);
    let s = screen(&terminal);
    assert!(s.contains("FINISHED") && s.contains("baseline-s1") && s.contains("plan finished"), "{s}");
}

/// `q` while a run trains asks first; `y` sends the trainer `Stop`, the
/// loop waits for it to say how the run ended, and the files say stopped.
#[test]
fn q_then_y_stops_the_trainer_and_the_files_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let planned = plan();
    let done = Arc::new(AtomicBool::new(false));
    let trainer = scripted(planned[..2].to_vec(), true, Arc::clone(&done));
    let mut app = App::new(Results { plan: "scripted".into(), planned: planned.clone(), ..Results::default() });
    let mut sink = Sink::new(&out, WatchConfig::default());
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut keys = vec![key('y'), key('q')];
    let (mut waited, deadline) = (0, Instant::now() + Duration::from_secs(60));
    event_loop(&mut terminal, &mut app, &trainer, Some(&mut sink), None, || {
        assert!(Instant::now() < deadline, "the loop did not end");
        // Some passes first, so the student is under way when q comes.
        waited += 1;
        std::thread::sleep(Duration::from_millis(5));
        Ok(if waited > 20 { keys.pop() } else { None })
    })
    .unwrap();
    assert!(done.load(Ordering::SeqCst), "the loop ended before the trainer said how the plan ended");
    assert_eq!(app.study.state, PlanState::Stopped);
    let on_disk = Results::load(&out).unwrap();
    assert!(on_disk.stopped && !on_disk.finished, "{on_disk:?}");
    assert_eq!(on_disk.runs.iter().find(|r| r.run_id == "baseline-s1").unwrap().status, RunStatus::Interrupted);
}
