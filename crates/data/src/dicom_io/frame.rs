//! The value pipeline of the first frame: the stored-sample format (bit
//! masking, sign extension), the modality LUT (rescale), the VOI stage (the
//! file's window or a min-max over the modality values), MONOCHROME1
//! inversion, and the decode of the first frame that runs them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use dicom_core::value::Value;
use dicom_core::Tag;
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemElement;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{DecodedPixelData, PixelDecoder};

use super::rle::{decode_rle_frame, RleSamples};
use super::{describe, DicomOptions};
use crate::error::{DataError, Result};
use crate::image::Image;

/// Stored-sample layout of the pixel data.
#[derive(Clone, Copy, Debug)]
struct SampleFormat {
    bits_stored: u16,
    high_bit: u16,
    signed: bool,
}

impl SampleFormat {
    /// The stored value of a raw sample: the `bits_stored` bits ending at
    /// `high_bit`, sign-extended when signed.
    #[inline(always)]
    fn stored(&self, raw: u32) -> i32 {
        let x = raw << (31 - self.high_bit as u32);
        let right = 32 - self.bits_stored as u32;
        if self.signed {
            (x as i32) >> right
        } else {
            (x >> right) as i32
        }
    }
}

/// The VOI stage: stored value (after rescale) to [0, 1].
#[derive(Clone, Copy, Debug)]
enum Voi {
    /// `(v - lo) / (hi - lo)`; zero when `hi <= lo`.
    MinMax { lo: f64, hi: f64 },
    /// DICOM LINEAR (PS3.3 C.11.2.1.2.1), width >= 1.
    Linear { center: f64, width: f64 },
    /// DICOM LINEAR_EXACT, width > 0.
    LinearExact { center: f64, width: f64 },
    /// DICOM SIGMOID, width > 0.
    Sigmoid { center: f64, width: f64 },
}

impl Voi {
    /// `(a, b)` such that the stage is `clamp(a * v + b, 0, 1)`, for the
    /// piecewise-linear stages.
    fn affine(&self) -> Option<(f64, f64)> {
        match *self {
            Voi::MinMax { lo, hi } if hi > lo => Some((1.0 / (hi - lo), -lo / (hi - lo))),
            Voi::MinMax { .. } => Some((0.0, 0.0)),
            Voi::Linear { center, width } if width > 1.0 => Some((1.0 / (width - 1.0), 0.5 - (center - 0.5) / (width - 1.0))),
            Voi::LinearExact { center, width } => Some((1.0 / width, 0.5 - center / width)),
            Voi::Linear { .. } | Voi::Sigmoid { .. } => None,
        }
    }

    fn apply(&self, v: f64) -> f64 {
        match *self {
            Voi::MinMax { lo, hi } => {
                if hi > lo {
                    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            }
            Voi::Linear { center, width } => {
                let lo = center - 0.5 - (width - 1.0) / 2.0;
                let hi = center - 0.5 + (width - 1.0) / 2.0;
                if v <= lo {
                    0.0
                } else if v > hi {
                    1.0
                } else {
                    ((v - (center - 0.5)) / (width - 1.0) + 0.5).clamp(0.0, 1.0)
                }
            }
            Voi::LinearExact { center, width } => {
                if v <= center - width / 2.0 {
                    0.0
                } else if v > center + width / 2.0 {
                    1.0
                } else {
                    ((v - center) / width + 0.5).clamp(0.0, 1.0)
                }
            }
            Voi::Sigmoid { center, width } => 1.0 / (1.0 + (-4.0 * (v - center) / width).exp()),
        }
    }
}

fn get_u16(obj: &DefaultDicomObject, tag: Tag) -> Option<std::result::Result<u16, String>> {
    obj.get(tag).map(|e| e.to_int::<u16>().map_err(|e| e.to_string()))
}

/// A US attribute without which the pixel data cannot be laid out.
fn required_u16(obj: &DefaultDicomObject, tag: Tag, name: &str) -> std::result::Result<u16, String> {
    match get_u16(obj, tag) {
        None => Err(format!("missing {name} {tag}: required for image pixel data")),
        Some(Err(e)) => Err(format!("invalid {name} {tag}: {e}")),
        Some(Ok(v)) => Ok(v),
    }
}

/// The image pixel attributes, checked once before any decoding so that the
/// decoders and the mapping can trust them.
struct Layout {
    rows: usize,
    cols: usize,
    bits_allocated: u16,
    fmt: SampleFormat,
    monochrome1: bool,
}

impl Layout {
    fn frame_bytes(&self) -> usize {
        self.rows * self.cols * (self.bits_allocated as usize / 8)
    }

