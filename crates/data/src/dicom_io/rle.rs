//! The RLE Lossless frame decoder (PS3.5 Annex G): the segment header,
//! then PackBits segments straight into 8- or 16-bit samples, every header,
//! offset and segment length checked.

/// A decoded RLE Lossless frame.
#[derive(Debug, PartialEq)]
pub(super) enum RleSamples {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

/// Decodes one RLE Lossless frame fragment (PS3.5 Annex G) of `pixels`
/// single-sample pixels: the 64-byte header (segment count, offsets), then
/// one PackBits segment per byte of the sample, most significant first.
/// Every inconsistency is an error, never a panic.
pub(super) fn decode_rle_frame(frag: &[u8], pixels: usize, bits_allocated: u16) -> std::result::Result<RleSamples, String> {
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
    // PackBits writes at most 128 bytes per 2-byte record: a frame larger
    // than 64 times its segment cannot be in it (and is not allocated).
    let first = segment(0)?;
    if pixels > 64 * first.len() {
        return Err(format!("{pixels} pixels declared, more than a {}-byte segment can hold (truncated or corrupt)", first.len()));
    }
    let short = |s: usize, got: usize| format!("pixel data truncated: segment {s} decodes to {got} bytes, expected {pixels}");
    if n == 1 {
        let mut out = vec![0u8; pixels];
        let got = unpackbits(first, &mut out, |d, v| *d = v);
        if got < pixels {
            return Err(short(0, got));
        }
        Ok(RleSamples::U8(out))
    } else {
        let mut out = vec![0u16; pixels];
        let got = unpackbits(first, &mut out, |d, v| *d = (v as u16) << 8);
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
pub(super) fn unpackbits<T>(seg: &[u8], out: &mut [T], put: impl Fn(&mut T, u8)) -> usize {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use dicom_core::value::Value;
    use dicom_dictionary_std::tags;
    use dicom_object::OpenFileOptions;
    use dicom_pixeldata::PixelDecoder;

    use super::super::tests::{close, expect_err, ramp, read};
    use super::super::{read_dicom, rle_encode_frame, DicomOptions, TestDicom};
    use super::*;

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
