//! DICOM reading: one monochrome frame of a DICOM file (native little or big
//! endian, deflated, RLE Lossless, JPEG, JPEG-LS or JPEG 2000 pixel data, 8
//! or 16 bits, signed or unsigned) becomes an
//! [`Image`] of [0, 1] intensities, with the modality LUT (rescale slope and
//! intercept), the VOI window or a min-max normalisation, and MONOCHROME1
//! inversion applied, so that bright always means dense tissue.
//!
//! Decoding: RLE Lossless fragments are decoded here (`rle.rs`: PackBits
//! straight into `u16` samples, every header, offset and segment length
//! checked, about twice as fast end to end as going through
//! `dicom-pixeldata`); JPEG-LS through the pure-Rust `pure_jpegls`
//! (`jls.rs`); 12-bit JPEG Extended, which `jpeg-decoder` refuses, here
//! (`jpeg12.rs`); native, 8-bit JPEG and JPEG 2000 (OpenJPEG's C source, built by cargo)
//! pixel data through `dicom-pixeldata`'s `decode_pixel_data_frame`.
//! Either way the result is
//! raw stored samples; the value pipeline (`frame.rs`: bit masking, sign
//! extension, rescale, window, inversion) is then one pass:
//! `clamp(a * stored + b, 0, 1)` for 16-bit linear windows and min-max, else
//! a lookup table over all raw values. Rescale and window attributes are
//! read from the top level, or from the first frame's functional groups in
//! enhanced multi-frame objects.
//!
//! Before the data set is parsed, `lengths.rs` walks the element headers:
//! a declared length beyond the end of the file is an error, not an
//! allocation of that size.
//!
//! [`conformance`] checks our decoding against reference arrays (the
//! corpus in `datasets/dicom-conformance`).
//!
//! This file holds the entry points ([`read_dicom`], [`read_dicom_bytes`],
//! [`read_dicom_modality`]),
//! [`DicomOptions`], the transfer-syntax lists and the error description.
//!
//! The test DICOM writer (`testfile.rs`: `TestDicom`, `write_test_dicom`,
//! `rle_encode_frame`) writes small valid DICOM files (native or RLE
//! Lossless, which it encodes itself). It is compiled only for this crate's
//! unit tests and under the `test-support` feature, which this crate's
//! integration tests and benches enable through a dev-dependency on
//! itself; production code cannot reach it.

use std::error::Error as StdError;
use std::io;
use std::path::Path;

use dicom_object::file::ReadPreamble;
use dicom_object::{FileMetaTable, OpenFileOptions};

use crate::error::{io_err, DataError, Result};
use crate::image::Image;

pub mod conformance;
mod frame;
mod jls;
mod jpeg12;
mod lengths;
mod rle;
#[cfg(any(test, feature = "test-support"))]
mod testfile;

pub use frame::ModalityFrame;
use frame::{decode_first_frame, modality_first_frame};
use lengths::Encoding;
#[cfg(any(test, feature = "test-support"))]
pub use testfile::{rle_encode_frame, write_test_dicom, TestDicom};

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
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian"),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline"),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended"),
    ("1.2.840.10008.1.2.4.57", "JPEG Lossless"),
    ("1.2.840.10008.1.2.4.70", "JPEG Lossless SV1"),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless"),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
];

const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// Names of some common transfer syntaxes that are *not* supported, for
/// error messages.
const KNOWN_UNSUPPORTED: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2.1.98", "Encapsulated Uncompressed Explicit VR Little Endian"),
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
    let (obj, ts) = parse(bytes, what)?;
    decode_first_frame(&obj, &ts, what, opts)
}

/// The first frame's modality values of a monochrome DICOM file: the stored
/// values after Rescale Slope and Intercept, before any window (what
/// `cargo xtask data decode` writes, to compare with other tools).
pub fn read_dicom_modality(path: &Path) -> Result<ModalityFrame> {
    let bytes = std::fs::read(path).map_err(io_err(path, "cannot read DICOM file"))?;
    let (obj, ts) = parse(&bytes, path)?;
    modality_first_frame(&obj, &ts, path)
}

