//! kdtui's binary: everything it does is in the library (`kdtui::cli`).

fn main() -> std::process::ExitCode {
    kdtui::cli::main()
}
