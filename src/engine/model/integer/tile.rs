//! What one product of the integer engine reads and writes (`dot.rs` has
//! the formula): the tile of pixels it reads, how its sums become codes and
//! where the codes go. Shared by the portable product and the SIMD kernels.

/// Pixels per tile: 8 pixels x 2 vectors of 16 channels are 16
/// accumulators, half of AVX-512's registers.
pub const TILE: usize = 8;

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
    pub(super) fn check(&self, weights: &[i8], np: usize, acc: &[i32]) {
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
    pub(super) fn write(&self, acc: &mut [i32], out: &mut [u8]) {
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
