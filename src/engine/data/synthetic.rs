//! Procedurally generated SVHN-like digits, made so that a small quantized
//! network falls short of a float one (docs/STUDY.md, "The synthetic data"):
//! each digit comes in 300 fonts (three stroke styles, each plain and bent 99 ways),
//! at a random size, slant, rotation, position, stroke width, colour and
//! contrast, between cut-off neighbours, under an illumination gradient,
//! blur and sensor noise; and in a few images a second, fainter digit lies
//! under or over it (a reflection, a painted-over number), where only the
//! two digits' contrasts say which one is the label.
//!
//! Labels cycle through the classes (image i shows digit i mod 10), so every
//! set is balanced to within one image per class, prefixes too (training
//! shuffles). Every image draws from its own RNG stream, seeded from (seed,
//! split, index), so a dataset is the same for a seed whatever the thread
//! count.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::dataset::{Dataset, CHANNELS, CLASSES, PIXELS, SIDE};

/// Fonts: the three stroke styles, then each bent into new shapes.
pub const FONTS: usize = 300;
/// Share of images with a fainter second digit under or over the label's.
pub const GHOST_SHARE: f64 = 0.06;
/// The second digit's contrast as a share of the label's. The intent: close
/// enough that telling them apart takes finer steps of brightness than a
/// 2-bit activation keeps (four levels), far enough that a float network
/// can. docs/STUDY.md says what was measured, and what was not.
pub const GHOST_CONTRAST: Range<f32> = 0.55..0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

