//! Grayscale images (f32, row-major, H x W) and the few operations the
//! loaders need: PGM and PNG decoding, square crops with padding, resizing.

use std::path::Path;

use crate::error::{io_err, DataError, Result};

/// A grayscale image, row-major, values nominally in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Image {
    /// An image of zeros.
    pub fn zeros(height: usize, width: usize) -> Self {
        Self { height, width, data: vec![0.0; height * width] }
    }

    /// Wraps a buffer; its length must be `height * width`.
    pub fn from_vec(height: usize, width: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), height * width, "image buffer has the wrong length");
        Self { height, width, data }
    }

    /// Pixel at row `y`, column `x`.
    pub fn get(&self, y: usize, x: usize) -> f32 {
        self.data[y * self.width + x]
    }

    /// Minimum and maximum value.
    pub fn min_max(&self) -> (f32, f32) {
        self.data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
    }

    /// A square crop of side `side` centred on (`cy`, `cx`); parts that fall
    /// outside the image are filled with `fill`.
    pub fn crop_square(&self, cy: isize, cx: isize, side: usize, fill: f32) -> Image {
        let mut out = Image::from_vec(side, side, vec![fill; side * side]);
        let y0 = cy - side as isize / 2;
        let x0 = cx - side as isize / 2;
        for oy in 0..side {
            let sy = y0 + oy as isize;
            if sy < 0 || sy >= self.height as isize {
                continue;
            }
            for ox in 0..side {
                let sx = x0 + ox as isize;
                if sx < 0 || sx >= self.width as isize {
                    continue;
                }
                out.data[oy * side + ox] = self.data[sy as usize * self.width + sx as usize];
            }
        }
        out
    }

    /// Pads the shorter side (centred, with `fill`) so the image is square.
    pub fn pad_square(&self, fill: f32) -> Image {
        if self.height == self.width {
            return self.clone();
        }
        let side = self.height.max(self.width);
        self.crop_square((self.height / 2) as isize, (self.width / 2) as isize, side, fill)
    }

    /// Resizes to `out_h x out_w`: area averaging when shrinking (no
    /// aliasing when a 4,500-pixel film becomes a 64-pixel patch), bilinear
    /// interpolation when enlarging.
    pub fn resize(&self, out_h: usize, out_w: usize) -> Image {
        if out_h == self.height && out_w == self.width {
            return self.clone();
        }
        if out_h <= self.height && out_w <= self.width {
            self.resize_area(out_h, out_w)
        } else {
            self.resize_bilinear(out_h, out_w)
        }
    }

    fn resize_area(&self, out_h: usize, out_w: usize) -> Image {
        // Separable box filter with fractional edge weights.
        let spans = |n_in: usize, n_out: usize| -> Vec<Vec<(usize, f32)>> {
            let scale = n_in as f64 / n_out as f64;
            (0..n_out)
                .map(|o| {
                    let a = o as f64 * scale;
                    let b = (o + 1) as f64 * scale;
                    let mut w = Vec::new();
                    let mut i = a.floor() as usize;
                    while (i as f64) < b && i < n_in {
                        let lo = (i as f64).max(a);
                        let hi = ((i + 1) as f64).min(b);
                        if hi > lo {
                            w.push((i, ((hi - lo) / scale) as f32));
                        }
                        i += 1;
                    }
                    w
                })
                .collect()
        };
        let xs = spans(self.width, out_w);
        let ys = spans(self.height, out_h);
        // Horizontal pass.
        let mut tmp = vec![0f32; self.height * out_w];
        for y in 0..self.height {
            let row = &self.data[y * self.width..(y + 1) * self.width];
            for (ox, w) in xs.iter().enumerate() {
                tmp[y * out_w + ox] = w.iter().map(|&(i, wi)| row[i] * wi).sum();
            }
        }
        let mut out = vec![0f32; out_h * out_w];
        for (oy, w) in ys.iter().enumerate() {
            let dst = &mut out[oy * out_w..(oy + 1) * out_w];
            for &(i, wi) in w {
                let src = &tmp[i * out_w..(i + 1) * out_w];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s * wi;
                }
            }
        }
        Image::from_vec(out_h, out_w, out)
    }

    fn resize_bilinear(&self, out_h: usize, out_w: usize) -> Image {
        let mut out = Vec::with_capacity(out_h * out_w);
        let sy = self.height as f32 / out_h as f32;
        let sx = self.width as f32 / out_w as f32;
        for oy in 0..out_h {
            let fy = ((oy as f32 + 0.5) * sy - 0.5).clamp(0.0, (self.height - 1) as f32);
            let y0 = fy.floor() as usize;
            let y1 = (y0 + 1).min(self.height - 1);
            let ty = fy - y0 as f32;
            for ox in 0..out_w {
                let fx = ((ox as f32 + 0.5) * sx - 0.5).clamp(0.0, (self.width - 1) as f32);
                let x0 = fx.floor() as usize;
                let x1 = (x0 + 1).min(self.width - 1);
                let tx = fx - x0 as f32;
                let a = self.get(y0, x0) * (1.0 - tx) + self.get(y0, x1) * tx;
                let b = self.get(y1, x0) * (1.0 - tx) + self.get(y1, x1) * tx;
                out.push(a * (1.0 - ty) + b * ty);
            }
        }
        Image::from_vec(out_h, out_w, out)
    }

    /// Samples the image at fractional coordinates (bilinear, clamped at the border).
    pub fn sample_bilinear(&self, fy: f32, fx: f32) -> f32 {
        let fy = fy.clamp(0.0, (self.height - 1) as f32);
        let fx = fx.clamp(0.0, (self.width - 1) as f32);
        let y0 = fy.floor() as usize;
        let x0 = fx.floor() as usize;
        let y1 = (y0 + 1).min(self.height - 1);
        let x1 = (x0 + 1).min(self.width - 1);
        let ty = fy - y0 as f32;
        let tx = fx - x0 as f32;
        let a = self.get(y0, x0) * (1.0 - tx) + self.get(y0, x1) * tx;
        let b = self.get(y1, x0) * (1.0 - tx) + self.get(y1, x1) * tx;
        a * (1.0 - ty) + b * ty
    }
}

