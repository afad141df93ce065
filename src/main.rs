//! kdtui's binary: everything it does is in the library (`kdtui::cli`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kdtui::cli::main()
}
