//! The interactive session: drains trainer events into `App`, turns keys into
//! actions, redraws at most every 100 ms (and at once on a key or a resize),
//! and writes the results files whenever a run ends.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::TryRecvError;
use ratatui::crossterm::event::{self, Event};
use ratatui::prelude::Backend;
use ratatui::Terminal;

use crate::app::App;
use crate::device::Trainer;
use crate::keys;
use crate::results::{EventFiles, Results, ResultsError};
use crate::signals::StopRequest;
use crate::ui;

const FRAME: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("stdout is not a terminal; run the plan headless with `kdtui --batch`")]
    NotATerminal,
    #[error("kdtui watch needs a terminal (stdout is not one); the table is in {0}")]
    WatchNotATerminal(std::path::PathBuf),
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    #[error("writing results: {0}")]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
}

pub fn check_terminal() -> Result<(), TuiError> {
    if std::io::stdout().is_terminal() {
        Ok(())
    } else {
        Err(TuiError::NotATerminal)
    }
}

/// Runs the session on the real terminal until the user quits. A stop
/// request (SIGTERM, SIGHUP) quits as the `Q` key does.
pub fn run(trainer: Trainer, results: Results, out: &Path, stop: Option<StopRequest>) -> Result<Results, TuiError> {
    check_terminal()?;
    let mut terminal = ratatui::init();
    // Only a panic of the UI itself must restore the terminal (ratatui's hook) and print.
    crate::device::quiet_trainer_panics();
    let mut app = App::new(results);
    let ui_done = Arc::new(AtomicBool::new(false));
    if let Some(stop) = &stop {
        watch_for_hangup(&trainer, stop.clone(), Arc::clone(&ui_done));
    }
    let outcome = event_loop(&mut terminal, &mut app, &trainer, Some(out), stop.as_ref(), read_input);
    ui_done.store(true, Ordering::Relaxed);
    ratatui::restore();
    let _ = std::panic::take_hook();
    // The trainer may still be on its last step (after a fault): let it save.
    let _ = trainer.control.send(crate::train::Control::Stop);
    if !trainer.thread.is_finished() {
        eprintln!("kdtui: waiting for the training thread to save its checkpoint ...");
    }
    let _ = trainer.thread.join();
    // What it said after the screen closed (the stopped run's result) still counts.
    while let Ok(event) = trainer.events.try_recv() {
        app.on_event(event);
    }
    outcome?;
    app.results.write(out)?;
    Ok(app.results)
}

fn read_input() -> std::io::Result<Option<Event>> {
    if event::poll(Duration::from_millis(20))? {
        event::read().map(Some)
    } else {
        Ok(None)
    }
}

/// `kdtui watch`: the same screen over a results directory that other
/// processes write (`watch::spawn` reads it); writes nothing.
pub fn watch(dir: &Path, stop: Option<StopRequest>) -> Result<(), TuiError> {
    let source = crate::watch::spawn(dir.to_path_buf())?;
    if !std::io::stdout().is_terminal() {
        let _ = source.control.send(crate::train::Control::Stop);
        return Err(TuiError::WatchNotATerminal(dir.join("results.csv")));
    }
    let mut terminal = ratatui::init();
    let mut app = App::watching(dir.to_path_buf());
    let ui_done = Arc::new(AtomicBool::new(false));
    if let Some(stop) = &stop {
        // The terminal closed: the same way out as a training session, with nothing to save.
        watch_for_hangup(&source, stop.clone(), Arc::clone(&ui_done));
    }
    let outcome = event_loop(&mut terminal, &mut app, &source, None, stop.as_ref(), read_input);
    ui_done.store(true, Ordering::Relaxed);
    ratatui::restore();
    let _ = source.control.send(crate::train::Control::Stop);
    let _ = source.thread.join();
    outcome
}

/// After SIGHUP (the terminal closed) crossterm's input poll spins on end of
/// file and never returns to the event loop, which then never sees the stop
/// request. When the loop has not ended a few seconds after a stop signal,
/// this stops the trainer itself, waits for it to save its checkpoint (its
/// results are in the checkpoints; the next session rebuilds the table from
/// them) and ends the process.
fn watch_for_hangup(trainer: &Trainer, stop: StopRequest, ui_done: Arc<AtomicBool>) {
    let control = trainer.control.clone();
    let events = trainer.events.clone();
    std::thread::spawn(move || {
        while !stop.requested() {
            if ui_done.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(3));
        if ui_done.load(Ordering::Relaxed) {
            return;
        }
        let _ = control.send(crate::train::Control::Stop);
        // Until the trainer is gone (its sender dropped): the UI takes no more events.
        while events.recv().is_ok() {}
        std::process::exit(129);
    });
}

fn draw<B: Backend>(terminal: &mut Terminal<B>, app: &App) -> Result<(), TuiError>
where
    std::io::Error: From<B::Error>,
{
    terminal.draw(|f| ui::render(app, f)).map(|_| ()).map_err(|e| TuiError::Terminal(e.into()))
}

/// The loop, generic over the backend and the input source so tests can drive it.
/// `out`: the results directory this session writes; none for `kdtui watch`.
pub fn event_loop<B: Backend, F>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    trainer: &Trainer,
    out: Option<&Path>,
    stop: Option<&StopRequest>,
    mut next_input: F,
) -> Result<(), TuiError>
where
    F: FnMut() -> std::io::Result<Option<Event>>,
    std::io::Error: From<B::Error>,
{
    let started = Instant::now();
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    let mut trainer_gone = false;
    let mut event_files = out.map(EventFiles::new);
    loop {
        while !trainer_gone {
            match trainer.events.try_recv() {
                Ok(ev) => {
                    for warning in event_files.as_mut().map(|f| f.on_event(&ev)).unwrap_or_default() {
                        app.log(warning);
                    }
                    let ended = app.on_event(ev);
                    if let (true, Some(out)) = (ended, out) {
                        if let Err(e) = app.results.write(out) {
                            if let Some(control) = app.on_results_unwritable(e.to_string()) {
                                let _ = trainer.control.send(control);
                            }
                        }
                    }
                    dirty = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    trainer_gone = true;
                    if app.state.active() {
                        app.on_trainer_died("it stopped without finishing the plan (see the log)".into());
                    }
                    dirty = true;
                }
            }
        }
        if !app.should_quit && stop.is_some_and(StopRequest::requested) {
            app.log("stop signal received");
            if let Some(control) = app.on_action(keys::Action::ForceQuit) {
                let _ = trainer.control.send(control);
            }
        }
        app.tick(started.elapsed());
        if app.should_quit && (!app.state.active() || trainer_gone || app.watching.is_some()) {
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
                if let Some(action) = keys::action_for(&key) {
                    if let Some(control) = app.on_action(action) {
                        let _ = trainer.control.send(control);
                    }
                    // A key is answered at once, not at the next frame.
                    draw(terminal, app)?;
                    last_draw = Some(Instant::now());
                }
            }
            Some(Event::Resize(..)) => {
                terminal.autoresize().map_err(|e| TuiError::Terminal(e.into()))?;
                draw(terminal, app)?;
                last_draw = Some(Instant::now());
            }
            _ => {}
        }
    }
}
