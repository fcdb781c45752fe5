//! Figures with plotters, each written as PNG and SVG (through temporary
//! names): the tau x p heatmaps and their marginals, ROC curves, training
//! curves, the Figure 3 grid and the disentanglement probe. Text uses the
//! bundled DejaVu Sans (`assets/`), so no system font is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

use dae_metrics::roc_curve;
use dae_sweep::plan::show;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::aggregate::{Analysis, RowStats};
use crate::collect::{Collection, GreyImage, RunRecord};
use crate::ReportError;

const FONT: &str = "sans-serif";

fn init_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_err() {
            tracing::warn!("the bundled font could not be registered; figure text may be missing");
        }
    });
}

/// Tableau 10: distinguishable line colours.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Viridis, interpolated between 6 stops; t in [0, 1].
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 6] =
        [(68.0, 1.0, 84.0), (65.0, 68.0, 135.0), (42.0, 120.0, 142.0), (34.0, 168.0, 132.0), (122.0, 209.0, 81.0), (253.0, 231.0, 37.0)];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let m = |u: f64, v: f64| (u + (v - u) * f).round() as u8;
    RGBColor(m(a.0, b.0), m(a.1, b.1), m(a.2, b.2))
}

type DrawResult = Result<(), String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

/// A figure drawable on any plotters backend.
pub trait Figure {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult;
}

/// Draws a figure to `<dir>/<name>.png` and `.svg`; returns the paths.
pub fn save<F: Figure>(fig: &F, dir: &Path, name: &str) -> Result<Vec<PathBuf>, ReportError> {
    init_font();
    let err = |problem: String| ReportError::Figure { name: name.to_string(), problem };
    let (w, h) = fig.size();
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| err(e(x)))?;
        fig.draw(&root).map_err(err)?;
        root.present().map_err(|x| err(e(x)))?;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| err(e(x)))?;
        fig.draw(&root).map_err(err)?;
        root.present().map_err(|x| err(e(x)))?;
    }
    let mut png = Vec::new();
    image::RgbImage::from_raw(w, h, rgb)
        .expect("the buffer has the figure's size")
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|x| err(e(x)))?;
    let mut out = Vec::new();
    for (ext, bytes) in [("png", png.as_slice()), ("svg", svg.as_bytes())] {
        let p = dir.join(format!("{name}.{ext}"));
        dae_runfolder::write_atomic(&p, bytes).map_err(|source| ReportError::Io { path: p.clone(), source })?;
        out.push(p);
    }
    Ok(out)
}

fn style(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

// ---------- the tau x p sweep ----------

/// One heatmap cell: the seed mean, the half-width of its 95% CI, and a
/// mark (the attribute graph's letter, `singular E`).
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub mean: f64,
    pub half: f64,
    pub mark: String,
}

/// A heatmap of one metric over two axes. The colour scale spans at least
/// four typical CI half-widths (and 0.1), so cells that differ by noise do
/// not look different.
pub struct Heatmap {
    pub title: String,
    pub x_name: String,
    pub y_name: String,
    pub xs: Vec<String>,
    pub ys: Vec<String>,
    /// values[y][x].
    pub values: Vec<Vec<Option<Cell>>>,
    pub metric: String,
}

impl Heatmap {
    /// The colour scale's range: the values' range, widened to at least
    /// max(0.1, 4 x the median CI half-width) around its middle.
    pub fn range(&self) -> (f64, f64) {
        let cells: Vec<&Cell> = self.values.iter().flatten().flatten().filter(|c| c.mean.is_finite()).collect();
        let (lo, hi) = cells.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), c| (a.min(c.mean), b.max(c.mean)));
        let mut halves: Vec<f64> = cells.iter().map(|c| c.half).filter(|h| h.is_finite()).collect();
        halves.sort_by(f64::total_cmp);
        let median = halves.get(halves.len() / 2).copied().unwrap_or(0.0);
        let span = (hi - lo).max(0.1).max(4.0 * median);
        let mid = (lo + hi) / 2.0;
        (mid - span / 2.0, mid + span / 2.0)
    }
}

