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
        assert!(planes.len() >= CHANNELS * (SIDE + 2) * (SIDE + 2) && self.weights.len() >= self.cout.div_ceil(4) * 4 * 27);
        assert!(out.len() >= (SIDE / 2 + 2) * (SIDE / 2 + 2) * cp && self.cout <= cp);
        #[cfg(target_arch = "x86_64")]
        if simd::level() >= simd::Level::Avx512 {
            // SAFETY: the level says the CPU has AVX-512F; the asserts bound every access.
            return unsafe { x86::first_conv(planes, &self.weights, &self.scale, &self.shift, self.act, self.cout, cp, out) };
        }
        first_conv(planes, &self.weights, &self.scale, &self.shift, self.act, self.cout, cp, out)
    }
}

multiversion! {
    /// The first conv on the padded normalised planes [3][34][34], its
    /// codes 2x2 max-pooled into `out`, the second layer's padded
    /// [18][18][cp] input. Two output rows of 32 for 4 output channels at a
    /// time (16 vector accumulators), so each input row loaded serves 4
    /// products and the pooling needs no second pass. `weights` holds
    /// whole groups of 4 channels (zeros past `cout`).
    #[allow(clippy::too_many_arguments)]
    fn first_conv(planes: &[f32], weights: &[f32], scale: &[f32], shift: &[f32], act: (f32, f32), cout: usize, cp: usize, out: &mut [u8]) {
        const GROUP: usize = 4;
        let (range, up) = act;
        let p = SIDE + 2;
        let half = SIDE / 2;
        let fused = simd::level() >= simd::Level::Avx2;
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
                                        // Without FMA instructions (baseline x86-64) mul_add is a library call.
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

    /// `first_conv` in AVX-512 registers: two rows of 32 for 4 channels are
    /// 16 accumulators, which the portable version's arrays left in memory
    /// (a load and a store around every product). The same products in the
    /// same order: the same codes.
    #[target_feature(enable = "avx512f,avx512bw")]
    // Indexed: the row, the group and the half index three arrays at once.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    pub unsafe fn first_conv(
        planes: &[f32],
        weights: &[f32],
        scale: &[f32],
        shift: &[f32],
        act: (f32, f32),
        cout: usize,
        cp: usize,
        out: &mut [u8],
    ) {
        const GROUP: usize = 4;
        let (range, up) = act;
        let p = SIDE + 2;
        let half = SIDE / 2;
        let planes = planes.as_ptr();
        for c0 in (0..cout).step_by(GROUP) {
            for py in 0..half {
                let mut acc = [[[_mm512_setzero_ps(); 2]; 2]; GROUP];
                for c in 0..3 {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let w: [__m512; GROUP] =
                                std::array::from_fn(|g| _mm512_set1_ps(weights[(c0 + g) * 27 + (c * 3 + ky) * 3 + kx]));
                            for r in 0..2 {
                                let row = planes.add((c * p + 2 * py + r + ky) * p + kx);
                                let x = [_mm512_loadu_ps(row), _mm512_loadu_ps(row.add(16))];
                                for g in 0..GROUP {
                                    for h in 0..2 {
                                        acc[g][r][h] = _mm512_fmadd_ps(w[g], x[h], acc[g][r][h]);
                                    }
                                }
                            }
                        }
                    }
                }
                for (g, acc) in acc.iter().enumerate().take(cout - c0) {
                    let co = c0 + g;
                    let (k, m) = (_mm512_set1_ps(scale[co]), _mm512_set1_ps(shift[co]));
                    let mut codes = [[0u8; SIDE]; 2];
                    for (codes, acc) in codes.iter_mut().zip(acc) {
                        for (h, &a) in acc.iter().enumerate() {
                            let y = _mm512_add_ps(_mm512_mul_ps(a, k), m);
                            let y = _mm512_min_ps(_mm512_max_ps(y, _mm512_setzero_ps()), _mm512_set1_ps(range));
                            let q = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
                                y,
                                _mm512_set1_ps(up),
                            ));
                            _mm_storeu_si128(codes[16 * h..].as_mut_ptr() as *mut _, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q)));
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

#[cfg(test)]
mod tests {
    use crate::engine::data::{CHANNELS, SIDE};
    use crate::engine::model::integer::first::{first_conv, x86};
    use rand::{Rng, SeedableRng};

    /// The AVX-512 kernel gives the portable one's codes (at whatever level
    /// `KDTUI_SIMD` holds it), byte for byte: the same products in the
    /// same order.
    #[test]
    #[cfg_attr(kdtui_no_avx512, ignore = "this CPU has no AVX-512: the AVX-512 first conv cannot run here")]
    fn the_avx512_first_conv_gives_the_portable_codes() {
        #[cfg(target_arch = "x86_64")]
        {
            let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(4);
            for cout in [1usize, 4, 6, 9] {
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
                let weights: Vec<f32> = (0..cp * 27).map(|i| if i < cout * 27 { r.random_range(-1.0..1.0) } else { 0.0 }).collect();
                let scale: Vec<f32> = (0..cout).map(|i| r.random_range(0.5..2.0) * if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
                let shift: Vec<f32> = (0..cout).map(|_| r.random_range(0.0..2.0)).collect();
                let half = SIDE / 2 + 2;
                let (mut want, mut got) = (vec![0u8; half * half * cp], vec![0u8; half * half * cp]);
                first_conv(&planes, &weights, &scale, &shift, (3.0, 1.0), cout, cp, &mut want);
                // SAFETY: the level says AVX-512F is there.
                unsafe { x86::first_conv(&planes, &weights, &scale, &shift, (3.0, 1.0), cout, cp, &mut got) };
                assert_eq!(want, got, "{cout} channels");
                assert!(want.iter().any(|&c| c > 0) && want.contains(&3), "codes spread over the levels");
            }
        }
    }
}
