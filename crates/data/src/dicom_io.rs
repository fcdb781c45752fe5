//! DICOM reading: one monochrome frame of a DICOM file (native, RLE Lossless
//! or JPEG pixel data, 8 or 16 bits, signed or unsigned) becomes an
//! [`Image`] of [0, 1] intensities, with the modality LUT (rescale slope and
//! intercept), the VOI window or a min-max normalisation, and MONOCHROME1
//! inversion applied, so that bright always means dense tissue.
//!
//! Decoding: RLE Lossless fragments are decoded here (PackBits straight
//! into `u16` samples, every header, offset and segment length checked,
//! about twice as fast end to end as going through `dicom-pixeldata`);
//! native and JPEG pixel data go through `dicom-pixeldata`'s
//! `decode_pixel_data_frame`. Either way the result is raw stored samples;
//! the value pipeline (bit masking, sign extension, rescale, window,
//! inversion) is then one pass: `clamp(a * stored + b, 0, 1)` for 16-bit
//! linear windows and min-max, else a lookup table over all raw values.
//! Rescale and window attributes are read from the top level, or from the
//! first frame's functional groups in enhanced multi-frame objects.
//!
//! Also holds [`TestDicom`] and [`write_test_dicom`], writers of small valid
//! DICOM files (native or RLE Lossless, which they encode themselves) for
//! tests here and in `tests/`.

use std::error::Error as StdError;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use dicom_core::value::{PixelFragmentSequence, Value};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::file::ReadPreamble;
use dicom_object::mem::InMemElement;
use dicom_object::{DefaultDicomObject, FileMetaTable, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;

use crate::error::{io_err, DataError, Result};
use crate::image::Image;

/// How to turn stored DICOM pixel values into [0, 1] intensities.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DicomOptions {
    /// Window from the file's WindowCenter/WindowWidth when present (default
    /// true); otherwise, or when false, min-max of the modality values.
    #[serde(default = "yes")]
    pub use_window: bool,
    /// Optional downsampling: largest side after reading (area averaging via
    /// [`Image::resize`]); `None` = full resolution.
    #[serde(default)]
    pub max_side: Option<usize>,
}

fn yes() -> bool {
    true
}

impl Default for DicomOptions {
    fn default() -> Self {
        Self { use_window: true, max_side: None }
    }
}

/// Transfer syntaxes this reader accepts, with their names.
pub const SUPPORTED_TRANSFER_SYNTAXES: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2", "Implicit VR Little Endian"),
    ("1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    ("1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian"),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline"),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended"),
    ("1.2.840.10008.1.2.4.57", "JPEG Lossless"),
    ("1.2.840.10008.1.2.4.70", "JPEG Lossless SV1"),
];

/// Names of some common transfer syntaxes that are *not* supported, for
/// error messages.
const KNOWN_UNSUPPORTED: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian"),
    ("1.2.840.10008.1.2.1.98", "Encapsulated Uncompressed Explicit VR Little Endian"),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless"),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
    ("1.2.840.10008.1.2.4.201", "HTJ2K Lossless"),
    ("1.2.840.10008.1.2.4.203", "HTJ2K"),
];

/// Reads the first frame of a monochrome DICOM file into [0, 1] intensities
/// (height = Rows, width = Columns, or smaller with `opts.max_side`).
pub fn read_dicom(path: &Path, opts: &DicomOptions) -> Result<Image> {
    let bytes = std::fs::read(path).map_err(io_err(path, "cannot read DICOM file"))?;
    read_dicom_bytes(&bytes, path, opts)
}

/// Like [`read_dicom`], from the bytes of a DICOM file (with the 128-byte
/// preamble and `DICM`, or starting at `DICM`); `what` names the source in
/// errors.
pub fn read_dicom_bytes(bytes: &[u8], what: &Path, opts: &DicomOptions) -> Result<Image> {
    if opts.max_side == Some(0) {
        return Err(DataError::Config { key: "max_side".into(), problem: "must be at least 1 (or absent)".into() });
    }
    let err = |problem: String| DataError::Dicom { path: what.into(), problem, source: None };

    // Magic code: at byte 128 after the preamble, or at byte 0 without one.
    let (body, preamble) = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        (bytes, ReadPreamble::Always)
    } else if bytes.starts_with(b"DICM") {
        (bytes, ReadPreamble::Never)
    } else {
        return Err(err(format!("not a DICOM file (no DICM magic code at byte 128 after the preamble; file has {} bytes)", bytes.len())));
    };

    // The file meta group first, to reject unsupported transfer syntaxes
    // with a clear message before parsing the data set.
    let meta_start = if preamble == ReadPreamble::Always { 128 } else { 0 };
    let meta =
        FileMetaTable::from_reader(&body[meta_start..]).map_err(|e| err(format!("invalid DICOM file meta group: {}", describe(&e))))?;
    let ts = meta.transfer_syntax().to_string();
    if !SUPPORTED_TRANSFER_SYNTAXES.iter().any(|(uid, _)| *uid == ts) {
        let name = KNOWN_UNSUPPORTED.iter().find(|(uid, _)| *uid == ts).map(|(_, n)| format!(" ({n})")).unwrap_or_default();
        return Err(err(format!("unsupported transfer syntax {ts}{name} (supported: {})", supported_list())));
    }

    let obj = OpenFileOptions::new()
        .read_preamble(preamble)
        .from_reader(body)
        .map_err(|e| err(format!("cannot parse the DICOM data set: {}", describe(&e))))?;

    decode_first_frame(&obj, &ts, what, opts)
}