impl Figure for Heatmap {
    fn size(&self) -> (u32, u32) {
        (900, 760)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        use plotters::style::text_anchor::{HPos, Pos, VPos};
        let (head, body) = root.split_vertically(70);
        let (title, subtitle) = self.title.split_once('\n').unwrap_or((&self.title, ""));
        let centre = |size| style(size).pos(Pos::new(HPos::Center, VPos::Center));
        let w = self.size().0 as i32;
        head.draw(&Text::new(title.to_string(), (w / 2, 22), centre(22))).map_err(e)?;
        head.draw(&Text::new(subtitle.to_string(), (w / 2, 52), centre(15))).map_err(e)?;
        let (main, bar) = body.split_horizontally(780);
        let (lo, hi) = self.range();
        let (nx, ny) = (self.xs.len(), self.ys.len());
        let mut chart = ChartBuilder::on(&main)
            .margin(16)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..nx as f64, 0f64..ny as f64)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_label_formatter(&|_| String::new())
            .y_label_formatter(&|_| String::new())
            .x_desc(&self.x_name)
            .y_desc(&self.y_name)
            .label_style(style(18))
            .axis_desc_style(style(20))
            .draw()
            .map_err(e)?;
        // Tick labels at the cell centres (backend coordinates, drawn on the root).
        let (bx, by) = root.get_base_pixel();
        for (i, x) in self.xs.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let (px, py) = (px - bx, py - by);
            root.draw(&Text::new(x.clone(), (px, py + 8), style(18).pos(Pos::new(HPos::Center, VPos::Top)))).map_err(e)?;
        }
        for (j, y) in self.ys.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(0.0, j as f64 + 0.5));
            let (px, py) = (px - bx, py - by);
            root.draw(&Text::new(y.clone(), (px - 8, py), style(18).pos(Pos::new(HPos::Right, VPos::Center)))).map_err(e)?;
        }
        for (j, row) in self.values.iter().enumerate() {
            for (i, v) in row.iter().enumerate() {
                draw_cell(&mut chart, i as f64, j as f64, v.as_ref(), (lo, hi))?;
            }
        }
        colour_bar(&bar, lo, hi, &self.metric)
    }
}

/// One heatmap cell: its colour, mean, CI half-width and mark.
fn draw_cell<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>,
    x0: f64,
    y0: f64,
    v: Option<&Cell>,
    (lo, hi): (f64, f64),
) -> DrawResult {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let t = v.map(|c| ((c.mean - lo) / (hi - lo)).clamp(0.0, 1.0));
    let fill = t.map(viridis).unwrap_or(RGBColor(230, 230, 230));
    chart.draw_series(std::iter::once(Rectangle::new([(x0, y0), (x0 + 1.0, y0 + 1.0)], fill.filled()))).map_err(e)?;
    let tc = if t.unwrap_or(1.0) > 0.6 { BLACK } else { WHITE };
    let lines = match v {
        Some(c) => vec![format!("{:.3}", c.mean), format!("±{:.3}", c.half), c.mark.clone()],
        None => vec!["–".into()],
    };
    for (k, line) in lines.iter().enumerate() {
        let y = y0 + 0.5 + 0.22 * (1.0 - k as f64) * (lines.len() > 1) as u8 as f64;
        let size = if k == 0 { 17 } else { 13 };
        let text = Text::new(line.clone(), (x0 + 0.5, y), style(size).color(&tc).pos(Pos::new(HPos::Center, VPos::Center)));
        chart.draw_series(std::iter::once(text)).map_err(e)?;
    }
    Ok(())
}

