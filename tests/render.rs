//! The interactive screen driven by scripted events on a fixed-size
//! `TestBackend`: what a person would read.

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use kdtui::monitor::app::App;
use kdtui::monitor::keys::{self, Action};
use kdtui::monitor::ui::table_view::Column;
use kdtui::outputs::state::PlanState;
use kdtui::outputs::Results;
use kdtui::protocol::{Control, Deployment, Diagnostics, EpochMetrics, IntegerServing, RunResult, RunStatus, TrainEvent};
use kdtui::study::{plan, Config, Loss, RunKind};

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| kdtui::monitor::ui::render(app, f)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..height).map(|y| (0..width).map(|x| buffer[(x, y)].symbol().to_string()).collect::<String>()).collect::<Vec<_>>().join("\n")
}

fn started_app() -> App {
    let mut config = Config::default();
    config.plan.seeds = vec![1];
    let runs = plan::full_plan(&config);
    let mut app = App::new(Results { plan: "study".into(), ..Results::default() });
    app.on_event(TrainEvent::PlanStarted {
        plan: "study".into(),
        runs,
        device: "cpu (burn flex, 2 threads)".into(),
        data: "synthetic: 7000 train / 1000 test".into(),
        test_images: 1000,
    });
    app
}

fn finish(app: &mut App, run_id: &str, kind: RunKind, loss: Loss, temperature: Option<f64>, acc: f64) {
    app.on_event(TrainEvent::RunStarted { run_id: run_id.into(), epochs: 1, steps_per_epoch: 10, step: 0, history: vec![] });
    let metrics = EpochMetrics {
        epoch: 1,
        train_loss: 0.5,
        train_accuracy: acc - 0.01,
        test_loss: 0.4,
        test_accuracy: acc,
        seconds: 40.0,
        images_per_sec: 175.0,
        diagnostics: None,
    };
    app.on_event(TrainEvent::EpochFinished { run_id: run_id.into(), metrics: metrics.clone() });
    app.on_event(TrainEvent::RunFinished {
        result: RunResult {
            run_id: run_id.into(),
            kind,
            loss,
            temperature,
            seed: 1,
            status: RunStatus::Done,
            epochs: 1,
            final_test_accuracy: acc,
            final_train_loss: 0.5,
            model_bytes: 224_000,
            wall_seconds: 40.0,
            reused: false,
            device: String::new(),
            history: vec![metrics],
            deployment: None,
        },
    });
}

#[test]
fn header_table_and_status_words() {
    let mut app = started_app();
    finish(&mut app, "teacher", RunKind::Teacher, Loss::Hard, None, 0.96);
    app.on_event(TrainEvent::RunStarted { run_id: "baseline-s1".into(), epochs: 2, steps_per_epoch: 50, step: 0, history: vec![] });
    let s = screen(&app, 120, 40);
    assert!(s.contains("RUNNING"), "{s}");
    assert!(s.contains("runs 1/17"), "{s}");
    assert!(s.contains("synthetic: 7000 train / 1000 test"), "{s}");
    assert!(s.contains("teacher") && s.contains("done") && s.contains("96.00"), "{s}");
    assert!(s.contains("run 1/2"), "the running row says its epoch: {s}");
    assert!(s.contains("queued"), "{s}");
    // The original study's number and our difference.
    assert!(s.contains("96.09 (-0.1)"), "{s}");
}

#[test]
fn pause_shows_in_the_header_and_sends_control() {
    let mut app = started_app();
    assert_eq!(app.on_action(Action::TogglePause), Some(Control::Pause));
    assert!(screen(&app, 120, 40).contains("PAUSED"));
    assert_eq!(app.on_action(Action::TogglePause), Some(Control::Resume));
    assert!(screen(&app, 120, 40).contains("RUNNING"));
}

