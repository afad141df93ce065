//! The integer engine's first conv: float pixels in, codes out, pooled.

use crate::engine::data::{CHANNELS, SIDE};
use crate::engine::model::kernels::cpu::simd::{self, multiversion};

/// The first conv: float pixels, float (or dequantized) weights, fp32 as
/// in the float engine (fused multiply-adds, as its matrix product's);
/// its codes from the float value as the quantizer computes them.
pub(super) struct FirstLayer {
    pub cout: usize,
    /// [cout][3][3][3]
    pub weights: Vec<f32>,
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub act: (f32, f32),
}

impl FirstLayer {
    /// Codes of the padded normalised planes [3][34][34], 2x2 max-pooled
    /// into `out`, the second layer's padded [18][18][cp] input.
    pub fn forward(&self, planes: &[f32], cp: usize, out: &mut [u8]) {
        assert!(planes.len() >= CHANNELS * (SIDE + 2) * (SIDE + 2) && self.weights.len() >= (self.cout + PAST) * 27);
        assert!(out.len() >= (SIDE / 2 + 2) * (SIDE / 2 + 2) * cp && self.cout <= cp);
        #[cfg(target_arch = "x86_64")]
        {
            let level = simd::level();
            let args = (planes, &self.weights[..], &self.scale[..], &self.shift[..], self.act, self.cout, cp);
            // SAFETY: the level says the CPU has the instructions; the asserts bound every access.
            if level >= simd::Level::Avx512 {
                return unsafe { x86::first_conv_avx512(args, out) };
            }
            if level >= simd::Level::Avx2 {
                return unsafe { x86::first_conv_avx2(args, out) };
            }
        }
        let fused = simd::level() >= simd::Level::Avx2;
        first_conv(planes, &self.weights, &self.scale, &self.shift, self.act, self.cout, cp, fused, out)
    }
}

/// Output channels of zero weights `weights` holds past `cout`: the SIMD
/// kernels take channels in groups of 3, 4 or 6 and read a last group's
/// weights whole (at most 3 channels past `cout`; 5 leaves room for a
/// group of 6 with one channel in it).
pub(super) const PAST: usize = 5;

