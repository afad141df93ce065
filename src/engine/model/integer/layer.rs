//! One integer layer of the integer engine (see `mod.rs`): its weights
//! laid out for `dot`, BatchNorm and the quantizer folded into thresholds,
//! and its forward pass over one image.

use super::bits::{self, BitKernel, BitWeights, BitWork, MAX_BITS};
use super::dot::{self, Kernel, Tile, TILE};
use super::{act_constants, fold_norm, group4, IntError};

/// How a layer runs: the byte kernels' product, or bit planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Bytes(Kernel),
    Bits(BitKernel),
}

impl Form {
    pub fn name(self) -> &'static str {
        match self {
            Form::Bytes(k) => k.name(),
            Form::Bits(b) => b.name(),
        }
    }
}

/// When a network's layers take the bit-serial form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    Off,
    /// Where it measured faster (`BitKernel::wins`).
    Auto(BitKernel),
    /// Wherever the layer has it (tests).
    Always(BitKernel),
}

/// One thread's scratch for any layer's `forward`.
#[derive(Default)]
pub struct Work {
    pub(super) acc: Vec<i32>,
    pub(super) bits: BitWork,
}

/// One integer layer: a 3x3 conv over a zero-padded [side + 2]^2 x cin
/// channels-last image, or (side 1, one tap) a linear layer, then
/// thresholds to codes, then an optional 2x2 max-pool.
pub struct IntLayer {
    pub(super) side: usize,
    /// Input channels per pixel, a multiple of 4.
    pub(super) cin: usize,
    taps: Vec<usize>,
    cout: usize,
    /// Output channels as the weights are laid out: 8, or a multiple of 16.
    np: usize,
    /// [tap][cin / 4][np][4]: i8 weight codes (`eight_bit`: l - 128; else 2l - n).
    pub(super) weights: Vec<i8>,
    /// 8-bit weights are stored as l - 128, so S = 2 D + A, with A (the sum
    /// of the codes) from an extra output channel of ones at `cout`.
    eight_bit: bool,
    /// Per output channel: +1, -1 (BatchNorm's scale is negative) or 0 (zero).
    pub(super) sign: Vec<i32>,
    /// [levels][np]: code >= j + 1 iff sign * S >= thresholds[j * np + o].
    pub(super) thresholds: Vec<i32>,
    levels: usize,
    pool: bool,
    max_weight: u32,
    max_code: u32,
    /// The bit-serial form's weights (weights and codes of up to `MAX_BITS`).
    bits: Option<BitWeights>,
}

/// What folds into one layer's thresholds.
pub struct Fold<'a> {
    /// Weight levels, [cout][cin][3][3] for a conv, [cin][cout] for a linear layer.
    pub levels: &'a [f32],
    pub w_bits: u32,
    /// gamma, beta, running mean, running var.
    pub norm: [&'a [f32]; 4],
    pub a_bits: u32,
    pub a_range: f64,
}

impl IntLayer {
    /// A 3x3 conv of `cin` -> `cout` channels at `side` x `side`.
    pub fn conv(f: &Fold, cin: usize, cout: usize, side: usize, pool: bool) -> Result<Self, IntError> {
        let cp = group4(cin);
        let taps = (0..9).map(|t| ((t / 3) * (side + 2) + t % 3) * cp).collect();
        let level = |o: usize, c: usize, t: usize| f.levels[(o * cin + c) * 9 + t];
        Self::new(f, cp, cin * 9, cout, side, taps, pool, |o, t, c| (c < cin).then(|| level(o, c, t)))
    }

    /// A linear layer over `inputs` codes, whose weight row for input i is
    /// `row(i)` of the stored [rows][cout] matrix (None: a padding input).
    pub fn linear(f: &Fold, inputs: usize, rows: usize, cout: usize, row: impl Fn(usize) -> Option<usize>) -> Result<Self, IntError> {
        let cp = group4(inputs);
        Self::new(f, cp, rows, cout, 1, vec![0], false, |o, _, i| row(i).map(|r| f.levels[r * cout + o]))
    }