fn supported_list() -> String {
    SUPPORTED_TRANSFER_SYNTAXES.iter().map(|(uid, name)| format!("{uid} {name}")).collect::<Vec<_>>().join(", ")
}

/// The error's chain of messages, or a plain statement that the data ended
/// early when an unexpected end of file is somewhere in it.
fn describe(e: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut truncated = false;
    let mut cur = e.source();
    while let Some(s) = cur {
        if let Some(ioe) = s.downcast_ref::<io::Error>() {
            truncated |= ioe.kind() == io::ErrorKind::UnexpectedEof;
        }
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cur = s.source();
    }
    let chain = parts.join(": ");
    if truncated || chain.contains("fill whole buffer") {
        format!("file truncated (unexpected end of data): {chain}")
    } else {
        chain
    }
}

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

fn decode_first_frame(obj: &DefaultDicomObject, ts: &str, what: &Path, opts: &DicomOptions) -> Result<Image> {
    let err = |problem: String| DataError::Dicom { path: what.into(), problem, source: None };
    let required = |tag: Tag, name: &str| -> Result<u16> {
        match get_u16(obj, tag) {
            None => Err(err(format!("missing {name} {tag}: required for image pixel data"))),
            Some(Err(e)) => Err(err(format!("invalid {name} {tag}: {e}"))),
            Some(Ok(v)) => Ok(v),
        }
    };

    let Some(pixel_elem) = obj.get(tags::PIXEL_DATA) else {
        return Err(err("no PixelData element (7FE0,0010): not an image, or the file is truncated".into()));
    };
    let pi = match obj.get(tags::PHOTOMETRIC_INTERPRETATION) {
        None => return Err(err("missing PhotometricInterpretation (0028,0004): expected MONOCHROME1 or MONOCHROME2".into())),
        Some(e) => e.to_str().map(|s| s.trim_matches(|c: char| c.is_whitespace() || c == '\0').to_string()).unwrap_or_default(),
    };
    let monochrome1 = match pi.as_str() {
        "MONOCHROME1" => true,
        "MONOCHROME2" => false,
        other => {
            let other = if other.is_empty() { "(empty)" } else { other };
            return Err(err(format!(
                "photometric interpretation {other}: expected MONOCHROME1 or MONOCHROME2 (colour images are not supported)"
            )));
        }
    };
    let spp = match get_u16(obj, tags::SAMPLES_PER_PIXEL) {
        None => 1,
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(err(format!("invalid SamplesPerPixel (0028,0002): {e}"))),
    };
    if spp != 1 {
        return Err(err(format!("SamplesPerPixel {spp}: expected 1 (monochrome images only)")));
    }
    let rows = required(tags::ROWS, "Rows")? as usize;
    let cols = required(tags::COLUMNS, "Columns")? as usize;
    if rows == 0 || cols == 0 {
        return Err(err(format!("image size {rows} x {cols} (Rows x Columns): expected both positive")));
    }
    let bits_allocated = required(tags::BITS_ALLOCATED, "BitsAllocated")?;
    if bits_allocated != 8 && bits_allocated != 16 {
        return Err(err(format!("BitsAllocated {bits_allocated}: expected 8 or 16")));
    }
    let bits_stored = required(tags::BITS_STORED, "BitsStored")?;
    if bits_stored == 0 || bits_stored > bits_allocated {
        return Err(err(format!("BitsStored {bits_stored} with BitsAllocated {bits_allocated}: expected 1..={bits_allocated}")));
    }
    let high_bit = match get_u16(obj, tags::HIGH_BIT) {
        Some(Ok(h)) if h < bits_allocated && h + 1 >= bits_stored => h,
        _ => bits_stored - 1, // missing or inconsistent: the usual layout
    };
    let signed = match get_u16(obj, tags::PIXEL_REPRESENTATION) {
        None | Some(Ok(0)) => false,
        Some(Ok(1)) => true,
        Some(Ok(v)) => return Err(err(format!("PixelRepresentation {v}: expected 0 (unsigned) or 1 (signed)"))),
        Some(Err(e)) => return Err(err(format!("invalid PixelRepresentation (0028,0103): {e}"))),
    };
    let fmt = SampleFormat { bits_stored, high_bit, signed };
    // The stored samples of the first frame.
    let pixels = rows * cols;
    let frame_bytes = pixels * (bits_allocated as usize / 8);
    let rle_samples;
    let decoded;
    let samples = match pixel_elem.value() {
        Value::Sequence(_) => return Err(err("PixelData (7FE0,0010) is a sequence of items, not pixel data".into())),
        Value::PixelSequence(seq) if ts == uids::RLE_LOSSLESS => {
            let Some(first) = seq.fragments().first() else {
                return Err(err("RLE Lossless pixel data has no fragments".into()));
            };
            rle_samples = decode_rle_frame(first, pixels, bits_allocated).map_err(|p| err(format!("RLE Lossless pixel data: {p}")))?;
            match &rle_samples {
                RleSamples::U8(v) => Samples::U8(v),
                RleSamples::U16(v) => Samples::U16(v),
            }
        }
        value => {
            if let Value::Primitive(p) = value {
                let have = p.calculate_byte_len();
                if have < frame_bytes {
                    return Err(err(format!(
                        "pixel data truncated: {have} bytes, expected {frame_bytes} for {rows} x {cols} x {bits_allocated} bits"
                    )));
                }
            }
            // Native or JPEG. Decoders of foreign formats may panic on corrupt
            // input; that becomes an error too.
            decoded = catch_unwind(AssertUnwindSafe(|| obj.decode_pixel_data_frame(0)))
                .map_err(|_| err(format!("the pixel data decoder failed on corrupt pixel data (transfer syntax {ts})")))?
                .map_err(|e| err(format!("cannot decode the pixel data (transfer syntax {ts}): {}", describe(&e))))?;
            let raw = decoded.data();
            if raw.len() < frame_bytes {
                return Err(err(format!(
                    "pixel data truncated: {} decoded bytes, expected {frame_bytes} for {rows} x {cols} x {bits_allocated} bits",
                    raw.len()
                )));
            }
            if bits_allocated == 16 {
                Samples::U16Ne(&raw[..frame_bytes])
            } else {
                Samples::U8(&raw[..frame_bytes])
            }
        }
    };

    // Modality LUT, then window or min-max, then MONOCHROME1 inversion.
    let (slope, intercept) =
        match (find_f64(obj, tags::RESCALE_SLOPE, PIXEL_VALUE_FG), find_f64(obj, tags::RESCALE_INTERCEPT, PIXEL_VALUE_FG)) {
            (s, i) if s != Some(0.0) => (s.unwrap_or(1.0), i.unwrap_or(0.0)),
            _ => (1.0, 0.0),
        };
    let window = if opts.use_window { window_of(obj) } else { None };
    let voi = match window {
        Some(v) => v,
        None => {
            let (smin, smax) = samples.stored_min_max(&fmt);
            let (a, b) = (slope * smin as f64 + intercept, slope * smax as f64 + intercept);
            Voi::MinMax { lo: a.min(b), hi: a.max(b) }
        }
    };
    let mapping = match voi.affine() {
        // 16-bit linear cases: computed directly (vectorises).
        Some((a, b)) if bits_allocated == 16 => {
            // y = a * (slope * s + intercept) + b, inverted for MONOCHROME1.
            let (mut a, mut b) = (a * slope, a * intercept + b);
            if monochrome1 {
                (a, b) = (-a, 1.0 - b);
            }
            Mapping::Affine { a: a as f32, b: b as f32 }
        }
        // Otherwise one table over all raw sample values.
        _ => Mapping::Lut(
            (0..1u32 << bits_allocated)
                .map(|r| {
                    let y = voi.apply(slope * fmt.stored(r) as f64 + intercept);
                    (if monochrome1 { 1.0 - y } else { y }) as f32
                })
                .collect(),
        ),
    };
    let img = Image::from_vec(rows, cols, samples.map(&fmt, &mapping));

    Ok(match opts.max_side {
        Some(m) if rows.max(cols) > m => {
            let s = m as f64 / rows.max(cols) as f64;
            let h = ((rows as f64 * s).round() as usize).clamp(1, m);
            let w = ((cols as f64 * s).round() as usize).clamp(1, m);
            img.resize(h, w)
        }
        _ => img,
    })
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

/// A decoded RLE Lossless frame.
#[derive(Debug, PartialEq)]
enum RleSamples {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

/// Decodes one RLE Lossless frame fragment (PS3.5 Annex G) of `pixels`
/// single-sample pixels: the 64-byte header (segment count, offsets), then
/// one PackBits segment per byte of the sample, most significant first.
/// Every inconsistency is an error, never a panic.
fn decode_rle_frame(frag: &[u8], pixels: usize, bits_allocated: u16) -> std::result::Result<RleSamples, String> {
    if frag.len() < 64 {
        return Err(format!("fragment of {} bytes is shorter than the 64-byte RLE header (truncated?)", frag.len()));
    }
    let word = |i: usize| u32::from_le_bytes([frag[4 * i], frag[4 * i + 1], frag[4 * i + 2], frag[4 * i + 3]]) as usize;
    let n = word(0);
    let expected = bits_allocated as usize / 8;
    if n != expected {
        return Err(format!("{n} RLE segments, expected {expected} for one {bits_allocated}-bit sample per pixel"));
    }
    let segment = |s: usize| -> std::result::Result<&[u8], String> {
        let start = word(1 + s);
        let end = if s + 1 < n { word(2 + s) } else { frag.len() };
        if start < 64 || start > end || end > frag.len() {
            return Err(format!("segment {s} spans bytes {start}..{end} of a {}-byte fragment (truncated or corrupt)", frag.len()));
        }
        Ok(&frag[start..end])
    };
    let short = |s: usize, got: usize| format!("pixel data truncated: segment {s} decodes to {got} bytes, expected {pixels}");
    if n == 1 {
        let mut out = vec![0u8; pixels];
        let got = unpackbits(segment(0)?, &mut out, |d, v| *d = v);
        if got < pixels {
            return Err(short(0, got));
        }
        Ok(RleSamples::U8(out))
    } else {
        let mut out = vec![0u16; pixels];
        let got = unpackbits(segment(0)?, &mut out, |d, v| *d = (v as u16) << 8);
        if got < pixels {
            return Err(short(0, got));
        }
        let got = unpackbits(segment(1)?, &mut out, |d, v| *d |= v as u16);
        if got < pixels {
            return Err(short(1, got));
        }
        Ok(RleSamples::U16(out))
    }
}

/// Decodes a PackBits segment into `out` through `put`, stopping when `out`
/// is full or the segment ends; returns how many samples were written.
/// Header `n` in 0..=127: `n + 1` literal bytes follow; -127..=-1: the next
/// byte repeated `1 - n` times; -128: no-op.
#[inline(always)]
fn unpackbits<T>(seg: &[u8], out: &mut [T], put: impl Fn(&mut T, u8)) -> usize {
    let (mut i, mut o) = (0usize, 0usize);
    while i < seg.len() && o < out.len() {
        let h = seg[i] as i8;
        i += 1;
        if h >= 0 {
            let n = h as usize + 1;
            let m = n.min(seg.len() - i).min(out.len() - o);
            for (d, &v) in out[o..o + m].iter_mut().zip(&seg[i..i + m]) {
                put(d, v);
            }
            i += n;
            o += m;
        } else if h != -128 {
            let Some(&v) = seg.get(i) else { break };
            i += 1;
            let m = ((1 - h as isize) as usize).min(out.len() - o);
            for d in &mut out[o..o + m] {
                put(d, v);
            }
            o += m;
        }
    }
    o
}

/// A small synthetic DICOM file for tests: 8- or 16-bit monochrome (or any
/// photometric interpretation string), native Explicit VR Little Endian or
/// RLE Lossless pixel data.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct TestDicom {
    pub rows: u16,
    pub cols: u16,
    /// Raw samples, row-major (two's complement bit patterns when signed;
    /// only the low byte is written when `bits_allocated` is 8).
    pub pixels: Vec<u16>,
    pub photometric: String,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub rle: bool,
    /// (center, width)
    pub window: Option<(f64, f64)>,
    /// (slope, intercept)
    pub rescale: Option<(f64, f64)>,
    /// VOILUTFunction, e.g. `"SIGMOID"`.
    pub voi_function: Option<String>,
    /// Leave out the PixelData element.
    pub no_pixel_data: bool,
}

impl TestDicom {
    /// A 16-bit unsigned image with the given samples.
    pub fn new(rows: u16, cols: u16, pixels: &[u16], photometric: &str) -> Self {
        Self {
            rows,
            cols,
            pixels: pixels.to_vec(),
            photometric: photometric.into(),
            samples_per_pixel: 1,
            bits_allocated: 16,
            bits_stored: 16,
            signed: false,
            rle: false,
            window: None,
            rescale: None,
            voi_function: None,
            no_pixel_data: false,
        }
    }

    /// The bytes of the file (preamble, `DICM`, meta group, data set).
    pub fn to_bytes(&self) -> io::Result<Vec<u8>> {
        let ts = if self.rle { uids::RLE_LOSSLESS } else { uids::EXPLICIT_VR_LITTLE_ENDIAN };
        let sop_class = uids::SECONDARY_CAPTURE_IMAGE_STORAGE;
        let sop_instance = "2.25.1234567890123456789";
        let mut obj = InMemDicomObject::new_empty();
        let us = |v: u16| PrimitiveValue::from(v);
        obj.put(DataElement::new(tags::SOP_CLASS_UID, VR::UI, sop_class));
        obj.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, sop_instance));
        obj.put(DataElement::new(tags::MODALITY, VR::CS, "OT"));
        obj.put(DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, us(self.samples_per_pixel)));
        obj.put(DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, self.photometric.as_str()));
        obj.put(DataElement::new(tags::ROWS, VR::US, us(self.rows)));
        obj.put(DataElement::new(tags::COLUMNS, VR::US, us(self.cols)));
        obj.put(DataElement::new(tags::BITS_ALLOCATED, VR::US, us(self.bits_allocated)));
        obj.put(DataElement::new(tags::BITS_STORED, VR::US, us(self.bits_stored)));
        obj.put(DataElement::new(tags::HIGH_BIT, VR::US, us(self.bits_stored.saturating_sub(1))));
        obj.put(DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, us(self.signed as u16)));
        if let Some((center, width)) = self.window {
            obj.put(DataElement::new(tags::WINDOW_CENTER, VR::DS, format!("{center}")));
            obj.put(DataElement::new(tags::WINDOW_WIDTH, VR::DS, format!("{width}")));
        }
        if let Some((slope, intercept)) = self.rescale {
            obj.put(DataElement::new(tags::RESCALE_INTERCEPT, VR::DS, format!("{intercept}")));
            obj.put(DataElement::new(tags::RESCALE_SLOPE, VR::DS, format!("{slope}")));
        }
        if let Some(f) = &self.voi_function {
            obj.put(DataElement::new(tags::VOILUT_FUNCTION, VR::CS, f.as_str()));
        }
        if !self.no_pixel_data {
            let elem = if self.rle {
                let frag = rle_encode_frame(&self.pixels, self.rows as usize, self.cols as usize, self.bits_allocated);
                DataElement::new(tags::PIXEL_DATA, VR::OB, PixelFragmentSequence::new(Vec::<u32>::new(), vec![frag]))
            } else if self.bits_allocated == 8 {
                let mut b: Vec<u8> = self.pixels.iter().map(|&v| v as u8).collect();
                if b.len() % 2 == 1 {
                    b.push(0);
                }
                DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(b.into()))
            } else {
                DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(self.pixels.clone().into()))
            };
            obj.put(elem);
        }
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(ts)
                    .media_storage_sop_class_uid(sop_class)
                    .media_storage_sop_instance_uid(sop_instance),
            )
            .map_err(io::Error::other)?;
        let mut out = Vec::new();
        file.write_all(&mut out).map_err(io::Error::other)?;
        Ok(out)
    }

    /// Writes the file.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_bytes()?)
    }
}