#[test]
fn sorting_every_column_both_ways_keeps_the_selection() {
    let mut app = started_app();
    finish(&mut app, "teacher", RunKind::Teacher, Loss::Hard, None, 0.96);
    finish(&mut app, "baseline-s1", RunKind::Baseline, Loss::Hard, None, 0.70);
    finish(&mut app, "soft-T5-s1", RunKind::Distill, Loss::Soft, Some(5.0), 0.81);
    finish(&mut app, "soft-T15-s1", RunKind::Distill, Loss::Soft, Some(15.0), 0.78);
    app.table.selected = Some("soft-T15-s1".into());
    for _ in 0..Column::ALL.len() {
        for _ in 0..2 {
            let order = app.sorted();
            assert_eq!(order.len(), app.study.runs.len());
            let s = screen(&app, 120, 40);
            // The selected run stays selected and visible, marked by the cursor.
            let line = s.lines().find(|l| l.contains('›')).unwrap_or_else(|| panic!("no selection: {s}"));
            assert!(line.contains("soft-T15-s1"), "selection moved: {line}");
            app.on_action(Action::ReverseSort);
        }
        app.on_action(Action::NextSort);
    }
    // Test accuracy, descending: best first, unfinished runs last.
    app.table.sort = Column::TestAccuracy;
    app.table.descending = true;
    let ids: Vec<&str> = app.sorted().iter().map(|&i| app.study.runs[i].spec.run_id.as_str()).collect();
    assert_eq!(&ids[..4], &["teacher", "soft-T5-s1", "soft-T15-s1", "baseline-s1"]);
    app.table.descending = false;
    let ids: Vec<&str> = app.sorted().iter().map(|&i| app.study.runs[i].spec.run_id.as_str()).collect();
    assert_eq!(&ids[..4], &["baseline-s1", "soft-T15-s1", "soft-T5-s1", "teacher"]);
    assert!(screen(&app, 120, 40).contains("test acc▲"));
    // Down moves in display order.
    app.table.selected = Some("baseline-s1".into());
    app.on_action(Action::Down);
    assert_eq!(app.table.selected.as_deref(), Some("soft-T15-s1"));
}

#[test]
fn unwritable_results_and_fatal_trainer_errors_stop_the_plan_on_screen() {
    let mut app = started_app();
    assert_eq!(
        app.study.on_results_unwritable("cannot write results/results.json: No space left on device".into()),
        Some(Control::Stop),
        "training on would produce results nobody gets"
    );
    let s = screen(&app, 120, 40);
    assert!(s.contains("FAILED") && s.contains("No space left on device"), "{s}");

    let mut app = started_app();
    app.on_event(TrainEvent::Fatal {
        error: "soft-T5-s1: cannot save its checkpoint: cannot write checkpoints/study/soft-T5-s1/checkpoint.bin".into(),
    });
    app.on_event(TrainEvent::PlanFinished { stopped: true });
    let s = screen(&app, 120, 40);
    assert!(s.contains("FAILED") && s.contains("checkpoint.bin"), "the fault stays on screen: {s}");
}

#[test]
fn failed_run_and_failed_trainer_are_shown() {
    let mut app = started_app();
    app.on_event(TrainEvent::RunFailed { run_id: "teacher".into(), error: "training panicked: boom".into() });
    let s = screen(&app, 120, 40);
    assert!(s.contains("failed"), "{s}");
    assert!(s.contains("teacher FAILED: training panicked: boom"), "{s}");
    app.study.on_trainer_died("it panicked".into());
    let s = screen(&app, 120, 40);
    assert!(s.contains("FAILED") && s.contains("training failed: it panicked"), "{s}");
    // The user can still quit without being asked.
    assert_eq!(app.on_action(Action::Quit), None);
    assert!(app.should_quit);
}

#[test]
fn tiny_terminal_says_so() {
    let app = started_app();
    let s = screen(&app, 60, 20);
    assert!(s.contains("needs at least 80x24"), "{s}");
    assert!(screen(&app, 80, 24).contains("RUNNING"));
}

