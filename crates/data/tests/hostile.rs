//! Hostile input: bounded mutation campaigns (`dae-mutate`) against every
//! parser a user's data files reach: DICOM (native, RLE Lossless, JPEG
//! 2000, JPEG-LS, 12-bit JPEG), PGM,
//! PNG, the CBIS-DDSM description tables, mini-MIAS `Info.txt`, the folder
//! manifest and the split file. Each mutated input must give an image or a
//! clear error naming the file: no panic, no hang, and (for the image
//! decoders, which run on this thread) no allocation out of proportion to
//! the file's size.

use std::path::Path;

use dae_data::cbis::{self, CbisOptions};
use dae_data::dicom_io::{read_dicom_bytes, DicomOptions, TestDicom};
use dae_data::image::{parse_pgm, read_png};
use dae_data::manifest::{self, ManifestOptions};
use dae_data::mias::{self, MiasOptions};
use dae_data::split::{read_split_file, split_samples, write_split_file};
use dae_data::synth::{generate, SynthParams};
use dae_data::SplitSpec;
use dae_mutate::{Campaign, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// What an image decoder may hold at once for a file of `len` bytes: the
/// decoded samples and the [0, 1] image of a run-length file that
/// compresses 64 to 1, plus the parser's fixed overhead.
fn image_cap(len: usize) -> usize {
    512 * len + (8 << 20)
}

/// Every error must name the file it came from.
fn names(file: &'static str) -> impl Fn(&str) -> Result<(), String> {
    move |m: &str| if m.contains(file) { Ok(()) } else { Err(format!("does not name `{file}`")) }
}

const NUMBERS: &[&str] = &["4294967296", "18446744073709551615", "65535", "65536", "0", "-5", "3.5"];

#[test]
fn dicom_native_and_rle() {
    let px: Vec<u16> = (0..24 * 20).map(|i| (i * 37 % 4096) as u16).collect();
    let px8: Vec<u16> = px.iter().map(|v| v % 256).collect();
    let corpus: Vec<Vec<u8>> = [
        TestDicom::new(24, 20, &px, "MONOCHROME2"),
        TestDicom { rle: true, ..TestDicom::new(24, 20, &px, "MONOCHROME2") },
        TestDicom { bits_allocated: 8, bits_stored: 8, ..TestDicom::new(24, 20, &px8, "MONOCHROME1") },
        TestDicom { bits_allocated: 8, bits_stored: 8, rle: true, ..TestDicom::new(24, 20, &px8, "MONOCHROME2") },
        TestDicom {
            window: Some((2048.0, 1024.0)),
            rescale: Some((2.0, -100.0)),
            signed: true,
            ..TestDicom::new(24, 20, &px, "MONOCHROME2")
        },
    ]
    .iter()
    .map(|t| t.to_bytes().unwrap())
    .collect();
    let stats = Campaign::new("dicom", corpus)
        .cases(4_000)
        .alloc_cap(image_cap)
        .error_check(names("mutated.dcm"))
        .run(|b| read_dicom_bytes(b, Path::new("mutated.dcm"), &DicomOptions::default()));
    assert!(stats.accepted > 100 && stats.rejected > 1_000, "{stats:?}");
}

/// The compressed syntaxes of the conformance corpus: JPEG 2000, JPEG-LS
/// (8 and 16 bit) and 12-bit JPEG, decoded by OpenJPEG, pure_jpegls and our
/// own 12-bit decoder.
#[test]
fn dicom_compressed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/dicom-conformance");
    let corpus = ["MR_small_jp2klossless", "MR_small_jpeg_ls_lossless", "JPEGLSNearLossless_08", "JPGExtended"]
        .iter()
        .map(|f| std::fs::read(dir.join(format!("{f}.dcm"))).unwrap())
        .collect();
    let stats = Campaign::new("dicom-compressed", corpus)
        .cases(4_000)
        .alloc_cap(image_cap)
        .error_check(names("mutated.dcm"))
        .run(|b| read_dicom_bytes(b, Path::new("mutated.dcm"), &DicomOptions::default()));
    assert!(stats.accepted > 100 && stats.rejected > 300, "{stats:?}");
}

#[test]
fn pgm() {
    let mut film = b"P5\n# a comment\n12 10\n255\n".to_vec();
    film.extend((0..120).map(|i| (i * 7) as u8));
    let mut wide = b"P5 6 4 65535\n".to_vec();
    wide.extend((0..48).map(|i| (i * 5) as u8));
    let e = parse_pgm(b"P5 4294967296 4294967296 255\n\0").unwrap_err();
    assert!(e.contains("4294967296 x 4294967296") && e.contains("truncated"), "{e}");
    let stats = Campaign::new("pgm", vec![film, wide]).cases(3_000).alloc_cap(image_cap).tokens(NUMBERS).run(|b| parse_pgm(b));
    assert!(stats.accepted > 100 && stats.rejected > 500, "{stats:?}");
}

#[test]
fn png() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mutated.png");
    image::GrayImage::from_fn(16, 12, |x, y| image::Luma([(x * 9 + y * 3) as u8])).save(&file).unwrap();
    let gray = std::fs::read(&file).unwrap();
    image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 7])).save(&file).unwrap();
    let rgb = std::fs::read(&file).unwrap();
    let stats = Campaign::new("png", vec![gray, rgb]).cases(2_000).alloc_cap(image_cap).error_check(names("mutated.png")).run(|b| {
        std::fs::write(&file, b).unwrap();
        read_png(&file)
    });
    assert!(stats.rejected > 500, "{stats:?}");
}

