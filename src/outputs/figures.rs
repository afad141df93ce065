//! The report's figures, drawn with plotters into memory and written as PNG:
//! every run's curves (`figures/<run_id>.png`), the sweep
//! (`figures/sweep.png`: test accuracy against T, a line per loss), agreement
//! with the teacher against T, and the effects (`figures/effects.png`: each
//! cell's difference to the student without a teacher, with its interval).

use std::path::Path;
use std::sync::Once;

use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::store::Results;
use crate::protocol::{Diagnostics, EpochMetrics, RunResult};
use crate::study::Loss;
use crate::util::atomic_file::{self, WriteError};

mod study;
pub use study::{agreement_figure, effects_figure, sweep_figure};

/// DejaVu Sans (its licence beside it in assets/): plotters draws text with
/// ab_glyph from font bytes it is given, not from the system's fonts.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("drawing {path}: {message}")]
    Draw { path: String, message: String },
    #[error(transparent)]
    Write(#[from] WriteError),
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            unreachable!("the embedded font parses");
        }
    });
}

/// A colour per loss, by its place in the registry (`Loss::index`), so a loss
/// has the same colour in every figure whatever else the plan runs.
const PALETTE: [RGBColor; 8] = [
    RGBColor(90, 90, 90),
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// The study's distillation losses with their colours.
fn loss_colors(results: &Results) -> Vec<(Loss, RGBColor)> {
    results.losses().into_iter().map(|loss| (loss, PALETTE[loss.index() % PALETTE.len()])).collect()
}
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const TEST: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(90, 90, 90);

/// Draws with `draw` on a white `size` canvas and writes it to `path` as PNG.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), String>,
) -> Result<(), FigureError> {
    register_font();
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        let err = |message: String| FigureError::Draw { path: path.display().to_string(), message };
        draw(&root).map_err(err)?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("PNG header in memory");
        writer.write_image_data(&rgb).expect("PNG data in memory");
    }
    atomic_file::write(path, &bytes)?;
    Ok(())
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Axis range with a margin, never empty.
fn span(values: impl Iterator<Item = f64>, margin: f64, floor: Option<f64>, ceil: Option<f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
    // A flat series (one epoch) still gets a readable window around it.
    let pad = ((hi - lo) * margin).max(lo.abs().max(hi.abs()) * 0.05).max(1e-3);
    let lo = floor.map_or(lo - pad, |f| (lo - pad).max(f));
    let hi = ceil.map_or(hi + pad, |c| (hi + pad).min(c));
    (lo, if hi > lo { hi } else { lo + 1.0 })
}

/// One run, per epoch: accuracy (train and test), the training objective,
/// and the test loss. The two losses get panels of their own: a distilled
/// run's objective carries c = T^2 times its soft term, hundreds of times the
/// test loss, and would flatten it on a shared axis.
pub fn run_figure(run: &RunResult, path: &Path) -> Result<(), FigureError> {
    let diagnostics = run.diagnostics();
    let columns = if diagnostics.is_some() { 4 } else { 3 };
    render(path, (400 * columns as u32, 380), |root| {
        // A strip on top of every panel, for the legend (inside the plot it would hide points).
        let (strips, panels) = root.split_vertically(26);
        let (strips, panels) = (strips.split_evenly((1, columns)), panels.split_evenly((1, columns)));
        if let Some(d) = diagnostics {
            reliability(&panels[3], d)?;
        }
        let epochs = run.history.len().max(1) as f64;
        let per_epoch = |f: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> { run.history.iter().map(|m| (m.epoch as f64, f(m))).collect() };
        let acc = [(TRAIN, per_epoch(|m| 100.0 * m.train_accuracy)), (TEST, per_epoch(|m| 100.0 * m.test_accuracy))];
        curves(&panels[0], &format!("{}: accuracy", run.run_id), "accuracy (%)", epochs, &acc, Some((0.0, 100.0)))?;
        let labels = [("train".to_string(), Sample::Dot(TRAIN)), ("test (whole test set)".to_string(), Sample::Dot(TEST))];
        legend_row(&strips[0], &labels, (72, 16))?;
        let train = [(TRAIN, per_epoch(|m| m.train_loss))];
        curves(&panels[1], "training objective (epoch mean)", "loss", epochs, &train, Some((0.0, f64::MAX)))?;
        let test = [(TEST, per_epoch(|m| m.test_loss))];
        curves(&panels[2], "test loss (hard-label cross-entropy)", "loss", epochs, &test, Some((0.0, f64::MAX)))
    })
}

