use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use kdtui::config::Config;
use kdtui::device::{self, DeviceChoice};
use kdtui::atomic_file;
use kdtui::results::{self, Results};
use kdtui::train::checkpoint::RunStore;
use kdtui::train::RunSpec;
use kdtui::train::plan;
use kdtui::train::runner::PlanInput;

/// Distil a float CNN teacher into a quantized student and watch the study live.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Start over: remove the checkpoints of the selected runs (finished ones
    /// too) and move earlier results aside. The interactive session asks first.
    /// Without it kdtui continues where an earlier session of the same config
    /// stopped.
    #[arg(long)]
    fresh: bool,
    /// Run only shard I of N of the plan's student runs (I from 0; run k of
    /// the plan, teacher excluded, belongs to shard k mod N). The teacher must
    /// have finished (`--only teacher`). For Slurm arrays: see `kdtui slurm`.
    #[arg(long, value_name = "I/N", requires = "batch", conflicts_with = "fresh")]
    shard: Option<plan::Shard>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
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
}

#[derive(clap::Args, Debug)]
struct SlurmArgs {
    /// Config file of the plan.
    #[arg(long, default_value = "config.toml")]
    config: PathBuf,
    /// Results directory (default: [plan] out from the config).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tasks in the students' job array (default: one per student run).
    #[arg(long)]
    array_size: Option<usize>,
    /// cpu, or cuda: one GPU per job (--gres=gpu:1).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Folder for the scripts and the jobs' logs.
    #[arg(long, default_value = "slurm")]
    dir: PathBuf,
    /// Options for both jobs' #SBATCH lines, after `--`:
    /// `kdtui slurm -- --partition=gpu --time=2:00:00`.
    #[arg(last = true, allow_hyphen_values = true)]
    sbatch: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct WatchArgs {
    /// Results directory of the study.
    #[arg(default_value = "results")]
    dir: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ReportArgs {
    /// Results directory (holds results.json).
    #[arg(default_value = "results")]
    dir: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ExportArgs {
    /// Run id: teacher, baseline-s1, soft-T5-s1, ...
    run: String,
    /// Config file of the plan the run belongs to (finds its checkpoint).
    #[arg(long, default_value = "config.toml")]
    config: PathBuf,
    /// Output file (default: <[plan] out>/models/<run>.safetensors).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct EvalArgs {
    /// A model file (.safetensors from kdtui export or <results>/models/) or
    /// a checkpoint (<checkpoints>/<plan>/<run>/checkpoint.bin).
    file: PathBuf,
    /// Config file: the data to test on and, for a checkpoint, its network.
    #[arg(long, default_value = "config.toml")]
    config: PathBuf,
    /// Test data instead of the config's [data]: `synthetic`, or a directory
    /// with SVHN's test_32x32.mat or IDX t10k files.
    #[arg(long)]
    data: Option<String>,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Config file (model sizes, bits, batch size, learning rates).
    #[arg(long, default_value = "config.toml")]
    config: PathBuf,
    /// cpu, cuda, cuda:N or auto; the reference runs on the same kind.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Threads for both sides on the CPU (default: the cores this process may use).
    #[arg(long)]
    threads: Option<usize>,
    /// Least seconds each figure is measured for, per round.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Rounds of measurements, alternating kdtui and PyTorch; each figure
    /// reported is the median over the rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Python that has torch, for the reference (README: "Benchmark").
    #[arg(long, default_value = "python3")]
    python: String,
    /// Measure kdtui only.
    #[arg(long)]
    no_reference: bool,
    /// Also run the config's whole plan end to end (in a scratch directory) and time it.
    #[arg(long)]
    plan: bool,
    /// Measure one model in this process and print it as JSON (what the
    /// benchmark runs in its child processes).
    #[arg(long, hide = true)]
    measure: Option<kdtui::bench::Model>,
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
    line
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Some(Command::Bench(args)) => return bench(args),
        Some(Command::Report(args)) => return report(args),
        Some(Command::Export(args)) => return export(args),
        Some(Command::Eval(args)) => return eval(args),
        Some(Command::Slurm(args)) => return slurm(args),
        Some(Command::Watch(args)) => return watch(args),
        None => {}
    }
    let config = Config::load(&cli.config).map_err(usage)?;
    let choice: DeviceChoice = cli.device.parse().map_err(usage)?;
    let selectors = if cli.only.is_empty() { config.plan.only.clone() } else { cli.only.clone() };
    let mut runs = plan::select(&config, &selectors).map_err(usage)?;
    let planned = plan::full_plan(&config);
    let mut notes = vec![];
    if let Some(shard) = cli.shard {
        let members = plan::shard_members(&config, shard);
        runs.retain(|r| r.kind == kdtui::train::RunKind::Teacher || members.contains(&r.run_id));
        let students = planned.len() - 1;
        notes.push(if members.is_empty() {
            format!("shard {shard}: no runs (the plan has {students} student runs)")
        } else {
            format!("shard {shard}: {} of the plan's {students} student runs: {}", members.len(), members.join(", "))
        });
    }
    if !cli.batch {
        // Before loading data or starting anything: a pipe gets one clear line.
        kdtui::tui::check_terminal().map_err(usage)?;
    }
    let resolved = device::resolve(choice).map_err(usage)?;
    let out = cli.out.clone().unwrap_or_else(|| config.plan.out.clone());
    let failed = |error| Failure { code: 1, error };
    let data = kdtui::data::load(&config.data).map_err(|e| failed(e.into()))?;
    if cli.fresh && !cli.batch && !confirm_fresh(&config, &runs, &out).map_err(|e| failed(e.into()))? {
        println!("nothing removed; run without --fresh to continue where the last session stopped");
        return Ok(());
    }
    let checkpoints = config.plan.checkpoints.join(&config.plan.name);
    atomic_file::check_writable(&checkpoints)
        .map_err(|e| failed(anyhow::anyhow!("checkpoint directory {} is not writable: {}", e.path.display(), e.source)))?;
    let study_hash = config.study_hash();
    let opened = results::open(&out, &study_hash, cli.fresh).map_err(|e| failed(e.into()))?;
    let (runs_before, failures_before) = opened.previous.map(|p| (p.runs, p.failures)).unwrap_or_default();
    let mut results = Results {
        plan: config.plan.name.clone(),
        data: data.description.clone(),
        test_images: data.test.len(),
        device: resolved.describe(),
        config: std::fs::read_to_string(&cli.config).unwrap_or_else(|_| config.to_toml()),
        study_hash,
        planned,
        runs: runs_before,
        failures: failures_before,
        ..Results::default()
    };
    // At once, before any run: the directory then says which study it holds
    // (results.json's study hash), so what a session killed before its first
    // finished run leaves (TensorBoard files, say) is continued, not set aside.
    results.write(&out).map_err(|e| failed(e.into()))?;
    let stop = kdtui::signals::install().map_err(|e| failed(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    let input = PlanInput {
        config,
        runs,
        data,
        device_name: String::new(),
        fresh: cli.fresh,
        notes: opened.note.into_iter().chain(notes).collect(),
        models: Some(out.join(results::MODELS_DIR)),
        train_teacher: cli.shard.is_none(),
    };
    device::quiet_trainer_panics();
    let trainer = device::spawn(resolved, input);
    if cli.batch {
        kdtui::batch::run(trainer, results, &out, Some(stop))
            .with_context(|| format!("plan in {}", cli.config.display()))
            .map_err(failed)?;
    } else {
        let results = kdtui::tui::run(trainer, results, &out, Some(stop)).map_err(|e| failed(e.into()))?;
        let done = results.runs.len();
        let next = if results.stopped { "; run kdtui again to continue the plan" } else { "" };
        println!("{done} runs recorded; results in {} (report.md, figures/, models/, tensorboard/){next}", out.display());
    }
    Ok(())
}

/// `--fresh` in the interactive session: says what would be removed and asks.
/// True to go on (also when there is nothing to remove).
fn confirm_fresh(config: &Config, runs: &[RunSpec], out: &std::path::Path) -> std::io::Result<bool> {
    let stored = runs.iter().filter(|spec| RunStore::new(config, spec).dir.exists()).count();
    let has_results = out.join("results.json").exists();
    if stored == 0 && !has_results {
        return Ok(true);
    }
    let mut what = vec![];
    if stored > 0 {
        what.push(format!("remove the checkpoints of {stored} run(s) in {}", config.plan.checkpoints.join(&config.plan.name).display()));
    }
    if has_results {
        what.push(format!("move the results in {} aside", out.display()));
    }
    eprint!("kdtui: --fresh will {}. Start over? [y/N] ", what.join(" and "));
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn bench(args: BenchArgs) -> Result<(), Failure> {
    use kdtui::bench;
    let config = Config::load(&args.config).map_err(usage)?;
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        return Err(usage(anyhow::anyhow!("--seconds must be a positive number, got {}", args.seconds)));
    }
    if args.rounds == 0 {
        return Err(usage(anyhow::anyhow!("--rounds must be at least 1")));
    }
    if args.threads == Some(0) {
        return Err(usage(anyhow::anyhow!("--threads must be at least 1")));
    }
    let choice: DeviceChoice = args.device.parse().map_err(usage)?;
    let resolved = device::resolve(choice).map_err(usage)?;
    let timing = bench::Timing { seconds: args.seconds };
    if let Some(model) = args.measure {
        let measurement = device::measure(resolved, &config, model, timing);
        println!("{}", serde_json::to_string(&measurement).expect("a measurement serialises"));
        return Ok(());
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let request = bench::Request {
        config_path: args.config.clone(),
        // The children resolve the same device again; pass what this one found.
        device: match resolved {
            device::Resolved::Cpu => "cpu".into(),
            device::Resolved::Cuda(n) => format!("cuda:{n}"),
        },
        threads,
        timing,
        rounds: args.rounds,
        python: (!args.no_reference).then(|| args.python.clone()),
        plan: args.plan,
    };
    let report = bench::run(&request, &config, |line| eprintln!("{line}")).map_err(|e| Failure {
        code: 1,
        error: e.into(),
    })?;
    print!("{}\n{}", bench::describe(&report, &request, &config), bench::render(&report));
    Ok(())
}

fn report(args: ReportArgs) -> Result<(), Failure> {
    let json = args.dir.join("results.json");
    let text = std::fs::read(&json).map_err(|e| {
        usage(anyhow::anyhow!("cannot read {}: {e} (kdtui report takes a results directory that a plan wrote)", json.display()))
    })?;
    let results: Results = serde_json::from_slice(&text)
        .map_err(|e| Failure { code: 1, error: anyhow::anyhow!("{} is not a kdtui results file: {e}", json.display()) })?;
    let figures = kdtui::report::write(&results, &args.dir).map_err(|e| Failure { code: 1, error: e.into() })?;
    println!("{} and {figures} figures written ({} runs)", args.dir.join("report.md").display(), results.runs.len());
    Ok(())
}

fn export(args: ExportArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(usage)?;
    let output = args
        .output
        .unwrap_or_else(|| config.plan.out.join(results::MODELS_DIR).join(format!("{}.safetensors", args.run)));
    let exported = kdtui::export::export(&config, &args.config, &args.run, &output).map_err(|e| {
        let code = if matches!(e, kdtui::export::ExportError::UnknownRun { .. }) { 2 } else { 1 };
        Failure { code, error: e.into() }
    })?;
    if let Some(note) = exported.unfinished {
        eprintln!("kdtui: note: {note}");
    }
    println!("{} ({} bytes)", exported.path.display(), exported.bytes);
    Ok(())
}

fn slurm(args: SlurmArgs) -> Result<(), Failure> {
    use kdtui::slurm;
    let config = Config::load(&args.config).map_err(usage)?;
    let device: slurm::Accelerator = args.device.parse().map_err(usage)?;
    let students = plan::full_plan(&config).len() - 1;
    let cwd = std::env::current_dir().map_err(|e| Failure { code: 1, error: anyhow::anyhow!("current directory: {e}") })?;
    let absolute = |p: &std::path::Path| if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    let kdtui = std::env::current_exe().map_err(|e| Failure { code: 1, error: anyhow::anyhow!("cannot find this program's path: {e}") })?;
    let request = slurm::Request {
        kdtui,
        workdir: cwd.clone(),
        config: absolute(&args.config),
        out: absolute(&args.out.unwrap_or_else(|| config.plan.out.clone())),
        dir: absolute(&args.dir),
        plan: config.plan.name.clone(),
        device,
        array_size: args.array_size.unwrap_or(students),
        sbatch: args.sbatch,
    };
    slurm::check(&request, students).map_err(usage)?;
    let written = slurm::write(&request).map_err(|e| Failure { code: 1, error: e.into() })?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    println!(
        "plan {}: the teacher job, then {} array tasks for {students} student runs (run k goes to task k mod {}), device {}",
        config.plan.name,
        request.array_size,
        request.array_size,
        args.device
    );
    println!("submit: sh {}", request.dir.join("submit.sh").display());
    println!("follow: kdtui watch {}", request.out.display());
    Ok(())
}

fn watch(args: WatchArgs) -> Result<(), Failure> {
    let stop = kdtui::signals::install().map_err(|e| Failure { code: 1, error: anyhow::anyhow!("cannot install signal handlers: {e}") })?;
    kdtui::tui::watch(&args.dir, Some(stop)).map_err(|e| {
        let code = if matches!(e, kdtui::tui::TuiError::WatchNotATerminal(_) | kdtui::tui::TuiError::Watch(_)) { 2 } else { 1 };
        Failure { code, error: e.into() }
    })
}

fn eval(args: EvalArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(usage)?;
    let data = kdtui::export::data_config(&config, args.data.as_deref()).map_err(usage)?;
    let e = kdtui::export::eval(&args.file, &config, &args.config, &data).map_err(|e| Failure { code: 1, error: e.into() })?;
    println!("{}: {}", args.file.display(), e.model);
    println!("data: {}", e.data);
    println!(
        "test accuracy {:.2}% ({}/{} images), test loss {:.4}",
        100.0 * e.accuracy(),
        e.correct,
        e.images,
        e.loss
    );
    Ok(())
}