/// Writes a 16-bit unsigned DICOM test file: Explicit VR Little Endian, or
/// RLE Lossless when `rle`; `window` is (center, width).
#[doc(hidden)]
pub fn write_test_dicom(
    path: &Path,
    rows: u16,
    cols: u16,
    pixels: &[u16],
    photometric: &str,
    rle: bool,
    window: Option<(f64, f64)>,
) -> io::Result<()> {
    TestDicom { rle, window, ..TestDicom::new(rows, cols, pixels, photometric) }.write(path)
}

/// Encodes one frame as an RLE Lossless fragment (PS3.5 Annex G): the
/// 64-byte header, then one PackBits segment per byte plane (most
/// significant first), each row encoded separately, each segment padded to
/// an even length.
#[doc(hidden)]
pub fn rle_encode_frame(pixels: &[u16], rows: usize, cols: usize, bits_allocated: u16) -> Vec<u8> {
    let planes: Vec<u32> = if bits_allocated == 16 { vec![8, 0] } else { vec![0] };
    let mut segments = Vec::new();
    for &shift in &planes {
        let mut seg = Vec::new();
        for r in 0..rows {
            let row: Vec<u8> = (0..cols).map(|c| (pixels.get(r * cols + c).copied().unwrap_or(0) >> shift) as u8).collect();
            packbits_encode(&row, &mut seg);
        }
        if seg.len() % 2 == 1 {
            seg.push(0);
        }
        segments.push(seg);
    }
    let mut out = Vec::with_capacity(64 + segments.iter().map(Vec::len).sum::<usize>());
    let mut header = [0u32; 16];
    header[0] = segments.len() as u32;
    let mut offset = 64u32;
    for (i, s) in segments.iter().enumerate() {
        header[1 + i] = offset;
        offset += s.len() as u32;
    }
    for h in header {
        out.extend_from_slice(&h.to_le_bytes());
    }
    for s in segments {
        out.extend_from_slice(&s);
    }
    out
}

