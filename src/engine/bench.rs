//! What `kdtui bench` measures, in this process: the training and inference
//! throughput and the peak memory of the teacher or the student, and the
//! machine's matrix-product peak. Which processes measure what, and the
//! PyTorch reference beside them, are the command line's (`cli::bench`).

use std::time::{Duration, Instant};

use burn::module::AutodiffModule;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::engine::backend::{dispatch, OnBackend, Resolved};
use crate::engine::data::batcher::{images, make_batch, Normalizer, Targets};
use crate::engine::data::{synthetic, Dataset, CLASSES, PIXELS, SIDE};
use crate::engine::inference::{argmax, predict};
use crate::engine::losses;
use crate::engine::losses::Objective;
use crate::engine::model::integer::IntNet;
use crate::engine::model::kernels::cpu::{self, simd};
use crate::engine::model::{Cnn, CnnConfig, TrainBackend};
use crate::engine::train::{adam, train_step, Tally};
use crate::study::config::Config;
use crate::study::Loss;

/// Inference batch of the benchmark (the figure, not the config's
/// evaluation batch, so runs on different configs compare).
pub const INFER_BATCH: usize = 256;
/// The student is timed on `hard_soft` at this T: it reads teacher targets
/// and both cross-entropies, the most work any study loss does.
pub const STUDENT_TEMPERATURE: f64 = 15.0;
/// Images the timing loops cycle through: 2,048, or one batch when larger.
pub fn bench_images(config: &Config) -> usize {
    2048usize.max(INFER_BATCH).max(config.train.batch_size)
}
const WARMUP_STEPS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Model {
    Teacher,
    Student,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Teacher => "teacher",
            Model::Student => "student",
        }
    }

    /// The network the config gives this model.
    pub fn shape(self, config: &Config) -> CnnConfig {
        match self {
            Model::Teacher => CnnConfig::teacher(config),
            Model::Student => CnnConfig::student(config),
        }
    }

    pub fn learning_rate(self, config: &Config) -> f64 {
        match self {
            Model::Teacher => config.teacher.learning_rate,
            Model::Student => config.student.learning_rate,
        }
    }
}

/// One side's figures for one model; the PyTorch script prints the same
/// fields (and `compiled`, which only says which variant it ran).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub side: String,
    pub model: String,
    pub device: String,
    pub version: String,
    pub threads: usize,
    pub train_images_per_sec: f64,
    pub infer_images_per_sec: f64,
    /// Peak resident memory of the measuring process.
    pub peak_rss_bytes: u64,
    /// Peak GPU memory, where the side can tell.
    pub peak_device_bytes: Option<u64>,
    /// Inference one image at a time (a served request), fp32.
    #[serde(default)]
    pub infer_batch1_images_per_sec: Option<f64>,
    /// The quantized student on integers: kdtui's integer engine, or
    /// PyTorch's int8 (`torch.ao`, x86 backend); batch `INFER_BATCH`, then 1.
    #[serde(default)]
    pub int_infer_images_per_sec: Option<f64>,
    #[serde(default)]
    pub int_infer_batch1_images_per_sec: Option<f64>,
    /// Share of the benchmark images on which the integer model predicts
    /// the fp32-simulated model's class.
    #[serde(default)]
    pub int_agreement: Option<f64>,
    /// What ran the integer model (kernel, or engine).
    #[serde(default)]
    pub int_engine: Option<String>,
    /// Memory of serving the integer student: the process's resident set
    /// before the engine was built (binary, runtime, benchmark images), its
    /// peak after serving batches, and the packed file's length.
    #[serde(default)]
    pub int_serving: Option<Serving>,
    /// The reference's compiled variant (`torch.compile`, channels_last):
    /// the seconds its warm-up steps took beyond as many timed ones, which
    /// is compiling; none for eager and for kdtui.
    #[serde(default)]
    pub compile_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Serving {
    pub before_bytes: u64,
    pub peak_bytes: u64,
    pub packed_bytes: u64,
    /// One batch of `INFER_BATCH` images' pixel bytes and logits.
    pub batch_bytes: u64,
    /// One batch's activations at the network's widest point, as codes:
    /// the first conv's output before pooling, a byte per value.
    #[serde(default)]
    pub activation_bytes: u64,
    /// What grew between before and after serving: anonymous memory (the
    /// heap, thread stacks) and file pages (the binary's code run for the
    /// first time).
    #[serde(default)]
    pub anon_growth_bytes: u64,
    #[serde(default)]
    pub file_growth_bytes: u64,
    /// What the engine holds: its weights and thresholds, and each pool
    /// thread's buffers.
    #[serde(default)]
    pub engine_bytes: u64,
    /// Whether it served with transparent huge pages off (`SmallPages`).
    #[serde(default)]
    pub small_pages: bool,
}

