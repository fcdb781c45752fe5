//! NumPy `.npy` (format 1.0) for 2-D little-endian float32 arrays: what
//! `dae-data decode` writes and the DICOM conformance check reads (also
//! gzipped, `.npy.gz`, as the committed references are), so that our
//! decoding can be checked against any other tool's.

use std::path::Path;

use crate::error::{io_err, DataError, Result};

const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// The bytes of a `.npy` file holding `values` (row-major) with shape (rows, cols).
pub fn encode_f32(rows: usize, cols: usize, values: &[f32]) -> Vec<u8> {
    assert_eq!(values.len(), rows * cols, "npy: {} values for shape ({rows}, {cols})", values.len());
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic, 2-byte length, dict, spaces and a newline: a multiple of 64 bytes.
    let total = (MAGIC.len() + 2 + dict.len() + 1).div_ceil(64) * 64;
    let header = format!("{dict}{}\n", " ".repeat(total - MAGIC.len() - 2 - dict.len() - 1));
    let mut out = Vec::with_capacity(total + values.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads a 2-D `<f4` C-order `.npy` file (gzipped when its name ends in
/// `.gz`): (rows, cols, values).
pub fn read_f32(path: &Path) -> Result<(usize, usize, Vec<f32>)> {
    let mut bytes = std::fs::read(path).map_err(io_err(path, "cannot read"))?;
    if path.extension().is_some_and(|x| x == "gz") {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).map_err(io_err(path, "cannot gunzip"))?;
        bytes = plain;
    }
    let bad = |problem: &str| DataError::Image { path: path.into(), problem: format!("not a 2-D float32 .npy file: {problem}") };
    if bytes.len() < 10 || &bytes[..8] != MAGIC {
        return Err(bad("no `\\x93NUMPY` version 1.0 magic"));
    }
    let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = bytes.get(10..10 + len).and_then(|h| std::str::from_utf8(h).ok()).ok_or_else(|| bad("header cut short"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(bad(&format!("header `{}` is not little-endian float32 in C order", header.trim())));
    }
    let shape = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).ok_or_else(|| bad("no shape"))?;
    let dims: Vec<usize> = shape.split(',').map(str::trim).filter(|s| !s.is_empty()).filter_map(|s| s.parse().ok()).collect();
    let [rows, cols] = dims[..] else { return Err(bad(&format!("shape ({shape}) is not 2-D"))) };
    let data = &bytes[10 + len..];
    if data.len() != rows * cols * 4 {
        return Err(bad(&format!("{} data bytes for shape ({rows}, {cols})", data.len())));
    }
    Ok((rows, cols, data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_values_round_trip() {
        let v: Vec<f32> = (0..6).map(|i| i as f32 * 1.5 - 2.0).collect();
        let bytes = encode_f32(2, 3, &v);
        assert_eq!(&bytes[..8], MAGIC);
        let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + len) % 64, 0, "the data starts 64-byte aligned");
        assert_eq!(bytes.len(), 10 + len + 6 * 4);
        let header = std::str::from_utf8(&bytes[10..10 + len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") && header.ends_with('\n'));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read_f32(&p).unwrap(), (2, 3, v));
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        assert!(read_f32(&p).unwrap_err().to_string().contains("20 data bytes for shape (2, 3)"));
    }
}