/// PackBits: replicate runs of 2..=128 equal bytes as `(257 - n, byte)`,
/// literal runs of 1..=128 bytes as `(n - 1, bytes...)`.
fn packbits_encode(src: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < src.len() {
        let mut run = 1;
        while i + run < src.len() && run < 128 && src[i + run] == src[i] {
            run += 1;
        }
        if run >= 2 {
            out.push((257 - run) as u8);
            out.push(src[i]);
            i += run;
            continue;
        }
        let start = i;
        while i < src.len() && i - start < 128 && !(i + 1 < src.len() && src[i + 1] == src[i]) {
            i += 1;
        }
        if i == start {
            i += 1; // cannot happen (run == 1 means no repeat here), but never loop forever
        }
        out.push((i - start - 1) as u8);
        out.extend_from_slice(&src[start..i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], opts: &DicomOptions) -> Result<Image> {
        read_dicom_bytes(bytes, Path::new("test.dcm"), opts)
    }

    fn ramp(n: usize, step: u16) -> Vec<u16> {
        (0..n).map(|i| i as u16 * step).collect()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn options_default_and_serde() {
        let d = DicomOptions::default();
        assert!(d.use_window);
        assert_eq!(d.max_side, None);
        let parsed: DicomOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed, d);
        let parsed: DicomOptions = serde_json::from_str(r#"{"use_window": false, "max_side": 64}"#).unwrap();
        assert_eq!(parsed, DicomOptions { use_window: false, max_side: Some(64) });
        assert!(serde_json::from_str::<DicomOptions>(r#"{"window": true}"#).is_err());
    }

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
    fn rle_round_trip_equals_native() {
        let (rows, cols) = (37u16, 53u16);
        let n = rows as usize * cols as usize;
        // Runs, literals, high and low bytes that differ, long flat rows.
        let px: Vec<u16> = (0..n)
            .map(|i| {
                let (r, c) = (i / cols as usize, i % cols as usize);
                match r % 4 {
                    0 => 1000,
                    1 => (c as u16).wrapping_mul(977),
                    2 => {
                        if c < 20 {
                            65535
                        } else {
                            (c * 131) as u16
                        }
                    }
                    _ => (i as u16).wrapping_mul(40503),
                }
            })
            .collect();
        for window in [None, Some((30000.0, 20000.0))] {
            let native = TestDicom { window, ..TestDicom::new(rows, cols, &px, "MONOCHROME2") };
            let rle = TestDicom { rle: true, ..native.clone() };
            let a = read(&native.to_bytes().unwrap(), &DicomOptions::default()).unwrap();
            let b = read(&rle.to_bytes().unwrap(), &DicomOptions::default()).unwrap();
            assert_eq!((b.height, b.width), (rows as usize, cols as usize));
            assert_eq!(a, b);
        }
        // The min-max image gives back the raw values exactly.
        let img =
            read(&TestDicom { rle: true, ..TestDicom::new(rows, cols, &px, "MONOCHROME2") }.to_bytes().unwrap(), &DicomOptions::default())
                .unwrap();
        let (lo, hi) = (*px.iter().min().unwrap() as f32, *px.iter().max().unwrap() as f32);
        for (v, &p) in img.data.iter().zip(&px) {
            assert!((v * (hi - lo) + lo - p as f32).abs() < 0.02, "{v} vs {p}");
        }
        // 8-bit RLE (one segment), odd row length.
        let px8: Vec<u16> = (0..35).map(|i| (i * 7 % 256) as u16).collect();
        let t = TestDicom { bits_allocated: 8, bits_stored: 8, ..TestDicom::new(5, 7, &px8, "MONOCHROME2") };
        let a = read(&t.to_bytes().unwrap(), &DicomOptions::default()).unwrap();
        let b = read(&TestDicom { rle: true, ..t }.to_bytes().unwrap(), &DicomOptions::default()).unwrap();
        assert_eq!(a, b);
        let max = *px8.iter().max().unwrap() as f32;
        assert!(close(&a.data, &px8.iter().map(|&v| v as f32 / max).collect::<Vec<_>>()));
    }

    #[test]
    fn packbits_encoder_matches_the_format() {
        let mut out = Vec::new();
        packbits_encode(&[7, 7, 7, 1, 2, 3, 9, 9], &mut out);
        assert_eq!(out, vec![254, 7, 2, 1, 2, 3, 255, 9]);
        let mut out = Vec::new();
        packbits_encode(&[5; 300], &mut out);
        assert_eq!(out, vec![129, 5, 129, 5, 213, 5]);
        let mut back = vec![0u8; 310];
        assert_eq!(unpackbits(&out, &mut back, |d, v| *d = v), 300);
        assert!(back[..300].iter().all(|&v| v == 5));
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

    fn expect_err(bytes: &[u8], needles: &[&str]) -> String {
        let e = read(bytes, &DicomOptions::default()).expect_err("expected an error").to_string();
        assert!(e.starts_with("test.dcm: "), "{e}");
        for n in needles {
            assert!(e.contains(n), "`{n}` not in: {e}");
        }
        e
    }

    #[test]
    fn truncated_files_fail_cleanly_naming_the_file() {
        let px: Vec<u16> = (0..24 * 16).map(|i| (i * 37 % 4096) as u16).collect();
        for rle in [false, true] {
            let t = TestDicom { rle, ..TestDicom::new(24, 16, &px, "MONOCHROME2") };
            let bytes = t.to_bytes().unwrap();
            let good = read(&bytes, &DicomOptions::default()).unwrap();
            // Every prefix: an error naming the file, or (only when the cut
            // falls in trailing delimiters) the same image; never a panic.
            for len in 0..bytes.len() {
                match read(&bytes[..len], &DicomOptions::default()) {
                    Err(e) => assert!(e.to_string().starts_with("test.dcm: "), "{e}"),
                    Ok(img) => {
                        assert!(rle && len >= bytes.len() - 8, "prefix {len} of {} decoded", bytes.len());
                        assert_eq!(img, good);
                    }
                }
            }
            let e = expect_err(&bytes[..bytes.len() - 100], &[]);
            assert!(e.contains("truncated"), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.dcm");
        let bytes = TestDicom::new(24, 16, &px, "MONOCHROME2").to_bytes().unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2 + 300]).unwrap();
        let e = read_dicom(&path, &DicomOptions::default()).unwrap_err().to_string();
        assert!(e.contains("cut.dcm") && e.contains("truncated"), "{e}");
    }

    #[test]
    fn corrupt_rle_is_an_error_not_a_panic() {
        let px = ramp(64, 1000);
        let good = TestDicom { rle: true, ..TestDicom::new(8, 8, &px, "MONOCHROME2") }.to_bytes().unwrap();
        let frag = rle_encode_frame(&px, 8, 8, 16);
        let at = good.windows(frag.len()).position(|w| w == frag.as_slice()).unwrap();
        // Wrong segment count, offsets out of range, a short segment.
        for (offset, value) in [(0usize, 3u32), (0, 1), (4, 9999), (8, 1), (8, frag.len() as u32 + 10)] {
            let mut b = good.clone();
            b[at + offset..at + offset + 4].copy_from_slice(&value.to_le_bytes());
            expect_err(&b, &["RLE"]);
        }
        let mut b = good.clone();
        let second = u32::from_le_bytes(frag[8..12].try_into().unwrap()) as usize;
        for x in &mut b[at + second..at + frag.len()] {
            *x = 0x80; // no-op headers: the low-byte segment decodes to nothing
        }
        expect_err(&b, &["truncated", "segment 1"]);
    }

    #[test]
    fn non_dicom_and_unsupported_inputs() {
        expect_err(b"hello, world", &["not a DICOM file"]);
        expect_err(&[0u8; 300], &["not a DICOM file"]);
        expect_err(b"\x89PNG\r\n\x1a\n0000", &["not a DICOM file"]);
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM garbage");
        expect_err(&b, &["meta group"]);

        let rgb = TestDicom { samples_per_pixel: 3, ..TestDicom::new(2, 2, &[0; 12], "RGB") };
        expect_err(&rgb.to_bytes().unwrap(), &["photometric interpretation RGB: expected", "MONOCHROME1 or MONOCHROME2"]);
        let spp = TestDicom { samples_per_pixel: 3, ..TestDicom::new(2, 2, &[0; 12], "MONOCHROME2") };
        expect_err(&spp.to_bytes().unwrap(), &["SamplesPerPixel 3"]);
        let none = TestDicom { no_pixel_data: true, ..TestDicom::new(2, 2, &[0; 4], "MONOCHROME2") };
        expect_err(&none.to_bytes().unwrap(), &["no PixelData"]);
        let short = TestDicom::new(4, 4, &[1; 6], "MONOCHROME2");
        expect_err(&short.to_bytes().unwrap(), &["pixel data truncated", "12 bytes, expected 32"]);

        // A JPEG 2000 file: rejected from its meta group.
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax("1.2.840.10008.1.2.4.90")
            .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
            .media_storage_sop_instance_uid("2.25.1")
            .build()
            .unwrap();
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        meta.write(&mut b).unwrap();
        let e = expect_err(&b, &["unsupported transfer syntax 1.2.840.10008.1.2.4.90 (JPEG 2000 Lossless)", "supported: ", "RLE Lossless"]);
        assert!(e.contains("1.2.840.10008.1.2.5"), "{e}");

        let e = read_dicom(Path::new("/nonexistent/x.dcm"), &DicomOptions::default()).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.dcm"), "{e}");
    }

    #[test]
    fn without_preamble_too() {
        let px = [1u16, 2, 3, 4];
        let bytes = TestDicom::new(2, 2, &px, "MONOCHROME2").to_bytes().unwrap();
        let a = read(&bytes, &DicomOptions::default()).unwrap();
        let b = read(&bytes[128..], &DicomOptions::default()).unwrap();
        assert_eq!(a, b);
    }

    /// This module's RLE decoder against `dicom-pixeldata`'s.
    fn same_as_dicom_pixeldata(bytes: &[u8]) {
        let obj = OpenFileOptions::new().from_reader(bytes).unwrap();
        let rows = obj.get(tags::ROWS).unwrap().to_int::<usize>().unwrap();
        let cols = obj.get(tags::COLUMNS).unwrap().to_int::<usize>().unwrap();
        let bits = obj.get(tags::BITS_ALLOCATED).unwrap().to_int::<u16>().unwrap();
        let Value::PixelSequence(seq) = obj.get(tags::PIXEL_DATA).unwrap().value() else { panic!("not encapsulated") };
        let ours = decode_rle_frame(&seq.fragments()[0], rows * cols, bits).unwrap();
        let theirs = obj.decode_pixel_data_frame(0).unwrap();
        let theirs = theirs.data();
        match ours {
            RleSamples::U8(v) => assert!(v == theirs[..rows * cols]),
            RleSamples::U16(v) => {
                assert_eq!(theirs.len(), 2 * v.len());
                assert!(v.iter().zip(theirs.chunks_exact(2)).all(|(&a, c)| a == u16::from_ne_bytes([c[0], c[1]])));
            }
        }
    }

    #[test]
    fn rle_decoder_agrees_with_dicom_pixeldata() {
        let px: Vec<u16> = (0..31 * 45).map(|i| if i % 97 < 40 { 12345 } else { (i * 7919 % 65536) as u16 }).collect();
        same_as_dicom_pixeldata(&TestDicom { rle: true, ..TestDicom::new(31, 45, &px, "MONOCHROME2") }.to_bytes().unwrap());
        let t = TestDicom { rle: true, bits_allocated: 8, bits_stored: 8, ..TestDicom::new(31, 45, &px, "MONOCHROME2") };
        same_as_dicom_pixeldata(&t.to_bytes().unwrap());
    }

    /// The real CBIS-DDSM films (RLE Lossless, 16-bit), when present.
    #[test]
    fn real_cbis_ddsm_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/cbis-ddsm-dicom");
        let files = [("Mass-Test_P_00173_LEFT_CC/1-130.dcm", 4432, 2864), ("Mass-Test_P_00820_LEFT_CC/1-280.dcm", 4736, 2624)];
        for (rel, rows, cols) in files {
            let path = root.join(rel);
            if !path.exists() {
                eprintln!("SKIP real_cbis_ddsm_files: {} is absent", path.display());
                return;
            }
            let t = std::time::Instant::now();
            let img = read_dicom(&path, &DicomOptions::default()).unwrap();
            eprintln!("{rel}: {} x {} in {:?}", img.height, img.width, t.elapsed());
            assert_eq!((img.height, img.width), (rows, cols));
            let (lo, hi) = img.min_max();
            assert!(lo >= 0.0 && hi <= 1.0 && hi - lo > 0.5, "range {lo}..{hi}");
            let mean = img.data.iter().map(|&v| v as f64).sum::<f64>() / img.data.len() as f64;
            let var = img.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / img.data.len() as f64;
            assert!(var.sqrt() > 0.05, "std {}", var.sqrt());
            same_as_dicom_pixeldata(&std::fs::read(&path).unwrap());
            let small = read_dicom(&path, &DicomOptions { max_side: Some(256), ..Default::default() }).unwrap();
            assert_eq!(small.height.max(small.width), 256);
        }
    }
}
