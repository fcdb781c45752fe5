//! Rendering one synthetic mammogram-mass patch from its factors.
//!
//! Coordinates are resolution-free: the patch spans [-1, 1]^2, so one set
//! of factors looks the same at 32 and at 224 pixels. Costs per pixel are a
//! few hashed value-noise lookups, one `atan2` and a look-up table for the
//! mass boundary; spicules, calcifications and noise are cheap add-ons.

use super::{Factors, ViewFactors};
use crate::rng::Rng;
use crate::vocab::Attribute;

const BOUNDARY_LUT: usize = 512;
const TAU: f32 = std::f32::consts::TAU;

#[inline]
fn hash2(ix: i32, iy: i32, seed: u32) -> f32 {
    let mut h = (ix as u32).wrapping_mul(0x8DA6_B343) ^ (iy as u32).wrapping_mul(0xD816_3841) ^ seed.wrapping_mul(0xCB1A_B31F);
    h ^= h >> 13;
    h = h.wrapping_mul(0x5bd1_e995);
    h ^= h >> 15;
    (h >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}

#[inline]
fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Smooth value noise in [0, 1] on an integer lattice.
#[inline]
fn value_noise(x: f32, y: f32, seed: u32) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i32, fy as i32);
    let (tx, ty) = (smooth(x - fx), smooth(y - fy));
    let a = hash2(ix, iy, seed);
    let b = hash2(ix + 1, iy, seed);
    let c = hash2(ix, iy + 1, seed);
    let d = hash2(ix + 1, iy + 1, seed);
    let top = a + (b - a) * tx;
    let bot = c + (d - c) * tx;
    top + (bot - top) * ty
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The boundary radius of the mass as a function of angle, tabulated.
fn boundary_lut(f: &Factors, rng: &mut Rng) -> Vec<f32> {
    // Harmonics (k, amplitude, phase) that make the shape.
    let mut harm: Vec<(f32, f32, f32)> = Vec::new();
    let phase = |rng: &mut Rng| rng.uniform(0.0, TAU as f64) as f32;
    match f.shape {
        Attribute::Round => harm.push((2.0, rng.uniform(0.0, 0.03) as f32, phase(rng))),
        Attribute::Oval => harm.push((2.0, rng.uniform(0.0, 0.03) as f32, phase(rng))),
        Attribute::Lobulated => {
            let k = 3 + rng.below(3) as i32;
            harm.push((k as f32, rng.uniform(0.09, 0.15) as f32, phase(rng)));
            harm.push((2.0 * k as f32, rng.uniform(0.02, 0.05) as f32, phase(rng)));
        }
        _ => {
            // Irregular: many harmonics with random amplitudes, plus cusps.
            for k in 2..10 {
                harm.push((k as f32, rng.uniform(0.02, 0.13) as f32 / (k as f32).powf(0.35), phase(rng)));
            }
        }
    }
    // Margin ripples: micro-undulations, or a rough low-frequency edge.
    match f.margin {
        Attribute::Microlobulated => {
            let m = 14 + rng.below(10);
            harm.push((m as f32, rng.uniform(0.035, 0.05) as f32, phase(rng)));
            harm.push(((m + 7) as f32, rng.uniform(0.015, 0.03) as f32, phase(rng)));
        }
        Attribute::IllDefined => {
            for k in [5.0, 7.0, 11.0] {
                harm.push((k, rng.uniform(0.01, 0.04) as f32, phase(rng)));
            }
        }
        _ => {}
    }
    let cusp = if f.shape == Attribute::Irregular { rng.uniform(0.1, 0.2) as f32 } else { 0.0 };
    let cusp_k = 3.0 + rng.below(3) as f32;
    let cusp_phase = phase(rng);
    (0..BOUNDARY_LUT)
        .map(|i| {
            let w = i as f32 / BOUNDARY_LUT as f32 * TAU;
            let mut r = 1.0;
            for &(k, a, p) in &harm {
                r += a * (k * w + p).cos();
            }
            // |sin| has sharp valleys: angular, jagged outlines for irregular masses.
            r -= cusp * (0.5 * cusp_k * w + cusp_phase).sin().abs();
            r.max(0.35)
        })
        .collect()
}

struct Spicule {
    angle: f32,
    length: f32,
    width: f32,
}

