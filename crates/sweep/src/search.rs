//! `[search]`: a random or Sobol sample of a space of job-config keys,
//! expanded into one axis of `n` points, so that it combines with the file's
//! variants, other axes and seeds like any axis, and its jobs are ordinary
//! content-hashed jobs (plan, skip and resume unchanged).
//!
//! ```toml
//! [search]
//! kind = "sobol"                 # or "random"
//! n = 8
//! seed = 0
//! space = { "model.tau" = { uniform = [0.1, 0.9] }, "optim.lr" = { log_uniform = [1e-4, 1e-2] },
//!           "optim.batch_size" = { int_uniform = [16, 64] }, "model.encoder" = { choice = ["small-cnn", "resnet18"] } }
//! ```
//!
//! The points are a function of the section alone: the same file gives the
//! same values (rounded to 6 significant digits, so ids do not hang on the
//! last bit of a float) and the same job ids every time. `sobol` is
//! `sobol_burley`'s Owen-scrambled Sobol sequence (seeded; at most 65,536
//! points and 256 keys), which covers the space more evenly than `random`
//! (SplitMix64 of seed, point and key) for small `n`.

use serde::Deserialize;
use toml::{Table, Value};

/// The `[search]` section as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    pub kind: SearchKind,
    pub n: usize,
    #[serde(default)]
    pub seed: u64,
    pub space: Table,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SearchKind {
    Random,
    Sobol,
}

/// One key's distribution.
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Uniform(f64, f64),
    LogUniform(f64, f64),
    /// Both ends included.
    IntUniform(i64, i64),
    Choice(Vec<Value>),
}

const DIM_KINDS: &str = "uniform = [lo, hi], log_uniform = [lo, hi], int_uniform = [lo, hi] or choice = [values]";

/// A search problem: the experiment-file key (`search.space.model.tau`,
/// `search.n`) and what is wrong.
pub type SearchError = (String, String);

/// The space's keys in file order with their distributions. Keys may be
/// quoted dotted keys (`"model.tau" = {...}`) or nested tables.
pub fn parse_space(space: &Table) -> Result<Vec<(String, Dim)>, SearchError> {
    let mut out = Vec::new();
    walk(space, "", &mut out).map_err(|(key, problem)| (format!("search.space.{key}"), problem))?;
    if out.is_empty() {
        return Err(("search.space".into(), format!("is empty; give keys with {DIM_KINDS}")));
    }
    Ok(out)
}

fn walk(t: &Table, prefix: &str, out: &mut Vec<(String, Dim)>) -> Result<(), SearchError> {
    for (k, v) in t {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let Value::Table(inner) = v else {
            return Err((key, format!("expected a table with one of {DIM_KINDS}, found {}", v.type_str())));
        };
        let is_dim = inner.len() == 1 && inner.keys().all(|k| ["uniform", "log_uniform", "int_uniform", "choice"].contains(&k.as_str()));
        if is_dim {
            let dim = dim_of(inner).map_err(|problem| (key.clone(), problem))?;
            out.push((key, dim));
        } else if inner.keys().any(|k| ["uniform", "log_uniform", "int_uniform", "choice"].contains(&k.as_str())) {
            return Err((key, format!("give exactly one of {DIM_KINDS}")));
        } else {
            walk(inner, &key, out)?;
        }
    }
    Ok(())
}

fn dim_of(t: &Table) -> Result<Dim, String> {
    let (kind, v) = t.iter().next().expect("one key");
    let Value::Array(list) = v else { return Err(format!("`{kind}`: expected a list, found {}", v.type_str())) };
    if kind == "choice" {
        return if list.is_empty() { Err("`choice` is empty; give at least one value".into()) } else { Ok(Dim::Choice(list.clone())) };
    }
    let bounds = || format!("`{kind}`: expected [lo, hi] with lo < hi");
    if kind == "int_uniform" {
        let ints: Vec<i64> = list.iter().filter_map(Value::as_integer).collect();
        return match ints[..] {
            [lo, hi] if list.len() == 2 && lo <= hi => Ok(Dim::IntUniform(lo, hi)),
            _ => Err(format!("`int_uniform`: expected [lo, hi], two integers with lo <= hi")),
        };
    }
    let nums: Vec<f64> = list.iter().filter_map(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64))).collect();
    let [lo, hi] = nums[..] else { return Err(bounds()) };
    if list.len() != 2 || !(lo < hi) || !lo.is_finite() || !hi.is_finite() {
        return Err(bounds());
    }
    if kind == "log_uniform" {
        if lo <= 0.0 {
            return Err(format!("`log_uniform`: lo = {lo}; both ends must be > 0"));
        }
        return Ok(Dim::LogUniform(lo, hi));
    }
    Ok(Dim::Uniform(lo, hi))
}

/// The `n` points: per point, each key's value.
pub fn points(kind: SearchKind, n: usize, seed: u64, dims: &[(String, Dim)]) -> Result<Vec<Vec<(String, Value)>>, SearchError> {
    if n == 0 {
        return Err(("search.n".into(), "is 0; give the number of points (at least 1)".into()));
    }
    if kind == SearchKind::Sobol && (n > 1 << 16 || dims.len() > 256) {
        return Err(("search.n".into(), format!("{n} points of {} keys; sobol gives at most 65,536 points of 256 keys", dims.len())));
    }
    Ok((0..n)
        .map(|i| {
            dims.iter()
                .enumerate()
                .map(|(d, (key, dim))| {
                    let u = match kind {
                        SearchKind::Random => unit(seed, i as u64, d as u64),
                        SearchKind::Sobol => sobol_burley::sample(i as u32, d as u32, seed as u32) as f64,
                    };
                    (key.clone(), value_at(dim, u))
                })
                .collect()
        })
        .collect())
}