#[test]
fn sweep_chart_fills_in_as_runs_finish() {
    let mut app = started_app();
    let empty = screen(&app, 120, 40);
    assert!(empty.contains("fills in as distillation runs finish"), "{empty}");
    finish(&mut app, "teacher", RunKind::Teacher, Loss::Hard, None, 0.96);
    finish(&mut app, "soft-T5-s1", RunKind::Distill, Loss::Soft, Some(5.0), 0.81);
    finish(&mut app, "hard_soft-T5-s1", RunKind::Distill, Loss::HardSoft, Some(5.0), 0.80);
    finish(&mut app, "hard_soft-T50-s1", RunKind::Distill, Loss::HardSoft, Some(50.0), 0.84);
    let s = screen(&app, 120, 40);
    assert!(!s.contains("fills in as"), "{s}");
    assert!(s.contains("sweep: test accuracy vs T"), "{s}");
    assert!(s.contains("hard_soft") && s.contains("teacher"), "legend: {s}");
    // T on a log axis: the label halfway between 5 and 100 is their
    // geometric mean, 22 (a linear axis would put 52 there).
    assert!(s.contains("sweep: test accuracy vs T, log axis"), "{s}");
    let axis = s.lines().find(|l| l.contains(" 5 ") && l.contains("100")).expect("the T axis labels");
    assert!(axis.contains(" 22 ") && !axis.contains("52"), "{axis}");
}

#[test]
fn the_sweep_panel_says_how_many_planned_comparisons_are_resolved() {
    let mut config = Config::default();
    config.plan.seeds = vec![1, 2, 3];
    let runs = plan::full_plan(&config);
    // As `kdtui watch` starts: empty results; the plan and the test set's
    // size arrive with PlanStarted.
    let mut app = App::watching("results".into());
    app.on_event(TrainEvent::PlanStarted { plan: "study".into(), runs, device: "cpu".into(), data: "synthetic".into(), test_images: 5000 });
    let s = screen(&app, 120, 40);
    assert!(s.contains("0 of 20 planned comparisons resolved (0 made, Holm 5%)"), "{s}");
    finish(&mut app, "teacher", RunKind::Teacher, Loss::Hard, None, 0.96);
    for (seed, jitter) in [(1, 0.0), (2, 0.002), (3, -0.001)] {
        finish(&mut app, &format!("baseline-s{seed}"), RunKind::Baseline, Loss::Hard, None, 0.90 + jitter);
        finish(&mut app, &format!("soft-T5-s{seed}"), RunKind::Distill, Loss::Soft, Some(5.0), 0.95 + jitter);
    }
    let s = screen(&app, 120, 40);
    assert!(s.contains("1 of 20 planned comparisons resolved (1 made, Holm 5%)"), "{s}");
}

#[test]
fn quit_asks_while_running_and_stops_the_trainer() {
    let mut app = started_app();
    assert_eq!(app.on_action(Action::Quit), None);
    assert!(app.confirm_quit && !app.should_quit);
    assert!(screen(&app, 120, 40).contains("Stop training and quit?"));
    assert_eq!(app.on_action(Action::Cancel), None);
    assert!(!app.confirm_quit);
    app.on_action(Action::Quit);
    assert_eq!(app.on_action(Action::Confirm), Some(Control::Stop));
    assert!(app.should_quit);
    assert_eq!(app.study.state, PlanState::Stopping);
    assert!(screen(&app, 120, 40).contains("STOPPING"));
    // Ctrl-C does the same without the question.
    let mut app = started_app();
    assert_eq!(app.on_action(Action::ForceQuit), Some(Control::Stop));
}

#[test]
fn help_is_generated_from_the_key_table() {
    let mut app = started_app();
    app.on_action(Action::ToggleHelp);
    let s = screen(&app, 120, 40);
    for (keys, what) in keys::help_lines() {
        assert!(s.contains(&keys) && s.contains(what), "help lacks `{keys}`: {s}");
    }
}

/// `kdtui watch /shared/results` of a study of teacher, baseline and soft-T5.
fn watching_app() -> App {
    let mut config = Config::default();
    config.plan.seeds = vec![1];
    config.plan.losses = vec![Loss::Soft];
    config.plan.temperatures = vec![5.0];
    let mut app = App::watching("/shared/results".into());
    app.on_event(TrainEvent::PlanStarted {
        plan: "study".into(),
        runs: plan::full_plan(&config),
        device: "cpu (burn flex, 2 threads)".into(),
        data: "synthetic: 7000 train / 1000 test".into(),
        test_images: 1000,
    });
    app
}

