//! The consumers' ends of a running plan (or of `kdtui watch`'s reader).

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::{Control, TrainEvent};

/// The events of a source, its control channel and its thread: a consumer
/// sees the source end as a disconnected channel or a finished thread.
pub struct EventSource {
    pub events: Receiver<TrainEvent>,
    pub control: Sender<Control>,
    pub thread: JoinHandle<()>,
}

/// Why a source's thread ended, once it has: a panic's message, or that it
/// returned without saying the plan finished.
pub fn join_message(thread: JoinHandle<()>) -> String {
    match thread.join() {
        Ok(()) => "it exited early".into(),
        Err(p) => format!("it panicked: {}", crate::util::panic_message(&*p)),
    }
}

/// Name of the training thread (the panic hook tells it apart).
pub const TRAIN_THREAD: &str = "kdtui-train";

/// A panic on the training thread is caught there and reported as a failed
/// run; this keeps the default hook from also printing it (with a backtrace
/// hint) over the batch output or the monitor. Other threads' panics go to
/// the hook that was installed before.
pub fn quiet_trainer_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some(TRAIN_THREAD) {
            previous(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The training thread's panics (caught there, reported as failed runs)
    /// do not reach the hook that prints; other threads' panics do.
    #[test]
    fn the_trainers_panics_are_quiet_and_others_are_not() {
        const OTHER: &str = "kdtui-hook-test-other";
        static PRINTED: AtomicUsize = AtomicUsize::new(0);
        std::panic::set_hook(Box::new(|_| {
            // Other tests' threads may panic meanwhile: count this test's alone.
            let name = std::thread::current().name().map(str::to_string);
            if name.as_deref() == Some(OTHER) || name.as_deref() == Some(TRAIN_THREAD) {
                PRINTED.fetch_add(1, Ordering::SeqCst);
            }
        }));
        quiet_trainer_panics();
        let panic_on = |name: &str| {
            let thread = std::thread::Builder::new().name(name.into()).spawn(|| panic!("boom")).unwrap();
            assert!(thread.join().is_err());
        };
        panic_on(TRAIN_THREAD);
        assert_eq!(PRINTED.load(Ordering::SeqCst), 0, "the trainer's panic reached the printing hook");
        panic_on(OTHER);
        assert_eq!(PRINTED.load(Ordering::SeqCst), 1, "another thread's panic must still be printed");
        let _ = std::panic::take_hook();
    }
}
