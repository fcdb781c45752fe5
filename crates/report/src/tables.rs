//! Tables in the paper's layouts, rendered as Markdown, LaTeX (booktabs) and
//! CSV (numbers in their own columns, for other tools), each with its
//! contrasts block beneath and notes that say what every interval is.

use std::path::{Path, PathBuf};

use dae_sweep::experiment::{ContrastKind, ContrastMetric, Layout, Variant};
use dae_sweep::plan::show;
use toml::Value;

use crate::aggregate::{Analysis, RowStats, Stat};
use crate::collect::{Collection, RunRecord};
use crate::contrasts::{ContrastResult, RESAMPLING};
use crate::ReportError;

/// A rendered-ready table.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub name: String,
    pub title: String,
    pub columns: Vec<String>,
    /// `l`, `c` or `r` per column.
    pub align: Vec<char>,
    pub rows: Vec<Vec<String>>,
    /// Tables rendered beneath this one (the contrasts).
    pub sub: Vec<Table>,
    pub notes: Vec<String>,
    pub csv_columns: Vec<String>,
    pub csv_rows: Vec<Vec<String>>,
}

impl Table {
    fn new(name: &str, title: String, columns: &[&str], align: &[char], csv_columns: &[&str]) -> Table {
        Table {
            name: name.to_string(),
            title,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            align: align.to_vec(),
            rows: Vec::new(),
            sub: Vec::new(),
            notes: Vec::new(),
            csv_columns: csv_columns.iter().map(|c| c.to_string()).collect(),
            csv_rows: Vec::new(),
        }
    }
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "–".into()
    }
}

fn signed(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x < 0.0 {
        format!("−{:.3}", -x)
    } else {
        format!("+{x:.3}")
    }
}

fn pval(p: f64) -> String {
    if !p.is_finite() {
        "–".into()
    } else if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// `0.812 ± 0.014`, or `0.812` for one run.
pub fn mean_std(s: Option<Stat>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n < 2 || !s.std.is_finite() => num(s.mean),
        Some(s) => format!("{} ± {}", num(s.mean), num(s.std)),
    }
}

fn n_cell(r: &RowStats) -> String {
    let mut s = format!("{}", r.done);
    if r.done < r.planned {
        s = format!("{}/{}†", r.done, r.planned);
    }
    if r.failed > 0 {
        s.push_str(&format!(" ({} failed)", r.failed));
    }
    if r.damaged > 0 {
        s.push_str(&format!(" ({} damaged)", r.damaged));
    }
    s
}

fn ci_cell(ci: Option<(f64, (f64, f64))>) -> String {
    match ci {
        Some((_, (lo, hi))) => format!("[{}, {}]", num(lo), num(hi)),
        None => "–".into(),
    }
}

fn opt(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite()).map(|v| format!("{v}")).unwrap_or_default()
}

fn paper(v: Option<&Variant>, key: &str) -> Option<f64> {
    v.and_then(|v| v.paper.get(key)).and_then(|x| x.as_float().or(x.as_integer().map(|i| i as f64)))
}

fn set_value<'a>(v: &'a Variant, key: &str) -> Option<&'a Value> {
    v.set.iter().find(|(k, _)| k == key).map(|(_, x)| x)
}

fn check(v: Option<&Value>) -> String {
    if v.and_then(|x| x.as_bool()) == Some(true) {
        "✓".into()
    } else {
        String::new()
    }
}

fn variant<'a>(c: &'a Collection, r: &RowStats) -> Option<&'a Variant> {
    r.variant.as_ref().and_then(|v| c.experiment.variants.iter().find(|x| &x.name == v))
}

/// What every table says about its intervals and runs.
fn common_notes(c: &Collection, metric: &str) -> Vec<String> {
    let mut n = vec![format!(
        "{metric}: mean ± standard deviation (n − 1) over the seeds that finished (n; † fewer than planned). 95% CI: two-level bootstrap of the seed mean ({} resamples; seeds and test patients resampled, a patient's views together), so it includes seed-to-seed variance; where n = 1 it is the test patients' sampling alone.",
        RESAMPLING.resamples
    )];
    n.push(format!(
        "Profile {}: {} seed(s) planned per row{}. Each run's own test AUC has a DeLong 95% CI in its metrics.json (one run, one test set).",
        c.profile.as_deref().unwrap_or("(none)"),
        c.planned_seeds,
        c.encoder().map(|e| format!("; encoder {e}")).unwrap_or_default()
    ));
    n
}

