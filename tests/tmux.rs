//! The real binary in a real terminal (tmux), as a person would use it:
//! start, pause, check nothing moves, resume, quit, and find the terminal
//! restored and the results on disk. Where tmux is not installed, build.rs
//! says so and these tests show as ignored.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kdtui::engine::train::checkpoint::read_checkpoint;

const CONFIG: &str = r#"
[plan]
name = "tmux"
seeds = [1]
losses = ["soft"]
temperatures = [5.0]
[data]
# Epochs of about half a second here: long enough for a 100 ms poll of the
# screen to see each one (at 512 images one passed unseen).
train_size = 2048
test_size = 64
[train]
batch_size = 16
log_every = 1
[teacher]
epochs = 40
widths = [4, 8, 8]
hidden = 16
[student]
epochs = 1
widths = [4, 8, 8]
hidden = 16
"#;

struct Session(String);

impl Session {
    /// A detached 120x40 tmux session running `command` in a shell, in a
    /// temporary folder holding CONFIG as config.toml.
    fn start(dir: &Path, name: &str, command: &str) -> Session {
        std::fs::write(dir.join("config.toml"), CONFIG).unwrap();
        Self::start_in(dir, name, command)
    }

    /// As `start`, with whatever config.toml `dir` holds.
    fn start_in(dir: &Path, name: &str, command: &str) -> Session {
        let name = format!("kdtui-{name}-{}", std::process::id());
        let command = format!("cd {} && {command}", dir.display());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-x", "120", "-y", "40", "-s", &name, &command])
            .status()
            .expect("tmux must be installed to test the terminal UI");
        assert!(status.success());
        Session(name)
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(args).output().expect("tmux must be installed to test the terminal UI");
        String::from_utf8_lossy(&out.stdout).to_string()
    }
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.0])
    }
    fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", &self.0, keys]);
    }
    /// The teacher's epoch once the screen shows it running at epoch `from`
    /// or later (of 40). Waiting for one exact epoch raced the training: on
    /// a fast machine under load a half-second epoch could pass unseen.
    fn wait_for_teacher_epoch(&self, from: usize, timeout: Duration) -> usize {
        let screen = self.wait_until(&format!("the teacher at epoch {from} or later"), timeout, |s| {
            teacher_epoch(s).is_some_and(|e| e >= from) || s.contains("FINISHED")
        });
        teacher_epoch(&screen).unwrap_or_else(|| panic!("the plan ended before the teacher was seen at epoch {from}:\n{screen}"))
    }
    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        self.wait_until(&format!("`{needle}`"), timeout, |s| s.contains(needle))
    }
    /// The first screen for which `seen` holds; fails after `timeout`, saying `what`.
    fn wait_until(&self, what: &str, timeout: Duration, seen: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if seen(&s) {
                return s;
            }
            assert!(start.elapsed() < timeout, "{what} did not appear within {timeout:?}; screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).output();
    }
}

/// The epoch the screen shows the teacher running at (`run 7/40`).
fn teacher_epoch(screen: &str) -> Option<usize> {
    let row = screen.lines().find(|l| l.contains("teacher") && l.contains("/40"))?;
    let at = row.find("run ")? + 4;
    row[at..].split('/').next()?.trim().parse().ok()
}

/// The screen without its first line (the header clock ticks every second).
fn body(screen: &str) -> String {
    screen.lines().skip(1).collect::<Vec<_>>().join("\n")
}

