//! What a finished run leaves in its folder besides the history: the
//! per-sample test scores, the Figure 3 reconstructions, the selected
//! weights and the metrics. Every file goes through
//! [`dae_runfolder::write_atomic`].

use std::path::Path;

use candle_core::Tensor;
use candle_nn::VarMap;
use dae_data::{csv_field, Sample};
use dae_model::Network;
use dae_runfolder::{files, RunFolder};

use crate::data::RunData;
use crate::evaluate::Eval;
use crate::RunError;

/// Writes `bytes` to `path` atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    dae_runfolder::write_atomic(path, bytes).map_err(|source| RunError::Io { path: path.into(), action: "cannot write", source })
}

/// `scores.csv`: `sample_id`, `patient`, `label`, `score`, then per
/// cluster the predicted attribute (`pred_<cluster>`, empty without
/// attribute scores) and the true ones (`true_<cluster>`, `;`-separated,
/// empty where the sample has none), so reports can resample attribute
/// accuracy by patient.
pub fn write_scores(run: &RunFolder, data: &RunData, e: &Eval) -> Result<(), RunError> {
    let clusters = data.vocab.clusters();
    let mut text = String::from("sample_id,patient,label,score");
    for prefix in ["pred", "true"] {
        for (c, _) in &clusters {
            text.push_str(&format!(",{prefix}_{}", c.name()));
        }
    }
    text.push('\n');
    for (k, &i) in e.indices.iter().enumerate() {
        let s = &data.samples[i];
        text.push_str(&format!("{},{},{},{:.8}", csv_field(&s.id), csv_field(&s.patient), e.labels[k], e.scores[k]));
        let predicted = e.predicted_attributes(k, &data.vocab);
        for c in 0..clusters.len() {
            text.push_str(&format!(",{}", predicted.get(c).copied().unwrap_or("")));
        }
        for (c, _) in &clusters {
            let truth: Vec<&str> =
                s.attributes.iter().filter(|a| a.cluster() == *c && data.vocab.attributes().contains(a)).map(|a| a.name()).collect();
            text.push_str(&format!(",{}", truth.join(";")));
        }
        text.push('\n');
    }
    write_file(&run.scores(), text.as_bytes())
}

/// The selected weights as `model.safetensors`.
pub fn save_model(run: &RunFolder, varmap: &VarMap) -> Result<(), RunError> {
    let mut host = std::collections::BTreeMap::new();
    for (k, t) in crate::checkpoint::current(varmap) {
        host.insert(k, t.to_device(&candle_core::Device::Cpu)?);
    }
    let bytes = safetensors::serialize(host.iter(), None).map_err(|e| RunError::Internal(format!("serialising the model: {e}")))?;
    write_file(&run.model(), &bytes)
}

/// Figure 3: for a few fixed test samples, the input and its reconstructions
/// from the network's panels (DAE-GCN: h, [h_ma, h_mi], h_i, h_ma, h_mi, the
/// other blocks zeroed), as one PNG strip per sample and `figure3.json`.
pub fn figure3(run: &RunFolder, net: &dyn Network, data: &RunData, test: &Eval, n: usize) -> Result<(), RunError> {
    if n == 0 || net.figure3_panels().is_empty() || test.indices.is_empty() {
        return Ok(());
    }
    let mut meta = Vec::new();
    for k in figure3_picks(test, n) {
        let s = &data.samples[test.indices[k]];
        let (tiles, names) = reconstructions(net, data, s)?;
        let name = files::figure3_png(&s.id);
        let img = s.image.as_ref().expect("test samples have images");
        write_file(&run.path.join(&name), &png_strip(&tiles, img.width, img.height)?)?;
        meta.push(serde_json::json!({
            "file": name, "sample_id": s.id, "label": s.label, "score": test.scores[k],
            "panels": names, "true_attributes": s.attributes.iter().map(|a| a.name()).collect::<Vec<_>>(),
            "predicted_attributes": test.predicted_attributes(k, &data.vocab),
        }));
    }
    write_file(&run.figure3(), serde_json::to_string_pretty(&meta).expect("json").as_bytes())
}

/// Fixed picks: evenly spaced through the test split in sample order.
fn figure3_picks(test: &Eval, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..test.indices.len()).collect();
    order.sort_by_key(|&k| test.indices[k]);
    let n = n.min(order.len());
    (0..n).map(|j| order[j * order.len() / n]).collect()
}

/// The input and its reconstructions from each panel's blocks, as
/// intensities, with the panels' names.
fn reconstructions(net: &dyn Network, data: &RunData, s: &Sample) -> Result<(Vec<Vec<f32>>, Vec<&'static str>), RunError> {
    let img = s.image.as_ref().expect("test samples have images");
    let x = Tensor::from_vec(img.data.iter().map(|&v| data.norm.apply(v)).collect::<Vec<_>>(), (1, 1, img.height, img.width), &data.dev)?;
    let latent = net.encode(&x, false)?;
    let mut tiles: Vec<Vec<f32>> = vec![img.data.clone()];
    let mut names = vec!["input"];
    for (name, keep) in net.figure3_panels() {
        if let Some(r) = net.decode_from(&latent, &keep)? {
            tiles.push(r.flatten_all()?.to_vec1::<f32>()?.into_iter().map(|v| data.norm.invert(v)).collect());
            names.push(name);
        }
    }
    Ok((tiles, names))
}

/// Tiles of `w x h` intensities side by side as an 8-bit grey PNG.
fn png_strip(tiles: &[Vec<f32>], w: usize, h: usize) -> Result<Vec<u8>, RunError> {
    let mut buf = vec![0u8; h * w * tiles.len()];
    for (t, tile) in tiles.iter().enumerate() {
        for y in 0..h {
            for x in 0..w {
                buf[y * w * tiles.len() + t * w + x] = (tile[y * w + x].clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    let mut png = Vec::new();
    image::GrayImage::from_raw((w * tiles.len()) as u32, h as u32, buf)
        .expect("buffer matches")
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| RunError::Internal(format!("encoding a Figure 3 PNG: {e}")))?;
    Ok(png)
}
