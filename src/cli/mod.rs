//! The command line: the arguments (clap), the study session they start
//! (`session`) and the subcommands (`commands`, `slurm`). The top of the
//! layering: it may use every other part, and nothing uses it but `main`.
//!
//! Exit status: 0 when the plan finished or the user stopped it (q or ctrl-c
//! in the monitor, ctrl-c, SIGTERM or SIGHUP in `--batch`: the run under way
//! saved its checkpoint and the same command continues); 2 for usage and
//! config errors; 1 for anything else (bad data, a failed run, a directory
//! that cannot be written), always with a one-line reason on stderr.

mod commands;
mod session;
pub mod slurm;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::engine::bench;
use crate::study::plan::Shard;

/// Distil a float CNN teacher into a quantized student and watch the study live.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Run the plan headless: one line per epoch, results files as runs finish.
    /// Without it kdtui opens the interactive monitor.
    #[arg(long)]
    pub batch: bool,
    /// Config file.
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
    /// Results directory (default: [plan] out from the config).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// cpu, cuda, cuda:N or auto (CUDA when this build has it and a GPU answers).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Run only these runs (comma-separated ids or prefixes: soft, soft-T5, baseline, ...).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Start over: remove the checkpoints of the selected runs (finished ones
    /// too) and move earlier results aside. The interactive session asks first.
    /// Without it kdtui continues where an earlier session of the same config
    /// stopped.
    #[arg(long)]
    pub fresh: bool,
    /// Run only shard I of N of the plan's student runs (I from 0; run k of
    /// the plan, teacher excluded, belongs to shard k mod N). The teacher must
    /// have finished (`--only teacher`). For Slurm arrays: see `kdtui slurm`.
    #[arg(long, value_name = "I/N", requires = "batch", conflicts_with = "fresh")]
    pub shard: Option<Shard>,
}

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Measure training and inference throughput and peak memory of the
    /// teacher and the student, beside the same network in PyTorch.
    Bench(BenchArgs),
    /// Rebuild report.md and the figures of a results directory from its
    /// results.json, without training.
    Report(ReportArgs),
    /// Write a run's model file: a student with its weights packed at their
    /// bit width, or the float teacher (safetensors; README, "The packed model file").
    Export(ExportArgs),
    /// Test accuracy of a model file (kdtui export) or a checkpoint, on the
    /// whole test set.
    Eval(EvalArgs),
    /// Write sbatch scripts that run the plan on a Slurm cluster: a teacher
    /// job, then a job array of shards that waits for it.
    Slurm(SlurmArgs),
    /// Follow a study that runs elsewhere (Slurm shards, another session) or
    /// browse a finished one: the monitor over a results directory, read-only.
    Watch(WatchArgs),
    /// What this machine offers kdtui: the CPU kernels, and each piece a
    /// CUDA run needs (driver, device, NVRTC, headers), checked in order.
    /// Exits 0 when `--device` would work, 2 when not.
    Doctor(DoctorArgs),
}

#[derive(clap::Args, Debug)]
pub struct SlurmArgs {
    /// Config file of the plan.
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
    /// Results directory (default: [plan] out from the config).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Tasks in the students' job array (default: one per student run).
    #[arg(long)]
    pub array_size: Option<usize>,
    /// cpu, or cuda: one GPU per job (--gres=gpu:1).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Folder for the scripts and the jobs' logs.
    #[arg(long, default_value = "slurm")]
    pub dir: PathBuf,
    /// Options for both jobs' #SBATCH lines, after `--`:
    /// `kdtui slurm -- --partition=gpu --time=2:00:00`.
    #[arg(last = true, allow_hyphen_values = true)]
    pub sbatch: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// Results directory of the study.
    #[arg(default_value = "results")]
    pub dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Results directory (holds results.json).
    #[arg(default_value = "results")]
    pub dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Run id: teacher, baseline-s1, soft-T5-s1, ...
    pub run: String,
    /// Config file of the plan the run belongs to (finds its checkpoint).
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
    /// Output file (default: <[plan] out>/models/<run>.safetensors).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// The device to check: cuda, cuda:N or cpu.
    #[arg(long, default_value = "cuda")]
    pub device: String,
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A model file (.safetensors from kdtui export or <results>/models/) or
    /// a checkpoint (<checkpoints>/<plan>/<run>/checkpoint.bin).
    pub file: PathBuf,
    /// Config file: the data to test on and, for a checkpoint, its network.
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
    /// Test data instead of the config's [data]: `synthetic`, or a directory
    /// with SVHN's test_32x32.mat or IDX t10k files.
    #[arg(long)]
    pub data: Option<String>,
    /// The teacher's model file or checkpoint: also print the agreement with
    /// it (top-1, overall and on its errors) and KL(teacher || model) at T = 1.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Config file (model sizes, bits, batch size, learning rates).
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
    /// cpu, cuda, cuda:N or auto; the reference runs on the same kind.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Threads for both sides on the CPU (default: the cores this process may use).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Least seconds each figure is measured for, per round.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Rounds of measurements, alternating kdtui and PyTorch; each figure
    /// reported is the median over the rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Python that has torch, for the reference (README: "Benchmark").
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Measure kdtui only.
    #[arg(long)]
    pub no_reference: bool,
    /// Also run the config's whole plan end to end (in a scratch directory) and time it.
    #[arg(long)]
    pub plan: bool,
    /// Measure one model in this process and print it as JSON (what the
    /// benchmark runs in its child processes).
    #[arg(long, hide = true)]
    pub measure: Option<bench::Model>,
}

/// How a command failed: its exit status and the reason.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

/// A usage or config error: exit status 2.
fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 2, error: error.into() }
}

/// Any other failure: exit status 1.
fn failed(error: impl Into<anyhow::Error>) -> Failure {
    Failure { code: 1, error: error.into() }
}

/// Parses the command line, runs it, and turns the outcome into the exit
/// status, with a one-line reason on stderr when it failed.
pub fn main() -> ExitCode {
    crate::engine::logger::install();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("kdtui: {}", message(&f.error));
            ExitCode::from(f.code)
        }
    }
}

/// The error and its causes on one line, each cause once: most of kdtui's
/// errors already say their cause, and anyhow's `{:#}` would repeat it.
fn message(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line = format!("{line}: {cause}");
        }
    }
    // Several layers report a full disk (the trainer's checkpoints, the
    // results writer), some as text: the OS's words are what they share.
    if ["No space left on device", "Disk quota exceeded"].iter().any(|full| line.contains(full)) {
        line.push_str("; everything finished is kept: free some space and run the same command again to continue");
    }
    line
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Some(Command::Bench(args)) => commands::bench(args),
        Some(Command::Report(args)) => commands::report(args),
        Some(Command::Export(args)) => commands::export(args),
        Some(Command::Eval(args)) => commands::eval(args),
        Some(Command::Slurm(args)) => slurm::run(args),
        Some(Command::Watch(args)) => commands::watch(args),
        Some(Command::Doctor(args)) => commands::doctor(args),
        None => session::study(cli),
    }
}
