//! The header: plan, data, device, state, progress, time, throughput.

use std::time::Duration;

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use crate::monitor::app::App;
use crate::outputs::state::PlanState;
use crate::util::format::clock;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let state_style = match app.study.state {
        PlanState::Running | PlanState::Watching => Style::default().fg(Color::Green),
        PlanState::Paused | PlanState::Stopping => Style::default().fg(Color::Yellow),
        PlanState::Failed(_) => Style::default().fg(Color::Red),
        _ => Style::default(),
    }
    .add_modifier(Modifier::BOLD | Modifier::REVERSED);
    let (run_eta, plan_eta) = app.study.eta();
    let eta = |d: Option<Duration>| d.map_or("–".to_string(), clock);
    let mut first = vec![
        Span::styled(format!(" {} ", app.study.state.label()), state_style),
        Span::raw(format!(
            "  plan {}  ·  runs {}/{}  ·  elapsed {}  ·  run ETA {}  ·  plan ETA {}",
            app.study.plan,
            app.study.done_count(),
            app.study.runs.len(),
            clock(app.study.elapsed),
            eta(run_eta),
            eta(plan_eta)
        )),
    ];
    if let Some(t) = app.study.throughput() {
        first.push(Span::raw(format!("  ·  {t:.0} img/s")));
    }

    let mut second = format!(" {}  ·  {}", app.study.data, app.study.device);
    if let Some(dir) = &app.study.watching {
        second = format!(" watching {} (read-only)  ·  {}  ·  {}", dir.display(), app.study.data, app.study.device);
    }
    let mut second = vec![Span::raw(second)];
    if let PlanState::Failed(why) = &app.study.state {
        second = vec![Span::raw(format!(" training failed: {why}"))];
    } else if app.study.compiling_kernels() {
        second.push(Span::styled("  ·  compiling kernels (first steps on the GPU)", Style::default().fg(Color::Yellow)));
    }
    frame.render_widget(Paragraph::new(vec![Line::from(first), Line::from(second)]).block(Block::default().borders(Borders::BOTTOM)), area);
}