#[test]
#[cfg_attr(kdtui_no_tmux, ignore = "tmux is not installed (apt-get install tmux)")]
fn pause_resume_and_quit_in_a_real_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_kdtui");
    let session = Session::start(dir.path(), "test", &format!("{bin} --device cpu; echo EXITED=$?; sleep 60"));
    let name = session.0.clone();

    let wait = Duration::from_secs(60);
    session.wait_for_teacher_epoch(1, wait);
    session.keys("p");
    let paused = session.wait_for("PAUSED", Duration::from_secs(5));
    assert!(paused.contains("p resume"), "{paused}");
    // Paused between steps: once the steps already under way have been
    // logged (the metric file logs every step; it holds still for 300 ms),
    // none may follow in 1.5 s.
    let last_step = || common::logged_steps(dir.path(), "teacher").last().copied().unwrap_or(0);
    let settled = Instant::now();
    let mut at_pause = last_step();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = last_step();
        if now == at_pause {
            break;
        }
        assert!(settled.elapsed() < Duration::from_secs(10), "training did not pause: step {at_pause}, then {now}");
        at_pause = now;
    }
    std::thread::sleep(Duration::from_millis(1500));
    let after_wait = last_step();
    assert_eq!(after_wait, at_pause, "training went on while paused");

    // Sorting and help still work while paused.
    session.keys("s");
    session.wait_for("status▲", Duration::from_secs(5));
    session.keys("?");
    session.wait_for("keys (? or esc closes)", Duration::from_secs(5));
    session.keys("Escape");
    let after = body(&session.wait_until("the help closed", Duration::from_secs(5), |s| !s.contains("keys (? or esc closes)")));

    session.keys("p");
    session.wait_for("RUNNING", Duration::from_secs(5));
    let start = Instant::now();
    while last_step() <= after_wait {
        assert!(start.elapsed() < Duration::from_secs(30), "training did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
    session.wait_until("the screen following the resumed run", Duration::from_secs(5), |s| body(s) != after);

    session.keys("q");
    session.wait_for("Stop training and quit?", Duration::from_secs(5));
    session.keys("y");
    let end = session.wait_for("EXITED=", wait);
    assert!(end.contains("EXITED=0"), "{end}");
    assert!(end.contains("runs recorded; results in results"), "{end}");
    // The alternate screen is gone: the shell's own output is visible again.
    assert_eq!(session.tmux(&["display-message", "-p", "-t", &name, "#{alternate_on}"]).trim(), "0");

    let results = dir.path().join("results");
    for f in ["results.json", "results.csv", "report.md", "runs/teacher.csv"] {
        assert!(Path::new(&results.join(f)).is_file(), "{f} missing after quit");
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(results.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["stopped"], true);
    assert_eq!(json["runs"][0]["status"], "interrupted");
}

#[test]
#[cfg_attr(kdtui_no_tmux, ignore = "tmux is not installed (apt-get install tmux)")]
fn without_a_terminal_it_says_to_use_batch() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kdtui")).current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--batch") && err.lines().count() == 1, "{err}");
}

#[test]
#[cfg_attr(kdtui_no_tmux, ignore = "tmux is not installed (apt-get install tmux)")]
fn a_second_session_resumes_and_fresh_asks_before_removing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_kdtui");
    let session = Session::start(
        dir.path(),
        "resume",
        &format!(
            "{bin} --device cpu; echo FIRST=$?; {bin} --device cpu; echo SECOND=$?; {bin} --device cpu --fresh; echo THIRD=$?; {bin} --device cpu --fresh; echo FOURTH=$?; sleep 60"
        ),
    );
    let wait = Duration::from_secs(60);

    // From epoch 2 on, the first epoch's checkpoint is on disk.
    let quit_at = session.wait_for_teacher_epoch(2, wait);
    session.keys("q");
    session.wait_for("Stop training and quit?", Duration::from_secs(5));
    session.keys("y");
    // The second session opens at once and says what it resumed.
    let screen = session.wait_for("resuming: 0 of 3 runs already finished", wait);
    assert!(screen.contains("continuing teacher"), "{screen}");
    let screen = session.wait_for("resumed from its checkpoint at epoch", wait);
    let said = screen.split("resumed from its checkpoint at epoch ").nth(1).and_then(|s| s.split(',').next());
    let resumed_at: usize = said.and_then(|e| e.trim().parse().ok()).unwrap_or(0);
    assert!(resumed_at >= 2, "the teacher started over (quit at epoch {quit_at}): {screen}");
    session.keys("q");
    session.wait_for("Stop training and quit?", Duration::from_secs(5));
    session.keys("y");

    let screen = session.wait_for("over? [y/N]", wait);
    assert!(screen.contains("FIRST=0") && screen.contains("SECOND=0"), "{screen}");
    assert!(screen.contains("remove the checkpoints of 1 run(s)") && screen.contains("move the results in results aside"), "{screen}");
    session.keys("n");
    session.keys("Enter");
    let end = session.wait_for("THIRD=", wait);
    assert!(end.contains("nothing removed") && end.contains("THIRD=0"), "{end}");
    assert!(std::fs::read_dir(dir.path().join("checkpoints/tmux")).unwrap().count() == 1, "checkpoints were removed");

    // Asked again, "y": the monitor opens on a plan started over, and the
    // earlier results are set aside, not lost.
    session.wait_until("the prompt a second time", wait, |s| s.matches("over? [y/N]").count() == 2);
    session.keys("y");
    session.keys("Enter");
    let screen = session.wait_for("earlier checkpoints of these runs removed; starting over", wait);
    assert!(!screen.contains("resumed from its checkpoint"), "{screen}");
    session.wait_for_teacher_epoch(1, wait);
    session.keys("q");
    session.wait_for("Stop training and quit?", Duration::from_secs(5));
    session.keys("y");
    let end = session.wait_for("FOURTH=", wait);
    assert!(end.contains("FOURTH=0"), "{end}");
    let aside = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("previous-"))
        .expect("the earlier results were not moved aside");
    assert!(aside.join("results.json").is_file(), "{}", aside.display());
}