/// The colour scale of a heatmap, from `lo` to `hi`, with the metric's name above it.
fn colour_bar<DB: DrawingBackend>(bar: &DrawingArea<DB, Shift>, lo: f64, hi: f64, metric: &str) -> DrawResult {
    let mut cb = ChartBuilder::on(bar)
        .margin_top(60)
        .margin_bottom(76)
        .margin_right(50)
        .y_label_area_size(0)
        .right_y_label_area_size(50)
        .build_cartesian_2d(0f64..1.0, lo..hi)
        .map_err(e)?;
    cb.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(5)
        .y_label_formatter(&|v| format!("{v:.2}"))
        .label_style(style(14))
        .draw()
        .map_err(e)?;
    let steps = 50;
    cb.draw_series((0..steps).map(|k| {
        let a = lo + (hi - lo) * k as f64 / steps as f64;
        let b = lo + (hi - lo) * (k + 1) as f64 / steps as f64;
        Rectangle::new([(0.0, a), (1.0, b)], viridis(k as f64 / (steps - 1) as f64).filled())
    }))
    .map_err(e)?;
    bar.draw(&Text::new(metric.to_string(), (0, 30), style(16))).map_err(e)?;
    Ok(())
}

/// Marginal line plots with error bars: a metric against each axis.
pub struct Marginals {
    pub title: String,
    pub metric: String,
    /// (axis name, [(x, mean, std, n)]).
    pub panels: Vec<(String, Vec<(f64, f64, f64, usize)>)>,
}

impl Figure for Marginals {
    fn size(&self) -> (u32, u32) {
        (1100, 500)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let root = root.titled(&self.title, style(24)).map_err(e)?;
        let areas = root.split_evenly((1, self.panels.len().max(1)));
        for (area, (name, pts)) in areas.iter().zip(&self.panels) {
            let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
            let (x0, x1) = (xs.iter().cloned().fold(f64::INFINITY, f64::min), xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
            let ylo = pts.iter().map(|p| p.1 - if p.2.is_finite() { p.2 } else { 0.0 }).fold(f64::INFINITY, f64::min);
            let yhi = pts.iter().map(|p| p.1 + if p.2.is_finite() { p.2 } else { 0.0 }).fold(f64::NEG_INFINITY, f64::max);
            let pad = ((yhi - ylo) * 0.15).max(0.01);
            let mut chart = ChartBuilder::on(area)
                .margin(16)
                .x_label_area_size(50)
                .y_label_area_size(70)
                .build_cartesian_2d((x0 - 0.05)..(x1 + 0.05), (ylo - pad)..(yhi + pad))
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc(name.as_str())
                .y_desc(self.metric.as_str())
                .y_label_formatter(&|v| format!("{v:.3}"))
                .label_style(style(16))
                .axis_desc_style(style(18))
                .draw()
                .map_err(e)?;
            chart.draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), color(0).stroke_width(2))).map_err(e)?;
            chart.draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 4, color(0).filled()))).map_err(e)?;
            chart
                .draw_series(
                    pts.iter()
                        .filter(|p| p.2.is_finite())
                        .map(|p| ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, color(0).stroke_width(2), 10)),
                )
                .map_err(e)?;
        }
        Ok(())
    }
}

// ---------- ROC curves ----------

/// ROC curves, one per row (seed-averaged scores).
pub struct Roc {
    pub title: String,
    /// (label, AUC, points (fpr, tpr)).
    pub curves: Vec<(String, f64, Vec<(f64, f64)>)>,
}

impl Figure for Roc {
    fn size(&self) -> (u32, u32) {
        (820, 760)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, style(24))
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(65)
            .build_cartesian_2d(0f64..1.0, 0f64..1.0)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("false positive rate")
            .y_desc("true positive rate")
            .label_style(style(16))
            .axis_desc_style(style(18))
            .draw()
            .map_err(e)?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3).stroke_width(1))).map_err(e)?;
        for (i, (label, auc, pts)) in self.curves.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(e)?
                .label(format!("{label} (AUC {auc:.3})"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(3)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font(style(15))
            .draw()
            .map_err(e)?;
        Ok(())
    }
}

// ---------- training curves ----------

/// Per-epoch curves of several rows in panels (one panel per quantity):
/// mean over seeds as a line, min..max over seeds as a band.
pub struct Curves {
    pub title: String,
    /// (panel title, [(row label, [(epoch, mean, min, max)])]).
    pub panels: Vec<(String, Vec<(String, Vec<(f64, f64, f64, f64)>)>)>,
}

