//! Charts: the selected run's live step sparklines and per-epoch curves, and
//! the sweep (test accuracy against T, one line per loss).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::Line;
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, LegendPosition, Paragraph, Sparkline};
use ratatui::Frame;

use crate::monitor::app::{App, ChartFocus};
use crate::outputs::state::history::History;
use crate::outputs::state::RunRow;
use crate::outputs::stats::{planned_questions, Family, Sweep};
use crate::protocol::EpochMetrics;
use crate::study::Loss;

/// A legend name, its points and its colour.
type Series = (String, Vec<(f64, f64)>, Color);

/// A named line series in one colour.
fn line<'a>(name: &'a str, data: &'a [(f64, f64)], color: Color) -> Dataset<'a> {
    Dataset::default().name(name).marker(Marker::Braille).graph_type(GraphType::Line).style(Style::default().fg(color)).data(data)
}

fn sparkline_data(points: &[(f64, f64)], width: usize) -> Vec<u64> {
    let tail = &points[points.len().saturating_sub(width)..];
    let max = tail.iter().map(|p| p.1).fold(f64::MIN, f64::max).max(1e-9);
    tail.iter().map(|p| (p.1 / max * 1000.0).max(0.0) as u64).collect()
}

pub fn render_run(app: &App, frame: &mut Frame, area: Rect) {
    // Marked runs take the whole panel: the overlay needs room for its legend.
    if !app.table.marked.is_empty() {
        render_compare(app, frame, area);
        return;
    }
    let Some(row) = app.selected_row() else {
        frame.render_widget(Block::default().borders(Borders::ALL).title(" run "), area);
        return;
    };
    let [sparks, big] = Layout::vertical([Constraint::Length(6), Constraint::Min(4)]).areas(area);
    let [loss_area, acc_area] = Layout::vertical([Constraint::Length(3), Constraint::Length(3)]).areas(sparks);
    let inner = loss_area.width.saturating_sub(2) as usize;
    let last = |h: &History| h.last().map_or("–".into(), |p| format!("{:.3}", p.1));
    frame.render_widget(
        Sparkline::default()
            .data(sparkline_data(row.step_loss.points(), inner))
            .style(Style::default().fg(Color::Magenta))
            .block(Block::default().borders(Borders::ALL).title(format!(" {} · step loss {} ", row.spec.run_id, last(&row.step_loss)))),
        loss_area,
    );
    frame.render_widget(
        Sparkline::default()
            .data(sparkline_data(row.step_accuracy.points(), inner))
            .style(Style::default().fg(Color::Green))
            .block(Block::default().borders(Borders::ALL).title(format!(" step accuracy {} ", last(&row.step_accuracy)))),
        acc_area,
    );

    render_epochs(app, row, frame, big);
}

/// A run's value of the large chart's metric at an epoch.
fn metric(focus: ChartFocus) -> fn(&EpochMetrics) -> Option<f64> {
    match focus {
        ChartFocus::Accuracy => |m| Some(100.0 * m.test_accuracy),
        ChartFocus::Agreement => |m| m.diagnostics.as_ref()?.agreement.map(|a| 100.0 * a),
        ChartFocus::Loss => |m| Some(m.test_loss),
    }
}

fn metric_name(focus: ChartFocus) -> &'static str {
    match focus {
        ChartFocus::Accuracy => "test accuracy",
        ChartFocus::Agreement => "agreement with the teacher",
        ChartFocus::Loss => "test loss",
    }
}

/// Percentages on 0..100; a loss from 0 to a little above its largest value.
fn y_bounds(focus: ChartFocus, values: impl Iterator<Item = f64>) -> f64 {
    match focus {
        ChartFocus::Accuracy | ChartFocus::Agreement => 100.0,
        ChartFocus::Loss => values.filter(|v| v.is_finite()).fold(0.1, f64::max) * 1.1,
    }
}

