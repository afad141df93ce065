//! What burn and cubecl say through the `log` crate, made visible.
//!
//! cubecl runs a GPU's work on a device thread of its own; when a kernel
//! fails to compile or launch there it catches the panic and reports it
//! with `log::error!`, and the training thread only sees NaN or nonsense
//! afterwards. kdtui therefore installs a logger that keeps warnings and
//! errors until the training thread collects them (`drain`): it turns
//! warnings into log lines (the TUI's log, `--batch`'s output) and an error
//! into the failure of the run that was training, with its message.
//!
//! Some failures are panics on cubecl's own threads instead (a buffer the
//! device cannot allocate): the training thread then only sees "the
//! channel with the server is down". A panic hook keeps such a panic's
//! message as an error that marks the device lost: the plan stops with it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// One record as kdtui shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub error: bool,
    /// A thread of the backend panicked: its device is of no further use
    /// in this process.
    pub device_lost: bool,
    /// `target: message`, on one line.
    pub text: String,
}

struct Collector {
    pending: Mutex<Vec<Record>>,
    /// Set with an error pending: checking it costs the training loop an
    /// atomic load per step, not a lock.
    error: AtomicBool,
}

/// Records kept before the oldest are dropped: a backend that warns in a
/// loop must not grow memory without bound.
const KEEP: usize = 1000;

impl log::Log for Collector {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let error = record.level() == log::Level::Error;
        let text = format!("{}: {}", record.target(), record.args()).replace('\n', " ");
        push(Record { error, device_lost: false, text });
    }

    fn flush(&self) {}
}

fn push(record: Record) {
    let error = record.error;
    let mut pending = collector().pending.lock().unwrap_or_else(|p| p.into_inner());
    if pending.len() >= KEEP {
        pending.remove(0);
    }
    pending.push(record);
    if error {
        collector().error.store(true, Ordering::Release);
    }
}

fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| Collector { pending: Mutex::new(Vec::new()), error: AtomicBool::new(false) })
}

/// Makes kdtui's collector the process's logger, and keeps the panics of
/// threads other than the main and training threads (once; later calls,
/// or another logger already installed, leave things as they are).
pub fn install() {
    if log::set_logger(collector()).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            if let Some(name) = thread.name().filter(|n| is_backend_thread(n)) {
                let message = crate::util::panic_message(info.payload());
                let at = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
                push(Record { error: true, device_lost: true, text: format!("thread {name} panicked: {message}{at}").replace('\n', " ") });
            }
            previous(info)
        }));
    }
}

/// The threads whose panics are the backend's (cubecl names its device
/// threads): not the main thread, not kdtui's own threads (the training
/// thread's panics fail its run), not a unit test's (`module::test`).
fn is_backend_thread(name: &str) -> bool {
    name != "main" && name != crate::protocol::source::TRAIN_THREAD && !name.contains("::") && !name.starts_with("kdtui")
}

/// Whether an error has been logged since the last `drain`.
pub fn error_pending() -> bool {
    collector().error.load(Ordering::Acquire)
}

/// The records since the last call, oldest first.
pub fn drain() -> Vec<Record> {
    let mut pending = collector().pending.lock().unwrap_or_else(|p| p.into_inner());
    collector().error.store(false, Ordering::Release);
    std::mem::take(&mut *pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_warnings_and_errors_until_drained() {
        install();
        drain();
        log::info!("not kept");
        log::warn!(target: "cubecl_runtime", "tuning\ntook long");
        assert!(!error_pending());
        log::error!(target: "cubecl_cuda", "kernel failed");
        assert!(error_pending());
        let records = drain();
        assert_eq!(
            records,
            vec![
                Record { error: false, device_lost: false, text: "cubecl_runtime: tuning took long".into() },
                Record { error: true, device_lost: false, text: "cubecl_cuda: kernel failed".into() }
            ]
        );
        assert!(!error_pending() && drain().is_empty());
    }
}