impl Figure for Curves {
    fn size(&self) -> (u32, u32) {
        (1400, 980)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let root = root.titled(&self.title, style(26)).map_err(e)?;
        let (body, legend) = root.split_vertically(830);
        let cols = 2;
        let rows = self.panels.len().div_ceil(cols).max(1);
        let areas = body.split_evenly((rows, cols));
        for (area, (name, series)) in areas.iter().zip(&self.panels) {
            let all: Vec<&(f64, f64, f64, f64)> = series.iter().flat_map(|(_, p)| p.iter()).collect();
            if all.is_empty() {
                area.draw(&Text::new(format!("{name}: no data"), (20, 20), style(16))).map_err(e)?;
                continue;
            }
            let x1 = all.iter().map(|p| p.0).fold(1.0, f64::max);
            let ylo = all.iter().map(|p| p.2).fold(f64::INFINITY, f64::min);
            let yhi = all.iter().map(|p| p.3).fold(f64::NEG_INFINITY, f64::max);
            let pad = ((yhi - ylo) * 0.08).max(1e-3);
            let mut chart = ChartBuilder::on(area)
                .caption(name.as_str(), style(20))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(70)
                .build_cartesian_2d(1f64..x1.max(2.0), (ylo - pad)..(yhi + pad))
                .map_err(e)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.3}"))
                .label_style(style(14))
                .axis_desc_style(style(16))
                .draw()
                .map_err(e)?;
            for (i, (_, pts)) in series.iter().enumerate() {
                if pts.is_empty() {
                    continue;
                }
                let c = color(i);
                let mut band: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.3)).collect();
                band.extend(pts.iter().rev().map(|p| (p.0, p.2)));
                chart.draw_series(std::iter::once(Polygon::new(band, c.mix(0.15).filled()))).map_err(e)?;
                chart.draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), c.stroke_width(2))).map_err(e)?;
            }
        }
        // One legend for all panels.
        let labels: Vec<&String> = self.panels.first().map(|(_, s)| s.iter().map(|(l, _)| l).collect()).unwrap_or_default();
        for (i, l) in labels.iter().enumerate() {
            let (x, y) = (30 + (i % 4) as i32 * 340, 20 + (i / 4) as i32 * 30);
            legend.draw(&Rectangle::new([(x, y + 4), (x + 24, y + 12)], color(i).filled())).map_err(e)?;
            legend.draw(&Text::new((*l).clone(), (x + 32, y), style(16))).map_err(e)?;
        }
        Ok(())
    }
}

// ---------- Figure 3 ----------

/// The Figure 3 grid: per sample, the input and its reconstructions from
/// h, [h_ma, h_mi], h_i, h_ma and h_mi, with true and predicted attributes.
pub struct Figure3 {
    pub title: String,
    pub panels: Vec<String>,
    /// (caption lines, panel images as grey rows).
    pub samples: Vec<(Vec<String>, Vec<GreyImage>)>,
}

const CELL: i32 = 120;

impl Figure for Figure3 {
    fn size(&self) -> (u32, u32) {
        let w = 40 + self.panels.len() as i32 * (CELL + 10) + 420;
        let h = 90 + self.samples.len() as i32 * (CELL + 20) + 20;
        (w as u32, h as u32)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        root.draw(&Text::new(self.title.clone(), (20, 12), style(22))).map_err(e)?;
        for (k, p) in self.panels.iter().enumerate() {
            let x = 30 + k as i32 * (CELL + 10);
            root.draw(&Text::new(p.clone(), (x + 4, 58), style(16))).map_err(e)?;
        }
        for (row, (caption, imgs)) in self.samples.iter().enumerate() {
            let y0 = 85 + row as i32 * (CELL + 20);
            for (k, img) in imgs.iter().enumerate() {
                let x0 = 30 + k as i32 * (CELL + 10);
                // Each pixel a rectangle; images are at most 64 x 64 here, so SVGs stay small.
                let step = (img.width.max(img.height) as f64 / 64.0).ceil().max(1.0) as usize;
                let (w, h) = (img.width.div_ceil(step), img.height.div_ceil(step));
                let px = CELL as f64 / w.max(h) as f64;
                for yy in 0..h {
                    for xx in 0..w {
                        let v = img.pixels[(yy * step).min(img.height - 1) * img.width + (xx * step).min(img.width - 1)];
                        let (a, b) = ((x0 as f64 + xx as f64 * px) as i32, (y0 as f64 + yy as f64 * px) as i32);
                        let (c, d) = ((x0 as f64 + (xx + 1) as f64 * px).ceil() as i32, (y0 as f64 + (yy + 1) as f64 * px).ceil() as i32);
                        root.draw(&Rectangle::new([(a, b), (c, d)], RGBColor(v, v, v).filled())).map_err(e)?;
                    }
                }
            }
            let tx = 30 + self.panels.len() as i32 * (CELL + 10) + 10;
            for (i, line) in caption.iter().enumerate() {
                root.draw(&Text::new(line.clone(), (tx, y0 + 8 + i as i32 * 24), style(16))).map_err(e)?;
            }
        }
        Ok(())
    }
}

