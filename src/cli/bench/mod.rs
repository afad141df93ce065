//! `kdtui bench`: each figure measured in a child process (`kdtui bench
//! --measure ...`, `engine::bench::measure`) so that its peak memory is its
//! own; the PyTorch reference (`benches/reference/torch_bench.py`, compiled
//! in) runs the same way, one model at a time, alternating with kdtui so
//! both see the same machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::engine::bench::{
    bench_images, peak_gflops, peak_int_macs, MeasureError, Measurement, Model, Timing, INFER_BATCH, STUDENT_TEMPERATURE,
};
use crate::outputs::stats::median;
use crate::study::config::Config;
use crate::study::Loss;

mod table;
pub use table::{describe, render};

/// The PyTorch reference, run as `python - <args>` with this on stdin.
pub const REFERENCE_SCRIPT: &str = include_str!("../../../benches/reference/torch_bench.py");

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start {what}: {source}")]
    Spawn { what: String, source: std::io::Error },
    #[error("{what} failed ({status}): {stderr}")]
    Failed { what: String, status: String, stderr: String },
    #[error("{what} printed no measurement (expected one JSON line, got {got:?})")]
    Garbled { what: String, got: String },
    #[error("the plan run failed ({0}); its output is above")]
    Plan(String),
    #[error("cannot write {path}: {source}")]
    Scratch { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Measure(#[from] MeasureError),
}

/// What `kdtui bench` was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub config_path: PathBuf,
    /// The device the parent resolved (`cpu`, `cuda:N`, `wgpu:N`), passed on to the children.
    pub device: String,
    pub threads: usize,
    pub timing: Timing,
    /// The models measured, in this order.
    pub models: Vec<Model>,
    /// Rounds, each measuring every model on every side in turn; the report
    /// gives each figure's median, so a noisy moment on a shared machine
    /// does not decide a ratio.
    pub rounds: usize,
    /// Python with torch for the reference; None skips it.
    pub python: Option<String>,
    /// Also the reference's compiled variant (torch.compile, channels_last).
    pub compiled: bool,
    /// Also time the whole plan of the config, end to end.
    pub plan: bool,
}

/// One model's row: kdtui's figures and the reference's, eager and
/// compiled, where they ran.
#[derive(Debug, Clone)]
pub struct Row {
    pub model: Model,
    pub kdtui: Measurement,
    pub reference: Option<Measurement>,
    pub compiled: Option<Measurement>,
}

/// The whole report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Why the reference did not run, when it did not.
    pub reference_skipped: Option<String>,
    /// Why its compiled variant stopped, when it failed (no C++ compiler for
    /// inductor, say): eager's and kdtui's figures stand without it.
    pub compiled_failed: Option<String>,
    pub plan_seconds: Option<f64>,
    /// The matrix-product limit training is compared with (CPU only).
    pub peak: Option<Peak>,
}

