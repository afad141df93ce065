//! The integer engine's one product: for a tile of up to `TILE` pixels,
//!
//! acc[p * np + o] = sum over taps t, groups g < groups, lanes l < 4 of
//!     input[base + p * stride + taps[t] + 4 g + l] * weights[((t * groups + g) * np + o) * 4 + l]
//!
//! u8 activation codes times i8 weights into i32, exactly. A 3x3 conv is 9
//! taps over a zero-padded channels-last image; a linear layer is one tap
//! over a flattened one. Weights are laid out once at load so that one
//! vector load holds 16 output channels' four weights of a channel group:
//! the shape `vpdpbusd` (AVX-512 VNNI) reads, and `vpmaddubsw` (AVX2) after
//! it in two halves. `np` is a multiple of 16.

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
    /// AVX-512 VNNI `vpdpbusd`: four products into 32 bits, no saturation.
    Avx512Vnni,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2 (vpmaddubsw)",
            Kernel::Avx512Vnni => "avx512-vnni (vpdpbusd)",
        }
    }

    /// The fastest kernel this CPU runs, under `KDTUI_SIMD`'s cap.
    pub fn best() -> Kernel {
        Self::available().into_iter().max().unwrap_or(Kernel::Scalar)
    }

    /// Every kernel this CPU can run under `KDTUI_SIMD`'s cap (tests run each).
    pub fn available() -> Vec<Kernel> {
        let mut out = vec![Kernel::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            let level = simd::level();
            if level >= simd::Level::Avx2 {
                out.push(Kernel::Avx2);
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
    /// of magnitude up to `max_weight`: AVX2 sums two products in 16 bits
    /// with saturation (2 x 255 x 128 would saturate; 2-bit codes and
    /// weights, 2 x 3 x 2, are far from it).
    pub fn exact_for(self, max_code: u32, max_weight: u32) -> bool {
        match self {
            Kernel::Avx2 => 2 * max_code * max_weight <= i16::MAX as u32,
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
        assert!(np.is_multiple_of(16) && (1..=TILE).contains(&self.pixels));
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
            Kernel::Avx2 => return unsafe { x86::avx2_codes(tile, weights, np, codes, out, acc) },
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

    /// `vnni`, with the sums turned into codes in registers: sign, one
    /// compare per level, and 16 channels' codes narrowed to bytes and
    /// stored under a mask.
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
        let mut v = 0;
        while v < np {
            let two = v + 32 <= np;
            for p0 in (0..tile.pixels).step_by(if tile.pixels == TILE { TILE } else { 1 }) {
                let sub = Tile { base: tile.base + p0 * tile.stride, pixels: if tile.pixels == TILE { TILE } else { 1 }, ..*tile };
                match (sub.pixels == TILE, two) {
                    (true, true) => vnni_sums::<TILE, 2>(&sub, weights, np, v, |p, k, s| write(p0 + p, v + 16 * k, s)),
                    (true, false) => vnni_sums::<TILE, 1>(&sub, weights, np, v, |p, k, s| write(p0 + p, v + 16 * k, s)),
                    (false, true) => vnni_sums::<1, 2>(&sub, weights, np, v, |p, k, s| write(p0 + p, v + 16 * k, s)),
                    (false, false) => vnni_sums::<1, 1>(&sub, weights, np, v, |p, k, s| write(p0 + p, v + 16 * k, s)),
                }
            }
            v += if two { 32 } else { 16 };
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn vnni(tile: &Tile, weights: &[i8], np: usize, acc: &mut [i32]) {
        let mut v = 0;
        // Two vectors of 16 channels at a time where there are two, so each
        // broadcast code feeds two products.
        while v + 32 <= np {
            if tile.pixels == TILE {
                vnni_block::<TILE, 2>(tile, weights, np, v, acc);
            } else {
                for p in 0..tile.pixels {
                    vnni_block::<1, 2>(&Tile { base: tile.base + p * tile.stride, pixels: 1, ..*tile }, weights, np, v, &mut acc[p * np..]);
                }
            }
            v += 32;
        }
        if v < np {
            if tile.pixels == TILE {
                vnni_block::<TILE, 1>(tile, weights, np, v, acc);
            } else {
                for p in 0..tile.pixels {
                    vnni_block::<1, 1>(&Tile { base: tile.base + p * tile.stride, pixels: 1, ..*tile }, weights, np, v, &mut acc[p * np..]);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn vnni_block<const P: usize, const V: usize>(tile: &Tile, weights: &[i8], np: usize, v0: usize, acc: &mut [i32]) {
        let out = acc.as_mut_ptr();
        vnni_sums::<P, V>(tile, weights, np, v0, |p, k, s| _mm512_storeu_si512(out.add(p * np + v0 + 16 * k) as *mut _, s));
    }

    /// The sums of P pixels' V vectors of 16 channels from channel `v0`,
    /// each handed to `each(pixel, vector, sums)`.
    #[inline(always)]
    unsafe fn vnni_sums<const P: usize, const V: usize>(
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

    /// `avx2`, then codes 8 channels at a time: sign, one compare per level.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2_codes(tile: &Tile, weights: &[i8], np: usize, codes: &Codes, out: &mut Out, acc: &mut [i32]) {
        avx2(tile, weights, np, acc);
        let cout = codes.cout;
        for p in 0..tile.pixels {
            let at = out.base + p * out.stride;
            for c0 in (0..cout).step_by(8) {
                let sum = _mm256_loadu_si256(acc.as_ptr().add(p * np + c0) as *const _);
                let s = _mm256_mullo_epi32(sum, _mm256_loadu_si256(codes.sign.as_ptr().add(c0) as *const _));
                let mut code = _mm256_setzero_si256();
                for j in 0..codes.levels {
                    // s >= t as s > t - 1: thresholds lie within +-2^30.
                    let t = _mm256_loadu_si256(codes.thresholds.as_ptr().add(j * np + c0) as *const _);
                    code = _mm256_sub_epi32(code, _mm256_cmpgt_epi32(s, _mm256_sub_epi32(t, _mm256_set1_epi32(1))));
                }
                let mut lanes = [0i32; 8];
                _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, code);
                for (o, &c) in lanes.iter().enumerate().take(cout - c0) {
                    out.out[at + c0 + o] = c as u8;
                }
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2(tile: &Tile, weights: &[i8], np: usize, acc: &mut [i32]) {
        const P: usize = 4;
        for v in (0..np).step_by(16) {
            let mut p = 0;
            while p + P <= tile.pixels {
                avx2_block::<P>(tile, weights, np, v, p, acc);
                p += P;
            }
            while p < tile.pixels {
                avx2_block::<1>(tile, weights, np, v, p, acc);
                p += 1;
            }
        }
    }

    /// 16 channels (two vectors of 8) for P pixels from pixel `p0`.
    #[inline(always)]
    unsafe fn avx2_block<const P: usize>(tile: &Tile, weights: &[i8], np: usize, v0: usize, p0: usize, acc: &mut [i32]) {
        let ones = _mm256_set1_epi16(1);
        let mut sums = [[_mm256_setzero_si256(); 2]; P];
        let input = tile.input.as_ptr().add(tile.base + p0 * tile.stride);
        for (t, &tap) in tile.taps.iter().enumerate() {
            let w_row = weights.as_ptr().add((t * tile.groups * np + v0) * 4);
            let a_row = input.add(tap);
            for g in 0..tile.groups {
                let w0 = _mm256_loadu_si256(w_row.add(g * np * 4) as *const _);
                let w1 = _mm256_loadu_si256(w_row.add(g * np * 4 + 32) as *const _);
                for (p, sum) in sums.iter_mut().enumerate() {
                    let a = _mm256_set1_epi32(quad(a_row.add(p * tile.stride + 4 * g)));
                    // u8 x i8 pairs into i16 (exact: `Kernel::exact_for`), then pairs of those into i32.
                    sum[0] = _mm256_add_epi32(sum[0], _mm256_madd_epi16(_mm256_maddubs_epi16(a, w0), ones));
                    sum[1] = _mm256_add_epi32(sum[1], _mm256_madd_epi16(_mm256_maddubs_epi16(a, w1), ones));
                }
            }
        }
        for (p, sum) in sums.iter().enumerate() {
            let out = acc.as_mut_ptr().add((p0 + p) * np + v0);
            _mm256_storeu_si256(out as *mut _, sum[0]);
            _mm256_storeu_si256(out.add(8) as *mut _, sum[1]);
        }
    }
}
