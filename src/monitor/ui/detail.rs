//! The detail of the selected run (`d`): its per-class test accuracy beside
//! the teacher's, its confusion matrix as a heat map, and its agreement with
//! the teacher, KL and calibration per epoch, from the last epoch's
//! diagnostics the run's events carried; once it has finished, what its
//! model measured at inference (`Deployment`).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Borders, Paragraph};
use ratatui::Frame;

use crate::monitor::app::App;
use crate::outputs::state::RunRow;
use crate::protocol::{Deployment, Diagnostics};
use crate::study::RunKind;
use crate::util::format::thousands;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(row) = app.selected_row() else {
        frame.render_widget(Block::default().borders(Borders::ALL).title(" detail: no run selected "), area);
        return;
    };
    let title = format!(" detail of {} (d or esc closes) ", row.spec.run_id);
    let Some(d) = row.diagnostics() else {
        let text = "no test-set pass yet: the detail fills in at the end of the run's first epoch";
        frame.render_widget(Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(title)), area);
        return;
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let mut inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(line) = row.result.as_ref().and_then(|r| Some(served(r.deployment.as_ref()?))) {
        let [top, bottom] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
        frame.render_widget(Paragraph::new(line), bottom);
        inner = top;
    }
    let [classes, confusion, epochs] =
        Layout::horizontal([Constraint::Length(32), Constraint::Length(34), Constraint::Min(20)]).spacing(1).areas(inner);
    let teacher = app.study.runs.iter().find(|r| r.spec.kind == RunKind::Teacher && r.spec.run_id != row.spec.run_id);
    per_class(frame, classes, d, teacher.and_then(RunRow::diagnostics));
    heat_map(frame, confusion, d);
    fidelity_per_epoch(frame, epochs, row);
}

/// What the finished model measured at inference after training.
fn served(d: &Deployment) -> String {
    match &d.integer {
        None => format!("served: fp32 {} img/s", thousands(d.float_images_per_sec)),
        Some(i) => format!(
            "served: integer engine {} img/s, {:.2}x fp32 ({}); same class {}/{}; {}",
            thousands(i.images_per_sec),
            i.images_per_sec / d.float_images_per_sec,
            thousands(d.float_images_per_sec),
            i.same_class,
            i.images,
            i.kernel
        ),
    }
}

/// Test accuracy per class: the run's bar, then the teacher's.
fn per_class(frame: &mut Frame, area: Rect, d: &Diagnostics, teacher: Option<&Diagnostics>) {
    let ours = d.per_class_accuracy();
    let theirs = teacher.map(Diagnostics::per_class_accuracy).unwrap_or_default();
    let pct = |a: Option<f64>| (100.0 * a.unwrap_or(0.0)).round() as u64;
    let groups: Vec<BarGroup> = ours
        .iter()
        .enumerate()
        .map(|(class, &a)| {
            let mut bars = vec![Bar::default().value(pct(a)).text_value(String::new()).style(Style::default().fg(Color::Cyan))];
            if let Some(&t) = theirs.get(class) {
                bars.push(Bar::default().value(pct(t)).text_value(String::new()).style(Style::default().fg(Color::Yellow)));
            }
            BarGroup::default().label(Line::from(class.to_string())).bars(&bars)
        })
        .collect();
    let mut chart = BarChart::default().bar_width(1).bar_gap(0).group_gap(1).max(100);
    for g in groups {
        chart = chart.data(g);
    }
    let title = if teacher.is_some() { "per-class acc: run, teacher" } else { "per-class test accuracy" };
    let [head, bars] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    frame.render_widget(Paragraph::new(Line::from(Span::styled(title, Style::default().add_modifier(Modifier::BOLD)))), head);
    frame.render_widget(chart, bars);
}

/// Rows = true class, columns = predicted; each cell is its share of its
/// row in percent (whatever the test set's size), shaded by it: a bright
/// diagonal is a good model.
fn heat_map(frame: &mut Frame, area: Rect, d: &Diagnostics) {
    let k = d.classes();
    let mut lines = vec![Line::from(Span::styled("confusion, % of each true class", Style::default().add_modifier(Modifier::BOLD)))];
    lines.push(Line::from(format!("t\\p{}", (0..k).map(|c| format!("{c:>3}")).collect::<String>())));
    for (truth, row) in d.confusion.chunks_exact(k.max(1)).enumerate() {
        let total = row.iter().sum::<u32>().max(1);
        let mut spans = vec![Span::raw(format!("{truth:>2} "))];
        for &n in row {
            let share = f64::from(n) / f64::from(total);
            let level = (40.0 + 215.0 * share) as u8;
            let (bg, fg) = if n == 0 { (Color::Reset, Color::DarkGray) } else { (Color::Rgb(0, level / 2, level), Color::White) };
            spans.push(Span::styled(format!("{:>3.0}", 100.0 * share), Style::default().bg(bg).fg(fg)));
        }
        lines.push(Line::from(spans));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// Agreement (all images, the teacher's errors), KL at 1 and T, ECE per epoch.
fn fidelity_per_epoch(frame: &mut Frame, area: Rect, row: &RunRow) {
    let f = |x: Option<f64>, pct: bool| match x {
        Some(x) if pct => format!("{:>6.1}", 100.0 * x),
        Some(x) => format!("{x:>6.3}"),
        None => format!("{:>6}", "–"),
    };
    let mut lines = vec![
        Line::from(Span::styled("fidelity and calibration per epoch", Style::default().add_modifier(Modifier::BOLD))),
        Line::from("epoch  agree  t.err  KL(1)  KL(T)    ECE"),
    ];
    let shown = area.height.saturating_sub(2) as usize;
    let diagnosed: Vec<_> = row.history.iter().filter_map(|m| Some((m.epoch, m.diagnostics.as_ref()?))).collect();
    for (epoch, d) in diagnosed.iter().skip(diagnosed.len().saturating_sub(shown)) {
        lines.push(Line::from(format!(
            "{epoch:>5} {} {} {} {} {}",
            f(d.agreement, true),
            f(d.agreement_on_teacher_errors, true),
            f(d.kl_t1, false),
            f(d.kl_t, false),
            f(Some(d.ece), false)
        )));
    }
    frame.render_widget(Paragraph::new(lines), area);
}