    /// The truncation error, in the same words for stored and decoded data.
    fn truncated(&self, have: usize, what: &str) -> String {
        let (rows, cols, bits) = (self.rows, self.cols, self.bits_allocated);
        format!("pixel data truncated: {have} {what}, expected {} for {rows} x {cols} x {bits} bits", self.frame_bytes())
    }
}

/// The first frame of a parsed object as [0, 1] intensities; `ts` is its
/// transfer syntax UID, `what` names the file in errors.
pub(super) fn decode_first_frame(obj: &DefaultDicomObject, ts: &str, what: &Path, opts: &DicomOptions) -> Result<Image> {
    let (layout, frame) = first_frame(obj, ts, what)?;
    let samples = frame.samples(&layout);
    let mapping = mapping_of(obj, &samples, &layout, opts);
    let img = Image::from_vec(layout.rows, layout.cols, samples.map(&layout.fmt, &mapping));
    Ok(fit_max_side(img, opts.max_side))
}

/// The pixel attributes and the decoded samples of the first frame.
fn first_frame<'a>(obj: &'a DefaultDicomObject, ts: &str, what: &Path) -> Result<(Layout, Frame<'a>)> {
    let err = |problem: String| DataError::Dicom { path: what.into(), problem, source: None };
    let Some(pixel_elem) = obj.get(tags::PIXEL_DATA) else {
        return Err(err("no PixelData element (7FE0,0010): not an image, or the file is truncated".into()));
    };
    let layout = read_layout(obj).map_err(err)?;
    let frame = read_frame(obj, pixel_elem, ts, &layout).map_err(err)?;
    Ok((layout, frame))
}

/// The first frame's modality values (stored values after the rescale), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct ModalityFrame {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
}

/// The first frame of a parsed object as modality values.
pub(super) fn modality_first_frame(obj: &DefaultDicomObject, ts: &str, what: &Path) -> Result<ModalityFrame> {
    let (layout, frame) = first_frame(obj, ts, what)?;
    let (slope, intercept) = rescale_of(obj);
    let fmt = layout.fmt;
    let values = frame.samples(&layout).each(|r| (slope * fmt.stored(r) as f64 + intercept) as f32);
    Ok(ModalityFrame { rows: layout.rows, cols: layout.cols, values })
}

/// Reads the image pixel attributes, so that a colour or malformed image
/// fails naming the attribute at fault rather than somewhere in a decoder.
fn read_layout(obj: &DefaultDicomObject) -> std::result::Result<Layout, String> {
    let monochrome1 = is_monochrome1(obj)?;
    let spp = match get_u16(obj, tags::SAMPLES_PER_PIXEL) {
        None => 1,
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(format!("invalid SamplesPerPixel (0028,0002): {e}")),
    };
    if spp != 1 {
        return Err(format!("SamplesPerPixel {spp}: expected 1 (monochrome images only)"));
    }
    let rows = required_u16(obj, tags::ROWS, "Rows")? as usize;
    let cols = required_u16(obj, tags::COLUMNS, "Columns")? as usize;
    if rows == 0 || cols == 0 {
        return Err(format!("image size {rows} x {cols} (Rows x Columns): expected both positive"));
    }
    let bits_allocated = required_u16(obj, tags::BITS_ALLOCATED, "BitsAllocated")?;
    if bits_allocated != 8 && bits_allocated != 16 {
        return Err(format!("BitsAllocated {bits_allocated}: expected 8 or 16"));
    }
    let fmt = sample_format(obj, bits_allocated)?;
    Ok(Layout { rows, cols, bits_allocated, fmt, monochrome1 })
}

/// Whether the values must be inverted so that bright means dense: only
/// the two monochrome interpretations say which way is bright.
fn is_monochrome1(obj: &DefaultDicomObject) -> std::result::Result<bool, String> {
    let pi = match obj.get(tags::PHOTOMETRIC_INTERPRETATION) {
        None => return Err("missing PhotometricInterpretation (0028,0004): expected MONOCHROME1 or MONOCHROME2".into()),
        Some(e) => e.to_str().map(|s| s.trim_matches(|c: char| c.is_whitespace() || c == '\0').to_string()).unwrap_or_default(),
    };
    match pi.as_str() {
        "MONOCHROME1" => Ok(true),
        "MONOCHROME2" => Ok(false),
        other => {
            let other = if other.is_empty() { "(empty)" } else { other };
            Err(format!("photometric interpretation {other}: expected MONOCHROME1 or MONOCHROME2 (colour images are not supported)"))
        }
    }
}

