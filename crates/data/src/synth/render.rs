//! Rendering one synthetic mammogram-mass patch from its factors.
//!
//! Coordinates are resolution-free: the patch spans [-1, 1]^2, so one set
//! of factors looks the same at 32 and at 224 pixels. Small patches are
//! supersampled (the mean of `ss x ss` points per pixel: anti-aliased
//! edges and spicules instead of point samples), and the margin cues have
//! minimum sizes in pixels (spicule width, lobulation amplitude, blur), so
//! every shape and margin class stays distinguishable at 32 x 32. Costs
//! per point are a few hashed value-noise lookups, one `atan2` and a
//! look-up table for the mass boundary; calcifications and noise are added
//! per pixel.

use super::{Factors, ViewFactors};
use crate::rng::Rng;
use crate::vocab::Attribute;

const BOUNDARY_LUT: usize = 512;
const TAU: f32 = std::f32::consts::TAU;
const PI: f32 = std::f32::consts::PI;

/// Smallest margin cues, in pixels of the rendered patch.
mod min_px {
    /// Spicule full width at half maximum.
    pub const SPICULE_FWHM: f32 = 1.2;
    /// Amplitude of the microlobulated ripple.
    pub const LOBULATION: f32 = 0.7;
    /// Blur of an ill-defined edge.
    pub const ILL_DEFINED_BLUR: f32 = 1.5;
    /// Largest blur of a circumscribed (sharp) edge.
    pub const SHARP_EDGE: f32 = 0.3;
    /// Circumference per microlobule.
    pub const LOBULE_SPACING: f32 = 3.0;
}

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

/// The angle `a - b` wrapped to (-pi, pi].
#[inline]
fn angle_diff(a: f32, b: f32) -> f32 {
    (a - b + 3.0 * PI).rem_euclid(TAU) - PI
}

