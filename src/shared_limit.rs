//! Write budgets kept in Redis (`TALLY_REDIS_URL`), so that every instance using the
//! same Redis spends from one budget per caller.
//!
//! The same GCRA as the in-process limiter (`rate_limit`): a caller may make a burst of
//! `n` writes, then one more every `60 / n` seconds. One Lua script per check reads the
//! caller's "theoretical arrival time", decides and stores the new one, atomically (so
//! concurrent instances never both spend the last unit), on Redis's own clock (so the
//! instances' clocks need not agree). Keys expire when the budget is full again.
//!
//! Bounded waits: a check waits at most [`CALL_TIMEOUT`] for Redis. When Redis cannot
//! be reached (or answers too slowly) the instance falls back to its own limiter, logs
//! that once, says so in `/readyz`, and tries Redis again at most every
//! [`RETRY_EVERY`]; the first answer switches back (logged once too).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use redis::aio::MultiplexedConnection;

/// The longest a write waits for Redis before the local limiter decides instead.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// How often an instance that fell back tries Redis again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// KEYS[1]: the caller's key. ARGV[1]: microseconds per write (60 s / n). ARGV[2]: n.
/// Returns {1, 0} when the write may go ahead, {0, ms to wait} when not.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, math.ceil((allow_at - now) / 1000)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
";

/// The shared budgets of one Redis.
pub struct RedisLimiter {
    client: redis::Client,
    script: redis::Script,
    interval_us: u64,
    burst: u32,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Only one connection attempt at a time; the others use the local limiter meanwhile.
    connecting: tokio::sync::Mutex<()>,
    /// Set while Redis is unreachable (the local limiter decides).
    degraded: AtomicBool,
    /// Before this instant (ms since `epoch`), do not try Redis again.
    retry_at_ms: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("degraded", &self.degraded.load(Ordering::Relaxed))
            .finish()
    }
}

impl RedisLimiter {
    /// `url` is checked here (a bad URL is a configuration error); nothing is connected
    /// until the first check.
    pub fn new(url: &str, per_min: u32) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("TALLY_REDIS_URL: {e}"))?;
        let per_min = per_min.max(1);
        Ok(RedisLimiter {
            client,
            script: redis::Script::new(GCRA),
            interval_us: 60_000_000 / u64::from(per_min),
            burst: per_min,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            degraded: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// Whether the last attempt to reach Redis failed (the local limiter decides).
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Takes one write from `caller`'s shared budget: `Some(Ok)` go ahead, `Some(Err(ms))`
    /// wait that long, `None` Redis is unreachable (decide locally).
    pub async fn check(&self, caller: &str) -> Option<Result<(), u64>> {
        let mut conn = self.connection().await?;
        let key = format!("tally:writes:{caller}");
        let mut invocation = self.script.key(key);
        invocation.arg(self.interval_us).arg(self.burst);
        let call = invocation.invoke_async::<(i64, i64)>(&mut conn);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok((allowed, wait_ms))) => {
                self.reachable();
                Some(if allowed == 1 {
                    Ok(())
                } else {
                    Err(u64::try_from(wait_ms).unwrap_or(1))
                })
            }
            Ok(Err(e)) => {
                self.unreachable(&e.to_string());
                None
            }
            Err(_) => {
                self.unreachable("no answer within 250 ms");
                None
            }
        }
    }

    /// Connects at start, so that the first writes need not wait for it and an
    /// unreachable Redis is logged at once (the instance then starts on its own limits).
    pub async fn warm_up(&self) {
        if self.connection().await.is_some() {
            tracing::info!("write limits shared through Redis (TALLY_REDIS_URL)");
        }
    }

    /// For `/readyz`: while degraded, tries Redis again (at most every [`RETRY_EVERY`]),
    /// so an idle instance notices the recovery too. Whether Redis is in use.
    pub async fn probe(&self) -> bool {
        if self.degraded() {
            if let Some(mut conn) = self.connection().await {
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(&mut conn);
                match tokio::time::timeout(CALL_TIMEOUT, ping).await {
                    Ok(Ok(_)) => self.reachable(),
                    Ok(Err(e)) => self.unreachable(&e.to_string()),
                    Err(_) => self.unreachable("no answer within 250 ms"),
                }
            }
        }
        !self.degraded()
    }

    /// The open connection, or a new one (unless one was tried less than
    /// [`RETRY_EVERY`] ago or another request is connecting right now).
    async fn connection(&self) -> Option<MultiplexedConnection> {
        if let Some(conn) = self.lock_conn().clone() {
            return Some(conn);
        }
        if self.now_ms() < self.retry_at_ms.load(Ordering::Relaxed) {
            return None;
        }
        let _connecting = self.connecting.try_lock().ok()?;
        if let Some(conn) = self.lock_conn().clone() {
            return Some(conn);
        }
        match tokio::time::timeout(CALL_TIMEOUT, self.client.get_multiplexed_async_connection())
            .await
        {
            Ok(Ok(conn)) => {
                *self.lock_conn() = Some(conn.clone());
                Some(conn)
            }
            Ok(Err(e)) => {
                self.unreachable(&e.to_string());
                None
            }
            Err(_) => {
                self.unreachable("no connection within 250 ms");
                None
            }
        }
    }

    fn lock_conn(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reachable(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis reachable again: write limits are shared again");
        }
    }

    fn unreachable(&self, why: &str) {
        *self.lock_conn() = None;
        let retry = self.now_ms() + u64::try_from(RETRY_EVERY.as_millis()).unwrap_or(1000);
        self.retry_at_ms.store(retry, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = why,
                "Redis (TALLY_REDIS_URL) unreachable: each instance limits writes on its own \
                 until it answers again"
            );
        }
    }
}