/// Parses a DICOM file's bytes (with the 128-byte preamble and `DICM`, or
/// starting at `DICM`), refusing unsupported transfer syntaxes and lengths
/// beyond the file first; returns the object and its transfer syntax UID.
fn parse(bytes: &[u8], what: &Path) -> Result<(dicom_object::DefaultDicomObject, String)> {
    let err = |problem: String| DataError::Dicom { path: what.into(), problem, source: None };
    let (preamble, meta_end, ts) = read_meta(bytes, what)?;
    if !SUPPORTED_TRANSFER_SYNTAXES.iter().any(|(uid, _)| *uid == ts) {
        let name = KNOWN_UNSUPPORTED.iter().find(|(uid, _)| *uid == ts).map(|(_, n)| format!(" ({n})")).unwrap_or_default();
        return Err(err(format!("unsupported transfer syntax {ts}{name} (supported: {})", supported_list())));
    }
    // Lengths checked before the parser allocates them (a deflated data
    // set is compressed: its lengths cannot be checked here).
    if ts != DEFLATED {
        let enc = Encoding { explicit: ts != IMPLICIT_VR_LE, big_endian: ts == EXPLICIT_VR_BE };
        lengths::check(bytes, meta_end, enc, false).map_err(err)?;
    }

    let obj = OpenFileOptions::new()
        .read_preamble(preamble)
        .from_reader(bytes)
        .map_err(|e| err(format!("cannot parse the DICOM data set: {}", describe(&e))))?;
    Ok((obj, ts))
}

/// The file meta group, read after its lengths are checked: how the file
/// starts, where the data set begins, and the transfer syntax UID.
fn read_meta(bytes: &[u8], what: &Path) -> Result<(ReadPreamble, usize, String)> {
    let err = |problem: String| DataError::Dicom { path: what.into(), problem, source: None };
    // Magic code: at byte 128 after the preamble, or at byte 0 without one.
    let preamble = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        ReadPreamble::Always
    } else if bytes.starts_with(b"DICM") {
        ReadPreamble::Never
    } else {
        return Err(err(format!("not a DICOM file (no DICM magic code at byte 128 after the preamble; file has {} bytes)", bytes.len())));
    };
    // The file meta group first, to reject unsupported transfer syntaxes
    // with a clear message before parsing the data set.
    let meta_start = if preamble == ReadPreamble::Always { 128 } else { 0 };
    let meta_end =
        lengths::check(bytes, meta_start + 4, Encoding::EXPLICIT_LE, true).map_err(|p| err(format!("DICOM file meta group: {p}")))?;
    let meta =
        FileMetaTable::from_reader(&bytes[meta_start..]).map_err(|e| err(format!("invalid DICOM file meta group: {}", describe(&e))))?;
    Ok((preamble, meta_end, meta.transfer_syntax().to_string()))
}

/// The transfer syntax UID of a DICOM file (from its file meta group).
pub fn transfer_syntax_of(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(io_err(path, "cannot read DICOM file"))?;
    Ok(read_meta(&bytes, path)?.2)
}

/// The name of a transfer syntax this module knows (supported or not).
pub fn name_of_syntax(uid: &str) -> Option<&'static str> {
    SUPPORTED_TRANSFER_SYNTAXES.iter().chain(KNOWN_UNSUPPORTED).find(|(u, _)| *u == uid).map(|(_, n)| *n)
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

#[cfg(test)]
mod tests {
    use dicom_dictionary_std::uids;
    use dicom_object::FileMetaTableBuilder;

    use super::*;

    pub(super) fn read(bytes: &[u8], opts: &DicomOptions) -> Result<Image> {
        read_dicom_bytes(bytes, Path::new("test.dcm"), opts)
    }

    pub(super) fn ramp(n: usize, step: u16) -> Vec<u16> {
        (0..n).map(|i| i as u16 * step).collect()
    }

    pub(super) fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    /// The error of reading `bytes`, which must name the file and hold
    /// every needle.
    pub(super) fn expect_err(bytes: &[u8], needles: &[&str]) -> String {
        let e = read(bytes, &DicomOptions::default()).expect_err("expected an error").to_string();
        assert!(e.starts_with("test.dcm: "), "{e}");
        for n in needles {
            assert!(e.contains(n), "`{n}` not in: {e}");
        }
        e
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

        // An HTJ2K file: rejected from its meta group.
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax("1.2.840.10008.1.2.4.201")
            .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
            .media_storage_sop_instance_uid("2.25.1")
            .build()
            .unwrap();
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        meta.write(&mut b).unwrap();
        let e = expect_err(&b, &["unsupported transfer syntax 1.2.840.10008.1.2.4.201 (HTJ2K Lossless)", "supported: ", "RLE Lossless"]);
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
}