#[test]
fn watching_has_no_pause_says_why_and_quits_without_asking() {
    let mut app = watching_app();
    assert_eq!(app.study.state, PlanState::Watching);
    // Two shards train at once: both rows run, and the header sums their speed.
    for (run_id, speed) in [("baseline-s1", 300.0), ("soft-T5-s1", 200.0)] {
        app.on_event(TrainEvent::RunStarted { run_id: run_id.into(), epochs: 2, steps_per_epoch: 50, step: 0, history: vec![] });
        app.on_event(TrainEvent::Step { run_id: run_id.into(), epoch: 1, step: 5, loss: 2.0, accuracy: 0.2, images_per_sec: speed });
    }
    let s = screen(&app, 120, 40);
    assert!(s.contains("WATCHING") && s.contains("watching /shared/results (read-only)"), "{s}");
    assert!(s.contains("500 img/s"), "{s}");
    assert!(s.contains("no pause here: the runs train in other processes"), "the hint says why: {s}");
    assert!(!s.contains("p pause"), "{s}");

    assert_eq!(app.on_action(Action::TogglePause), None, "nothing to pause");
    assert_eq!(app.study.state, PlanState::Watching);
    assert!(screen(&app, 120, 40).contains("no pause in kdtui watch: the runs train in other processes"));

    finish(&mut app, "teacher", RunKind::Teacher, Loss::Hard, None, 0.96);
    finish(&mut app, "baseline-s1", RunKind::Baseline, Loss::Hard, None, 0.8);
    assert_eq!(app.study.state, PlanState::Watching, "soft-T5-s1 still runs");
    finish(&mut app, "soft-T5-s1", RunKind::Distill, Loss::Soft, Some(5.0), 0.82);
    assert_eq!(app.study.state, PlanState::Finished);
    // A requeued run that starts again is followed again.
    app.on_event(TrainEvent::RunStarted { run_id: "soft-T5-s1".into(), epochs: 2, steps_per_epoch: 50, step: 50, history: vec![] });
    assert_eq!(app.study.state, PlanState::Watching);

    assert_eq!(app.on_action(Action::Quit), None);
    assert!(app.should_quit && !app.confirm_quit, "quits at once: it stops nothing");
}

#[test]
fn a_run_stopped_in_its_first_epoch_shows_no_accuracy() {
    let mut app = started_app();
    app.on_event(TrainEvent::RunStarted { run_id: "teacher".into(), epochs: 4, steps_per_epoch: 50, step: 0, history: vec![] });
    app.on_event(TrainEvent::RunFinished {
        result: RunResult {
            run_id: "teacher".into(),
            kind: RunKind::Teacher,
            loss: Loss::Hard,
            temperature: None,
            seed: 1,
            status: RunStatus::Interrupted,
            epochs: 0,
            final_test_accuracy: 0.0,
            final_train_loss: f64::NAN,
            model_bytes: 3_230_808,
            wall_seconds: 6.0,
            reused: false,
            device: String::new(),
            history: vec![],
            deployment: None,
        },
    });
    let s = screen(&app, 120, 40);
    let row = s.lines().find(|l| l.contains("teacher ") && l.contains("interrupted")).unwrap();
    assert!(!row.contains("0.00") && row.contains("96.09 "), "no 0% measured, no difference to the original: {row}");
}

