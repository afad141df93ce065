//! The integer engine's x86 kernels (`dot.rs` chooses among them): AVX-512
//! VNNI, AVX-VNNI and AVX2, each as sums handed on and as codes made in
//! registers. Every read is bounded by `Tile::check` in the caller.

use super::tile::{Codes, Out, Tile, TILE};
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
        |p, c0, s| ymm_codes(codes, np, c0, s, dst, base + p * stride + c0),
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
        |p, c0, s| ymm_codes(codes, np, c0, s, dst, base + p * stride + c0),
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
        |p, c0, s| ymm_codes(codes, np, c0, s, dst, base + p * stride + c0),
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
        |p, c0, s| ymm_codes(codes, np, c0, _mm256_madd_epi16(s, ones), dst, base + p * stride + c0),
    );
}

/// Codes of 8 channels from `c0` written to `dst[at..]` (those below
/// `cout`). The offset is added only once `c0` is known to be below `cout`:
/// past it, `at` may lie beyond the output.
#[inline(always)]
unsafe fn ymm_codes(codes: &Codes, np: usize, c0: usize, sum: __m256i, dst: *mut u8, at: usize) {
    if c0 >= codes.cout {
        return;
    }
    let at = dst.add(at);
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
