//! The study on a real Slurm: `tests/slurm/one_node.sh` starts a one-node
//! cluster on localhost, runs a small plan through `kdtui slurm` (killing and
//! requeueing one array task mid-run) and compares the merged table with a
//! single-machine `--batch` run. See that script for what it checks.
//!
//! Opt-in: it needs Debian's `slurm-wlm` and `munge` installed and root (the
//! one-node slurmd starts jobs as their user), so `cargo test` lists it as
//! ignored. `.ci/run` installs both and runs it:
//!
//! ```sh
//! cargo test --release --test slurm -- --ignored
//! ```

use std::path::Path;
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
#[ignore = "needs Slurm (Debian's slurm-wlm, munge) and root; .ci/run installs them and runs it with --ignored"]
fn a_study_on_a_one_node_slurm_cluster_equals_a_single_machine_run() {
    let missing: Vec<&str> = ["munged", "slurmctld", "slurmd", "sbatch"].into_iter().filter(|t| !have(t)).collect();
    assert!(
        missing.is_empty(),
        "Slurm is not installed (missing {}): `apt-get install slurm-wlm munge`, as .ci/run does",
        missing.join(", ")
    );
    assert!(is_root(), "the one-node cluster's slurmd runs jobs as their user and must start as root");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm/one_node.sh");
    let out = Command::new("bash").arg(&script).arg(env!("CARGO_BIN_EXE_kdtui")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{} failed:\n{stdout}\n{stderr}", script.display());
    assert!(stdout.contains("merged table = single machine (6 runs)"), "{stdout}");
}