/// `kdtui watch` cannot see a process on another node die; a run whose
/// heartbeats stop for longer than its writer allows shows as `lost?` with
/// the silence, says so once in the log, and is followed again when its
/// task runs again.
#[test]
fn a_watched_run_without_heartbeats_shows_as_lost() {
    let mut app = watching_app();
    for run_id in ["baseline-s1", "soft-T5-s1"] {
        app.on_event(TrainEvent::RunStarted { run_id: run_id.into(), epochs: 4, steps_per_epoch: 50, step: 0, history: vec![] });
        app.on_event(TrainEvent::Heartbeat { run_id: run_id.into(), at: 1000.0, lost_after: 300.0 });
    }
    // soft-T5-s1's task keeps beating; baseline-s1's was killed at 1000.
    app.on_event(TrainEvent::Heartbeat { run_id: "soft-T5-s1".into(), at: 1290.0, lost_after: 300.0 });
    app.study.set_clock(1299.0);
    let row = |s: &str, id: &str| s.lines().find(|l| l.contains(id)).unwrap().to_string();
    let s = screen(&app, 120, 40);
    assert!(row(&s, "baseline-s1").contains("run 1/4"), "not yet lost at 299 s: {s}");

    app.study.set_clock(1000.0 + 372.0);
    let s = screen(&app, 120, 40);
    assert!(row(&s, "baseline-s1").contains("lost? 6m"), "{s}");
    assert!(row(&s, "soft-T5-s1").contains("run 1/4"), "{s}");
    assert!(s.contains("baseline-s1: no heartbeat for 6m; its process may have died"), "{s}");
    app.study.set_clock(1000.0 + 3.5 * 3600.0);
    let s = screen(&app, 120, 40);
    assert!(row(&s, "baseline-s1").contains("lost? 3h"), "{s}");
    assert_eq!(s.matches("baseline-s1: no heartbeat").count(), 1, "said once: {s}");
    assert_eq!(app.study.state, PlanState::Watching, "a lost run has not ended");

    // Requeued: it starts again and beats.
    let now = 1000.0 + 3.5 * 3600.0 + 5.0;
    app.on_event(TrainEvent::RunStarted { run_id: "baseline-s1".into(), epochs: 4, steps_per_epoch: 50, step: 50, history: vec![] });
    app.on_event(TrainEvent::Heartbeat { run_id: "baseline-s1".into(), at: now, lost_after: 300.0 });
    app.study.set_clock(now + 1.0);
    let s = screen(&app, 120, 40);
    assert!(row(&s, "baseline-s1").contains("run 1/4"), "{s}");

    // Files of a kdtui without heartbeats: never called lost.
    app.on_event(TrainEvent::RunStarted { run_id: "teacher".into(), epochs: 4, steps_per_epoch: 50, step: 0, history: vec![] });
    app.study.set_clock(now + 1e6);
    assert!(row(&screen(&app, 120, 40), "teacher").contains("run 1/4"));
}

/// A finished run whose epochs carry diagnostics: per-class accuracy from
/// `right` images of 10 per class (the rest predicted as class 0), agreement
/// `agreement`, and an ECE.
fn finish_diagnosed(app: &mut App, spec: (&str, RunKind, Loss, Option<f64>), right: [u32; 10], agreement: Option<f64>) {
    let (run_id, kind, loss, temperature) = spec;
    let mut confusion = vec![0u32; 100];
    for (class, &r) in right.iter().enumerate() {
        confusion[class * 10 + class] += r;
        confusion[class * 10] += 10 - r;
    }
    let accuracy = f64::from(right.iter().sum::<u32>()) / 100.0;
    let history: Vec<EpochMetrics> = (1..=3)
        .map(|epoch| EpochMetrics {
            epoch,
            train_loss: 1.0 / epoch as f64,
            train_accuracy: accuracy,
            test_loss: 1.2 / epoch as f64,
            test_accuracy: accuracy - 0.1 * (3 - epoch) as f64,
            seconds: 1.0,
            images_per_sec: 100.0,
            diagnostics: Some(Diagnostics {
                agreement: agreement.map(|a| a - 0.05 * (3 - epoch) as f64),
                agreement_on_teacher_errors: agreement.map(|a| a / 2.0),
                kl_t1: agreement.map(|_| 0.25 / epoch as f64),
                kl_t: temperature.map(|_| 0.0125),
                ece: 0.05 / epoch as f64,
                bins: vec![],
                confusion: confusion.clone(),
            }),
        })
        .collect();
    app.on_event(TrainEvent::RunStarted { run_id: run_id.into(), epochs: 3, steps_per_epoch: 10, step: 0, history: vec![] });
    for m in &history {
        app.on_event(TrainEvent::EpochFinished { run_id: run_id.into(), metrics: m.clone() });
    }
    app.on_event(TrainEvent::RunFinished {
        result: RunResult {
            run_id: run_id.into(),
            kind,
            loss,
            temperature,
            seed: 1,
            status: RunStatus::Done,
            epochs: 3,
            final_test_accuracy: accuracy,
            final_train_loss: 0.3,
            model_bytes: 1000,
            wall_seconds: 3.0,
            reused: false,
            device: String::new(),
            history,
            // The students' integer engine at 3x their fp32 speed, one image of 100 moved.
            deployment: Some(Deployment {
                float_images_per_sec: if kind == RunKind::Teacher { 7410.0 } else { 30_000.0 },
                integer: (kind != RunKind::Teacher).then(|| IntegerServing {
                    kernel: "avx2 (vpmaddubsw)".into(),
                    images_per_sec: 90_000.0,
                    correct: 80,
                    same_class: 99,
                    images: 100,
                }),
            }),
        },
    });
}

