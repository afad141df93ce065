//! The study on a real Slurm: `tests/slurm/one_node.sh` starts a one-node
//! cluster on localhost, runs a small plan through `kdtui slurm` (killing and
//! requeueing one array task mid-run) and compares the merged table with a
//! single-machine `--batch` run. See that script for what it checks.
//!
//! Slurm comes from Debian (`slurm-wlm`, `munge`). Where it is missing and
//! this test runs as root with apt-get (CI, this project's machines), the
//! test installs it, as `cargo test` must set up what it needs. Elsewhere it
//! fails saying how to install it; `KDTUI_SKIP_SLURM=1` skips it, loudly.

use std::path::Path;
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn apt_install() -> Result<(), String> {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if install() {
        return Ok(());
    }
    // A fresh machine may have no package lists yet.
    let updated = Command::new("apt-get").args(["update", "-q"]).status().is_ok_and(|s| s.success());
    if updated && install() {
        Ok(())
    } else {
        Err("apt-get install slurm-wlm munge failed".into())
    }
}

#[test]
fn a_study_on_a_one_node_slurm_cluster_equals_a_single_machine_run() {
    if std::env::var_os("KDTUI_SKIP_SLURM").is_some() {
        eprintln!("SKIPPED: KDTUI_SKIP_SLURM is set; the Slurm test did not run");
        return;
    }
    let needed = ["munged", "slurmctld", "slurmd", "sbatch"];
    if !needed.iter().all(|t| have(t)) {
        assert!(
            is_root() && have("apt-get"),
            "Slurm is not installed and this test cannot install it (needs root and apt-get): \
             install Debian's slurm-wlm and munge, or set KDTUI_SKIP_SLURM=1 to skip it"
        );
        apt_install().unwrap();
    }
    assert!(is_root(), "the one-node cluster's slurmd runs jobs as their user and must start as root");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/one_node.sh");
    let out = Command::new("bash").arg(&script).arg(env!("CARGO_BIN_EXE_kdtui")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{} failed:\n{stdout}\n{stderr}", script.display());
    assert!(stdout.contains("merged table = single machine (6 runs)"), "{stdout}");
}
