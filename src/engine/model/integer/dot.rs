//! The integer engine's one product: for a tile of up to `TILE` pixels,
//!
//! acc[p * np + o] = sum over taps t, groups g < groups, lanes l < 4 of
//!     input[base + p * stride + taps[t] + 4 g + l] * weights[((t * groups + g) * np + o) * 4 + l]
//!
//! u8 activation codes times i8 weights into i32, exactly. A 3x3 conv is 9
//! taps over a zero-padded channels-last image; a linear layer is one tap
//! over a flattened one. Weights are laid out once at load so that one
//! vector load holds 16 (or 8) output channels' four weights of a channel
//! group: the shape `vpdpbusd` (VNNI) reads, and `vpmaddubsw` (AVX2) after
//! it. `np` is a multiple of 8 (`IntLayer` lays out 8 for a layer of up to
//! 8 outputs, else a multiple of 16): the AVX-512 kernel takes 16 channels
//! a vector and a last 8 in a 256-bit one. The x86 kernels are in `x86.rs`,
//! the tile's description in `tile.rs`.

#[cfg(target_arch = "x86_64")]
use super::x86;
use crate::engine::model::kernels::cpu::simd;

pub use super::tile::{Codes, Out, Tile, TILE};

/// Which implementation of the product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kernel {
    /// Plain Rust: the reference the others are tested against.
    Scalar,
    /// AVX2 `vpmaddubsw` + `vpmaddwd`: pairs of products are summed into
    /// 16 bits with saturation, so it runs only where no pair can reach
    /// 32,767 (`Kernel::exact_for`).
    Avx2,
    /// AVX2 with each output's whole sum kept in 16-bit pairs (`vpaddw`
    /// after `vpmaddubsw`; one `vpmaddwd` at the end): half the multiplies
    /// of `Avx2`, for layers whose sums cannot reach 32,767 (2-bit codes
    /// and weights: 18 a step). Chosen per layer (`Kernel::for_layer`).
    Avx2Short,
    /// AVX-VNNI (the VEX `vpdpbusd` on 256-bit vectors: Alder Lake and
    /// later, Zen 5): AVX2's registers, VNNI's exact four-product sums.
    AvxVnni,
    /// AVX-512 VNNI `vpdpbusd`: four products into 32 bits, no saturation.
    Avx512Vnni,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2 (vpmaddubsw)",
            Kernel::Avx2Short => "avx2 (vpmaddubsw, 16-bit sums)",
            Kernel::AvxVnni => "avx-vnni (vpdpbusd, 256-bit)",
            Kernel::Avx512Vnni => "avx512-vnni (vpdpbusd)",
        }
    }

    /// The fastest kernel this CPU runs, under `KDTUI_SIMD`'s cap.
    pub fn best() -> Kernel {
        Self::available().into_iter().filter(|&k| k != Kernel::Avx2Short).max().unwrap_or(Kernel::Scalar)
    }

    /// The kernel a layer runs when the network runs on this one: AVX2's
    /// fastest form that is exact for the layer (`exact_for`), the others
    /// as they are.
    pub fn for_layer(self, max_code: u32, max_weight: u32, steps: usize) -> Kernel {
        match self {
            Kernel::Avx2 | Kernel::Avx2Short => {
                [Kernel::Avx2Short, Kernel::Avx2].into_iter().find(|k| k.exact_for(max_code, max_weight, steps)).unwrap_or(Kernel::Scalar)
            }
            k => k,
        }
    }

    /// Every kernel this CPU can run under `KDTUI_SIMD`'s cap (tests run each).
    pub fn available() -> Vec<Kernel> {
        let mut out = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            let level = simd::level();
            if level >= simd::Level::Avx2 {
                out.extend([Kernel::Avx2, Kernel::Avx2Short]);
                // Not under a cap: `KDTUI_SIMD=avx2` stands for an AVX2-only
                // machine, which has no AVX-VNNI.
                if level == simd::detected() && std::arch::is_x86_feature_detected!("avxvnni") {
                    out.push(Kernel::AvxVnni);
                }
            }
            if level >= simd::Level::Avx512 && std::arch::is_x86_feature_detected!("avx512vnni") {
                out.push(Kernel::Avx512Vnni);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = simd::level();
        out
    }

    /// Whether this kernel is exact for codes up to `max_code` and weights
    /// of magnitude up to `max_weight` summed over `steps` channel groups:
    /// AVX2 sums two products in 16 bits with saturation (2 x 255 x 128
    /// would saturate; 2-bit codes and weights, 2 x 3 x 3, are far from
    /// it), and its short form all of an output's.
    pub fn exact_for(self, max_code: u32, max_weight: u32, steps: usize) -> bool {
        let pair = 2 * max_code as u64 * max_weight as u64;
        match self {
            Kernel::Avx2 => pair <= i16::MAX as u64,
            Kernel::Avx2Short => steps as u64 * pair <= i16::MAX as u64,
            _ => true,
        }
    }
}