#[test]
#[cfg_attr(kdtui_no_tmux, ignore = "tmux is not installed (apt-get install tmux)")]
fn closing_the_terminal_saves_the_run_and_ends_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_kdtui");
    let session = Session::start(dir.path(), "hangup", &format!("echo $$ > kdtui.pid && exec {bin} --device cpu"));
    let name = session.0.clone();
    session.wait_for_teacher_epoch(2, Duration::from_secs(60));
    let pid = std::fs::read_to_string(dir.path().join("kdtui.pid")).unwrap().trim().to_string();
    // The terminal goes away (SIGHUP), as when an SSH connection drops.
    session.tmux(&["kill-session", "-t", &name]);
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "kdtui still running 30 s after its terminal closed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing the screen took in is lost: the checkpoint is of the last
    // step the metric file logged or a later one (whether the monitor logs
    // the steps after the hangup depends on where its thread was when the
    // terminal went). Epoch 1's checkpoint was there before the hangup, so
    // this cannot tell a save on stop from an epoch's: tests/stop.rs checks
    // that the stop saves the very step it stopped at.
    let saved = read_checkpoint(&common::teacher_checkpoint(dir.path(), "tmux")).unwrap().expect("no checkpoint").progress;
    let logged = *common::logged_steps(dir.path(), "teacher").last().expect("no step logged");
    assert!(saved.step >= logged, "the teacher's progress was lost: checkpoint at step {}, {logged} logged", saved.step);
}

/// Three student runs of a few seconds each, for two shards to share.
const SHARDED: &str = r#"
[plan]
name = "watched"
seeds = [1]
losses = ["soft"]
temperatures = [5.0, 15.0]
[data]
train_size = 2048
test_size = 64
[train]
batch_size = 16
log_every = 1
[teacher]
epochs = 1
widths = [4, 8, 8]
hidden = 16
[student]
epochs = 6
widths = [4, 8, 8]
hidden = 16
"#;

