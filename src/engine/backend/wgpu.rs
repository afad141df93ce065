//! `--device wgpu[:N]`: burn's wgpu backend, the same cubecl machinery as
//! CUDA (fusion, autotune, asynchronous reads) with another shader compiler
//! (WGSL), on Vulkan (Linux, Windows) or Metal (macOS): GPUs of every vendor.
//!
//! Adapters are numbered as wgpu lists them for the platform's graphics API
//! (`kdtui doctor`). A software adapter (Mesa's lavapipe, SwiftShader) runs
//! its "GPU" on the CPU, far slower than kdtui's own CPU kernels: `auto`
//! never takes one, `wgpu` takes one only when no hardware adapter exists,
//! and CI runs the GPU code path on it as a correctness check.

/// What wgpu says an adapter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Discrete,
    Integrated,
    Virtual,
    /// An adapter that runs on the CPU.
    Cpu,
    Other,
}

/// One adapter as kdtui lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adapter {
    pub name: String,
    pub kind: Kind,
    /// Driver name and version, as the driver gives them.
    pub driver: String,
    /// The graphics API: Vulkan, or Metal on macOS.
    pub api: String,
}

impl Adapter {
    /// Runs on the CPU rather than a GPU. Drivers that report their type
    /// as "other" are recognised by name.
    pub fn is_software(&self) -> bool {
        let name = self.name.to_lowercase();
        self.kind == Kind::Cpu
            || ["llvmpipe", "lavapipe", "swiftshader", "software", "microsoft basic render"].iter().any(|s| name.contains(s))
    }

    pub fn describe(&self) -> String {
        let kind = match self.kind {
            Kind::Discrete => "discrete GPU",
            Kind::Integrated => "integrated GPU",
            Kind::Virtual => "virtual GPU",
            Kind::Cpu => "software, on the CPU",
            Kind::Other if self.is_software() => "software, on the CPU",
            Kind::Other => "unknown type",
        };
        let driver = if self.driver.is_empty() { String::new() } else { format!(", {}", self.driver) };
        format!("{} ({}, {kind}{driver})", self.name, self.api)
    }
}

/// How cubecl names an adapter: adapters of one kind are numbered in
/// wgpu's order, and a CPU adapter is always the first of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    Discrete(usize),
    Integrated(usize),
    Virtual(usize),
    Cpu,
}

/// cubecl's name for adapter `i` of `adapters`.
pub fn selector(adapters: &[Adapter], i: usize) -> Result<Selector, String> {
    let adapter = &adapters[i];
    let before = adapters[..i].iter().filter(|a| a.kind == adapter.kind).count();
    match adapter.kind {
        Kind::Discrete => Ok(Selector::Discrete(before)),
        Kind::Integrated => Ok(Selector::Integrated(before)),
        Kind::Virtual => Ok(Selector::Virtual(before)),
        Kind::Cpu if before == 0 => Ok(Selector::Cpu),
        Kind::Cpu => Err(format!("wgpu:{i} is the second software adapter on this machine; burn's wgpu backend can only use the first")),
        Kind::Other => {
            Err(format!("wgpu:{i} ({}) reports no device type; burn's wgpu backend cannot be told to take it", adapters[i].name))
        }
    }
}

/// The adapter `--device wgpu` (`want` none) or `wgpu:N` takes: for plain
/// `wgpu`, the first hardware adapter, else the first software one.
pub fn choose(adapters: &[Adapter], want: Option<usize>) -> Result<usize, String> {
    if adapters.is_empty() {
        return Err(no_adapter());
    }
    match want {
        Some(n) if n < adapters.len() => Ok(n),
        Some(n) => Err(format!(
            "this machine has {} wgpu adapter(s); wgpu:{n} is not one of them (`kdtui doctor --device wgpu` lists them)",
            adapters.len()
        )),
        None => Ok(adapters.iter().position(|a| !a.is_software()).unwrap_or(0)),
    }
}

