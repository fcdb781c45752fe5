//! Experiment files (`experiments/*.toml`): a base job config, matrix axes,
//! zip groups, named variants (a table's rows), include/exclude rules, seeds
//! and named profiles; expanded into partial job configs.
//!
//! ```toml
//! [experiment]
//! name = "sweep-tau-p"
//! seeds = [0, 1]
//! default_profile = "quick"
//!
//! [base]                       # a job config (the trainer's keys)
//! model.attributes = "gcn"
//!
//! [matrix]                     # every combination
//! model.tau = [0.1, 0.5, 0.9]
//!
//! [[zip]]                      # these vary together
//! model.h_ma_dim = [8, 16]
//! model.h_mi_dim = [8, 16]
//!
//! [[variant]]                  # named rows
//! name = "row1"
//! label = "Vanilla"
//! set.model = { disentangle = false, attributes = "none" }
//!
//! [[exclude]]                  # drop jobs whose config matches all of these
//! model.tau = 0.9
//! variant = "row1"
//!
//! [profile.quick]              # selected with --profile quick
//! seeds = [0, 1]
//! set.optim.epochs = 8
//! matrix.model.tau = [0.5]     # fewer values of a [matrix] axis
//!
//! [profile.quick.variant.row1] # one row's keys under this profile
//! model = { h_dim = 48 }
//!
//! [[contrast]]                 # a comparison the report computes
//! a = "row1"
//! b = "row2"
//! kind = "equivalence"         # or "superiority" (default)
//! margin = 0.02
//! ```
//!
//! A job's config is base, then the profile's `set`, then the variant's
//! `set`, then the profile's `variant.<name>` keys, then its axis values,
//! then `seed`. Axis and rule keys are dotted
//! job-config keys; a key the job config does not have is an error naming the
//! file, line and the valid keys (checked against the trainer's resolved
//! base config, see [`crate::plan`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

pub use dae_runfolder::settings::{get_path, set_path};

use crate::error::SweepError;
use crate::overrides::Overrides;

/// Keys of the experiment file itself (for error messages).
const TOP_KEYS: &str = "experiment, base, matrix, zip, search, variant, include, exclude, profile, contrast, slurm";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    experiment: RawMeta,
    #[serde(default)]
    base: Table,
    #[serde(default)]
    matrix: Table,
    #[serde(default)]
    zip: Vec<Table>,
    #[serde(default)]
    search: Option<crate::search::RawSearch>,
    #[serde(default)]
    variant: Vec<RawVariant>,
    #[serde(default)]
    include: Vec<Table>,
    #[serde(default)]
    exclude: Vec<Table>,
    #[serde(default)]
    profile: BTreeMap<String, RawProfile>,
    #[serde(default)]
    contrast: Vec<RawContrast>,
    #[serde(default)]
    slurm: Option<crate::slurm::SlurmConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    seeds: Option<Vec<u64>>,
    #[serde(default)]
    default_profile: Option<String>,
    /// The variant other rows are compared with (DeLong) in reports.
    #[serde(default)]
    reference: Option<String>,
    /// How reports lay the results out.
    #[serde(default)]
    report: Option<Layout>,
    /// Notes the reports print under the experiment's tables.
    #[serde(default)]
    notes: Vec<String>,
}

/// How reports lay an experiment's results out (`[experiment] report = ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// One row per method, AUC (the paper's Table 1).
    Methods,
    /// The ablation switches as check marks, AUC (Table 2).
    Ablation,
    /// Attribute accuracy (Table 3).
    Attributes,
    /// One row per axis combination (a sweep).
    Sweep,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    set: Table,
    /// `false` lists the row in plans and tables without running it.
    #[serde(default = "yes")]
    implemented: bool,
    #[serde(default)]
    note: Option<String>,
    /// The paper's figures for this row (free keys, read by reports).
    #[serde(default)]
    paper: Table,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(default)]
    description: String,
    #[serde(default)]
    seeds: Option<Vec<u64>>,
    #[serde(default)]
    set: Table,
    /// Replaces the values of `[matrix]` axes (a smaller grid for a quick profile).
    #[serde(default)]
    matrix: Table,
    /// Per variant, settings applied after the variant's own `set` under this
    /// profile (e.g. a row's block widths at the profile's latent size).
    #[serde(default)]
    variant: BTreeMap<String, Table>,
    #[serde(default)]
    slurm: Option<crate::slurm::SlurmConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContrast {
    #[serde(default)]
    name: Option<String>,
    a: String,
    b: String,
    #[serde(default)]
    kind: ContrastKind,
    #[serde(default)]
    margin: Option<f64>,
    #[serde(default)]
    metric: ContrastMetric,
}

/// What a contrast claims (`[[contrast]] kind = ...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContrastKind {
    /// The rows differ (two-sided).
    #[default]
    Superiority,
    /// The rows agree within the margin (TOST).
    Equivalence,
}

/// What a contrast compares (`[[contrast]] metric = ...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContrastMetric {
    /// The test AUC.
    #[default]
    Auc,
    /// The attribute accuracy (mean over the clusters).
    AttrAcc,
}