/// Why a measurement gave no figure.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("the {model}'s benchmark training diverged (loss not finite by step {steps}) at learning rate {learning_rate}; lower it in the config")]
    Diverged { model: &'static str, steps: usize, learning_rate: f64 },
    #[error("cannot start a thread pool of {threads} threads: {reason}")]
    ThreadPool { threads: usize, reason: String },
}

/// This machine's fp32 matrix-product throughput on `threads` threads, for
/// about `seconds` (`kernels::cpu::gemm_peak_gflops`): what training speed
/// is set against.
pub fn peak_gflops(threads: usize, seconds: f64) -> Result<f64, MeasureError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| MeasureError::ThreadPool { threads, reason: e.to_string() })?;
    Ok(pool.install(|| cpu::gemm_peak_gflops(seconds)))
}

/// The CPU kernels' level as they run, and the best this CPU offers
/// (`KDTUI_SIMD` caps the first).
pub fn kernel_levels() -> (&'static str, &'static str) {
    (simd::level().name(), simd::detected().name())
}

/// How long each figure is measured, at least.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub seconds: f64,
}

/// Runs `step` on batches of `size` drawn from a shuffled 0..n, first
/// `WARMUP_STEPS` untimed, then for at least `timing.seconds`; images/s.
fn images_per_sec(n: usize, size: usize, timing: Timing, mut step: impl FnMut(&[usize])) -> f64 {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(3));
    let batches: Vec<&[usize]> = order.chunks_exact(size).collect();
    assert!(!batches.is_empty(), "benchmark set smaller than one batch");
    for batch in batches.iter().cycle().take(WARMUP_STEPS) {
        step(batch);
    }
    let budget = Duration::from_secs_f64(timing.seconds);
    let started = Instant::now();
    let mut images = 0usize;
    for batch in batches.iter().cycle() {
        step(batch);
        images += batch.len();
        if started.elapsed() >= budget {
            break;
        }
    }
    images as f64 / started.elapsed().as_secs_f64()
}