/// Builds the experiment's table in its layout, with its contrasts beneath.
pub fn build(c: &Collection, a: &Analysis) -> Table {
    let mut t = match c.experiment.layout() {
        Layout::Ablation => ablation(c, &a.rows),
        Layout::Attributes => attributes(c, a),
        Layout::Sweep => sweep(c, &a.rows),
        Layout::Methods => methods(c, &a.rows),
    };
    if !a.contrasts.is_empty() {
        t.sub.push(contrast_table(c, &a.contrasts));
        t.notes.extend(contrast_notes(&a.contrasts));
    }
    t.notes.extend(missing_note(c));
    t.notes.extend(c.experiment.notes.iter().cloned());
    t
}

/// The planned runs the table lacks, with why (at most 8 named).
fn missing_note(c: &Collection) -> Option<String> {
    let missing: Vec<&RunRecord> = c.runs.iter().filter(|r| !r.is_done()).collect();
    if missing.is_empty() {
        return None;
    }
    let named: Vec<String> = missing
        .iter()
        .take(8)
        .map(|r| match &r.damage {
            Some(d) => format!("{} seed {} damaged ({}: {d})", r.label, r.seed, r.dir.display()),
            None => format!("{} seed {} {}", r.label, r.seed, r.status),
        })
        .collect();
    let more = if missing.len() > 8 { format!("; and {} more", missing.len() - 8) } else { String::new() };
    Some(format!(
        "Not in the table ({} of {} planned runs; `cargo xtask run` redoes damaged and missing ones): {}{more}.",
        missing.len(),
        c.runs.len(),
        named.join("; ")
    ))
}

/// The paper's absolute figures, for a note: they are of another data set.
fn paper_note(c: &Collection, key: &str, what: &str) -> Option<String> {
    let figures: Vec<String> =
        c.experiment.variants.iter().filter_map(|v| paper(Some(v), key).map(|x| format!("{} {}", v.name, num(x)))).collect();
    (!figures.is_empty()).then(|| {
        format!(
            "The paper's {what} on DDSM, another data set (real mammograms at 224 x 224), not comparable with these synthetic ones as numbers: {}.",
            figures.join(", ")
        )
    })
}

/// Paper Table 2: the four switches as check marks, our AUC and its CI.
pub fn ablation(c: &Collection, rows: &[RowStats]) -> Table {
    let title = format!("{} — {}", c.experiment.name, c.experiment.description);
    let mut t = Table::new(
        &c.experiment.name,
        title,
        &["Row", "Disentangle", "Attribute", "L_rec", "h_i", "AUC", "95% CI", "n"],
        &['l', 'c', 'c', 'c', 'c', 'r', 'r', 'r'],
        &[
            "row",
            "label",
            "disentangle",
            "attributes",
            "rec",
            "h_i",
            "auc_mean",
            "auc_std",
            "auc_ci_lo",
            "auc_ci_hi",
            "n",
            "planned",
            "failed",
            "damaged",
        ],
    );
    t.notes = common_notes(c, "AUC");
    for r in rows {
        let v = variant(c, r);
        let attr = v.and_then(|v| set_value(v, "model.attributes")).map(show).unwrap_or_default();
        let attr_cell = match attr.as_str() {
            "gcn" => "GCN",
            "multitask" => "multi-task",
            _ => "",
        };
        let auc = r.stat("test_auc");
        t.rows.push(vec![
            format!("{} {}", r.variant.as_deref().unwrap_or(""), r.label).trim().to_string(),
            check(v.and_then(|v| set_value(v, "model.disentangle"))),
            attr_cell.into(),
            check(v.and_then(|v| set_value(v, "model.rec"))),
            check(v.and_then(|v| set_value(v, "model.h_i"))),
            mean_std(auc),
            ci_cell(r.auc_ci),
            n_cell(r),
        ]);
        let b = |k: &str| v.and_then(|v| set_value(v, k)).map(show).unwrap_or_default();
        let mut csv =
            vec![r.variant.clone().unwrap_or_default(), r.label.clone(), b("model.disentangle"), attr, b("model.rec"), b("model.h_i")];
        csv.extend(stat_csv(auc, r.auc_ci, r));
        t.csv_rows.push(csv);
    }
    t.notes.push("Switches: the job keys model.disentangle, model.attributes (none, multi-task heads or GCN-generated heads), model.rec and model.h_i. Rows that differ only in routing have the same total latent width and the same encoder trunk.".into());
    t.notes.extend(paper_note(c, "auc", "AUCs"));
    t.notes.push("The paper's rows 1 and 3 (= its Table 1's Vanilla and Chen et al.) came from published trained models it loaded, not from its own pipeline; here every row is trained the same way.".into());
    t
}

