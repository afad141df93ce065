//! The study's figures: test accuracy against T (the sweep), each cell's
//! difference to the student without a teacher (the effects), and the
//! agreement with the teacher against T.

use std::path::Path;

use plotters::prelude::*;

use super::{against_temperature, error_bar, legend, loss_colors, render, s, span, temperatures, Curve, FigureError, Sample, GREY};
use crate::outputs::stats::{planned_questions, Family, Question, Sweep};
use crate::outputs::store::Results;
use crate::study::{original, Loss, RunKind};

/// Top-1 agreement with the teacher against T (log axis), a line per loss
/// (mean over seeds), the student without a teacher as a dashed line. False
/// when no distilled run has diagnostics.
pub fn agreement_figure(results: &Results, path: &Path) -> Result<bool, FigureError> {
    let groups = results.groups();
    let lines: Vec<(Loss, Curve)> = loss_colors(results)
        .into_iter()
        .map(|(loss, color)| {
            let mut points: Vec<(f64, f64)> = groups
                .iter()
                .filter(|g| g.kind == RunKind::Distill && g.loss == loss)
                .filter_map(|g| Some((g.temperature?, 100.0 * g.fidelity.agreement?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (loss, (color, points))
        })
        .filter(|(_, (_, points))| !points.is_empty())
        .collect();
    if lines.is_empty() {
        return Ok(false);
    }
    let baseline = groups.iter().find(|g| g.kind == RunKind::Baseline).and_then(|g| g.fidelity.agreement).map(|a| 100.0 * a);
    let ts = || lines.iter().flat_map(|(_, (_, points))| points.iter().map(|p| p.0));
    let (y0, y1) = span(lines.iter().flat_map(|(_, (_, points))| points.iter().map(|p| p.1)).chain(baseline), 0.1, Some(0.0), Some(100.0));
    render(path, (1100, 520), |root| {
        let (root, side) = root.split_horizontally(800);
        let caption = format!("{}: top-1 agreement with the teacher against temperature", results.plan);
        let mut chart = against_temperature(&root, caption, "agreement with the teacher (%)", temperatures(ts()), (y0, y1))?;
        let t = chart.x_range();
        let mut entries = vec![];
        if let Some(v) = baseline {
            chart.draw_series(DashedLineSeries::new([(t.start, v), (t.end, v)], 10, 6, GREY.stroke_width(2))).map_err(s)?;
            entries.push((format!("student, no teacher: {v:.1}%"), Sample::Line(GREY, true)));
        }
        for (loss, (color, points)) in &lines {
            chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2))).map_err(s)?;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(s)?;
            entries.push((loss.name().to_string(), Sample::Dot(*color)));
        }
        legend(&side, &entries)
    })?;
    Ok(true)
}

/// The sweep: test accuracy against T, a line per loss (mean over seeds, bars
/// of one standard deviation where there are several), the teacher and the
/// student without a teacher as horizontal lines, and the original study's
/// single-batch numbers as hollow triangles. False when the plan has no
/// distilled run to draw.
pub fn sweep_figure(results: &Results, path: &Path) -> Result<bool, FigureError> {
    let sweep = Sweep::of(&results.groups());
    if sweep.lines.is_empty() {
        return Ok(false);
    }
    let (teacher, baseline) = (sweep.teacher.map(|a| 100.0 * a), sweep.baseline.map(|a| 100.0 * a));
    let colors = loss_colors(results);
    let originals: Vec<(Loss, f64, f64)> = colors
        .iter()
        .flat_map(|&(loss, _)| {
            original::TEMPERATURES.iter().filter_map(move |&t| original::distilled_accuracy(loss, t).map(|a| (loss, t, 100.0 * a)))
        })
        .collect();
    let ours = || sweep.lines.iter().flat_map(|(_, points)| points);
    // Ours and the original's temperatures share the axis.
    let ts = || ours().map(|p| p.temperature).chain(original::TEMPERATURES);
    let ys = ours()
        .flat_map(|p| [100.0 * (p.mean - p.std), 100.0 * (p.mean + p.std)])
        .chain(originals.iter().map(|o| o.2))
        .chain(teacher)
        .chain(baseline);
    let (y0, y1) = span(ys, 0.06, Some(0.0), Some(100.0));
    render(path, (1300, 620), |root| {
        let (root, side) = root.split_horizontally(960);
        let mut entries: Vec<(String, Sample)> = Vec::new();
        let seeds = ours().map(|p| p.seeds).max().unwrap_or(1);
        let caption = format!(
            "{}: test accuracy against temperature ({})",
            results.plan,
            if seeds > 1 { format!("mean ± std over {seeds} seeds") } else { "one seed".into() }
        );
        let mut chart = against_temperature(&root, caption, "test accuracy (%)", temperatures(ts()), (y0, y1))?;
        let t = chart.x_range();
        for (label, value, dashed) in [("teacher (ours)", teacher, false), ("student, no teacher (ours)", baseline, true)] {
            let Some(v) = value else { continue };
            let line = [(t.start, v), (t.end, v)];
            let style = GREY.stroke_width(2);
            if dashed {
                chart.draw_series(DashedLineSeries::new(line, 10, 6, style)).map_err(s)?;
            } else {
                chart.draw_series(LineSeries::new(line, style)).map_err(s)?;
            }
            entries.push((format!("{label}: {v:.1}%"), Sample::Line(GREY, dashed)));
        }
        for &(loss, color) in &colors {
            let cells = sweep.line(loss);
            let points: Vec<(f64, f64)> = cells.iter().map(|p| (p.temperature, 100.0 * p.mean)).collect();
            if !points.is_empty() {
                chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2))).map_err(s)?;
                let teacher = if loss.needs_teacher() { "" } else { ", no teacher" };
                entries.push((format!("{} (ours{teacher})", loss.name()), Sample::Dot(color)));
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(s)?;
            }
            for p in cells.iter().filter(|p| p.seeds > 1) {
                let bar = (100.0 * (p.mean - p.std), 100.0 * (p.mean + p.std));
                error_bar(&mut chart, p.temperature, bar, 1.03, color.stroke_width(1))?;
            }
            let orig: Vec<(f64, f64)> = originals.iter().filter(|o| o.0 == loss).map(|o| (o.1, o.2)).collect();
            if !orig.is_empty() {
                chart.draw_series(orig.iter().map(|&p| TriangleMarker::new(p, 7, color.filled()))).map_err(s)?;
                entries.push((format!("{} (original study)", loss.name()), Sample::Triangle(color)));
            }
        }
        if seeds > 1 {
            entries.push(("bars: ± one std over seeds".into(), Sample::Line(BLACK, false)));
        }
        entries.push(("original: each read off one".into(), Sample::Note));
        entries.push(("256-image batch".into(), Sample::Note));
        legend(&side, &entries)
    })?;
    Ok(true)
}