/// The selected run's epochs: train and test (accuracy, loss), or its
/// agreement with the teacher (all images, and those the teacher gets wrong).
fn render_epochs(app: &App, row: &RunRow, frame: &mut Frame, area: Rect) {
    let epochs = row.epochs.max(row.history.len()).max(1) as f64;
    let per_epoch = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
        row.history.iter().filter_map(|m| Some((m.epoch as f64, f(m)?))).collect()
    };
    // The solid line is the metric compare mode overlays; the dotted one its companion.
    let solid = per_epoch(&metric(app.chart));
    let (title, dotted) = match app.chart {
        ChartFocus::Accuracy => (" accuracy per epoch (train ·, test ─) ", per_epoch(&|m| Some(100.0 * m.train_accuracy))),
        ChartFocus::Agreement => (
            " agreement with the teacher per epoch (on its errors ·, all ─) ",
            per_epoch(&|m| m.diagnostics.as_ref()?.agreement_on_teacher_errors.map(|a| 100.0 * a)),
        ),
        ChartFocus::Loss => (" loss per epoch (train ·, test ─) ", per_epoch(&|m| Some(m.train_loss))),
    };
    let y_max = y_bounds(app.chart, dotted.iter().chain(&solid).map(|p| p.1));
    let teacher: Vec<(f64, f64)> = match (app.chart, app.study.teacher_accuracy()) {
        (ChartFocus::Accuracy, Some(t)) => vec![(0.0, 100.0 * t), (epochs, 100.0 * t)],
        _ => vec![],
    };
    let (dotted_name, solid_name) = match app.chart {
        ChartFocus::Agreement => ("on errors", "agreement"),
        _ => ("train", "test"),
    };
    let mut datasets = vec![
        Dataset::default().name(dotted_name).marker(Marker::Dot).style(Style::default().fg(Color::Magenta)).data(&dotted),
        line(solid_name, &solid, Color::Cyan),
    ];
    if !teacher.is_empty() {
        datasets.push(line("teacher", &teacher, Color::Yellow));
    }
    let chart = Chart::new(datasets)
        .block(Block::default().borders(Borders::ALL).title(title))
        .x_axis(Axis::default().title("epoch").bounds([0.0, epochs]).labels(["0".to_string(), format!("{epochs:.0}")]))
        .y_axis(Axis::default().bounds([0.0, y_max]).labels(["0".to_string(), format!("{y_max:.0}")]));
    frame.render_widget(chart, area);
}

/// The marked runs' epochs of the chosen metric, one colour each, with a legend.
fn render_compare(app: &App, frame: &mut Frame, area: Rect) {
    let value = metric(app.chart);
    // (run id, its points, its colour)
    type Series<'a> = (&'a str, Vec<(f64, f64)>, Color);
    let series: Vec<Series> = app
        .table
        .marked
        .iter()
        .filter_map(|id| {
            let row = app.study.row(id)?;
            let points = row.history.iter().filter_map(|m| Some((m.epoch as f64, value(m)?))).collect();
            Some((row.spec.run_id.as_str(), points, app.table.mark_color(id)?))
        })
        .collect();
    let epochs =
        app.table.marked.iter().filter_map(|id| app.study.row(id)).map(|r| r.epochs.max(r.history.len())).max().unwrap_or(1).max(1) as f64;
    let y_max = y_bounds(app.chart, series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
    let datasets: Vec<Dataset> = series.iter().map(|(name, points, color)| line(name, points, *color)).collect();
    let title = format!(" compare {} runs: {} per epoch (tab: next; m unmarks) ", series.len(), metric_name(app.chart));
    let chart = Chart::new(datasets)
        .block(Block::default().borders(Borders::ALL).title(title))
        .legend_position(Some(LegendPosition::BottomRight))
        .hidden_legend_constraints((Constraint::Percentage(60), Constraint::Percentage(80)))
        .x_axis(Axis::default().title("epoch").bounds([0.0, epochs]).labels(["0".to_string(), format!("{epochs:.0}")]))
        .y_axis(Axis::default().bounds([0.0, y_max]).labels(["0".to_string(), format!("{y_max:.0}")]));
    frame.render_widget(chart, area);
}