/// The numeric columns of a row's statistic: mean, std, CI, n, planned, failed.
fn stat_csv(s: Option<Stat>, ci: Option<(f64, (f64, f64))>, r: &RowStats) -> Vec<String> {
    vec![
        opt(s.map(|s| s.mean)),
        opt(s.map(|s| s.std)),
        opt(ci.map(|c| c.1 .0)),
        opt(ci.map(|c| c.1 .1)),
        r.done.to_string(),
        r.planned.to_string(),
        r.failed.to_string(),
        r.damaged.to_string(),
    ]
}

fn not_implemented_row(v: &Variant, t: &mut Table) {
    let mut row = vec![v.label.clone(), format!("not implemented{}", v.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default())];
    row.resize(t.columns.len(), "–".into());
    t.rows.push(row);
    let mut csv = vec![v.name.clone(), v.label.clone(), "not implemented".into()];
    csv.resize(t.csv_columns.len(), String::new());
    t.csv_rows.push(csv);
}

/// Paper Table 1: methods, AUC and its CI; rows not implemented say so.
pub fn methods(c: &Collection, rows: &[RowStats]) -> Table {
    let title = format!("{} — {}", c.experiment.name, c.experiment.description);
    let mut t = Table::new(
        &c.experiment.name,
        title,
        &["Method", "AUC", "95% CI", "n"],
        &['l', 'r', 'r', 'r'],
        &["variant", "label", "status", "auc_mean", "auc_std", "auc_ci_lo", "auc_ci_hi", "n", "planned", "failed", "damaged"],
    );
    t.notes = common_notes(c, "AUC");
    let push = |t: &mut Table, r: &RowStats| {
        let axes = r.axes.iter().map(|(k, x)| format!("{k}={}", show(x))).collect::<Vec<_>>().join(" ");
        let name = if axes.is_empty() { r.label.clone() } else { format!("{} {axes}", r.label).trim().to_string() };
        let auc = r.stat("test_auc");
        t.rows.push(vec![name, mean_std(auc), ci_cell(r.auc_ci), n_cell(r)]);
        let mut csv = vec![r.variant.clone().unwrap_or_default(), r.label.clone(), "implemented".into()];
        csv.extend(stat_csv(auc, r.auc_ci, r));
        t.csv_rows.push(csv);
    };
    for v in &c.experiment.variants {
        if !v.implemented {
            not_implemented_row(v, &mut t);
            continue;
        }
        for r in rows.iter().filter(|r| r.variant.as_deref() == Some(v.name.as_str())) {
            push(&mut t, r);
        }
    }
    if c.experiment.variants.is_empty() {
        for r in rows {
            push(&mut t, r);
        }
    }
    t.notes.extend(paper_note(c, "auc", "AUCs"));
    t
}