/// Measures `model` on this process's backend: the training step the runner
/// uses (batch assembly from bytes included), then inference in batches of
/// `INFER_BATCH` without autodiff. Each step ends in a read of its result, so
/// asynchronous backends are timed to completion.
pub fn measure<B: TrainBackend>(
    config: &Config,
    model: Model,
    timing: Timing,
    device: B::Device,
    device_name: &str,
) -> Result<Measurement, MeasureError> {
    let batch_size = config.train.batch_size;
    let data = synthetic::generate(bench_images(config), 7, synthetic::Split::Train);
    let norm = Normalizer::fit(&data);
    let objective = match model {
        Model::Teacher => Objective::of(config, Loss::Hard, None),
        Model::Student => Objective::of(config, Loss::HardSoft, Some(STUDENT_TEMPERATURE)),
    };
    let soft = (model == Model::Student).then(|| {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let logits: Vec<f32> = (0..data.len() * CLASSES).map(|_| rng.random_range(-4.0..4.0)).collect();
        losses::soft_targets(&logits, CLASSES, STUDENT_TEMPERATURE)
    });
    // Serving memory first, before training has grown the heap.
    let serving = (model == Model::Student && B::name(&device).contains("flex")).then(|| serving_memory(config, &data, &norm)).flatten();
    let targets = Targets::<B>::new(&data, soft.as_deref(), &device);
    B::seed(&device, 1);
    let mut net: Option<Cnn<B>> = Some(model.shape(config).init(&device));
    let mut optim = adam::<B>(config);
    let lr = model.learning_rate(config);
    // Metrics are read as a training run reads them: every `log_every` steps.
    let mut tally = Tally::new();
    let mut steps = 0;
    let mut diverged = None;
    let train = images_per_sec(data.len(), batch_size, timing, |indices| {
        let batch = make_batch::<B>(&data, &norm, indices, &targets, &device);
        let (next, metrics) = train_step(net.take().expect("model"), &mut optim, batch, objective, lr);
        tally.add(metrics, indices.len());
        steps += 1;
        if steps % config.train.log_every == 0 && diverged.is_none() && !tally.read().loss_sum.is_finite() {
            diverged = Some(steps);
        }
        net = Some(next);
    });
    if let Some(steps) = diverged {
        return Err(MeasureError::Diverged { model: model.name(), steps, learning_rate: lr });
    }
    let inference = net.take().expect("model").valid();
    let infer_at = |batch: usize| {
        images_per_sec(data.len(), batch, timing, |indices| {
            let predicted = inference.forward(images::<B::InnerBackend>(&data, &norm, indices, &device)).argmax(1);
            let _ = predicted.into_data();
        })
    };
    let infer = infer_at(INFER_BATCH);
    let infer_batch1 = infer_at(1);
    let shape = model.shape(config);
    let int = (!shape.precision.is_float() && B::name(&device).contains("flex"))
        .then(|| {
            let values = inference.stored_values();
            // With small pages for what it allocates from here (as
            // `serving_memory`); the arena training filled keeps its own.
            let _small = crate::util::pages::SmallPages::new();
            IntNet::new(&shape, &values, &norm).ok().map(|net| measure_int(&net, &data, &norm, &values, &shape, timing))
        })
        .flatten();
    Ok(Measurement {
        side: "kdtui".into(),
        model: model.name().into(),
        device: device_name.into(),
        version: format!("kdtui {}, burn 0.21.0", env!("CARGO_PKG_VERSION")),
        threads: rayon::current_num_threads(),
        train_images_per_sec: train,
        infer_images_per_sec: infer,
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
        peak_device_bytes: None,
        infer_batch1_images_per_sec: Some(infer_batch1),
        int_infer_images_per_sec: int.as_ref().map(|m| m.batch),
        int_infer_batch1_images_per_sec: int.as_ref().map(|m| m.one),
        int_agreement: int.as_ref().map(|m| m.agreement),
        int_engine: int.as_ref().map(|m| m.kernel.clone()),
        int_serving: serving,
        compile_seconds: None,
    })
}

/// The resident set of serving the integer student (an untrained one: the
/// memory does not depend on the values) in batches of `INFER_BATCH`: the
/// process's before the engine is built, and its peak while it serves, in
/// this process before training has run.
fn serving_memory(config: &Config, data: &Dataset, norm: &Normalizer) -> Option<Serving> {
    let shape = CnnConfig::student(config);
    let model = shape.init::<burn::backend::Flex>(&Default::default());
    let values = model.stored_values();
    drop(model);
    // The peak from here on (Linux: writing 5 to clear_refs resets VmHWM
    // to the present resident set), so burn's model above does not count.
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    // As a process serving the engine runs: small pages (`SmallPages`),
    // given back to training when this returns.
    let small = crate::util::pages::SmallPages::new();
    let before = current_rss_bytes()?;
    let (anon, file) = (status_kib("RssAnon:")?, status_kib("RssFile:")?);
    let net = IntNet::new(&shape, &values, norm).ok()?;
    drop(values);
    let mut logits = vec![0f32; INFER_BATCH * CLASSES];
    for batch in data.images.chunks_exact(INFER_BATCH * PIXELS).take(4) {
        net.logits(batch, &mut logits);
    }
    Some(Serving {
        before_bytes: before,
        peak_bytes: peak_rss_bytes()?,
        packed_bytes: crate::engine::model::packed::file_len(&shape),
        batch_bytes: (INFER_BATCH * (PIXELS + CLASSES * 4)) as u64,
        activation_bytes: (INFER_BATCH * SIDE * SIDE * shape.widths[0]) as u64,
        anon_growth_bytes: status_kib("RssAnon:")?.saturating_sub(anon),
        file_growth_bytes: status_kib("RssFile:")?.saturating_sub(file),
        engine_bytes: (net.weight_bytes() + rayon::current_num_threads() * net.scratch_bytes()) as u64,
        small_pages: small.active(),
    })
}

