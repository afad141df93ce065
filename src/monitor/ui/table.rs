//! The results table: one row per run, sortable, with the selection marked.

use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};
use ratatui::Frame;

use super::table_view::Column;
use crate::monitor::app::App;
use crate::outputs::state::{format_age, status_word, RowStatus, RunRow};
use crate::outputs::stats::Group;
use crate::study::format_temperature;
use crate::util::format::{megabytes_short, points};

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), points)
}

fn cell_text(app: &App, groups: &[Group], row: &RunRow, column: Column) -> String {
    match column {
        Column::Run => row.spec.run_id.clone(),
        Column::Status => match (&row.status, row.lost_for(app.study.clock)) {
            (_, Some(silent)) => format!("lost? {}", format_age(silent)),
            (RowStatus::Running, None) if row.epochs > 0 => format!("run {}/{}", row.epoch.min(row.epochs), row.epochs),
            (other, None) => status_word(other).to_string(),
        },
        Column::Loss => row.spec.loss.name().to_string(),
        Column::Temperature => row.spec.temperature.map_or("–".into(), format_temperature),
        Column::Seed => row.spec.seed.to_string(),
        Column::TestAccuracy => match app.study.seed_spread(groups, row) {
            Some((m, s, _)) => format!("{}±{:.1}", pct(Some(m)), 100.0 * s),
            None => pct(row.test_accuracy()),
        },
        Column::TrainLoss => row.train_loss().map_or("–".into(), |l| format!("{l:.3}")),
        Column::Size => row.result.as_ref().map_or("–".into(), |r| megabytes_short(r.model_bytes)),
        Column::Time => row.wall_seconds().map_or("–".into(), |s| format!("{s:.0}s")),
        Column::Agreement => row.diagnostics().and_then(|d| d.agreement).map_or("–".into(), points),
        Column::Ece => row.diagnostics().map_or("–".into(), |d| format!("{:.3}", d.ece)),
        Column::Original => match (row.original(), row.test_accuracy()) {
            (Some(o), Some(ours)) => format!("{:.2} ({:+.1})", 100.0 * o, 100.0 * (ours - o)),
            (Some(o), None) => format!("{:.2}", 100.0 * o),
            _ => "–".into(),
        },
    }
}

fn row_style(row: &RunRow, now: f64) -> Style {
    if row.lost_for(now).is_some() {
        return Style::default().fg(Color::Magenta).add_modifier(Modifier::BOLD);
    }
    match &row.status {
        RowStatus::Running => Style::default().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        RowStatus::Done | RowStatus::Reused => Style::default(),
        RowStatus::Failed(_) | RowStatus::Diverged => Style::default().fg(Color::Red),
        RowStatus::Interrupted | RowStatus::Skipped => Style::default().fg(Color::Yellow),
        RowStatus::Queued => Style::default().add_modifier(Modifier::DIM),
    }
}

/// Column widths, and the order in which columns give way on narrow screens
/// (the run, its status and its accuracy always stay).
fn width(c: Column) -> u16 {
    match c {
        Column::Run => 17,
        Column::Status => 11,
        Column::Loss => 9,
        Column::Temperature => 3,
        Column::Seed => 4,
        Column::TestAccuracy => 10,
        Column::TrainLoss => 10,
        Column::Size => 6,
        Column::Time => 5,
        Column::Original => 13,
        Column::Agreement => 5,
        Column::Ece => 5,
    }
}

/// The diagnostics go first: accuracy is what the table is read for.
const DROP_ORDER: [Column; 7] = [Column::Ece, Column::Agreement, Column::Seed, Column::Size, Column::Time, Column::Loss, Column::TrainLoss];

/// The columns that fit in `inner` cells, in display order.
pub fn visible_columns(inner: u16) -> Vec<Column> {
    let mut cols = Column::ALL.to_vec();
    let total = |cols: &[Column]| cols.iter().map(|&c| width(c) + 1).sum::<u16>() + 1;
    for drop in DROP_ORDER {
        if total(&cols) <= inner {
            break;
        }
        cols.retain(|&c| c != drop);
    }
    cols
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let order = app.sorted();
    let arrow = if app.table.descending { "▼" } else { "▲" };
    let cols = visible_columns(area.width.saturating_sub(2));
    let header = Row::new(cols.iter().map(|&c| {
        let title = if c == app.table.sort { format!("{}{arrow}", c.title()) } else { c.title().to_string() };
        let style = if c == app.table.sort {
            Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::default().add_modifier(Modifier::BOLD)
        };
        Cell::from(title).style(style)
    }));
    let groups = app.study.results.groups();
    let rows = order.iter().map(|&i| {
        let row = &app.study.runs[i];
        let cells = cols.iter().map(|&c| {
            let cell = Cell::from(cell_text(app, &groups, row, c));
            // A marked run's id in its colour in the compare chart.
            match (c, app.table.mark_color(&row.spec.run_id)) {
                (Column::Run, Some(color)) => cell.style(Style::default().fg(color).add_modifier(Modifier::BOLD)),
                _ => cell,
            }
        });
        Row::new(cells).style(row_style(row, app.study.clock))
    });
    let selected = app.table.selected.as_deref().and_then(|id| order.iter().position(|&i| app.study.runs[i].spec.run_id == id));
    let mut state = TableState::default().with_selected(selected);
    let table = Table::new(rows, cols.iter().map(|&c| Constraint::Length(width(c))))
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("›")
        .block(Block::default().borders(Borders::ALL).title(format!(
            " runs · sorted by {} {}{} ",
            app.table.sort.title(),
            if app.table.descending { "descending" } else { "ascending" },
            if app.table.filter.is_empty() && !app.table.typing_filter {
                String::new()
            } else {
                format!(" · filter /{} ({} of {})", app.table.filter, order.len(), app.study.runs.len())
            }
        )));
    frame.render_stateful_widget(table, area, &mut state);
}