/// Reads a binary PGM (`P5`), 8- or 16-bit, into [0, 1].
pub fn read_pgm(path: &Path) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(io_err(path, "cannot read PGM file"))?;
    parse_pgm(&bytes).map_err(|problem| DataError::Image { path: path.into(), problem })
}

/// Parses PGM bytes; the error is a description of what was expected.
pub fn parse_pgm(bytes: &[u8]) -> std::result::Result<Image, String> {
    let mut pos = 0usize;
    let mut tokens = Vec::with_capacity(4);
    while tokens.len() < 4 {
        // Skip whitespace and comments.
        while pos < bytes.len() && (bytes[pos].is_ascii_whitespace() || bytes[pos] == b'#') {
            if bytes[pos] == b'#' {
                while pos < bytes.len() && bytes[pos] != b'\n' {
                    pos += 1;
                }
            } else {
                pos += 1;
            }
        }
        let start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if start == pos {
            return Err(format!("truncated PGM header: expected magic, width, height and maxval, found {} of them", tokens.len()));
        }
        tokens.push(String::from_utf8_lossy(&bytes[start..pos]).into_owned());
    }
    if tokens[0] != "P5" {
        return Err(format!("not a binary PGM: magic is `{}`, expected `P5`", tokens[0]));
    }
    let num = |i: usize, what: &str| -> std::result::Result<usize, String> {
        tokens[i].parse::<usize>().map_err(|_| format!("PGM {what} `{}` is not a positive integer", tokens[i]))
    };
    let (w, h, maxval) = (num(1, "width")?, num(2, "height")?, num(3, "maxval")?);
    if w == 0 || h == 0 || maxval == 0 || maxval > 65535 {
        return Err(format!("PGM header {w} x {h}, maxval {maxval}: expected positive sizes and maxval 1..65535"));
    }
    pos += 1; // the single whitespace byte after maxval
    let bpp = if maxval < 256 { 1 } else { 2 };
    let need = w.checked_mul(h).and_then(|n| n.checked_mul(bpp)).unwrap_or(usize::MAX);
    let have = bytes.len().saturating_sub(pos);
    if have < need {
        return Err(format!("truncated PGM: {w} x {h} x {bpp} bytes of pixels expected, {have} present"));
    }
    let px = &bytes[pos..pos + need];
    let scale = 1.0 / maxval as f32;
    let data = if bpp == 1 {
        px.iter().map(|&b| b as f32 * scale).collect()
    } else {
        px.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]) as f32 * scale).collect()
    };
    Ok(Image::from_vec(h, w, data))
}

