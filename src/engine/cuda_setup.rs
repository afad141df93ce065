//! What a CUDA run needs beyond the driver, checked before cubecl tries it.
//!
//! burn's CUDA backend (cubecl-cuda 0.10) compiles every kernel at run time
//! with NVRTC, against the toolkit's headers (`cuda_runtime.h`): without
//! `libnvrtc` cubecl panics on its device thread, without the headers it
//! panics with "CUDA installation not found", and an NVRTC newer than the
//! driver produces PTX the driver refuses (`CUDA_ERROR_UNSUPPORTED_PTX_VERSION`)
//! at the first kernel. These are the pure halves of those checks (the
//! `backend/cuda.rs` asks the libraries), so tests can simulate
//! each missing piece on a machine without a GPU.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// How to get a toolkit when one is missing: the NVIDIA packages, or pip's
/// wheels (README, "Running on a GPU").
const HOW: &str =
    "install the CUDA toolkit (or pip's nvidia-cuda-nvrtc and nvidia-cuda-runtime wheels) and see README, \"Running on a GPU\"";

/// The toolkit directory cubecl-cuda 0.10 compiles against, found as its
/// `install::cuda_path` finds it: `CUDA_PATH`, then /usr/local/cuda, then
/// /opt/cuda, then /usr when /usr/bin/nvcc exists.
pub fn toolkit_dir(cuda_path: Option<OsString>, exists: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    if let Some(path) = cuda_path {
        return Some(PathBuf::from(path));
    }
    ["/usr/local/cuda", "/opt/cuda"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| exists(p))
        .or_else(|| exists(Path::new("/usr/bin/nvcc")).then(|| PathBuf::from("/usr")))
}

/// The header NVRTC needs in the toolkit directory's `include/`.
pub fn check_headers(dir: Option<&Path>) -> Result<PathBuf, String> {
    let Some(dir) = dir else {
        return Err(format!("no CUDA headers: CUDA_PATH is not set and none of /usr/local/cuda, /opt/cuda, /usr/bin/nvcc exists; {HOW}"));
    };
    let header = dir.join("include").join("cuda_runtime.h");
    if header.is_file() {
        Ok(header)
    } else {
        Err(format!(
            "no {} (the CUDA headers kernels are compiled against); set CUDA_PATH to a toolkit directory, or {HOW}",
            header.display()
        ))
    }
}

/// A CUDA version as the driver API reports it (12040 = 12.4).
pub fn version_name(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// NVRTC (major, minor) against the driver's CUDA version: PTX from a newer
/// NVRTC is refused by an older driver.
pub fn check_nvrtc_version(nvrtc: (i32, i32), driver: i32) -> Result<(), String> {
    let compiler = nvrtc.0 * 1000 + nvrtc.1 * 10;
    if compiler > driver {
        Err(format!(
            "NVRTC {}.{} is newer than the driver's CUDA {}: its kernels would be refused (CUDA_ERROR_UNSUPPORTED_PTX_VERSION); put an NVRTC of CUDA {} or older first on the loader path, or update the NVIDIA driver",
            nvrtc.0,
            nvrtc.1,
            version_name(driver),
            version_name(driver)
        ))
    } else {
        Ok(())
    }
}

/// The message when `libnvrtc` does not load.
pub fn nvrtc_missing() -> String {
    format!("the NVRTC library (libnvrtc, which compiles kdtui's GPU kernels at run time) is not on the loader path; {HOW}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolkit_found_in_cubecls_order() {
        let only = |present: &'static [&'static str]| move |p: &Path| present.iter().any(|q| Path::new(q) == p);
        assert_eq!(toolkit_dir(Some("/x".into()), only(&["/usr/local/cuda"])), Some("/x".into()));
        assert_eq!(toolkit_dir(None, only(&["/opt/cuda", "/usr/local/cuda"])), Some("/usr/local/cuda".into()));
        assert_eq!(toolkit_dir(None, only(&["/opt/cuda", "/usr/bin/nvcc"])), Some("/opt/cuda".into()));
        assert_eq!(toolkit_dir(None, only(&["/usr/bin/nvcc"])), Some("/usr".into()));
        assert_eq!(toolkit_dir(None, only(&[])), None);
    }

    #[test]
    fn headers_are_looked_for_where_nvrtc_will() {
        let e = check_headers(None).unwrap_err();
        assert!(e.contains("CUDA_PATH") && e.contains("README"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = check_headers(Some(dir.path())).unwrap_err();
        assert!(e.contains("include/cuda_runtime.h"), "{e}");
        std::fs::create_dir(dir.path().join("include")).unwrap();
        std::fs::write(dir.path().join("include/cuda_runtime.h"), "").unwrap();
        assert_eq!(check_headers(Some(dir.path())).unwrap(), dir.path().join("include/cuda_runtime.h"));
    }

    #[test]
    fn nvrtc_no_newer_than_the_driver() {
        assert_eq!(version_name(12040), "12.4");
        assert!(check_nvrtc_version((12, 4), 12040).is_ok());
        assert!(check_nvrtc_version((11, 8), 12040).is_ok());
        let e = check_nvrtc_version((13, 0), 12080).unwrap_err();
        assert!(e.contains("NVRTC 13.0") && e.contains("CUDA 12.8"), "{e}");
        assert!(check_nvrtc_version((12, 6), 12040).is_err());
    }
}
