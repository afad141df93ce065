//! Every kind of bad input a user can hand kdtui, kept as files under
//! `tests/bad_input/`: broken configs (`config/*.toml`) and broken data sets
//! (`data/<case>/`, made by `make_data.py`). Each file says, in `# expect:`
//! lines, what its one-line message must contain.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

fn cases(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input").join(folder);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    assert!(!paths.is_empty(), "no cases in {}", dir.display());
    paths
}

fn directives(text: &str, name: &str) -> Vec<String> {
    let prefix = format!("# {name}: ");
    text.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_string).collect()
}

fn kdtui(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kdtui")).args(args).current_dir(cwd).output().unwrap()
}

/// One readable line on stderr holding every expected piece; no panic, no
/// backtrace, nothing written.
fn check(case: &str, out: &Output, code: i32, expect: &[String], cwd: &Path) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{case}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{case}: not one line:\n{stderr}");
    for e in expect {
        assert!(stderr.contains(e.as_str()), "{case}: expected {e:?} in\n{stderr}");
    }
    for noise in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!stderr.contains(noise), "{case}: {stderr}");
    }
    assert!(!cwd.join("results").exists() && !cwd.join("checkpoints").exists(), "{case}: wrote files");
}

#[test]
fn every_broken_config_is_one_line_naming_file_and_key_with_exit_2() {
    let cwd = tempfile::tempdir().unwrap();
    for path in cases("config") {
        let text = std::fs::read_to_string(&path).unwrap();
        let case = path.file_name().unwrap().to_string_lossy().to_string();
        let mut expect = directives(&text, "expect");
        assert!(!expect.is_empty(), "{case} has no `# expect:` line");
        expect.push(case.clone());
        let out = kdtui(cwd.path(), &["--batch", "--device", "cpu", "--config", path.to_str().unwrap()]);
        check(&case, &out, 2, &expect, cwd.path());
    }
    let out = kdtui(cwd.path(), &["--batch", "--config", "nope.toml"]);
    check("missing config", &out, 2, &["cannot read config file nope.toml".into()], cwd.path());
}

#[test]
fn every_broken_data_set_is_one_line_naming_the_file_with_exit_1() {
    let model = common::TINY.replace("[data]\ntrain_size = 192\ntest_size = 64\n", "");
    for case_dir in cases("data") {
        let cwd = tempfile::tempdir().unwrap();
        let case = case_dir.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(case_dir.join("case.toml")).unwrap();
        let dir = match directives(&text, "dir").first() {
            Some(sub) => case_dir.join(sub),
            None => case_dir.clone(),
        };
        // case.toml ends inside its [data] section: `dir` joins it.
        let config = format!("{model}\n{text}dir = {:?}\n", dir.display().to_string());
        common::write(cwd.path(), "config.toml", &config);
        let out = kdtui(cwd.path(), &["--batch", "--device", "cpu"]);
        check(&case, &out, 1, &directives(&text, "expect"), cwd.path());
    }
}

#[test]
fn bad_command_lines_are_refused_with_exit_2() {
    let cwd = tempfile::tempdir().unwrap();
    common::write(cwd.path(), "config.toml", common::TINY);
    let cuda = if cfg!(feature = "cuda") { "no usable CUDA device" } else { "--features cuda" };
    let cases: [(&[&str], &str); 4] = [
        (&["--bacth"], "--batch"),
        (&["--batch", "--device", "tpu"], "unknown device \"tpu\": expected cpu, cuda, cuda:N, wgpu, wgpu:N or auto"),
        // No machine has a 100th GPU: the same answer on a GPU host as on CI.
        (&["--batch", "--device", "cuda:99"], cuda),
        (&["--batch", "--only", "sotf-T5"], "--only [\"sotf-T5\"] names no run of the plan"),
    ];
    for (args, expect) in cases {
        let out = kdtui(cwd.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!cwd.path().join("results").exists(), "{args:?} wrote results");
    }
}
