//! The GPU code path, run for real on a wgpu adapter: in CI, Mesa's lavapipe,
//! a software Vulkan device. What only a GPU backend executes (kdtui's
//! `CnnBackend` ops composed from burn's tensor ops, device-side targets and
//! gathers, the tally read once per step event, cubecl's autotune cache under
//! checkpoints/, errors raised on cubecl's threads) runs here end to end.
//!
//! Ignored by default: it needs a Vulkan device. `.ci/run` installs lavapipe
//! (`mesa-vulkan-drivers`, `libvulkan1`) and runs
//! `cargo test --release --test gpu_path -- --ignored --test-threads=1`; so
//! can anyone with a Vulkan GPU or lavapipe. One test at a time: the device
//! failure test leaves its process's device unusable, and runs last (tests
//! run in the order of their names).

#![cfg(feature = "wgpu")]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use kdtui::engine::backend::{self, DeviceChoice, Resolved};
use kdtui::engine::model::kernels::on_devices::{self, On};
use kdtui::engine::model::kernels::{Activation, AdamHyper};
use kdtui::protocol::TrainEvent;
use kdtui::study::{plan, Config};
use serde_json::Value;

const WHY: &str = "needs a Vulkan device (lavapipe: apt install mesa-vulkan-drivers libvulkan1); .ci/run runs it";

/// Three runs that learn something in a few epochs on 1,536 synthetic images,
/// with a step event after every step (so the first step's loss is kept).
/// One distilled student: `soft` runs the same ops as `hard_soft` less the
/// label term, and a fourth run cost a minute of lavapipe in CI's time.
const PLAN: &str = r#"
[plan]
name = "gpu-path"
seeds = [1]
losses = ["hard_soft"]
temperatures = [5.0]
baseline = true
out = "results"
checkpoints = "checkpoints"
[data]
train_size = 1536
test_size = 512
[train]
batch_size = 128
eval_batch_size = 256
log_every = 1
[teacher]
epochs = 3
widths = [8, 16, 32]
hidden = 32
[student]
epochs = 3
widths = [8, 16, 32]
hidden = 32
"#;

const RUNS: [&str; 3] = ["teacher", "baseline-s1", "hard_soft-T5-s1"];

fn kdtui(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("kdtui").unwrap();
    cmd.current_dir(dir);
    cmd
}

fn wgpu() -> Resolved {
    backend::resolve(DeviceChoice::Wgpu(None)).unwrap_or_else(|e| panic!("{e} ({WHY})"))
}

/// Trains the plan in `dir` on `device`; its results.json.
fn train(dir: &Path, device: &str) -> Value {
    std::fs::create_dir_all(dir).unwrap();
    common::write(dir, "gpu.toml", PLAN);
    let out = kdtui(dir).args(["--batch", "--config", "gpu.toml", "--device", device]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{device}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&std::fs::read(dir.join("results/results.json")).unwrap()).unwrap()
}

fn run<'a>(results: &'a Value, id: &str) -> &'a Value {
    results["runs"].as_array().unwrap().iter().find(|r| r["run_id"] == id).unwrap_or_else(|| panic!("no run {id}"))
}

fn train_losses(run: &Value) -> Vec<f64> {
    run["history"].as_array().unwrap().iter().map(|e| e["train_loss"].as_f64().unwrap()).collect()
}

/// The loss of a run's first step, from its metrics log.
fn first_step_loss(dir: &Path, id: &str) -> f64 {
    let log = std::fs::read_to_string(dir.join(format!("results/metrics/{id}.jsonl"))).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"] == "step" && e["step"] == 1)
        .unwrap_or_else(|| panic!("{id}: no step 1 in its metrics"))["loss"]
        .as_f64()
        .unwrap()
}

