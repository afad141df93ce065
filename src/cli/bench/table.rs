//! What `kdtui bench` prints: the header lines (what was measured where)
//! and the table, a line per model and figure, kdtui beside PyTorch eager
//! and, where it ran, PyTorch compiled.

use super::{Report, Request};
use crate::engine::bench::{cpu_name, kernel_levels, Measurement, Model, INFER_BATCH, STUDENT_TEMPERATURE};
use crate::study::config::Config;
use crate::util::format::mebibytes;

type Figure = fn(&Measurement) -> Option<f64>;

/// The throughputs, each with its ratio to every PyTorch variant.
const THROUGHPUTS: [(&str, Figure); 5] = [
    ("train images/s", |m| Some(m.train_images_per_sec)),
    ("inference images/s", |m| Some(m.infer_images_per_sec)),
    ("inference, batch 1", |m| m.infer_batch1_images_per_sec),
    // The student on integers: kdtui's integer engine beside PyTorch's int8.
    ("int inference images/s", |m| m.int_infer_images_per_sec),
    ("int inference, batch 1", |m| m.int_infer_batch1_images_per_sec),
];

/// The report as a table: one line per model and figure, with kdtui's ratio
/// to PyTorch eager and, when any row has it, to PyTorch compiled.
pub fn render(report: &Report) -> String {
    let with_compiled = report.rows.iter().any(|r| r.compiled.is_some());
    let mut out = String::new();
    let mut line = |cells: [&str; 7]| {
        let [model, figure, ours, eager, eager_ratio, compiled, compiled_ratio] = cells;
        out.push_str(&format!("{model:<8} {figure:<22} {ours:>12} {eager:>12} {eager_ratio:>14}"));
        if with_compiled {
            out.push_str(&format!(" {compiled:>12} {compiled_ratio:>14}"));
        }
        out.push('\n');
    };
    line(["model", "figure", "kdtui", "PyTorch", "kdtui/PyTorch", "compiled", "kdtui/compiled"]);
    for row in &report.rows {
        let k = &row.kdtui;
        let m = k.model.as_str();
        let sides = [row.reference.as_ref(), row.compiled.as_ref()];
        let figure = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let ratio = |a: f64, b: Option<f64>| b.map_or("-".to_string(), |b| format!("{:.2}", a / b));
        for (name, of) in THROUGHPUTS {
            let Some(ours) = of(k) else { continue };
            let [eager, compiled] = sides.map(|side| side.and_then(of));
            line([m, name, &figure(Some(ours)), &figure(eager), &ratio(ours, eager), &figure(compiled), &ratio(ours, compiled)]);
        }
        // Memory, shares and the like: side by side, but no ratio.
        let mut plain = |name: &str, [ours, eager, compiled]: [String; 3]| line([m, name, &ours, &eager, "-", &compiled, "-"]);
        let each = |f: &dyn Fn(&Measurement) -> Option<String>| {
            [Some(k), sides[0], sides[1]].map(|side| side.and_then(f).unwrap_or_else(|| "-".into()))
        };
        if let Some(int) = k.int_infer_images_per_sec {
            plain("int / own fp32", each(&|m| Some(format!("{:.2}x", m.int_infer_images_per_sec? / m.infer_images_per_sec))));
            plain("int = fp32 class", each(&|m| m.int_agreement.map(|a| format!("{:.1}%", 100.0 * a))));
            if let Some((macs, _, per_image)) = report.peak.as_ref().and_then(|p| p.int) {
                let share = format!("{:.0}%", 100.0 * int * per_image as f64 / macs);
                plain("int, share of int peak", [share, "-".into(), "-".into()]);
            }
        }
        if let Some(s) = &k.int_serving {
            plain("int serving memory", [mebibytes(s.peak_bytes.saturating_sub(s.before_bytes)), "-".into(), "-".into()]);
        }
        if let Some(peak) = &report.peak {
            let flops = peak.training_flops[match row.model {
                Model::Teacher => 0,
                Model::Student => 1,
            }] as f64;
            plain("train, share of peak", each(&|m| Some(format!("{:.0}%", 100.0 * m.train_images_per_sec * flops / 1e9 / peak.gflops))));
        }
        plain("peak memory (RSS)", each(&|m| Some(mebibytes(m.peak_rss_bytes))));
        if sides.iter().any(|side| side.is_some_and(|r| r.peak_device_bytes.is_some())) {
            plain("peak GPU memory", each(&|m| m.peak_device_bytes.map(mebibytes)));
        }
        if let Some(seconds) = row.compiled.as_ref().and_then(|c| c.compile_seconds) {
            plain("compiling, longest s", ["-".into(), "-".into(), format!("{seconds:.1}")]);
        }
    }
    if let Some(seconds) = report.plan_seconds {
        out.push_str(&format!("whole plan, end to end: {:.0} min {:.0} s\n", (seconds / 60.0).floor(), seconds % 60.0));
    }
    out
}