/// The product of one tile with `kernel`, turned into codes by `codes`
/// and written to `out`; `acc` is scratch of at least `TILE * np`.
pub fn dot_codes(kernel: Kernel, tile: &Tile, weights: &[i8], np: usize, codes: &Codes, out: &mut Out, acc: &mut [i32]) {
    tile.check(weights, np, acc);
    assert!(codes.sign.len() >= np && codes.thresholds.len() >= codes.levels * np && codes.cout <= np);
    assert!(out.out.len() >= out.base + (tile.pixels - 1) * out.stride + codes.cout, "a tile writes past its output");
    #[cfg(target_arch = "x86_64")]
    if !codes.eight_bit {
        match kernel {
            // SAFETY: as in `dot`; the asserts above bound the epilogue's reads and writes.
            Kernel::Avx512Vnni => return unsafe { x86::vnni_codes(tile, weights, np, codes, out) },
            Kernel::AvxVnni => return unsafe { x86::avxvnni_codes(tile, weights, np, codes, out) },
            Kernel::Avx2 => return unsafe { x86::avx2_codes(tile, weights, np, codes, out) },
            Kernel::Avx2Short => return unsafe { x86::avx2_short_codes(tile, weights, np, codes, out) },
            Kernel::Scalar => {}
        }
    }
    dot(kernel, tile, weights, np, acc);
    for p in 0..tile.pixels {
        let at = out.base + p * out.stride;
        codes.write(&mut acc[p * np..(p + 1) * np], &mut out.out[at..at + codes.cout]);
    }
}

/// Multiply-adds per second of `kernel` on every thread of rayon's pool,
/// for about `seconds`, on a tile held in L1 (8 pixels, 9 taps of 64
/// channels, 32 outputs): the kernel's best case, what the integer
/// engine's throughput is set against, as training's is against gemm's.
pub fn peak_macs_per_sec(kernel: Kernel, seconds: f64) -> f64 {
    let (groups, np) = (16, 32);
    let stride = 4 * groups;
    let taps: Vec<usize> = (0..9).map(|t| t * stride).collect();
    let input = vec![1u8; (TILE - 1) * stride + taps[8] + stride];
    let weights = vec![1i8; 9 * groups * np * 4];
    let per_call = (TILE * 9 * groups * 4 * np) as f64;
    rayon::broadcast(|_| {
        let tile = Tile { input: &input, base: 0, stride, pixels: TILE, taps: &taps, groups };
        let mut acc = vec![0i32; TILE * np];
        let started = std::time::Instant::now();
        let mut calls = 0u64;
        while started.elapsed().as_secs_f64() < seconds {
            for _ in 0..64 {
                dot(kernel, &tile, &weights, np, &mut acc);
                std::hint::black_box(&mut acc);
            }
            calls += 64;
        }
        calls as f64 * per_call / started.elapsed().as_secs_f64()
    })
    .into_iter()
    .sum()
}

/// The product of one tile with `kernel` (see the module's formula).
pub fn dot(kernel: Kernel, tile: &Tile, weights: &[i8], np: usize, acc: &mut [i32]) {
    tile.check(weights, np, acc);
    match kernel {
        Kernel::Scalar => scalar(tile, weights, np, acc),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::available` offers these only where the CPU has
        // them, and `check` bounds every read and write.
        Kernel::Avx2 => unsafe { x86::avx2(tile, weights, np, acc) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Short => unsafe { x86::avx2_short(tile, weights, np, acc) },
        #[cfg(target_arch = "x86_64")]
        Kernel::AvxVnni => unsafe { x86::avxvnni(tile, weights, np, acc) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512Vnni => unsafe { x86::vnni(tile, weights, np, acc) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => scalar(tile, weights, np, acc),
    }
}

fn scalar(tile: &Tile, weights: &[i8], np: usize, acc: &mut [i32]) {
    for p in 0..tile.pixels {
        let out = &mut acc[p * np..(p + 1) * np];
        out.fill(0);
        for (t, &tap) in tile.taps.iter().enumerate() {
            let at = tile.base + p * tile.stride + tap;
            for g in 0..tile.groups {
                let a = &tile.input[at + 4 * g..at + 4 * g + 4];
                let w = &weights[(t * tile.groups + g) * np * 4..][..np * 4];
                for (o, sum) in out.iter_mut().enumerate() {
                    *sum += (0..4).map(|l| a[l] as i32 * w[o * 4 + l] as i32).sum::<i32>();
                }
            }
        }
    }
}
