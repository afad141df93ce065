//! A real full disk. The results and checkpoint directories of a plan lie on
//! small tmpfs mounts, one for each place kdtui writes (checkpoints, the
//! results files, the metric files, TensorBoard's files, the model files),
//! in a user and mount namespace of the test's own (`unshare -rm`: as root
//! and as any other user; the mounts vanish with it, the system is not
//! touched). One mount at a time is filled to the last byte and the same
//! `kdtui --batch` command is run: it must stop with one line naming the
//! path and "No space left", exit 1, change no file that was there, leave no
//! temporary file; then, with the space freed, the next run goes on. The
//! last one finishes, and every run trained exactly as in a plan that never
//! met a full disk.
//!
//! Where no tmpfs can be mounted (build.rs tries), these tests are ignored.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kdtui::outputs::Results;

mod common;
use common::{assert_same_training, write};

const KDTUI: &str = env!("CARGO_BIN_EXE_kdtui");

/// Epochs of a few hundred milliseconds: a stop sent when the disk is
/// found full lands within the run under way.
const CONFIG: &str = r#"
[plan]
name = "disk"
seeds = [1]
losses = ["soft"]
temperatures = [5.0]
out = "disk/results"
checkpoints = "disk/checkpoints"
[data]
train_size = 1024
test_size = 64
[train]
batch_size = 32
eval_batch_size = 64
log_every = 1
[teacher]
epochs = 2
widths = [4, 8, 8]
hidden = 16
[student]
epochs = 2
widths = [4, 8, 8]
hidden = 16
"#;

/// The mounts, relative to the test's folder, each with its size: the
/// results directory, and below it the three folders written apart from
/// the results files.
const MOUNTS: [(&str, &str); 5] = [
    ("disk/checkpoints", "4m"),
    ("disk/results", "4m"),
    ("disk/results/metrics", "1m"),
    ("disk/results/tensorboard", "1m"),
    ("disk/results/models", "1m"),
];

/// A process holding a user and mount namespace in which `MOUNTS` are
/// mounted. Commands enter it with nsenter; the test reads and changes the
/// mounted files through the holder's `/proc/<pid>/root`.
struct SmallDisks {
    holder: Child,
    dir: PathBuf,
}

