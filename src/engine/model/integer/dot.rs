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
//! it. `np` is a multiple of 8, so a layer of 6 or 24 channels computes 8
//! or 24, not 16 or 32: the AVX-512 kernel takes 16 channels a vector and
//! the last 8 in a 256-bit one.

use crate::engine::model::kernels::cpu::simd;

/// Pixels per tile: 8 pixels x 2 vectors of 16 channels are 16
/// accumulators, half of AVX-512's registers.
pub const TILE: usize = 8;

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
                if std::arch::is_x86_feature_detected!("avxvnni") {
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

/// Where one tile's product reads and writes.
pub struct Tile<'a> {
    pub input: &'a [u8],
    /// Offset of the tile's first pixel.
    pub base: usize,
    /// Bytes from one pixel of the tile to the next.
    pub stride: usize,
    /// Pixels in the tile, 1 ..= TILE.
    pub pixels: usize,
    /// Offset of each tap from a pixel's start.
    pub taps: &'a [usize],
    /// Channel groups of 4 per tap.
    pub groups: usize,
}

impl Tile<'_> {
    /// The checks that make the unchecked reads of the SIMD kernels safe.
    fn check(&self, weights: &[i8], np: usize, acc: &[i32]) {
        assert!(np.is_multiple_of(8) && (1..=TILE).contains(&self.pixels));
        assert!(weights.len() >= self.taps.len() * self.groups * np * 4);
        assert!(acc.len() >= self.pixels * np);
        let last = self.base + (self.pixels - 1) * self.stride + self.taps.iter().max().copied().unwrap_or(0) + self.groups * 4;
        assert!(self.input.len() >= last, "a tile reads past its input");
    }
}

/// How a layer turns its sums into codes: code[o] is the number of levels
/// j with sign[o] * S[o] at or above thresholds[j * np + o], where S = acc,
/// or 2 acc + acc[cout] for 8-bit weights (stored as l - 128, with a
/// column of ones at `cout`).
pub struct Codes<'a> {
    pub sign: &'a [i32],
    pub thresholds: &'a [i32],
    pub levels: usize,
    pub cout: usize,
    pub eight_bit: bool,
}

impl Codes<'_> {
    /// One pixel's codes from its sums (`acc`, np of them, overwritten).
    fn write(&self, acc: &mut [i32], out: &mut [u8]) {
        let (cout, np) = (self.cout, acc.len());
        if self.eight_bit {
            let ones = acc[cout];
            for s in &mut acc[..cout] {
                *s = 2 * *s + ones;
            }
        }
        for (o, code) in out[..cout].iter_mut().enumerate() {
            let s = acc[o] * self.sign[o];
            *code = (0..self.levels).filter(|&j| s >= self.thresholds[j * np + o]).count() as u8;
        }
    }
}

