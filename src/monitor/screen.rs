//! The interactive session: drains the source's events into `App` (and, for
//! a training session, into the results `Sink`), turns keys into actions,
//! redraws at most every 100 ms (and at once on a key or a resize). The same
//! loop shows a training session and `kdtui watch`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::TryRecvError;
use ratatui::crossterm::event::{self, Event};
use ratatui::prelude::Backend;
use ratatui::Terminal;

use super::app::App;
use super::terminal::{is_terminal, Tui};
use super::{keys, ui, watch};
use crate::outputs::state::PlanState;
use crate::outputs::{feed, tick, Fed, PublishError, Results, Sink};
use crate::protocol::{Control, EventSource};
use crate::util::signals::StopRequest;

const FRAME: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("stdout is not a terminal; run the plan headless with `kdtui --batch`")]
    NotATerminal,
    #[error("kdtui watch needs a terminal (stdout is not one); the table is in {0}")]
    WatchNotATerminal(PathBuf),
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    #[error("writing results: {0}")]
    Results(#[from] PublishError),
    #[error(transparent)]
    Watch(#[from] watch::WatchError),
    /// The screen showed why the plan could not go on; the exit status says it too.
    #[error("{0}")]
    PlanFailed(String),
}

pub fn check_terminal() -> Result<(), MonitorError> {
    if is_terminal() {
        Ok(())
    } else {
        Err(MonitorError::NotATerminal)
    }
}

/// Runs a training session on the real terminal until the user quits; the
/// results files are written (by `sink`) as runs end. A stop request
/// (SIGTERM, SIGHUP) quits as the `Q` key does. Returns the results as written.
pub fn run(trainer: EventSource, mut sink: Sink, results: Results, stop: Option<Stopping>) -> Result<Results, MonitorError> {
    check_terminal()?;
    let mut app = App::new(results);
    let outcome = show(&mut app, &trainer, Some(&mut sink), stop);
    // The trainer may still be on its last step (after a fault): let it save.
    let _ = trainer.control.send(Control::Stop);
    if !trainer.thread.is_finished() {
        eprintln!("kdtui: waiting for the training thread to save its checkpoint ...");
    }
    let _ = trainer.thread.join();
    // What it said after the screen closed (the stopped run's result) still counts.
    while let Ok(event) = trainer.events.try_recv() {
        let changed = app.study.apply(&event);
        sink.late(&event, changed, &mut app.study.results);
    }
    outcome?;
    sink.flush(&mut app.study.results)?;
    if let PlanState::Failed(why) = app.study.state {
        return Err(MonitorError::PlanFailed(why));
    }
    Ok(app.study.results)
}

/// `kdtui watch`: the same screen over a results directory that other
/// processes write (`watch::spawn` reads it); writes nothing.
pub fn watch(dir: &Path, stop: Option<Stopping>) -> Result<(), MonitorError> {
    let source = watch::spawn(dir.to_path_buf())?;
    if !is_terminal() {
        let _ = source.control.send(Control::Stop);
        return Err(MonitorError::WatchNotATerminal(dir.join("results.csv")));
    }
    let mut app = App::watching(dir.to_path_buf());
    let outcome = show(&mut app, &source, None, stop);
    let _ = source.control.send(Control::Stop);
    let _ = source.thread.join();
    outcome
}

/// The screen from entering the terminal to restoring it.
fn show(app: &mut App, source: &EventSource, sink: Option<&mut Sink>, stop: Option<Stopping>) -> Result<(), MonitorError> {
    let mut tui = Tui::enter()?;
    let _stderr = take_stderr();
    if sink.is_some() {
        // Only a panic of the UI itself must restore the terminal (ratatui's hook) and print.
        crate::protocol::source::quiet_trainer_panics();
    }
    let ui_done = Arc::new(AtomicBool::new(false));
    if let Some(stop) = &stop {
        watch_for_hangup(source, stop.clone(), Arc::clone(&ui_done));
    }
    let request = stop.as_ref().map(|s| &s.request);
    let outcome = event_loop(&mut tui.terminal, app, source, sink, request, read_input);
    ui_done.store(true, Ordering::Relaxed);
    outcome
}

/// Takes native code's stderr lines (a driver's) off the screen into the
/// log: the training thread's collector shows `log` warnings there. Its
/// panic hook comes after the terminal's, so it runs first: a panic of the
/// screen's own thread, which closes the screen, gets the terminal back for
/// its message; other threads' panics stay off the screen (the engine's
/// logger keeps a backend thread's). Without it the screen still works;
/// such lines would only scribble over it.
fn take_stderr() -> Option<crate::util::stderr::Taken> {
    let taken = crate::util::stderr::take(|line| log::warn!(target: "stderr", "{line}")).ok()?;
    let screen = std::thread::current().id();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == screen {
            crate::util::stderr::give_back();
        }
        previous(info)
    }));
    Some(taken)
}

