//! Percentiles of measured durations (nearest rank, as the testbed's ledger computes them).

use std::time::Duration;

use serde::Serialize;

/// Nearest-rank percentiles of a set of durations. With 20 samples, p99 is the largest one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub count: usize,
    /// The median (nearest rank).
    pub p50: Duration,
    /// The 99th percentile (nearest rank).
    pub p99: Duration,
    /// The largest sample.
    pub max: Duration,
}

impl Summary {
    /// The summary of `samples` (any order); all zero when there are none.
    pub fn of(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Summary {
            count: sorted.len(),
            p50: percentile(&sorted, 50.0),
            p99: percentile(&sorted, 99.0),
            max: sorted.last().copied().unwrap_or_default(),
        }
    }
}

/// The nearest-rank `p`th percentile of `sorted` (ascending); zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let micros: Vec<u64> = sorted.iter().map(|d| micros(*d)).collect();
    Duration::from_micros(switchyard_testbed::ledger::percentile(&micros, p))
}

/// A duration in whole microseconds (saturating).
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A duration in milliseconds with no decimals, as the tables show it.
pub fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|v| Duration::from_millis(*v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=20 ms in a shuffled order.
        let samples = ms_list(&[
            7, 3, 20, 1, 15, 9, 12, 2, 18, 5, 11, 4, 19, 6, 14, 8, 17, 10, 16, 13,
        ]);
        let s = Summary::of(&samples);
        assert_eq!(s.count, 20);
        // Rank ceil(0.5·20) = 10.
        assert_eq!(s.p50, Duration::from_millis(10));
        // Rank ceil(0.99·20) = 20: with 20 runs p99 is the maximum.
        assert_eq!(s.p99, Duration::from_millis(20));
        assert_eq!(s.max, Duration::from_millis(20));

        let odd = Summary::of(&ms_list(&[30, 10, 20]));
        assert_eq!(odd.p50, Duration::from_millis(20));
        assert_eq!(odd.max, Duration::from_millis(30));
    }

    #[test]
    fn no_samples_give_zeros() {
        assert_eq!(Summary::of(&[]), Summary::default());
    }

    #[test]
    fn milliseconds_are_rounded() {
        assert_eq!(ms(Duration::from_micros(149_600)), "150");
        assert_eq!(ms(Duration::from_micros(149_400)), "149");
    }
}