/// Renders one view of a lesion into `out` (row-major, `size x size`),
/// values in [0, 1], quantised to 16 bits.
pub fn render(f: &Factors, v: &ViewFactors, size: usize, irrelevant_strength: f32) -> Vec<f32> {
    let mut rng = Rng::new(v.render_seed);
    let lut = boundary_lut(f, &mut rng);
    let seed_tex = rng.next_u64() as u32;
    let seed_fine = rng.next_u64() as u32;
    let seed_mass = rng.next_u64() as u32;
    let seed_over = rng.next_u64() as u32;

    let r_mass = f.radius as f32;
    let aspect = match f.shape {
        Attribute::Round => rng.uniform(0.9, 1.0),
        Attribute::Oval => rng.uniform(0.5, 0.68),
        Attribute::Lobulated => rng.uniform(0.75, 0.95),
        _ => rng.uniform(0.65, 1.0),
    } as f32;
    let (sin_t, cos_t) = v.orientation.sin_cos();
    let (sin_t, cos_t) = (sin_t as f32, cos_t as f32);
    let edge = match f.margin {
        Attribute::Circumscribed => 0.012,
        Attribute::Microlobulated => 0.025,
        Attribute::Obscured => 0.02,
        Attribute::IllDefined => rng.uniform(0.11, 0.17) as f32,
        _ => 0.035,
    };
    let spicules: Vec<Spicule> = if f.margin == Attribute::Spiculated {
        let n = 10 + rng.below(9);
        (0..n)
            .map(|_| Spicule {
                angle: rng.uniform(-std::f64::consts::PI, std::f64::consts::PI) as f32,
                length: rng.uniform(0.5, 1.05) as f32 * r_mass,
                width: rng.uniform(0.025, 0.045) as f32,
            })
            .collect()
    } else {
        Vec::new()
    };
    // Obscured: a sector of the edge lies under overlapping dense tissue.
    let (over_angle, over_half) = (rng.uniform(-3.14, 3.14) as f32, rng.uniform(0.9, 1.4) as f32);

    let s = irrelevant_strength;
    let density = v.density as f32;
    let base = 0.16 + 0.32 * density * s + 0.16 * (1.0 - s);
    let tex_amp = (0.10 + 0.22 * density) * s;
    let (sin_d, cos_d) = (v.tissue_angle as f32).sin_cos();
    let mass_level = f.mass_intensity as f32;
    let het = f.heterogeneity as f32;

    let skin = v.skin.map(|(a, c, k)| {
        let (sa, ca) = (a as f32).sin_cos();
        (sa, ca, c as f32, k as f32)
    });
    let pect = v.pectoral.map(|(a, c)| {
        let (sa, ca) = (a as f32).sin_cos();
        (sa, ca, c as f32)
    });

    // How far (as `rho`, the mass frame's radius) anything of the mass
    // reaches: the blurred edge, the obscuring overlay, the spicules (their
    // length is measured unstretched, hence the division by the aspect).
    let lut_max = lut.iter().fold(0f32, |a, &b| a.max(b));
    let max_spicule = spicules.iter().fold(0f32, |a, s| a.max(s.length));
    let mut reach = r_mass * (lut_max + 12.0 * edge);
    if f.margin == Attribute::Obscured {
        reach = reach.max(r_mass * (lut_max + 1.2));
    }
    if !spicules.is_empty() {
        reach = reach.max((r_mass * lut_max + max_spicule) / aspect);
    }

    let mut out = vec![0f32; size * size];
    let inv = 2.0 / size as f32;
    for i in 0..size {
        let y = (i as f32 + 0.5) * inv - 1.0;
        for j in 0..size {
            let x = (j as f32 + 0.5) * inv - 1.0;
            // Parenchyma: streaky anisotropic noise along the ducts plus a finer octave.
            let a = x * cos_d + y * sin_d;
            let b = -x * sin_d + y * cos_d;
            let streak = value_noise(a * 2.5 + 10.0, b * 9.0 + 10.0, seed_tex);
            let fine = value_noise(x * 7.0 + 20.0, y * 7.0 + 20.0, seed_fine);
            let mut val = base + tex_amp * (0.65 * streak + 0.35 * fine - 0.5) * 2.0;
            // Pectoral muscle: a bright, smooth band in one corner (MLO views).
            if let Some((sa, ca, c)) = pect {
                let d = x * ca + y * sa - c;
                let m = sigmoid(d / 0.015);
                let muscle = (0.62 + 0.12 * density) * s + val * (1.0 - s) + 0.05 * (streak - 0.5);
                val = val * (1.0 - m) + muscle * m;
            }
            // The mass, in its own frame. Pixels beyond the reach of the mass
            // (boundary, blurred edge, overlay, spicules) skip all of it.
            let dx = x - v.center.0 as f32;
            let dy = y - v.center.1 as f32;
            let u = dx * cos_t + dy * sin_t;
            let w = (-dx * sin_t + dy * cos_t) / aspect;
            let rho = (u * u + w * w).sqrt();
            if rho < reach {
                let ang = w.atan2(u);
                let t = (ang + std::f32::consts::PI) / TAU * BOUNDARY_LUT as f32;
                let i0 = (t as usize) % BOUNDARY_LUT;
                let frac = t - t.floor();
                let bnd = r_mass * (lut[i0] * (1.0 - frac) + lut[(i0 + 1) % BOUNDARY_LUT] * frac);
                let d = (rho - bnd) / r_mass;
                let inside = if d / edge > 12.0 { 0.0 } else { sigmoid(-d / edge) };
                if inside > 1e-4 {
                    let core = 1.0 - 0.35 * (rho / bnd).min(1.0).powi(2);
                    // Internal texture heterogeneity (disease-related, not an attribute).
                    let tex = value_noise(u * 9.0 + 40.0, w * 9.0 + 40.0, seed_mass) * 2.0 - 1.0;
                    val += mass_level * core * inside * (1.0 + 0.9 * het * tex);
                }
                if f.margin == Attribute::Obscured && d > -0.2 && d < 1.2 {
                    // Overlapping tissue continues the mass's brightness across
                    // its edge in one sector, so the boundary there is hidden.
                    let da = (dy.atan2(dx) - over_angle + 3.0 * std::f32::consts::PI).rem_euclid(TAU) - std::f32::consts::PI;
                    let g = (1.0 - (da.abs() / over_half).powi(2)).max(0.0);
                    if g > 0.0 {
                        let tissue = value_noise(x * 5.0 + 60.0, y * 5.0 + 60.0, seed_over);
                        let fall = (-(d.max(0.0) / 0.5).powi(2)).exp();
                        val += mass_level * 0.72 * g * (1.0 - inside) * fall * (0.7 + 0.6 * tissue);
                    }
                }
                if !spicules.is_empty() && d > -0.05 {
                    let r = (dx * dx + dy * dy).sqrt();
                    let pa = dy.atan2(dx);
                    let mut best = 0f32;
                    for sp in &spicules {
                        let along = r - bnd * 0.9;
                        if along <= 0.0 || along > sp.length {
                            continue;
                        }
                        let da = (pa - sp.angle + 3.0 * std::f32::consts::PI).rem_euclid(TAU) - std::f32::consts::PI;
                        let perp = r * da.abs();
                        let wdt = sp.width * (1.0 - along / sp.length) + 0.004;
                        let q = perp / wdt;
                        if q < 3.0 {
                            best = best.max((-q * q).exp() * (1.0 - 0.5 * along / sp.length));
                        }
                    }
                    val += mass_level * 0.8 * best;
                }
            }
            // Skin line: beyond a gently curved contour lies air, with a thin bright skin band.
            if let Some((sa, ca, c, k)) = skin {
                let along = x * ca + y * sa;
                let across = -x * sa + y * ca;
                let sdist = along + k * across * across - c;
                if sdist > 0.0 {
                    val = 0.03 + 0.02 * fine;
                } else if sdist > -0.05 {
                    val += 0.08;
                } else if sdist > -0.3 {
                    val *= 0.75 + 0.25 * (-sdist / 0.3);
                }
            }
            out[i * size + j] = val;
        }
    }

    // Micro-calcifications: small bright specks inside the mass (disease-related).
    let sigma = (0.018f32).max(0.7 * inv);
    for &(cx, cy, amp) in &v.calcifications {
        let (cx, cy) = (cx as f32, cy as f32);
        let j0 = (((cx - 3.0 * sigma + 1.0) / inv).floor().max(0.0)) as usize;
        let j1 = ((((cx + 3.0 * sigma + 1.0) / inv).ceil()) as usize).min(size);
        let i0 = (((cy - 3.0 * sigma + 1.0) / inv).floor().max(0.0)) as usize;
        let i1 = ((((cy + 3.0 * sigma + 1.0) / inv).ceil()) as usize).min(size);
        for i in i0..i1 {
            let y = (i as f32 + 0.5) * inv - 1.0;
            for j in j0..j1 {
                let x = (j as f32 + 0.5) * inv - 1.0;
                let r2 = ((x - cx).powi(2) + (y - cy).powi(2)) / (sigma * sigma);
                out[i * size + j] += amp as f32 * (-r2).exp();
            }
        }
    }

    // Acquisition: brightness, contrast, noise; then clamp and quantise to 16 bits.
    let (bright, contrast, noise) = (v.brightness as f32 * s, 1.0 + (v.contrast as f32 - 1.0) * s, v.noise as f32);
    let mut nrng = Rng::new(v.render_seed ^ 0xA5A5_5A5A_1234_4321);
    for px in &mut out {
        // Irwin-Hall(4) approximation of a standard normal: cheap and smooth enough for noise.
        let r = nrng.next_u64();
        let z = ((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48)) as f32 / 65536.0 - 2.0;
        let vq = (0.5 + (*px - 0.5) * contrast + bright + noise * z * 1.732).clamp(0.0, 1.0);
        *px = (vq * 65535.0).round() / 65535.0;
    }
    out
}
