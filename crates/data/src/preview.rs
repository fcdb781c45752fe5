//! A PNG grid of samples with their label and attributes written under each
//! tile, for looking at a data set.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::font::{draw_text, text_height, text_width};
use crate::sample::Sample;
use crate::vocab::Cluster;

/// Layout of a preview grid.
#[derive(Clone, Debug)]
pub struct PreviewSpec {
    pub columns: usize,
    /// Tile side in pixels (images are resized to it).
    pub tile: usize,
}

impl Default for PreviewSpec {
    fn default() -> Self {
        Self { columns: 6, tile: 160 }
    }
}

/// The caption lines of a sample: label, shape, margin, and for synthetic
/// samples the microscopic factors.
pub fn caption(s: &Sample) -> Vec<(String, [u8; 3])> {
    let label = if s.label == 1 { ("MALIGNANT".to_string(), [255, 110, 110]) } else { ("BENIGN".to_string(), [120, 230, 120]) };
    let mut lines = vec![label];
    let short = |c: Cluster| {
        let v: Vec<&str> = s.attributes.iter().filter(|a| a.cluster() == c).map(|a| a.short()).collect();
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join("+")
        }
    };
    lines.push((format!("{} / {}", short(Cluster::Shape), short(Cluster::Margin)), [235, 235, 235]));
    if let Some(f) = &s.factors {
        lines.push((format!("HET {:.2} CA {}", f.lesion.heterogeneity, f.lesion.n_calcifications), [180, 200, 255]));
    } else {
        lines.push((s.id.chars().rev().take(18).collect::<String>().chars().rev().collect(), [180, 200, 255]));
    }
    lines
}

/// Writes a grid of `samples` to `path` (PNG).
pub fn write_preview(samples: &[&Sample], spec: &PreviewSpec, path: &Path) -> Result<()> {
    let cols = spec.columns.max(1).min(samples.len().max(1));
    let rows = samples.len().div_ceil(cols);
    let pad = 6;
    // Captions at twice the font size where tiles are wide enough for it.
    let scale = if spec.tile >= 150 { 2 } else { 1 };
    let line_h = text_height(scale) + 4;
    let cap_h = 3 * line_h + 4;
    let cell_w = spec.tile + pad;
    let cell_h = spec.tile + cap_h + pad;
    let (w, h) = (cols * cell_w + pad, rows * cell_h + pad);
    let mut buf = vec![24u8; w * h * 3];
    for (k, s) in samples.iter().enumerate() {
        let (ox, oy) = (pad + (k % cols) * cell_w, pad + (k / cols) * cell_h);
        let img = s.image.as_ref().ok_or_else(|| DataError::NoImages { what: format!("sample `{}`", s.id), action: "preview it" })?;
        let tile = img.resize(spec.tile, spec.tile);
        for y in 0..spec.tile {
            for x in 0..spec.tile {
                let v = (tile.get(y, x).clamp(0.0, 1.0) * 255.0).round() as u8;
                let o = ((oy + y) * w + ox + x) * 3;
                buf[o..o + 3].copy_from_slice(&[v, v, v]);
            }
        }
        for (i, (text, color)) in caption(s).iter().enumerate() {
            // Cut captions that would run into the next tile.
            let mut text = text.clone();
            while text_width(&text, scale) > spec.tile && text.pop().is_some() {}
            draw_text(&mut buf, w, h, ox + 2, oy + spec.tile + 4 + i * line_h, &text, scale, *color);
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(crate::error::io_err(parent, "cannot create folder"))?;
    }
    let img = image::RgbImage::from_raw(w as u32, h as u32, buf).expect("buffer matches size");
    let tmp = path.with_extension("png.tmp");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| DataError::Image { path: tmp.clone(), problem: format!("cannot write PNG: {e}") })?;
    std::fs::rename(&tmp, path).map_err(crate::error::io_err(path, "cannot move preview into place"))
}
