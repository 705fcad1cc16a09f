//! Exponential backoff: the one schedule every retry loop in Sentinel follows.

use std::time::Duration;

use rand::Rng;

/// Delay before the `attempt`-th retry (1-based): `base` doubling, capped at `max`.
pub fn exponential(base: Duration, max: Duration, attempt: u32) -> Duration {
    base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(max)
}

/// [`exponential`], drawn at random from its upper half ("equal jitter"), so that retrying
/// clients do not move in lockstep while each still waits at least half the schedule.
pub fn jittered(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = exponential(base, max, attempt).as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_doubles_and_stops_at_the_cap() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(10));
        let schedule: Vec<u128> = (1..=9)
            .map(|a| exponential(base, max, a).as_millis())
            .collect();
        assert_eq!(
            schedule,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(exponential(base, max, u32::MAX), max);
        assert_eq!(exponential(base, max, 0), base);
    }

    #[test]
    fn jitter_stays_within_the_upper_half_of_the_schedule() {
        let (base, max) = (Duration::from_millis(100), Duration::from_millis(400));
        for _ in 0..200 {
            let first = jittered(base, max, 1);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first));
            let capped = jittered(base, max, 8);
            assert!((Duration::from_millis(200)..=max).contains(&capped));
        }
    }
}
