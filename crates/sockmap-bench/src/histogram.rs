//! A log-linear latency histogram (HDR-style): 64 linear sub-buckets per power of two,
//! so every recorded value is kept within 1/64 (about 1.6 %) of its true value.

const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS; // values below this are exact
const HALF: usize = SUB / 2;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * HALF + HALF;

/// Counts of `u64` values (nanoseconds, say) in log-linear buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
            sum: 0,
        }
    }

    /// Records one value.
    pub fn record(&mut self, value: u64) {
        self.counts[index_of(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
        self.sum += u128::from(value);
    }

    /// Number of recorded values.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The largest recorded value (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean of the recorded values (exact), 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// The value at quantile `q` (0.0..=1.0): the midpoint of the bucket holding the
    /// `ceil(q * len)`-th smallest value, capped at the exact maximum; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = bucket_range(i);
                return (low + width / 2).min(self.max);
            }
        }
        self.max
    }
}

fn index_of(value: u64) -> usize {
    if value < SUB as u64 {
        return value as usize;
    }
    let exp = 63 - value.leading_zeros(); // >= SUB_BITS
    let shift = exp + 1 - SUB_BITS;
    let top = (value >> shift) as usize; // in HALF..SUB
    shift as usize * HALF + top
}

/// Lowest value and width of bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, 1);
    }
    let shift = (i / HALF - 1) as u32;
    let top = (i - shift as usize * HALF) as u64;
    (top << shift, 1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = index_of(v);
            assert!(i < BUCKETS);
            let (low, width) = bucket_range(i);
            assert!(low <= v && v - low < width, "v {v} bucket {i}");
            assert!(width == 1 || width * 64 <= low, "v {v} too coarse");
        }
        for i in 1..BUCKETS {
            let (prev_low, prev_w) = bucket_range(i - 1);
            assert_eq!(prev_low + prev_w, bucket_range(i).0, "gap before {i}");
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.len(), 1000);
        assert_eq!(h.max(), 1_000_000);
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 / 500_000.0 - 1.0).abs() < 0.02, "p50 {p50}");
        assert!((p99 / 990_000.0 - 1.0).abs() < 0.02, "p99 {p99}");
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.mean(), 500_500.0);
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
