//! The subcommands other than the study session itself: `bench`, `report`,
//! `export`, `eval`, `watch` and `doctor` (`slurm` has its own file).

use anyhow::anyhow;

use super::args::{BenchArgs, DoctorArgs, EvalArgs, ExportArgs, ReportArgs, WatchArgs};
use super::bench;
use super::failure::{failed, stopping, usage, Failure};
use crate::engine::backend::{self, DeviceChoice};
use crate::engine::bench as engine_bench;
use crate::engine::export;
use crate::monitor::screen::{self as monitor, MonitorError};
use crate::outputs::directory::MODELS_DIR;
use crate::outputs::publish::write_report;
use crate::outputs::Results;
use crate::study::Config;
use crate::util::format::percent;
use crate::util::signals;

pub fn bench(args: BenchArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(usage)?;
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        return Err(usage(anyhow!("--seconds must be a positive number, got {}", args.seconds)));
    }
    if args.rounds == 0 {
        return Err(usage(anyhow!("--rounds must be at least 1")));
    }
    if args.threads == Some(0) {
        return Err(usage(anyhow!("--threads must be at least 1")));
    }
    if args.int_layers {
        eprintln!("timing each integer layer of the student in every form, at 6 pairs of bit widths...");
        print!("{}", super::int_layers::int_layers(&config, args.seconds / 50.0).map_err(failed)?);
        return Ok(());
    }
    let choice: DeviceChoice = args.device.parse().map_err(usage)?;
    if choice != DeviceChoice::Cpu {
        // The kernels a study of this config tuned and compiled, and the
        // other measuring processes (each model is measured in its own).
        if let Some(note) = backend::keep_kernel_caches_in(&config.plan.checkpoints) {
            eprintln!("kdtui: note: {note}");
        }
    }
    let resolved = backend::resolve(choice).map_err(usage)?;
    let timing = engine_bench::Timing { seconds: args.seconds };
    if let Some(model) = args.measure {
        let measurement = engine_bench::measure_on(resolved, &config, model, timing).map_err(failed)?;
        println!("{}", serde_json::to_string(&measurement).expect("a measurement serialises"));
        return Ok(());
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let request = bench::Request {
        config_path: args.config.clone(),
        // The children resolve the same device again; pass what this one found.
        device: resolved.flag(),
        threads,
        timing,
        models: args.model.map_or_else(|| vec![engine_bench::Model::Teacher, engine_bench::Model::Student], |m| vec![m]),
        rounds: args.rounds,
        python: (!args.no_reference).then(|| args.python.clone()),
        compiled: !args.eager_only,
        plan: args.plan,
    };
    let report = bench::run(&request, &config, |line| eprintln!("{line}")).map_err(failed)?;
    print!("{}\n{}", bench::describe(&report, &request, &config), bench::render(&report));
    Ok(())
}

pub fn doctor(args: DoctorArgs) -> Result<(), Failure> {
    let choice: DeviceChoice = args.device.parse().map_err(usage)?;
    println!(
        "CPU: {}, {} threads; kdtui's kernels run {} (the CPU has {})",
        engine_bench::cpu_name(),
        rayon::current_num_threads(),
        engine_bench::kernel_levels().0,
        engine_bench::kernel_levels().1
    );
    let cuda = match choice {
        DeviceChoice::Cuda(n) => Some(n),
        DeviceChoice::Auto => Some(0),
        _ => None,
    };
    if let Some(n) = cuda {
        println!("cuda:{n} needs, in order:");
        for (what, outcome) in backend::cuda_requirements(n) {
            match outcome {
                Ok(found) => println!("  ok       {what}: {found}"),
                Err(why) => println!("  missing  {what}: {why}"),
            }
        }
    }
    if let DeviceChoice::Wgpu(_) | DeviceChoice::Auto = choice {
        match backend::wgpu_adapters() {
            Ok(adapters) => {
                println!("wgpu adapters:");
                for (i, adapter) in adapters.iter().enumerate() {
                    let software = if adapter.is_software() { "  (software: only when asked for by name)" } else { "" };
                    println!("  wgpu:{i}   {}{software}", adapter.describe());
                }
            }
            Err(why) => println!("wgpu adapters: none ({why})"),
        }
    }
    let (resolved, notes) = backend::resolve_saying_why(choice).map_err(usage)?;
    for note in notes {
        println!("{note}");
    }
    match choice {
        DeviceChoice::Cpu => println!("--device cpu works"),
        DeviceChoice::Auto => println!("--device auto takes {}", resolved.describe()),
        _ => println!("--device {choice} works: {} (a test sum on it gave the right answer)", resolved.describe()),
    }
    Ok(())
}

