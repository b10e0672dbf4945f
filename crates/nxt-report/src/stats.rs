//! Bootstrap confidence intervals over problems.
//!
//! A metric of a run is the mean over tasks of a per-task value (pass@k of the task by the
//! unbiased estimator, or the greedy verdict as 0/1). Its 95% interval comes from resampling
//! the tasks with replacement (percentile bootstrap); a delta between two runs on the same
//! tasks uses the paired bootstrap: every resample draws the same tasks for both runs. The
//! random numbers come from a seeded SplitMix64, so a report is reproducible bit for bit.

use std::collections::BTreeMap;

/// Resamples used by the report's bootstrap intervals (stated on the page).
pub const RESAMPLES: usize = 2000;

/// Seed of the report's bootstrap (stated on the page).
pub const SEED: u64 = 0x6e78_745f_626f_6f74;

/// A point estimate with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The estimate on the full set of tasks.
    pub estimate: f64,
    /// 2.5th percentile of the bootstrap distribution.
    pub lo: f64,
    /// 97.5th percentile of the bootstrap distribution.
    pub hi: f64,
    /// Tasks the estimate is over.
    pub tasks: usize,
}

/// SplitMix64: a small, well-mixed, seedable generator (Steele, Lea and Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform index in `0..n` (`n > 0`; Lemire's multiply-shift, bias below 2^-40 for the
    /// task counts of a benchmark).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Linear-interpolated percentile of sorted values (`q` in 0..=1).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] * (1.0 - frac) + sorted[hi] * frac
}

fn interval(estimate: f64, mut stats: Vec<f64>, tasks: usize) -> Interval {
    stats.sort_by(f64::total_cmp);
    Interval {
        estimate,
        lo: percentile(&stats, 0.025),
        hi: percentile(&stats, 0.975),
        tasks,
    }
}

/// Mean of `values` (one per task) with its percentile-bootstrap 95% interval; `None` when
/// there are no values.
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Option<Interval> {
    if values.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let n = values.len();
    let stats = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    Some(interval(mean(values), stats, n))
}

/// Paired bootstrap of `mean(b) - mean(a)` over tasks present in both maps: each resample
/// draws the same tasks for both. `None` when no task is shared.
pub fn paired_delta(
    a: &BTreeMap<String, f64>,
    b: &BTreeMap<String, f64>,
    resamples: usize,
    seed: u64,
) -> Option<Interval> {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .filter_map(|(k, va)| b.get(k).map(|vb| (*va, *vb)))
        .collect();
    if pairs.is_empty() || resamples == 0 {
        return None;
    }
    let n = pairs.len();
    let diffs: Vec<f64> = pairs.iter().map(|(x, y)| y - x).collect();
    let mut rng = SplitMix64::new(seed);
    let stats = (0..resamples)
        .map(|_| (0..n).map(|_| diffs[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    Some(interval(mean(&diffs), stats, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_values_have_a_degenerate_interval() {
        let iv = bootstrap_mean(&[0.25; 10], 200, 1).expect("values");
        assert_eq!(
            (iv.estimate, iv.lo, iv.hi, iv.tasks),
            (0.25, 0.25, 0.25, 10)
        );
    }

    #[test]
    fn interval_brackets_the_mean_and_is_seeded() {
        let v: Vec<f64> = (0..40).map(|i| ((i * 7) % 11) as f64 / 10.0).collect();
        let a = bootstrap_mean(&v, 1000, 7).expect("values");
        let b = bootstrap_mean(&v, 1000, 7).expect("values");
        assert_eq!(a, b);
        assert!(a.lo < a.estimate && a.estimate < a.hi, "{a:?}");
        // Values spread over 0..1 (sd ~ 0.32): the standard error of the mean over 40 is
        // ~ 0.05, so the 95% interval is ~ 0.2 wide.
        assert!(a.hi - a.lo > 0.1 && a.hi - a.lo < 0.35, "{a:?}");
        let c = bootstrap_mean(&v, 1000, 8).expect("values");
        assert_ne!(a, c);
    }

    #[test]
    fn paired_delta_uses_shared_tasks_only() {
        let a: BTreeMap<String, f64> = [("t1", 0.0), ("t2", 1.0), ("t3", 0.0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let b: BTreeMap<String, f64> = [("t1", 1.0), ("t2", 1.0), ("t4", 0.0)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let d = paired_delta(&a, &b, 500, 3).expect("shared tasks");
        assert_eq!(d.tasks, 2);
        assert!((d.estimate - 0.5).abs() < 1e-12);
        assert!(d.lo >= 0.0 && d.hi <= 1.0);
        assert!(paired_delta(&a, &BTreeMap::new(), 500, 3).is_none());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = SplitMix64::new(0);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            seen[r.below(7)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