/// This machine's fp32 gemm throughput on `threads` threads
/// (`kernels::cpu::gemm_peak_gflops`), and the training work of each model.
#[derive(Debug, Clone)]
pub struct Peak {
    pub gflops: f64,
    /// Training FLOP per image of the teacher and the student
    /// (`CnnConfig::training_flops`): the teacher's, then the student's.
    pub training_flops: [u64; 2],
    /// The integer kernel's multiply-adds per second on `threads` threads
    /// (`integer::dot::peak_macs_per_sec`), the kernel, and the student's
    /// integer multiply-adds per image.
    pub int: Option<(f64, &'static str, u64)>,
}

/// Runs the measurements in child processes and, when asked, the whole plan.
/// `progress` gets a line as each step starts.
pub fn run(request: &Request, config: &Config, mut progress: impl FnMut(&str)) -> Result<Report, BenchError> {
    let exe = std::env::current_exe().map_err(|source| BenchError::Spawn { what: "kdtui itself".into(), source })?;
    let mut report = Report::default();
    let python = match &request.python {
        // PyTorch has no Vulkan, Metal or DX12 backend to run beside it.
        Some(_) if request.device.starts_with("wgpu") => {
            report.reference_skipped = Some("PyTorch has no wgpu backend to compare with".into());
            None
        }
        Some(python) => match torch_version(python) {
            Ok(_) => Some(python.clone()),
            Err(why) => {
                report.reference_skipped = Some(why);
                None
            }
        },
        None => {
            report.reference_skipped = Some("--no-reference".into());
            None
        }
    };
    let models = &request.models;
    if request.device == "cpu" {
        progress("measuring this machine's matrix-product peak...");
        let student = Model::Student.shape(config);
        let int = if student.precision.is_float() {
            None
        } else {
            let (macs, kernel) = peak_int_macs(request.threads, 3.0)?;
            Some((macs, kernel, student.integer_multiply_adds()))
        };
        report.peak = Some(Peak {
            gflops: peak_gflops(request.threads, 3.0)?,
            training_flops: [Model::Teacher, Model::Student].map(|m| m.shape(config).training_flops()),
            int,
        });
    }
    let mut ours: Vec<Vec<Measurement>> = vec![Vec::new(); models.len()];
    let mut eager: Vec<Vec<Measurement>> = vec![Vec::new(); models.len()];
    let mut compiled: Vec<Vec<Measurement>> = vec![Vec::new(); models.len()];
    for round in 1..=request.rounds {
        for (i, &model) in models.iter().enumerate() {
            let what = format!("round {round}/{}: {}", request.rounds, model.name());
            progress(&format!("{what}, kdtui ({:.0} s per figure)...", request.timing.seconds));
            ours[i].push(measure_child(&exe, request, model)?);
            if let Some(python) = &python {
                progress(&format!("{what}, PyTorch eager..."));
                eager[i].push(reference_child(python, request, config, model, false)?);
                if request.compiled && report.compiled_failed.is_none() {
                    progress(&format!("{what}, PyTorch compiled (torch.compile: the first time, a minute or more compiling)..."));
                    match reference_child(python, request, config, model, true) {
                        Ok(m) => compiled[i].push(m),
                        Err(e) => {
                            progress(&format!("PyTorch compiled left out: {e}"));
                            report.compiled_failed = Some(e.to_string());
                            compiled.iter_mut().for_each(Vec::clear);
                        }
                    }
                }
            }
        }
    }
    for (((ours, eager), compiled), &model) in ours.iter().zip(&eager).zip(&compiled).zip(models) {
        let of = |rounds: &[Measurement]| (!rounds.is_empty()).then(|| medians(rounds));
        report.rows.push(Row { model, kdtui: medians(ours), reference: of(eager), compiled: of(compiled) });
    }
    if request.plan {
        progress("running the whole plan of the config (--plan)...");
        report.plan_seconds = Some(time_plan(&exe, request, config)?);
    }
    Ok(report)
}

/// Each throughput's median over the rounds, the largest peak memory.
fn medians(rounds: &[Measurement]) -> Measurement {
    // An optional figure is none where no round has it.
    let some = |f: fn(&Measurement) -> Option<f64>| median(rounds.iter().filter_map(f).collect());
    let mid = |f: fn(&Measurement) -> f64| median(rounds.iter().map(f).collect()).expect("at least one round");
    Measurement {
        train_images_per_sec: mid(|m| m.train_images_per_sec),
        infer_images_per_sec: mid(|m| m.infer_images_per_sec),
        infer_batch1_images_per_sec: some(|m| m.infer_batch1_images_per_sec),
        int_infer_images_per_sec: some(|m| m.int_infer_images_per_sec),
        int_infer_batch1_images_per_sec: some(|m| m.int_infer_batch1_images_per_sec),
        int_agreement: some(|m| m.int_agreement),
        int_serving: rounds.iter().filter_map(|m| m.int_serving).max_by_key(|s| s.peak_bytes),
        peak_rss_bytes: rounds.iter().map(|m| m.peak_rss_bytes).max().unwrap_or(0),
        peak_device_bytes: rounds.iter().filter_map(|m| m.peak_device_bytes).max(),
        // The longest: the first round's, before inductor's cache had the graphs.
        compile_seconds: rounds.iter().filter_map(|m| m.compile_seconds).reduce(f64::max),
        ..rounds[0].clone()
    }
}

/// Whether `python` imports torch; the reason in a sentence when not.
pub fn torch_version(python: &str) -> Result<String, String> {
    let out = Command::new(python).args(["-c", "import torch; print(torch.__version__)"]).stdin(Stdio::null()).output();
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(_) => Err(format!("`{python}` cannot import torch")),
        Err(e) => Err(format!("cannot run `{python}`: {e}")),
    }
}

