//! Usable information (SPEC §1.1): I_u(Z;Y) = H(Y) − CE_test / ln 2, in bits.

/// Empirical entropy, in bits, of labels with `classes` classes.
pub fn entropy_bits(labels: &[i64], classes: usize) -> f64 {
    let mut counts = vec![0usize; classes.max(1)];
    for &y in labels {
        if let Some(c) = counts.get_mut(y as usize) {
            *c += 1;
        }
    }
    let n = labels.len().max(1) as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * crate::math::ln(p) / std::f64::consts::LN_2
        })
        .sum()
}

/// Usable information in bits from the label entropy (bits) and the decoder's held-out mean
/// cross-entropy (nats). Not clipped: it can be slightly negative.
pub fn usable_bits(h_y_bits: f64, ce_test_nats: f64) -> f64 {
    h_y_bits - ce_test_nats / std::f64::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_balanced_and_constant_labels() {
        assert!((entropy_bits(&[0, 1, 0, 1], 2) - 1.0).abs() < 1e-12);
        assert_eq!(entropy_bits(&[1, 1, 1], 2), 0.0);
        assert!((entropy_bits(&[0, 1, 2, 3], 4) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn bits_use_exact_ln2() {
        assert!((usable_bits(1.0, std::f64::consts::LN_2) - 0.0).abs() < 1e-15);
        assert!(usable_bits(1.0, 1.0) < 0.0);
    }
}