/// A comparison the experiment declares: row `a` minus row `b`, per seed on
/// their common test samples, averaged over the seeds both rows ran.
#[derive(Clone, Debug, PartialEq)]
pub struct Contrast {
    /// `a-b` unless named.
    pub name: String,
    pub a: String,
    pub b: String,
    pub kind: ContrastKind,
    /// The equivalence margin; for a superiority contrast the smallest
    /// difference worth resolving (a wider CI is "below resolution").
    pub margin: f64,
    pub metric: ContrastMetric,
}

/// The resolution margin of a superiority contrast that names none.
pub const DEFAULT_MARGIN: f64 = 0.02;

/// A named row of the experiment (a row of a paper table).
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    pub label: String,
    /// Flattened `set`: dotted key -> value.
    pub set: Vec<(String, Value)>,
    pub implemented: bool,
    pub note: Option<String>,
    pub paper: Table,
}

/// A named profile (`smoke`, `quick`, `paper`, ...).
#[derive(Clone, Debug)]
pub struct Profile {
    pub description: String,
    pub seeds: Option<Vec<u64>>,
    pub set: Vec<(String, Value)>,
    /// Axis key -> the values that replace the `[matrix]` axis's.
    pub matrix: Vec<(String, Vec<Value>)>,
    /// Variant name -> settings applied after the variant's own.
    pub variant_set: Vec<(String, Vec<(String, Value)>)>,
    pub slurm: Option<crate::slurm::SlurmConfig>,
}

/// One axis: its assignments, each a list of (key, value) set together
/// (one pair for a `[matrix]` axis, several for a `[[zip]]` group).
#[derive(Clone, Debug)]
pub struct Axis {
    /// Where the axis is defined, for messages (`matrix` or `zip[1]`).
    pub origin: String,
    pub keys: Vec<String>,
    pub assignments: Vec<Vec<(String, Value)>>,
}

/// A loaded experiment file.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub seeds: Vec<u64>,
    pub default_profile: Option<String>,
    pub reference: Option<String>,
    /// The layout the file asks for ([`Experiment::layout`] fills in the default).
    pub report: Option<Layout>,
    /// Notes for the experiment's tables.
    pub notes: Vec<String>,
    pub base: Table,
    pub axes: Vec<Axis>,
    pub variants: Vec<Variant>,
    pub include: Vec<Vec<(String, Value)>>,
    pub exclude: Vec<Vec<(String, Value)>>,
    pub profiles: BTreeMap<String, Profile>,
    /// The comparisons reports compute, in file order.
    pub contrasts: Vec<Contrast>,
    pub slurm: Option<crate::slurm::SlurmConfig>,
    /// `--set` and `--seeds` from the command line ([`Experiment::with_overrides`]).
    pub overrides: Overrides,
    lines: BTreeMap<String, usize>,
    /// The file's lines, to quote in errors.
    source: Vec<String>,
}

/// One expanded job before the trainer resolves it.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub variant: Option<String>,
    /// What identifies the job within the experiment: `variant`, then axis
    /// keys in file order, then `seed`.
    pub params: Vec<(String, Value)>,
    pub seed: u64,
    /// The merged (unresolved) job config.
    pub config: Table,
    /// The dotted keys the experiment set (for locating errors).
    pub set_keys: Vec<String>,
}

impl Experiment {
    /// Reads and checks an experiment file.
    pub fn load(path: &Path) -> Result<Experiment, SweepError> {
        let text = std::fs::read_to_string(path).map_err(|source| SweepError::Io { path: path.into(), action: "cannot read", source })?;
        Self::parse(path, &text)
    }