pub fn render_sweep(app: &App, frame: &mut Frame, area: Rect) {
    let groups = app.study.results.groups();
    let mut block = Block::default().borders(Borders::ALL).title(" sweep: test accuracy vs T, log axis (soft ·) ");
    // The report's verdicts, as they stand: the planned comparisons, Holm-corrected.
    // Short enough for the half-width panel of a 120-column terminal.
    let family = Family::test(&planned_questions(&app.study.results.planned), &groups, app.study.results.test_images);
    if family.size() > 0 {
        let resolved = family.comparisons.iter().filter(|c| c.resolved()).count();
        block =
            block.title_bottom(format!(" {resolved} of {} planned comparisons resolved ({} made, Holm 5%) ", family.size(), family.made()));
    }
    let mut temps: Vec<f64> = app.study.runs.iter().filter_map(|r| r.spec.temperature).collect();
    temps.sort_by(f64::total_cmp);
    temps.dedup();
    if temps.is_empty() {
        frame.render_widget(Paragraph::new("no distillation runs in this plan").block(block), area);
        return;
    }
    // Mean over seeds of each finished (kind, loss, T) cell.
    let sweep = Sweep::of(&groups);
    // x is log10(T): 5 to 100 spans more than a decade.
    let (t0, t1) = (temps[0].log10(), temps.last().unwrap().log10());
    let (x0, x1) = if t0 == t1 { (t0 - 0.1, t1 + 0.1) } else { (t0, t1) };
    let lines: Vec<Series> = sweep
        .lines
        .iter()
        .map(|(loss, points)| {
            let name = if loss.needs_teacher() { loss.name().to_string() } else { format!("{}, no teacher", loss.name()) };
            (name, points.iter().map(|p| (p.temperature.log10(), 100.0 * p.mean)).collect(), loss_color(*loss))
        })
        .collect();
    let level = |a: Option<f64>| a.map_or(vec![], |a| vec![(x0, 100.0 * a), (x1, 100.0 * a)]);
    let (teacher, baseline) = (level(sweep.teacher), level(sweep.baseline));
    let all: Vec<f64> = lines.iter().map(|l| &l.1).chain([&teacher, &baseline]).flat_map(|v| v.iter().map(|p| p.1)).collect();
    let y_min = all.iter().copied().fold(100.0, f64::min).min(90.0).floor();
    // `soft` as dots: at high T it sits far from the rest, and a line to it
    // would cross the others.
    let shape = |name: &str| if name == Loss::Soft.name() { (GraphType::Scatter, Marker::Dot) } else { (GraphType::Line, Marker::Braille) };
    let mut datasets: Vec<Dataset> = lines
        .iter()
        .map(|(name, data, color)| {
            let (kind, marker) = shape(name);
            Dataset::default().name(name.as_str()).data(data).style(Style::default().fg(*color)).graph_type(kind).marker(marker)
        })
        .collect();
    for (name, data, color) in [("teacher", &teacher, Color::Yellow), ("baseline", &baseline, Color::Red)] {
        if !data.is_empty() {
            datasets.push(line(name, data, color));
        }
    }
    // Labels spread evenly over the axis, so evenly in log T: each says the T at its place.
    let x_labels: Vec<String> = match temps.len() {
        1 => vec![format!("{:.0}", temps[0])],
        2 => [x0, x1].iter().map(|x| format!("{:.0}", 10f64.powf(*x))).collect(),
        _ => [x0, (x0 + x1) / 2.0, x1].iter().map(|x| format!("{:.0}", 10f64.powf(*x))).collect(),
    };
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(Axis::default().title("T").bounds([x0, x1]).labels(x_labels))
        .y_axis(Axis::default().title("%").bounds([y_min, 100.0]).labels([format!("{y_min:.0}"), "100".to_string()]));
    frame.render_widget(chart, area);
    if lines.is_empty() {
        let [_, note] = Layout::vertical([Constraint::Min(0), Constraint::Length(2)]).areas(area);
        frame.render_widget(Paragraph::new(Line::from("  fills in as distillation runs finish")), note);
    }
}

/// A colour per loss, by its place in the registry, as the report's figures do.
pub fn loss_color(loss: Loss) -> Color {
    const PALETTE: [Color; 8] =
        [Color::Gray, Color::Magenta, Color::Cyan, Color::Green, Color::LightBlue, Color::LightRed, Color::LightYellow, Color::White];
    PALETTE[loss.index() % PALETTE.len()]
}