/// What `--device auto` takes after CUDA: the first hardware adapter, and
/// a line for each software adapter it passed over.
pub fn auto_choice(adapters: &[Adapter]) -> (Option<usize>, Vec<String>) {
    let chosen = adapters.iter().position(|a| !a.is_software());
    let skipped = adapters
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_software())
        .map(|(i, a)| {
            format!(
                "--device auto: skipped wgpu:{i}, {}: a software device, slower than the CPU backend (ask for it with --device wgpu:{i})",
                a.describe()
            )
        })
        .collect();
    (chosen, skipped)
}

pub fn no_adapter() -> String {
    "no wgpu adapter: the Vulkan loader (libvulkan1) or a Vulkan driver is missing (Debian: apt install libvulkan1 mesa-vulkan-drivers; \
     NVIDIA: the driver's Vulkan ICD); `vulkaninfo --summary` shows what Vulkan sees"
        .into()
}

#[cfg(not(all(feature = "wgpu", not(test))))]
pub use absent::*;
// The library's unit tests leave the backend out, as they do CUDA: its
// instantiation of the training loop is compile time no unit test needs.
#[cfg(all(feature = "wgpu", not(test)))]
pub use built::*;

#[cfg(all(feature = "wgpu", not(test)))]
mod built {
    use crate::engine::backend::wgpu::{Adapter, Kind, Selector};
    use crate::engine::backend::work::{probe_sum, without_panicking, OnBackend, ProbeError};
    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
    use burn::backend::wgpu::WgpuDevice;
    use burn::backend::{Autodiff, Wgpu};

    /// The adapters of the platform's graphics API, in wgpu's order (the
    /// order cubecl numbers them in).
    pub fn adapters() -> Vec<Adapter> {
        // A broken driver may panic inside wgpu: then there is no adapter to offer.
        without_wayland_noise(|| {
            without_panicking(|| {
                let backend = AutoGraphicsApi::backend();
                let instance = ::wgpu::Instance::new(::wgpu::InstanceDescriptor {
                    backends: backend.into(),
                    ..::wgpu::InstanceDescriptor::new_without_display_handle()
                });
                burn::cubecl::future::block_on(instance.enumerate_adapters(backend.into())).iter().map(|a| describe(a.get_info())).collect()
            })
        })
        .unwrap_or_default()
    }

    /// Runs `f` without the line libwayland prints on stderr each time a
    /// Vulkan instance is made where XDG_RUNTIME_DIR is unset (harmless for
    /// compute; a probe makes two instances). Other lines pass through.
    fn without_wayland_noise<T>(f: impl FnOnce() -> T) -> T {
        let (value, lines) = crate::util::stderr::lines_of(f);
        for line in lines.iter().filter(|l| !l.contains("XDG_RUNTIME_DIR")) {
            eprintln!("{line}");
        }
        value
    }

    fn describe(info: ::wgpu::AdapterInfo) -> Adapter {
        Adapter {
            name: info.name,
            kind: match info.device_type {
                ::wgpu::DeviceType::DiscreteGpu => Kind::Discrete,
                ::wgpu::DeviceType::IntegratedGpu => Kind::Integrated,
                ::wgpu::DeviceType::VirtualGpu => Kind::Virtual,
                ::wgpu::DeviceType::Cpu => Kind::Cpu,
                ::wgpu::DeviceType::Other => Kind::Other,
            },
            // Mesa's driver_info repeats its name with the version.
            driver: if info.driver_info.is_empty() { info.driver } else { info.driver_info },
            api: format!("{:?}", info.backend),
        }
    }

    pub fn device(selector: Selector) -> WgpuDevice {
        match selector {
            Selector::Discrete(n) => WgpuDevice::DiscreteGpu(n),
            Selector::Integrated(n) => WgpuDevice::IntegratedGpu(n),
            Selector::Virtual(n) => WgpuDevice::VirtualGpu(n),
            Selector::Cpu => WgpuDevice::Cpu,
        }
    }