/// Which bits of a raw sample hold the value, and its sign; a missing or
/// inconsistent HighBit is read as the usual layout rather than an error.
fn sample_format(obj: &DefaultDicomObject, bits_allocated: u16) -> std::result::Result<SampleFormat, String> {
    let bits_stored = required_u16(obj, tags::BITS_STORED, "BitsStored")?;
    if bits_stored == 0 || bits_stored > bits_allocated {
        return Err(format!("BitsStored {bits_stored} with BitsAllocated {bits_allocated}: expected 1..={bits_allocated}"));
    }
    let high_bit = match get_u16(obj, tags::HIGH_BIT) {
        Some(Ok(h)) if h < bits_allocated && h + 1 >= bits_stored => h,
        _ => bits_stored - 1,
    };
    let signed = match get_u16(obj, tags::PIXEL_REPRESENTATION) {
        None | Some(Ok(0)) => false,
        Some(Ok(1)) => true,
        Some(Ok(v)) => return Err(format!("PixelRepresentation {v}: expected 0 (unsigned) or 1 (signed)")),
        Some(Err(e)) => return Err(format!("invalid PixelRepresentation (0028,0103): {e}")),
    };
    Ok(SampleFormat { bits_stored, high_bit, signed })
}

/// The first frame's stored samples, owned here so that [`Samples`] can
/// borrow them whichever decoder produced them.
enum Frame<'a> {
    Rle(RleSamples),
    /// Samples decoded here (JPEG-LS, 12-bit JPEG; 8-bit ones too).
    Owned(Vec<u16>),
    /// `dicom-pixeldata`'s output, at least one frame long (checked in
    /// [`decode_with_pixeldata`]).
    Decoded(DecodedPixelData<'a>),
}

impl Frame<'_> {
    fn samples(&self, layout: &Layout) -> Samples<'_> {
        match self {
            Frame::Rle(RleSamples::U8(v)) => Samples::U8(v),
            Frame::Rle(RleSamples::U16(v)) | Frame::Owned(v) => Samples::U16(v),
            Frame::Decoded(d) if layout.bits_allocated == 16 => Samples::U16Ne(&d.data()[..layout.frame_bytes()]),
            Frame::Decoded(d) => Samples::U8(&d.data()[..layout.frame_bytes()]),
        }
    }
}

/// Decodes the first frame: RLE Lossless here (faster, every offset
/// checked), JPEG-LS through `jls.rs`, 12-bit JPEG through `jpeg12.rs`,
/// anything else through `dicom-pixeldata`.
fn read_frame<'a>(
    obj: &'a DefaultDicomObject,
    pixel_elem: &InMemElement,
    ts: &str,
    layout: &Layout,
) -> std::result::Result<Frame<'a>, String> {
    match pixel_elem.value() {
        Value::Sequence(_) => Err("PixelData (7FE0,0010) is a sequence of items, not pixel data".into()),
        Value::PixelSequence(seq) if ts == uids::RLE_LOSSLESS => {
            let Some(first) = seq.fragments().first() else {
                return Err("RLE Lossless pixel data has no fragments".into());
            };
            decode_rle_frame(first, layout.rows * layout.cols, layout.bits_allocated)
                .map(Frame::Rle)
                .map_err(|p| format!("RLE Lossless pixel data: {p}"))
        }
        Value::PixelSequence(seq) if super::jls::SYNTAXES.contains(&ts) => {
            let data = first_frame_stream(obj, seq.fragments())?;
            super::jls::decode(&data, layout.rows, layout.cols).map(Frame::Owned)
        }
        Value::PixelSequence(seq)
            if ts == JPEG_EXTENDED && seq.fragments().first().and_then(|f| super::jpeg12::precision(f)) == Some(12) =>
        {
            let data = first_frame_stream(obj, seq.fragments())?;
            catch_unwind(AssertUnwindSafe(|| super::jpeg12::decode(&data, layout.rows, layout.cols)))
                .map_err(|_| "the 12-bit JPEG decoder failed on corrupt pixel data".to_string())?
                .map(Frame::Owned)
                .map_err(|e| format!("12-bit JPEG pixel data: {e}"))
        }
        value => {
            if let Value::Primitive(p) = value {
                let have = p.calculate_byte_len();
                if have < layout.frame_bytes() {
                    return Err(layout.truncated(have, "bytes"));
                }
            }
            if let Value::PixelSequence(seq) = value {
                check_j2k_size(seq.fragments().first().map(Vec::as_slice).unwrap_or(&[]), layout)?;
            }
            decode_with_pixeldata(obj, ts, layout).map(Frame::Decoded)
        }
    }
}

