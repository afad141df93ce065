//! Where cubecl keeps, across processes, what it learns on a GPU: the
//! autotune results of each kernel and shape, and on CUDA the compiled
//! kernels (cubecl-wgpu 0.10 keeps no compiled WGSL across processes). One
//! configuration for every cubecl runtime.

/// Points cubecl's autotune results and compiled kernels at `root` (kept
/// across processes and nodes). cubecl reads its configuration once, at
/// its first use: this must come before any device is touched.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub fn keep_caches_in(root: &std::path::Path) -> Result<(), String> {
    use burn::cubecl::config::cache::CacheConfig;
    use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.autotune.cache = CacheConfig::File(root.to_path_buf());
    config.compilation.cache = Some(CacheConfig::File(root.to_path_buf()));
    // `set` panics once the configuration has been read: say so instead.
    crate::engine::backend::work::without_panicking(|| CubeClRuntimeConfig::set(config))
        .map_err(|_| "cubecl had already read its configuration".to_string())
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
pub fn keep_caches_in(_root: &std::path::Path) -> Result<(), String> {
    Ok(())
}