    /// Parses an experiment from text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Experiment, SweepError> {
        let raw: RawExperiment = toml::from_str(text).map_err(|e| {
            let mut msg = e.to_string().trim_end().to_string();
            if msg.contains("unknown field") && !msg.contains("expected") {
                msg.push_str(&format!("; valid top-level keys: {TOP_KEYS}"));
            }
            SweepError::File { path: path.into(), line: None, message: msg }
        })?;
        let mut exp = Experiment {
            path: path.into(),
            name: raw.experiment.name,
            description: raw.experiment.description,
            seeds: raw.experiment.seeds.unwrap_or_else(|| vec![0]),
            default_profile: raw.experiment.default_profile,
            reference: raw.experiment.reference,
            report: raw.experiment.report,
            notes: raw.experiment.notes,
            base: raw.base,
            axes: Vec::new(),
            variants: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            profiles: BTreeMap::new(),
            contrasts: Vec::new(),
            slurm: raw.slurm,
            overrides: Overrides::default(),
            lines: line_index(text),
            source: text.lines().map(str::to_string).collect(),
        };
        if exp.seeds.is_empty() {
            return Err(exp.err("experiment.seeds", "is empty; give at least one seed".into()));
        }
        exp.axes = exp.matrix_axes(&raw.matrix)?;
        for (i, z) in raw.zip.iter().enumerate() {
            if let Some(axis) = exp.zip_axis(i, z)? {
                exp.axes.push(axis);
            }
        }
        if let Some(s) = &raw.search {
            exp.axes.push(exp.search_axis(s)?);
        }
        exp.check_axes()?;
        exp.variants = exp.variants_of(raw.variant)?;
        exp.include = exp.rules("include", &raw.include)?;
        exp.exclude = exp.rules("exclude", &raw.exclude)?;
        if let Some(r) = &exp.reference {
            if !exp.variants.iter().any(|v| &v.name == r) {
                return Err(exp.err("experiment.reference", format!("`{r}` is not a variant; variants: {}", exp.variant_names())));
            }
        }
        for (name, p) in raw.profile {
            let profile = exp.profile_of(&name, p)?;
            exp.profiles.insert(name, profile);
        }
        if let Some(d) = &exp.default_profile {
            if !exp.profiles.contains_key(d) {
                return Err(exp.err("experiment.default_profile", format!("`{d}` is not a profile; profiles: {}", exp.profile_names())));
            }
        }
        exp.contrasts = raw.contrast.into_iter().enumerate().map(|(i, c)| exp.contrast_of(i, c)).collect::<Result<_, _>>()?;
        Ok(exp)
    }

    /// A `[[contrast]]`, checked: two different implemented rows, and a
    /// positive margin (required for an equivalence contrast).
    fn contrast_of(&self, i: usize, c: RawContrast) -> Result<Contrast, SweepError> {
        for (key, row) in [("a", &c.a), ("b", &c.b)] {
            if !self.variants.iter().any(|v| &v.name == row && v.implemented) {
                let problem = format!("`{row}` is not an implemented row; rows: {}", self.variant_names());
                return Err(self.err(&format!("contrast[{i}].{key}"), problem));
            }
        }
        if c.a == c.b {
            return Err(self.err(&format!("contrast[{i}].b"), format!("is `{}` too; a contrast compares two rows", c.a)));
        }
        let margin = match (c.kind, c.margin) {
            (_, Some(m)) if !(m > 0.0 && m.is_finite()) => {
                return Err(self.err(&format!("contrast[{i}].margin"), format!("{m}: expected a difference > 0 (e.g. 0.02)")))
            }
            (ContrastKind::Equivalence, None) => {
                let problem = "an equivalence contrast needs `margin` (the largest difference that counts as equal, e.g. 0.02)";
                return Err(self.err(&format!("contrast[{i}]"), problem.into()));
            }
            (_, m) => m.unwrap_or(DEFAULT_MARGIN),
        };
        let name = c.name.unwrap_or_else(|| format!("{}-{}", c.a, c.b));
        Ok(Contrast { name, a: c.a, b: c.b, kind: c.kind, margin, metric: c.metric })
    }

    /// The `[matrix]` axes, one per key.
    fn matrix_axes(&self, matrix: &Table) -> Result<Vec<Axis>, SweepError> {
        let mut axes = Vec::new();
        for (key, v) in flatten(matrix, "") {
            let Value::Array(values) = v else {
                return Err(self.err(&format!("matrix.{key}"), format!("expected a list of values, found {}", v.type_str())));
            };
            if values.is_empty() {
                return Err(self.err(&format!("matrix.{key}"), "is an empty list; an axis needs at least one value".into()));
            }
            let assignments = values.iter().map(|x| vec![(key.clone(), x.clone())]).collect();
            axes.push(Axis { origin: "matrix".into(), keys: vec![key], assignments });
        }
        Ok(axes)
    }

    /// The `[search]` points as one axis (origin `search.space`).
    fn search_axis(&self, s: &crate::search::RawSearch) -> Result<Axis, SweepError> {
        let at = |(key, problem): crate::search::SearchError| self.err(&key, problem);
        let dims = crate::search::parse_space(&s.space).map_err(at)?;
        let assignments = crate::search::points(s.kind, s.n, s.seed, &dims).map_err(at)?;
        Ok(Axis { origin: "search.space".into(), keys: dims.into_iter().map(|(k, _)| k).collect(), assignments })
    }

    /// A `[[zip]]` group as one axis (`None` for an empty group).
    fn zip_axis(&self, i: usize, z: &Table) -> Result<Option<Axis>, SweepError> {
        let flat = flatten(z, "");
        let mut len: Option<(String, usize)> = None;
        for (key, v) in &flat {
            let Value::Array(values) = v else {
                return Err(self.err(&format!("zip[{i}].{key}"), format!("expected a list of values, found {}", v.type_str())));
            };
            match &len {
                None => len = Some((key.clone(), values.len())),
                Some((k0, n)) if *n != values.len() => {
                    let problem = format!(
                        "has {} values but `{k0}` in the same zip group has {n}; zipped lists must have equal lengths",
                        values.len()
                    );
                    return Err(self.err(&format!("zip[{i}].{key}"), problem));
                }
                _ => {}
            }
        }
        let Some((_, n)) = len else { return Ok(None) };
        if n == 0 {
            return Err(self.err(&format!("zip[{i}]"), "has empty lists".into()));
        }
        let assignments =
            (0..n).map(|j| flat.iter().map(|(k, v)| (k.clone(), v.as_array().expect("checked")[j].clone())).collect()).collect();
        Ok(Some(Axis { origin: format!("zip[{i}]"), keys: flat.iter().map(|(k, _)| k.clone()).collect(), assignments }))
    }

    /// No key is varied twice, and the seed is no axis.
    fn check_axes(&self) -> Result<(), SweepError> {
        let mut seen = BTreeSet::new();
        for a in &self.axes {
            for k in &a.keys {
                if !seen.insert(k.clone()) {
                    return Err(self.err(&format!("{}.{k}", a.origin), "is varied by two axes; put it in one".into()));
                }
                if k == "seed" {
                    return Err(self.err(&format!("{}.{k}", a.origin), "seeds are an axis of their own: use experiment.seeds".into()));
                }
            }
        }
        Ok(())
    }

    fn variants_of(&self, raw: Vec<RawVariant>) -> Result<Vec<Variant>, SweepError> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for (i, v) in raw.into_iter().enumerate() {
            if !names.insert(v.name.clone()) {
                return Err(self.err(&format!("variant[{i}].name"), format!("`{}` is used by two variants", v.name)));
            }
            let label = v.label.unwrap_or_else(|| v.name.clone());
            out.push(Variant { label, name: v.name, set: flatten(&v.set, ""), implemented: v.implemented, note: v.note, paper: v.paper });
        }
        Ok(out)
    }

    /// The variant names, comma-separated.
    pub fn variant_names(&self) -> String {
        self.variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// `[[include]]` or `[[exclude]]` rules, checked (`kind` names them).
    fn rules(&self, kind: &str, rules: &[Table]) -> Result<Vec<Vec<(String, Value)>>, SweepError> {
        let mut out = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let flat = flatten(r, "");
            if flat.is_empty() {
                return Err(self.err(&format!("{kind}[{i}]"), "is empty".into()));
            }
            for (k, v) in &flat {
                if k == "variant" {
                    let Some(var) = v.as_str().and_then(|n| self.variants.iter().find(|x| x.name == n)) else {
                        return Err(
                            self.err(&format!("{kind}[{i}].variant"), format!("{v} is not a variant; variants: {}", self.variant_names()))
                        );
                    };
                    if kind == "include" && !var.implemented {
                        let problem = format!("`{}` is marked implemented = false and cannot run", var.name);
                        return Err(self.err(&format!("{kind}[{i}].variant"), problem));
                    }
                }
                if k == "seed" && !v.as_integer().is_some_and(|x| x >= 0) {
                    return Err(self.err(&format!("{kind}[{i}].seed"), format!("{v}: expected a seed (an integer >= 0)")));
                }
            }
            out.push(flat);
        }
        Ok(out)
    }

    /// A `[profile.<name>]`, checked against the `[matrix]` axes.
    fn profile_of(&self, name: &str, p: RawProfile) -> Result<Profile, SweepError> {
        if p.seeds.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(self.err(&format!("profile.{name}.seeds"), "is empty".into()));
        }
        let mut matrix = Vec::new();
        for (key, v) in flatten(&p.matrix, "") {
            let at = format!("profile.{name}.matrix.{key}");
            if !self.axes.iter().any(|a| a.origin == "matrix" && a.keys == [key.clone()]) {
                return Err(self.err(&at, "is not an axis of [matrix]; a profile can only change the values of existing axes".into()));
            }
            match v {
                Value::Array(values) if !values.is_empty() => matrix.push((key, values)),
                _ => return Err(self.err(&at, "expected a non-empty list of values".into())),
            }
        }
        let mut variant_set = Vec::new();
        for (v, t) in p.variant {
            if !self.variants.iter().any(|x| x.name == v) {
                let problem = format!("is not a variant; variants: {}", self.variant_names());
                return Err(self.err(&format!("profile.{name}.variant.{v}"), problem));
            }
            variant_set.push((v, flatten(&t, "")));
        }
        Ok(Profile { description: p.description, seeds: p.seeds, set: flatten(&p.set, ""), matrix, variant_set, slurm: p.slurm })
    }

    /// How reports lay the results out: the file's `report`, else `sweep`
    /// for a file without variants and `methods` for one with.
    pub fn layout(&self) -> Layout {
        self.report.unwrap_or(if self.variants.is_empty() { Layout::Sweep } else { Layout::Methods })
    }

    /// The profile names, comma-separated.
    pub fn profile_names(&self) -> String {
        if self.profiles.is_empty() {
            "(none)".into()
        } else {
            self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }

    /// The profile to use: the one asked for, else the default, else none.
    pub fn select_profile(&self, asked: Option<&str>) -> Result<Option<(&str, &Profile)>, SweepError> {
        match asked.or(self.default_profile.as_deref()) {
            None => Ok(None),
            Some(name) => match self.profiles.get_key_value(name) {
                Some((k, p)) => Ok(Some((k.as_str(), p))),
                None => Err(SweepError::File {
                    path: self.path.clone(),
                    line: None,
                    message: format!("no profile `{name}`; profiles: {}", self.profile_names()),
                }),
            },
        }
    }

    /// The line of a dotted key path in the file (`variant[2].set.model.tau`).
    pub fn line_of(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }

    /// An error at a key of this file.
    pub fn err(&self, key: &str, problem: String) -> SweepError {
        self.error_at(key, format!("`{key}` {problem}"))
    }

    /// An error at the line of `key` (a dotted key path, or `--set KEY`),
    /// quoting that line of the file.
    pub fn error_at(&self, key: &str, message: String) -> SweepError {
        let line = self.line_of(key);
        let quote = line.and_then(|l| self.source.get(l - 1)).map(|t| format!("\n    {} | {}", line.unwrap_or(0), t.trim_end()));
        SweepError::File { path: self.path.clone(), line, message: format!("{message}{}", quote.unwrap_or_default()) }
    }

    /// Applies command-line overrides (`--set`, `--seeds`) after the
    /// profile and the variants. A `--set` of a `[matrix]` axis key replaces
    /// the axis's values (a list gives several).
    pub fn with_overrides(mut self, o: Overrides) -> Result<Experiment, SweepError> {
        for (k, v) in &o.set {
            if self.is_matrix_axis(k) && matches!(v, Value::Array(a) if a.is_empty()) {
                return Err(SweepError::Usage(format!("--set {k}=[]: `{k}` is an axis of [matrix]; give one value or a non-empty list")));
            }
        }
        if o.seeds.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(SweepError::Usage("--seeds: give at least one seed".into()));
        }
        self.overrides = o;
        Ok(self)
    }

    fn is_matrix_axis(&self, key: &str) -> bool {
        self.axes.iter().any(|a| a.origin == "matrix" && a.keys == [key])
    }

    /// The `--set` pairs that are not `[matrix]` axes (applied to every job).
    fn set_overrides(&self) -> impl Iterator<Item = &(String, Value)> {
        self.overrides.set.iter().filter(|(k, _)| !self.is_matrix_axis(k))
    }

    /// The name a plan is recorded under: the profile, with the overrides'
    /// tag (`quick+set-1a2b3c4d`) when there are any.
    pub fn plan_label(&self, profile: Option<&str>) -> Option<String> {
        match (profile, self.overrides.tag()) {
            (p, None) => p.map(str::to_string),
            (p, Some(tag)) => Some(format!("{}+{tag}", p.unwrap_or("default"))),
        }
    }

    /// The base config with the profile's settings applied.
    pub fn profiled_base(&self, profile: Option<&Profile>) -> Table {
        let mut t = self.base.clone();
        for (k, v) in profile.map(|p| p.set.as_slice()).unwrap_or_default().iter().chain(self.set_overrides()) {
            set_path(&mut t, k, v.clone());
        }
        t
    }

    /// Expands the experiment: variants x axes x seeds, minus excluded
    /// combinations, plus included ones. Variants marked not implemented are
    /// skipped (the plan lists them).
    pub fn expand(&self, profile: Option<&Profile>) -> Vec<JobSpec> {
        self.expand_with_defaults(profile, None)
    }

    /// [`Experiment::expand`], with exclude rules also matching the values a
    /// job takes from `defaults` (the trainer's resolved base config) for
    /// keys the experiment does not set.
    pub fn expand_with_defaults(&self, profile: Option<&Profile>, defaults: Option<&Table>) -> Vec<JobSpec> {
        let base = self.profiled_base(profile);
        let seeds = self.overrides.seeds.clone().or_else(|| profile.and_then(|p| p.seeds.clone())).unwrap_or_else(|| self.seeds.clone());
        let profile_keys: Vec<String> = profile.map(|p| p.set.iter().map(|(k, _)| k.clone()).collect()).unwrap_or_default();
        let rows: Vec<Option<&Variant>> =
            if self.variants.is_empty() { vec![None] } else { self.variants.iter().filter(|v| v.implemented).map(Some).collect() };
        let axes = self.axes_under(profile);
        let mut combos: Vec<Vec<&(String, Value)>> = vec![Vec::new()];
        for axis in &axes {
            let mut next = Vec::with_capacity(combos.len() * axis.assignments.len());
            for c in &combos {
                for a in &axis.assignments {
                    let mut c2 = c.clone();
                    c2.extend(a.iter());
                    next.push(c2);
                }
            }
            combos = next;
        }
        let mut out = Vec::new();
        let mut make = |variant: Option<&Variant>, settings: &[&(String, Value)], seed: u64, excluded_check: bool| {
            let mut cfg = base.clone();
            let mut set_keys = profile_keys.clone();
            if let Some(v) = variant {
                let under_profile = profile.and_then(|p| p.variant_set.iter().find(|(n, _)| *n == v.name)).map(|(_, s)| s.as_slice());
                for (k, val) in v.set.iter().chain(under_profile.unwrap_or_default()) {
                    set_path(&mut cfg, k, val.clone());
                    set_keys.push(k.clone());
                }
            }
            for (k, val) in settings.iter().copied().chain(self.set_overrides()) {
                set_path(&mut cfg, k, val.clone());
                set_keys.push(k.clone());
            }
            cfg.insert("seed".into(), Value::Integer(seed as i64));
            if excluded_check && self.exclude.iter().any(|rule| matches(rule, variant.map(|v| v.name.as_str()), &cfg, defaults)) {
                return;
            }
            let mut params = Vec::new();
            if let Some(v) = variant {
                params.push(("variant".to_string(), Value::String(v.name.clone())));
            }
            params.extend(settings.iter().map(|(k, v)| (k.clone(), v.clone())));
            params.push(("seed".to_string(), Value::Integer(seed as i64)));
            out.push(JobSpec { variant: variant.map(|v| v.name.clone()), params, seed, config: cfg, set_keys });
        };
        for row in &rows {
            for combo in &combos {
                for &seed in &seeds {
                    make(*row, combo, seed, true);
                }
            }
        }
        for inc in &self.include {
            let variant = inc
                .iter()
                .find(|(k, _)| k == "variant")
                .and_then(|(_, v)| v.as_str())
                .and_then(|n| self.variants.iter().find(|x| x.name == n));
            let settings: Vec<&(String, Value)> = inc.iter().filter(|(k, _)| k != "variant" && k != "seed").collect();
            let inc_seeds: Vec<u64> = match inc.iter().find(|(k, _)| k == "seed").map(|(_, v)| v) {
                Some(Value::Integer(s)) => vec![*s as u64],
                _ => seeds.clone(),
            };
            for seed in inc_seeds {
                make(variant, &settings, seed, false);
            }
        }
        out
    }

    /// The axes with the profile's and then the overrides' values.
    fn axes_under(&self, profile: Option<&Profile>) -> Vec<Axis> {
        let mut axes = self.axes.clone();
        let from_profile = profile.map(|p| p.matrix.clone()).unwrap_or_default();
        let from_set = self.overrides.set.iter().map(|(k, v)| match v {
            Value::Array(values) => (k.clone(), values.clone()),
            one => (k.clone(), vec![one.clone()]),
        });
        for (key, values) in from_profile.into_iter().chain(from_set) {
            if let Some(a) = axes.iter_mut().find(|a| a.origin == "matrix" && a.keys == [key.clone()]) {
                a.assignments = values.iter().map(|v| vec![(key.clone(), v.clone())]).collect();
            }
        }
        axes
    }

    /// Every dotted job-config key the experiment names, with where.
    pub fn named_keys(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self.overrides.set.iter().map(|(k, _)| (k.clone(), format!("--set {k}"))).collect();
        for a in &self.axes {
            v.extend(a.keys.iter().map(|k| (k.clone(), format!("{}.{k}", a.origin))));
        }
        for (i, var) in self.variants.iter().enumerate() {
            v.extend(var.set.iter().map(|(k, _)| (k.clone(), format!("variant[{i}].set.{k}"))));
        }
        for (kind, rules) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (i, r) in rules.iter().enumerate() {
                v.extend(r.iter().filter(|(k, _)| k != "variant" && k != "seed").map(|(k, _)| (k.clone(), format!("{kind}[{i}].{k}"))));
            }
        }
        for (name, p) in &self.profiles {
            v.extend(p.set.iter().map(|(k, _)| (k.clone(), format!("profile.{name}.set.{k}"))));
            for (var, set) in &p.variant_set {
                v.extend(set.iter().map(|(k, _)| (k.clone(), format!("profile.{name}.variant.{var}.{k}"))));
            }
        }
        v
    }
}

