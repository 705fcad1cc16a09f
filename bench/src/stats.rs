//! Latency figures for the benchmarks' reports.

use std::time::Duration;

/// The `p` quantile (0.0 to 1.0) of `samples` in milliseconds, by nearest rank; sorts
/// `samples` in place. `p = 1.0` is the maximum.
pub fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx].as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_takes_the_nearest_rank_of_the_sorted_samples() {
        let mut samples: Vec<Duration> = (1..=101).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut samples, 0.0), 1.0);
        assert_eq!(percentile(&mut samples, 0.5), 51.0);
        assert_eq!(percentile(&mut samples, 0.95), 96.0);
        assert_eq!(percentile(&mut samples, 1.0), 101.0);
    }
}