// ---------- disentanglement probe ----------

/// Probe AUCs per row: [h_ma, h_mi] (or h) against h_i, bars with error bars.
pub struct Probe {
    pub title: String,
    /// (row label, [(series name, mean, std)]).
    pub rows: Vec<(String, Vec<(String, f64, f64)>)>,
}

impl Figure for Probe {
    fn size(&self) -> (u32, u32) {
        (1100, 640)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let series: Vec<String> = {
            let mut s: Vec<String> = Vec::new();
            for (_, bars) in &self.rows {
                for (n, _, _) in bars {
                    if !s.contains(n) {
                        s.push(n.clone());
                    }
                }
            }
            s
        };
        let n = self.rows.len().max(1);
        let ymin =
            self.rows.iter().flat_map(|r| r.1.iter().map(|b| b.1 - if b.2.is_finite() { b.2 } else { 0.0 })).fold(0.4, f64::min).max(0.0);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, style(22))
            .margin(20)
            .x_label_area_size(80)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..n as f64, ymin..1.0)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .y_desc("probe AUC on frozen features (logistic regression; RBF SVM where named)")
            .label_style(style(15))
            .axis_desc_style(style(17))
            .draw()
            .map_err(e)?;
        // Row names under their bars, wrapped to the bar group's width.
        for (i, (label, _)) in self.rows.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, ymin));
            for (k, line) in wrap(label, 16).iter().enumerate() {
                let pos = plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Top,
                );
                root.draw(&Text::new(line.clone(), (px, py + 10 + 18 * k as i32), style(14).pos(pos))).map_err(e)?;
            }
        }
        let width = 0.8 / series.len().max(1) as f64;
        for (si, name) in series.iter().enumerate() {
            let c = color(si);
            let bars: Vec<(f64, f64, f64)> = self
                .rows
                .iter()
                .enumerate()
                .filter_map(|(i, (_, b))| b.iter().find(|x| &x.0 == name).map(|x| (i as f64 + 0.1 + si as f64 * width, x.1, x.2)))
                .collect();
            chart
                .draw_series(bars.iter().map(|&(x, m, _)| Rectangle::new([(x, ymin), (x + width * 0.9, m)], c.filled())))
                .map_err(e)?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()));
            chart
                .draw_series(
                    bars.iter()
                        .filter(|b| b.2.is_finite())
                        .map(|&(x, m, s)| ErrorBar::new_vertical(x + width * 0.45, m - s, m, m + s, BLACK.stroke_width(1), 8)),
                )
                .map_err(e)?;
        }
        chart.draw_series(LineSeries::new([(0.0, 0.5), (n as f64, 0.5)], BLACK.mix(0.4))).map_err(e)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .label_font(style(15))
            .draw()
            .map_err(e)?;
        Ok(())
    }
}

// ---------- building the figures of an experiment ----------