#[test]
#[cfg_attr(kdtui_no_tmux, ignore = "tmux is not installed (apt-get install tmux)")]
fn watch_follows_shards_that_run_elsewhere_live() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), SHARDED).unwrap();
    let bin = env!("CARGO_BIN_EXE_kdtui");
    let batch = |args: &[&str]| {
        Command::new(bin)
            .args(["--batch", "--device", "cpu"])
            .args(args)
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    assert!(batch(&["--only", "teacher"]).wait().unwrap().success());

    let session = Session::start_in(dir.path(), "watch", &format!("{bin} watch results; echo EXITED=$?; sleep 60"));
    let wait = Duration::from_secs(60);
    // The teacher's result, read from its metric file, and the hint (a
    // frame's last line, so the frame is whole).
    let screen = session.wait_until("the watched plan", wait, |s| s.contains("runs 1/4") && s.contains("no pause here"));
    assert!(screen.contains("WATCHING") && screen.contains("queued"), "{screen}");

    let mut shards = [batch(&["--shard", "0/2"]), batch(&["--shard", "1/2"])];
    // The shards' runs train while the screen follows them: a running row
    // says its epoch (`run 2/6`) and the header the summed images/s.
    // A row says `run 1/6` from its start, before any step has landed, so
    // both are waited for together.
    session.wait_until("a running row and the summed rate", wait, |s| {
        (1..=6).any(|e| s.contains(&format!("run {e}/6"))) && s.contains("img/s")
    });
    session.keys("p");
    session.wait_for("no pause in kdtui watch: the runs train in other processes", Duration::from_secs(5));
    assert!(!session.screen().contains("PAUSED"));
    session.keys("j");

    for shard in &mut shards {
        assert!(shard.wait().unwrap().success());
    }
    let screen = session.wait_for("FINISHED", Duration::from_secs(10));
    assert!(screen.contains("runs 4/4"), "{screen}");
    // Rows below the header may land a moment after it.
    session.wait_until("four done rows", Duration::from_secs(5), |s| s.matches(" done ").count() == 4);

    session.keys("q");
    let end = session.wait_for("EXITED=", Duration::from_secs(5));
    assert!(end.contains("EXITED=0"), "quits at once, nothing to stop: {end}");

    // Closing its terminal ends it too (crossterm's input poll would spin on
    // the closed terminal otherwise).
    let results = dir.path().join("results");
    let command = format!("{bin} watch {}", results.display());
    let session = Session::start_in(dir.path(), "watch-hup", &command);
    session.wait_for("FINISHED", wait);
    drop(session);
    let running = || Command::new("pgrep").args(["-f", &command]).output().unwrap().status.success();
    let start = Instant::now();
    while running() {
        assert!(start.elapsed() < Duration::from_secs(15), "kdtui watch still runs after its terminal closed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Compare and filter as a person uses them on a finished study: mark two
/// runs (both appear in the overlay's legend), filter the table with
/// `/soft`, clear the filter with esc.
#[test]
#[cfg_attr(kdtui_no_tmux, ignore = "tmux is not installed (apt-get install tmux)")]
fn mark_two_runs_to_compare_then_filter_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[plan]\nname = \"cmp\"\nseeds = [1]\nlosses = [\"soft\", \"gt_soft\"]\ntemperatures = [5.0]\n[data]\ntrain_size = 256\ntest_size = 64\n\
         [train]\nbatch_size = 32\n[teacher]\nepochs = 2\nwidths = [4, 8, 8]\nhidden = 16\n[student]\nepochs = 2\nwidths = [4, 8, 8]\nhidden = 16\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_kdtui");
    let session = Session::start_in(dir.path(), "compare", &format!("{bin} --device cpu; sleep 60"));
    let wait = Duration::from_secs(60);
    session.wait_for("FINISHED", wait);
    // Rows in plan order: teacher, baseline-s1, soft-T5-s1, gt_soft-T5-s1.
    // Keys one at a time: `Escape` followed at once by a letter is read as Alt+letter.
    let key = |k: &str| {
        session.keys(k);
        std::thread::sleep(Duration::from_millis(150));
    };
    for k in ["Up", "Up", "Up", "Down", "m", "Down", "m"] {
        key(k);
    }
    let s = session.wait_for("compare 2 runs: test accuracy per epoch", Duration::from_secs(5));
    assert!(s.contains("baseline-s1") && s.contains("soft-T5-s1"), "{s}");
    let legend: Vec<&str> = s.lines().filter(|l| l.contains("│baseline-s1") || l.contains("│soft-T5-s1")).collect();
    assert_eq!(legend.len(), 2, "both marked runs in the chart's legend:\n{s}");
    key("Tab");
    session.wait_for("compare 2 runs: agreement with the teacher per epoch", Duration::from_secs(5));

    key("/");
    for k in ["s", "o", "f", "t"] {
        key(k);
    }
    key("Enter");
    let s = session.wait_for("filter /soft (1 of 4)", Duration::from_secs(5));
    let table: String = s.lines().take_while(|l| !l.starts_with('└')).collect::<Vec<_>>().join("\n");
    assert!(table.contains("soft-T5-s1") && !table.contains("teacher  ") && !table.contains("gt_soft-T5-s1"), "{s}");
    key("Escape");
    let s = session.wait_until("the filter cleared", Duration::from_secs(5), |s| !s.contains("filter /"));
    assert!(s.contains("gt_soft-T5-s1") && s.contains("teacher"), "{s}");
    key("q");
}
