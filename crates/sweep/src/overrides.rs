//! Command-line overrides of an experiment: `--set KEY=VALUE` (dotted job
//! config keys, TOML values) and `--seeds 0-4` / `--seeds 0,3,7`.
//!
//! They apply after the profile and the variants (see
//! [`crate::Experiment::with_overrides`]): an override changes the job
//! configs, so it makes new job ids and leaves earlier runs where they are.
//! A `--set` of a `[matrix]` axis key replaces that axis's values (a list
//! gives several). Plans made with overrides are recorded under their own
//! manifest name ([`Overrides::tag`]), so `tables --set ...` reports them
//! and a plain `tables` still reports the plain plan.

pub use dae_runfolder::settings::SetArg;
use sha2::{Digest, Sha256};
use toml::Value;

/// The command-line flags, for the runner's and the reporter's CLIs.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OverrideArgs {
    /// Sets a job-config key for every job, after the profile and the
    /// variants (repeatable; dotted keys, TOML values: `model.tau=0.3`,
    /// `optim.epochs=4`, `model.encoder=resnet18`). On a `[matrix]` axis key
    /// it replaces the axis's values (`model.tau=[0.2,0.4]`). Overridden jobs
    /// get new ids; earlier runs stay reusable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<SetArg>,
    /// Replaces the profile's seeds: `0-4`, `0,3,7`, `0-2,10`.
    #[arg(long, value_name = "SEEDS", value_parser = parse_seed_list)]
    pub seeds: Option<SeedList>,
}

/// `--seeds` parsed (a newtype: clap reads a bare `Vec` as many values).
#[derive(Clone, Debug, PartialEq)]
pub struct SeedList(pub Vec<u64>);

fn parse_seed_list(s: &str) -> Result<SeedList, String> {
    parse_seeds(s).map(SeedList)
}

impl OverrideArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides::new(&self.set, self.seeds.as_ref().map(|s| s.0.clone()))
    }
}

/// `--set` pairs in command-line order and the `--seeds` list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub set: Vec<(String, Value)>,
    pub seeds: Option<Vec<u64>>,
}

/// Parses `--seeds`: comma-separated seeds and inclusive ranges (`0-4`,
/// `0,3,7`, `0-2,10`); duplicates are dropped, the order kept.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let bad = |part: &str, why: &str| format!("--seeds `{s}`: `{part}` {why}; expected seeds and ranges such as 0-4 or 0,3,7");
    let mut out: Vec<u64> = Vec::new();
    for part in s.split(',').map(str::trim) {
        let seeds: Vec<u64> = match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.trim().parse::<u64>(), b.trim().parse::<u64>());
                match (a, b) {
                    (Ok(a), Ok(b)) if a <= b && b - a < 100_000 => (a..=b).collect(),
                    (Ok(a), Ok(b)) if a > b => return Err(bad(part, "is a range that runs backwards")),
                    (Ok(_), Ok(_)) => return Err(bad(part, "is a range of more than 100,000 seeds")),
                    _ => return Err(bad(part, "is not a range of non-negative integers")),
                }
            }
            None => vec![part.parse::<u64>().map_err(|_| bad(part, "is not a non-negative integer"))?],
        };
        for seed in seeds {
            if !out.contains(&seed) {
                out.push(seed);
            }
        }
    }
    Ok(out)
}

impl Overrides {
    pub fn new(set: &[SetArg], seeds: Option<Vec<u64>>) -> Overrides {
        Overrides { set: set.iter().map(|a| (a.key.clone(), a.value.clone())).collect(), seeds }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.seeds.is_none()
    }

    /// `set-<8 hex>`: names the plan made with these overrides (the hash of
    /// their canonical text); `None` without overrides.
    pub fn tag(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut h = Sha256::new();
        h.update(self.describe().as_bytes());
        let hex: String = h.finalize().iter().take(4).map(|b| format!("{b:02x}")).collect();
        Some(format!("set-{hex}"))
    }

    /// `--set model.tau=0.3 --seeds 0,1`: the overrides as they would be typed.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.set.iter().map(|(k, v)| format!("--set {k}={v}")).collect();
        if let Some(s) = &self.seeds {
            parts.push(format!("--seeds {}", s.iter().map(u64::to_string).collect::<Vec<_>>().join(",")));
        }
        parts.join(" ")
    }

    /// The value `--set` gives `key`, the last one where it is given twice.
    pub fn value_of(&self, key: &str) -> Option<&Value> {
        self.set.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_take_ranges_and_lists() {
        assert_eq!(parse_seeds("0-4").unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(parse_seeds("0,3,7").unwrap(), vec![0, 3, 7]);
        assert_eq!(parse_seeds("5, 0-2, 1").unwrap(), vec![5, 0, 1, 2]);
        assert_eq!(parse_seeds("3-3").unwrap(), vec![3]);
        assert!(parse_seeds("4-2").unwrap_err().contains("runs backwards"));
        assert!(parse_seeds("a").unwrap_err().contains("`a` is not a non-negative integer"));
        assert!(parse_seeds("0,,1").is_err());
        assert!(parse_seeds("-1").is_err());
    }

    #[test]
    fn the_tag_names_the_overrides_and_nothing_else() {
        let a = Overrides::new(&["model.tau=0.3".parse().unwrap()], None);
        let b = Overrides::new(&["model.tau=0.3".parse().unwrap()], Some(vec![0, 1]));
        assert_eq!(Overrides::default().tag(), None);
        assert_eq!(a.tag(), a.clone().tag());
        assert_ne!(a.tag(), b.tag());
        assert!(a.tag().unwrap().starts_with("set-") && a.tag().unwrap().len() == 12);
        assert_eq!(b.describe(), "--set model.tau=0.3 --seeds 0,1");
    }
}