/// Where a tile's codes go: pixel p's `cout` codes at `base + p * stride` of `out`.
pub struct Out<'a> {
    pub out: &'a mut [u8],
    pub base: usize,
    pub stride: usize,
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Codes, Out, Tile, TILE};
    use std::arch::x86_64::*;

    /// The four codes of a channel group, as one i32 to broadcast.
    #[inline(always)]
    unsafe fn quad(input: *const u8) -> i32 {
        std::ptr::read_unaligned(input as *const i32)
    }

    /// The kernels' sums handed on as they are.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn vnni(tile: &Tile, weights: &[i8], np: usize, acc: &mut [i32]) {
        let out = acc.as_mut_ptr();
        zmm_all(
            tile,
            weights,
            np,
            |s, a, w| _mm256_dpbusd_epi32(s, a, w),
            |p, c0, s| _mm512_storeu_si512(out.add(p * np + c0) as *mut _, s),
            |p, c0, s| _mm256_storeu_si256(out.add(p * np + c0) as *mut _, s),
        );
    }

    #[target_feature(enable = "avx2,avxvnni")]
    pub unsafe fn avxvnni(tile: &Tile, weights: &[i8], np: usize, acc: &mut [i32]) {
        let out = acc.as_mut_ptr();
        ymm_all::<4>(
            tile,
            weights,
            np,
            |s, a, w| _mm256_dpbusd_avx_epi32(s, a, w),
            |p, c0, s| _mm256_storeu_si256(out.add(p * np + c0) as *mut _, s),
        );
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2(tile: &Tile, weights: &[i8], np: usize, acc: &mut [i32]) {
        let out = acc.as_mut_ptr();
        let ones = _mm256_set1_epi16(1);
        // u8 x i8 pairs into i16 (exact: `Kernel::exact_for`), then pairs of those into i32.
        ymm_all::<4>(
            tile,
            weights,
            np,
            |s, a, w| _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(a, w), ones)),
            |p, c0, s| _mm256_storeu_si256(out.add(p * np + c0) as *mut _, s),
        );
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2_short(tile: &Tile, weights: &[i8], np: usize, acc: &mut [i32]) {
        let out = acc.as_mut_ptr();
        let ones = _mm256_set1_epi16(1);
        ymm_all::<4>(
            tile,
            weights,
            np,
            |s, a, w| _mm256_add_epi16(s, _mm256_maddubs_epi16(a, w)),
            |p, c0, s| _mm256_storeu_si256(out.add(p * np + c0) as *mut _, _mm256_madd_epi16(s, ones)),
        );
    }

    /// The kernels with their sums turned into codes in registers: sign,
    /// one compare per level, the codes narrowed to bytes and stored.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub unsafe fn vnni_codes(tile: &Tile, weights: &[i8], np: usize, codes: &Codes, out: &mut Out) {
        let cout = codes.cout;
        let dst = out.out.as_mut_ptr();
        let write = |p: usize, c0: usize, sum: __m512i| {
            if c0 >= cout {
                return;
            }
            let s = _mm512_mullo_epi32(sum, _mm512_loadu_si512(codes.sign.as_ptr().add(c0) as *const _));
            let one = _mm512_set1_epi32(1);
            let mut code = _mm512_setzero_si512();
            for j in 0..codes.levels {
                let t = _mm512_loadu_si512(codes.thresholds.as_ptr().add(j * np + c0) as *const _);
                code = _mm512_mask_add_epi32(code, _mm512_cmpge_epi32_mask(s, t), code, one);
            }
            let lanes = (cout - c0).min(16);
            let at = dst.add(out.base + p * out.stride + c0);
            _mm_mask_storeu_epi8(at as *mut _, ((1u32 << lanes) - 1) as u16, _mm512_cvtepi32_epi8(code));
        };
        let (base, stride) = (out.base, out.stride);
        zmm_all(
            tile,
            weights,
            np,
            |s, a, w| _mm256_dpbusd_epi32(s, a, w),
            write,
            |p, c0, s| ymm_codes(codes, np, c0, s, dst.add(base + p * stride + c0)),
        );
    }

    #[target_feature(enable = "avx2,avxvnni")]
    pub unsafe fn avxvnni_codes(tile: &Tile, weights: &[i8], np: usize, codes: &Codes, out: &mut Out) {
        let (dst, base, stride) = (out.out.as_mut_ptr(), out.base, out.stride);
        ymm_all::<4>(
            tile,
            weights,
            np,
            |s, a, w| _mm256_dpbusd_avx_epi32(s, a, w),
            |p, c0, s| ymm_codes(codes, np, c0, s, dst.add(base + p * stride + c0)),
        );
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2_codes(tile: &Tile, weights: &[i8], np: usize, codes: &Codes, out: &mut Out) {
        let (dst, base, stride) = (out.out.as_mut_ptr(), out.base, out.stride);
        let ones = _mm256_set1_epi16(1);
        ymm_all::<4>(
            tile,
            weights,
            np,
            |s, a, w| _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(a, w), ones)),
            |p, c0, s| ymm_codes(codes, np, c0, s, dst.add(base + p * stride + c0)),
        );
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2_short_codes(tile: &Tile, weights: &[i8], np: usize, codes: &Codes, out: &mut Out) {
        let (dst, base, stride) = (out.out.as_mut_ptr(), out.base, out.stride);
        let ones = _mm256_set1_epi16(1);
        ymm_all::<4>(
            tile,
            weights,
            np,
            |s, a, w| _mm256_add_epi16(s, _mm256_maddubs_epi16(a, w)),
            |p, c0, s| ymm_codes(codes, np, c0, _mm256_madd_epi16(s, ones), dst.add(base + p * stride + c0)),
        );
    }

    /// Codes of 8 channels from `c0` written to `at` (those below `cout`).
    #[inline(always)]
    unsafe fn ymm_codes(codes: &Codes, np: usize, c0: usize, sum: __m256i, at: *mut u8) {
        if c0 >= codes.cout {
            return;
        }
        let s = _mm256_mullo_epi32(sum, _mm256_loadu_si256(codes.sign.as_ptr().add(c0) as *const _));
        let mut code = _mm256_setzero_si256();
        for j in 0..codes.levels {
            // s >= t as s > t - 1: thresholds lie within +-2^30 (or are i32::MAX).
            let t = _mm256_loadu_si256(codes.thresholds.as_ptr().add(j * np + c0) as *const _);
            code = _mm256_sub_epi32(code, _mm256_cmpgt_epi32(s, _mm256_sub_epi32(t, _mm256_set1_epi32(1))));
        }
        // Codes are at most 255, so the saturating packs keep them; each
        // 128-bit half then starts with its 4 channels' bytes.
        let bytes = _mm256_packus_epi16(_mm256_packs_epi32(code, code), _mm256_setzero_si256());
        let eight = (_mm256_extract_epi32::<0>(bytes) as u32 as u64) | ((_mm256_extract_epi32::<4>(bytes) as u32 as u64) << 32);
        let lanes = (codes.cout - c0).min(8);
        std::ptr::copy_nonoverlapping(eight.to_le_bytes().as_ptr(), at, lanes);
    }

    /// Every pixel and channel of a tile with AVX-512: two vectors of 16
    /// channels at a time where there are two (each broadcast code feeds
    /// two products), then one, then the last 8 channels in a 256-bit
    /// vector (`step`: the 256-bit `vpdpbusd`). `each16` and `each8` get
    /// (pixel, first channel, sums).
    #[inline(always)]
    unsafe fn zmm_all(
        tile: &Tile,
        weights: &[i8],
        np: usize,
        step: impl Fn(__m256i, __m256i, __m256i) -> __m256i + Copy,
        mut each16: impl FnMut(usize, usize, __m512i),
        mut each8: impl FnMut(usize, usize, __m256i),
    ) {
        let mut v = 0;
        while v < np {
            let width = if v + 32 <= np {
                32
            } else if v + 16 <= np {
                16
            } else {
                8
            };
            let mut p = 0;
            while p < tile.pixels {
                let n = if p + TILE <= tile.pixels { TILE } else { 1 };
                let sub = Tile { base: tile.base + p * tile.stride, pixels: n, ..*tile };
                let mut at16 = |q: usize, k: usize, s| each16(p + q, v + 16 * k, s);
                let mut at8 = |q: usize, _: usize, s| each8(p + q, v, s);
                match (n == TILE, width) {
                    (true, 32) => zmm_sums::<TILE, 2>(&sub, weights, np, v, &mut at16),
                    (true, 16) => zmm_sums::<TILE, 1>(&sub, weights, np, v, &mut at16),
                    (true, _) => ymm_sums::<TILE, 1>(&sub, weights, np, v, step, &mut at8),
                    (false, 32) => zmm_sums::<1, 2>(&sub, weights, np, v, &mut at16),
                    (false, 16) => zmm_sums::<1, 1>(&sub, weights, np, v, &mut at16),
                    (false, _) => ymm_sums::<1, 1>(&sub, weights, np, v, step, &mut at8),
                }
                p += n;
            }
            v += width;
        }
    }

    /// Every pixel and channel of a tile in 256-bit vectors, P pixels and
    /// 16 channels at a time (8 accumulators: AVX2 has 16 registers), then
    /// the last 8 channels and the last pixels one by one.
    #[inline(always)]
    unsafe fn ymm_all<const P: usize>(
        tile: &Tile,
        weights: &[i8],
        np: usize,
        step: impl Fn(__m256i, __m256i, __m256i) -> __m256i + Copy,
        mut each: impl FnMut(usize, usize, __m256i),
    ) {
        let mut v = 0;
        while v < np {
            let two = v + 16 <= np;
            let mut p = 0;
            while p < tile.pixels {
                let n = if p + P <= tile.pixels { P } else { 1 };
                let sub = Tile { base: tile.base + p * tile.stride, pixels: n, ..*tile };
                let mut at = |q: usize, k: usize, s| each(p + q, v + 8 * k, s);
                match (n == P, two) {
                    (true, true) => ymm_sums::<P, 2>(&sub, weights, np, v, step, &mut at),
                    (true, false) => ymm_sums::<P, 1>(&sub, weights, np, v, step, &mut at),
                    (false, true) => ymm_sums::<1, 2>(&sub, weights, np, v, step, &mut at),
                    (false, false) => ymm_sums::<1, 1>(&sub, weights, np, v, step, &mut at),
                }
                p += n;
            }
            v += if two { 16 } else { 8 };
        }
    }

    /// The sums of P pixels' V vectors of 16 channels from channel `v0`,
    /// each handed to `each(pixel, vector, sums)`.
    #[inline(always)]
    unsafe fn zmm_sums<const P: usize, const V: usize>(
        tile: &Tile,
        weights: &[i8],
        np: usize,
        v0: usize,
        mut each: impl FnMut(usize, usize, __m512i),
    ) {
        let mut sums = [[_mm512_setzero_si512(); V]; P];
        let input = tile.input.as_ptr();
        for (t, &tap) in tile.taps.iter().enumerate() {
            let w_row = weights.as_ptr().add((t * tile.groups * np + v0) * 4);
            let a_row = input.add(tile.base + tap);
            for g in 0..tile.groups {
                let w: [__m512i; V] = std::array::from_fn(|k| _mm512_loadu_si512(w_row.add((g * np + 16 * k) * 4) as *const _));
                for (p, sum) in sums.iter_mut().enumerate() {
                    let a = _mm512_set1_epi32(quad(a_row.add(p * tile.stride + 4 * g)));
                    for k in 0..V {
                        sum[k] = _mm512_dpbusd_epi32(sum[k], a, w[k]);
                    }
                }
            }
        }
        for (p, sum) in sums.iter().enumerate() {
            for (k, s) in sum.iter().enumerate() {
                each(p, k, *s);
            }
        }
    }

    /// `zmm_sums` in 256-bit vectors of 8 channels, `step(sums, codes,
    /// weights)` adding each channel's four products.
    #[inline(always)]
    unsafe fn ymm_sums<const P: usize, const V: usize>(
        tile: &Tile,
        weights: &[i8],
        np: usize,
        v0: usize,
        step: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
        mut each: impl FnMut(usize, usize, __m256i),
    ) {
        let mut sums = [[_mm256_setzero_si256(); V]; P];
        let input = tile.input.as_ptr();
        for (t, &tap) in tile.taps.iter().enumerate() {
            let w_row = weights.as_ptr().add((t * tile.groups * np + v0) * 4);
            let a_row = input.add(tile.base + tap);
            for g in 0..tile.groups {
                let w: [__m256i; V] = std::array::from_fn(|k| _mm256_loadu_si256(w_row.add((g * np + 8 * k) * 4) as *const _));
                for (p, sum) in sums.iter_mut().enumerate() {
                    let a = _mm256_set1_epi32(quad(a_row.add(p * tile.stride + 4 * g)));
                    for k in 0..V {
                        sum[k] = step(sum[k], a, w[k]);
                    }
                }
            }
        }
        for (p, sum) in sums.iter().enumerate() {
            for (k, s) in sum.iter().enumerate() {
                each(p, k, *s);
            }
        }
    }
}