const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";

/// A JPEG 2000 codestream (SOC, then SIZ) must be Rows x Columns before it
/// is decoded: a larger one would be decoded in full first.
fn check_j2k_size(data: &[u8], layout: &Layout) -> std::result::Result<(), String> {
    if data.len() < 24 || data[..4] != [0xFF, 0x4F, 0xFF, 0x51] {
        return Ok(());
    }
    let u32_at = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as u64;
    let (w, h) = (u32_at(8).saturating_sub(u32_at(16)), u32_at(12).saturating_sub(u32_at(20)));
    if (w, h) != (layout.cols as u64, layout.rows as u64) {
        return Err(format!("the JPEG 2000 image is {w} x {h}, the data set says {} x {}", layout.cols, layout.rows));
    }
    Ok(())
}

/// The encapsulated stream of the first frame: every fragment when the
/// object holds one frame, else the first (one fragment per frame).
fn first_frame_stream(obj: &DefaultDicomObject, fragments: &[Vec<u8>]) -> std::result::Result<Vec<u8>, String> {
    let frames = get_u16(obj, tags::NUMBER_OF_FRAMES).and_then(|r| r.ok()).unwrap_or(1) as usize;
    match (frames, fragments) {
        (_, []) => Err("the encapsulated pixel data has no fragments".into()),
        (0 | 1, all) => Ok(all.concat()),
        (n, some) if some.len() == n => Ok(some[0].clone()),
        (n, some) => Err(format!("{n} frames in {} fragments: frames split over fragments are not supported here", some.len())),
    }
}

/// Native or JPEG pixel data. Decoders of foreign formats may panic on
/// corrupt input; that becomes an error too.
fn decode_with_pixeldata<'a>(obj: &'a DefaultDicomObject, ts: &str, layout: &Layout) -> std::result::Result<DecodedPixelData<'a>, String> {
    let decoded = catch_unwind(AssertUnwindSafe(|| obj.decode_pixel_data_frame(0)))
        .map_err(|_| format!("the pixel data decoder failed on corrupt pixel data (transfer syntax {ts})"))?
        .map_err(|e| format!("cannot decode the pixel data (transfer syntax {ts}): {}", describe(&e)))?;
    let have = decoded.data().len();
    if have < layout.frame_bytes() {
        return Err(layout.truncated(have, "decoded bytes"));
    }
    Ok(decoded)
}

/// The modality LUT, then the window or min-max, then MONOCHROME1
/// inversion, folded into one map so that each sample is touched once.
fn mapping_of(obj: &DefaultDicomObject, samples: &Samples, layout: &Layout, opts: &DicomOptions) -> Mapping {
    let (fmt, monochrome1) = (&layout.fmt, layout.monochrome1);
    let (slope, intercept) = rescale_of(obj);
    let window = if opts.use_window { window_of(obj) } else { None };
    let voi = match window {
        Some(v) => v,
        None => {
            let (smin, smax) = samples.stored_min_max(fmt);
            let (a, b) = (slope * smin as f64 + intercept, slope * smax as f64 + intercept);
            Voi::MinMax { lo: a.min(b), hi: a.max(b) }
        }
    };
    match voi.affine() {
        // 16-bit linear cases: computed directly (vectorises).
        Some((a, b)) if layout.bits_allocated == 16 => {
            // y = a * (slope * s + intercept) + b, inverted for MONOCHROME1.
            let (mut a, mut b) = (a * slope, a * intercept + b);
            if monochrome1 {
                (a, b) = (-a, 1.0 - b);
            }
            Mapping::Affine { a: a as f32, b: b as f32 }
        }
        // Otherwise one table over all raw sample values.
        _ => Mapping::Lut(
            (0..1u32 << layout.bits_allocated)
                .map(|r| {
                    let y = voi.apply(slope * fmt.stored(r) as f64 + intercept);
                    (if monochrome1 { 1.0 - y } else { y }) as f32
                })
                .collect(),
        ),
    }
}

