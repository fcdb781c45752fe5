//! Hostile input: bounded mutation campaigns (`dae-mutate`) against the
//! runner's parsers of a user's files: experiment TOML files (every
//! committed experiment as a seed) and the plan manifests in a results
//! folder. Each mutated input must parse or give an error naming the file;
//! never a panic, a hang, or an allocation out of proportion to its size.

use std::path::{Path, PathBuf};

use dae_mutate::{Campaign, CountingAlloc};
use dae_sweep::experiment::Experiment;
use dae_sweep::manifest::{Manifest, ManifestJob};
use toml::Value;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const TOML_TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "'",
    "\"\"\"",
    "=",
    "#",
    ".",
    "variant",
    "seeds",
    "profile",
    "contrast",
    "1e999",
    "inf",
    "nan",
    "true",
    "9223372036854775808",
    "[[variant]]\nname = \"x\"\n",
    "[profile.quick]\n",
    "\"row1\"",
    "\"row7\"",
];

fn names(file: &'static str) -> impl Fn(&str) -> Result<(), String> {
    move |m: &str| if m.contains(file) { Ok(()) } else { Err(format!("does not name `{file}`")) }
}

#[test]
fn experiment_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../experiments");
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    corpus.sort();
    assert!(corpus.len() >= 8, "the committed experiments are the seeds");
    // Parsed as a file next to the committed ones (relative job files resolve).
    let path = dir.join("mutated-experiment.toml");
    for seed in &corpus {
        Experiment::parse(&path, std::str::from_utf8(seed).unwrap()).unwrap();
    }
    let stats = Campaign::new("experiment toml", corpus)
        .cases(4_000)
        .tokens(TOML_TOKENS)
        .alloc_cap(|len| 256 * len + (4 << 20))
        .error_check(names("mutated-experiment.toml"))
        .run(|b| {
            let text = std::str::from_utf8(b).map_err(|e| format!("mutated-experiment.toml: not UTF-8: {e}"))?;
            Experiment::parse(&path, text).map_err(|e| e.to_string())
        });
    assert!(stats.accepted > 200 && stats.rejected > 1_000, "{stats:?}");
}

#[test]
fn plan_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let job = |id: &str, variant: &str, seed: u64| ManifestJob {
        id: id.into(),
        variant: Some(variant.into()),
        params: vec![("variant".into(), Value::String(variant.into())), ("model.tau".into(), Value::Float(0.4))],
        seed,
    };
    let m = Manifest {
        experiment: "t".into(),
        file: Path::new("experiments/t.toml").into(),
        profile: Some("quick".into()),
        code_version: "0.1.0+abc".into(),
        jobs: vec![job("0123456789abcdef", "row1", 0), job("fedcba9876543210", "row7", 1)],
    };
    let file = m.write(dir.path()).unwrap();
    let good = std::fs::read(&file).unwrap();
    let stats = Campaign::new("plan manifest", vec![good])
        .cases(2_000)
        .tokens(&["{", "}", "[", "]", "\"", ":", "null", "1e999", "-1", "18446744073709551616"])
        .alloc_cap(|len| 256 * len + (1 << 20))
        .error_check(names("t.quick.json"))
        .run(|b| {
            std::fs::write(&file, b).unwrap();
            Manifest::read(dir.path(), "t", Some("quick"))
        });
    assert!(stats.accepted > 50 && stats.rejected > 1_000, "{stats:?}");
}
