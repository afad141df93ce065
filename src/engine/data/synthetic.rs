//! Procedurally generated SVHN-like digits: a centred digit drawn from a stroke
//! font (two styles, per-vertex wobble), random size, slant, rotation, position,
//! stroke width, colours and contrast, neighbouring digits cut off at the left
//! and right edges, an illumination gradient, optional blur, and sensor noise.
//!
//! Every image draws from its own RNG stream, seeded from (seed, split, index),
//! so a dataset is the same for a seed whatever the thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{Dataset, CHANNELS, CLASSES, PIXELS, SIDE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

pub fn generate(n: usize, seed: u64, split: Split) -> Dataset {
    let mut images = vec![0u8; n * PIXELS];
    let mut labels = vec![0u8; n];
    images.par_chunks_mut(PIXELS).zip(labels.par_iter_mut()).enumerate().for_each(|(i, (img, label))| {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, split as u64, i as u64));
        *label = render(&mut rng, img);
    });
    Dataset { images, labels }
}

fn mix(seed: u64, split: u64, index: u64) -> u64 {
    // splitmix64 over the three parts: nearby indices give unrelated streams.
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(split.wrapping_mul(0xD1B5_4A32_D192_ED03)).wrapping_add(index);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

type Pt = (f32, f32);

/// Points of an elliptic arc in the unit glyph box; angles in degrees, y down.
fn arc(cx: f32, cy: f32, rx: f32, ry: f32, a0: f32, a1: f32) -> Vec<Pt> {
    let steps = ((a1 - a0).abs() / 20.0).ceil().max(2.0) as usize;
    (0..=steps)
        .map(|k| {
            let a = (a0 + (a1 - a0) * k as f32 / steps as f32).to_radians();
            (cx + rx * a.cos(), cy + ry * a.sin())
        })
        .collect()
}

fn line(points: &[Pt]) -> Vec<Pt> {
    points.to_vec()
}

/// Rounded handwriting-like style: polylines in the unit box.
fn round_glyph(digit: usize) -> Vec<Vec<Pt>> {
    match digit {
        0 => vec![arc(0.5, 0.5, 0.45, 0.5, 0.0, 360.0)],
        1 => vec![line(&[(0.25, 0.2), (0.55, 0.0), (0.55, 1.0)])],
        2 => {
            let mut top = arc(0.5, 0.28, 0.42, 0.28, 190.0, 400.0);
            top.extend([(0.05, 1.0), (0.98, 1.0)]);
            vec![top]
        }
        3 => vec![arc(0.5, 0.26, 0.4, 0.25, 210.0, 450.0), arc(0.5, 0.74, 0.45, 0.26, 270.0, 520.0)],
        4 => vec![line(&[(0.72, 1.0), (0.72, 0.0), (0.0, 0.68), (1.0, 0.68)])],
        5 => {
            let mut s = line(&[(0.92, 0.0), (0.18, 0.0), (0.12, 0.45)]);
            s.extend(arc(0.5, 0.68, 0.44, 0.32, 235.0, 510.0));
            vec![s]
        }
        6 => vec![arc(0.58, 0.6, 0.48, 0.6, 285.0, 165.0), arc(0.5, 0.73, 0.42, 0.27, 0.0, 360.0)],
        7 => vec![line(&[(0.0, 0.0), (1.0, 0.0), (0.35, 1.0)])],
        8 => vec![arc(0.5, 0.25, 0.36, 0.25, 0.0, 360.0), arc(0.5, 0.74, 0.44, 0.26, 0.0, 360.0)],
        _ => vec![arc(0.5, 0.3, 0.42, 0.3, 0.0, 360.0), line(&[(0.92, 0.3), (0.8, 1.0)])],
    }
}

/// Seven-segment-like block style.
fn segment_glyph(digit: usize) -> Vec<Vec<Pt>> {
    let seg = |c: char| -> Vec<Pt> {
        match c {
            'a' => vec![(0.0, 0.0), (1.0, 0.0)],
            'b' => vec![(1.0, 0.0), (1.0, 0.5)],
            'c' => vec![(1.0, 0.5), (1.0, 1.0)],
            'd' => vec![(0.0, 1.0), (1.0, 1.0)],
            'e' => vec![(0.0, 0.5), (0.0, 1.0)],
            'f' => vec![(0.0, 0.0), (0.0, 0.5)],
            _ => vec![(0.0, 0.5), (1.0, 0.5)],
        }
    };
    let segments = ["abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg"][digit];
    let mut strokes: Vec<Vec<Pt>> = segments.chars().map(seg).collect();
    if digit == 1 {
        // A lone right-hand stroke would sit off centre.
        for s in &mut strokes {
            for p in s.iter_mut() {
                p.0 = 0.55;
            }
        }
        strokes.push(vec![(0.3, 0.15), (0.55, 0.0)]);
    }
    strokes
}

/// Shared look of the digits in one image (house numbers share a plate).
struct Style {
    segment: bool,
    height: f32,
    width: f32,
    slant: f32,
    rotation: f32,
    stroke: f32,
    wobble: f32,
}

/// Draws a random labelled image into `img` ([channel][row][col] u8); returns the label.
fn render(rng: &mut ChaCha8Rng, img: &mut [u8]) -> u8 {
    let digit = rng.random_range(0..CLASSES);
    let height = rng.random_range(15.0..27.0f32);
    let style = Style {
        segment: rng.random_bool(0.35),
        height,
        width: height * rng.random_range(0.42..0.72),
        slant: rng.random_range(-0.3..0.3),
        rotation: rng.random_range(-6.0f32..6.0).to_radians(),
        stroke: rng.random_range(0.9..2.6),
        wobble: rng.random_range(0.0..0.06),
    };
    let cx = 16.0 + rng.random_range(-2.0..2.0);
    let cy = 16.0 + rng.random_range(-2.0..2.0);

    let mut coverage = [0f32; SIDE * SIDE];
    draw_digit(rng, &style, digit, cx, cy, &mut coverage);
    let gap = rng.random_range(1.0..6.0);
    for side in [-1.0f32, 1.0] {
        if rng.random_bool(0.7) {
            let other = rng.random_range(0..CLASSES);
            draw_digit(rng, &style, other, cx + side * (style.width + gap), cy, &mut coverage);
        }
    }

    // Colours: a dark and a light level with random contrast and tint.
    let dark = rng.random_range(0.0..0.55f32);
    let light = (dark + rng.random_range(0.25..0.75)).min(1.0);
    let (bg_level, fg_level) = if rng.random_bool(0.5) { (dark, light) } else { (light, dark) };
    let tint = |rng: &mut ChaCha8Rng, level: f32| -> [f32; 3] {
        let t: [f32; 3] = std::array::from_fn(|_| rng.random_range(-0.25..0.25));
        t.map(|d| (level + d).clamp(0.0, 1.0))
    };
    let bg = tint(rng, bg_level);
    let fg = tint(rng, fg_level);
    let (gx, gy) = (rng.random_range(-0.2..0.2f32), rng.random_range(-0.2..0.2f32));
    let blur = rng.random_bool(0.5);
    let noise = rng.random_range(0.0..0.04f32);

    let coverage = if blur { box_blur(&coverage) } else { coverage };
    for ch in 0..CHANNELS {
        for r in 0..SIDE {
            for c in 0..SIDE {
                let m = coverage[r * SIDE + c];
                let shade = (gx * (c as f32 / SIDE as f32 - 0.5)) + (gy * (r as f32 / SIDE as f32 - 0.5));
                let v = bg[ch] * (1.0 - m) + fg[ch] * m + shade + noise * gaussian(rng);
                img[ch * SIDE * SIDE + r * SIDE + c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    digit as u8
}

fn draw_digit(rng: &mut ChaCha8Rng, style: &Style, digit: usize, cx: f32, cy: f32, coverage: &mut [f32; SIDE * SIDE]) {
    let strokes = if style.segment { segment_glyph(digit) } else { round_glyph(digit) };
    let (sin, cos) = style.rotation.sin_cos();
    let wobble = style.wobble;
    let to_pixels = |(x, y): Pt, rng: &mut ChaCha8Rng| -> Pt {
        let x = x + rng.random_range(-wobble..=wobble);
        let y = y + rng.random_range(-wobble..=wobble);
        // Unit box -> centred glyph, slanted, then rotated.
        let gx = (x - 0.5) * style.width - style.slant * (y - 0.5) * style.height;
        let gy = (y - 0.5) * style.height;
        (cx + gx * cos - gy * sin, cy + gx * sin + gy * cos)
    };
    for stroke in strokes {
        let pts: Vec<Pt> = stroke.into_iter().map(|p| to_pixels(p, rng)).collect();
        for pair in pts.windows(2) {
            draw_segment(pair[0], pair[1], style.stroke, coverage);
        }
    }
}

/// Anti-aliased thick segment: coverage falls off over one pixel at the edge.
fn draw_segment(a: Pt, b: Pt, half_width: f32, coverage: &mut [f32; SIDE * SIDE]) {
    let reach = half_width + 1.0;
    let r0 = (a.1.min(b.1) - reach).floor().max(0.0) as usize;
    let r1 = (a.1.max(b.1) + reach).ceil().min(SIDE as f32 - 1.0);
    let c0 = (a.0.min(b.0) - reach).floor().max(0.0) as usize;
    let c1 = (a.0.max(b.0) + reach).ceil().min(SIDE as f32 - 1.0);
    if r1 < 0.0 || c1 < 0.0 {
        return;
    }
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = (dx * dx + dy * dy).max(1e-6);
    for r in r0..=r1 as usize {
        for c in c0..=c1 as usize {
            let (px, py) = (c as f32 + 0.5, r as f32 + 0.5);
            let t = (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0);
            let (ex, ey) = (a.0 + t * dx - px, a.1 + t * dy - py);
            let d = (ex * ex + ey * ey).sqrt();
            let v = (half_width - d + 0.5).clamp(0.0, 1.0);
            let cell = &mut coverage[r * SIDE + c];
            *cell = cell.max(v);
        }
    }
}

fn box_blur(src: &[f32; SIDE * SIDE]) -> [f32; SIDE * SIDE] {
    let mut out = [0f32; SIDE * SIDE];
    for r in 0..SIDE {
        for c in 0..SIDE {
            let (mut sum, mut n) = (0.0, 0.0);
            for rr in r.saturating_sub(1)..=(r + 1).min(SIDE - 1) {
                for cc in c.saturating_sub(1)..=(c + 1).min(SIDE - 1) {
                    // Centre weighted: a light blur, not a smear.
                    let w = if rr == r && cc == c { 4.0 } else { 1.0 };
                    sum += w * src[rr * SIDE + cc];
                    n += w;
                }
            }
            out[r * SIDE + c] = sum / n;
        }
    }
    out
}

/// Standard normal sample (Box-Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed() {
        let a = generate(64, 3, Split::Train);
        let b = generate(64, 3, Split::Train);
        assert_eq!(a, b);
        let c = generate(64, 4, Split::Train);
        assert_ne!(a.images, c.images);
        let t = generate(64, 3, Split::Test);
        assert_ne!(a.images, t.images, "train and test must differ");
    }

    #[test]
    fn prefix_stable_and_all_classes_present() {
        let small = generate(20, 9, Split::Train);
        let large = generate(500, 9, Split::Train);
        assert_eq!(small.images[..], large.images[..20 * PIXELS]);
        let mut counts = [0usize; CLASSES];
        for &l in &large.labels {
            counts[l as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 25), "{counts:?}");
    }

    #[test]
    fn images_are_not_blank() {
        let d = generate(50, 1, Split::Train);
        for i in 0..d.len() {
            let img = d.image(i);
            let (min, max) = img.iter().fold((255u8, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            assert!(max - min > 20, "image {i} has range {min}..{max}");
        }
    }
}
