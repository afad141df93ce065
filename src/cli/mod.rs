//! The command line: the arguments (`args`, clap), the study session they
//! start (`study`), the subcommands (`commands`, `bench`, `slurm`) and how
//! a command fails (`failure`: exit status and one-line reason). The top of the
//! layering: it may use every other part, and nothing uses it but `main`.
//!
//! Exit status: 0 when the plan finished or the user stopped it (q or ctrl-c
//! in the monitor, ctrl-c, SIGTERM or SIGHUP in `--batch`: the run under way
//! saved its checkpoint and the same command continues); 2 for usage and
//! config errors; 1 for anything else (bad data, a failed run, a directory
//! that cannot be written), always with a one-line reason on stderr.

pub mod args;
pub mod bench;
mod commands;
mod data;
mod failure;
mod int_layers;
pub mod slurm;
mod study;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use failure::Failure;

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
        Some(Command::Data(command)) => data::run(command),
        None => study::study(cli),
    }
}