/// The modality LUT as (slope, intercept); a zero slope would flatten the
/// image, so it counts as no rescale at all.
fn rescale_of(obj: &DefaultDicomObject) -> (f64, f64) {
    match (find_f64(obj, tags::RESCALE_SLOPE, PIXEL_VALUE_FG), find_f64(obj, tags::RESCALE_INTERCEPT, PIXEL_VALUE_FG)) {
        (s, i) if s != Some(0.0) => (s.unwrap_or(1.0), i.unwrap_or(0.0)),
        _ => (1.0, 0.0),
    }
}

/// Downsamples so that the longer side is `max_side`, keeping the aspect
/// ratio; smaller images are never upsampled.
fn fit_max_side(img: Image, max_side: Option<usize>) -> Image {
    let (rows, cols) = (img.height, img.width);
    match max_side {
        Some(m) if rows.max(cols) > m => {
            let s = m as f64 / rows.max(cols) as f64;
            let h = ((rows as f64 * s).round() as usize).clamp(1, m);
            let w = ((cols as f64 * s).round() as usize).clamp(1, m);
            img.resize(h, w)
        }
        _ => img,
    }
}

/// Functional group sequences (enhanced multi-frame objects) that may hold
/// the rescale and window attributes instead of the top level.
const PIXEL_VALUE_FG: Tag = tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE;
const FRAME_VOI_FG: Tag = tags::FRAME_VOILUT_SEQUENCE;

/// An attribute of the first frame: top level, else the first per-frame
/// functional group, else the shared functional groups (nested in `group`
/// or flat in the functional group item).
fn find_attr(obj: &DefaultDicomObject, tag: Tag, group: Tag) -> Option<&InMemElement> {
    if let Some(e) = obj.get(tag) {
        return Some(e);
    }
    [tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE].into_iter().find_map(|fg| {
        let item = obj.get(fg)?.items()?.first()?;
        item.get(group).and_then(|g| g.items()?.first()?.get(tag)).or_else(|| item.get(tag))
    })
}

/// The first value of a numeric attribute of the first frame, when present
/// and finite.
fn find_f64(obj: &DefaultDicomObject, tag: Tag, group: Tag) -> Option<f64> {
    find_attr(obj, tag, group)?.to_finite_float64().ok()
}

/// The first window of the file as a VOI stage, when present and valid.
fn window_of(obj: &DefaultDicomObject) -> Option<Voi> {
    let center = find_f64(obj, tags::WINDOW_CENTER, FRAME_VOI_FG)?;
    let width = find_f64(obj, tags::WINDOW_WIDTH, FRAME_VOI_FG)?;
    let function = find_attr(obj, tags::VOILUT_FUNCTION, FRAME_VOI_FG)
        .and_then(|e| e.to_str().ok().map(|s| s.trim_matches(|c: char| c.is_whitespace() || c == '\0').to_ascii_uppercase()));
    match function.as_deref() {
        None | Some("") | Some("LINEAR") if width >= 1.0 => Some(Voi::Linear { center, width }),
        Some("LINEAR_EXACT") if width > 0.0 => Some(Voi::LinearExact { center, width }),
        Some("SIGMOID") if width > 0.0 => Some(Voi::Sigmoid { center, width }),
        _ => {
            tracing::debug!(center, width, ?function, "ignoring an unusable DICOM window; using min-max");
            None
        }
    }
}