pub fn describe(report: &Report, request: &Request, config: &Config) -> String {
    let cpu = cpu_name();
    let mut out = String::new();
    if let Some(k) = report.rows.first().map(|r| &r.kdtui) {
        out.push_str(&format!("kdtui:   {} on {} ({cpu})\n", k.version, k.device));
    }
    if request.device == "cpu" {
        out.push_str(&format!(
            "CPU kernels: {} (this CPU: {}; KDTUI_SIMD caps it); gemm AVX-512 kernels {}\n",
            kernel_levels().0,
            kernel_levels().1,
            if cfg!(feature = "avx512") { "built in" } else { "left out (built without the avx512 feature)" }
        ));
    }
    if let Some(peak) = &report.peak {
        out.push_str(&format!(
            "peak: {:.0} GFLOP/s, fp32 gemm of 384x384 matrices on every thread; training per image: teacher {:.3} GFLOP, student {:.3} GFLOP (forward, input and weight gradients of the convs and linear layers)\n",
            peak.gflops,
            peak.training_flops[0] as f64 / 1e9,
            peak.training_flops[1] as f64 / 1e9
        ));
    }
    if let Some((macs, kernel, per_image)) = report.peak.as_ref().and_then(|p| p.int) {
        out.push_str(&format!(
            "int peak: {:.0} G multiply-adds/s, the integer kernel {kernel} on every thread over a tile in L1 (8 pixels, 9 taps of 64 channels, 32 outputs); student inference per image: {:.2} M integer multiply-adds (convs 2-5 and the hidden layer)\n",
            macs / 1e9,
            per_image as f64 / 1e6
        ));
    }
    if let Some(s) = report.rows.iter().find_map(|r| r.kdtui.int_serving) {
        out.push_str(&format!(
            "int serving memory: resident set {} before the engine, {} at its peak serving batches of {INFER_BATCH} ({} KiB more); at the end, heap and thread stacks {} KiB above where they were (the engine's weights, thresholds and per-thread buffers: {} KiB; the rest is the allocator's pages{}) and code pages run for the first time {} KiB; the packed file is {} KiB, one batch of pixels and logits {} KiB, its widest activations as codes {} KiB\n",
            mebibytes(s.before_bytes),
            mebibytes(s.peak_bytes),
            s.peak_bytes.saturating_sub(s.before_bytes) / 1024,
            s.anon_growth_bytes / 1024,
            s.engine_bytes / 1024,
            if s.small_pages {
                ", small: transparent huge pages off while serving, as a serving process runs"
            } else {
                ", 2 MiB each where it uses transparent huge pages (the kernel refused to turn them off): docs/BENCHMARK.md"
            },
            s.file_growth_bytes / 1024,
            s.packed_bytes / 1024,
            s.batch_bytes / 1024,
            s.activation_bytes / 1024
        ));
    }
    match (report.rows.first().and_then(|r| r.reference.as_ref()), &report.reference_skipped) {
        (Some(r), _) => {
            out.push_str(&format!("PyTorch: {} on {}, {} threads (eager)\n", r.version, r.device, r.threads));
            if report.rows.iter().any(|row| row.compiled.is_some()) {
                out.push_str(
                    "compiled: the same PyTorch through torch.compile (inductor, static shapes) in channels_last: the forward pass with its loss (and the backward AOTAutograd derives), the optimizer step, inference per batch size (frozen); compiling is not in the figures (its longest round is a line of its own), nor are int rows (torch's compiled int8 path, PT2E, is in the torchao package)\n",
                );
            }
            if let Some(why) = &report.compiled_failed {
                out.push_str(&format!("compiled: left out, it failed: {why}\n"));
            }
            if let Some(engine) = report.rows.iter().find_map(|row| row.reference.as_ref()?.int_engine.as_ref()) {
                out.push_str(&format!("PyTorch int rows: {engine}\n"));
            }
        }
        (None, Some(why)) if request.device.starts_with("wgpu") => out.push_str(&format!("PyTorch: not measured: {why}.\n")),
        (None, Some(why)) => {
            out.push_str(&format!("PyTorch: not measured: {why}. README, \"Benchmark\", says how to set up the reference.\n"))
        }
        (None, None) => {}
    }
    let s = &config.student;
    out.push_str(&format!(
        "models from {}: teacher widths {:?} hidden {}; student widths {:?} hidden {}, {}-bit weights, {}-bit activations (hard_soft, T = {})\n",
        request.config_path.display(),
        config.teacher.widths,
        config.teacher.hidden,
        s.widths,
        s.hidden,
        s.w_bits,
        s.a_bits,
        STUDENT_TEMPERATURE
    ));
    if let Some(engine) = report.rows.iter().find_map(|r| r.kdtui.int_engine.as_ref()) {
        out.push_str(&format!("kdtui int rows: the integer engine (docs/INTEGER.md), kernel {engine}\n"));
    }
    out.push_str(&format!(
        "training batch {}, inference batch {INFER_BATCH}; medians of {} alternating rounds, at least {:.0} s per figure each\n",
        config.train.batch_size, request.rounds, request.timing.seconds
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::super::Row;
    use super::*;

    fn measured(side: &str, train: f64, infer: f64, compile_seconds: Option<f64>) -> Measurement {
        let json = serde_json::json!({
            "side": side, "model": "student", "device": "cpu", "version": "v", "threads": 2,
            "train_images_per_sec": train, "infer_images_per_sec": infer, "peak_rss_bytes": 1 << 20,
            "peak_device_bytes": null, "compile_seconds": compile_seconds,
        });
        serde_json::from_value(json).unwrap()
    }

    fn cells<'a>(table: &'a str, figure: &str) -> Vec<&'a str> {
        let line = table.lines().find(|l| l[9..].starts_with(figure)).unwrap_or_else(|| panic!("no {figure}: {table}"));
        line[9 + figure.len()..].split_whitespace().collect()
    }

    /// The table of one student row: kdtui 600 and 3000 images/s, eager 300 and 1000, and `compiled`.
    fn table_with(compiled: Option<Measurement>) -> String {
        let row = Row {
            model: Model::Student,
            kdtui: measured("kdtui", 600.0, 3000.0, None),
            reference: Some(measured("pytorch", 300.0, 1000.0, None)),
            compiled,
        };
        render(&Report { rows: vec![row], ..Report::default() })
    }

    #[test]
    fn each_throughput_has_its_ratio_to_eager_and_to_compiled() {
        let table = table_with(Some(measured("pytorch", 400.0, 6000.0, Some(42.34))));
        assert!(table.lines().next().unwrap().ends_with("compiled kdtui/compiled"), "{table}");
        assert_eq!(cells(&table, "train images/s"), ["600.0", "300.0", "2.00", "400.0", "1.50"]);
        assert_eq!(cells(&table, "inference images/s"), ["3000.0", "1000.0", "3.00", "6000.0", "0.50"]);
        assert_eq!(cells(&table, "compiling, longest s"), ["-", "-", "-", "42.3", "-"]);
        assert_eq!(cells(&table, "peak memory (RSS)").iter().filter(|c| **c == "MiB").count(), 3, "{table}");
    }

    #[test]
    fn without_the_compiled_variant_its_columns_are_left_out() {
        let table = table_with(None);
        assert!(!table.contains("compiled"), "{table}");
        assert_eq!(cells(&table, "train images/s"), ["600.0", "300.0", "2.00"]);
    }
}
