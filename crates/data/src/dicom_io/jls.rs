//! JPEG-LS (lossless and near-lossless, PS3.5 A.4.3) through the pure-Rust
//! `pure_jpegls` decoder (single-component streams, 2 to 16 bits), checked
//! against Rows and Columns. A decoder panic on corrupt data becomes an error.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// JPEG-LS Lossless and Near-Lossless.
pub(super) const SYNTAXES: [&str; 2] = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];

/// The samples of one frame's JPEG-LS stream.
pub(super) fn decode(data: &[u8], rows: usize, cols: usize) -> Result<Vec<u16>, String> {
    let (w, h) = (u32::try_from(cols).map_err(|_| "too many columns")?, u32::try_from(rows).map_err(|_| "too many rows")?);
    let (px, dw, dh) = catch_unwind(AssertUnwindSafe(|| jpegls::decode(data, w, h)))
        .map_err(|_| "the JPEG-LS decoder failed on corrupt pixel data".to_string())?
        .map_err(|e| format!("JPEG-LS pixel data: {e}"))?;
    if (dw, dh) != (w, h) || px.len() < rows * cols {
        return Err(format!("JPEG-LS pixel data is {dw} x {dh}, the data set says {cols} x {rows}"));
    }
    Ok(px)
}
