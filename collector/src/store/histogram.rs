//! The mergeable latency histogram of the rollups: log-spaced buckets of milliseconds, stored
//! sparse as jsonb `{"bucket": count}` and merged by adding counts (`agenttally_hist_merge`).
//!
//! Bucket 0 holds 0 ms; bucket k >= 1 holds values v with GAMMA^(k-2) < v <= GAMMA^(k-1).
//! Reporting a bucket by `value_of` (the harmonic middle of its bounds) is within
//! (GAMMA-1)/(GAMMA+1) < 1% of any value in it, so a p95 read from rollups is within 1% of the
//! exact p95 over raw rows.

use std::collections::BTreeMap;

/// Ratio of a bucket's upper to lower bound.
pub const GAMMA: f64 = 1.02;

/// The bucket of `ms` (negative values count as 0).
pub fn bucket_of(ms: i64) -> u32 {
    if ms <= 0 {
        return 0;
    }
    // f64 is fine here: this is a latency, not money, and the bucket only needs 2% resolution.
    let k = ((ms as f64).ln() / GAMMA.ln()).ceil();
    // Exact powers can land one bucket high through rounding; correct by checking the bound.
    let mut k = k.max(0.0) as u32;
    if k > 0 && GAMMA.powi(k as i32 - 1) >= ms as f64 {
        k -= 1;
    }
    k + 1
}

/// The value reported for bucket `b`.
pub fn value_of(b: u32) -> f64 {
    if b == 0 {
        return 0.0;
    }
    let hi = GAMMA.powi(b as i32 - 1);
    let lo = hi / GAMMA;
    2.0 * lo * hi / (lo + hi)
}

/// A sparse histogram being built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram(pub BTreeMap<u32, i64>);

impl Histogram {
    pub fn record(&mut self, ms: i64) {
        *self.0.entry(bucket_of(ms)).or_default() += 1;
    }

    /// The nearest-rank `q`-quantile (0 < q <= 1), reported as its bucket's value; `None` when
    /// empty. Within 1% of the exact nearest-rank quantile of the recorded values.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: i64 = self.0.values().sum();
        if total <= 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
        let mut seen = 0;
        for (b, n) in &self.0 {
            seen += n;
            if seen >= rank {
                return Some(value_of(*b));
            }
        }
        None
    }

    /// Add another histogram's counts (what `agenttally_hist_merge` does in SQL).
    pub fn merge(&mut self, other: &Histogram) {
        for (b, n) in &other.0 {
            *self.0.entry(*b).or_default() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_within_one_percent_of_its_bucket_value() {
        for ms in (1..100_000).chain([1_000_000, 86_400_000, 1_000_000_000_000]) {
            let b = bucket_of(ms);
            let v = value_of(b);
            let rel = (v - ms as f64).abs() / ms as f64;
            assert!(rel < 0.01, "ms={ms} bucket={b} value={v} rel={rel}");
        }
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 1);
    }

    proptest::proptest! {
        #[test]
        fn p95_from_merged_histograms_is_within_one_percent(
            parts in proptest::collection::vec(
                proptest::collection::vec(1i64..10_000_000, 1..200), 1..6),
            q in 0.01f64..=1.0,
        ) {
            let mut merged = Histogram::default();
            let mut all = Vec::new();
            for p in &parts {
                let mut h = Histogram::default();
                for v in p {
                    h.record(*v);
                }
                merged.merge(&h);
                all.extend_from_slice(p);
            }
            all.sort_unstable();
            let rank = ((q * all.len() as f64).ceil() as usize).clamp(1, all.len());
            let exact = all[rank - 1] as f64;
            let est = merged.quantile(q).unwrap_or_default();
            proptest::prop_assert!((est - exact).abs() / exact < 0.01, "exact {exact} est {est}");
        }
    }

    #[test]
    fn buckets_are_monotonic() {
        let mut last = 0;
        for ms in 0..50_000 {
            let b = bucket_of(ms);
            assert!(b >= last);
            last = b;
        }
    }
}
