//! The attribute graph: the adjacency E of the paper's equation (2), the
//! node features, and the GCN that turns them into per-attribute weight
//! vectors.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{linear_no_bias, Linear, VarBuilder};
use dae_data::{AttrStats, Vocabulary};

use crate::config::NodeFeatures;

/// The committed attribute-phrase embeddings (see `tools/embed-attributes.py`).
pub const EMBEDDINGS_CSV: &str = include_str!("../../../datasets/attribute-embeddings.csv");

/// Adjacency per the paper's equation (2), from training-split counts:
/// E~_ij = 1 if M_ij / T_i >= tau (i != j); E_ij = p / sum_j E~_ij where
/// E~_ij = 1; E_ii = 1 - p; a row with no neighbour keeps E_ii = 1.
/// Row-major `A x A`.
pub fn adjacency(stats: &AttrStats, tau: f64, p: f64) -> Vec<Vec<f32>> {
    let a = stats.t.len();
    let mut e = vec![vec![0f32; a]; a];
    for i in 0..a {
        let nbrs: Vec<usize> = (0..a).filter(|&j| j != i && stats.t[i] > 0 && stats.conditional(i, j) >= tau).collect();
        if nbrs.is_empty() {
            e[i][i] = 1.0;
        } else {
            e[i][i] = (1.0 - p) as f32;
            for &j in &nbrs {
                e[i][j] = (p / nbrs.len() as f64) as f32;
            }
        }
    }
    e
}

/// What the thresholded attribute graph is: its directed edges (i -> j with
/// E_ij > 0, i != j) and the condition number of E (its largest over its
/// smallest singular value; 1e16 and above is numerically singular). Two
/// configurations with the same edges differ only in p's weights; a
/// singular E ties attribute heads together.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphSummary {
    pub edges: Vec<(usize, usize)>,
    pub condition: f64,
}

/// The summary of an adjacency from [`adjacency`].
pub fn summary(adj: &[Vec<f32>]) -> GraphSummary {
    let n = adj.len();
    let edges = (0..n).flat_map(|i| (0..n).filter(move |&j| j != i && adj[i][j] > 0.0).map(move |j| (i, j))).collect();
    // Singular values: square roots of the eigenvalues of E^T E.
    let ete: Vec<Vec<f64>> = (0..n).map(|a| (0..n).map(|b| (0..n).map(|k| adj[k][a] as f64 * adj[k][b] as f64).sum()).collect()).collect();
    let eig = symmetric_eigenvalues(ete);
    let (lo, hi) = eig.iter().fold((f64::INFINITY, 0f64), |(l, h), &v| (l.min(v.max(0.0)), h.max(v)));
    let condition = if hi <= 0.0 { 1e16 } else { (hi / lo).sqrt().min(1e16) };
    GraphSummary { edges, condition }
}

/// Eigenvalues of a small symmetric matrix by cyclic Jacobi rotations.
fn symmetric_eigenvalues(mut a: Vec<Vec<f64>>) -> Vec<f64> {
    let n = a.len();
    for _ in 0..100 {
        let off: f64 = (0..n).flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i][j] * a[i][j]).sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..n {
                    let (akp, akq) = (a[k][p], a[k][q]);
                    a[k][p] = c * akp - s * akq;
                    a[k][q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p][k], a[q][k]);
                    a[p][k] = c * apk - s * aqk;
                    a[q][k] = s * apk + c * aqk;
                }
            }
        }
    }
    (0..n).map(|i| a[i][i]).collect()
}

/// Node features for a vocabulary: phrase embeddings (rows of the
/// committed table) or one-hot vectors. Returns `A x F`.
pub fn node_features(vocab: &Vocabulary, kind: NodeFeatures) -> std::result::Result<Vec<Vec<f32>>, String> {
    match kind {
        NodeFeatures::OneHot => Ok((0..vocab.len()).map(|i| (0..vocab.len()).map(|j| (i == j) as u8 as f32).collect()).collect()),
        NodeFeatures::Embedding => {
            let mut rdr = csv::ReaderBuilder::new().comment(Some(b'#')).from_reader(EMBEDDINGS_CSV.as_bytes());
            let mut table = std::collections::HashMap::new();
            for rec in rdr.records() {
                let rec = rec.map_err(|e| format!("attribute-embeddings.csv: {e}"))?;
                let v: std::result::Result<Vec<f32>, _> = rec.iter().skip(2).map(|x| x.parse::<f32>()).collect();
                table.insert(rec[0].to_string(), v.map_err(|e| format!("attribute-embeddings.csv: {e}"))?);
            }
            vocab
                .attributes()
                .iter()
                .map(|a| table.get(a.name()).cloned().ok_or_else(|| format!("attribute-embeddings.csv has no row for {}", a.name())))
                .collect()
        }
    }
}