    /// Runs one tiny op on the adapter: cubecl panics when the driver
    /// cannot create a device or compile a kernel, and we want a message.
    pub fn probe(selector: Selector) -> Result<(), ProbeError> {
        without_wayland_noise(|| probe_sum::<Wgpu>(move || device(selector)))
    }

    pub fn dispatch<W: OnBackend>(selector: Selector, work: W, name: &str) -> W::Output {
        work.run::<Autodiff<Wgpu>>(device(selector), name)
    }

    pub const BUILT: bool = true;
}

#[cfg(not(all(feature = "wgpu", not(test))))]
mod absent {
    use crate::engine::backend::wgpu::{Adapter, Selector};
    use crate::engine::backend::work::{OnBackend, ProbeError};

    pub fn adapters() -> Vec<Adapter> {
        Vec::new()
    }

    pub fn probe(_selector: Selector) -> Result<(), ProbeError> {
        Err(ProbeError::NotBuilt)
    }

    pub fn dispatch<W: OnBackend>(_selector: Selector, _work: W, _name: &str) -> W::Output {
        unreachable!("resolve() never picks wgpu in a build without it")
    }

    pub const BUILT: bool = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(name: &str, kind: Kind) -> Adapter {
        Adapter { name: name.into(), kind, driver: String::new(), api: "Vulkan".into() }
    }

    #[test]
    fn software_adapters_are_known_by_type_or_name() {
        assert!(adapter("llvmpipe (LLVM 15.0.6, 256 bits)", Kind::Cpu).is_software());
        assert!(adapter("SwiftShader Device (Subzero)", Kind::Other).is_software());
        assert!(!adapter("NVIDIA H200", Kind::Discrete).is_software());
        assert!(!adapter("Some new GPU", Kind::Other).is_software());
    }

    #[test]
    fn plain_wgpu_prefers_hardware_and_auto_never_takes_software() {
        let lavapipe = adapter("llvmpipe (LLVM 15.0.6, 256 bits)", Kind::Cpu);
        let amd = adapter("AMD Radeon RX 7900 XTX", Kind::Discrete);
        let both = [lavapipe.clone(), amd.clone()];
        assert_eq!(choose(&both, None), Ok(1));
        assert_eq!(choose(&both, Some(0)), Ok(0));
        assert!(choose(&both, Some(2)).unwrap_err().contains("2 wgpu adapter(s); wgpu:2"));
        assert_eq!(choose(std::slice::from_ref(&lavapipe), None), Ok(0), "asked for by name, software is taken");
        assert!(choose(&[], None).unwrap_err().contains("libvulkan1"));

        let (chosen, notes) = auto_choice(&both);
        assert_eq!(chosen, Some(1));
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("skipped wgpu:0, llvmpipe") && notes[0].contains("--device wgpu:0"), "{}", notes[0]);
        assert_eq!(auto_choice(&[lavapipe]).0, None);
        assert_eq!(auto_choice(&[amd]), (Some(0), vec![]));
    }

    #[test]
    fn adapters_are_numbered_within_their_kind_for_cubecl() {
        let list = [
            adapter("a", Kind::Integrated),
            adapter("b", Kind::Discrete),
            adapter("c", Kind::Discrete),
            adapter("lavapipe", Kind::Cpu),
            adapter("d", Kind::Integrated),
            adapter("swiftshader", Kind::Cpu),
            adapter("odd", Kind::Other),
        ];
        assert_eq!(selector(&list, 0), Ok(Selector::Integrated(0)));
        assert_eq!(selector(&list, 2), Ok(Selector::Discrete(1)));
        assert_eq!(selector(&list, 3), Ok(Selector::Cpu));
        assert_eq!(selector(&list, 4), Ok(Selector::Integrated(1)));
        assert!(selector(&list, 5).unwrap_err().contains("second software adapter"));
        assert!(selector(&list, 6).unwrap_err().contains("no device type"));
    }
}
