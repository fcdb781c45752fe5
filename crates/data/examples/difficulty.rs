//! How much label signal the synthetic generator's factors carry: the test
//! AUC of a logistic regression on (a) all disease-related ground-truth
//! factors, (b) the attributes alone, (c) the microscopic features alone
//! (heterogeneity, calcification count), (d) the disease-irrelevant factors
//! alone. Patient-wise 50/50 halves, several generator seeds.
//!
//! `cargo xtask data difficulty [--seeds 5] [--patients 900] [--confound 0.0] [--micro-strength M]`

use dae_data::split::{split_samples, SplitSpec};
use dae_data::synth::{generate, SynthFactors};
use dae_data::SynthParams;
use dae_metrics::{roc_auc, LogisticRegression};

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let seeds = arg("--seeds", 5.0) as u64;
    let patients = arg("--patients", 900.0) as usize;
    let confound = arg("--confound", 0.0);
    let micro_strength = arg("--micro-strength", SynthParams::default().micro_strength);
    let features: [(&str, fn(&SynthFactors) -> Vec<f64>); 4] = [
        ("ground-truth factors (shape, margin, heterogeneity, calcifications)", SynthFactors::relevant_features),
        ("attributes alone (shape, margin)", SynthFactors::attribute_features),
        ("microscopic features alone (heterogeneity, calcifications)", SynthFactors::micro_features),
        ("irrelevant factors alone", SynthFactors::irrelevant_features),
    ];
    let mut aucs = vec![Vec::new(); features.len()];
    for seed in 0..seeds {
        let params = SynthParams { seed, patients, image_size: 16, confound, micro_strength, ..Default::default() };
        let split = SplitSpec { seed, ratios: [0.5, 0.0, 0.5], ..SplitSpec::default() };
        let samples = generate(&params, &split).expect("generation");
        let idx = split_samples(&samples, &split).expect("split");
        for (k, (_, f)) in features.iter().enumerate() {
            let xy = |ix: &[usize]| -> (Vec<Vec<f64>>, Vec<u8>) {
                ix.iter().map(|&i| (f(samples[i].factors.as_ref().unwrap()), samples[i].label)).unzip()
            };
            let (xtr, ytr) = xy(&idx.train);
            let (xte, yte) = xy(&idx.test);
            let model = LogisticRegression::fit(&xtr, &ytr, 1e-3).expect("fit");
            let scores: Vec<f64> = xte.iter().map(|r| model.predict(r)).collect();
            aucs[k].push(roc_auc(&scores, &yte).expect("auc"));
        }
    }
    println!(
        "logistic regression, test AUC over {seeds} generator seeds ({patients} patients each, patient-wise 50/50, confound {confound}, micro_strength {micro_strength}):"
    );
    for ((name, _), a) in features.iter().zip(&aucs) {
        let m = a.iter().sum::<f64>() / a.len() as f64;
        let sd = (a.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (a.len().max(2) - 1) as f64).sqrt();
        println!("  {m:.3} ± {sd:.3}  {name}");
    }
}