fn measure_child(exe: &Path, request: &Request, model: Model) -> Result<Measurement, BenchError> {
    let mut cmd = Command::new(exe);
    cmd.arg("bench")
        .arg("--measure")
        .arg(model.name())
        .arg("--config")
        .arg(&request.config_path)
        .arg("--device")
        .arg(&request.device)
        .arg("--seconds")
        .arg(request.timing.seconds.to_string())
        .env("RAYON_NUM_THREADS", request.threads.to_string());
    one_json_line(cmd, &format!("kdtui's {} measurement", model.name()), None)
}

fn reference_child(python: &str, request: &Request, config: &Config, model: Model, compiled: bool) -> Result<Measurement, BenchError> {
    let shape = model.shape(config);
    let widths = shape.widths.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(",");
    let device = if request.device.starts_with("cuda") { "cuda" } else { "cpu" };
    let s = &config.student;
    let mut cmd = Command::new(python);
    cmd.arg("-")
        .args(["--model", model.name(), "--device", device])
        .args(["--threads", &request.threads.to_string()])
        .args(["--widths", &widths, "--hidden", &shape.hidden.to_string()])
        .args(["--w-bits", &s.w_bits.to_string(), "--a-bits", &s.a_bits.to_string()])
        .args(["--first-last-bits", &s.first_last_bits.to_string(), "--a-range", &s.a_range.to_string()])
        .args(["--temperature", &STUDENT_TEMPERATURE.to_string()])
        .args(["--soft-weight", &config.soft_weight(Loss::HardSoft, STUDENT_TEMPERATURE).to_string()])
        .args(["--batch-size", &config.train.batch_size.to_string()])
        .args(["--eval-batch-size", &INFER_BATCH.to_string()])
        .args(["--lr", &model.learning_rate(config).to_string(), "--weight-decay", &config.train.weight_decay.to_string()])
        .args(["--weight-decay-mode", config.train.weight_decay_mode.name(), "--adam-epsilon", &config.train.adam_epsilon.to_string()])
        .args(["--train-images", &bench_images(config).to_string()])
        .args(["--seconds", &request.timing.seconds.to_string()])
        .args(compiled.then_some("--compiled"))
        // Both sides get the same threads: torch reads these besides set_num_threads.
        .env("OMP_NUM_THREADS", request.threads.to_string())
        .env("MKL_NUM_THREADS", request.threads.to_string());
    let variant = if compiled { "compiled" } else { "eager" };
    one_json_line(cmd, &format!("the PyTorch {} reference ({variant})", model.name()), Some(REFERENCE_SCRIPT))
}

/// Runs `cmd` and reads the last line of its stdout as a Measurement.
fn one_json_line(mut cmd: Command, what: &str, stdin: Option<&str>) -> Result<Measurement, BenchError> {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| BenchError::Spawn { what: what.into(), source })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A child that dies early closes the pipe; its exit status says why.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| BenchError::Spawn { what: what.into(), source })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(BenchError::Failed {
            what: what.into(),
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        });
    }
    let last = stdout.lines().last().unwrap_or("").to_string();
    serde_json::from_str(&last).map_err(|_| BenchError::Garbled { what: what.into(), got: last.chars().take(200).collect() })
}

/// Runs the config's whole plan, fresh, in a scratch directory (its own
/// results and checkpoints, so the user's are untouched); wall seconds.
fn time_plan(exe: &Path, request: &Request, config: &Config) -> Result<f64, BenchError> {
    let scratch = std::env::temp_dir().join(format!("kdtui-bench-plan-{}", std::process::id()));
    let mut plan = config.clone();
    plan.plan.out = scratch.join("results");
    plan.plan.checkpoints = scratch.join("checkpoints");
    if plan.data.dir.is_relative() {
        plan.data.dir = std::env::current_dir().unwrap_or_default().join(&plan.data.dir);
    }
    let config_path = scratch.join("config.toml");
    std::fs::create_dir_all(&scratch)
        .and_then(|_| std::fs::write(&config_path, plan.to_toml()))
        .map_err(|source| BenchError::Scratch { path: config_path.clone(), source })?;
    let started = Instant::now();
    let status = Command::new(exe)
        .arg("--batch")
        .arg("--config")
        .arg(&config_path)
        .arg("--device")
        .arg(&request.device)
        .env("RAYON_NUM_THREADS", request.threads.to_string())
        .status();
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&scratch);
    match status {
        Ok(s) if s.success() => Ok(seconds),
        Ok(s) => Err(BenchError::Plan(s.to_string())),
        Err(source) => Err(BenchError::Spawn { what: "the plan run".into(), source }),
    }
}