/// This machine's integer multiply-add throughput on `threads` threads with
/// the integer engine's kernel (`integer::dot::peak_macs_per_sec`).
pub fn peak_int_macs(threads: usize, seconds: f64) -> Result<(f64, &'static str), MeasureError> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| MeasureError::ThreadPool { threads, reason: e.to_string() })?;
    // The form the engine runs low-bit layers in (AVX2: 16-bit sums).
    let kernel = crate::engine::model::integer::Kernel::best().for_layer(1, 1, 9 * 16);
    Ok((pool.install(|| crate::engine::model::integer::dot::peak_macs_per_sec(kernel, seconds)), kernel.name()))
}

struct IntFigures {
    batch: f64,
    one: f64,
    agreement: f64,
    kernel: String,
}

/// The integer engine on the benchmark images: images/s at `INFER_BATCH`
/// and at 1 (pixel bytes to classes, as the float engine is timed), and
/// its agreement with the float engine's classes.
fn measure_int(net: &IntNet, data: &Dataset, norm: &Normalizer, values: &[Vec<f32>], shape: &CnnConfig, timing: Timing) -> IntFigures {
    let mut pixels = Vec::with_capacity(INFER_BATCH * PIXELS);
    let mut logits = vec![0f32; INFER_BATCH * CLASSES];
    let run = |indices: &[usize], pixels: &mut Vec<u8>, logits: &mut Vec<f32>| {
        pixels.clear();
        for &i in indices {
            pixels.extend_from_slice(data.image(i));
        }
        logits.resize(indices.len() * CLASSES, 0.0);
        net.logits(pixels, logits);
        logits.chunks_exact(CLASSES).map(argmax).fold(0usize, |a, c| a ^ c)
    };
    let mut sink = 0;
    let batch = images_per_sec(data.len(), INFER_BATCH, timing, |indices| sink ^= run(indices, &mut pixels, &mut logits));
    let one = images_per_sec(data.len(), 1, timing, |indices| sink ^= run(indices, &mut pixels, &mut logits));
    std::hint::black_box(sink);
    let device = Default::default();
    let stored = crate::engine::model::packed::Stored { network: shape.clone(), normalizer: norm.clone(), values: values.to_vec() };
    let float = predict(&stored.model::<burn::backend::Flex>(&device), data, norm, INFER_BATCH, &device);
    let mut all = vec![0f32; data.len() * CLASSES];
    net.logits(&data.images, &mut all);
    let same = all.chunks_exact(CLASSES).zip(float.chunks_exact(CLASSES)).filter(|(a, b)| argmax(a) == argmax(b)).count();
    IntFigures { batch, one, agreement: same as f64 / data.len() as f64, kernel: net.kernel_name() }
}

/// `kdtui bench --measure`: one model's figures on the resolved device, in this process.
pub fn measure_on(resolved: Resolved, config: &Config, model: Model, timing: Timing) -> Result<Measurement, MeasureError> {
    struct Measure<'a> {
        config: &'a Config,
        model: Model,
        timing: Timing,
    }
    impl OnBackend for Measure<'_> {
        type Output = Result<Measurement, MeasureError>;
        fn run<B: TrainBackend>(self, device: B::Device, name: &str) -> Self::Output {
            measure::<B>(self.config, self.model, self.timing, device, name)
        }
    }
    dispatch(resolved, Measure { config, model, timing })
}

/// The process's peak resident set (VmHWM), where Linux tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:")
}

/// The process's resident set now (VmRSS).
fn current_rss_bytes() -> Option<u64> {
    status_kib("VmRSS:")
}

fn status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The CPU's model name, as Linux tells it.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into())
}