/// Each logged step's loss in a metrics file, the last entry of a step
/// winning (a resumed run logs again from its checkpoint).
fn step_losses(path: &Path) -> std::collections::BTreeMap<u64, f64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "step")
        .filter_map(|e| Some((e["step"].as_u64()?, e["loss"].as_f64()?)))
        .collect()
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// The plan on wgpu against the same plan on the CPU, then its models
/// evaluated on the CPU, then a stop in the middle of a run and the resume
/// on the same device, then the benchmark on the device.
///
/// A seed draws the same initial network on every device, and the batches
/// are the same, so the first step of every run agrees to float rounding.
/// After that they part: the two backends sum in other orders (1e-7
/// relative per op), and Adam, then the students' quantizers (a value
/// rounding across a threshold moves by a whole level), amplify it. The
/// float teacher stays close for the whole run (its per-epoch losses within
/// 1%, its accuracy within 3 points: measured 0.2% and 0 to 0.2 points); the
/// 2-bit students trained at 2e-2 drift apart by several points of
/// accuracy either way (measured: up to 13 points), so for them only the
/// first step is compared tightly, and the accuracy only loosely.
#[test]
#[ignore = "needs a Vulkan device (lavapipe: apt install mesa-vulkan-drivers libvulkan1); .ci/run runs it"]
fn a_plan_on_wgpu_tracks_the_cpu_run_resumes_and_benches_on_its_device() {
    let root = tempfile::tempdir().unwrap();
    let (cpu_dir, gpu_dir) = (root.path().join("cpu"), root.path().join("gpu"));
    let cpu = train(&cpu_dir, "cpu");
    let started = Instant::now();
    let gpu = train(&gpu_dir, "wgpu");
    // Where each part ends, in seconds from the plan's start, in CI's log:
    // where the test's time goes.
    let lap = |part: &str| eprintln!("{part}: {:.0} s from the start of the plan on wgpu", started.elapsed().as_secs_f64());
    lap("the plan on wgpu");
    assert!(gpu["device"].as_str().unwrap().starts_with("wgpu:"), "{}", gpu["device"]);

    for id in RUNS {
        let (c, g) = (run(&cpu, id), run(&gpu, id));
        assert_eq!(g["status"], "done", "{id} on wgpu: {g}");
        let (first_c, first_g) = (first_step_loss(&cpu_dir, id), first_step_loss(&gpu_dir, id));
        // The distilled student learns from the teacher each device trained
        // (measured: 4e-7 relative without a teacher, 1.5e-5 with one).
        let tolerance = if id.contains("-T") { 2e-4 } else { 1e-5 };
        assert!(relative(first_g, first_c) < tolerance, "{id}: first step's loss {first_g} on wgpu, {first_c} on the CPU");
        let (acc_c, acc_g) = (c["final_test_accuracy"].as_f64().unwrap(), g["final_test_accuracy"].as_f64().unwrap());
        eprintln!("{id}: test accuracy {acc_g:.4} on wgpu, {acc_c:.4} on the CPU; first step's loss {first_g:.6} / {first_c:.6}");
        if id == "teacher" {
            for (e, (a, b)) in train_losses(g).iter().zip(train_losses(c)).enumerate() {
                assert!(relative(*a, b) < 0.01, "teacher epoch {}: train loss {a} on wgpu, {b} on the CPU", e + 1);
            }
            assert!((acc_g - acc_c).abs() <= 0.03, "teacher: {acc_g} on wgpu, {acc_c} on the CPU");
        } else {
            assert!((acc_g - acc_c).abs() <= 0.2, "{id}: {acc_g} on wgpu, {acc_c} on the CPU");
        }
        // It learnt: chance is 10%.
        assert!(acc_g > 0.18, "{id}: {acc_g} on wgpu");
    }

    // Each model trained on the GPU, evaluated on the CPU: the same test
    // set, and as many right answers but for images within rounding of a
    // decision (at most 1% of them).
    for id in RUNS {
        let out = kdtui(&gpu_dir).args(["eval", &format!("results/models/{id}.safetensors"), "--config", "gpu.toml"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let line = stdout.lines().find(|l| l.starts_with("test accuracy")).unwrap();
        let counts = line.split('(').nth(1).unwrap().split(' ').next().unwrap();
        let (correct, images): (f64, f64) = match counts.split_once('/') {
            Some((c, n)) => (c.parse().unwrap(), n.parse().unwrap()),
            None => panic!("{line}"),
        };
        let on_device = run(&gpu, id)["final_test_accuracy"].as_f64().unwrap() * images;
        assert!((correct - on_device).abs() <= images / 100.0, "{id}: {correct} right on the CPU, {on_device} on wgpu");
    }

    lap("the evaluations on the CPU");

    // SIGTERM once the teacher's metrics show step 14 (of 12 a epoch): it
    // stops within its second epoch (a step takes a large fraction of a
    // second on lavapipe), saving a checkpoint in the middle of the epoch.
    // The same command resumes it on the same device and is stopped again
    // three steps later: those steps' losses are the uninterrupted run's (one
    // device, one order of sums: the same numbers), which a wrong weight,
    // Adam moment, learning rate or batch after the resume would change.
    // (Running it to its end, as the CPU's resume tests do, took another
    // minute on lavapipe and checks nothing of the device's.)
    let resume = ["--batch", "--config", "gpu.toml", "--device", "wgpu", "--only", "teacher", "--out", "resumed"];
    let metrics = gpu_dir.join("resumed/metrics/teacher.jsonl");
    let stop_at = |step: u64, fresh: bool| -> String {
        let mut command = StdCommand::new(assert_cmd::cargo::cargo_bin("kdtui"));
        command.current_dir(&gpu_dir).args(resume).stdout(Stdio::piped()).stderr(Stdio::null());
        if fresh {
            command.arg("--fresh");
        }
        let mut child = command.spawn().unwrap();
        common::wait_for_step(&metrics, &mut child, step as usize, Duration::from_secs(300));
        // SAFETY: signals a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let seen: String = BufReader::new(child.stdout.take().unwrap()).lines().map(|l| l.unwrap() + "\n").collect();
        assert_eq!(child.wait().unwrap().code(), Some(0), "{seen}");
        assert!(seen.contains("teacher stopped:") && seen.contains("checkpoint saved"), "{seen}");
        seen
    };
    stop_at(14, true);
    let at = "teacher: resumed from its checkpoint at epoch 2, step ";
    let saved = step_losses(&metrics).keys().next_back().copied().unwrap();
    let seen = stop_at(saved + 3, false);
    let step: u64 = match seen.split_once(at) {
        Some((_, rest)) => rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap(),
        None => panic!("not resumed in epoch 2: {seen}"),
    };
    assert!((14..24).contains(&step), "resumed at step {step}, not within the epoch: {seen}");
    let (resumed, whole) = (step_losses(&metrics), step_losses(&gpu_dir.join("results/metrics/teacher.jsonl")));
    for s in step + 1..=step + 3 {
        let (a, b) = (resumed[&s], whole[&s]);
        assert!((a - b).abs() < 1e-5, "step {s} after the resume at {step}: loss {a}, {b} in the uninterrupted run");
    }

    lap("the stop and the resume");

    // `kdtui bench --device wgpu` measures a model on the adapter, in
    // the plan's directory: it finds the kernels the plan tuned in
    // checkpoints/.cubecl/ (on lavapipe, tuning them again took 2 minutes).
    // The student only: its ops include the teacher's.
    let bench = ["bench", "--config", "gpu.toml", "--device", "wgpu", "--model", "student", "--seconds", "1", "--rounds", "1"];
    let out = kdtui(&gpu_dir).args(bench).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("on wgpu:") && stdout.contains("PyTorch: not measured: PyTorch has no wgpu backend"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("student") && l.contains("train")), "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("teacher")), "--model student: {stdout}");
    lap("the benchmark");
    eprintln!("{stdout}");
}

/// A failure of the backend itself (one buffer larger than the device
/// allows, asked for at the teacher's first step: cubecl's device thread
/// panics and its server is down for good) stops the plan with the
/// backend's own message in its `Fatal` event (which the monitor's log and
/// `--batch`'s stderr show as they show any fatal error): no hang, no
/// string of students failing on a dead device. (At the teacher: at a later
/// run it cost a minute of tuning kernels on lavapipe first.) Named to run
/// last: its process's device is unusable afterwards.
#[test]
#[ignore = "needs a Vulkan device (lavapipe: apt install mesa-vulkan-drivers libvulkan1); .ci/run runs it"]
fn when_a_device_allocation_fails_the_plan_stops_with_the_backends_message() {
    kdtui::engine::logger::install();
    let dir = tempfile::tempdir().unwrap();
    let paths = format!("[plan]\nout = {:?}\ncheckpoints = {:?}", dir.path().join("out"), dir.path().join("ck"));
    common::write(dir.path(), "config.toml", &common::TINY.replace("[plan]", &paths));
    let config = Config::load(&dir.path().join("config.toml")).unwrap();
    let runs = plan::select(&config, &[]).unwrap();
    let mut input = common::plan_input(&config, runs);
    input.hooks.oversized_in = Some("teacher".into());
    let trainer = backend::spawn(wgpu(), input).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut fatal, mut ended) = (None, vec![]);
    loop {
        assert!(Instant::now() < deadline, "the plan did not end within 5 minutes: {fatal:?} {ended:?}");
        match trainer.events.recv_timeout(Duration::from_secs(1)) {
            Ok(TrainEvent::Fatal { error }) => fatal = Some(error),
            Ok(TrainEvent::RunFinished { result }) => ended.push(format!("{} {:?}", result.run_id, result.status)),
            Ok(TrainEvent::RunFailed { run_id, error }) => ended.push(format!("{run_id} failed: {error}")),
            Ok(_) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    trainer.thread.join().unwrap();
    let error = fatal.unwrap_or_else(|| panic!("the plan did not stop: {ended:?}"));
    eprintln!("the plan stopped with: {error}");
    assert!(error.starts_with("teacher: the GPU backend failed: thread "), "{error}");
    assert!(error.contains("can't allocate buffer of size: 4398046511104"), "{error}");
    assert!(error.contains("run kdtui again to go on"), "{error}");
    assert!(!error.contains("autotune"), "the first panic is the cause; the rest are counted, not listed: {error}");
    assert!(ended.is_empty(), "no run ended or failed after it: {ended:?}");
}

/// Compares two outputs element by element, relative to magnitude; with a
/// quantized activation, an element may sit a whole level away where its
/// pre-activation rounds the other way on the other device: those are
/// counted and at most 1% of the elements.
fn compare(what: &str, gpu: &[f32], cpu: &[f32], level: Option<f32>) -> usize {
    assert_eq!(gpu.len(), cpu.len(), "{what}");
    let scale = cpu.iter().fold(0f32, |m, x| m.max(x.abs()));
    let mut flips = 0;
    for (i, (a, b)) in gpu.iter().zip(cpu).enumerate() {
        // 1e-4 of the element, and 1e-5 of the tensor's largest for those near zero.
        let close = (a - b).abs() <= 1e-4 * b.abs() + 1e-5 * scale;
        let one_level = level.is_some_and(|l| ((a - b).abs() - l).abs() <= 1e-3 * (1.0 + l));
        match (close, one_level) {
            (true, _) => {}
            (false, true) => flips += 1,
            (false, false) => panic!("{what}[{i}]: {a} on wgpu, {b} on the CPU"),
        }
    }
    assert!(flips * 100 <= gpu.len(), "{what}: {flips} of {} elements a level apart", gpu.len());
    flips
}

/// kdtui's ops as the GPU backends run them (burn's tensor ops, composed in
/// `CnnBackend`'s defaults, with kdtui's autodiff) against the CPU kernels,
/// which the unit tests hold to burn's own ops: outputs and every gradient,
/// for odd sizes, a batch of one and each activation; then inference's
/// affine op and three Adam steps (`kernels::on_devices` runs them).
#[test]
#[ignore = "needs a Vulkan device (lavapipe: apt install mesa-vulkan-drivers libvulkan1); .ci/run runs it"]
fn kernels_on_wgpu_match_the_cpu_kernels() {
    let Resolved::Wgpu(target) = wgpu() else { unreachable!() };
    let device = backend::wgpu::device(target.selector);
    let gpu = On::Wgpu(&device);
    let activations = [
        (Activation::Identity, None),
        (Activation::Relu, None),
        (Activation::Quantized { bits: 2, range: 3.0 }, Some(1.0)),
        (Activation::Quantized { bits: 4, range: 1.0 }, Some(1.0 / 15.0)),
    ];
    let parts = ["output", "mean", "var", "x grad", "weight grad", "gamma grad", "beta grad"];
    let mut compared = 0;
    for (shape, cout, pool) in [([2, 3, 6, 8], 4, true), ([1, 5, 5, 7], 3, false), ([3, 16, 8, 8], 16, true), ([4, 8, 1, 1], 6, false)] {
        for (act, level) in activations {
            let (g, c) = (on_devices::layer(gpu, shape, cout, act, pool), on_devices::layer(On::Cpu, shape, cout, act, pool));
            let flips = compare(&format!("{shape:?} {act:?} output"), &g[0], &c[0], level);
            compare(&format!("{shape:?} mean"), &g[1], &c[1], None);
            compare(&format!("{shape:?} var"), &g[2], &c[2], None);
            // A flipped level moves the gradients with it (the straight-through
            // mask): compare them only where every output agrees.
            if flips == 0 {
                for i in 3..parts.len() {
                    compare(&format!("{shape:?} {act:?} {}", parts[i]), &g[i], &c[i], None);
                }
                compared += 1;
            }
        }
    }
    assert!(compared >= 12, "gradients compared in only {compared} of 16 cases");

    for (act, level) in activations {
        compare(&format!("inference {act:?}"), &on_devices::inference(gpu, act), &on_devices::inference(On::Cpu, act), level);
    }

    // Both weight decay modes.
    for decoupled in [false, true] {
        let h = AdamHyper { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-8, weight_decay: 0.05, decoupled };
        let (g, c) = (on_devices::adam(gpu, h), on_devices::adam(On::Cpu, h));
        for (i, what) in ["parameter", "first moment", "second moment"].iter().enumerate() {
            compare(&format!("adam {what} decoupled={decoupled}"), &g[i], &c[i], None);
        }
    }
}
