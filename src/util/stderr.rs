//! Lines that native code writes to file descriptor 2, taken off the
//! terminal. Drivers print there directly: Mesa's Vulkan driver prints
//! "XDG_RUNTIME_DIR is invalid" each time wgpu makes an instance where that
//! variable is unset (libwayland looking for a display, harmless for
//! compute). The monitor's screen would be scribbled over, and every
//! command's output would start with an alarming "error:" line.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::thread::JoinHandle;

/// The terminal's stderr (a duplicate of it) while fd 2 is taken. One lock
/// for taking and giving back, so that a panic hook on another thread and
/// a `Taken` being dropped cannot both restore, nor one close the duplicate
/// the other is using.
static SAVED: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// fd 2 taken until dropped; each line goes to the callback given to `take`.
pub struct Taken {
    reader: Option<JoinHandle<()>>,
}

/// Points fd 2 at a pipe whose lines `on_line` receives, on a thread of
/// its own. Fails (and changes nothing) when fd 2 is taken already. A
/// child process started meanwhile inherits the pipe as its stderr.
pub fn take(mut on_line: impl FnMut(String) + Send + 'static) -> std::io::Result<Taken> {
    let mut saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
    if saved.is_some() {
        return Err(std::io::Error::new(std::io::ErrorKind::WouldBlock, "stderr is taken already"));
    }
    let terminal = std::io::stderr().as_fd().try_clone_to_owned()?;
    let (read, write) = std::io::pipe()?;
    let reader = std::thread::Builder::new().name("kdtui-stderr".into()).spawn(move || {
        for line in BufReader::new(read).lines() {
            match line {
                Ok(line) if !line.trim().is_empty() => on_line(line.trim_end().to_string()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })?;
    // SAFETY: both descriptors are open and this process's; dup2 replaces
    // fd 2 in one step. `write` is closed after: fd 2 keeps the pipe, and
    // the reader sees its end when fd 2 is pointed back.
    if unsafe { libc::dup2(write.as_raw_fd(), 2) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    *saved = Some(terminal);
    Ok(Taken { reader: Some(reader) })
}

/// Points fd 2 back at the terminal if it is taken. A panic hook calls it
/// too, so that a panic's message is seen: nothing panics while holding the
/// lock, so waiting for it there cannot wait for ever.
pub fn give_back() {
    let mut saved = SAVED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(terminal) = saved.take() {
        // SAFETY: `terminal` is open until it drops, after this call.
        unsafe { libc::dup2(terminal.as_raw_fd(), 2) };
    }
}

impl Taken {
    /// Gives fd 2 back and waits until the reader has had every line. Only
    /// where no child process can hold the pipe open.
    pub fn finish(mut self) {
        give_back();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        give_back();
    }
}

/// Runs `f` with fd 2 taken: what it printed there, as lines, beside its
/// value. When fd 2 cannot be taken, `f` runs with it as it is.
pub fn lines_of<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let taken = take(move |line| {
        let _ = tx.send(line);
    });
    let value = f();
    if let Ok(taken) = taken {
        taken.finish();
    }
    (value, rx.try_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_write(text: &[u8]) {
        // SAFETY: writes a buffer of its own length to fd 2, as C code would.
        assert_eq!(unsafe { libc::write(2, text.as_ptr().cast(), text.len()) }, text.len() as isize);
    }

    /// Lines written to fd 2 below Rust's stderr (as a driver writes them)
    /// are handed over and do not reach the terminal's stderr, which is back
    /// afterwards; only one taker at a time.
    #[test]
    fn native_lines_are_taken_off_stderr_and_it_comes_back() {
        let before = std::fs::read_link("/proc/self/fd/2").unwrap();
        let (value, lines) = lines_of(|| {
            assert_ne!(std::fs::read_link("/proc/self/fd/2").unwrap(), before);
            assert!(take(|_| {}).is_err(), "a second taker while taken");
            raw_write(b"error: XDG_RUNTIME_DIR is invalid or not set in the environment.\n\n");
            raw_write(b"second line, no newline");
            7
        });
        assert_eq!(value, 7);
        // Other tests may write to fd 2 meanwhile: these two, in this order.
        let ours: Vec<&String> = lines.iter().filter(|l| l.contains("XDG_RUNTIME_DIR") || l.starts_with("second line")).collect();
        assert_eq!(ours, ["error: XDG_RUNTIME_DIR is invalid or not set in the environment.", "second line, no newline"]);
        assert_eq!(std::fs::read_link("/proc/self/fd/2").unwrap(), before);
    }
}
