//! Per-caller rate limiting of writes (`TALLY_WRITE_RATE_PER_MIN`).
//!
//! A keyed GCRA limiter (`governor`, the token bucket without a timer): each caller may
//! make a burst of `n` writes, then one more every `60 / n` seconds, so never more than
//! `n` in any minute on average. The caller is the user of a valid token, else the
//! client IP (the TCP peer, or behind a proxy listed in `TALLY_TRUSTED_PROXIES` the
//! address it forwarded; see [`crate::client_ip`]). Reads are never limited; the
//! middleware that spends the budget is `routes::write_limit`.
//!
//! Without `TALLY_REDIS_URL` the budget lives in this process: several instances each
//! keep their own, so a caller may get `n` per instance. With it, the budget is kept in
//! Redis and shared by every instance ([`crate::shared_limit`]); this process's own
//! limiter stands in while Redis cannot be reached.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Every this many checks, callers whose budget is full again are forgotten, so the
/// table holds only recent writers.
const PURGE_EVERY: u64 = 4096;

/// The write budgets of all callers.
pub struct WriteLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
    /// The shared budgets, when `TALLY_REDIS_URL` is set.
    shared: Option<crate::shared_limit::RedisLimiter>,
    /// n: the burst, and writes per minute.
    per_min: u32,
}

impl std::fmt::Debug for WriteLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteLimiter")
            .field("callers", &self.limiter.len())
            .finish()
    }
}

impl WriteLimiter {
    /// `None` when `per_min` is 0 (limiting off).
    pub fn new(per_min: u32) -> Option<Self> {
        let n = NonZeroU32::new(per_min)?;
        Some(WriteLimiter {
            limiter: RateLimiter::keyed(Quota::per_minute(n)),
            checks: AtomicU64::new(0),
            shared: None,
            per_min,
        })
    }

    /// Keeps the budgets in the Redis at `url` (see [`crate::shared_limit`]).
    pub fn shared_through(mut self, url: &str) -> Result<Self, String> {
        self.shared = Some(crate::shared_limit::RedisLimiter::new(url, self.per_min)?);
        Ok(self)
    }

    /// Connects to Redis now, when the budgets are shared (see `RedisLimiter::warm_up`).
    pub async fn warm_up(&self) {
        if let Some(shared) = &self.shared {
            shared.warm_up().await;
        }
    }

    /// What `/readyz` says about the limits: `shared`, `per-instance (redis unreachable)`
    /// or `per-instance`. While Redis is unreachable, this tries it again.
    pub async fn mode(&self) -> &'static str {
        match &self.shared {
            Some(shared) if shared.probe().await => "shared",
            Some(_) => "per-instance (redis unreachable)",
            None => "per-instance",
        }
    }

    /// [`check`](Self::check) against the shared budget when there is one and Redis
    /// answers in time, else against this process's.
    pub async fn check_shared(&self, caller: &str) -> Result<(), u64> {
        if let Some(shared) = &self.shared {
            if let Some(result) = shared.check(caller).await {
                return result.map_err(|ms| retry_after_secs(Duration::from_millis(ms)));
            }
        }
        self.check(caller)
    }

    /// Takes one write from `caller`'s budget, or says how many whole seconds to wait.
    pub fn check(&self, caller: &str) -> Result<(), u64> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(&caller.to_owned())
            .map_err(|not_until| {
                retry_after_secs(not_until.wait_time_from(self.limiter.clock().now()))
            })
    }
}

/// Whole seconds, rounded up, and at least 1 (`Retry-After: 0` would invite a busy loop).
fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_n_is_allowed_then_the_caller_waits() {
        let limiter = WriteLimiter::new(3).unwrap();
        for i in 0..3 {
            assert_eq!(limiter.check("user:a"), Ok(()), "write {i} is in the burst");
        }
        let wait = limiter.check("user:a").unwrap_err();
        assert!(
            (1..=20).contains(&wait),
            "one write refills in 20 s, got {wait}"
        );
        assert_eq!(
            limiter.check("user:b"),
            Ok(()),
            "other callers are not limited"
        );
    }

    #[test]
    fn zero_turns_limiting_off() {
        assert!(WriteLimiter::new(0).is_none());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(19_001)), 20);
    }
}