/// Paper Table 3: attribute accuracy (mean over clusters, and per cluster), with a chance row.
pub fn attributes(c: &Collection, a: &Analysis) -> Table {
    let title = format!("{} — {}", c.experiment.name, c.experiment.description);
    let mut t = Table::new(
        &c.experiment.name,
        title,
        &["Method", "Attribute accuracy", "95% CI", "Shape", "Margin", "n"],
        &['l', 'r', 'r', 'r', 'r', 'r'],
        &[
            "variant",
            "label",
            "status",
            "attr_acc_mean",
            "attr_acc_std",
            "attr_acc_ci_lo",
            "attr_acc_ci_hi",
            "n",
            "planned",
            "failed",
            "damaged",
            "shape_mean",
            "margin_mean",
        ],
    );
    t.notes = common_notes(c, "Attribute accuracy");
    t.notes[0] = format!("Attribute accuracy: per cluster, the share of test samples whose highest-scoring attribute is a true one; the mean over the shape and margin clusters is the paper's figure. {}", t.notes[0].split_once(": ").map_or("", |x| x.1));
    for v in &c.experiment.variants {
        if !v.implemented {
            not_implemented_row(v, &mut t);
            continue;
        }
        for r in a.rows.iter().filter(|r| r.variant.as_deref() == Some(v.name.as_str())) {
            let (m, sh, ma) = (r.stat("attr_acc_mean"), r.stat("attr_acc_shape"), r.stat("attr_acc_margin"));
            t.rows.push(vec![r.label.clone(), mean_std(m), ci_cell(r.attr_ci), mean_std(sh), mean_std(ma), n_cell(r)]);
            let mut csv = vec![v.name.clone(), r.label.clone(), "implemented".into()];
            csv.extend(stat_csv(m, r.attr_ci, r));
            csv.extend([opt(sh.map(|s| s.mean)), opt(ma.map(|s| s.mean))]);
            t.csv_rows.push(csv);
        }
    }
    if let Some(ch) = &a.chance {
        let cell = |k: usize| ch.per_cluster.get(k).map(|x| num(*x)).unwrap_or_else(|| "–".into());
        t.rows.push(vec!["Chance (majority attribute per cluster)".into(), num(ch.mean), "–".into(), cell(0), cell(1), "–".into()]);
        let mut csv = vec!["chance".into(), "majority attribute per cluster".into(), "baseline".into(), format!("{}", ch.mean)];
        csv.resize(t.csv_columns.len() - 2, String::new());
        csv.extend([
            ch.per_cluster.first().map(|x| format!("{x}")).unwrap_or_default(),
            ch.per_cluster.get(1).map(|x| format!("{x}")).unwrap_or_default(),
        ]);
        t.csv_rows.push(csv);
        t.notes.push("Chance: always predicting the test split's most frequent attribute of each cluster.".into());
    }
    t.notes.extend(paper_note(c, "attr_acc", "attribute accuracies"));
    t
}

/// The contrasts of an experiment as a table (rendered under the main one,
/// and written alone as `<experiment>-contrasts.{md,csv}`).
pub fn contrast_table(c: &Collection, results: &[ContrastResult]) -> Table {
    let title = format!("{} — contrasts (a − b)", c.experiment.name);
    let mut t = Table::new(
        &format!("{}-contrasts", c.experiment.name),
        title,
        &["Contrast", "Kind", "n", "Δ", "95% CI", "p (Holm)", "Verdict", "Δ paper"],
        &['l', 'l', 'r', 'r', 'r', 'r', 'l', 'r'],
        &["contrast", "a", "b", "kind", "n_seeds", "delta", "ci_lo", "ci_hi", "p", "p_holm", "verdict"],
    );
    for r in results {
        let k = &r.contrast;
        let kind = match (k.kind, k.metric) {
            (ContrastKind::Superiority, ContrastMetric::Auc) => "superiority".to_string(),
            (ContrastKind::Superiority, ContrastMetric::AttrAcc) => "superiority (attr. acc.)".to_string(),
            (ContrastKind::Equivalence, m) => {
                format!("equivalence ±{}{}", k.margin, if m == ContrastMetric::AttrAcc { " (attr. acc.)" } else { "" })
            }
        };
        let ci = if r.ci.0.is_finite() { format!("[{}, {}]", signed(r.ci.0), signed(r.ci.1)) } else { "–".into() };
        t.rows.push(vec![
            k.name.clone(),
            kind,
            r.n_seeds.to_string(),
            signed(r.delta),
            ci,
            pval(r.p_holm),
            r.verdict.word().into(),
            r.paper_delta.map(signed).unwrap_or_else(|| "–".into()),
        ]);
        let kind_word = if k.kind == ContrastKind::Superiority { "superiority" } else { "equivalence" };
        let f = |x: f64| opt(Some(x));
        t.csv_rows.push(vec![
            k.name.clone(),
            k.a.clone(),
            k.b.clone(),
            kind_word.into(),
            r.n_seeds.to_string(),
            f(r.delta),
            f(r.ci.0),
            f(r.ci.1),
            f(r.p),
            f(r.p_holm),
            r.verdict.word().into(),
        ]);
    }
    t.notes = contrast_notes(results);
    t
}