/// Harmonics `(k, amplitude, phase)` of the mass outline, relative to its radius.
fn outline_harmonics(f: &Factors, rng: &mut Rng, px: f32) -> Vec<(f32, f32, f32)> {
    let mut harm: Vec<(f32, f32, f32)> = Vec::new();
    let phase = |rng: &mut Rng| rng.uniform(0.0, TAU as f64) as f32;
    match f.shape {
        Attribute::Round | Attribute::Oval => harm.push((2.0, rng.uniform(0.0, 0.03) as f32, phase(rng))),
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
    let r = f.radius as f32;
    match f.margin {
        Attribute::Microlobulated => {
            // Fine undulations, at least 0.7 px deep and 3 px apart on the outline.
            let most = ((TAU * r / px) / min_px::LOBULE_SPACING).max(6.0) as usize;
            let m = (14 + rng.below(10)).min(most);
            let floor = min_px::LOBULATION * px / r;
            harm.push((m as f32, (rng.uniform(0.035, 0.05) as f32).max(floor), phase(rng)));
            harm.push(((m + m / 2) as f32, (rng.uniform(0.015, 0.03) as f32).max(0.5 * floor), phase(rng)));
        }
        Attribute::IllDefined => {
            for k in [5.0, 7.0, 11.0] {
                harm.push((k, rng.uniform(0.01, 0.04) as f32, phase(rng)));
            }
        }
        _ => {}
    }
    harm
}

/// The boundary radius of the mass (relative) as a function of angle, tabulated.
fn boundary_lut(f: &Factors, rng: &mut Rng, px: f32) -> Vec<f32> {
    let harm = outline_harmonics(f, rng, px);
    let cusp = if f.shape == Attribute::Irregular { rng.uniform(0.1, 0.2) as f32 } else { 0.0 };
    let cusp_k = 3.0 + rng.below(3) as f32;
    let cusp_phase = rng.uniform(0.0, TAU as f64) as f32;
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

/// Everything about the mass that does not change from point to point.
struct Mass {
    r: f32,
    lut: Vec<f32>,
    aspect: f32,
    sin_t: f32,
    cos_t: f32,
    center: (f32, f32),
    /// Edge blur, relative to the radius.
    edge: f32,
    spicules: Vec<Spicule>,
    obscured: bool,
    /// The obscuring overlay's sector: centre angle and half-width.
    over: (f32, f32),
    /// How far (in the mass frame's radius) anything of the mass reaches.
    reach: f32,
    level: f32,
    heterogeneity: f32,
    seed_mass: u32,
    seed_over: u32,
}

impl Mass {
    fn new(f: &Factors, v: &ViewFactors, rng: &mut Rng, px: f32) -> Mass {
        let lut = boundary_lut(f, rng, px);
        let (seed_mass, seed_over) = (rng.next_u64() as u32, rng.next_u64() as u32);
        let r = f.radius as f32;
        let aspect = match f.shape {
            Attribute::Round => rng.uniform(0.9, 1.0),
            Attribute::Oval => rng.uniform(0.5, 0.68),
            Attribute::Lobulated => rng.uniform(0.75, 0.95),
            _ => rng.uniform(0.65, 1.0),
        } as f32;
        let rel = |pixels: f32| pixels * px / r;
        let edge = match f.margin {
            Attribute::Circumscribed => 0.012f32.min(rel(min_px::SHARP_EDGE)),
            Attribute::Microlobulated => 0.025,
            Attribute::Obscured => 0.02,
            Attribute::IllDefined => (rng.uniform(0.11, 0.17) as f32).max(rel(min_px::ILL_DEFINED_BLUR)),
            _ => 0.035,
        };
        // A Gaussian profile exp(-q^2) has FWHM 2 sqrt(ln 2) ~ 1.665 widths.
        let min_width = min_px::SPICULE_FWHM * px / 1.665;
        let spicules: Vec<Spicule> = if f.margin == Attribute::Spiculated {
            let n = 10 + rng.below(9);
            (0..n)
                .map(|_| Spicule {
                    angle: rng.uniform(-std::f64::consts::PI, std::f64::consts::PI) as f32,
                    length: rng.uniform(0.5, 1.05) as f32 * r,
                    width: (rng.uniform(0.025, 0.045) as f32).max(min_width),
                })
                .collect()
        } else {
            Vec::new()
        };
        let over = (rng.uniform(-3.14, 3.14) as f32, rng.uniform(0.9, 1.4) as f32);
        let (sin_t, cos_t) = v.orientation.sin_cos();
        let mut m = Mass {
            r,
            lut,
            aspect,
            sin_t: sin_t as f32,
            cos_t: cos_t as f32,
            center: (v.center.0 as f32, v.center.1 as f32),
            edge,
            spicules,
            obscured: f.margin == Attribute::Obscured,
            over,
            reach: 0.0,
            level: f.mass_intensity as f32,
            heterogeneity: f.heterogeneity as f32,
            seed_mass,
            seed_over,
        };
        m.reach = m.reach();
        m
    }

    /// How far anything of the mass reaches: the blurred edge, the
    /// obscuring overlay, the spicules (their length is measured
    /// unstretched, hence the division by the aspect).
    fn reach(&self) -> f32 {
        let lut_max = self.lut.iter().fold(0f32, |a, &b| a.max(b));
        let mut reach = self.r * (lut_max + 12.0 * self.edge);
        if self.obscured {
            reach = reach.max(self.r * (lut_max + 1.2));
        }
        if let Some(longest) = self.spicules.iter().map(|s| s.length).reduce(f32::max) {
            reach = reach.max((self.r * lut_max + longest) / self.aspect);
        }
        reach
    }

    /// What the mass adds at (x, y).
    fn at(&self, x: f32, y: f32) -> f32 {
        let dx = x - self.center.0;
        let dy = y - self.center.1;
        let u = dx * self.cos_t + dy * self.sin_t;
        let w = (-dx * self.sin_t + dy * self.cos_t) / self.aspect;
        let rho = (u * u + w * w).sqrt();
        if rho >= self.reach {
            return 0.0;
        }
        let t = (w.atan2(u) + PI) / TAU * BOUNDARY_LUT as f32;
        let i0 = (t as usize) % BOUNDARY_LUT;
        let frac = t - t.floor();
        let bnd = self.r * (self.lut[i0] * (1.0 - frac) + self.lut[(i0 + 1) % BOUNDARY_LUT] * frac);
        let d = (rho - bnd) / self.r;
        let inside = if d / self.edge > 12.0 { 0.0 } else { sigmoid(-d / self.edge) };
        let mut val = 0.0;
        if inside > 1e-4 {
            let core = 1.0 - 0.35 * (rho / bnd).min(1.0).powi(2);
            // Internal texture heterogeneity (disease-related, not an attribute).
            let tex = value_noise(u * 9.0 + 40.0, w * 9.0 + 40.0, self.seed_mass) * 2.0 - 1.0;
            val += self.level * core * inside * (1.0 + 0.9 * self.heterogeneity * tex);
        }
        if self.obscured && d > -0.2 && d < 1.2 {
            val += self.overlay(x, y, dx, dy, d, inside);
        }
        if !self.spicules.is_empty() && d > -0.05 {
            val += self.level * 0.8 * self.spicule((dx * dx + dy * dy).sqrt(), dy.atan2(dx), bnd);
        }
        val
    }

    /// Obscured: overlapping tissue continues the mass's brightness across
    /// its edge in one sector, so the boundary there is hidden.
    fn overlay(&self, x: f32, y: f32, dx: f32, dy: f32, d: f32, inside: f32) -> f32 {
        let g = (1.0 - (angle_diff(dy.atan2(dx), self.over.0).abs() / self.over.1).powi(2)).max(0.0);
        if g <= 0.0 {
            return 0.0;
        }
        let tissue = value_noise(x * 5.0 + 60.0, y * 5.0 + 60.0, self.seed_over);
        let fall = (-(d.max(0.0) / 0.5).powi(2)).exp();
        self.level * 0.72 * g * (1.0 - inside) * fall * (0.7 + 0.6 * tissue)
    }

    /// The brightest spicule at distance `r` and angle `pa` from the centre.
    fn spicule(&self, r: f32, pa: f32, bnd: f32) -> f32 {
        let along = r - bnd * 0.9;
        let mut best = 0f32;
        for sp in &self.spicules {
            if along <= 0.0 || along > sp.length {
                continue;
            }
            let perp = r * angle_diff(pa, sp.angle).abs();
            let wdt = sp.width * (1.0 - along / sp.length) + 0.004;
            let q = perp / wdt;
            if q < 3.0 {
                best = best.max((-q * q).exp() * (1.0 - 0.5 * along / sp.length));
            }
        }
        best
    }
}

/// The disease-irrelevant anatomy: parenchyma, pectoral muscle, skin.
struct Background {
    base: f32,
    tex_amp: f32,
    sin_d: f32,
    cos_d: f32,
    density: f32,
    strength: f32,
    seed_tex: u32,
    seed_fine: u32,
    skin: Option<(f32, f32, f32, f32)>,
    pect: Option<(f32, f32, f32)>,
}

impl Background {
    fn new(v: &ViewFactors, rng: &mut Rng, strength: f32) -> Background {
        let (seed_tex, seed_fine) = (rng.next_u64() as u32, rng.next_u64() as u32);
        let density = v.density as f32;
        let (sin_d, cos_d) = (v.tissue_angle as f32).sin_cos();
        Background {
            base: 0.16 + 0.32 * density * strength + 0.16 * (1.0 - strength),
            tex_amp: (0.10 + 0.22 * density) * strength,
            sin_d,
            cos_d,
            density,
            strength,
            seed_tex,
            seed_fine,
            skin: v.skin.map(|(a, c, k)| {
                let (sa, ca) = (a as f32).sin_cos();
                (sa, ca, c as f32, k as f32)
            }),
            pect: v.pectoral.map(|(a, c)| {
                let (sa, ca) = (a as f32).sin_cos();
                (sa, ca, c as f32)
            }),
        }
    }

    /// Parenchyma (streaky anisotropic noise along the ducts plus a finer
    /// octave) and the pectoral muscle, a bright smooth band in one corner;
    /// also the fine octave, which the skin reuses.
    fn tissue(&self, x: f32, y: f32) -> (f32, f32) {
        let a = x * self.cos_d + y * self.sin_d;
        let b = -x * self.sin_d + y * self.cos_d;
        let streak = value_noise(a * 2.5 + 10.0, b * 9.0 + 10.0, self.seed_tex);
        let fine = value_noise(x * 7.0 + 20.0, y * 7.0 + 20.0, self.seed_fine);
        let mut val = self.base + self.tex_amp * (0.65 * streak + 0.35 * fine - 0.5) * 2.0;
        if let Some((sa, ca, c)) = self.pect {
            let m = sigmoid((x * ca + y * sa - c) / 0.015);
            let s = self.strength;
            let muscle = (0.62 + 0.12 * self.density) * s + val * (1.0 - s) + 0.05 * (streak - 0.5);
            val = val * (1.0 - m) + muscle * m;
        }
        (val, fine)
    }

    /// The skin line: beyond a gently curved contour lies air, with a thin bright skin band.
    fn skin(&self, x: f32, y: f32, val: f32, fine: f32) -> f32 {
        let Some((sa, ca, c, k)) = self.skin else { return val };
        let along = x * ca + y * sa;
        let across = -x * sa + y * ca;
        let sdist = along + k * across * across - c;
        if sdist > 0.0 {
            0.03 + 0.02 * fine
        } else if sdist > -0.05 {
            val + 0.08
        } else if sdist > -0.3 {
            val * (0.75 + 0.25 * (-sdist / 0.3))
        } else {
            val
        }
    }
}

/// Points per pixel side for a patch of `size` pixels, when not set: 4 up
/// to 64 pixels, 2 up to 128, 1 above.
pub fn auto_supersample(size: usize) -> usize {
    match size {
        0..=64 => 4,
        65..=128 => 2,
        _ => 1,
    }
}

/// Renders one view of a lesion, `size x size`, row-major, values in
/// [0, 1] quantised to 16 bits; `ss x ss` points per pixel.
pub fn render(f: &Factors, v: &ViewFactors, size: usize, irrelevant_strength: f32, ss: usize) -> Vec<f32> {
    let mut rng = Rng::new(v.render_seed);
    let inv = 2.0 / size as f32;
    let background = Background::new(v, &mut rng, irrelevant_strength);
    let mass = Mass::new(f, v, &mut rng, inv);
    let ss = ss.max(1);
    let mut out = vec![0f32; size * size];
    for i in 0..size {
        for j in 0..size {
            let mut sum = 0.0;
            for si in 0..ss {
                let y = (i as f32 + (si as f32 + 0.5) / ss as f32) * inv - 1.0;
                for sj in 0..ss {
                    let x = (j as f32 + (sj as f32 + 0.5) / ss as f32) * inv - 1.0;
                    let (tissue, fine) = background.tissue(x, y);
                    sum += background.skin(x, y, tissue + mass.at(x, y), fine);
                }
            }
            out[i * size + j] = sum / (ss * ss) as f32;
        }
    }
    add_calcifications(&mut out, &v.calcifications, size);
    acquire(&mut out, v, irrelevant_strength);
    out
}

/// Micro-calcifications: small bright Gaussian specks inside the mass
/// (disease-related), at least 0.7 pixels wide.
fn add_calcifications(out: &mut [f32], specks: &[(f64, f64, f64)], size: usize) {
    let inv = 2.0 / size as f32;
    let sigma = (0.018f32).max(0.7 * inv);
    let px = |c: f32, k: f32| ((c + k * 3.0 * sigma + 1.0) / inv).clamp(0.0, size as f32) as usize;
    for &(cx, cy, amp) in specks {
        let (cx, cy) = (cx as f32, cy as f32);
        for i in px(cy, -1.0)..(px(cy, 1.0) + 1).min(size) {
            let y = (i as f32 + 0.5) * inv - 1.0;
            for j in px(cx, -1.0)..(px(cx, 1.0) + 1).min(size) {
                let x = (j as f32 + 0.5) * inv - 1.0;
                let r2 = ((x - cx).powi(2) + (y - cy).powi(2)) / (sigma * sigma);
                out[i * size + j] += amp as f32 * (-r2).exp();
            }
        }
    }
}

/// Acquisition: brightness, contrast, noise; then clamp and quantise to 16 bits.
fn acquire(out: &mut [f32], v: &ViewFactors, strength: f32) {
    let (bright, contrast, noise) = (v.brightness as f32 * strength, 1.0 + (v.contrast as f32 - 1.0) * strength, v.noise as f32);
    let mut nrng = Rng::new(v.render_seed ^ 0xA5A5_5A5A_1234_4321);
    for px in out.iter_mut() {
        // Irwin-Hall(4) approximation of a standard normal: cheap and smooth enough for noise.
        let r = nrng.next_u64();
        let z = ((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48)) as f32 / 65536.0 - 2.0;
        let vq = (0.5 + (*px - 0.5) * contrast + bright + noise * z * 1.732).clamp(0.0, 1.0);
        *px = (vq * 65535.0).round() / 65535.0;
    }
}
