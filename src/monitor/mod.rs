//! The consumers of a plan's events: the interactive monitor (`app` state
//! updated by events and keys, `ui` drawn from it, `keys` as one table,
//! `screen` running the loop on a `terminal`), the headless `--batch`
//! writer (`headless`), and `kdtui watch`'s reader of a results directory
//! (`watch`), which feeds the same monitor from files.

pub mod app;
pub mod headless;
pub mod keys;
pub mod screen;
pub mod terminal;
pub mod ui;
pub mod watch;
