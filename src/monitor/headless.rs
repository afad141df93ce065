//! `kdtui --batch`: the headless consumer of the event stream. One line per
//! epoch per run on stdout, a progress bar on stderr when it is a terminal,
//! and the results files rewritten as each run finishes. The study's state
//! and its files are `outputs::feed`'s, as in the monitor; this only says
//! them as lines (`line`).

use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::outputs::{feed, tick, Fed, PublishError, Results, Sink, StudyState};
use crate::protocol::source::join_message;
use crate::protocol::{Control, EventSource, RunStatus, TrainEvent};
use crate::util::format::{megabytes, percent, thousands};
use crate::util::signals::StopRequest;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("writing results: {0}")]
    Results(#[from] PublishError),
    #[error("the training thread ended without finishing the plan: {0}")]
    TrainerDied(String),
    #[error("{count} run(s) failed: {list} (details in {report})")]
    RunsFailed { count: usize, list: String, report: PathBuf },
    #[error("{0}")]
    Fatal(String),
}

/// Consumes `trainer`'s events into `results` and the files `sink` writes,
/// until the plan finishes or stops; returns the results (`stopped` set when
/// a stop request ended it early). A stop request (Ctrl-C, SIGTERM, SIGHUP)
/// stops the plan between steps.
pub fn run(trainer: EventSource, mut sink: Sink, results: Results, stop: Option<StopRequest>) -> Result<Results, BatchError> {
    let out = sink.out().to_path_buf();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} ({elapsed})")
            .expect("static template")
            .progress_chars("=> "),
    );
    let mut study = StudyState::new(results);
    let mut fatal = None;
    let mut stop_sent = false;
    // The warnings of a feed, said; its stop sent, and the loop's end.
    let settle = |fed: Fed| -> Result<(), BatchError> {
        for warning in &fed.warnings {
            say(&bar, format!("  {warning}"));
        }
        match fed.unwritable {
            Some(e) => {
                let _ = trainer.control.send(Control::Stop);
                Err(e.into())
            }
            None => Ok(()),
        }
    };
    let outcome = loop {
        if !stop_sent && stop.as_ref().is_some_and(StopRequest::requested) {
            stop_sent = true;
            say(&bar, "stopping: the run under way saves its checkpoint at its next step (again to quit at once)".into());
            let _ = trainer.control.send(Control::Stop);
        }
        // Heartbeats go on while the trainer is busy (a long evaluation).
        if let Err(e) = settle(tick(&mut study, Some(&mut sink))) {
            break Err(e);
        }
        let event = match trainer.events.recv_timeout(Duration::from_millis(100)) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break Err(BatchError::TrainerDied(join_message(trainer.thread))),
        };
        let fed = feed(&mut study, Some(&mut sink), &event);
        for warning in &fed.warnings {
            say(&bar, format!("  {warning}"));
        }
        show(&bar, &event, &study);
        if let TrainEvent::Fatal { error } = &event {
            fatal = Some(error.clone());
        }
        if let Err(e) = settle(Fed { warnings: vec![], ..fed }) {
            break Err(e);
        }
        if matches!(event, TrainEvent::PlanFinished { .. }) {
            break Ok(());
        }
    };
    bar.finish_and_clear();
    if matches!(outcome, Err(BatchError::Results(_))) {
        // It was told to stop: let it save the run under way before we exit.
        eprintln!("kdtui: stopping the training thread ...");
        for _ in trainer.events.iter() {}
    }
    outcome?;
    sink.flush(&mut study.results)?;
    println!("results written to {} (report.md, figures/, models/, tensorboard/)", out.display());
    if let Some(error) = fatal {
        return Err(BatchError::Fatal(error));
    }
    let results = study.results;
    // This session's failures: other shards' are theirs to report.
    let failed: Vec<&str> = results.failures.iter().map(|f| f.run_id.as_str()).filter(|id| results.own.contains(*id)).collect();
    if !failed.is_empty() {
        return Err(BatchError::RunsFailed { count: failed.len(), list: failed.join(", "), report: out.join("report.md") });
    }
    Ok(results)
}