/// The reliability diagram of a test-set pass: accuracy against mean
/// confidence per bin (a bar per non-empty bin), the diagonal of a
/// calibrated model, and the ECE in the title.
fn reliability(area: &DrawingArea<BitMapBackend, Shift>, d: &Diagnostics) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .caption(format!("reliability, final epoch (ECE {:.3})", d.ece), (FAMILY, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..1.0, 0.0..1.0)
        .map_err(s)?;
    let (bold, light) = mesh_colors();
    chart
        .configure_mesh()
        .bold_line_style(bold)
        .light_line_style(light)
        .x_desc("confidence (top-1 probability)")
        .y_desc("accuracy")
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(s)?;
    let width = 1.0 / d.bins.len() as f64;
    let bars = d.bins.iter().enumerate().filter(|(_, b)| b.images > 0).map(|(i, b)| {
        let accuracy = f64::from(b.correct) / f64::from(b.images);
        Rectangle::new([(i as f64 * width, 0.0), ((i + 1) as f64 * width, accuracy)], TEST.mix(0.6).filled())
    });
    chart.draw_series(bars).map_err(s)?;
    chart.draw_series(std::iter::once(PathElement::new(vec![(0.0, 0.0), (1.0, 1.0)], GREY.stroke_width(1)))).map_err(s)?;
    // Where each bin's mean confidence lies: on the diagonal when calibrated.
    let means = d.bins.iter().filter(|b| b.images > 0).map(|b| {
        let confidence = b.confidence_sum / f64::from(b.images);
        Circle::new((confidence, f64::from(b.correct) / f64::from(b.images)), 3, BLACK.filled())
    });
    chart.draw_series(means).map_err(s)?;
    Ok(())
}

/// A chart of percentages against T on a log axis, its mesh drawn, with a
/// tick at each temperature in `ticks` (sorted, as `temperatures` gives them;
/// the axis reaches a quarter beyond both ends): 5 to 100 spans more than a decade,
/// and on a linear axis the points at 5, 15 and 25 crowd together; the
/// axis's own ticks (10, 20, ...) left the lowest T unlabelled.
fn against_temperature<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    caption: String,
    y_desc: &str,
    ticks: Vec<f64>,
    (y0, y1): (f64, f64),
) -> Result<ChartContext<'a, BitMapBackend<'b>, AgainstT>, String> {
    let (t_min, t_max) = (ticks.first().map_or(1.0, |t| t / 1.25), ticks.last().map_or(100.0, |t| t * 1.25));
    let decimals = tick_decimals(y1 - y0);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d((t_min..t_max).log_scale().with_key_points(ticks), y0..y1)
        .map_err(s)?;
    let (bold, light) = mesh_colors();
    chart
        .configure_mesh()
        .bold_line_style(bold)
        .light_line_style(light)
        .x_desc("temperature T (log scale)")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.decimals$}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(s)?;
    Ok(chart)
}

/// A vertical bar from `lo` to `hi` at `x` with caps `cap` times to either
/// side (a factor: the T axis is logarithmic).
fn error_bar(
    chart: &mut ChartContext<BitMapBackend, AgainstT>,
    x: f64,
    (lo, hi): (f64, f64),
    cap: f64,
    style: ShapeStyle,
) -> Result<(), String> {
    for segment in [vec![(x, lo), (x, hi)], vec![(x / cap, lo), (x * cap, lo)], vec![(x / cap, hi), (x * cap, hi)]] {
        chart.draw_series(std::iter::once(PathElement::new(segment, style))).map_err(s)?;
    }
    Ok(())
}

/// Log T (ticks at given temperatures) by a linear percentage.
type AgainstT = Cartesian2d<WithKeyPoints<LogCoord<f64>>, RangedCoordf64>;