/// What the contrasts block's columns are.
fn contrast_notes(results: &[ContrastResult]) -> Vec<String> {
    let margins: Vec<String> = results
        .iter()
        .map(|r| r.contrast.margin)
        .fold(Vec::new(), |mut v: Vec<f64>, m| {
            if !v.contains(&m) {
                v.push(m);
            }
            v
        })
        .iter()
        .map(|m| format!("{m}"))
        .collect();
    vec![
        "Contrasts: Δ = a − b, the seed mean of per-seed differences on the rows' common test samples; CI and p from the same two-level bootstrap, with one patient draw for both rows (and for every seed where the seeds share a test set). p: two-sided (superiority) or TOST within ± the margin (equivalence), Holm-adjusted over the experiment's contrasts; a verdict needs p (Holm) < 0.05.".into(),
        format!("Below resolution: the CI's half-width exceeds both |Δ| and the contrast's margin ({}), so the data cannot tell. Δ paper: the same difference from the paper's figures (DDSM).", margins.join(", ")),
    ]
}

/// A sweep: one row per axis combination, with the attribute graph each
/// combination made (configurations with the same edges share a letter)
/// and E's condition number.
pub fn sweep(c: &Collection, rows: &[RowStats]) -> Table {
    // Every axis key any row has (jobs added by [[include]] may have fewer), in first-seen order.
    let mut keys: Vec<String> = Vec::new();
    for (k, _) in rows.iter().flat_map(|r| &r.axes) {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    let cell = |r: &RowStats, k: &str| r.axes.iter().find(|(a, _)| a == k).map(|(_, v)| show(v));
    let mut columns: Vec<&str> = keys.iter().map(String::as_str).collect();
    columns.extend(["AUC", "95% CI", "Attribute accuracy", "Graph", "cond(E)", "n"]);
    let mut csv_columns: Vec<&str> = keys.iter().map(String::as_str).collect();
    csv_columns.extend([
        "auc_mean",
        "auc_std",
        "auc_ci_lo",
        "auc_ci_hi",
        "n",
        "planned",
        "failed",
        "damaged",
        "attr_acc_mean",
        "attr_acc_std",
        "graph",
        "condition",
    ]);
    let mut align = vec!['r'; keys.len()];
    align.extend(['r', 'r', 'r', 'l', 'r', 'r']);
    let title = format!("{} — {}", c.experiment.name, c.experiment.description);
    let mut t = Table::new(&c.experiment.name, title, &columns, &align, &csv_columns);
    t.notes = common_notes(c, "AUC");
    let letters = graph_letters(rows);
    for (r, g) in rows.iter().zip(&letters) {
        let mut row: Vec<String> = keys.iter().map(|k| cell(r, k).unwrap_or_else(|| "–".into())).collect();
        let (auc, attr) = (r.stat("test_auc"), r.stat("attr_acc_mean"));
        let cond = r.graph.as_ref().map(|g| condition_word(g.condition));
        row.extend([mean_std(auc), ci_cell(r.auc_ci), mean_std(attr), g.clone(), cond.unwrap_or_else(|| "–".into()), n_cell(r)]);
        t.rows.push(row);
        let mut csv: Vec<String> = keys.iter().map(|k| cell(r, k).unwrap_or_default()).collect();
        csv.extend(stat_csv(auc, r.auc_ci, r));
        csv.extend([opt(attr.map(|s| s.mean)), opt(attr.map(|s| s.std)), g.clone(), opt(r.graph.as_ref().map(|g| g.condition))]);
        t.csv_rows.push(csv);
    }
    t.notes.push("Graph: the thresholded attribute graph the training split gives (E~ of eq. 2); combinations with the same letter have the same edges and differ only in p's weights. cond(E): E's condition number; \"singular\" (at or above 1e12) ties attribute heads together.".into());
    t
}

/// A letter per distinct edge set, in order of first appearance (`–` without a graph).
pub fn graph_letters(rows: &[RowStats]) -> Vec<String> {
    let mut seen: Vec<&Vec<[String; 2]>> = Vec::new();
    rows.iter()
        .map(|r| match &r.graph {
            None => "–".into(),
            Some(g) => {
                let k = seen.iter().position(|e| **e == g.edges).unwrap_or_else(|| {
                    seen.push(&g.edges);
                    seen.len() - 1
                });
                let letter = (b'A' + (k % 26) as u8) as char;
                if g.edges.is_empty() {
                    format!("{letter} (no edges)")
                } else {
                    format!("{letter} ({} edge{})", g.edges.len(), if g.edges.len() == 1 { "" } else { "s" })
                }
            }
        })
        .collect()
}

/// A condition number as a table cell.
pub fn condition_word(cond: f64) -> String {
    if cond >= 1e12 {
        "singular".into()
    } else if cond >= 1e3 {
        format!("{cond:.1e}")
    } else {
        format!("{cond:.1}")
    }
}

impl Table {
    pub fn to_markdown(&self) -> String {
        let mut s = format!("**{}**\n\n", self.title);
        s.push_str(&format!("| {} |\n", self.columns.join(" | ")));
        let seps: Vec<&str> = self
            .align
            .iter()
            .map(|a| match a {
                'r' => "---:",
                'c' => ":---:",
                _ => "---",
            })
            .collect();
        s.push_str(&format!("|{}|\n", seps.join("|")));
        for r in &self.rows {
            let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
            s.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        s.push('\n');
        for sub in &self.sub {
            let mut inner = sub.clone();
            inner.notes.clear();
            s.push_str(&inner.to_markdown());
        }
        for n in &self.notes {
            s.push_str(&format!("{n}\n"));
        }
        s
    }

    /// A booktabs table (needs `\usepackage{booktabs,amssymb}`).
    pub fn to_latex(&self) -> String {
        let mut s = String::from("% Generated by dae-report; needs \\usepackage{booktabs} and \\usepackage{amssymb}.\n");
        s.push_str("\\begin{table}[t]\n\\centering\n\\small\n");
        s.push_str(&format!("\\caption{{{}}}\n\\label{{tab:{}}}\n", latex(&self.title), self.name));
        self.latex_tabular(&mut s);
        for sub in &self.sub {
            s.push_str(&format!("\n\\medskip\n{}\n\n", latex(&sub.title)));
            sub.latex_tabular(&mut s);
        }
        if !self.notes.is_empty() {
            s.push_str(&format!("\\par\\smallskip\\footnotesize {}\n", self.notes.iter().map(|n| latex(n)).collect::<Vec<_>>().join(" ")));
        }
        s.push_str("\\end{table}\n");
        s
    }

    fn latex_tabular(&self, s: &mut String) {
        s.push_str(&format!("\\begin{{tabular}}{{{}}}\n\\toprule\n", self.align.iter().collect::<String>()));
        s.push_str(&format!("{} \\\\\n\\midrule\n", self.columns.iter().map(|c| latex(c)).collect::<Vec<_>>().join(" & ")));
        for r in &self.rows {
            s.push_str(&format!("{} \\\\\n", r.iter().map(|c| latex(c)).collect::<Vec<_>>().join(" & ")));
        }
        s.push_str("\\bottomrule\n\\end{tabular}\n");
    }

    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.csv_columns).expect("in memory");
        for r in &self.csv_rows {
            w.write_record(r).expect("in memory");
        }
        String::from_utf8(w.into_inner().expect("in memory")).expect("utf-8")
    }

    /// Writes `<dir>/<name>.{md,tex,csv}` atomically; returns the paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
        self.write_as(dir, &[("md", self.to_markdown()), ("tex", self.to_latex()), ("csv", self.to_csv())])
    }

    /// Writes `<dir>/<name>.{md,csv}` atomically (a block also shown under its table).
    pub fn write_md_csv(&self, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
        self.write_as(dir, &[("md", self.to_markdown()), ("csv", self.to_csv())])
    }

    fn write_as(&self, dir: &Path, texts: &[(&str, String)]) -> Result<Vec<PathBuf>, ReportError> {
        let mut out = Vec::new();
        for (ext, text) in texts {
            let p = dir.join(format!("{}.{ext}", self.name));
            dae_runfolder::write_atomic(&p, text.as_bytes()).map_err(|source| ReportError::Io { path: p.clone(), source })?;
            out.push(p);
        }
        Ok(out)
    }
}

/// Escapes text for LaTeX and maps the few symbols the tables use.
pub fn latex(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '±' => out.push_str("$\\pm$"),
            '✓' => out.push_str("\\checkmark"),
            '†' => out.push_str("$^\\dagger$"),
            '−' => out.push_str("$-$"),
            '–' => out.push_str("--"),
            '—' => out.push_str("---"),
            'Δ' => out.push_str("$\\Delta$"),
            '<' => out.push_str("$<$"),
            '>' => out.push_str("$>$"),
            _ => out.push(ch),
        }
    }
    out
}