multiversion! {
    /// The first conv on the padded normalised planes [3][34][34], its
    /// codes 2x2 max-pooled into `out`, the second layer's padded
    /// [18][18][cp] input: the reference the SIMD kernels are tested
    /// against, and what runs where they cannot. Two output rows of 32 for
    /// 4 output channels at a time, so each input row loaded serves 4
    /// products and the pooling needs no second pass; `weights` holds
    /// zeros past `cout` (`PAST`). `fused`: multiply-adds rounded once, as
    /// the float engine's matrix product does where the CPU has FMA (the
    /// SIMD kernels always; without FMA `mul_add` is a slow library call).
    #[allow(clippy::too_many_arguments)]
    fn first_conv(planes: &[f32], weights: &[f32], scale: &[f32], shift: &[f32], act: (f32, f32), cout: usize, cp: usize, fused: bool, out: &mut [u8]) {
        const GROUP: usize = 4;
        let (range, up) = act;
        let p = SIDE + 2;
        let half = SIDE / 2;
        for c0 in (0..cout).step_by(GROUP) {
            let w = &weights[c0 * 27..(c0 + GROUP) * 27];
            for py in 0..half {
                let mut acc = [[[0f32; SIDE]; 2]; GROUP];
                for c in 0..CHANNELS {
                    for r in 0..2 {
                        for ky in 0..3 {
                            let row = &planes[(c * p + 2 * py + r + ky) * p..][..p];
                            for kx in 0..3 {
                                let row = &row[kx..kx + SIDE];
                                for (g, acc) in acc.iter_mut().enumerate() {
                                    let k = w[g * 27 + (c * 3 + ky) * 3 + kx];
                                    for (a, &v) in acc[r].iter_mut().zip(row) {
                                        *a = if fused { k.mul_add(v, *a) } else { k * v + *a };
                                    }
                                }
                            }
                        }
                    }
                }
                for (g, acc) in acc.iter().enumerate().take(cout - c0) {
                    let co = c0 + g;
                    // Coded along the rows (contiguous, vectorised), then pooled.
                    let mut codes = [[0u8; SIDE]; 2];
                    for (codes, acc) in codes.iter_mut().zip(acc) {
                        for (code, &a) in codes.iter_mut().zip(acc) {
                            *code = ((a * scale[co] + shift[co]).max(0.0).min(range) * up).round_ties_even() as u8;
                        }
                    }
                    for px in 0..half {
                        let best = codes[0][2 * px].max(codes[0][2 * px + 1]).max(codes[1][2 * px]).max(codes[1][2 * px + 1]);
                        out[((py + 1) * (half + 2) + px + 1) * cp + co] = best;
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::engine::data::SIDE;
    use std::arch::x86_64::*;

    /// What both kernels read: planes, weights, scale, shift, act, cout, cp;
    /// `weights` holds `(cout + PAST) * 27` values (`FirstLayer::forward`
    /// checks it, and the kernels read past `cout` unchecked).
    pub type Args<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32], (f32, f32), usize, usize);

    /// `first_conv` in AVX-512 registers: two rows of 32 for G channels
    /// (6 where as many are left: no padding at 6 or 12 channels) are 4 G
    /// accumulators, which the portable version's arrays left in memory.
    /// The same products in the same order: the same codes.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn first_conv_avx512(args: Args, out: &mut [u8]) {
        let cout = args.5;
        let mut c0 = 0;
        while c0 < cout {
            let left = cout - c0;
            if matches!(left, 5 | 6) || left > 8 {
                rows512::<6>(args, c0, out);
                c0 += 6;
            } else {
                rows512::<4>(args, c0, out);
                c0 += 4;
            }
        }
    }

    /// Channels c0 .. c0 + G (those below cout) of every pooled row: each
    /// of its two conv rows in 2 G accumulators, the first row's y kept
    /// while the second is summed.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    unsafe fn rows512<const G: usize>(args: Args, c0: usize, out: &mut [u8]) {
        let (planes, weights, scale, shift, (range, up), cout, cp) = args;
        let (p, half) = (SIDE + 2, SIDE / 2);
        let planes = planes.as_ptr();
        let live = G.min(cout - c0);
        const EVEN: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
        const ODD: [i32; 16] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
        let (even, odd) = (_mm512_loadu_si512(EVEN.as_ptr() as *const _), _mm512_loadu_si512(ODD.as_ptr() as *const _));
        for py in 0..half {
            // y = acc scale + shift of each channel and half row, the two
            // rows' maximum once both are in.
            let mut ys = [[_mm512_setzero_ps(); 2]; G];
            for r in 0..2 {
                let mut acc = [[_mm512_setzero_ps(); 2]; G];
                for c in 0..3 {
                    for ky in 0..3 {
                        let row = planes.add((c * p + 2 * py + r + ky) * p);
                        for kx in 0..3 {
                            let x = [_mm512_loadu_ps(row.add(kx)), _mm512_loadu_ps(row.add(kx + 16))];
                            for g in 0..G {
                                let w = _mm512_set1_ps(*weights.get_unchecked((c0 + g) * 27 + (c * 3 + ky) * 3 + kx));
                                for h in 0..2 {
                                    acc[g][h] = _mm512_fmadd_ps(w, x[h], acc[g][h]);
                                }
                            }
                        }
                    }
                }
                for g in 0..live {
                    let (k, m) = (_mm512_set1_ps(scale[c0 + g]), _mm512_set1_ps(shift[c0 + g]));
                    for h in 0..2 {
                        let y = _mm512_add_ps(_mm512_mul_ps(acc[g][h], k), m);
                        ys[g][h] = if r == 0 { y } else { _mm512_max_ps(ys[g][h], y) };
                    }
                }
            }
            for g in 0..live {
                // The code is a nondecreasing function of y: pooling the y
                // and coding once gives the pooled codes, for a quarter of
                // the coding. Rows above, neighbouring columns here.
                let v = ys[g];
                let pooled = _mm512_max_ps(_mm512_permutex2var_ps(v[0], even, v[1]), _mm512_permutex2var_ps(v[0], odd, v[1]));
                let clipped = _mm512_min_ps(_mm512_max_ps(pooled, _mm512_setzero_ps()), _mm512_set1_ps(range));
                let q =
                    _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(clipped, _mm512_set1_ps(up)));
                let mut codes = [0u8; 16];
                _mm_storeu_si128(codes.as_mut_ptr() as *mut _, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q)));
                for (px, &code) in codes.iter().enumerate() {
                    out[((py + 1) * (half + 2) + px + 1) * cp + c0 + g] = code;
                }
            }
        }
    }

    /// `first_conv` in AVX2 registers: 16 columns of one conv row for 3
    /// channels are 6 accumulators, and the first row's y (6 more) wait
    /// for the second's, within AVX2's 16 registers. The same products in
    /// the same order as the portable version: the same codes.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)]
    pub unsafe fn first_conv_avx2(args: Args, out: &mut [u8]) {
        const G: usize = 3;
        let (planes, weights, scale, shift, (range, up), cout, cp) = args;
        let (p, half) = (SIDE + 2, SIDE / 2);
        let planes = planes.as_ptr();
        for c0 in (0..cout).step_by(G) {
            let live = G.min(cout - c0);
            for py in 0..half {
                for h in 0..2 {
                    let mut ys = [[_mm256_setzero_ps(); 2]; G];
                    for r in 0..2 {
                        let mut acc = [[_mm256_setzero_ps(); 2]; G];
                        for c in 0..3 {
                            for ky in 0..3 {
                                let row = planes.add((c * p + 2 * py + r + ky) * p + 16 * h);
                                for kx in 0..3 {
                                    let x = [_mm256_loadu_ps(row.add(kx)), _mm256_loadu_ps(row.add(kx + 8))];
                                    for g in 0..G {
                                        let w = _mm256_set1_ps(*weights.get_unchecked((c0 + g) * 27 + (c * 3 + ky) * 3 + kx));
                                        for q in 0..2 {
                                            acc[g][q] = _mm256_fmadd_ps(w, x[q], acc[g][q]);
                                        }
                                    }
                                }
                            }
                        }
                        for g in 0..live {
                            let (k, m) = (_mm256_set1_ps(scale[c0 + g]), _mm256_set1_ps(shift[c0 + g]));
                            for q in 0..2 {
                                let y = _mm256_add_ps(_mm256_mul_ps(acc[g][q], k), m);
                                ys[g][q] = if r == 0 { y } else { _mm256_max_ps(ys[g][q], y) };
                            }
                        }
                    }
                    for g in 0..live {
                        // Pooled before coding, as in the AVX-512 kernel.
                        // Columns 0-7 and 8-15: within each 128-bit half
                        // the even and odd columns pair up, giving pooled
                        // columns 0 1 4 5 | 2 3 6 7, which the permute orders.
                        let v = ys[g];
                        let pairs =
                            _mm256_max_ps(_mm256_shuffle_ps::<0b10_00_10_00>(v[0], v[1]), _mm256_shuffle_ps::<0b11_01_11_01>(v[0], v[1]));
                        let pooled = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(pairs)));
                        let clipped = _mm256_min_ps(_mm256_max_ps(pooled, _mm256_setzero_ps()), _mm256_set1_ps(range));
                        let q = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
                            clipped,
                            _mm256_set1_ps(up),
                        ));
                        let mut codes = [0i32; 8];
                        _mm256_storeu_si256(codes.as_mut_ptr() as *mut _, _mm256_cvtps_epi32(q));
                        for (i, &code) in codes.iter().enumerate() {
                            out[((py + 1) * (half + 2) + 8 * h + i + 1) * cp + c0 + g] = code as u8;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use crate::engine::data::{CHANNELS, SIDE};
    use crate::engine::model::integer::first::{first_conv, x86, PAST};
    use rand::{Rng, SeedableRng};

    /// The portable kernel's codes and `kernel`'s on the same random layers
    /// of several widths (groups of 3, 4 and 6 filled or not).
    fn same_codes(kernel: unsafe fn(x86::Args, &mut [u8])) {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for cout in [1usize, 3, 4, 5, 6, 7, 9, 12, 13] {
            let cp = cout.div_ceil(4) * 4;
            let p = SIDE + 2;
            let mut planes = vec![0f32; CHANNELS * p * p];
            for c in 0..CHANNELS {
                for y in 1..=SIDE {
                    for x in 1..=SIDE {
                        planes[(c * p + y) * p + x] = r.random_range(-2.0..2.0);
                    }
                }
            }
            let weights: Vec<f32> = (0..(cout + PAST) * 27).map(|i| if i < cout * 27 { r.random_range(-1.0..1.0) } else { 0.0 }).collect();
            let scale: Vec<f32> = (0..cout).map(|i| r.random_range(0.5..2.0) * if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
            let shift: Vec<f32> = (0..cout).map(|_| r.random_range(0.0..2.0)).collect();
            let half = SIDE / 2 + 2;
            // Bytes past `cout` in each pixel must stay as they were.
            let (mut want, mut got) = (vec![7u8; half * half * cp], vec![7u8; half * half * cp]);
            // Fused whatever `KDTUI_SIMD` says, as the SIMD kernels are.
            first_conv(&planes, &weights, &scale, &shift, (3.0, 1.0), cout, cp, true, &mut want);
            // SAFETY: the callers' cfg says the CPU has the kernel's instructions.
            unsafe { kernel((&planes, &weights, &scale, &shift, (3.0, 1.0), cout, cp), &mut got) };
            assert_eq!(want, got, "{cout} channels");
            assert!(want.contains(&0) && want.contains(&3), "codes spread over the levels");
        }
    }

    /// The SIMD kernels give the portable one's codes (at whatever level
    /// `KDTUI_SIMD` holds it), byte for byte: the same products in the same
    /// order, and pooling before coding is exact.
    #[test]
    #[cfg_attr(kdtui_no_avx512, ignore = "this CPU has no AVX-512: the AVX-512 first conv cannot run here")]
    fn the_avx512_first_conv_gives_the_portable_codes() {
        same_codes(x86::first_conv_avx512);
    }

    #[test]
    #[cfg_attr(kdtui_no_avx2, ignore = "this CPU has no AVX2 and FMA: the AVX2 first conv cannot run here")]
    fn the_avx2_first_conv_gives_the_portable_codes() {
        same_codes(x86::first_conv_avx2);
    }
}
