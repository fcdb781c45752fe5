/// Attribute accuracy of one cluster: over the samples with at least one
/// true attribute in the cluster, the fraction whose highest-scoring
/// attribute (within the cluster) is one of the true ones. `scores` and
/// `targets` are per-sample rows over the whole vocabulary; `cluster` is the
/// cluster's column range. Returns `None` when no sample has a true
/// attribute in the cluster.
pub fn cluster_accuracy(scores: &[Vec<f32>], targets: &[Vec<f32>], cluster: std::ops::Range<usize>) -> Option<f64> {
    let (mut n, mut correct) = (0usize, 0usize);
    for (s, t) in scores.iter().zip(targets) {
        let (s, t) = (&s[cluster.clone()], &t[cluster.clone()]);
        if !t.iter().any(|&v| v > 0.5) {
            continue;
        }
        n += 1;
        let best = s.iter().enumerate().fold((0, f32::NEG_INFINITY), |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc }).0;
        if t[best] > 0.5 {
            correct += 1;
        }
    }
    (n > 0).then(|| correct as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_argmax_hits_within_the_cluster_and_skips_unlabelled_samples() {
        // Cluster 0..3. Sample 1: argmax 1, true {1} -> hit. Sample 2: argmax 0, true {2} -> miss.
        // Sample 3: argmax 2, true {0, 2} -> hit. Sample 4: no true attribute -> skipped. 2/3.
        let s = vec![vec![0.1, 0.9, 0.0, 5.0], vec![0.8, 0.1, 0.1, 0.0], vec![0.0, 0.1, 0.7, 0.0], vec![1.0, 0.0, 0.0, 0.0]];
        let t = vec![vec![0., 1., 0., 0.], vec![0., 0., 1., 1.], vec![1., 0., 1., 0.], vec![0., 0., 0., 1.]];
        assert!((cluster_accuracy(&s, &t, 0..3).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // Column 3 alone: samples 2 and 4 are labelled, and the argmax of a one-column cluster is always a hit.
        assert_eq!(cluster_accuracy(&s, &t, 3..4), Some(1.0));
        assert_eq!(cluster_accuracy(&s[..1], &t[..1], 2..3), None);
    }
}