fn diagnosed_app() -> App {
    let mut app = started_app();
    finish_diagnosed(&mut app, ("teacher", RunKind::Teacher, Loss::Hard, None), [10, 9, 9, 9, 9, 9, 9, 9, 9, 10], None);
    finish_diagnosed(&mut app, ("baseline-s1", RunKind::Baseline, Loss::Hard, None), [9, 8, 7, 7, 7, 6, 8, 8, 7, 9], Some(0.81));
    finish_diagnosed(&mut app, ("soft-T5-s1", RunKind::Distill, Loss::Soft, Some(5.0)), [10, 9, 8, 8, 2, 8, 9, 9, 8, 9], Some(0.9));
    finish_diagnosed(
        &mut app,
        ("hard_soft-T5-s1", RunKind::Distill, Loss::HardSoft, Some(5.0)),
        [10, 9, 9, 8, 8, 8, 9, 9, 8, 9],
        Some(0.93),
    );
    app
}

#[test]
fn agreement_and_ece_columns_show_and_give_way_first_on_narrow_screens() {
    let app = diagnosed_app();
    let s = screen(&app, 120, 40);
    let row = s.lines().find(|l| l.contains("soft-T5-s1") && !l.contains("hard_soft")).unwrap();
    assert!(s.contains("agree") && s.contains("ECE"), "{s}");
    assert!(row.contains("90.00") && row.contains("0.017"), "{row}");
    let narrow = screen(&app, 100, 40);
    assert!(!narrow.contains("agree") && !narrow.contains("ECE") && narrow.contains("test acc"), "{narrow}");
}

/// `d`: the selected run's per-class accuracy beside the teacher's, its
/// confusion matrix in percent of each true class, its fidelity per epoch.
#[test]
fn the_detail_view_of_a_run() {
    let mut app = diagnosed_app();
    app.table.selected = Some("soft-T5-s1".into());
    app.on_action(Action::ToggleDetail);
    let s = screen(&app, 120, 40);
    assert!(s.contains("detail of soft-T5-s1 (d or esc closes)"), "{s}");
    assert!(s.contains("per-class acc: run, teacher"), "{s}");
    // Class 4: 2 of 10 right, 8 taken for class 0.
    let class4 = s.lines().find(|l| l.contains("│") && l.contains("  4  80")).unwrap_or_else(|| panic!("{s}"));
    assert!(class4.contains("  4  80  0  0  0 20"), "{class4}");
    assert!(s.contains("epoch  agree  t.err  KL(1)  KL(T)    ECE"), "{s}");
    assert!(s.contains("    3   90.0   45.0  0.083  0.013  0.017"), "{s}");
    assert!(s.contains("    1   80.0   45.0  0.250  0.013  0.050"), "{s}");
    let served = "served: integer engine 90,000 img/s, 3.00x fp32 (30,000); same class 99/100; avx2 (vpmaddubsw)";
    assert!(s.contains(served), "{s}");
    app.table.selected = Some("teacher".into());
    assert!(screen(&app, 120, 40).contains("served: fp32 7,410 img/s"), "the teacher has no integer engine");
    app.on_action(Action::Cancel);
    assert!(!screen(&app, 120, 40).contains("detail of"), "esc closes it");
}

/// `m` on three runs: the large chart overlays them, one colour each, with
/// a legend; tab moves to agreement; unmarking removes a line.
#[test]
fn compare_mode_with_three_marked_runs() {
    let mut app = diagnosed_app();
    for id in ["baseline-s1", "soft-T5-s1", "hard_soft-T5-s1"] {
        app.table.selected = Some(id.into());
        app.on_action(Action::ToggleMark);
    }
    let s = screen(&app, 120, 40);
    assert!(s.contains("compare 3 runs: test accuracy per epoch"), "{s}");
    for id in ["│baseline-s1", "│soft-T5-s1", "│hard_soft-T5-s1"] {
        assert!(
            s.contains(id),
            "{id} not in the legend:
{s}"
        );
    }
    assert_ne!(app.table.mark_color("baseline-s1"), app.table.mark_color("soft-T5-s1"));
    app.on_action(Action::SwitchChart);
    assert!(screen(&app, 120, 40).contains("compare 3 runs: agreement with the teacher per epoch"));
    app.table.selected = Some("soft-T5-s1".into());
    app.on_action(Action::ToggleMark);
    let s = screen(&app, 120, 40);
    assert!(s.contains("compare 2 runs") && !s.contains("│soft-T5-s1"), "{s}");
}

