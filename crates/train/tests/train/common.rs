//! Fixtures shared by the trainer's integration tests.

use std::path::{Path, PathBuf};

/// A `manifest` data set of 12 tiny PNGs under `dir/imgs` with labels and
/// patients but no attributes; returns the folder.
pub fn manifest_without_attributes(dir: &Path) -> PathBuf {
    let imgs = dir.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let mut man = String::from("path,label,patient\n");
    for i in 0..12 {
        image::GrayImage::from_fn(8, 8, |x, _| image::Luma([(x * 30) as u8])).save(imgs.join(format!("{i}.png"))).unwrap();
        man.push_str(&format!("{i}.png,{},p{i}\n", i % 2));
    }
    std::fs::write(imgs.join("manifest.csv"), man).unwrap();
    imgs
}