/// Reads a PNG (8- or 16-bit, gray or colour, colour converted to luma) into [0, 1].
pub fn read_png(path: &Path) -> Result<Image> {
    let img = image::open(path).map_err(|e| DataError::Image { path: path.into(), problem: format!("cannot decode PNG: {e}") })?;
    let g = img.into_luma16();
    let (w, h) = (g.width() as usize, g.height() as usize);
    let data = g.into_raw().into_iter().map(|v| v as f32 / 65535.0).collect();
    Ok(Image::from_vec(h, w, data))
}

/// Reads an image by its extension: `.png`, `.pgm`, or `.dcm`/`.dicom`
/// (or no extension, taken as DICOM).
pub fn read_any(path: &Path) -> Result<Image> {
    if !path.exists() {
        return Err(DataError::Missing { path: path.into(), what: "image file".into() });
    }
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("png") => read_png(path),
        Some("pgm") => read_pgm(path),
        Some("dcm") | Some("dicom") | None => crate::dicom_io::read_dicom(path, &Default::default()),
        Some(other) => Err(DataError::Image {
            path: path.into(),
            problem: format!("unsupported image extension `.{other}`; expected .png, .pgm, .dcm or .dicom"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_resize_preserves_the_mean_and_averages_blocks() {
        let img = Image::from_vec(2, 4, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        let r = img.resize(1, 2);
        // (0+1+4+5)/4 = 2.5, (2+3+6+7)/4 = 4.5
        assert_eq!(r.data, vec![2.5, 4.5]);
        let big = Image::from_vec(3, 3, (0..9).map(|v| v as f32).collect());
        let small = big.resize(2, 2);
        let m_in: f32 = big.data.iter().sum::<f32>() / 9.0;
        let m_out: f32 = small.data.iter().sum::<f32>() / 4.0;
        assert!((m_in - m_out).abs() < 1e-5);
    }

    #[test]
    fn crop_outside_the_image_is_filled() {
        let img = Image::from_vec(2, 2, vec![1.0, 2.0, 3.0, 4.0]);
        let c = img.crop_square(0, 0, 2, -1.0);
        assert_eq!(c.data, vec![-1.0, -1.0, -1.0, 1.0]);
    }

    #[test]
    fn pgm_8_and_16_bit_and_truncation() {
        let mut b = b"P5\n# comment\n2 1\n255\n".to_vec();
        b.extend([0u8, 255]);
        let img = parse_pgm(&b).unwrap();
        assert_eq!(img.data, vec![0.0, 1.0]);
        let mut b16 = b"P5 1 1 65535\n".to_vec();
        b16.extend([0x80u8, 0x00]);
        assert!((parse_pgm(&b16).unwrap().data[0] - 32768.0 / 65535.0).abs() < 1e-6);
        let err = parse_pgm(b"P5\n4 4\n255\n\x00\x00").unwrap_err();
        assert!(err.contains("truncated PGM: 4 x 4 x 1 bytes"), "{err}");
        assert!(parse_pgm(b"P2\n1 1\n255\n0").unwrap_err().contains("expected `P5`"));
    }
}
