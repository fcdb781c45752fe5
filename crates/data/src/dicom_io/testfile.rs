//! The test DICOM writer: [`TestDicom`] and [`write_test_dicom`] write small
//! valid DICOM files (native Explicit VR Little Endian, or RLE Lossless,
//! which they encode themselves with [`rle_encode_frame`]). Compiled only
//! for this crate's unit tests and under the `test-support` feature.

use std::io;
use std::path::Path;

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

/// A small synthetic DICOM file for tests: 8- or 16-bit monochrome (or any
/// photometric interpretation string), native Explicit VR Little Endian or
/// RLE Lossless pixel data.
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
    use super::super::rle::unpackbits;
    use super::*;

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
}
