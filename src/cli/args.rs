//! The command line's grammar: clap's structs for kdtui and its subcommands.

use std::path::PathBuf;

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
    /// cpu, cuda, cuda:N, wgpu, wgpu:N or auto: CUDA where a GPU answers,
    /// then a hardware wgpu adapter (Vulkan; Metal on macOS), then the CPU.
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
    /// bit width, or the float teacher (safetensors; docs/MODEL_FORMAT.md).
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
    /// What this machine offers kdtui: the CPU kernels, each piece a CUDA
    /// run needs (driver, device, NVRTC, headers) checked in order, and the
    /// wgpu (Vulkan; Metal on macOS) adapters. Exits 0 when `--device` would
    /// work, 2 when not.
    Doctor(DoctorArgs),
    /// Download a data set into [data] dir (`fetch`), or say what the data
    /// directory holds and what a config would train on (`check`).
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Download SVHN's files, or the four files of an MNIST-format set, into
    /// [data] dir (or --dir). Each file goes to <name>.part first, resumes
    /// from there after a cut or a stop, is checked (its MD5; an IDX file
    /// with no known sum, its header against its size) and only then takes
    /// its name; a file that fails its check is kept as <name>.bad. Files
    /// already there and checked are skipped. Proxies: HTTPS_PROXY,
    /// HTTP_PROXY, ALL_PROXY, NO_PROXY.
    Fetch(DataFetchArgs),
    /// What the data directory holds (each file the config's source reads,
    /// its size; SVHN files against the official MD5 sums), and what the
    /// config would train on. Exits 1 when the data cannot be read.
    Check(DataCheckArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum DataSet {
    /// SVHN's cropped digits: train_32x32.mat, test_32x32.mat (182 MB and 64 MB).
    Svhn,
    /// An MNIST-format set: {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz under --url.
    Idx,
}

#[derive(clap::Args, Debug)]
pub struct DataFetchArgs {
    /// Which set.
    pub set: DataSet,
    /// Also SVHN's extra_32x32.mat (1.3 GB, 531,131 images: the split that
    /// DoReFa-Net's SVHN results train on; `use_extra = true` reads it, and
    /// implies this flag).
    #[arg(long)]
    pub extra: bool,
    /// Directory to download into (default: [data] dir of the config).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Config whose [data] dir to download into (and whose `use_extra =
    /// true` implies --extra). Default: config.toml where there is one; with
    /// neither, the directory is data/.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The address the files are under: a mirror, or for idx the set's
    /// (required). svhn's default: http://ufldl.stanford.edu/housenumbers.
    #[arg(long, value_name = "BASE")]
    pub url: Option<String>,
    /// The MD5 a file must have, instead of the official one (a mirror of
    /// another version), or where none is known (idx). Repeatable.
    #[arg(long, value_name = "NAME=SUM")]
    pub md5: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct DataCheckArgs {
    /// Config file (default: config.toml where there is one).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory instead of the config's [data] dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
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
    /// The device to check: auto (everything, and what auto would take),
    /// cuda, cuda:N, wgpu, wgpu:N or cpu.
    #[arg(long, default_value = "auto")]
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
    /// How a quantized student runs: `int`, the integer engine (codes and
    /// integer sums; the default for students), or `float`, the fp32
    /// simulation training uses. On `int` the float engine runs too, and
    /// their agreement and speeds are printed.
    #[arg(long, value_enum)]
    pub engine: Option<crate::engine::export::Engine>,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Config file (model sizes, bits, batch size, learning rates).
    #[arg(long, default_value = "config.toml")]
    pub config: PathBuf,
    /// cpu, cuda, cuda:N, wgpu, wgpu:N or auto; the reference runs on the
    /// same kind (none for wgpu: PyTorch has no such backend).
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
    /// PyTorch eager only: leave out its compiled variant (torch.compile,
    /// which spends a minute or more compiling each model the first time).
    #[arg(long)]
    pub eager_only: bool,
    /// Measure this model only (teacher or student); both by default.
    #[arg(long, value_enum)]
    pub model: Option<bench::Model>,
    /// Also run the config's whole plan end to end (in a scratch directory) and time it.
    #[arg(long)]
    pub plan: bool,
    /// Instead: time each integer layer of the config's student in every
    /// form this CPU runs (byte kernels, bit-serial) at 1 to 4 bits, on one
    /// thread, and print a table (docs/INTEGER.md).
    #[arg(long)]
    pub int_layers: bool,
    /// Measure one model in this process and print it as JSON (what the
    /// benchmark runs in its child processes).
    #[arg(long, hide = true)]
    pub measure: Option<bench::Model>,
}