/// Each distilled cell's difference to the student without a teacher
/// against T, a line of points per loss (nudged apart along T so their bars
/// do not overlap), with its simultaneous interval; filled where the
/// difference is resolved after Holm's correction, hollow where it is not.
/// False when no such comparison could be made (one seed, no baseline).
pub fn effects_figure(results: &Results, path: &Path) -> Result<bool, FigureError> {
    let groups = results.groups();
    let family = Family::test(&planned_questions(&results.planned), &groups, results.test_images);
    /// A cell's difference to the baseline and its interval, in points.
    struct Effect {
        loss: Loss,
        temperature: f64,
        difference: f64,
        interval: (f64, f64),
        resolved: bool,
    }
    let points: Vec<Effect> = family
        .comparisons
        .iter()
        .filter_map(|c| match c.question {
            Question::AgainstBaseline { loss, temperature } => {
                Some(Effect { loss, temperature, difference: c.difference_points()?, interval: c.interval?, resolved: c.resolved() })
            }
            Question::TeacherAgainstLabels { .. } => None,
        })
        .collect();
    if points.is_empty() {
        return Ok(false);
    }
    let ys = points.iter().flat_map(|p| [p.interval.0, p.interval.1]).chain([0.0]);
    let (y0, y1) = span(ys, 0.08, None, None);
    let seeds = groups.iter().filter(|g| g.kind == RunKind::Baseline).map(|g| g.seeds).max().unwrap_or(0);
    render(path, (1300, 620), |root| {
        let (root, side) = root.split_horizontally(960);
        let caption = format!("{}: each cell minus the student without a teacher ({seeds} seeds)", results.plan);
        let ticks = temperatures(points.iter().map(|p| p.temperature));
        let mut chart = against_temperature(&root, caption, "difference in test accuracy (points)", ticks, (y0, y1))?;
        let t = chart.x_range();
        chart.draw_series(DashedLineSeries::new([(t.start, 0.0), (t.end, 0.0)], 10, 6, GREY.stroke_width(2))).map_err(s)?;
        let mut entries = vec![("0: the student without a teacher".to_string(), Sample::Line(GREY, true))];
        let colors = loss_colors(results);
        let middle = (colors.len() as f64 - 1.0) / 2.0;
        for (k, &(loss, color)) in colors.iter().enumerate() {
            let nudge = 1.06f64.powf(k as f64 - middle);
            let mine: Vec<&Effect> = points.iter().filter(|p| p.loss == loss).collect();
            if mine.is_empty() {
                continue;
            }
            for p in mine {
                let x = p.temperature * nudge;
                error_bar(&mut chart, x, p.interval, 1.015, color.stroke_width(2))?;
                let style = if p.resolved { color.filled() } else { WHITE.filled() };
                chart.draw_series(std::iter::once(Circle::new((x, p.difference), 6, style))).map_err(s)?;
                chart.draw_series(std::iter::once(Circle::new((x, p.difference), 6, color.stroke_width(2)))).map_err(s)?;
            }
            entries.push((crate::outputs::report::loss_heading(loss), Sample::Dot(color)));
        }
        entries.push(("filled: resolved (Holm, 5%)".into(), Sample::Note));
        entries.push(("hollow: not resolved".into(), Sample::Note));
        entries.push(("bars: simultaneous 95%".into(), Sample::Note));
        entries.push((format!("intervals over {} comparisons", family.size()), Sample::Note));
        // Holm's later steps are less strict than the bars' Bonferroni level.
        entries.push(("Holm may also resolve a point".into(), Sample::Note));
        entries.push(("whose bar just reaches 0".into(), Sample::Note));
        legend(&side, &entries)
    })?;
    Ok(true)
}
