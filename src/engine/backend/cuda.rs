//! `--device cuda[:N]`: burn's CUDA backend, what it needs on the machine
//! (`requirements`, `kdtui doctor`), and a probe that turns cubecl's panics
//! into messages.

// The library's own unit tests leave CUDA out: instantiating the training
// loop and the benchmark for burn's CUDA backend is most of the library's
// compile time, and no unit test runs on a GPU (the binary and the
// integration tests keep it).
#[cfg(not(all(feature = "cuda", not(test))))]
pub use absent::*;
#[cfg(all(feature = "cuda", not(test)))]
pub use built::*;

#[cfg(all(feature = "cuda", not(test)))]
mod built {
    use crate::engine::backend::work::{probe_sum, OnBackend, ProbeError};
    use crate::engine::cuda_setup;
    use burn::backend::cuda::CudaDevice;
    use burn::backend::{Autodiff, Cuda};

    /// What a run on cuda:n needs, checked in order, each with what was
    /// found; the list ends at the first piece missing.
    pub fn requirements(n: usize) -> Vec<(&'static str, Result<String, String>)> {
        let mut found = Vec::new();
        let mut check = |what: &'static str, outcome: Result<String, String>| {
            let ok = outcome.is_ok();
            found.push((what, outcome));
            ok
        };
        // SAFETY: only tries to dlopen the driver library; no CUDA call is made.
        let driver = unsafe { cudarc::driver::sys::is_culib_present() };
        if !check(
            "driver library",
            driver
                .then(|| "libcuda loads".into())
                .ok_or_else(|| "the NVIDIA driver library libcuda is not installed or not on the loader path".into()),
        ) {
            return found;
        }
        let mut version = 0;
        // SAFETY: the library is loaded; the call writes one int.
        let answer = cudarc::driver::result::init()
            .and_then(|()| unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut version) }.result())
            .and_then(|()| cudarc::driver::result::device::get_count())
            .map_err(|e| format!("the CUDA driver does not answer: {e}"));
        let count = answer.clone().unwrap_or(0).max(0) as usize;
        if !check("driver", answer.map(|c| format!("CUDA {}, {c} device(s)", cuda_setup::version_name(version)))) {
            return found;
        }
        if !check(
            "device",
            if n < count {
                Ok(format!("cuda:{n}"))
            } else {
                Err(format!("this machine has {count} CUDA device(s); cuda:{n} is not one of them"))
            },
        ) {
            return found;
        }
        // SAFETY: only tries to dlopen libnvrtc.
        if !check(
            "NVRTC",
            if unsafe { cudarc::nvrtc::sys::is_culib_present() } { Ok("libnvrtc loads".into()) } else { Err(cuda_setup::nvrtc_missing()) },
        ) {
            return found;
        }
        let (mut major, mut minor) = (0, 0);
        // SAFETY: libnvrtc is loaded; the call writes two ints.
        let nvrtc = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
        let nvrtc = match nvrtc {
            cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS => {
                cuda_setup::check_nvrtc_version((major, minor), version).map(|()| format!("NVRTC {major}.{minor}"))
            }
            e => Err(format!("NVRTC does not answer: {e:?}")),
        };
        if !check("NVRTC version", nvrtc) {
            return found;
        }
        let dir = cuda_setup::toolkit_dir(std::env::var_os("CUDA_PATH"), |p| p.exists());
        check("CUDA headers", cuda_setup::check_headers(dir.as_deref()).map(|h| h.display().to_string()));
        found
    }

    /// Checks `requirements`, then runs one tiny op on the device: cubecl
    /// panics when a piece is missing, and we want a message instead.
    pub fn probe(n: usize) -> Result<(), ProbeError> {
        if let Some((_, Err(why))) = requirements(n).pop() {
            return Err(ProbeError::Failed(why));
        }
        probe_sum::<Cuda>(move || CudaDevice::new(n))
    }

    pub fn dispatch<W: OnBackend>(n: usize, work: W, name: &str) -> W::Output {
        work.run::<Autodiff<Cuda>>(CudaDevice::new(n), name)
    }
}

#[cfg(not(all(feature = "cuda", not(test))))]
mod absent {
    use crate::engine::backend::work::{OnBackend, ProbeError};

    pub fn probe(_n: usize) -> Result<(), ProbeError> {
        Err(ProbeError::NotBuilt)
    }

    pub fn requirements(_n: usize) -> Vec<(&'static str, Result<String, String>)> {
        vec![("CUDA backend", Err("this kdtui was built without it (--no-default-features)".into()))]
    }

    pub fn dispatch<W: OnBackend>(_n: usize, _work: W, _name: &str) -> W::Output {
        unreachable!("resolve() never picks CUDA in a build without it")
    }
}
