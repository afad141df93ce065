//! Tells the tests which of the tools some of them drive are on this machine,
//! so that a test whose tool is missing shows as ignored (with the reason and
//! how to install it) instead of failing or passing without running:
//! `kdtui_no_tmux` (the real-terminal tests), `kdtui_no_python3` (the
//! benchmark reference's syntax check). Nothing in kdtui itself uses them.

use std::path::Path;

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| Path::new(&dir).join(tool).is_file()))
}

fn main() {
    println!("cargo::rerun-if-env-changed=PATH");
    for tool in ["tmux", "python3"] {
        println!("cargo::rustc-check-cfg=cfg(kdtui_no_{tool})");
        if !on_path(tool) {
            println!("cargo::rustc-cfg=kdtui_no_{tool}");
        }
    }
}