/// What an event changes on the terminal: a line, or the progress bar.
fn show(bar: &ProgressBar, event: &TrainEvent, study: &StudyState) {
    match event {
        TrainEvent::RunStarted { run_id, epochs, steps_per_epoch, step, .. } => {
            bar.reset();
            bar.set_length((epochs * steps_per_epoch) as u64);
            bar.set_position(*step as u64);
            bar.set_prefix(format!("{} {run_id}", place(study)));
        }
        TrainEvent::Step { step, loss, accuracy, images_per_sec, .. } => {
            bar.set_position(*step as u64);
            bar.set_message(format!("loss {loss:.4} acc {:.1}% {images_per_sec:.0} img/s", 100.0 * accuracy));
        }
        _ => {
            if let Some(line) = line(event, study) {
                say(bar, line);
            }
        }
    }
}

/// `[k/n]`: the run under way among the session's runs.
fn place(study: &StudyState) -> String {
    format!("[{}/{}]", study.started, study.runs.len())
}

/// The line an event gets in `--batch`'s output, given the study it has
/// been folded into.
pub fn line(event: &TrainEvent, study: &StudyState) -> Option<String> {
    Some(match event {
        TrainEvent::PlanStarted { plan, runs, device, data, .. } => format!("plan {plan}: {} runs on {device}; {data}", runs.len()),
        TrainEvent::Log { message } => format!("  {message}"),
        TrainEvent::EpochFinished { run_id, metrics: m } => {
            let epochs = study.row(run_id).map_or(0, |r| r.epochs);
            format!(
                "{} {run_id} epoch {}/{epochs}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | {:.1} s, {:.0} img/s",
                place(study),
                m.epoch,
                m.train_loss,
                100.0 * m.train_accuracy,
                m.test_loss,
                100.0 * m.test_accuracy,
                m.seconds,
                m.images_per_sec
            )
        }
        TrainEvent::RunFinished { result } => {
            let note = match (result.status, result.reused) {
                (RunStatus::Done, true) => "reused from checkpoint".to_string(),
                (RunStatus::Done, false) => {
                    let serves = result.deployment.as_ref().map_or(String::new(), |d| match &d.integer {
                        Some(i) => format!("; serves {} img/s on the integer engine", thousands(i.images_per_sec)),
                        None => format!("; serves {} img/s", thousands(d.float_images_per_sec)),
                    });
                    format!("{:.1} s{serves}", result.wall_seconds)
                }
                (RunStatus::Interrupted, _) => "checkpoint saved; it resumes next time".into(),
                (RunStatus::Diverged, _) => {
                    format!("NaN or infinite loss in epoch {}; the last good checkpoint is kept", result.epochs + 1)
                }
            };
            let verb = match result.status {
                RunStatus::Done => "done",
                RunStatus::Interrupted => "stopped",
                RunStatus::Diverged => "DIVERGED",
            };
            format!(
                "{} {} {verb}: final test acc {}, {} ({note})",
                place(study),
                result.run_id,
                percent(result.final_test_accuracy),
                megabytes(result.model_bytes),
            )
        }
        TrainEvent::RunFailed { run_id, error } => format!("{} {run_id} FAILED: {error}", place(study)),
        TrainEvent::Fatal { error } => format!("the plan cannot go on: {error}"),
        TrainEvent::RunStarted { .. }
        | TrainEvent::Step { .. }
        | TrainEvent::Paused
        | TrainEvent::Resumed
        | TrainEvent::Heartbeat { .. }
        | TrainEvent::PlanFinished { .. } => return None,
    })
}

/// A line on stdout that does not tear the progress bar (which, hidden when
/// stderr is no terminal, would swallow `println`).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}
