//! `kdtui bench` as a user meets it. The figures themselves are not checked
//! (speed is what the benchmark reports, not what tests assert); what is
//! checked is that every figure is measured and printed, that a missing
//! PyTorch is said and not fatal, and that bad arguments are refused.

use std::path::Path;

use assert_cmd::Command;

mod common;
use common::{write, TINY};

fn kdtui(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kdtui").unwrap();
    cmd.current_dir(dir);
    cmd
}

/// The figure column of `model`'s `figure` row in the printed table.
fn figure(stdout: &str, model: &str, figure: &str) -> Option<String> {
    stdout
        .lines()
        .find(|l| l.starts_with(model) && l.contains(figure))
        .map(|l| l[8 + 1 + 22..].split_whitespace().next().unwrap_or("").to_string())
}

#[test]
fn measures_both_models_and_says_why_the_reference_did_not_run() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    let out = kdtui(dir.path())
        .args(["bench", "--device", "cpu", "--seconds", "0.3", "--rounds", "1", "--threads", "2", "--python", "/nonexistent/python3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("PyTorch: not measured: cannot run `/nonexistent/python3`"), "{stdout}");
    assert!(stdout.contains("README, \"Benchmark\""), "{stdout}");
    assert!(stdout.contains("on cpu (burn flex, 2 threads)"), "backend and device: {stdout}");
    for model in ["teacher", "student"] {
        for name in ["train images/s", "inference images/s"] {
            let value = figure(&stdout, model, name).unwrap_or_else(|| panic!("no {model} {name} row:\n{stdout}"));
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("{model} {name}: {value:?}\n{stdout}"));
            assert!(v > 0.0, "{model} {name}: {v}");
        }
        let memory = figure(&stdout, model, "peak memory").unwrap();
        // The quantized student also runs on the integer engine, and predicts the float engine's classes.
        if model == "student" {
            for name in ["int inference images/s", "int inference, batch 1"] {
                let v: f64 = figure(&stdout, model, name).unwrap_or_else(|| panic!("no {name} row:\n{stdout}")).parse().unwrap();
                assert!(v > 0.0, "{name}: {v}");
            }
            let agree = figure(&stdout, model, "int = fp32 class").unwrap();
            let agree: f64 = agree.trim_end_matches('%').parse().unwrap();
            assert!(agree >= 99.0, "the integer engine agrees with the float engine on {agree}% of the images\n{stdout}");
        }
        let mib: f64 = memory.parse().unwrap();
        assert!(mib > 1.0, "{model} peak memory {mib} MiB");
    }
    // The integer engine served as a serving process runs: small pages.
    let serving = stdout.lines().find(|l| l.starts_with("int serving memory")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(serving.contains("transparent huge pages off while serving"), "{serving}");
    // No ratio without a reference.
    assert!(stdout.lines().filter(|l| l.contains("images/s")).all(|l| l.trim_end().ends_with('-')), "{stdout}");
    // Nothing is written where it ran: no results, no checkpoints.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("config.toml")]);
}

/// A compiled reference that fails (inductor finds no C++ compiler, say)
/// leaves its column out with the reason; eager's and kdtui's figures
/// stand. PyTorch here is a stand-in script that answers as the reference
/// does, and fails when asked for `--compiled`.
#[test]
#[cfg(unix)]
fn a_failing_compiled_reference_is_left_out_with_its_reason() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    let fake = dir.path().join("python");
    let line = r#"{"side":"pytorch","model":"student","device":"cpu","version":"torch 0","threads":2,"train_images_per_sec":10.0,"infer_images_per_sec":20.0,"peak_rss_bytes":1048576,"peak_device_bytes":null}"#;
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  *'import torch'*) echo 0.0 ;;\n  *--compiled*) cat >/dev/null; echo 'InvalidCxxCompiler: no working C++ compiler found' >&2; exit 1 ;;\n  *) cat >/dev/null; echo '{line}' ;;\nesac\n"
    );
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let python = fake.to_str().unwrap();
    let args =
        ["bench", "--device", "cpu", "--model", "student", "--seconds", "0.2", "--rounds", "2", "--threads", "2", "--python", python];
    let out = kdtui(dir.path()).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("compiled: left out, it failed:") && stdout.contains("no working C++ compiler"), "{stdout}");
    assert_eq!(figure(&stdout, "student", "train images/s").map(|v| v.parse::<f64>().unwrap() > 0.0), Some(true), "{stdout}");
    let train = stdout.lines().find(|l| l.starts_with("student") && l.contains("train images/s")).unwrap();
    assert!(train.contains(" 10.0 "), "eager's figure: {train}");
    assert!(!stdout.contains("kdtui/compiled"), "no compiled column: {stdout}");
}