fn read_input() -> std::io::Result<Option<Event>> {
    if event::poll(Duration::from_millis(20))? {
        event::read().map(Some)
    } else {
        Ok(None)
    }
}

/// How the monitor stops from outside: the stop signals' request, and how
/// to end the process if the screen cannot (the command line decides the
/// exit status: 129 in README's table).
#[derive(Clone)]
pub struct Stopping {
    pub request: StopRequest,
    pub exit_after_hangup: fn() -> !,
}

/// After SIGHUP (the terminal closed) crossterm's input poll spins on end of
/// file and never returns to the event loop, which then never sees the stop
/// request. When the loop has not ended a few seconds after a stop signal,
/// this stops the trainer itself, waits for it to save its checkpoint (its
/// results are in the checkpoints; the next session rebuilds the table from
/// them) and ends the process as `stop.exit_after_hangup` does.
fn watch_for_hangup(trainer: &EventSource, stop: Stopping, ui_done: Arc<AtomicBool>) {
    let control = trainer.control.clone();
    let events = trainer.events.clone();
    std::thread::spawn(move || {
        while !stop.request.requested() {
            if ui_done.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(3));
        if ui_done.load(Ordering::Relaxed) {
            return;
        }
        let _ = control.send(Control::Stop);
        // Until the trainer is gone (its sender dropped): the UI takes no more events.
        while events.recv().is_ok() {}
        (stop.exit_after_hangup)();
    });
}

fn draw<B: Backend>(terminal: &mut Terminal<B>, app: &App) -> Result<(), MonitorError>
where
    B::Error: std::error::Error + Send + Sync + 'static,
{
    terminal.draw(|f| ui::render(app, f)).map(|_| ()).map_err(|e| MonitorError::Terminal(std::io::Error::other(e)))
}

/// The loop, generic over the backend and the input source so tests can drive it.
/// `sink`: the results this session writes; none for `kdtui watch`.
pub fn event_loop<B: Backend, F>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    trainer: &EventSource,
    mut sink: Option<&mut Sink>,
    stop: Option<&StopRequest>,
    mut next_input: F,
) -> Result<(), MonitorError>
where
    F: FnMut() -> std::io::Result<Option<Event>>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    let mut trainer_gone = false;
    let send = |fed: Fed| {
        if let Some(control) = fed.control {
            let _ = trainer.control.send(control);
        }
    };
    loop {
        app.study.set_clock(crate::util::unix_seconds());
        // Heartbeats go on while the trainer is busy (a long evaluation).
        let ticked = tick(&mut app.study, sink.as_deref_mut());
        dirty |= !ticked.warnings.is_empty() || ticked.unwritable.is_some();
        send(ticked);
        while !trainer_gone {
            match trainer.events.try_recv() {
                Ok(event) => {
                    let before = app.study.current.clone();
                    send(feed(&mut app.study, sink.as_deref_mut(), &event));
                    app.follow(&event, before.as_deref());
                    dirty = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    trainer_gone = true;
                    if app.study.state.active() {
                        app.study.on_trainer_died("it stopped without finishing the plan (see the log)".into());
                    }
                    dirty = true;
                }
            }
        }
        if !app.should_quit && stop.is_some_and(StopRequest::requested) {
            app.study.log("stop signal received");
            if let Some(control) = app.on_action(keys::Action::ForceQuit) {
                let _ = trainer.control.send(control);
            }
        }
        app.study.tick(started.elapsed());
        if app.should_quit && (!app.study.state.active() || trainer_gone || app.study.watching.is_some()) {
            draw(terminal, app)?;
            return Ok(());
        }
        let due = last_draw.is_none_or(|t| t.elapsed() >= FRAME);
        // The clock in the header moves even when nothing else does.
        let stale = last_draw.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if (dirty && due) || stale {
            draw(terminal, app)?;
            last_draw = Some(Instant::now());
            dirty = false;
        }
        match next_input()? {
            Some(Event::Key(key)) => {
                let action = if app.table.typing_filter { keys::action_for_typing(&key) } else { keys::action_for(&key) };
                if let Some(action) = action {
                    if let Some(control) = app.on_action(action) {
                        let _ = trainer.control.send(control);
                    }
                    // A key is answered at once, not at the next frame.
                    draw(terminal, app)?;
                    last_draw = Some(Instant::now());
                }
            }
            Some(Event::Resize(..)) => {
                terminal.autoresize().map_err(|e| MonitorError::Terminal(std::io::Error::other(e)))?;
                draw(terminal, app)?;
                last_draw = Some(Instant::now());
            }
            _ => {}
        }
    }
}
