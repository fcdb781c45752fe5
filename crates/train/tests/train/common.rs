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

/// A tiny synthetic job of `method` with extra TOML lines under `[model]`
/// and `[optim]` (which must set `epochs`).
pub fn tiny_job(method: &str, model: &str, optim: &str) -> dae_train::Job {
    std::env::set_var("DAE_CACHE", std::env::temp_dir().join("dae-train-test-cache"));
    let blocks = match method {
        "dae-gcn" => "h_ma_dim = 8\nh_mi_dim = 8\nh_i_dim = 8\ngcn_hidden = 8",
        "guided-vae" => "h_ma_dim = 8\nh_mi_dim = 8\nh_i_dim = 8",
        _ => "h_dim = 16",
    };
    let text = format!(
        "seed = 3\nmethod = \"{method}\"\n[dataset]\nkind = \"synthetic\"\npatients = 80\nimage_size = 32\n\
         [split]\nratios = [0.6, 0.2, 0.2]\n[model]\nwidth = 4\n{blocks}\n{model}\n\
         [optim]\nlr = 0.002\nbatch_size = 16\n{optim}\n[output]\nfigure3_samples = 1\n"
    );
    dae_train::Job::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}
