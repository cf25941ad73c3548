//! Per-client rate limits (GCRA, from `governor`): `per_second` sustained, `burst` at once.
//!
//! A refused request learns how long to wait, which becomes `Retry-After`. The limiter is
//! generic over the clock so tests drive time by hand.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Deserialize;

/// `rate_limit: {per_second, burst}` of a client.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second (fractions allowed: 0.1 is one every 10 s).
    pub per_second: f64,
    /// Requests allowed at once [at least 1].
    pub burst: u32,
}

/// One client's limiter.
pub struct Limiter<C: Clock = DefaultClock> {
    inner: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").finish_non_exhaustive()
    }
}

fn quota(limit: RateLimit) -> Result<Quota, String> {
    if !(limit.per_second.is_finite() && limit.per_second > 0.0) {
        return Err(format!(
            "per_second must be a positive number, not {}",
            limit.per_second
        ));
    }
    let burst = NonZeroU32::new(limit.burst).ok_or("burst must be at least 1")?;
    let period = Duration::try_from_secs_f64(1.0 / limit.per_second)
        .map_err(|_| format!("per_second {} is out of range", limit.per_second))?;
    Quota::with_period(period)
        .map(|q| q.allow_burst(burst))
        .ok_or_else(|| format!("per_second {} is out of range", limit.per_second))
}

impl Limiter<DefaultClock> {
    /// A limiter on the real clock.
    pub fn new(limit: RateLimit) -> Result<Self, String> {
        Self::with_clock(limit, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    pub fn with_clock(limit: RateLimit, clock: C) -> Result<Self, String> {
        Ok(Self {
            inner: RateLimiter::direct_with_clock(quota(limit)?, clock.clone()),
            clock,
        })
    }

    /// Admits one request, or says how long until one would be admitted.
    pub fn check(&self) -> Result<(), Duration> {
        self.inner
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn burst_then_sustained_rate_on_a_fake_clock() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(
            RateLimit {
                per_second: 2.0,
                burst: 3,
            },
            clock.clone(),
        )
        .unwrap();
        for i in 0..3 {
            assert!(limiter.check().is_ok(), "burst request {i}");
        }
        let wait = limiter.check().unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        clock.advance(Duration::from_millis(499));
        assert!(limiter.check().is_err());
        clock.advance(Duration::from_millis(1));
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_err(), "one per half second");
        clock.advance(Duration::from_secs(10));
        for _ in 0..3 {
            assert!(limiter.check().is_ok(), "the burst refills, up to its size");
        }
        assert!(limiter.check().is_err());
    }

    #[test]
    fn slow_rates_give_long_retry_after() {
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::with_clock(
            RateLimit {
                per_second: 0.1,
                burst: 1,
            },
            clock,
        )
        .unwrap();
        assert!(limiter.check().is_ok());
        assert_eq!(retry_after_secs(limiter.check().unwrap_err()), 10);
    }

    #[test]
    fn invalid_limits_are_named() {
        for (limit, want) in [
            (
                RateLimit {
                    per_second: 0.0,
                    burst: 1,
                },
                "per_second must be a positive number",
            ),
            (
                RateLimit {
                    per_second: f64::NAN,
                    burst: 1,
                },
                "per_second must be a positive number",
            ),
            (
                RateLimit {
                    per_second: 1.0,
                    burst: 0,
                },
                "burst must be at least 1",
            ),
            (
                RateLimit {
                    per_second: 1e-300,
                    burst: 1,
                },
                "out of range",
            ),
        ] {
            let err = Limiter::new(limit).unwrap_err();
            assert!(err.contains(want), "{limit:?}: {err}");
        }
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
