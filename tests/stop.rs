//! The stop paths of `kdtui --batch` through the real binary, as a
//! scheduler meets them: SIGTERM (Slurm preempting a job) and SIGHUP (the
//! SSH session gone) save the run mid-epoch, list it as interrupted and exit
//! 0; a second signal exits 130 at once. Signals are sent on progress (a
//! step the run's metric file has logged), never after a guessed delay.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{logged_steps, teacher_checkpoint, wait_for_teacher_step, write, TINY};
use kdtui::engine::train::checkpoint::read_checkpoint;

/// 192 images in batches of 8: 24 steps an epoch, and more teacher epochs
/// than any of these tests lets it reach.
fn config() -> String {
    TINY.replace("batch_size = 32", "batch_size = 8\nlog_every = 1").replace("[teacher]\nepochs = 2", "[teacher]\nepochs = 500")
}
const STEPS_PER_EPOCH: usize = 24;

fn start(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kdtui"))
        .args(["--batch", "--device", "cpu"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// Exit code and stdout once it ends (stdout read to its end first, so a
/// full pipe cannot hold it up).
fn finish(mut child: Child) -> (Option<i32>, String) {
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    (child.wait().unwrap().code(), stdout)
}

/// SIGTERM and SIGHUP each stop the teacher between steps: the checkpoint
/// holds the very step the run had logged last (not the end of epoch 1,
/// which a broken save-on-stop would leave), the run is listed as
/// interrupted, and the process exits 0.
#[test]
fn sigterm_or_sighup_saves_the_run_mid_epoch_and_exits_0() {
    for (name, sig) in [("SIGTERM", libc::SIGTERM), ("SIGHUP", libc::SIGHUP)] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "config.toml", &config());
        let mut child = start(dir.path());
        // Past epoch 1, whose checkpoint is on disk by then.
        wait_for_teacher_step(dir.path(), &mut child, STEPS_PER_EPOCH + 5, Duration::from_secs(120));
        signal(&child, sig);
        let (code, stdout) = finish(child);
        assert_eq!(code, Some(0), "{name}: {stdout}");
        assert!(stdout.contains("teacher stopped") && stdout.contains("checkpoint saved"), "{name}: {stdout}");

        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("results/results.json")).unwrap()).unwrap();
        assert_eq!((json["stopped"].as_bool(), json["finished"].as_bool()), (Some(true), Some(false)), "{name}");
        assert_eq!(json["runs"][0]["status"], "interrupted", "{name}");

        let saved = read_checkpoint(&teacher_checkpoint(dir.path(), "tiny")).unwrap().expect("a checkpoint");
        let last = *logged_steps(dir.path(), "teacher").last().unwrap();
        let p = &saved.progress;
        assert_eq!(p.step, last, "{name}: the checkpoint is not of the step the run stopped at");
        assert!(p.step >= STEPS_PER_EPOCH + 5, "{name}: step {}", p.step);
        assert_eq!(p.epochs_done * STEPS_PER_EPOCH + p.steps_into_epoch, p.step, "{name}");
    }
}

/// A second signal ends the process at once with 130 (128 + SIGINT, as a
/// shell reports ctrl-c) and leaves the last checkpoint whole. The process
/// is held (SIGSTOP) while both signals are sent, so the second cannot come
/// after the first stop has already finished; on SIGCONT both are
/// delivered, possibly to two threads at once, which the handler's single
/// swap of its flag decides (src/util/signals.rs).
#[test]
fn a_second_signal_exits_130_at_once() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", &config());
    let mut child = start(dir.path());
    wait_for_teacher_step(dir.path(), &mut child, STEPS_PER_EPOCH + 5, Duration::from_secs(120));
    signal(&child, libc::SIGSTOP);
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGTERM);
    signal(&child, libc::SIGCONT);
    let (code, stdout) = finish(child);
    assert_eq!(code, Some(130), "{stdout}");
    assert!(!stdout.contains("teacher stopped"), "the second signal waited for the stop: {stdout}");
    let saved = read_checkpoint(&teacher_checkpoint(dir.path(), "tiny")).unwrap().expect("a checkpoint");
    assert!(saved.progress.epochs_done >= 1, "epochs done: {}", saved.progress.epochs_done);
}