pub fn generate(n: usize, seed: u64, split: Split) -> Dataset {
    let mut images = vec![0u8; n * PIXELS];
    let labels: Vec<u8> = (0..n).map(|i| (i % CLASSES) as u8).collect();
    images.par_chunks_mut(PIXELS).zip(labels.par_iter()).enumerate().for_each(|(i, (img, &label))| {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, split as u64, i as u64));
        render(&mut rng, label as usize, img);
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

/// Angular plate style: straight strokes with cut corners.
fn angular_glyph(digit: usize) -> Vec<Vec<Pt>> {
    let l = line;
    match digit {
        0 => vec![l(&[(0.25, 0.0), (0.75, 0.0), (1.0, 0.2), (1.0, 0.8), (0.75, 1.0), (0.25, 1.0), (0.0, 0.8), (0.0, 0.2), (0.25, 0.0)])],
        1 => vec![l(&[(0.2, 0.22), (0.55, 0.0), (0.55, 1.0)]), l(&[(0.25, 1.0), (0.85, 1.0)])],
        2 => vec![l(&[(0.0, 0.2), (0.2, 0.0), (0.8, 0.0), (1.0, 0.2), (1.0, 0.4), (0.0, 1.0), (1.0, 1.0)])],
        3 => vec![l(&[(0.0, 0.0), (1.0, 0.0), (0.45, 0.42), (0.8, 0.45), (1.0, 0.65), (1.0, 0.85), (0.8, 1.0), (0.2, 1.0), (0.0, 0.85)])],
        4 => vec![l(&[(0.2, 0.0), (0.0, 0.65), (1.0, 0.65)]), l(&[(0.7, 0.3), (0.7, 1.0)])],
        5 => vec![l(&[(1.0, 0.0), (0.1, 0.0), (0.05, 0.45), (0.8, 0.42), (1.0, 0.6), (1.0, 0.85), (0.8, 1.0), (0.1, 1.0), (0.0, 0.88)])],
        6 => vec![l(&[
            (0.85, 0.0),
            (0.3, 0.0),
            (0.0, 0.4),
            (0.0, 0.85),
            (0.2, 1.0),
            (0.8, 1.0),
            (1.0, 0.85),
            (1.0, 0.6),
            (0.8, 0.45),
            (0.05, 0.45),
        ])],
        7 => vec![l(&[(0.0, 0.0), (1.0, 0.0), (0.4, 1.0)]), l(&[(0.45, 0.5), (0.85, 0.5)])],
        8 => vec![
            l(&[(0.25, 0.0), (0.75, 0.0), (0.9, 0.12), (0.9, 0.35), (0.75, 0.47), (0.25, 0.47), (0.1, 0.35), (0.1, 0.12), (0.25, 0.0)]),
            l(&[(0.25, 0.47), (0.0, 0.62), (0.0, 0.85), (0.2, 1.0), (0.8, 1.0), (1.0, 0.85), (1.0, 0.62), (0.75, 0.47)]),
        ],
        _ => vec![l(&[
            (0.15, 1.0),
            (0.7, 1.0),
            (1.0, 0.6),
            (1.0, 0.15),
            (0.8, 0.0),
            (0.2, 0.0),
            (0.0, 0.15),
            (0.0, 0.4),
            (0.2, 0.55),
            (0.95, 0.55),
        ])],
    }
}

/// Font `font` of `digit`: one of the three stroke styles, and past the
/// first three a fixed bend of it (shear, scale and a sine warp of each
/// axis, drawn from the font and digit alone: the same in every image, set
/// and seed).
fn glyph(font: usize, digit: usize) -> Vec<Vec<Pt>> {
    let base = match font % 3 {
        0 => round_glyph(digit),
        1 => segment_glyph(digit),
        _ => angular_glyph(digit),
    };
    if font < 3 {
        return base;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(mix(0xF0A7, font as u64, digit as u64));
    let shear = rng.random_range(-0.25..0.25f32);
    let (sx, sy) = (1.0 + rng.random_range(-0.25..0.2f32), 1.0 + rng.random_range(-0.15..0.1f32));
    let (ax, fx, px) = (rng.random_range(0.0..0.12f32), rng.random_range(1.0..3.0f32), rng.random_range(0.0..6.3f32));
    let (ay, fy, py) = (rng.random_range(0.0..0.12f32), rng.random_range(1.0..3.0f32), rng.random_range(0.0..6.3f32));
    base.into_iter()
        .map(|stroke| {
            stroke
                .into_iter()
                .map(|(x, y)| {
                    let (x, y) = (x - 0.5, y - 0.5);
                    let x = sx * (x + shear * y) + ax * (fx * y + px).sin();
                    let y = sy * y + ay * (fy * x + py).sin();
                    (x + 0.5, y + 0.5)
                })
                .collect()
        })
        .collect()
}

/// Shared look of the digits in one image (house numbers share a plate).
struct Style {
    font: usize,
    height: f32,
    width: f32,
    slant: f32,
    rotation: f32,
    stroke: f32,
    wobble: f32,
}

type Plane = [f32; SIDE * SIDE];

/// Paints `colour` over `planes` where `coverage` says (alpha per pixel).
fn paint(planes: &mut [Plane; CHANNELS], coverage: &Plane, colour: [f32; 3]) {
    for (plane, c) in planes.iter_mut().zip(colour) {
        for (v, &m) in plane.iter_mut().zip(coverage) {
            *v = *v * (1.0 - m) + c * m;
        }
    }
}

/// Draws an image of `digit` into `img` ([channel][row][col] u8).
fn render(rng: &mut ChaCha8Rng, digit: usize, img: &mut [u8]) {
    let height = rng.random_range(15.0..27.0f32);
    let style = Style {
        font: rng.random_range(0..FONTS),
        height,
        width: height * rng.random_range(0.42..0.72),
        slant: rng.random_range(-0.3..0.3),
        rotation: rng.random_range(-6.0f32..6.0).to_radians(),
        stroke: rng.random_range(0.9..2.6),
        wobble: rng.random_range(0.0..0.06),
    };
    let cx = 16.0 + rng.random_range(-2.0..2.0);
    let cy = 16.0 + rng.random_range(-2.0..2.0);

    // A background and a digit level `contrast` apart (log-uniform, a
    // threefold range), either lighter, each tinted.
    let contrast = (0.25f32.ln() + rng.random::<f32>() * 3.0f32.ln()).exp();
    let low = rng.random_range(0.0..1.0 - contrast);
    let (bg_level, fg_level) = if rng.random_bool(0.5) { (low, low + contrast) } else { (low + contrast, low) };
    let tint = |rng: &mut ChaCha8Rng, level: f32| -> [f32; 3] {
        let t: [f32; 3] = std::array::from_fn(|_| rng.random_range(-0.25..0.25) * contrast);
        t.map(|d| (level + d).clamp(0.0, 1.0))
    };
    let bg = tint(rng, bg_level);
    let fg = tint(rng, fg_level);
    let (gx, gy) = (rng.random_range(-0.2..0.2f32), rng.random_range(-0.2..0.2f32));
    let mut planes: [Plane; CHANNELS] = std::array::from_fn(|ch| {
        std::array::from_fn(|p| {
            let (r, c) = ((p / SIDE) as f32, (p % SIDE) as f32);
            bg[ch] + gx * (c / SIDE as f32 - 0.5) + gy * (r / SIDE as f32 - 0.5)
        })
    });

    // The ghost: another digit at a share of the label's contrast, painted
    // before or after it, so which one is on top says nothing.
    let mut ghost_on_top = None;
    if rng.random_bool(GHOST_SHARE) {
        let other = (digit + rng.random_range(1..CLASSES)) % CLASSES;
        let mut coverage = [0f32; SIDE * SIDE];
        let (ox, oy) = (rng.random_range(-3.0..3.0f32), rng.random_range(-3.0..3.0f32));
        draw_digit(rng, &style, other, cx + ox, cy + oy, &mut coverage);
        let share = rng.random_range(GHOST_CONTRAST);
        let colour: [f32; 3] = std::array::from_fn(|ch| bg[ch] + share * (fg[ch] - bg[ch]));
        if rng.random_bool(0.5) {
            paint(&mut planes, &coverage, colour);
        } else {
            ghost_on_top = Some((coverage, colour));
        }
    }

    let mut coverage = [0f32; SIDE * SIDE];
    draw_digit(rng, &style, digit, cx, cy, &mut coverage);
    let gap = rng.random_range(1.0..6.0);
    for side in [-1.0f32, 1.0] {
        if rng.random_bool(0.7) {
            let other = rng.random_range(0..CLASSES);
            draw_digit(rng, &style, other, cx + side * (style.width + gap), cy, &mut coverage);
        }
    }
    paint(&mut planes, &coverage, fg);
    if let Some((coverage, colour)) = ghost_on_top {
        paint(&mut planes, &coverage, colour);
    }

    let blur = rng.random_bool(0.5);
    let noise = rng.random_range(0.0..0.04f32);
    for (ch, plane) in planes.iter().enumerate() {
        let plane = if blur { box_blur(plane) } else { *plane };
        for (p, &v) in plane.iter().enumerate() {
            let v = v + noise * gaussian(rng);
            img[ch * SIDE * SIDE + p] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
}

fn draw_digit(rng: &mut ChaCha8Rng, style: &Style, digit: usize, cx: f32, cy: f32, coverage: &mut Plane) {
    let strokes = glyph(style.font, digit);
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
fn draw_segment(a: Pt, b: Pt, half_width: f32, coverage: &mut Plane) {
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

fn box_blur(src: &Plane) -> Plane {
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
    fn classes_are_balanced_and_prefixes_stable() {
        let small = generate(23, 9, Split::Train);
        let large = generate(500, 9, Split::Train);
        assert_eq!(small.images[..], large.images[..23 * PIXELS]);
        let counts = |labels: &[u8]| {
            let mut counts = [0usize; CLASSES];
            for &l in labels {
                counts[l as usize] += 1;
            }
            counts
        };
        assert_eq!(counts(&large.labels), [50; CLASSES]);
        let prefix = counts(&small.labels);
        assert!(prefix.iter().all(|&c| c == 2 || c == 3), "{prefix:?}");
    }

    #[test]
    fn fonts_are_fixed_and_distinct() {
        assert_ne!(glyph(117, 4), glyph(120, 4), "two bends of one style differ");
        assert_eq!(glyph(1, 8), segment_glyph(8), "the first three fonts are the plain styles");
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
