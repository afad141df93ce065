//! Drawing: pure functions of `App` onto a ratatui `Frame`. Nothing here
//! changes state, so tests can draw any state onto a `TestBackend`.

mod charts;
mod detail;
mod help;
mod status;
mod table;
pub mod table_view;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, NO_PAUSE_HINT};
use crate::outputs::state::PlanState;
use crate::util::format::clock;

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "kdtui needs at least {MIN_WIDTH}x{MIN_HEIGHT}; this terminal is {}x{}. Enlarge it (q quits).",
            area.width, area.height
        );
        frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let log_height = if area.height >= 36 { 7 } else { 4 };
    // The table takes the lines its rows need (borders, header, a line a
    // run), up to a share of the screen; the charts get the rest. The detail
    // view needs the rows of its heat map.
    let table_share: u16 = if app.detail { 30 } else { 45 };
    let rows = u16::try_from(app.study.runs.len()).unwrap_or(u16::MAX);
    let table_height = rows.saturating_add(3).clamp(4, (area.height * table_share / 100).max(4));
    let [header, table_area, charts, log, hint] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(table_height),
        Constraint::Min(8),
        Constraint::Length(log_height),
        Constraint::Length(1),
    ])
    .areas(area);
    status::render(app, frame, header);
    table::render(app, frame, table_area);
    if app.detail {
        detail::render(app, frame, charts);
    } else {
        let [run, sweep] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
        charts::render_run(app, frame, run);
        charts::render_sweep(app, frame, sweep);
    }
    render_log(app, frame, log);
    render_hint(app, frame, hint);
    if app.show_help {
        help::render(frame, area);
    }
    if app.confirm_quit {
        help::render_confirm(frame, area);
    }
}

fn render_log(app: &App, frame: &mut Frame, area: Rect) {
    let height = area.height.saturating_sub(2) as usize;
    let lines: Vec<Line> =
        app.study.log.iter().rev().take(height).rev().map(|(t, msg)| Line::from(format!("{} {msg}", clock(*t)))).collect();
    frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" log ")), area);
}

fn render_hint(app: &App, frame: &mut Frame, area: Rect) {
    let text = if app.table.typing_filter {
        format!(" filter: /{}▏ (a run-id prefix) · enter keeps it · esc clears it", app.table.filter)
    } else if app.study.watching.is_some() {
        format!(" s sort · ↑↓ select · m mark · d detail · / filter · ? help · q quit · {}", NO_PAUSE_HINT)
    } else {
        let pause = if app.study.state == PlanState::Paused { "p resume" } else { "p pause" };
        format!(" {pause} · s sort · r reverse · ↑↓/jk select · tab chart · m mark · d detail · / filter · ? help · q quit")
    };
    frame.render_widget(Paragraph::new(text).style(Style::default().add_modifier(Modifier::DIM)), area);
}
