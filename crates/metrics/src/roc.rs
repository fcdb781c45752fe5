use crate::MetricError;

fn check(scores: &[f64], labels: &[u8]) -> Result<(usize, usize), MetricError> {
    if scores.len() != labels.len() {
        return Err(MetricError::Length { scores: scores.len(), labels: labels.len() });
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricError::NotFinite { index });
    }
    if let Some(index) = labels.iter().position(|&y| y > 1) {
        return Err(MetricError::BadLabel { index, value: labels[index] });
    }
    let positives = labels.iter().filter(|&&y| y == 1).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(MetricError::OneClass { positives, negatives });
    }
    Ok((positives, negatives))
}

/// ROC AUC: the probability that a random positive scores above a random
/// negative, ties counting one half (average ranks).
pub fn roc_auc(scores: &[f64], labels: &[u8]) -> Result<f64, MetricError> {
    let (n_pos, n_neg) = check(scores, labels)?;
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0f64;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        // Ranks i+1..=j+1 share their average.
        let avg = (i + j + 2) as f64 / 2.0;
        for &k in &idx[i..=j] {
            if labels[k] == 1 {
                rank_sum_pos += avg;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Ok(u / (n_pos as f64 * n_neg as f64))
}

/// One point of a ROC curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RocPoint {
    pub threshold: f64,
    pub fpr: f64,
    pub tpr: f64,
}

/// ROC curve points from (0, 0) to (1, 1), one per distinct threshold
/// (predict positive when score >= threshold).
pub fn roc_curve(scores: &[f64], labels: &[u8]) -> Result<Vec<RocPoint>, MetricError> {
    let (n_pos, n_neg) = check(scores, labels)?;
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut pts = vec![RocPoint { threshold: f64::INFINITY, fpr: 0.0, tpr: 0.0 }];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < idx.len() {
        let t = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == t {
            if labels[idx[i]] == 1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        pts.push(RocPoint { threshold: t, fpr: fp as f64 / n_neg as f64, tpr: tp as f64 / n_pos as f64 });
    }
    Ok(pts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_matches_sklearn_reference_values() {
        // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        assert!((roc_auc(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]).unwrap() - 0.75).abs() < 1e-12);
        // With ties, by hand: positives {0.5, 0.9, 0.5}, negatives {0.5, 0.2}; the
        // six pairs score 0.5, 1, 1, 1, 0.5, 1 -> 5/6 (sklearn's roc_auc_score agrees).
        let auc = roc_auc(&[0.5, 0.5, 0.2, 0.9, 0.5], &[0, 1, 0, 1, 1]).unwrap();
        assert!((auc - 5.0 / 6.0).abs() < 1e-12, "{auc}");
        assert_eq!(roc_auc(&[1.0, 1.0], &[0, 1]).unwrap(), 0.5);
    }

    #[test]
    fn auc_errors_on_one_class_and_bad_input() {
        assert!(matches!(roc_auc(&[0.1, 0.2], &[1, 1]), Err(MetricError::OneClass { .. })));
        assert!(matches!(roc_auc(&[0.1], &[1, 0]), Err(MetricError::Length { .. })));
        assert!(matches!(roc_auc(&[f64::NAN, 0.2], &[1, 0]), Err(MetricError::NotFinite { index: 0 })));
    }

    #[test]
    fn roc_curve_ends_at_one_one_and_its_trapezoid_area_is_the_auc() {
        let s = [0.1, 0.4, 0.35, 0.8, 0.4, 0.7];
        let y = [0, 0, 1, 1, 1, 0];
        let pts = roc_curve(&s, &y).unwrap();
        let last = pts.last().unwrap();
        assert_eq!((last.fpr, last.tpr), (1.0, 1.0));
        let area: f64 = pts.windows(2).map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0).sum();
        assert!((area - roc_auc(&s, &y).unwrap()).abs() < 1e-12);
    }
}
