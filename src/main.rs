use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use kdtui::config::Config;
use kdtui::device::{self, DeviceChoice};
use kdtui::results::Results;
use kdtui::train::plan;
use kdtui::train::runner::PlanInput;

/// Distil a float CNN teacher into a quantized student and watch the study live.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Run the plan headless: one line per epoch, results files as runs finish.
    /// Without it kdtui opens the interactive monitor.
    #[arg(long)]
    batch: bool,
    /// Config file.
    #[arg(long, default_value = "config.toml")]
    config: PathBuf,
    /// Results directory (default: [plan] out from the config).
    #[arg(long)]
    out: Option<PathBuf>,
    /// cpu, cuda, cuda:N or auto (CUDA when this build has it and a GPU answers).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Run only these runs (comma-separated ids or prefixes: soft, soft-T5, baseline, ...).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Retrain the teacher even when a checkpoint for this config exists.
    #[arg(long)]
    fresh: bool,
}

/// Usage and config errors exit with 2, everything else with 1.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: error.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("kdtui: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let config = Config::load(&cli.config).map_err(usage)?;
    let choice: DeviceChoice = cli.device.parse().map_err(usage)?;
    let selectors = if cli.only.is_empty() { config.plan.only.clone() } else { cli.only.clone() };
    let runs = plan::select(&config, &selectors).map_err(usage)?;
    if !cli.batch {
        // Before loading data or starting anything: a pipe gets one clear line.
        kdtui::tui::check_terminal().map_err(usage)?;
    }
    let resolved = device::resolve(choice).map_err(usage)?;
    let out = cli.out.clone().unwrap_or_else(|| config.plan.out.clone());
    let data = kdtui::data::load(&config.data).map_err(|e| Failure { code: 1, error: e.into() })?;
    let results = Results {
        plan: config.plan.name.clone(),
        data: data.description.clone(),
        test_images: data.test.len(),
        device: resolved.describe(),
        config: std::fs::read_to_string(&cli.config).unwrap_or_else(|_| config.to_toml()),
        ..Results::default()
    };
    let input = PlanInput {
        config,
        runs,
        data,
        device_name: String::new(),
        fresh: cli.fresh,
    };
    let trainer = device::spawn(resolved, input);
    let failed = |error| Failure { code: 1, error };
    if cli.batch {
        kdtui::batch::run(trainer, results, &out)
            .with_context(|| format!("plan in {}", cli.config.display()))
            .map_err(failed)?;
    } else {
        let results = kdtui::tui::run(trainer, results, &out).map_err(|e| failed(e.into()))?;
        let done = results.runs.len();
        println!("{done} runs recorded; results in {}", out.display());
    }
    Ok(())
}
