//! The terminal while the monitor shows: raw mode and the alternate screen
//! from `Tui::enter` until the guard drops, on every way out (an error, a
//! return, a panic: ratatui's hook restores it too).

use std::io::IsTerminal;

use ratatui::DefaultTerminal;

pub struct Tui {
    pub terminal: DefaultTerminal,
}

impl Tui {
    pub fn enter() -> std::io::Result<Self> {
        Ok(Self { terminal: ratatui::try_init()? })
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Whether stdout is a terminal the monitor can draw on.
pub fn is_terminal() -> bool {
    std::io::stdout().is_terminal()
}
