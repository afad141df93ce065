//! The bit-serial form of an integer layer: weights and codes as bit
//! planes, products as AND + popcount.
//!
//! A weight of level l = sum 2^i l_i and a code a = sum 2^j a_j give
//! S = sum (2l - n) a = 2 sum_ij 2^(i+j) popcount(L_i & A_j) - n sum a,
//! where L_i holds bit i of one output's weight levels over the receptive
//! field (9 taps x cin channels, or a linear layer's inputs) and A_j bit j
//! of the codes there. The work grows with the number of plane pairs
//! (w_bits x a_bits) where the byte kernels' does not, and each pixel's
//! codes are gathered and split into planes before any product: at the
//! study's layer widths (12 to 64 outputs over 72 to 384 inputs) the byte
//! kernels win wherever the CPU has them, from 1 x 1 bits up (`wins` holds
//! what `kdtui bench --int-layers` measured; docs/INTEGER.md). Bit k of
//! word w stands for receptive-field byte 64 w + k, in weights and codes
//! alike.

use super::dot::Kernel;
use super::tile::{Codes, Out, Tile};
#[cfg(target_arch = "x86_64")]
use crate::engine::model::kernels::cpu::simd;

/// Widest weights and codes the bit-serial form is built for: past 4 x 4
/// bits (16 plane pairs) it cannot win.
pub const MAX_BITS: u32 = 4;

/// How the planes' products are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BitKernel {
    /// One output and one 64-bit word at a time (`popcnt`; the portable
    /// `count_ones` where the CPU lacks it).
    Popcnt,
    /// AVX-512 VPOPCNTDQ: one word of 8 outputs at a time (Ice Lake, Zen 4/5).
    Avx512,
}

impl BitKernel {
    pub fn name(self) -> &'static str {
        match self {
            BitKernel::Popcnt => "bit-serial (popcnt)",
            BitKernel::Avx512 => "bit-serial (vpopcntq)",
        }
    }

    /// Every form this CPU runs under `KDTUI_SIMD`'s cap (tests run each).
    pub fn available() -> Vec<BitKernel> {
        #[allow(unused_mut)]
        let mut out = vec![BitKernel::Popcnt];
        #[cfg(target_arch = "x86_64")]
        if simd::level() >= simd::Level::Avx512 && std::arch::is_x86_feature_detected!("avx512vpopcntdq") {
            out.push(BitKernel::Avx512);
        }
        out
    }

    pub fn best() -> BitKernel {
        Self::available().into_iter().max().unwrap_or(BitKernel::Popcnt)
    }

    /// Whether a layer of up to `MAX_BITS` runs faster in this form than
    /// in `bytes`, the byte kernel it would take. Measured on each layer of
    /// the default student at 1 x 1 to 4 x 4 bits (`kdtui bench
    /// --int-layers`, 2-core AMD EPYC, docs/INTEGER.md): the SIMD byte
    /// kernels beat both bit-serial forms on every conv layer (AVX-512 VNNI
    /// by 3x to 20x, AVX2 by 3x to 22x) and VNNI comes level with
    /// `vpopcntq` only on the hidden layer at 1- and 2-bit weights with
    /// 1-bit codes (3% behind and 9% ahead in one run on a noisy machine:
    /// not taken on that); the bit-serial form beats
    /// the scalar byte product (no AVX2, or `KDTUI_SIMD=baseline`) by 1.5x
    /// to 15x.
    pub fn wins(self, bytes: Kernel) -> bool {
        bytes == Kernel::Scalar
    }
}

/// One layer's weights as bit planes.
pub struct BitWeights {
    w_bits: usize,
    a_bits: usize,
    /// 2^w_bits - 1: a level l is the weight 2l - n.
    n: i64,
    /// Receptive-field bytes (taps x cin) and the 64-bit words holding them.
    span: usize,
    words: usize,
    cout: usize,
    /// Outputs as laid out: `cout` rounded up to 8 (one AVX-512 vector).
    o8: usize,
    /// [w_bits][words][o8]: bit i of the weight levels.
    planes: Vec<u64>,
    /// [words]: the positions that hold a weight (not padding).
    valid: Vec<u64>,
}

impl BitWeights {
    /// `level(o, b)`: output o's weight level at receptive-field byte b
    /// (tap b / cin, channel b % cin), None where b is padding.
    pub fn new(w_bits: u32, a_bits: u32, span: usize, cout: usize, level: impl Fn(usize, usize) -> Option<u32>) -> Self {
        let (w_bits, a_bits) = (w_bits as usize, a_bits as usize);
        let words = span.div_ceil(64);
        let o8 = cout.div_ceil(8) * 8;
        let mut planes = vec![0u64; w_bits * words * o8];
        let mut valid = vec![0u64; words];
        for b in 0..span {
            let bit = 1u64 << (b % 64);
            if level(0, b).is_some() {
                valid[b / 64] |= bit;
            }
            for o in 0..cout {
                let l = level(o, b).unwrap_or(0);
                for (i, plane) in planes.chunks_exact_mut(words * o8).enumerate() {
                    if l >> i & 1 == 1 {
                        plane[(b / 64) * o8 + o] |= bit;
                    }
                }
            }
        }
        Self { w_bits, a_bits, n: (1 << w_bits) - 1, span, words, cout, o8, planes, valid }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        (self.planes.len() + self.valid.len()) * 8
    }