/// Does a rule (dotted key -> value, plus `variant`) match a job?
fn matches(rule: &[(String, Value)], variant: Option<&str>, cfg: &Table, defaults: Option<&Table>) -> bool {
    rule.iter().all(|(k, want)| {
        if k == "variant" {
            return want.as_str() == variant;
        }
        get_path(cfg, k).or_else(|| defaults.and_then(|d| get_path(d, k))).is_some_and(|have| values_equal(have, want))
    })
}

/// TOML values equal, numbers compared as numbers (integers and floats
/// alike, floats to a relative 1e-12, so `0.1` written twice always matches).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0),
        (Value::Integer(x), Value::Float(y)) | (Value::Float(y), Value::Integer(x)) => (*x as f64 - y).abs() < 1e-12,
        _ => a == b,
    }
}

/// Flattens nested tables into dotted keys; arrays and scalars are leaves.
pub fn flatten(t: &Table, prefix: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (k, v) in t {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            Value::Table(sub) => out.extend(flatten(sub, &key)),
            _ => out.push((key, v.clone())),
        }
    }
    out
}

/// Maps dotted key paths (`variant[2].set.model.tau`) to 1-based lines.
fn line_index(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let Ok(doc) = toml::de::DeTable::parse(text) else { return out };
    let line_at = |offset: usize| text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1;
    fn walk(t: &toml::de::DeTable<'_>, prefix: &str, out: &mut BTreeMap<String, usize>, line_at: &dyn Fn(usize) -> usize) {
        for (k, v) in t.iter() {
            let key = if prefix.is_empty() { k.get_ref().to_string() } else { format!("{prefix}.{}", k.get_ref()) };
            out.entry(key.clone()).or_insert_with(|| line_at(k.span().start));
            match v.get_ref() {
                toml::de::DeValue::Table(sub) => walk(sub, &key, out, line_at),
                toml::de::DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let toml::de::DeValue::Table(sub) = item.get_ref() {
                            let ik = format!("{key}[{i}]");
                            out.entry(ik.clone()).or_insert_with(|| line_at(item.span().start));
                            walk(sub, &ik, out, line_at);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    walk(doc.get_ref(), "", &mut out, &line_at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[experiment]
name = "t"
seeds = [0, 1]

[base]
model.tau = 0.4

[matrix]
model.p = [0.1, 0.2, 0.3]

[[zip]]
model.h_ma_dim = [8, 16]
model.h_mi_dim = [4, 8]

[[variant]]
name = "a"
set.model.rec = false

[[variant]]
name = "b"
set.model.rec = true

[[exclude]]
variant = "a"
model.p = 0.3

[[include]]
variant = "b"
model.p = 0.9
seed = 7

[profile.q]
seeds = [5]
set.model.tau = 0.1
matrix.model.p = [0.2]
"#;

    #[test]
    fn expansion_is_the_product_minus_excludes_plus_includes() {
        let e = Experiment::parse(Path::new("t.toml"), FILE).unwrap();
        let jobs = e.expand(None);
        // 2 variants x 3 p x 2 zip x 2 seeds = 24, minus a/p=0.3 (2 zip x 2 seeds = 4), plus 1 included.
        assert_eq!(jobs.len(), 24 - 4 + 1);
        let last = jobs.last().unwrap();
        assert_eq!(last.seed, 7);
        assert_eq!(get_path(&last.config, "model.p"), Some(&Value::Float(0.9)));
        assert_eq!(get_path(&last.config, "model.rec"), Some(&Value::Boolean(true)));
        // zip keys vary together
        for j in &jobs[..20] {
            let ma = get_path(&j.config, "model.h_ma_dim").unwrap().as_integer().unwrap();
            let mi = get_path(&j.config, "model.h_mi_dim").unwrap().as_integer().unwrap();
            assert_eq!(ma, mi * 2);
        }
        assert!(!jobs.iter().any(|j| j.variant.as_deref() == Some("a") && get_path(&j.config, "model.p") == Some(&Value::Float(0.3))));
        let keys: Vec<&str> = jobs[0].params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["variant", "model.p", "model.h_ma_dim", "model.h_mi_dim", "seed"]);
        // The profile: its seeds, its settings, a smaller grid.
        let (_, q) = e.select_profile(Some("q")).unwrap().unwrap();
        let jobs = e.expand(Some(q));
        assert_eq!(jobs.len(), 2 * 2 + 1);
        assert!(jobs[..4].iter().all(|j| j.seed == 5 && get_path(&j.config, "model.p") == Some(&Value::Float(0.2))));
        assert!(jobs.iter().all(|j| get_path(&j.config, "model.tau") == Some(&Value::Float(0.1))));
    }

    #[test]
    fn a_search_is_one_axis_of_n_points_under_the_variants_and_seeds() {
        let text = "[experiment]\nname = \"s\"\nseeds = [0, 1]\n\n[[variant]]\nname = \"a\"\n\n[[variant]]\nname = \"b\"\n\n\
                    [search]\nkind = \"sobol\"\nn = 5\nseed = 3\n\
                    space = { \"model.tau\" = { uniform = [0.1, 0.9] }, \"model.p\" = { uniform = [0.1, 0.9] } }\n";
        let e = Experiment::parse(Path::new("t.toml"), text).unwrap();
        let jobs = e.expand(None);
        assert_eq!(jobs.len(), 2 * 5 * 2);
        let keys: Vec<&str> = jobs[0].params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["variant", "model.tau", "model.p", "seed"]);
        // Every variant and seed sees the same 5 points; the file gives them again.
        let point = |j: &JobSpec| (get_path(&j.config, "model.tau").cloned(), get_path(&j.config, "model.p").cloned());
        let a0: Vec<_> = jobs.iter().filter(|j| j.variant.as_deref() == Some("a") && j.seed == 0).map(point).collect();
        let b1: Vec<_> = jobs.iter().filter(|j| j.variant.as_deref() == Some("b") && j.seed == 1).map(point).collect();
        assert_eq!((a0.len(), &a0), (5, &b1));
        let again = Experiment::parse(Path::new("t.toml"), text).unwrap().expand(None);
        assert_eq!(jobs.iter().map(|j| &j.params).collect::<Vec<_>>(), again.iter().map(|j| &j.params).collect::<Vec<_>>());
        // A key the search and the matrix both vary, and a bad range: errors at the line.
        let both = format!("{text}\n[matrix]\nmodel.p = [0.2]\n");
        let err = Experiment::parse(Path::new("t.toml"), &both).unwrap_err().to_string();
        assert!(err.contains("model.p") && err.contains("two axes"), "{err}");
        let bad = text.replace("uniform = [0.1, 0.9] }, ", "uniform = [0.9, 0.1] }, ");
        let err = Experiment::parse(Path::new("t.toml"), &bad).unwrap_err().to_string();
        assert!(err.contains("t.toml:15:") && err.contains("search.space.model.tau") && err.contains("lo < hi"), "{err}");
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let bad = FILE.replace("model.h_mi_dim = [4, 8]", "model.h_mi_dim = [4, 8, 9]");
        let e = Experiment::parse(Path::new("t.toml"), &bad).unwrap_err().to_string();
        assert!(e.starts_with("t.toml:14:") && e.contains("zip[0].model.h_mi_dim") && e.contains("equal lengths"), "{e}");
        let bad = FILE.replace("variant = \"a\"", "variant = \"zz\"");
        let e = Experiment::parse(Path::new("t.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("t.toml:25:") && e.contains("variants: a, b"), "{e}");
        let bad = FILE.replace("[matrix]", "[matrx]");
        let e = Experiment::parse(Path::new("t.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("matrx") && e.contains("matrix"), "{e}");
        let bad = FILE.replace("model.p = [0.1, 0.2, 0.3]", "model.p = 0.1");
        let e = Experiment::parse(Path::new("t.toml"), &bad).unwrap_err().to_string();
        assert!(e.contains("t.toml:10:") && e.contains("expected a list"), "{e}");
    }

    #[test]
    fn contrasts_name_rows_that_exist_and_equivalence_needs_a_positive_margin() {
        let ok = format!(
            "{FILE}\n[[contrast]]\na = \"b\"\nb = \"a\"\n\n[[contrast]]\na = \"a\"\nb = \"b\"\nkind = \"equivalence\"\nmargin = 0.03\n"
        );
        let e = Experiment::parse(Path::new("t.toml"), &ok).unwrap();
        assert_eq!(e.contrasts.len(), 2);
        assert_eq!((e.contrasts[0].name.as_str(), e.contrasts[0].margin), ("b-a", DEFAULT_MARGIN));
        assert_eq!((e.contrasts[1].kind, e.contrasts[1].margin), (ContrastKind::Equivalence, 0.03));
        let bad = |extra: &str| Experiment::parse(Path::new("t.toml"), &format!("{FILE}\n{extra}")).unwrap_err().to_string();
        let e = bad("[[contrast]]\na = \"row9\"\nb = \"a\"\n");
        assert!(e.contains("t.toml:") && e.contains("contrast[0].a") && e.contains("row9") && e.contains("rows: a, b"), "{e}");
        let e = bad("[[contrast]]\na = \"a\"\nb = \"b\"\nkind = \"equivalence\"\n");
        assert!(e.contains("contrast[0]") && e.contains("needs `margin`"), "{e}");
        let e = bad("[[contrast]]\na = \"a\"\nb = \"b\"\nmargin = 0.0\n");
        assert!(e.contains("contrast[0].margin") && e.contains("> 0"), "{e}");
        let e = bad("[[contrast]]\na = \"a\"\nb = \"b\"\nkind = \"larger\"\n");
        assert!(e.contains("larger") && e.contains("superiority") && e.contains("equivalence"), "{e}");
        let e = bad("[profile.q.variant.zz]\nmodel = { tau = 0.1 }\n");
        assert!(e.contains("profile.q.variant.zz") && e.contains("variants: a, b"), "{e}");
    }

    #[test]
    fn overrides_apply_after_the_profile_and_the_variants() {
        use crate::overrides::{Overrides, SetArg};
        let set = |args: &[&str], seeds: Option<Vec<u64>>| {
            let args: Vec<SetArg> = args.iter().map(|a| a.parse().unwrap()).collect();
            Experiment::parse(Path::new("t.toml"), FILE).unwrap().with_overrides(Overrides::new(&args, seeds)).unwrap()
        };
        // A plain key: every job, over the profile's tau and variant a's rec = false.
        let e = set(&["model.tau=0.7", "model.rec=true"], Some(vec![3, 4]));
        let (_, q) = e.select_profile(Some("q")).unwrap().unwrap();
        let jobs = e.expand(Some(q));
        assert_eq!(jobs.len(), 2 * 2 * 2 + 1, "variants x zip x the two --seeds, plus the include");
        assert!(jobs.iter().all(|j| get_path(&j.config, "model.tau") == Some(&Value::Float(0.7))));
        assert!(jobs.iter().all(|j| get_path(&j.config, "model.rec") == Some(&Value::Boolean(true))));
        assert_eq!(jobs.iter().filter(|j| j.seed == 3).count(), 4);
        assert_eq!(jobs.last().unwrap().seed, 7, "an include's own seed stays");
        assert!(jobs[0].set_keys.iter().any(|k| k == "model.tau"));
        assert_eq!(get_path(&e.profiled_base(Some(q)), "model.tau"), Some(&Value::Float(0.7)), "resolution sees it");
        // A [matrix] axis key replaces the axis's values, over the profile's.
        let e = set(&["model.p=[0.5, 0.6]"], None);
        let (_, q) = e.select_profile(Some("q")).unwrap().unwrap();
        let ps: BTreeSet<String> = e.expand(Some(q)).iter().map(|j| get_path(&j.config, "model.p").unwrap().to_string()).collect();
        assert_eq!(ps.into_iter().collect::<Vec<_>>(), ["0.5", "0.6", "0.9"], "the include keeps its own");
        assert!(Experiment::parse(Path::new("t.toml"), FILE)
            .unwrap()
            .with_overrides(Overrides::new(&["model.p=[]".parse().unwrap()], None))
            .unwrap_err()
            .to_string()
            .contains("non-empty list"));
        // Plans with overrides are labelled apart; where the key is named, errors say `--set`.
        assert_eq!(e.plan_label(Some("q")).unwrap(), format!("q+{}", e.overrides.tag().unwrap()));
        assert_eq!(set(&[], None).plan_label(Some("q")).as_deref(), Some("q"));
        assert!(e.named_keys().iter().any(|(k, w)| k == "model.p" && w == "--set model.p"));
    }

    #[test]
    fn file_errors_quote_their_line() {
        let e = Experiment::parse(Path::new("t.toml"), &FILE.replace("variant = \"a\"", "variant = \"zz\"")).unwrap_err().to_string();
        assert!(e.contains("t.toml:25:") && e.contains("\n    25 | variant = \"zz\""), "{e}");
    }

    #[test]
    fn a_profile_can_set_a_variants_keys_after_the_variants_own() {
        let text = format!("{FILE}\n[profile.q.variant.b]\nmodel = {{ rec = false, h_i_dim = 3 }}\n");
        let e = Experiment::parse(Path::new("t.toml"), &text).unwrap();
        let (_, q) = e.select_profile(Some("q")).unwrap().unwrap();
        // Variant b sets rec = true itself; under profile q it is false, and only b gets h_i_dim.
        for j in e.expand(Some(q)) {
            let b = j.variant.as_deref() == Some("b");
            assert_eq!(get_path(&j.config, "model.rec"), Some(&Value::Boolean(false)), "{:?}", j.params);
            assert_eq!(get_path(&j.config, "model.h_i_dim").is_some(), b);
        }
        let plain = e.expand(None);
        assert!(plain.iter().all(|j| get_path(&j.config, "model.h_i_dim").is_none()), "only under the profile");
        assert!(plain.iter().any(|j| get_path(&j.config, "model.rec") == Some(&Value::Boolean(true))));
    }
}