    /// `weight(o, tap, c)`: the level of output o's weight on channel c of
    /// tap `tap`, or None for padding; `fan_in` weights per output are stored.
    #[allow(clippy::too_many_arguments)]
    fn new(
        f: &Fold,
        cin: usize,
        fan_in: usize,
        cout: usize,
        side: usize,
        taps: Vec<usize>,
        pool: bool,
        weight: impl Fn(usize, usize, usize) -> Option<f32>,
    ) -> Result<Self, IntError> {
        if f.levels.len() != fan_in * cout || f.norm.iter().any(|v| v.len() != cout) {
            return Err(IntError::Shape(format!("{} weights and {} norm values for {cout} outputs", f.levels.len(), f.norm[0].len())));
        }
        let n = (1u32 << f.w_bits) - 1;
        let eight_bit = f.w_bits == 8;
        // 8 outputs fill a 256-bit vector; past 8, whole 512-bit vectors of
        // 16: a split 16 + 8 would read every input twice, which measured
        // slower than computing the padding (24 outputs, AVX-512 VNNI).
        let np = match cout + usize::from(eight_bit) {
            n if n <= 8 => 8,
            n => n.div_ceil(16) * 16,
        };
        let groups = cin / 4;
        let mut weights = vec![0i8; taps.len() * groups * np * 4];
        for t in 0..taps.len() {
            for c in 0..cin {
                let at = |o: usize| ((t * groups + c / 4) * np + o) * 4 + c % 4;
                for o in 0..cout {
                    if let Some(l) = weight(o, t, c) {
                        let l = l as i32;
                        weights[at(o)] = if eight_bit { l - 128 } else { 2 * l - n as i32 } as i8;
                    }
                }
                if eight_bit && weight(0, t, c).is_some() {
                    weights[at(cout)] = 1;
                }
            }
        }
        let (scale, shift) = fold_norm(f.norm);
        let (_, up, down) = act_constants(f.a_bits, f.a_range);
        let levels = (1usize << f.a_bits) - 1;
        // A weight level l is worth (2l - n) / n and an input code a * down.
        let unit = down as f64 / n as f64;
        let (mut sign, mut thresholds) = (vec![0i32; np], vec![i32::MAX; levels * np]);
        for o in 0..cout {
            let k = unit * scale[o] as f64;
            let s = if k > 0.0 {
                1.0
            } else if k < 0.0 {
                -1.0
            } else {
                0.0
            };
            sign[o] = s as i32;
            for j in 0..levels {
                // y = S k + shift reaches code j + 1 where y * up >= j + 1/2.
                let bound = (j as f64 + 0.5) / up as f64 - shift[o] as f64;
                let t = if s == 0.0 {
                    // S does not matter: the code is the shift's.
                    if bound <= 0.0 {
                        i32::MIN as f64
                    } else {
                        i32::MAX as f64
                    }
                } else {
                    // k > 0: S >= bound / k; k < 0: -S >= -bound / k = bound / |k|.
                    (bound / k.abs()).ceil()
                };
                thresholds[j * np + o] = if t.is_nan() { i32::MAX } else { t.clamp(-(1 << 30) as f64, (1 << 30) as f64) as i32 };
            }
        }
        let max_weight = if eight_bit { 128 } else { n };
        let bits = (!eight_bit && f.w_bits <= MAX_BITS && f.a_bits <= MAX_BITS)
            .then(|| BitWeights::new(f.w_bits, f.a_bits, taps.len() * cin, cout, |o, b| weight(o, b / cin, b % cin).map(|l| l as u32)));
        let max_code = levels as u32;
        Ok(Self { side, cin, taps, cout, np, weights, eight_bit, sign, thresholds, levels, pool, max_weight, max_code, bits })
    }

    /// The form this layer runs in when the network runs `kernel` and `bits`.
    pub fn form(&self, kernel: Kernel, bits: Bits) -> Form {
        let bytes = self.kernel(kernel);
        match (bits, &self.bits) {
            (Bits::Always(b), Some(_)) => Form::Bits(b),
            (Bits::Auto(b), Some(_)) if b.wins(bytes) => Form::Bits(b),
            _ => Form::Bytes(bytes),
        }
    }

    /// Drops what `form` does not run on (the bit planes of a layer that
    /// runs the byte product), so the engine holds only what it uses.
    pub fn keep_only(&mut self, form: Form) {
        if let Form::Bytes(_) = form {
            self.bits = None;
        }
    }

    /// Every form this layer can run in on this CPU (tests run each).
    pub fn forms(&self) -> Vec<Form> {
        let mut out: Vec<Form> = Kernel::available().into_iter().map(|k| Form::Bytes(self.kernel(k))).collect();
        if self.bits.is_some() {
            out.extend(BitKernel::available().into_iter().map(Form::Bits));
        }
        out.dedup();
        out
    }