    /// Bytes of the scratch `tile_codes` sizes for it (`BitWork`).
    pub fn work_len(&self) -> usize {
        self.words * 64 + 8 * self.a_bits * self.words
    }
}

/// One thread's buffers for the bit-serial form.
#[derive(Default)]
pub struct BitWork {
    /// One receptive field's codes, zero past its span.
    bytes: Vec<u8>,
    /// [a_bits][words]: bit j of those codes.
    codes: Vec<u64>,
}

/// The codes of a tile's pixels (as `dot::dot_codes` makes them) in the
/// bit-serial form; `acc` is scratch of at least `codes.cout` rounded up
/// to 8 and of the layer's `np` (what `codes.thresholds` is laid out for).
#[allow(clippy::too_many_arguments)]
pub fn tile_codes(
    kernel: BitKernel,
    w: &BitWeights,
    tile: &Tile,
    np: usize,
    codes: &Codes,
    out: &mut Out,
    work: &mut BitWork,
    acc: &mut [i32],
) {
    let cin = tile.groups * 4;
    assert_eq!(tile.taps.len() * cin, w.span, "the tile's receptive field is the weights'");
    assert!(acc.len() >= np && np >= w.o8 && codes.cout == w.cout && !codes.eight_bit);
    let last = tile.base + (tile.pixels - 1) * tile.stride + tile.taps.iter().max().copied().unwrap_or(0) + cin;
    assert!(tile.input.len() >= last, "a tile reads past its input");
    work.bytes.resize(w.words * 64, 0);
    work.bytes[w.span..].fill(0);
    work.codes.resize(w.a_bits * w.words, 0);
    for p in 0..tile.pixels {
        let at = tile.base + p * tile.stride;
        for (t, &tap) in tile.taps.iter().enumerate() {
            work.bytes[t * cin..(t + 1) * cin].copy_from_slice(&tile.input[at + tap..at + tap + cin]);
        }
        planes_of(kernel, &work.bytes, w.a_bits, &mut work.codes);
        sums(kernel, w, &work.codes, acc);
        let to = out.base + p * out.stride;
        codes.write(&mut acc[..np], &mut out.out[to..to + w.cout]);
    }
}

/// Bit j of every byte of `bytes` (whole 64-byte words) into `planes[j]`.
fn planes_of(kernel: BitKernel, bytes: &[u8], a_bits: usize, planes: &mut [u64]) {
    let words = bytes.len() / 64;
    #[cfg(target_arch = "x86_64")]
    if kernel == BitKernel::Avx512 {
        // SAFETY: `BitKernel::available` offers it only where the CPU has
        // AVX-512; every read is of whole words of `bytes`.
        return unsafe { x86::planes(bytes, a_bits, planes) };
    }
    let _ = kernel;
    for (k, chunk) in bytes.chunks_exact(64).enumerate() {
        for j in 0..a_bits {
            let mut word = 0u64;
            for (g, eight) in chunk.chunks_exact(8).enumerate() {
                let v = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
                // Bit j of each byte at the byte's foot, then the eight feet
                // gathered into the top byte in order (no carries: each
                // bit lands on its own place).
                let feet = (v >> j) & 0x0101_0101_0101_0101;
                word |= (feet.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * g);
            }
            planes[j * words + k] = word;
        }
    }
}

/// S for each output of `w` from one receptive field's code planes.
fn sums(kernel: BitKernel, w: &BitWeights, codes: &[u64], acc: &mut [i32]) {
    let mut sum_a = 0i64;
    for j in 0..w.a_bits {
        let ones: u32 = (0..w.words).map(|k| (codes[j * w.words + k] & w.valid[k]).count_ones()).sum();
        sum_a += (ones as i64) << j;
    }
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `planes_of`; `acc` holds o8 sums (asserted by the caller).
        BitKernel::Avx512 => unsafe { x86::sums(w, codes, sum_a, acc) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has `popcnt` (checked here); `sums_portable` is safe code.
        BitKernel::Popcnt if std::arch::is_x86_feature_detected!("popcnt") => unsafe { sums_popcnt(w, codes, sum_a, acc) },
        _ => sums_portable(w, codes, sum_a, acc),
    }
}

/// `sums_portable` compiled to the `popcnt` instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn sums_popcnt(w: &BitWeights, codes: &[u64], sum_a: i64, acc: &mut [i32]) {
    sums_portable(w, codes, sum_a, acc)
}

