//! Percentiles over a sample, nearest-rank.

/// p50/p99/max (and the count) of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises `values` (sorted in place). An empty sample gives all zeros.
    pub fn of(values: &mut [f64]) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        values.sort_unstable_by(f64::total_cmp);
        Summary {
            count: values.len(),
            p50: percentile(values, 50.0),
            p99: percentile(values, 99.0),
            max: values[values.len() - 1],
        }
    }

    /// Summarises a sample of whole microseconds (sorted in place), in
    /// milliseconds: half the memory of `f64`s, for the tens of
    /// millions of latencies of a publish run.
    pub fn of_us(values: &mut [u32]) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        values.sort_unstable();
        let at = |p: f64| {
            let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
            f64::from(values[rank.clamp(1, values.len()) - 1]) / 1000.0
        };
        Summary {
            count: values.len(),
            p50: at(50.0),
            p99: at(99.0),
            max: f64::from(values[values.len() - 1]) / 1000.0,
        }
    }
}

/// Nearest-rank percentile of a sorted, non-empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&mut v);
        assert_eq!((s.p50, s.p99, s.max), (50.0, 99.0, 100.0));
        let mut one = vec![3.0];
        assert_eq!(Summary::of(&mut one).p99, 3.0);
        let mut us: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        let s = Summary::of_us(&mut us);
        assert_eq!((s.count, s.p50, s.p99, s.max), (100, 50.0, 99.0, 100.0));
    }
}