/// `/` and a prefix: the table shows the runs it starts, sorting and the
/// selection work on them; esc clears.
#[test]
fn a_filtered_table() {
    let mut app = diagnosed_app();
    app.on_action(Action::StartFilter);
    for c in "hard".chars() {
        app.on_action(Action::FilterChar(c));
    }
    let s = screen(&app, 120, 40);
    assert!(s.contains("filter /hard (5 of 17)"), "{s}");
    assert!(s.contains("filter: /hard▏"), "the hint while typing: {s}");
    let table: Vec<&str> = s.lines().skip(4).take_while(|l| !l.starts_with('└')).filter(|l| l.contains("-T")).collect();
    assert_eq!(table.len(), 5, "{s}");
    assert!(table.iter().all(|l| l.contains("hard_soft-T")), "{table:?}");
    assert_eq!(app.selected_row().unwrap().spec.run_id, "hard_soft-T5-s1", "the selection moves into the filter");
    app.on_action(Action::FilterDone);
    app.on_action(Action::Down);
    assert_eq!(app.selected_row().unwrap().spec.run_id, "hard_soft-T15-s1");
    app.on_action(Action::NextSort);
    assert!(screen(&app, 120, 40).contains("filter /hard (5 of 17)"));
    app.on_action(Action::Cancel);
    let s = screen(&app, 120, 40);
    assert!(!s.contains("filter /") && s.contains("teacher"), "{s}");
}

/// On a GPU the first steps of a run wait for cubecl to compile its
/// kernels: the header says so until the run reports a step.
#[test]
fn the_header_says_kernels_compile_until_the_first_step_on_a_gpu() {
    for (device, compiles) in [("cuda:0 (burn cuda)", true), ("cpu (burn flex, 2 threads)", false)] {
        let mut app = App::new(Results::default());
        let mut config = Config::default();
        config.plan.seeds = vec![1];
        app.on_event(TrainEvent::PlanStarted {
            plan: "study".into(),
            runs: plan::full_plan(&config),
            device: device.into(),
            data: "synthetic".into(),
            test_images: 1000,
        });
        app.on_event(TrainEvent::RunStarted { run_id: "teacher".into(), epochs: 4, steps_per_epoch: 50, step: 0, history: vec![] });
        let said = |app: &App| screen(app, 120, 40).contains("compiling kernels (first steps on the GPU)");
        assert_eq!(said(&app), compiles, "{device}");
        app.on_event(TrainEvent::Step { run_id: "teacher".into(), epoch: 1, step: 5, loss: 2.0, accuracy: 0.2, images_per_sec: 900.0 });
        assert!(!said(&app), "{device}: a step came back");
    }
}

/// The table takes the lines its rows need (borders, header, a line a run)
/// and leaves the rest to the charts; a long plan stops at 45% of the screen.
#[test]
fn the_table_takes_the_height_its_rows_need() {
    let table_lines = |runs: usize| -> usize {
        let mut config = Config::default();
        config.plan.seeds = vec![1];
        let mut planned = plan::full_plan(&config);
        planned.truncate(runs);
        let mut app = App::new(Results { plan: "study".into(), ..Results::default() });
        app.on_event(TrainEvent::PlanStarted {
            plan: "study".into(),
            runs: planned,
            device: "cpu".into(),
            data: "d".into(),
            test_images: 10,
        });
        let s = screen(&app, 120, 40);
        let lines: Vec<&str> = s.lines().collect();
        let top = lines.iter().position(|l| l.starts_with("┌ runs")).unwrap();
        let bottom = top + lines[top..].iter().position(|l| l.starts_with('└')).unwrap();
        bottom - top + 1
    };
    assert_eq!(table_lines(5), 5 + 3, "a 5-run plan: borders, header and 5 rows");
    assert_eq!(table_lines(16), 40 * 45 / 100, "16 runs need 19 lines; the table stops at 45% of 40");
}