/// Stored samples of one frame.
enum Samples<'a> {
    U8(&'a [u8]),
    /// 16-bit samples as native-endian bytes (as `dicom-pixeldata` gives them).
    U16Ne(&'a [u8]),
    U16(&'a [u16]),
}

/// Raw sample to [0, 1].
enum Mapping {
    /// `clamp(a * stored + b, 0, 1)`.
    Affine { a: f32, b: f32 },
    /// Indexed by the raw sample (all 2^BitsAllocated values).
    Lut(Vec<f32>),
}

impl Samples<'_> {
    /// Smallest and largest stored value.
    fn stored_min_max(&self, fmt: &SampleFormat) -> (i32, i32) {
        fn go(it: impl Iterator<Item = u32>, fmt: &SampleFormat) -> (i32, i32) {
            it.map(|r| fmt.stored(r)).fold((i32::MAX, i32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
        }
        match self {
            Samples::U8(v) => go(v.iter().map(|&r| r as u32), fmt),
            Samples::U16Ne(v) => go(v.chunks_exact(2).map(|c| u16::from_ne_bytes([c[0], c[1]]) as u32), fmt),
            Samples::U16(v) => go(v.iter().map(|&r| r as u32), fmt),
        }
    }

    /// `f` of every raw sample.
    fn each(&self, f: impl Fn(u32) -> f32) -> Vec<f32> {
        match self {
            Samples::U8(v) => v.iter().map(|&r| f(r as u32)).collect(),
            Samples::U16Ne(v) => v.chunks_exact(2).map(|c| f(u16::from_ne_bytes([c[0], c[1]]) as u32)).collect(),
            Samples::U16(v) => v.iter().map(|&r| f(r as u32)).collect(),
        }
    }

    /// Every sample through `mapping`.
    fn map(&self, fmt: &SampleFormat, mapping: &Mapping) -> Vec<f32> {
        fn go(it: impl Iterator<Item = u32>, fmt: &SampleFormat, mapping: &Mapping) -> Vec<f32> {
            match mapping {
                Mapping::Lut(lut) => it.map(|r| lut.get(r as usize).copied().unwrap_or(0.0)).collect(),
                &Mapping::Affine { a, b } => {
                    let (left, right) = (31 - fmt.high_bit as u32, 32 - fmt.bits_stored as u32);
                    if fmt.signed {
                        it.map(|r| ((((r << left) as i32) >> right) as f32 * a + b).clamp(0.0, 1.0)).collect()
                    } else {
                        it.map(|r| (((r << left) >> right) as f32 * a + b).clamp(0.0, 1.0)).collect()
                    }
                }
            }
        }
        match self {
            Samples::U8(v) => go(v.iter().map(|&r| r as u32), fmt, mapping),
            Samples::U16Ne(v) => go(v.chunks_exact(2).map(|c| u16::from_ne_bytes([c[0], c[1]]) as u32), fmt, mapping),
            Samples::U16(v) => go(v.iter().map(|&r| r as u32), fmt, mapping),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{close, ramp, read};
    use super::super::{read_dicom, write_test_dicom, TestDicom};
    use super::*;

    #[test]
    fn native_round_trip_min_max() {
        let px = [100u16, 200, 300, 400, 500, 600];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.dcm");
        write_test_dicom(&path, 2, 3, &px, "MONOCHROME2", false, None).unwrap();
        let img = read_dicom(&path, &DicomOptions::default()).unwrap();
        assert_eq!((img.height, img.width), (2, 3));
        assert!(close(&img.data, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]), "{:?}", img.data);
    }

    #[test]
    fn native_window_linear_and_opt_out() {
        // Window center 150, width 101: values <= 99.5 -> 0, > 199.5 -> 1,
        // else (v - 149.5) / 100 + 0.5.
        let px = [0u16, 99, 100, 150, 199, 200, 300, 50];
        let t = TestDicom { window: Some((150.0, 101.0)), ..TestDicom::new(2, 4, &px, "MONOCHROME2") };
        let bytes = t.to_bytes().unwrap();
        let img = read(&bytes, &DicomOptions::default()).unwrap();
        let expect: Vec<f32> = px
            .iter()
            .map(|&v| {
                let v = v as f64;
                if v <= 99.5 {
                    0.0
                } else if v > 199.5 {
                    1.0
                } else {
                    ((v - 149.5) / 100.0 + 0.5) as f32
                }
            })
            .collect();
        assert!(close(&img.data, &expect), "{:?} vs {expect:?}", img.data);
        assert!((img.data[3] - 0.505).abs() < 1e-6);
        // use_window = false: min-max over 0..300.
        let img = read(&bytes, &DicomOptions { use_window: false, max_side: None }).unwrap();
        let mm: Vec<f32> = px.iter().map(|&v| v as f32 / 300.0).collect();
        assert!(close(&img.data, &mm), "{:?}", img.data);
    }

    #[test]
    fn rescale_then_window_and_sigmoid() {
        // slope 2, intercept -100: modality = 2v - 100; window in modality units.
        let px = [50u16, 100, 150];
        let t = TestDicom { rescale: Some((2.0, -100.0)), window: Some((100.0, 201.0)), ..TestDicom::new(1, 3, &px, "MONOCHROME2") };
        let img = read(&t.to_bytes().unwrap(), &DicomOptions::default()).unwrap();
        // modality 0, 100, 200 -> (m - 99.5) / 200 + 0.5
        let expect: Vec<f32> = [0.0f64, 100.0, 200.0].iter().map(|m| ((m - 99.5) / 200.0 + 0.5).clamp(0.0, 1.0) as f32).collect();
        assert!(close(&img.data, &expect), "{:?}", img.data);
        let t = TestDicom { voi_function: Some("SIGMOID".into()), ..t };
        let img = read(&t.to_bytes().unwrap(), &DicomOptions::default()).unwrap();
        assert!((img.data[1] - 0.5).abs() < 1e-6 && img.data[0] < 0.5 && img.data[2] > 0.5, "{:?}", img.data);
    }

    #[test]
    fn monochrome1_is_inverted() {
        let px = [0u16, 50, 100];
        let m2 = read(&TestDicom::new(1, 3, &px, "MONOCHROME2").to_bytes().unwrap(), &DicomOptions::default()).unwrap();
        let m1 = read(&TestDicom::new(1, 3, &px, "MONOCHROME1").to_bytes().unwrap(), &DicomOptions::default()).unwrap();
        assert!(close(&m2.data, &[0.0, 0.5, 1.0]));
        assert!(close(&m1.data, &[1.0, 0.5, 0.0]), "{:?}", m1.data);
        let w = TestDicom { window: Some((50.0, 51.0)), rle: true, ..TestDicom::new(1, 3, &px, "MONOCHROME1") };
        let img = read(&w.to_bytes().unwrap(), &DicomOptions::default()).unwrap();
        assert!(close(&img.data, &[1.0, 0.49, 0.0]), "{:?}", img.data);
    }

    #[test]
    fn signed_and_masked_samples() {
        // 12 stored bits, signed, with junk in the 4 unused high bits.
        let vals = [-2048i16, -5, 0, 2047];
        let px: Vec<u16> = vals.iter().map(|&v| 0xA000 | (v as u16 & 0x0FFF)).collect();
        let t = TestDicom { bits_stored: 12, signed: true, ..TestDicom::new(2, 2, &px, "MONOCHROME2") };
        let img = read(&t.to_bytes().unwrap(), &DicomOptions::default()).unwrap();
        let expect: Vec<f32> = vals.iter().map(|&v| (v as f32 + 2048.0) / 4095.0).collect();
        assert!(close(&img.data, &expect), "{:?}", img.data);
        // Unsigned 12 bits with the same junk: junk ignored.
        let t = TestDicom { bits_stored: 12, ..TestDicom::new(1, 3, &[0xF000, 0xF800, 0xFFFF], "MONOCHROME2") };
        let img = read(&t.to_bytes().unwrap(), &DicomOptions::default()).unwrap();
        assert!(close(&img.data, &[0.0, 2048.0 / 4095.0, 1.0]), "{:?}", img.data);
        // Signed 8-bit.
        let t = TestDicom { bits_allocated: 8, bits_stored: 8, signed: true, ..TestDicom::new(1, 3, &[0x80, 0xFF, 0x7F], "MONOCHROME2") };
        let img = read(&t.to_bytes().unwrap(), &DicomOptions::default()).unwrap();
        assert!(close(&img.data, &[0.0, 127.0 / 255.0, 1.0]), "{:?}", img.data);
    }

    #[test]
    fn max_side_downsamples_by_area() {
        let px = ramp(40 * 20, 1);
        let t = TestDicom::new(40, 20, &px, "MONOCHROME2");
        let full = read(&t.to_bytes().unwrap(), &DicomOptions::default()).unwrap();
        let small = read(&t.to_bytes().unwrap(), &DicomOptions { max_side: Some(10), ..Default::default() }).unwrap();
        assert_eq!((small.height, small.width), (10, 5));
        assert_eq!(small, full.resize(10, 5));
        let same = read(&t.to_bytes().unwrap(), &DicomOptions { max_side: Some(100), ..Default::default() }).unwrap();
        assert_eq!(same, full);
        assert!(read(&t.to_bytes().unwrap(), &DicomOptions { max_side: Some(0), ..Default::default() }).is_err());
    }
}