#[inline(always)]
fn sums_portable(w: &BitWeights, codes: &[u64], sum_a: i64, acc: &mut [i32]) {
    let words = w.words;
    for (o, s) in acc[..w.cout].iter_mut().enumerate() {
        let mut la = 0i64;
        for i in (0..w.w_bits).rev() {
            la *= 2;
            for k in 0..words {
                let wv = w.planes[(i * words + k) * w.o8 + o];
                let mut t = 0i64;
                for j in (0..w.a_bits).rev() {
                    t = 2 * t + (wv & codes[j * words + k]).count_ones() as i64;
                }
                la += t;
            }
        }
        *s = (2 * la - w.n * sum_a) as i32;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::BitWeights;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn planes(bytes: &[u8], a_bits: usize, planes: &mut [u64]) {
        let words = bytes.len() / 64;
        for k in 0..words {
            let v = _mm512_loadu_si512(bytes.as_ptr().add(64 * k) as *const _);
            for j in 0..a_bits {
                planes[j * words + k] = _mm512_test_epi8_mask(v, _mm512_set1_epi8(1 << j));
            }
        }
    }

    /// `sums_portable` for 8 outputs a vector.
    #[target_feature(enable = "avx512f,avx512vpopcntdq")]
    pub unsafe fn sums(w: &BitWeights, codes: &[u64], sum_a: i64, acc: &mut [i32]) {
        let (words, o8) = (w.words, w.o8);
        assert!(acc.len() >= o8 && w.planes.len() >= w.w_bits * words * o8 && codes.len() >= w.a_bits * words);
        let base = _mm512_set1_epi64(w.n * sum_a);
        for o0 in (0..o8).step_by(8) {
            let mut la = _mm512_setzero_si512();
            for i in (0..w.w_bits).rev() {
                la = _mm512_slli_epi64::<1>(la);
                for k in 0..words {
                    let wv = _mm512_loadu_si512(w.planes.as_ptr().add((i * words + k) * o8 + o0) as *const _);
                    let mut t = _mm512_setzero_si512();
                    for j in (0..w.a_bits).rev() {
                        let a = _mm512_set1_epi64(*codes.get_unchecked(j * words + k) as i64);
                        t = _mm512_add_epi64(_mm512_slli_epi64::<1>(t), _mm512_popcnt_epi64(_mm512_and_si512(wv, a)));
                    }
                    la = _mm512_add_epi64(la, t);
                }
            }
            let s = _mm512_sub_epi64(_mm512_slli_epi64::<1>(la), base);
            _mm256_storeu_si256(acc.as_mut_ptr().add(o0) as *mut _, _mm512_cvtepi64_epi32(s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Every form's planes and sums against S summed byte by byte: 1 to 4
    /// bits each way, spans of part words and several, 1 to 21 outputs,
    /// padding positions that hold codes (they must not count).
    #[test]
    fn every_form_gives_the_sums_of_the_bytes() {
        let mut r = ChaCha8Rng::seed_from_u64(9);
        for kernel in BitKernel::available() {
            for (w_bits, a_bits) in [(1, 1), (1, 2), (2, 2), (2, 1), (3, 4), (4, 4)] {
                for (span, cout) in [(4, 1), (36, 8), (72, 12), (108, 21), (216, 24), (384, 13), (640, 9)] {
                    let (n_w, n_a) = ((1u32 << w_bits) - 1, (1u8 << a_bits) - 1);
                    let pad = |b: usize| b % 7 == 3;
                    let levels: Vec<u32> = (0..span * cout).map(|_| r.random_range(0..=n_w)).collect();
                    let level = |o: usize, b: usize| (!pad(b)).then(|| levels[o * span + b]);
                    let w = BitWeights::new(w_bits, a_bits, span, cout, level);
                    let mut bytes = vec![0u8; w.words * 64];
                    for b in bytes[..span].iter_mut() {
                        *b = r.random_range(0..=n_a);
                    }
                    let mut codes = vec![0u64; a_bits as usize * w.words];
                    planes_of(kernel, &bytes, a_bits as usize, &mut codes);
                    let mut acc = vec![-7i32; w.o8];
                    sums(kernel, &w, &codes, &mut acc);
                    for (o, &got) in acc[..cout].iter().enumerate() {
                        let want: i32 = (0..span).filter_map(|b| level(o, b).map(|l| (2 * l as i32 - n_w as i32) * bytes[b] as i32)).sum();
                        assert_eq!(got, want, "{kernel:?}, {w_bits}x{a_bits} bits, span {span}, output {o} of {cout}");
                    }
                }
            }
        }
    }

    /// Each bit of each byte lands on its own place, in both kernels alike.
    #[test]
    fn planes_hold_each_bytes_bits_in_order() {
        let bytes: Vec<u8> = (0..128).map(|i| (i * 37 % 16) as u8).collect();
        for kernel in BitKernel::available() {
            let mut planes = vec![0u64; 4 * 2];
            planes_of(kernel, &bytes, 4, &mut planes);
            for j in 0..4 {
                for (b, &byte) in bytes.iter().enumerate() {
                    assert_eq!(planes[j * 2 + b / 64] >> (b % 64) & 1, (byte >> j & 1) as u64, "{kernel:?}: bit {j} of byte {b}");
                }
            }
        }
    }
}