const CBIS_HEADER: &str = "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,mass shape,mass margins,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path";

#[test]
fn cbis_ddsm_tables_and_crops() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("crops")).unwrap();
    let px: Vec<u16> = (0..30 * 20).map(|i| (i * 37 % 4096) as u16).collect();
    dae_data::dicom_io::write_test_dicom(&root.join("crops/a.dcm"), 30, 20, &px, "MONOCHROME2", true, None).unwrap();
    image::GrayImage::from_fn(20, 20, |x, y| image::Luma([((x + y) * 6) as u8])).save(root.join("crops/b.png")).unwrap();
    let table = format!(
        "{CBIS_HEADER}\n\
         P_00001,3,LEFT,CC,1,mass,LOBULATED-IRREGULAR,SPICULATED,4,MALIGNANT,4,full/a.dcm,\"crops/a.dcm\n\",mask/a.dcm\n\
         P_00002,2,RIGHT,MLO,1,mass,OVAL,N/A,3,BENIGN_WITHOUT_CALLBACK,2,full/b.dcm,crops/b.png,mask/b.dcm\n\
         P_00002,2,RIGHT,CC,2,mass,ROUND,CIRCUMSCRIBED,3,BENIGN,2,full/c.dcm,crops/b.png,mask/c.dcm\n"
    );
    let file = root.join("mass_case_description_train_set.csv");
    let opts = CbisOptions { root: root.into(), image_size: 16, ..Default::default() };
    let tokens = ["MALIGNANT", "BENIGN", "ROUND", "SPICULATED", "N/A", "crops/a.dcm", "/etc", "..", "LEFT", "CC"];
    let tables = Campaign::new("cbis table", vec![table.clone().into_bytes()])
        .cases(2_000)
        .tokens(&tokens)
        .alloc_cap(|len| 64 * len + (1 << 20))
        .error_check(names("mass_case_description_train_set.csv"))
        .run(|b| {
            std::fs::write(&file, b).unwrap();
            cbis::read_table(&file, true)
        });
    let loads = Campaign::new("cbis load", vec![table.into_bytes()]).cases(1_000).seed(2).tokens(&tokens).run(|b| {
        std::fs::write(&file, b).unwrap();
        cbis::load(&opts)
    });
    assert!(tables.accepted > 50 && tables.rejected > 500 && loads.accepted > 10, "{tables:?} {loads:?}");
}

#[test]
fn mini_mias_info_and_films() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut film = b"P5\n64 64\n255\n".to_vec();
    film.extend((0..64 * 64).map(|i| (i % 251) as u8));
    std::fs::write(root.join("mdb001.pgm"), &film).unwrap();
    std::fs::write(root.join("mdb002.pgm"), &film).unwrap();
    let info = "header text\nmdb001 G CIRC B 30 20 10\nmdb002 G SPIC M 50 50 6\nmdb003 F CIRC B\nmdb004 D NORM\nmdb005 F MISC M 1 1 1\n";
    let file = root.join("Info.txt");
    let opts = MiasOptions { root: root.into(), image_size: 16, crop_scale: 2.0, min_crop: 8 };
    let stats = Campaign::new("mini-mias", vec![info.as_bytes().to_vec()])
        .cases(2_000)
        .tokens(&["mdb001", "mdb002", "CALC", "SPIC", " M ", " B "])
        .tokens(NUMBERS)
        .run(|b| {
            std::fs::write(&file, b).unwrap();
            mias::load(&opts)
        });
    assert!(stats.accepted > 100 && stats.rejected > 100, "{stats:?}");
}

#[test]
fn folder_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    image::GrayImage::from_fn(20, 16, |x, y| image::Luma([((x * y) % 200) as u8])).save(root.join("a.png")).unwrap();
    let mut pgm = b"P5\n8 8\n255\n".to_vec();
    pgm.extend(0..64u8);
    std::fs::write(root.join("b.pgm"), pgm).unwrap();
    let csv = "path,label,attributes,patient,view,id\na.png,1,round;spiculated,P1,CC,s1\nb.pgm,0,oval,P2,MLO,s2\n\"a.png\",0,,P3,,\n";
    let file = root.join("manifest.csv");
    let opts = ManifestOptions { root: file.clone(), image_size: 8 };
    let stats = Campaign::new("manifest", vec![csv.as_bytes().to_vec()])
        .cases(2_000)
        .tokens(&["a.png", "b.pgm", "missing.dcm", "round", "irregular", ";", "1", "2"])
        .error_check(names("manifest.csv"))
        .run(|b| {
            std::fs::write(&file, b).unwrap();
            manifest::load(&opts)
        });
    assert!(stats.accepted > 25 && stats.rejected > 500, "{stats:?}");
}

#[test]
fn split_file() {
    let params = SynthParams { patients: 20, image_size: 16, ..Default::default() };
    let spec = SplitSpec::default();
    let samples = generate(&params, &spec).unwrap();
    let idx = split_samples(&samples, &spec).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("split.csv");
    write_split_file(&file, &samples, &idx).unwrap();
    let good = std::fs::read(&file).unwrap();
    assert_eq!(read_split_file(&file, &samples).unwrap(), idx);
    let stats = Campaign::new("split file", vec![good])
        .cases(2_000)
        .tokens(&["train", "val", "test", "synth-0001"])
        .alloc_cap(|len| 64 * len + (1 << 20))
        .error_check(names("split.csv"))
        .run(|b| {
            std::fs::write(&file, b).unwrap();
            read_split_file(&file, &samples)
        });
    assert!(stats.rejected > 1_000, "{stats:?}");
}
