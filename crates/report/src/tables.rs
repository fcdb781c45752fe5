//! Tables in the paper's layouts, rendered as Markdown, LaTeX (booktabs) and
//! CSV (numbers in their own columns, for other tools).

use std::path::{Path, PathBuf};

use dae_sweep::experiment::{Layout, Variant};
use dae_sweep::plan::show;
use toml::Value;

use crate::aggregate::{RowStats, Stat, BOOTSTRAP_RESAMPLES};
use crate::collect::Collection;
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
    pub notes: Vec<String>,
    pub csv_columns: Vec<String>,
    pub csv_rows: Vec<Vec<String>>,
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "–".into()
    }
}

fn signed(x: f64) -> String {
    if x < 0.0 {
        format!("−{:.3}", -x)
    } else {
        format!("+{x:.3}")
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
    let planned = r.planned;
    let mut s = format!("{}", r.done);
    if r.done < planned {
        s = format!("{}/{planned}†", r.done);
    }
    if r.failed > 0 {
        s.push_str(&format!(" ({} failed)", r.failed));
    }
    s
}

fn ci_cell(r: &RowStats) -> String {
    match r.auc_ci {
        Some((lo, hi)) => format!("[{}, {}]", num(lo), num(hi)),
        None => "–".into(),
    }
}

fn delong_cell(r: &RowStats, is_ref: bool) -> String {
    if is_ref {
        return "ref.".into();
    }
    match r.delong {
        Some(d) => {
            format!("{} (p = {})", signed(d.diff), if d.p_value < 0.001 { "<0.001".to_string() } else { format!("{:.3}", d.p_value) })
        }
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

fn common_notes(c: &Collection) -> Vec<String> {
    let mut n = vec![format!(
        "AUC: test AUC, mean ± standard deviation (n − 1) over the seeds that finished (n); 95% CI: bootstrap of the seed-mean AUC over the test samples ({BOOTSTRAP_RESAMPLES} stratified resamples, the same draw for every seed; pooled over runs where their test sets differ)."
    )];
    if let Some(r) = &c.experiment.reference {
        let label = c.experiment.variants.iter().find(|v| &v.name == r).map(|v| v.label.clone()).unwrap_or_else(|| r.clone());
        n.push(format!("Δ vs {label}: AUC difference of the seed-averaged scores, DeLong's test (two-sided p)."));
    }
    n.push(format!(
        "Profile {}: {} seed(s) planned per row; † fewer finished than planned.",
        c.profile.as_deref().unwrap_or("(none)"),
        c.planned_seeds
    ));
    n
}

/// Builds the experiment's table in its layout.
pub fn build(c: &Collection, rows: &[RowStats]) -> Table {
    match c.experiment.layout() {
        Layout::Ablation => ablation(c, rows),
        Layout::Attributes => attributes(c, rows),
        Layout::Sweep => sweep(c, rows),
        Layout::Methods => methods(c, rows),
    }
}

fn variant<'a>(c: &'a Collection, r: &RowStats) -> Option<&'a Variant> {
    r.variant.as_ref().and_then(|v| c.experiment.variants.iter().find(|x| &x.name == v))
}

/// Paper Table 2: the four switches as check marks, our AUC, the paper's.
pub fn ablation(c: &Collection, rows: &[RowStats]) -> Table {
    let mut t = Table {
        name: c.experiment.name.clone(),
        title: format!("{} — {}", c.experiment.name, c.experiment.description),
        columns: ["Row", "Disentangle", "Attribute", "L_rec", "h_i", "AUC", "95% CI", "n", "Δ vs ref. (DeLong)", "Paper (DDSM)"]
            .map(String::from)
            .to_vec(),
        align: vec!['l', 'c', 'c', 'c', 'c', 'r', 'r', 'r', 'r', 'r'],
        rows: Vec::new(),
        notes: common_notes(c),
        csv_columns: [
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
            "delong_diff",
            "delong_p",
            "paper_auc",
        ]
        .map(String::from)
        .to_vec(),
        csv_rows: Vec::new(),
    };
    for r in rows {
        let v = variant(c, r);
        let attr = v.and_then(|v| set_value(v, "model.attributes")).map(show).unwrap_or_default();
        let attr_cell = match attr.as_str() {
            "gcn" => "GCN",
            "multitask" => "multi-task",
            _ => "",
        };
        let is_ref = c.experiment.reference.is_some() && r.variant == c.experiment.reference;
        let auc = r.stat("test_auc");
        t.rows.push(vec![
            format!("{} {}", r.variant.as_deref().unwrap_or(""), r.label).trim().to_string(),
            check(v.and_then(|v| set_value(v, "model.disentangle"))),
            attr_cell.into(),
            check(v.and_then(|v| set_value(v, "model.rec"))),
            check(v.and_then(|v| set_value(v, "model.h_i"))),
            mean_std(auc),
            ci_cell(r),
            n_cell(r),
            delong_cell(r, is_ref),
            paper(v, "auc").map(num).unwrap_or_else(|| "–".into()),
        ]);
        let b = |k: &str| v.and_then(|v| set_value(v, k)).map(show).unwrap_or_default();
        let mut csv =
            vec![r.variant.clone().unwrap_or_default(), r.label.clone(), b("model.disentangle"), attr, b("model.rec"), b("model.h_i")];
        csv.extend(auc_csv(r, paper(v, "auc")));
        t.csv_rows.push(csv);
    }
    t.notes.push("Switches as method.md defines them; Attribute: none, multi-task heads or GCN-generated heads.".into());
    t
}

/// The numeric AUC columns of a row's CSV: mean, std, CI, n, planned, failed, DeLong, paper.
fn auc_csv(r: &RowStats, paper_auc: Option<f64>) -> Vec<String> {
    let auc = r.stat("test_auc");
    vec![
        opt(auc.map(|s| s.mean)),
        opt(auc.map(|s| s.std)),
        opt(r.auc_ci.map(|c| c.0)),
        opt(r.auc_ci.map(|c| c.1)),
        r.done.to_string(),
        r.planned.to_string(),
        r.failed.to_string(),
        opt(r.delong.map(|d| d.diff)),
        opt(r.delong.map(|d| d.p_value)),
        opt(paper_auc),
    ]
}

fn not_implemented_rows(variants: &[Variant], t: &mut Table, key: &str, width: usize) {
    for v in variants {
        let mut row = vec![v.label.clone(), format!("not implemented{}", v.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default())];
        while row.len() < width - 1 {
            row.push("–".into());
        }
        row.push(paper(Some(v), key).map(num).unwrap_or_else(|| "–".into()));
        t.rows.push(row);
        let mut csv = vec![v.name.clone(), v.label.clone(), "not implemented".into()];
        while csv.len() < t.csv_columns.len() - 1 {
            csv.push(String::new());
        }
        csv.push(opt(paper(Some(v), key)));
        t.csv_rows.push(csv);
    }
}

/// Paper Table 1: methods, AUC, the paper's AUC; rows not implemented say so.
pub fn methods(c: &Collection, rows: &[RowStats]) -> Table {
    let mut t = Table {
        name: c.experiment.name.clone(),
        title: format!("{} — {}", c.experiment.name, c.experiment.description),
        columns: ["Method", "AUC", "95% CI", "n", "Δ vs ref. (DeLong)", "Paper (DDSM)"].map(String::from).to_vec(),
        align: vec!['l', 'r', 'r', 'r', 'r', 'r'],
        rows: Vec::new(),
        notes: common_notes(c),
        csv_columns: [
            "variant",
            "label",
            "status",
            "auc_mean",
            "auc_std",
            "auc_ci_lo",
            "auc_ci_hi",
            "n",
            "planned",
            "failed",
            "delong_diff",
            "delong_p",
            "paper_auc",
        ]
        .map(String::from)
        .to_vec(),
        csv_rows: Vec::new(),
    };
    // Implemented and not-implemented rows in the file's order.
    for v in &c.experiment.variants {
        if !v.implemented {
            not_implemented_rows(std::slice::from_ref(v), &mut t, "auc", 6);
            continue;
        }
        for r in rows.iter().filter(|r| r.variant.as_deref() == Some(v.name.as_str())) {
            push_method_row(c, &mut t, r, Some(v));
        }
    }
    if c.experiment.variants.is_empty() {
        for r in rows {
            push_method_row(c, &mut t, r, None);
        }
    }
    t
}

fn push_method_row(c: &Collection, t: &mut Table, r: &RowStats, v: Option<&Variant>) {
    let is_ref = c.experiment.reference.is_some() && r.variant == c.experiment.reference;
    let auc = r.stat("test_auc");
    let axes = r.axes.iter().map(|(k, x)| format!("{k}={}", show(x))).collect::<Vec<_>>().join(" ");
    let name = if axes.is_empty() || v.is_some() && r.axes.is_empty() {
        r.label.clone()
    } else {
        format!("{} {axes}", r.label).trim().to_string()
    };
    t.rows.push(vec![
        name,
        mean_std(auc),
        ci_cell(r),
        n_cell(r),
        delong_cell(r, is_ref),
        paper(v, "auc").map(num).unwrap_or_else(|| "–".into()),
    ]);
    let mut csv = vec![r.variant.clone().unwrap_or_default(), r.label.clone(), "implemented".into()];
    csv.extend(auc_csv(r, paper(v, "auc")));
    t.csv_rows.push(csv);
}

/// Paper Table 3: attribute accuracy (mean over clusters, and per cluster).
pub fn attributes(c: &Collection, rows: &[RowStats]) -> Table {
    let mut t = Table {
        name: c.experiment.name.clone(),
        title: format!("{} — {}", c.experiment.name, c.experiment.description),
        columns: ["Method", "Attribute accuracy", "Shape", "Margin", "n", "Paper (DDSM)"].map(String::from).to_vec(),
        align: vec!['l', 'r', 'r', 'r', 'r', 'r'],
        rows: Vec::new(),
        notes: vec![
            "Attribute accuracy: per cluster, the share of test samples whose highest-scoring attribute is a true one; the mean over the shape and margin clusters is the paper's figure. Mean ± standard deviation (n − 1) over seeds.".into(),
            format!("Profile {}: {} seed(s) planned per row; † fewer finished than planned.", c.profile.as_deref().unwrap_or("(none)"), c.planned_seeds),
        ],
        csv_columns: ["variant", "label", "status", "attr_acc_mean", "attr_acc_std", "shape_mean", "margin_mean", "n", "planned", "failed", "paper_attr_acc"]
            .map(String::from)
            .to_vec(),
        csv_rows: Vec::new(),
    };
    for v in &c.experiment.variants {
        if !v.implemented {
            not_implemented_rows(std::slice::from_ref(v), &mut t, "attr_acc", 6);
            continue;
        }
        for r in rows.iter().filter(|r| r.variant.as_deref() == Some(v.name.as_str())) {
            let (m, sh, ma) = (r.stat("attr_acc_mean"), r.stat("attr_acc_shape"), r.stat("attr_acc_margin"));
            t.rows.push(vec![
                r.label.clone(),
                mean_std(m),
                mean_std(sh),
                mean_std(ma),
                n_cell(r),
                paper(Some(v), "attr_acc").map(num).unwrap_or_else(|| "–".into()),
            ]);
            t.csv_rows.push(vec![
                v.name.clone(),
                r.label.clone(),
                "implemented".into(),
                opt(m.map(|s| s.mean)),
                opt(m.map(|s| s.std)),
                opt(sh.map(|s| s.mean)),
                opt(ma.map(|s| s.mean)),
                r.done.to_string(),
                r.planned.to_string(),
                r.failed.to_string(),
                opt(paper(Some(v), "attr_acc")),
            ]);
        }
    }
    t
}

/// A sweep: one row per axis combination.
pub fn sweep(c: &Collection, rows: &[RowStats]) -> Table {
    // Every axis key any row has (jobs added by [[include]] may have fewer), in first-seen order.
    let mut keys: Vec<String> = Vec::new();
    for r in rows {
        for (k, _) in &r.axes {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let cell = |r: &RowStats, k: &str| r.axes.iter().find(|(a, _)| a == k).map(|(_, v)| show(v)).unwrap_or_else(|| "–".into());
    let mut columns = keys.clone();
    columns.extend(["AUC", "95% CI", "Attribute accuracy", "n"].map(String::from));
    let mut csv_columns = keys.clone();
    csv_columns.extend(
        ["auc_mean", "auc_std", "auc_ci_lo", "auc_ci_hi", "attr_acc_mean", "attr_acc_std", "n", "planned", "failed"].map(String::from),
    );
    let mut align = vec!['r'; keys.len()];
    align.extend(['r', 'r', 'r', 'r']);
    let mut t = Table {
        name: c.experiment.name.clone(),
        title: format!("{} — {}", c.experiment.name, c.experiment.description),
        columns,
        align,
        rows: Vec::new(),
        notes: common_notes(c),
        csv_columns,
        csv_rows: Vec::new(),
    };
    for r in rows {
        let mut row: Vec<String> = keys.iter().map(|k| cell(r, k)).collect();
        let (auc, attr) = (r.stat("test_auc"), r.stat("attr_acc_mean"));
        row.extend([mean_std(auc), ci_cell(r), mean_std(attr), n_cell(r)]);
        t.rows.push(row);
        let mut csv: Vec<String> =
            keys.iter().map(|k| r.axes.iter().find(|(a, _)| a == k).map(|(_, v)| show(v)).unwrap_or_default()).collect();
        csv.extend([
            opt(auc.map(|s| s.mean)),
            opt(auc.map(|s| s.std)),
            opt(r.auc_ci.map(|c| c.0)),
            opt(r.auc_ci.map(|c| c.1)),
            opt(attr.map(|s| s.mean)),
            opt(attr.map(|s| s.std)),
            r.done.to_string(),
            r.planned.to_string(),
            r.failed.to_string(),
        ]);
        t.csv_rows.push(csv);
    }
    t
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
        s.push_str(&format!("\\begin{{tabular}}{{{}}}\n\\toprule\n", self.align.iter().collect::<String>()));
        s.push_str(&format!("{} \\\\\n\\midrule\n", self.columns.iter().map(|c| latex(c)).collect::<Vec<_>>().join(" & ")));
        for r in &self.rows {
            s.push_str(&format!("{} \\\\\n", r.iter().map(|c| latex(c)).collect::<Vec<_>>().join(" & ")));
        }
        s.push_str("\\bottomrule\n\\end{tabular}\n");
        if !self.notes.is_empty() {
            s.push_str(&format!("\\par\\smallskip\\footnotesize {}\n", self.notes.iter().map(|n| latex(n)).collect::<Vec<_>>().join(" ")));
        }
        s.push_str("\\end{table}\n");
        s
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
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Io { path: dir.into(), source })?;
        let mut out = Vec::new();
        for (ext, text) in [("md", self.to_markdown()), ("tex", self.to_latex()), ("csv", self.to_csv())] {
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