impl SmallDisks {
    fn mount(dir: &Path) -> SmallDisks {
        let mut script = String::from("set -e\n");
        for (path, size) in MOUNTS {
            script += &format!("mkdir -p '{0}'\nmount -t tmpfs -o size={size} tmpfs '{0}'\n", dir.join(path).display());
        }
        script += "echo mounted\nexec sleep 3600\n";
        let mut holder = Command::new("unshare")
            .args(["-rm", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (build.rs found it)");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line.trim(), "mounted", "the tmpfs mounts failed");
        SmallDisks { holder, dir: dir.to_path_buf() }
    }

    /// `path` (relative to the test's folder) as the namespace sees it.
    fn view(&self, path: &str) -> PathBuf {
        let absolute = self.dir.join(path);
        PathBuf::from(format!("/proc/{}/root{}", self.holder.id(), absolute.display()))
    }

    /// `kdtui --batch` with `args`, inside the namespace, in the test's folder.
    fn kdtui(&self, args: &[&str]) -> Output {
        self.enter(KDTUI).args(["--batch", "--device", "cpu"]).args(args).output().unwrap()
    }

    /// `program` inside the namespace, in the test's folder. The folder is
    /// entered there (`cd`): nsenter's `--wd` keeps a directory of the outer
    /// namespace, under which the mounts do not exist.
    fn enter(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.id().to_string(), "-U", "-m", "--preserve-credentials", "sh", "-c", r#"cd "$0" && exec "$@""#])
            .arg(&self.dir)
            .arg(program);
        c
    }

    /// Fills the mount at `path` to its last byte.
    fn fill(&self, path: &str) {
        let mut filler = std::fs::File::create(self.view(path).join("filler")).unwrap();
        let chunk = vec![0u8; 64 << 10];
        loop {
            match filler.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {path}: {e}"),
            }
        }
    }

    fn free(&self, path: &str) {
        std::fs::remove_file(self.view(path).join("filler")).unwrap();
    }
}

impl Drop for SmallDisks {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Every file below `root` (relative path -> bytes), the fillers left out.
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().unwrap() != "filler" {
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// What a reader meets after a failed write: no temporary file, no torn
/// line in a metric file, a results.json that parses, TensorBoard files
/// whose records all check.
fn assert_readable(disks: &SmallDisks) {
    let root = disks.view("disk");
    for (path, bytes) in files(&root) {
        let name = path.to_string_lossy();
        assert!(!name.contains(".kdtui-tmp-"), "temporary file left behind: {name}");
        if name.ends_with(".jsonl") {
            assert!(bytes.is_empty() || bytes.ends_with(b"\n"), "{name} ends in a torn line");
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                serde_json::from_slice::<kdtui::outputs::runlog::Entry>(line)
                    .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(line)));
            }
        }
        if name.contains("tfevents") {
            kdtui::outputs::tensorboard::read_scalars(&root.join(&path)).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        if name.ends_with(".json") {
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// Fills `mount`, runs the plan and checks it stopped there as it should;
/// frees the space again.
fn full_at(disks: &SmallDisks, mount: &str, expected: &str) {
    let before = files(&disks.view(mount));
    disks.fill(mount);
    let out = disks.kdtui(&[]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{mount} full\n{stdout}\n{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("kdtui: ") && !l.contains("stopping the training thread"));
    let line = line.unwrap_or_else(|| panic!("no error line\n{stderr}"));
    assert!(line.contains(expected) && line.contains("No space left on device"), "{mount} full: {line}");
    assert!(line.contains("run the same command again"), "{line}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let after = files(&disks.view(mount));
    for (path, bytes) in &before {
        assert!(after.get(path) == Some(bytes), "{mount}/{} changed or vanished while the disk was full", path.display());
    }
    let new: Vec<_> = after.iter().filter(|(p, b)| !before.contains_key(*p) && !b.is_empty()).map(|(p, _)| p).collect();
    assert!(new.is_empty(), "written on a full disk: {new:?}");
    assert_readable(disks);
    disks.free(mount);
}

#[test]
#[cfg_attr(kdtui_no_small_disk, ignore = "no tmpfs can be mounted here (unshare -rm fails: user namespaces disabled?)")]
fn a_full_disk_at_each_write_stops_cleanly_and_the_next_run_finishes_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", CONFIG);
    let disks = SmallDisks::mount(dir.path());
    let first = disks.kdtui(&["--only", "teacher"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));

    // Each full mount in turn, in the order the plan next writes there.
    full_at(&disks, "disk/results/metrics", "disk/results/metrics/baseline-s1.jsonl");
    full_at(&disks, "disk/results/tensorboard", "disk/results/tensorboard/baseline-s1");
    full_at(&disks, "disk/results", "disk/results/");
    full_at(&disks, "disk/checkpoints", "disk/checkpoints/disk/");
    full_at(&disks, "disk/results/models", "disk/results/models/");

    let last = disks.kdtui(&[]);
    assert!(last.status.success(), "{}", String::from_utf8_lossy(&last.stderr));
    assert_readable(&disks);
    let results = Results::load(&disks.view("disk/results")).unwrap();
    assert!(results.finished, "{results:?}");

    // The same plan on a disk with room, start to end.
    let reference_dir = tempfile::tempdir().unwrap();
    write(reference_dir.path(), "config.toml", CONFIG);
    let out = Command::new(KDTUI).args(["--batch", "--device", "cpu"]).current_dir(reference_dir.path()).output().unwrap();
    assert!(out.status.success());
    let reference = Results::load(&reference_dir.path().join("disk/results")).unwrap();
    assert_eq!(results.runs.len(), reference.runs.len());
    for (a, b) in results.runs.iter().zip(&reference.runs) {
        assert_eq!(a.run_id, b.run_id);
        assert_same_training(a, b);
        assert!(disks.view("disk/results/models").join(format!("{}.safetensors", a.run_id)).is_file(), "{}", a.run_id);
    }
}

/// The monitor meets a full disk: it says so on its screen, and after `q`
/// the terminal is the shell's again, with the error line and exit status 1.
#[test]
#[cfg_attr(kdtui_no_small_disk, ignore = "no tmpfs can be mounted here (unshare -rm fails: user namespaces disabled?)")]
#[cfg_attr(kdtui_no_tmux, ignore = "tmux is not installed (apt-get install tmux)")]
fn the_monitor_on_a_full_disk_says_why_and_gives_the_terminal_back() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", CONFIG);
    let disks = SmallDisks::mount(dir.path());
    assert!(disks.kdtui(&["--only", "teacher"]).status.success());
    // Found full when the baseline starts, with the monitor open (a full
    // results directory is found before it opens).
    disks.fill("disk/results/metrics");

    let session = format!("kdtui-disk-{}", std::process::id());
    let shell = format!(
        "nsenter -t {} -U -m --preserve-credentials sh -c 'cd {} && exec {KDTUI} --device cpu'; echo \"exit=$?\"; sleep 600",
        disks.holder.id(),
        dir.path().display()
    );
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().unwrap();
    assert!(tmux(&["new-session", "-d", "-x", "120", "-y", "40", "-s", &session, &shell]).status.success());
    let screen = || String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-J", "-t", &session]).stdout).to_string();
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = screen();
            if s.contains(what) {
                return s;
            }
            assert!(Instant::now() < deadline, "not on screen after 60 s: {what}\n{s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let shown = wait_for("No space left on device");
    assert!(shown.contains("cannot write results") && shown.contains("metrics/baseline-s1.jsonl"), "{shown}");
    tmux(&["send-keys", "-t", &session, "q"]);
    let after = wait_for("exit=");
    let alternate = String::from_utf8_lossy(&tmux(&["display-message", "-p", "-t", &session, "#{alternate_on}"]).stdout).to_string();
    let _ = tmux(&["kill-session", "-t", &session]);
    assert!(after.contains("exit=1"), "{after}");
    assert!(after.contains("kdtui: ") && after.contains("No space left on device"), "{after}");
    assert_eq!(alternate.trim(), "0", "the monitor's alternate screen is still on");
}

/// A metric line or a TensorBoard record that the disk fills in the middle
/// of: the bytes that fitted are taken back, so the file ends where its last
/// whole entry does. (A full page before the write fails whole; these fill
/// the last page of a file to within a few bytes, so the write starts and
/// stops part-way, as on a disk that fills during it.)
#[test]
#[cfg_attr(kdtui_no_small_disk, ignore = "no tmpfs can be mounted here (unshare -rm fails: user namespaces disabled?)")]
fn an_append_cut_short_by_a_full_disk_is_taken_back() {
    use kdtui::outputs::runlog::RunLog;
    use kdtui::outputs::tensorboard::{read_scalars, Recorder};
    use kdtui::protocol::{EpochMetrics, TrainEvent};

    const PAGE: u64 = 4096;
    let dir = tempfile::tempdir().unwrap();
    let disks = SmallDisks::mount(dir.path());
    let run_id = "baseline-s1".to_string();
    let started = TrainEvent::RunStarted { run_id: run_id.clone(), epochs: 99, steps_per_epoch: 10, step: 0, history: vec![] };
    let step = |n| TrainEvent::Step { run_id: run_id.clone(), epoch: 1, step: n, loss: 0.5, accuracy: 0.25, images_per_sec: 1.0 };
    let metrics = |epoch| EpochMetrics {
        epoch,
        train_loss: 1.0 / 3.0,
        train_accuracy: 2.0 / 3.0,
        test_loss: 1.0 / 7.0,
        test_accuracy: 6.0 / 7.0,
        seconds: 1.5,
        images_per_sec: 100.0,
        diagnostics: None,
    };
    let epoch = |n| TrainEvent::EpochFinished { run_id: run_id.clone(), metrics: metrics(n) };
    let room = |path: &Path| PAGE - std::fs::metadata(path).unwrap().len() % PAGE;

    // The metric file: step lines (about 90 bytes) until an epoch line
    // (about 200) no longer fits in the page.
    let results = disks.view("disk/results");
    let metrics_file = kdtui::outputs::runlog::path(&results, &run_id);
    let mut log = RunLog::new(results.clone());
    log.on_event(&started).unwrap();
    let mut n = 0;
    while room(&metrics_file) > 120 {
        n += 1;
        log.on_event(&step(n)).unwrap();
    }
    disks.fill("disk/results/metrics");
    let before = std::fs::read(&metrics_file).unwrap();
    let error = log.on_event(&epoch(1)).unwrap_err();
    assert!(error.is_disk_full(), "{error}");
    assert_eq!(std::fs::read(&metrics_file).unwrap(), before, "the part of the line that fitted is still there");

    // TensorBoard: records reach the file at each epoch's end (about 130
    // bytes an epoch); the steps of the last epoch make its flush larger
    // than the room left.
    let tensorboard = disks.view("disk/results/tensorboard");
    let mut recorder = Recorder::new(tensorboard.clone());
    recorder.on_event(&started).unwrap();
    let events_file = || std::fs::read_dir(tensorboard.join(&run_id)).unwrap().next().unwrap().unwrap().path();
    let mut e = 0;
    while room(&events_file()) > 400 {
        e += 1;
        recorder.on_event(&epoch(e)).unwrap();
    }
    disks.fill("disk/results/tensorboard");
    let before = std::fs::read(events_file()).unwrap();
    let written = read_scalars(&events_file()).unwrap();
    for s in 0..10 {
        recorder.on_event(&step(s)).unwrap();
    }
    let error = recorder.on_event(&epoch(e + 1)).unwrap_err();
    assert!(error.is_disk_full(), "{error}");
    assert_eq!(std::fs::read(events_file()).unwrap(), before, "a torn record is left");
    assert_eq!(read_scalars(&events_file()).unwrap(), written);
}