/// Splits a label into lines of at most `width` characters, at spaces.
fn wrap(label: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in label.split_whitespace() {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + word.chars().count() <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

fn short(label: &str) -> String {
    if label.chars().count() > 28 {
        format!("{}…", label.chars().take(27).collect::<String>())
    } else {
        label.to_string()
    }
}

fn members<'a>(c: &'a Collection, r: &RowStats) -> Vec<&'a RunRecord> {
    c.runs.iter().filter(|x| x.group() == r.group && x.is_done()).collect()
}

/// Writes every figure that applies to the experiment; returns the paths.
pub fn render_all(c: &Collection, analysis: &Analysis, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let rows = analysis.rows.as_slice();
    // A sweep: exactly two [matrix] axes and no named rows.
    let axes: Vec<String> = c.experiment.axes.iter().filter(|a| a.origin == "matrix").flat_map(|a| a.keys.clone()).collect();
    if axes.len() == 2 && c.experiment.variants.is_empty() {
        return sweep_figures(c, rows, &axes, dir);
    }
    let mut out = roc_figure(c, rows, dir)?;
    out.extend(training_figure(c, rows, dir)?);
    out.extend(probe_figure(c, rows, dir)?);
    out.extend(figure3_figure(c, rows, dir)?);
    Ok(out)
}

fn profile(c: &Collection) -> &str {
    c.profile.as_deref().unwrap_or("-")
}

/// The value of axis `key` in a row, as written.
fn axis_value(r: &RowStats, key: &str) -> Option<String> {
    r.axes.iter().find(|(a, _)| a == key).map(|(_, v)| show(v))
}