    /// Bytes the layer's weights and thresholds take.
    pub fn weight_bytes(&self) -> usize {
        self.weights.len() + 4 * (self.thresholds.len() + self.sign.len()) + self.bits.as_ref().map_or(0, BitWeights::bytes)
    }

    /// Sums `forward` keeps for a tile (its `acc`).
    pub fn acc_len(&self) -> usize {
        TILE * self.np
    }

    /// Bytes of the bit-serial form's scratch (`BitWork`), if it has one.
    pub fn bit_work_len(&self) -> usize {
        self.bits.as_ref().map_or(0, |b| b.work_len())
    }

    /// The kernel this layer runs when the network runs on `kernel`.
    pub fn kernel(&self, kernel: Kernel) -> Kernel {
        kernel.for_layer(self.max_code, self.max_weight, self.taps.len() * self.cin / 4)
    }

    /// Bytes of this layer's input: a padded image, or a flat vector.
    pub fn input_len(&self) -> usize {
        if self.taps.len() == 1 {
            self.cin
        } else {
            (self.side + 2) * (self.side + 2) * self.cin
        }
    }

    /// Channels per pixel of the output (the next layer's `cin`).
    pub fn out_channels(&self) -> usize {
        group4(self.cout)
    }

    /// Side of the output.
    pub fn out_side(&self) -> usize {
        if self.pool {
            self.side / 2
        } else {
            self.side
        }
    }

    /// Output codes of one image: `input` (`input_len` bytes) -> `out`, an
    /// image of `out_side` with a border of `pad` zero pixels (left as it
    /// is) and `out_channels` channels, of which only the first `cout` are
    /// written, in `form` (`form`, `forms`). `full` (a pooled layer's codes
    /// before pooling) and `work` are scratch.
    pub fn forward(&self, form: Form, input: &[u8], out: &mut [u8], pad: usize, full: &mut Vec<u8>, work: &mut Work) {
        let (side, oc) = (self.side, self.out_channels());
        work.acc.resize(self.acc_len(), 0);
        let row = if self.taps.len() == 1 { 0 } else { side + 2 };
        let codes =
            dot::Codes { sign: &self.sign, thresholds: &self.thresholds, levels: self.levels, cout: self.cout, eight_bit: self.eight_bit };
        // Unpooled, the codes go straight to their padded place in `out`.
        let (dest, width, at_pad) = if self.pool {
            full.resize(side * side * oc, 0);
            (&mut full[..], side, 0)
        } else {
            (&mut out[..], side + 2 * pad, pad)
        };
        for y in 0..side {
            for x0 in (0..side).step_by(TILE) {
                let tile = Tile {
                    input,
                    base: (y * row + x0) * self.cin,
                    stride: self.cin,
                    pixels: TILE.min(side - x0),
                    taps: &self.taps,
                    groups: self.cin / 4,
                };
                let mut to = dot::Out { out: &mut *dest, base: ((y + at_pad) * width + x0 + at_pad) * oc, stride: oc };
                match (form, &self.bits) {
                    (Form::Bits(b), Some(w)) => bits::tile_codes(b, w, &tile, self.np, &codes, &mut to, &mut work.bits, &mut work.acc),
                    (Form::Bits(_), None) => panic!("this layer has no bit-serial form"),
                    (Form::Bytes(k), _) => dot::dot_codes(k, &tile, &self.weights, self.np, &codes, &mut to, &mut work.acc),
                }
            }
        }
        if !self.pool {
            return;
        }
        let os = self.out_side();
        let width = os + 2 * pad;
        for y in 0..os {
            for x in 0..os {
                let to = ((y + pad) * width + x + pad) * oc;
                let at = |dy: usize, dx: usize| ((2 * y + dy) * side + 2 * x + dx) * oc;
                let [a, b, c, d] = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)].map(|i| &full[i..i + self.cout]);
                max4(&mut out[to..to + self.cout], a, b, c, d);
            }
        }
    }
}

fn max4(dest: &mut [u8], a: &[u8], b: &[u8], c: &[u8], d: &[u8]) {
    for i in 0..dest.len() {
        dest[i] = a[i].max(b[i]).max(c[i]).max(d[i]);
    }
}