/// The distinct temperatures, in order.
fn temperatures(ts: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut ts: Vec<f64> = ts.collect();
    ts.sort_by(f64::total_cmp);
    ts.dedup();
    ts
}

/// A line: its colour and (epoch, value) points.
type Curve = (RGBColor, Vec<(f64, f64)>);

fn mesh_colors() -> (RGBColor, RGBColor) {
    (RGBColor(200, 200, 200), RGBColor(236, 236, 236))
}

/// Tick labels with as many decimals as the axis span needs.
fn tick_decimals(span: f64) -> usize {
    (1.0 - span.log10().floor()).clamp(0.0, 4.0) as usize
}

/// Lines over epochs, with markers.
fn curves(
    area: &DrawingArea<BitMapBackend, Shift>,
    title: &str,
    y_desc: &str,
    epochs: f64,
    lines: &[Curve],
    clamp: Option<(f64, f64)>,
) -> Result<(), String> {
    let (floor, ceil) = clamp.map_or((None, None), |(f, c)| (Some(f), Some(c)));
    let (y0, y1) = span(lines.iter().flat_map(|l| l.1.iter().map(|p| p.1)), 0.08, floor, ceil);
    let decimals = tick_decimals(y1 - y0);
    let y_format = move |y: &f64| format!("{y:.decimals$}");
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..epochs + 0.5, y0..y1)
        .map_err(s)?;
    let (bold, light) = mesh_colors();
    chart
        .configure_mesh()
        .bold_line_style(bold)
        .light_line_style(light)
        .x_desc("epoch")
        .y_desc(y_desc)
        .x_labels((epochs as usize).clamp(2, 12))
        .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-9 { format!("{x:.0}") } else { String::new() })
        .y_label_formatter(&y_format)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .draw()
        .map_err(s)?;
    for (color, points) in lines {
        let color = *color;
        chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2))).map_err(s)?;
        // Markers, so a run of one epoch still shows its point.
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(s)?;
    }
    Ok(())
}

/// A legend entry's sample: a line (dashed or not), a line with a dot, a
/// triangle, or nothing (a line of explanation).
enum Sample {
    Line(RGBColor, bool),
    Dot(RGBColor),
    Triangle(RGBColor),
    Note,
}

/// A legend entry's sample at `(x, y)` (its left end), 24 pixels wide.
fn sample(area: &DrawingArea<BitMapBackend, Shift>, sample: &Sample, (x, y): (i32, i32)) -> Result<(), String> {
    match *sample {
        Sample::Line(c, dashed) => {
            let first = if dashed { x + 9 } else { x + 24 };
            area.draw(&PathElement::new(vec![(x, y), (first, y)], c.stroke_width(2))).map_err(s)?;
            if dashed {
                area.draw(&PathElement::new(vec![(x + 15, y), (x + 24, y)], c.stroke_width(2))).map_err(s)?;
            }
        }
        Sample::Dot(c) => {
            area.draw(&PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2))).map_err(s)?;
            area.draw(&Circle::new((x + 12, y), 4, c.filled())).map_err(s)?;
        }
        Sample::Triangle(c) => area.draw(&TriangleMarker::new((x + 12, y), 7, c.filled())).map_err(s)?,
        Sample::Note => {}
    }
    Ok(())
}

/// Entries one under the other, from the top of `area`.
fn legend(area: &DrawingArea<BitMapBackend, Shift>, entries: &[(String, Sample)]) -> Result<(), String> {
    let (x, mut y) = (10, 60);
    for (label, entry) in entries {
        sample(area, entry, (x, y))?;
        area.draw(&Text::new(label.clone(), (x + 34, y - 8), (FAMILY, 14))).map_err(s)?;
        y += 26;
    }
    Ok(())
}

/// Entries side by side, starting at `(x, y)` in `area`.
fn legend_row(area: &DrawingArea<BitMapBackend, Shift>, entries: &[(String, Sample)], (mut x, y): (i32, i32)) -> Result<(), String> {
    for (label, entry) in entries {
        sample(area, entry, (x, y))?;
        area.draw(&Text::new(label.clone(), (x + 30, y - 8), (FAMILY, 13))).map_err(s)?;
        x += 30 + 8 * label.len() as i32 + 18;
    }
    Ok(())
}