/// The distinct values of an axis over the rows, in numeric order.
fn axis_values(rows: &[RowStats], key: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for x in rows.iter().filter_map(|r| axis_value(r, key)) {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v.sort_by(|a, b| a.parse::<f64>().unwrap_or(0.0).total_cmp(&b.parse::<f64>().unwrap_or(0.0)));
    v
}

/// The heatmaps and marginals of a two-axis sweep; rows lacking an axis
/// (from [[include]]) are left out.
fn sweep_figures(c: &Collection, rows: &[RowStats], axes: &[String], dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let name = &c.experiment.name;
    let (xs, ys) = (axis_values(rows, &axes[0]), axis_values(rows, &axes[1]));
    let short_name = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let mut out = Vec::new();
    let letters = crate::tables::graph_letters(rows);
    for (metric, pretty) in [("test_auc", "test AUC"), ("attr_acc_mean", "attribute accuracy")] {
        let cell = |x: &String, y: &String| {
            let k = rows.iter().position(|r| axis_value(r, &axes[0]).as_ref() == Some(x) && axis_value(r, &axes[1]).as_ref() == Some(y))?;
            let r = &rows[k];
            let ci = if metric == "test_auc" { r.auc_ci } else { r.attr_ci };
            let (mean, (lo, hi)) = ci.or_else(|| r.stat(metric).map(|s| (s.mean, (f64::NAN, f64::NAN))))?;
            let singular = r.graph.as_ref().is_some_and(|g| g.condition >= 1e12);
            let letter = letters[k].split(' ').next().unwrap_or("–");
            let mark = format!("graph {letter}{}", if singular { ", E singular" } else { "" });
            Some(Cell { mean, half: (hi - lo) / 2.0, mark })
        };
        let values: Vec<Vec<Option<Cell>>> = ys.iter().map(|y| xs.iter().map(|x| cell(x, y)).collect()).collect();
        if values.iter().flatten().all(|v| v.is_none()) {
            continue;
        }
        let fig = Heatmap {
            title: format!(
                "{name}: {pretty} over {} x {} (profile {})\nper cell: mean, ± 95% CI half-width, graph letter (same letter = same edges)",
                short_name(&axes[0]),
                short_name(&axes[1]),
                profile(c)
            ),
            x_name: axes[0].clone(),
            y_name: axes[1].clone(),
            xs: xs.clone(),
            ys: ys.clone(),
            values,
            metric: pretty.to_string(),
        };
        out.extend(save(&fig, dir, &format!("{name}-heatmap-{metric}"))?);
        let panels = (0..2).map(|k| (axes[k].clone(), marginal(c, rows, &axes[k], metric))).collect();
        let fig = Marginals {
            title: format!("{name}: {pretty}, averaged over the other axis; error bars: std over seeds"),
            metric: pretty.to_string(),
            panels,
        };
        out.extend(save(&fig, dir, &format!("{name}-marginals-{metric}"))?);
    }
    Ok(out)
}

/// One axis's marginal: per value, per seed the mean over the other axis;
/// then (value, mean, std, n) over seeds.
fn marginal(c: &Collection, rows: &[RowStats], key: &str, metric: &str) -> Vec<(f64, f64, f64, usize)> {
    let mut pts = Vec::new();
    for v in &axis_values(rows, key) {
        let mut per_seed: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for run in c.runs.iter().filter(|r| r.is_done() && r.axes.iter().any(|(a, x)| a == key && show(x) == *v)) {
            if let Some(m) = run.metrics.get(metric) {
                per_seed.entry(run.seed).or_default().push(*m);
            }
        }
        let means: Vec<f64> = per_seed.values().map(|xs| xs.iter().sum::<f64>() / xs.len() as f64).collect();
        if means.is_empty() {
            continue;
        }
        let mean = means.iter().sum::<f64>() / means.len() as f64;
        let std = if means.len() > 1 {
            (means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (means.len() - 1) as f64).sqrt()
        } else {
            f64::NAN
        };
        pts.push((v.parse::<f64>().unwrap_or(0.0), mean, std, means.len()));
    }
    pts
}

/// ROC curves of the rows (seed-averaged scores where the seeds share a test set).
fn roc_figure(c: &Collection, rows: &[RowStats], dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let mut curves = Vec::new();
    for r in rows {
        let sets = members(c, r).iter().map(|run| run.scores()).collect::<Result<Vec<_>, _>>()?;
        let Some(first) = sets.first() else { continue };
        let aligned = sets.iter().all(|s| s.keys().eq(first.keys()));
        let (labels, scores): (Vec<u8>, Vec<f64>) = if aligned {
            first.iter().map(|(id, x)| (x.label, sets.iter().map(|s| s[id].score).sum::<f64>() / sets.len() as f64)).unzip()
        } else {
            sets.iter().flat_map(|s| s.values().map(|x| (x.label, x.score))).unzip()
        };
        if let Ok(pts) = roc_curve(&scores, &labels) {
            let auc = dae_metrics::roc_auc(&scores, &labels).unwrap_or(f64::NAN);
            curves.push((short(&r.label), auc, pts.iter().map(|p| (p.fpr, p.tpr)).collect()));
        }
    }
    if curves.is_empty() {
        return Ok(Vec::new());
    }
    let name = &c.experiment.name;
    save(&Roc { title: format!("{name}: ROC curves (seed-averaged scores, profile {})", profile(c)), curves }, dir, &format!("{name}-roc"))
}

/// Training curves: per row, the mean over seeds of each quantity per epoch
/// with its min-max band.
fn training_figure(c: &Collection, rows: &[RowStats], dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let quantities = [
        ("loss_cls", "L_cls (training)"),
        ("loss_attr", "L_attr (training)"),
        ("loss_rec", "L_rec (training)"),
        ("val_auc", "validation AUC"),
    ];
    let histories: Vec<Vec<Vec<BTreeMap<String, f64>>>> =
        rows.iter().map(|r| members(c, r).iter().map(|run| run.history()).collect()).collect();
    let mut panels = Vec::new();
    for (key, title) in quantities {
        let mut series = Vec::new();
        for (r, hs) in rows.iter().zip(&histories) {
            let epochs = hs.iter().map(|h| h.len()).max().unwrap_or(0);
            let mut pts = Vec::new();
            for ep in 0..epochs {
                let vals: Vec<f64> = hs.iter().filter_map(|h| h.get(ep).and_then(|m| m.get(key))).copied().collect();
                if vals.is_empty() {
                    continue;
                }
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let (lo, hi) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
                pts.push(((ep + 1) as f64, mean, lo, hi));
            }
            // A term a row does not train is all zeros: leave it out of that panel.
            if pts.iter().all(|p| p.1 == 0.0) && key != "val_auc" {
                pts.clear();
            }
            series.push((short(&r.label), pts));
        }
        panels.push((title.to_string(), series));
    }
    let name = &c.experiment.name;
    let title = format!("{name}: training curves, mean over seeds (band: min to max), profile {}", profile(c));
    save(&Curves { title, panels }, dir, &format!("{name}-training"))
}

/// The probe bars, by metrics key. Guided-VAE's target block z_t plays
/// [h_ma, h_mi]'s part, its rest z_rst h_i's. Probes fitted on the training
/// split, then cross-validated within the test split (the one to read for
/// model.h_i_erase, whose eraser is fitted on the training split), linear
/// and RBF-kernel (what a linear erasure leaves, the kernel probe may read).
const PROBE_BARS: [(&str, &str); 15] = [
    ("probe_auc_ma_mi", "disease block: [h_ma, h_mi] or z_t, fitted on train"),
    ("probe_auc_z_t", "disease block: [h_ma, h_mi] or z_t, fitted on train"),
    ("probe_auc_h", "h (one block), fitted on train"),
    ("probe_auc_h_i", "irrelevant block: h_i or z_rst, fitted on train (noise for h_i_erase)"),
    ("probe_auc_z_rst", "irrelevant block: h_i or z_rst, fitted on train (noise for h_i_erase)"),
    ("probe_auc_test_cv_ma_mi", "disease block, cross-validated on test"),
    ("probe_auc_test_cv_z_t", "disease block, cross-validated on test"),
    ("probe_auc_test_cv_h", "h, cross-validated on test"),
    ("probe_auc_test_cv_h_i", "irrelevant block, cross-validated on test"),
    ("probe_auc_test_cv_z_rst", "irrelevant block, cross-validated on test"),
    ("probe_auc_test_cv_rbf_ma_mi", "disease block, cross-validated on test, RBF SVM"),
    ("probe_auc_test_cv_rbf_z_t", "disease block, cross-validated on test, RBF SVM"),
    ("probe_auc_test_cv_rbf_h", "h, cross-validated on test, RBF SVM"),
    ("probe_auc_test_cv_rbf_h_i", "irrelevant block, cross-validated on test, RBF SVM"),
    ("probe_auc_test_cv_rbf_z_rst", "irrelevant block, cross-validated on test, RBF SVM"),
];

/// The disentanglement probe: label information by latent block.
fn probe_figure(c: &Collection, rows: &[RowStats], dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let mut probe_rows = Vec::new();
    for r in rows {
        let bars: Vec<(String, f64, f64)> =
            PROBE_BARS.iter().filter_map(|(key, label)| r.stat(key).map(|s| (label.to_string(), s.mean, s.std))).collect();
        if !bars.is_empty() {
            probe_rows.push((format!("{} {}", r.variant.as_deref().unwrap_or(""), r.label).trim().to_string(), bars));
        }
    }
    if probe_rows.is_empty() {
        return Ok(Vec::new());
    }
    let name = &c.experiment.name;
    let title = format!("{name}: label information by latent block (test split, profile {})", profile(c));
    save(&Probe { title, rows: probe_rows }, dir, &format!("{name}-probe"))
}

/// Figure 3 from the reference row (or the first row with reconstructions).
fn figure3_figure(c: &Collection, rows: &[RowStats], dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let order: Vec<&RowStats> = rows.iter().filter(|r| r.variant == c.experiment.reference).chain(rows.iter()).collect();
    for r in order {
        let Some(run) = members(c, r).into_iter().min_by_key(|x| x.seed).filter(|x| x.has_figure3()) else { continue };
        let Some(data) = run.figure3()? else { continue };
        let fig = Figure3 {
            title: format!("Figure 3: reconstructions from latent blocks ({}, seed {}; other blocks zeroed)", r.label, run.seed),
            panels: data.panels.iter().map(|p| if p == "input" { "input".to_string() } else { format!("from {p}") }).collect(),
            samples: data.samples,
        };
        return save(&fig, dir, &format!("{}-figure3", c.experiment.name));
    }
    Ok(Vec::new())
}
