//! The binary as a user meets it: exit codes, messages, the files it leaves.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

mod common;
use common::{write, TINY};
use kdtui::engine::train::checkpoint::read_checkpoint;

fn kdtui(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kdtui").unwrap();
    cmd.current_dir(dir);
    cmd
}

#[test]
fn batch_plan_writes_every_results_file_and_they_agree_with_stdout() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    let out = kdtui(dir.path()).args(["--batch", "--device", "cpu"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));

    let results = dir.path().join("results");
    for f in ["results.json", "results.csv", "report.md"] {
        assert!(results.join(f).is_file(), "{f} missing");
    }
    let ids = ["teacher", "baseline-s1", "soft-T5-s1", "gt_soft-T5-s1"];
    for id in ids {
        assert!(results.join("runs").join(format!("{id}.csv")).is_file(), "runs/{id}.csv missing");
    }
    // Every run's final accuracy, as printed, is what results.csv holds.
    let csv = std::fs::read_to_string(results.join("results.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), ids.len(), "{csv}");
    for row in &rows {
        let acc: f64 = row[7].parse().unwrap();
        let printed = format!("{} done: final test acc {:.2}%", row[0], 100.0 * acc);
        assert!(stdout.contains(&printed), "stdout lacks `{printed}`:\n{stdout}");
        assert_eq!(row[5], "done");
    }
    // One line per epoch per run: 2 for the teacher, 1 for each student.
    assert_eq!(stdout.lines().filter(|l| l.contains(" epoch ")).count(), 2 + 3);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(results.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 4);
    assert_eq!(json["finished"], true);
    assert_eq!(json["test_images"], 64);
    let report = std::fs::read_to_string(results.join("report.md")).unwrap();
    assert!(report.contains("| 5 | 93.36% / "), "{report}");
    assert!(report.contains("name = \"tiny\""), "report must quote the config");

    // A second run reuses the teacher checkpoint.
    let again = kdtui(dir.path()).args(["--batch", "--device", "cpu", "--only", "baseline"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(stdout.contains("teacher reused"), "{stdout}");
    assert!(!stdout.contains("soft-T5"), "--only baseline ran more: {stdout}");
}

/// The losses added after the original study reach every output through
/// the registry alone: they train, and the results, the report's table and
/// its fidelity rows, the figures and the planned comparisons list them.
#[test]
fn the_newer_losses_run_through_the_plan_into_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let config = TINY.replace(r#"losses = ["soft", "gt_soft"]"#, r#"losses = ["dkd", "dist", "logit_std"]"#);
    write(dir.path(), "config.toml", &(config + "[distill.dkd]\nbeta = 4.0\n"));
    let out = kdtui(dir.path()).args(["--batch", "--device", "cpu"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    let results = dir.path().join("results");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(results.join("results.json")).unwrap()).unwrap();
    for id in ["dkd-T5-s1", "dist-T5-s1", "logit_std-T5-s1"] {
        let run = json["runs"].as_array().unwrap().iter().find(|r| r["run_id"] == id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(run["status"], "done", "{id}");
        assert!(run["final_train_loss"].as_f64().is_some_and(f64::is_finite), "{id}: {run}");
    }
    let report = std::fs::read_to_string(results.join("report.md")).unwrap();
    assert!(report.contains("| T | soft | hard_soft | gt_soft (no teacher) | dkd | dist | logit_std |"), "{report}");
    for row in ["| dkd T=5 |", "| dist T=5 |", "| logit_std T=5 |"] {
        assert!(report.contains(row), "no fidelity row {row}:\n{report}");
    }
    assert!(report.contains("dkd T=5 − no teacher"), "no planned comparison for dkd:\n{report}");
    assert!(report.contains("beta = 4.0"), "the report quotes [distill.dkd]");
}

#[test]
fn svhn_fixtures_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/svhn-format");
    let config = TINY
        .replace("[data]\ntrain_size = 192\ntest_size = 64", &format!("[data]\nsource = \"svhn\"\ndir = {:?}", fixtures.to_str().unwrap()));
    write(dir.path(), "config.toml", &config);
    let out = kdtui(dir.path()).args(["--batch", "--device", "cpu", "--only", "soft"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("svhn: 192 train / 96 test"), "{stdout}");
    assert!(stdout.contains("train_32x32.mat is not the official SVHN file"), "{stdout}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("results/results.json")).unwrap()).unwrap();
    assert_eq!(json["test_images"], 96);
}

/// The SVHN preset as shipped, on the SVHN-layout fixtures instead of the
/// real files (its `dir`), with one epoch each and two of its runs: its keys
/// parse, its data section reads SVHN files, its seeds make runs.
#[test]
fn svhn_preset_runs_on_the_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/svhn-format");
    let preset = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/svhn.toml")).unwrap();
    let config = preset
        .replace("dir = \"data\"", &format!("dir = {:?}", fixtures.to_str().unwrap()))
        .replace("epochs = 15", "epochs = 1")
        .replace("epochs = 10", "epochs = 1");
    assert_ne!(config, preset);
    write(dir.path(), "svhn.toml", &config);
    let out = kdtui(dir.path())
        .args(["--batch", "--device", "cpu", "--config", "svhn.toml", "--only", "baseline-s2,hard_soft-T15-s3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("svhn: 192 train / 96 test"), "{stdout}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("results-svhn/results.json")).unwrap()).unwrap();
    let mut ran: Vec<&str> = json["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    ran.sort();
    assert_eq!(ran, ["baseline-s2", "hard_soft-T15-s3", "teacher"]);
}

/// The smoke preset parses and plans one run of each kind.
#[test]
fn smoke_preset_plans_every_kind_of_run() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
    let config = kdtui::study::Config::load(&path).unwrap();
    let runs: Vec<String> = kdtui::study::plan::full_plan(&config).into_iter().map(|r| r.run_id).collect();
    assert_eq!(runs, ["teacher", "baseline-s1", "soft-T15-s1", "hard_soft-T15-s1", "gt_soft-T15-s1"]);
}

#[test]
fn idx_files_run_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mnist");
    std::fs::create_dir(&data).unwrap();
    let idx = |dims: &[u32], bytes: Vec<u8>| {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend(bytes);
        b
    };
    for (prefix, n) in [("train", 96u32), ("t10k", 32)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        // A bright bar whose row encodes the label: learnable, not trivial noise.
        let images: Vec<u8> =
            labels.iter().flat_map(|&l| (0..28 * 28).map(move |p| if p / 28 == 2 + 2 * l as usize { 255 } else { 0 })).collect();
        std::fs::write(data.join(format!("{prefix}-images-idx3-ubyte")), idx(&[n, 28, 28], images)).unwrap();
        std::fs::write(data.join(format!("{prefix}-labels-idx1-ubyte")), idx(&[n], labels)).unwrap();
    }
    let config = TINY.replace("[data]\ntrain_size = 192\ntest_size = 64", "[data]\nsource = \"idx\"\ndir = \"mnist\"");
    write(dir.path(), "config.toml", &config);
    let out = kdtui(dir.path()).args(["--batch", "--device", "cpu", "--only", "gt_soft"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("idx: 96 train / 32 test"), "{stdout}");
    assert!(dir.path().join("results/runs/gt_soft-T5-s1.csv").is_file());
}

#[test]
fn bad_config_is_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[student]\nw_bits = 9\n", "student.w_bits"),
        ("[plan]\ntemperatures = [0.0]\n", "plan.temperatures"),
        ("[plan]\nlosses = [\"sofft\"]\n", "sofft"),
        ("[train]\nbatch_size = 0\n", "train.batch_size"),
        ("[train\n", "config.toml"),
        ("[data]\nsource = \"cifar\"\n", "cifar"),
    ];
    for (text, needle) in cases {
        write(dir.path(), "config.toml", text);
        kdtui(dir.path())
            .args(["--batch", "--device", "cpu"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(needle).and(predicate::str::contains("panicked").not()));
    }
    kdtui(dir.path()).args(["--batch", "--config", "nope.toml"]).assert().code(2).stderr(predicate::str::contains("nope.toml"));
}

#[test]
fn impossible_requests_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    kdtui(dir.path()).args(["--batch", "--only", "nothing-like-this"]).assert().code(2).stderr(predicate::str::contains("names no run"));
    kdtui(dir.path()).args(["--batch", "--device", "tpu"]).assert().code(2).stderr(predicate::str::contains("unknown device"));
    // Without the feature the build says how to get it; with it, no machine
    // has a 100th GPU, so this holds on a GPU host as on CI.
    let expected = if cfg!(feature = "cuda") { "no usable CUDA device" } else { "--features cuda" };
    kdtui(dir.path())
        .args(["--batch", "--device", "cuda:99"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(expected).and(predicate::str::contains("panicked").not()));
    let missing = TINY.replace("[data]\ntrain_size = 192\ntest_size = 64", "[data]\nsource = \"svhn\"\ndir = \"nowhere\"");
    write(dir.path(), "config.toml", &missing);
    kdtui(dir.path()).args(["--batch", "--device", "cpu"]).assert().code(1).stderr(predicate::str::contains("nowhere"));
    assert!(!dir.path().join("results").exists(), "no results for a plan that never ran");
}

/// `kdtui doctor` lists what a CUDA run needs and stops at the first piece
/// missing: on any host, a 100th GPU is missing (exit 2); the CPU always works.
#[test]
fn doctor_names_what_a_cuda_run_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let out = kdtui(dir.path()).args(["doctor", "--device", "cuda:99"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("kdtui's kernels run") && stdout.contains("cuda:99 needs, in order:"), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.trim_start().starts_with("missing")).count(), 1, "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--device cuda:99") && !stderr.contains("panicked"), "{stderr}");
    kdtui(dir.path()).args(["doctor", "--device", "cpu"]).assert().success().stdout(predicate::str::contains("--device cpu works"));
}

/// `--device auto` that finds no GPU says why it trains on the CPU (a build
/// with a GPU backend): why not CUDA, each software adapter it skipped; on
/// a host whose GPU answers it takes it and says nothing of the CPU.
#[test]
fn auto_says_why_it_trains_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    let out = kdtui(dir.path()).args(["--batch", "--device", "auto", "--only", "teacher"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let on_cpu = stdout.lines().next().is_some_and(|l| l.contains("runs on cpu"));
    let said = stdout.contains("--device auto: no usable GPU; training on the CPU");
    assert_eq!(said, on_cpu && (cfg!(feature = "cuda") || cfg!(feature = "wgpu")), "{stdout}");
    if said && cfg!(feature = "cuda") {
        assert!(stdout.contains("--device auto: CUDA is not usable ("), "{stdout}");
    }
}

/// A stop the user asks for (ctrl-c, here SIGINT) ends `--batch` with status
/// 0, as quitting the monitor does, and says how to continue; the same
/// command then finishes the plan from the stopped run's checkpoint.
#[test]
fn a_stop_on_request_exits_0_and_the_same_command_continues() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    // 24 steps an epoch, 720 in the teacher: the stop, sent as epoch 1 is
    // reported, lands hundreds of steps before the teacher could finish.
    let config =
        TINY.replace("batch_size = 32", "batch_size = 8\nlog_every = 1").replace("[teacher]\nepochs = 2", "[teacher]\nepochs = 30");
    write(dir.path(), "config.toml", &config);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kdtui"))
        .args(["--batch", "--device", "cpu"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        stdout += &line;
        stdout.push('\n');
        if line.contains("teacher epoch 1/30") {
            // Into epoch 2 before the stop, so its checkpoint is not epoch 1's.
            common::wait_for_teacher_step(dir.path(), &mut child, 27, std::time::Duration::from_secs(60));
            // SAFETY: kill(2) on a child this test spawned and has not reaped.
            assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
            break;
        }
    }
    for line in lines {
        stdout += &line.unwrap();
        stdout.push('\n');
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("teacher stopped"), "{stdout}");
    assert!(stdout.contains("stopped before the plan finished; run the same command again to continue it"), "{stdout}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("results/results.json")).unwrap()).unwrap();
    assert_eq!((json["stopped"].as_bool(), json["finished"].as_bool()), (Some(true), Some(false)));
    // Saved at the step it stopped at, not only at epoch 1's end.
    let saved = read_checkpoint(&common::teacher_checkpoint(dir.path(), "tiny")).unwrap().unwrap().progress;
    assert_eq!(Some(&saved.step), common::logged_steps(dir.path(), "teacher").last());
    assert!(saved.step > 26, "step {}", saved.step);

    let again = kdtui(dir.path()).args(["--batch", "--device", "cpu"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert_eq!(again.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("teacher: resumed from its checkpoint"), "{stdout}");
    assert!(!stdout.contains("stopped before"), "{stdout}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("results/results.json")).unwrap()).unwrap();
    assert_eq!(json["finished"], true);
}

/// The teacher (and its cached targets) follows the images, not the
/// `[data]` settings: the same files elsewhere reuse it; other files in the
/// same directory train a new one.
#[test]
fn replaced_data_files_retrain_the_teacher_and_moved_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let copy = |from: &str, to: &str| {
        std::fs::create_dir_all(dir.path().join(to)).unwrap();
        for file in ["train_32x32.mat", "test_32x32.mat"] {
            std::fs::copy(fixtures.join(from).join(file), dir.path().join(to).join(file)).unwrap();
        }
    };
    let config = |data_dir: &str| {
        TINY.replace("[data]\ntrain_size = 192\ntest_size = 64", &format!("[data]\nsource = \"svhn\"\ndir = \"{data_dir}\""))
    };
    let teacher = |data_dir: &str| -> String {
        write(dir.path(), "config.toml", &config(data_dir));
        let out = kdtui(dir.path()).args(["--batch", "--device", "cpu", "--only", "teacher"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    copy("svhn-format", "data");
    assert!(teacher("data").contains("teacher epoch 1/2"), "the first session trains it");
    copy("svhn-format", "moved");
    let stdout = teacher("moved");
    assert!(stdout.contains("teacher reused") && !stdout.contains("teacher epoch"), "same images elsewhere: {stdout}");
    copy("svhn-format-ydouble", "data");
    let stdout = teacher("data");
    assert!(stdout.contains("teacher epoch 1/2") && !stdout.contains("teacher reused"), "other images: {stdout}");
}