/// `dim`'s value at `u` in [0, 1).
fn value_at(dim: &Dim, u: f64) -> Value {
    let u = u.clamp(0.0, 1.0 - f64::EPSILON);
    match dim {
        Dim::Uniform(lo, hi) => Value::Float(round6(lo + u * (hi - lo)).clamp(*lo, *hi)),
        Dim::LogUniform(lo, hi) => Value::Float(round6((lo.ln() + u * (hi.ln() - lo.ln())).exp()).clamp(*lo, *hi)),
        Dim::IntUniform(lo, hi) => Value::Integer(lo + ((u * (hi - lo + 1) as f64).floor() as i64).min(hi - lo)),
        Dim::Choice(values) => values[((u * values.len() as f64) as usize).min(values.len() - 1)].clone(),
    }
}

/// `x` to 6 significant digits.
fn round6(x: f64) -> f64 {
    format!("{x:.5e}").parse().unwrap_or(x)
}

/// A uniform number in [0, 1) from SplitMix64 of (seed, point, key).
fn unit(seed: u64, i: u64, d: u64) -> f64 {
    let mut z = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ d.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    for _ in 0..2 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
    }
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(text: &str) -> Vec<(String, Dim)> {
        parse_space(&toml::from_str::<Table>(text).unwrap()).unwrap()
    }

    const SPACE: &str = r#"
"model.tau" = { uniform = [0.1, 0.9] }
"optim.lr" = { log_uniform = [1e-4, 1e-2] }
optim.batch_size = { int_uniform = [16, 64] }
"model.encoder" = { choice = ["small-cnn", "resnet18"] }
"#;

    #[test]
    fn points_are_deterministic_within_bounds_and_seeded() {
        let dims = space(SPACE);
        let keys: Vec<&str> = dims.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["model.tau", "optim.lr", "optim.batch_size", "model.encoder"]);
        for kind in [SearchKind::Random, SearchKind::Sobol] {
            let a = points(kind, 64, 7, &dims).unwrap();
            assert_eq!(a, points(kind, 64, 7, &dims).unwrap(), "{kind:?}: the same section, the same points");
            assert_ne!(a, points(kind, 64, 8, &dims).unwrap(), "{kind:?}: another seed, other points");
            let mut encoders = std::collections::BTreeSet::new();
            for p in &a {
                let tau = p[0].1.as_float().unwrap();
                let lr = p[1].1.as_float().unwrap();
                let bs = p[2].1.as_integer().unwrap();
                assert!((0.1..=0.9).contains(&tau) && (1e-4..=1e-2).contains(&lr) && (16..=64).contains(&bs), "{p:?}");
                assert_eq!(tau, round6(tau));
                encoders.insert(p[3].1.as_str().unwrap().to_string());
            }
            assert_eq!(encoders.len(), 2, "{kind:?}: both choices are drawn");
            // log_uniform: about half the points below the geometric midpoint 1e-3.
            let below = a.iter().filter(|p| p[1].1.as_float().unwrap() < 1e-3).count();
            assert!((20..=44).contains(&below), "{kind:?}: {below} of 64 below 1e-3");
        }
    }

    #[test]
    fn sobol_puts_one_point_in_each_of_n_strata_per_key() {
        let dims = space(
            r#""a" = { uniform = [0.0, 1.0] }
"b" = { uniform = [0.0, 1.0] }"#,
        );
        for seed in [0, 1, 2] {
            let p = points(SearchKind::Sobol, 16, seed, &dims).unwrap();
            for d in 0..2 {
                let mut strata: Vec<usize> = p.iter().map(|x| (x[d].1.as_float().unwrap() * 16.0) as usize).collect();
                strata.sort();
                assert_eq!(strata, (0..16).collect::<Vec<_>>(), "seed {seed}, key {d}");
            }
        }
    }

    #[test]
    fn bad_spaces_name_the_key_and_what_is_valid() {
        let bad = |text: &str| parse_space(&toml::from_str::<Table>(text).unwrap()).unwrap_err();
        assert_eq!(bad(r#""model.tau" = { uniform = [0.9, 0.1] }"#).0, "search.space.model.tau");
        assert!(bad(r#""optim.lr" = { log_uniform = [0, 1e-2] }"#).1.contains("> 0"));
        assert!(bad(r#""x" = { normal = [0, 1] }"#).1.contains("log_uniform"));
        assert!(bad(r#""x" = { uniform = [0, 1], choice = [1] }"#).1.contains("exactly one"));
        assert!(bad(r#""x" = { choice = [] }"#).1.contains("empty"));
        assert!(bad(r#""x" = { int_uniform = [1.5, 3] }"#).1.contains("integers"));
        assert!(bad(r#""x" = 0.5"#).1.contains("found float"));
        assert!(points(SearchKind::Random, 0, 0, &space(SPACE)).unwrap_err().1.contains("is 0"));
    }
}
