//! The one key table: the handler and the help screen both read it, so they
//! cannot disagree.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    TogglePause,
    NextSort,
    ReverseSort,
    Up,
    Down,
    SwitchChart,
    ToggleHelp,
    Quit,
    /// Ctrl-C: quit without asking.
    ForceQuit,
    Confirm,
    Cancel,
    /// Mark or unmark the selected run for the compare chart.
    ToggleMark,
    /// The selected run's detail: per-class accuracy, confusion, fidelity.
    ToggleDetail,
    /// Start typing a filter (a run-id prefix) after `/`.
    StartFilter,
    /// While typing a filter: a character, backspace, enter (keep it).
    FilterChar(char),
    FilterBack,
    FilterDone,
}

pub struct Binding {
    pub code: KeyCode,
    pub ctrl: bool,
    pub action: Action,
}

const fn key(code: KeyCode, action: Action) -> Binding {
    Binding { code, ctrl: false, action }
}

pub const BINDINGS: &[Binding] = &[
    key(KeyCode::Char('p'), Action::TogglePause),
    key(KeyCode::Char(' '), Action::TogglePause),
    key(KeyCode::Char('s'), Action::NextSort),
    key(KeyCode::Char('r'), Action::ReverseSort),
    key(KeyCode::Up, Action::Up),
    key(KeyCode::Char('k'), Action::Up),
    key(KeyCode::Down, Action::Down),
    key(KeyCode::Char('j'), Action::Down),
    key(KeyCode::Enter, Action::SwitchChart),
    key(KeyCode::Tab, Action::SwitchChart),
    key(KeyCode::Char('?'), Action::ToggleHelp),
    key(KeyCode::Char('q'), Action::Quit),
    Binding { code: KeyCode::Char('c'), ctrl: true, action: Action::ForceQuit },
    key(KeyCode::Char('m'), Action::ToggleMark),
    key(KeyCode::Char('d'), Action::ToggleDetail),
    key(KeyCode::Char('/'), Action::StartFilter),
    key(KeyCode::Char('y'), Action::Confirm),
    key(KeyCode::Char('n'), Action::Cancel),
    key(KeyCode::Esc, Action::Cancel),
];

impl Action {
    pub fn describe(self) -> &'static str {
        match self {
            Action::TogglePause => "pause / resume training (between steps)",
            Action::NextSort => "sort by the next column",
            Action::ReverseSort => "reverse the sort order",
            Action::Up => "select the run above",
            Action::Down => "select the run below",
            Action::SwitchChart => "switch the large chart (accuracy / agreement / loss)",
            Action::ToggleHelp => "show / hide this help",
            Action::Quit => "quit (asks while a run is active)",
            Action::ForceQuit => "quit now, stopping training cleanly",
            Action::Confirm => "answer yes",
            Action::Cancel => "answer no; close help or the detail; clear the filter",
            Action::ToggleMark => "mark / unmark the run: marked runs overlay in the large chart",
            Action::ToggleDetail => "the run's detail: per-class accuracy, confusion, agreement and KL",
            Action::StartFilter => "filter the table by a run-id prefix (enter keeps it, esc clears)",
            Action::FilterChar(_) | Action::FilterBack | Action::FilterDone => "(typing a filter)",
        }
    }
}

/// While a filter is typed (`typing`), keys are its text: enter keeps it,
/// esc clears it, backspace deletes.
pub fn action_for_typing(event: &KeyEvent) -> Option<Action> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    match event.code {
        KeyCode::Enter => Some(Action::FilterDone),
        KeyCode::Esc => Some(Action::Cancel),
        KeyCode::Backspace => Some(Action::FilterBack),
        KeyCode::Char('c') if event.modifiers.contains(KeyModifiers::CONTROL) => Some(Action::ForceQuit),
        KeyCode::Char(c) => Some(Action::FilterChar(c)),
        _ => None,
    }
}

pub fn action_for(event: &KeyEvent) -> Option<Action> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
    BINDINGS.iter().find(|b| b.code == event.code && b.ctrl == ctrl).map(|b| b.action)
}

pub fn key_name(b: &Binding) -> String {
    let name = match b.code {
        KeyCode::Char(' ') => "space".to_string(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Up => "↑".into(),
        KeyCode::Down => "↓".into(),
        KeyCode::Enter => "enter".into(),
        KeyCode::Tab => "tab".into(),
        KeyCode::Esc => "esc".into(),
        other => format!("{other:?}"),
    };
    if b.ctrl {
        format!("ctrl-{name}")
    } else {
        name
    }
}

/// (keys, description) per action, in table order: the help screen.
pub fn help_lines() -> Vec<(String, &'static str)> {
    let mut out: Vec<(Action, Vec<String>)> = Vec::new();
    for b in BINDINGS {
        match out.iter_mut().find(|(a, _)| *a == b.action) {
            Some((_, keys)) => keys.push(key_name(b)),
            None => out.push((b.action, vec![key_name(b)])),
        }
    }
    out.into_iter().map(|(a, keys)| (keys.join(" / "), a.describe())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> Option<Action> {
        action_for(&KeyEvent::new(code, modifiers))
    }

    /// The keys README and the help screen promise, written out here rather
    /// than read back from `BINDINGS`: a binding dropped, moved to another
    /// action or a key taken twice fails it.
    #[test]
    fn each_key_does_what_the_help_screen_says() {
        use KeyCode::{Char, Down, Enter, Esc, Tab, Up};
        let none = KeyModifiers::NONE;
        let promised = [
            (Char('p'), none, Action::TogglePause),
            (Char(' '), none, Action::TogglePause),
            (Char('s'), none, Action::NextSort),
            (Char('r'), none, Action::ReverseSort),
            (Up, none, Action::Up),
            (Char('k'), none, Action::Up),
            (Down, none, Action::Down),
            (Char('j'), none, Action::Down),
            (Enter, none, Action::SwitchChart),
            (Tab, none, Action::SwitchChart),
            (Char('?'), none, Action::ToggleHelp),
            (Char('q'), none, Action::Quit),
            (Char('c'), KeyModifiers::CONTROL, Action::ForceQuit),
            (Char('m'), none, Action::ToggleMark),
            (Char('d'), none, Action::ToggleDetail),
            (Char('/'), none, Action::StartFilter),
            (Char('y'), none, Action::Confirm),
            (Char('n'), none, Action::Cancel),
            (Esc, none, Action::Cancel),
        ];
        for (code, modifiers, action) in promised {
            assert_eq!(press(code, modifiers), Some(action), "{code:?} {modifiers:?}");
        }
        for unbound in [Char('c'), Char('x'), Char('P'), KeyCode::Backspace] {
            assert_eq!(press(unbound, none), None, "{unbound:?}");
        }
        let help: Vec<(String, &str)> = help_lines();
        let keys: Vec<&str> = help.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["p / space", "s", "r", "↑ / k", "↓ / j", "enter / tab", "?", "q", "ctrl-c", "m", "d", "/", "y", "n / esc"]);
        assert!(help.iter().all(|(_, d)| !d.is_empty() && *d != "(typing a filter)"));
    }
}
