//! The DICOM conformance corpus (`datasets/dicom-conformance`, sources and
//! licences in its SOURCES.md): our decoding of each file against the
//! modality values pydicom decoded (`<name>.npy.gz`), and `dae-data decode`.

use std::path::{Path, PathBuf};
use std::process::Command;

use dae_data::dicom_io::conformance::{check_folder, Verdict};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/dicom-conformance")
}

/// Lossless and lossy syntaxes alike decode exactly as pydicom did (its
/// OpenJPEG and T.87 decoders compute what ours do), but for 12-bit JPEG:
/// our exact IDCT and libjpeg's integer one differ by at most one unit,
/// which ISO 10918-2 allows a decoder.
#[test]
fn every_file_decodes_as_pydicom_did() {
    let rows = check_folder(&corpus()).unwrap();
    let syntaxes: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.syntax.split(' ').next().unwrap()).collect();
    assert_eq!(syntaxes.len(), 11, "one file per syntax at least: {syntaxes:?}");
    for r in &rows {
        let name = r.file.file_name().unwrap().to_string_lossy();
        match (name.as_ref(), &r.verdict) {
            ("JPGExtended.dcm", Verdict::MaxDiff(d)) => assert!(*d <= 1.0, "{d}"),
            (_, v) => assert_eq!(v, &Verdict::Exact, "{name} ({})", r.syntax),
        }
    }
}

#[test]
fn decode_writes_the_modality_values_and_a_16_bit_png() {
    let dir = tempfile::tempdir().unwrap();
    let (npy, png) = (dir.path().join("mr.npy"), dir.path().join("mr.png"));
    let o = Command::new(env!("CARGO_BIN_EXE_dae-data"))
        .arg("decode")
        .arg(corpus().join("MR_small_jpeg_ls_lossless.dcm"))
        .arg("--out")
        .arg(&npy)
        .arg("--png")
        .arg(&png)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("64 x 64, modality values 127 to 2145"));
    let ours = dae_data::npy::read_f32(&npy).unwrap();
    assert_eq!(ours, dae_data::npy::read_f32(&corpus().join("MR_small_jpeg_ls_lossless.npy.gz")).unwrap());
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height(), img.color()), (64, 64, image::ColorType::L16));
    // The loaders' intensities (the file's window here), scaled to 16 bits.
    let loaded = dae_data::dicom_io::read_dicom(&corpus().join("MR_small_jpeg_ls_lossless.dcm"), &Default::default()).unwrap();
    let want: Vec<u16> = loaded.data.iter().map(|v| (v * 65535.0).round() as u16).collect();
    assert_eq!(img.into_luma16().into_raw(), want);
    assert!(want.iter().any(|&v| v > 0 && v < 65535), "a window that leaves grey values");

    let o = Command::new(env!("CARGO_BIN_EXE_dae-data")).arg("decode").arg(dir.path().join("none.dcm")).output().unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("none.dcm: cannot read DICOM file"), "{}", String::from_utf8_lossy(&o.stderr));
}
