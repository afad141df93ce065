//! The help overlay, generated from the key table, and the quit question.

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use crate::monitor::keys;

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(height)]).flex(Flex::Center).areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width)]).flex(Flex::Center).areas(v);
    h
}

pub fn render(frame: &mut Frame, area: Rect) {
    let lines: Vec<Line> = keys::help_lines().into_iter().map(|(keys, what)| Line::from(format!(" {keys:<16} {what}"))).collect();
    let width = lines.iter().map(Line::width).max().unwrap_or(0) as u16 + 3;
    let popup = centered(area, width.max(40).min(area.width), (lines.len() as u16 + 2).min(area.height));
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys (? or esc closes) ")), popup);
}

pub fn render_confirm(frame: &mut Frame, area: Rect) {
    let popup = centered(area, 60.min(area.width), 4);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(" A run is in progress. Stop training and quit?"),
            Line::from(" y / q: stop and quit (finished runs are kept)   n / esc: stay"),
        ])
        .block(Block::default().borders(Borders::ALL).title(" quit ")),
        popup,
    );
}