fn matrix(rows: &[Vec<f32>], dev: &Device) -> Result<Tensor> {
    let (r, c) = (rows.len(), rows.first().map_or(0, |x| x.len()));
    Tensor::from_vec(rows.iter().flatten().copied().collect::<Vec<_>>(), (r, c), dev)
}

/// Two-layer GCN, H1 = LeakyReLU(E X W0), W = E H1 W1: one weight vector of
/// width `out_dim` per attribute node.
#[derive(Debug)]
pub struct Gcn {
    e: Tensor,
    x: Tensor,
    w0: Linear,
    w1: Linear,
}

impl Gcn {
    pub fn new(adj: &[Vec<f32>], features: &[Vec<f32>], hidden: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let dev = vb.device().clone();
        let f = features.first().map_or(0, |r| r.len());
        Ok(Self {
            e: matrix(adj, &dev)?,
            x: matrix(features, &dev)?,
            w0: linear_no_bias(f, hidden, vb.pp("w0"))?,
            w1: linear_no_bias(hidden, out_dim, vb.pp("w1"))?,
        })
    }

    /// The per-attribute weight vectors `[A, out_dim]`.
    pub fn weights(&self) -> Result<Tensor> {
        let h1 = candle_nn::ops::leaky_relu(&self.e.matmul(&self.w0.forward(&self.x)?)?, 0.2)?;
        self.e.matmul(&self.w1.forward(&h1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(t: Vec<u32>, m: Vec<Vec<u32>>) -> AttrStats {
        AttrStats { names: (0..t.len()).map(|i| i.to_string()).collect(), n: 10, t, m }
    }

    #[test]
    fn the_summary_lists_edges_and_the_condition_number() {
        // Identity: no edges, condition 1.
        let id: Vec<Vec<f32>> = (0..3).map(|i| (0..3).map(|j| (i == j) as u8 as f32).collect()).collect();
        let s = summary(&id);
        assert!(s.edges.is_empty() && (s.condition - 1.0).abs() < 1e-9, "{s:?}");
        // [[0.5, 0.5], [0.5, 0.5]] is singular; [[0.8, 0.2], [0.2, 0.8]] has singular values 1 and 0.6.
        let s = summary(&[vec![0.5, 0.5], vec![0.5, 0.5]]);
        assert_eq!((s.edges, s.condition), (vec![(0, 1), (1, 0)], 1e16));
        let s = summary(&[vec![0.8, 0.2], vec![0.2, 0.8]]);
        assert!((s.condition - 1.0 / 0.6).abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn adjacency_follows_equation_2() {
        // T = [4, 2, 1]; M_01 = 2 (P(1|0) = 0.5, P(0|1) = 1), M_02 = 1 (P(2|0) = .25, P(0|2) = 1),
        // M_12 = 0.
        let s = stats(vec![4, 2, 1], vec![vec![4, 2, 1], vec![2, 2, 0], vec![1, 0, 1]]);
        let e = adjacency(&s, 0.4, 0.2);
        // Row 0: only j = 1 passes tau = 0.4 -> E_01 = 0.2, E_00 = 0.8, E_02 = 0.
        assert_eq!(e[0], vec![0.8, 0.2, 0.0]);
        // Row 1: j = 0 (1.0) -> E_10 = 0.2, E_11 = 0.8.
        assert_eq!(e[1], vec![0.2, 0.8, 0.0]);
        // Row 2: j = 0 (1.0) -> E_20 = 0.2, E_22 = 0.8.
        assert_eq!(e[2], vec![0.2, 0.0, 0.8]);
        // tau = 0.2: row 0 has two neighbours, each p / 2 = 0.1.
        let e = adjacency(&s, 0.2, 0.2);
        assert!((e[0][1] - 0.1).abs() < 1e-7 && (e[0][2] - 0.1).abs() < 1e-7 && (e[0][0] - 0.8).abs() < 1e-7);
        // A node with no neighbour (or never seen) keeps E_ii = 1.
        let s = stats(vec![3, 0], vec![vec![3, 0], vec![0, 0]]);
        assert_eq!(adjacency(&s, 0.4, 0.2), vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }

    #[test]
    fn every_attribute_has_an_embedding_row() {
        let f = node_features(&Vocabulary::full(), NodeFeatures::Embedding).unwrap();
        assert_eq!(f.len(), 13);
        assert!(f.iter().all(|r| r.len() == f[0].len() && r.len() >= 64));
        let oh = node_features(&Vocabulary::default(), NodeFeatures::OneHot).unwrap();
        assert_eq!(oh[2], vec![0., 0., 1., 0., 0., 0., 0., 0., 0.]);
    }
}