pub fn report(args: ReportArgs) -> Result<(), Failure> {
    let json = args.dir.join(crate::outputs::directory::RESULTS_JSON);
    let text = std::fs::read(&json)
        .map_err(|e| usage(anyhow!("cannot read {}: {e} (kdtui report takes a results directory that a plan wrote)", json.display())))?;
    let results: Results =
        serde_json::from_slice(&text).map_err(|e| failed(anyhow!("{} is not a kdtui results file: {e}", json.display())))?;
    let figures = write_report(&results, &args.dir).map_err(failed)?;
    println!("{} and {figures} figures written ({} runs)", args.dir.join("report.md").display(), results.runs.len());
    Ok(())
}

pub fn export(args: ExportArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(usage)?;
    let output = args.output.unwrap_or_else(|| config.plan.out.join(MODELS_DIR).join(format!("{}.safetensors", args.run)));
    let exported = export::export(&config, &args.config, &args.run, &output).map_err(|e| {
        let code = if matches!(e, export::ExportError::UnknownRun { .. }) { 2 } else { 1 };
        Failure { code, error: e.into() }
    })?;
    if let Some(note) = exported.unfinished {
        eprintln!("kdtui: note: {note}");
    }
    println!("{} ({} bytes)", exported.path.display(), exported.bytes);
    Ok(())
}

pub fn eval(args: EvalArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(usage)?;
    let data = export::data_config(&config, args.data.as_deref()).map_err(usage)?;
    let e = export::eval(&args.file, args.teacher.as_deref(), args.engine, &config, &args.config, &data).map_err(|e| {
        let code = if matches!(e, export::EvalError::Engine { .. }) { 2 } else { 1 };
        Failure { code, error: e.into() }
    })?;
    println!("{}: {}", args.file.display(), e.model);
    println!("data: {}", e.data);
    let engine = match &e.engine {
        Some(run) => format!("integer engine, {}", run.kernel),
        None => "float engine".into(),
    };
    println!("test accuracy {} ({}/{} images), test loss {:.4} ({engine})", percent(e.accuracy()), e.correct, e.images, e.loss);
    if let Some(run) = &e.engine {
        let listed = if run.differ.is_empty() {
            String::new()
        } else {
            let more = if run.differ_count > run.differ.len() { ", ..." } else { "" };
            format!(" (test images {}{more})", run.differ.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
        };
        println!(
            "integer vs float engine: same class on {}/{} images; {} images with a code across a threshold from float rounding{listed}",
            run.agree, e.images, run.differ_count
        );
        println!(
            "speed on this run's {} images: integer {:.0} images/s, float {:.0} images/s ({:.2}x); kdtui bench measures it properly",
            e.images,
            run.int_images_per_sec,
            run.float_images_per_sec,
            run.int_images_per_sec / run.float_images_per_sec
        );
    }
    let d = &e.diagnostics;
    println!("expected calibration error {:.4} (15 bins)", d.ece);
    if let (Some(teacher), Some(agreement), Some(kl)) = (&args.teacher, d.agreement, d.kl_t1) {
        let on_errors = d.agreement_on_teacher_errors.map_or("the teacher makes none".into(), percent);
        println!(
            "agreement with the teacher ({}): {} of images, on the teacher's errors {on_errors}; KL(teacher || model) at T=1 {kl:.4}",
            teacher.display(),
            percent(agreement)
        );
    }
    Ok(())
}

pub fn watch(args: WatchArgs) -> Result<(), Failure> {
    let stop = signals::install().map_err(|e| failed(anyhow!("cannot install signal handlers: {e}")))?;
    monitor::watch(&args.dir, Some(stopping(stop))).map_err(|e| {
        let code = if matches!(e, MonitorError::WatchNotATerminal(_) | MonitorError::Watch(_)) { 2 } else { 1 };
        Failure { code, error: e.into() }
    })
}