/// `--model student`: the student's rows only, its share of the peak
/// computed with the student's work per image (not the teacher's, here
/// about twelve times as much).
#[test]
fn one_model_is_measured_alone() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = "[teacher]\nepochs = 2\nwidths = [16, 32, 32]";
    let config = TINY.replacen("[teacher]\nepochs = 2\nwidths = [4, 8, 8]", teacher, 1);
    assert!(config.contains(teacher), "TINY's teacher changed: {TINY}");
    write(dir.path(), "config.toml", &config);
    let args = ["bench", "--device", "cpu", "--model", "student", "--seconds", "0.3", "--rounds", "1", "--threads", "2", "--no-reference"];
    let out = kdtui(dir.path()).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.lines().any(|l| l.starts_with("teacher")), "{stdout}");
    let train: f64 = figure(&stdout, "student", "train images/s").unwrap().parse().unwrap();
    let share: f64 = figure(&stdout, "student", "train, share of peak").unwrap().trim_end_matches('%').parse().unwrap();
    let peak = stdout.lines().find(|l| l.starts_with("peak:")).unwrap();
    let gflops: f64 = peak["peak: ".len()..].split(' ').next().unwrap().parse().unwrap();
    let student: f64 = peak.split("student ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    // The work per image is printed to three decimals of a GFLOP: a third off at most.
    let expected = 100.0 * train * student / gflops;
    assert!((share - expected).abs() <= 1.0 + expected / 3.0, "share {share}%, {expected:.1}% from the figures: {stdout}");
}

/// `--int-layers`: every layer of the student at every pair of widths,
/// a figure in each form this CPU has, the engine's form marked once.
#[test]
fn int_layers_times_every_layer_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    let out = kdtui(dir.path()).args(["bench", "--int-layers", "--seconds", "0.05"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let header = stdout.lines().nth(1).unwrap();
    assert!(header.contains("avx") || header.contains("scalar"), "a byte kernel: {header}");
    assert!(header.contains("bit-serial (popcnt)"), "{header}");
    let rows: Vec<&str> = stdout.lines().skip(2).collect();
    // Convs 2 to 5 and the hidden layer at 6 pairs of widths.
    assert_eq!(rows.len(), 5 * 6, "{stdout}");
    for row in rows {
        assert_eq!(row.matches('*').count(), 1, "one form the engine runs: {row}");
        let figures: Vec<f64> = row.split_whitespace().filter_map(|w| w.trim_end_matches('*').parse().ok()).collect();
        assert!(figures.iter().filter(|&&f| f > 0.0).count() >= 2, "{row}");
    }
}

#[test]
fn bad_arguments_are_refused_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", TINY);
    for (args, expect) in [
        (vec!["bench", "--seconds", "0"], "--seconds must be a positive number"),
        (vec!["bench", "--threads", "0"], "--threads must be at least 1"),
        (vec!["bench", "--rounds", "0"], "--rounds must be at least 1"),
        (vec!["bench", "--device", "gpu"], "unknown device \"gpu\""),
        (vec!["bench", "--config", "missing.toml"], "missing.toml"),
    ] {
        let out = kdtui(dir.path()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line, got {stderr}");
    }
    // A value clap checks: its own words, with the values it takes.
    let out = kdtui(dir.path()).args(["bench", "--model", "pupil"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid value 'pupil' for '--model") && stderr.contains("teacher, student"), "{stderr}");
}

fn reference_script() -> (std::path::PathBuf, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/torch_bench.py");
    let text = std::fs::read_to_string(&script).unwrap();
    (script, text)
}

/// The reference runs wherever PyTorch is installed; here it must at least
/// be the file kdtui compiles in and take every argument kdtui passes it.
#[test]
fn reference_script_takes_kdtuis_arguments() {
    let (_, text) = reference_script();
    assert_eq!(text, kdtui::cli::bench::REFERENCE_SCRIPT, "the compiled-in copy is the file");
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli/bench/mod.rs")).unwrap();
    // The flags kdtui passes: the string literals of `reference_child`.
    let body = &source[source.find("fn reference_child").unwrap()..source.find("fn one_json_line").unwrap()];
    let flags: Vec<&str> = body.split('"').filter(|s| s.starts_with("--") && s.len() > 2 && !s.contains(' ')).collect();
    assert!(flags.len() >= 10, "found only {flags:?}");
    for flag in flags {
        assert!(text.contains(&format!("\"{flag}\"")), "the reference takes no {flag}");
    }
}

/// And it must be a Python program (where python3 is: build.rs looks).
#[test]
#[cfg_attr(kdtui_no_python3, ignore = "python3 is not installed (apt-get install python3)")]
fn reference_script_is_valid_python() {
    let (script, _) = reference_script();
    let out = std::process::Command::new("python3")
        .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
        .arg(&script)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A learning rate that makes the benchmark's training diverge is a
/// one-line error naming it (it was a panic in the measuring child).
#[test]
fn a_diverging_learning_rate_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "config.toml", &TINY.replace("[teacher]\nepochs = 2", "[teacher]\nepochs = 2\nlearning_rate = 1e30"));
    let out = kdtui(dir.path())
        .args(["bench", "--device", "cpu", "--seconds", "0.3", "--rounds", "1", "--threads", "2", "--no-reference"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the teacher's benchmark training diverged") && stderr.contains("lower it in the config"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().filter(|l| l.starts_with("kdtui:")).count(), 1, "{stderr}");
}
