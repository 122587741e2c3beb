//! Counters several keygate nodes share, in Redis (`serve --redis-url`): the rate limits' fixed
//! windows and the login and 2FA failure windows, behind `keygate_service::counters::CounterStore`.
//!
//! Every call is one Lua script, so each is atomic however many nodes call at once: a fixed
//! window is an `INCRBY` with a `PEXPIRE` when the key is new (capped adds check every counter
//! first); a failure window is a small hash (`s` start, `n` attempts, `r` refusal reported). Times
//! come from the caller's clock, never from Redis; the expiries only collect keys whose windows
//! have passed. Every key starts with a prefix (`keygate:` by default), so several deployments,
//! or parallel tests, can share one Redis without colliding.
//!
//! One multiplexed connection per node (redis-rs' `ConnectionManager`: commands from every
//! request are pipelined on it, and it reconnects by itself after an error); what a node does
//! while Redis does not answer is the service layer's decision (see `keygate_service::counters`).

use async_trait::async_trait;
use keygate_service::counters::{CounterError, CounterStore, Reservation, WindowAdd, WindowCounts};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Adds to fixed windows. KEYS: the counters. ARGV[1]: 1 for a capped add; then per key `by`,
/// `limit`, `ttl_ms`. Returns `{added, value...}`.
const ADD: &str = r"
local capped = ARGV[1] == '1'
local out = {}
if capped then
  for i, k in ipairs(KEYS) do
    local v = tonumber(redis.call('GET', k) or '0')
    if v >= tonumber(ARGV[3 * i]) then
      out[1] = 0
      for j, k2 in ipairs(KEYS) do out[j + 1] = tonumber(redis.call('GET', k2) or '0') end
      return out
    end
  end
end
out[1] = 1
for i, k in ipairs(KEYS) do
  local v = redis.call('INCRBY', k, ARGV[3 * i - 1])
  if redis.call('PTTL', k) < 0 then redis.call('PEXPIRE', k, ARGV[3 * i + 1]) end
  out[i + 1] = v
end
return out
";

/// Subtracts ARGV[1] from each of KEYS that exists, never below zero.
const SUBTRACT: &str = r"
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then
    if redis.call('DECRBY', k, ARGV[1]) < 0 then redis.call('SET', k, 0, 'KEEPTTL') end
  end
end
return 0
";

/// Reserves one attempt in a failure window. KEYS[1]; ARGV: now, window_ms, limit, ttl_ms.
/// Returns `{reserved, window_start, first_refusal}`.
const RESERVE: &str = r"
local now = tonumber(ARGV[1])
local win = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '-1')
if s < 0 or now < s or now - s >= win then
  if limit <= 0 then return {0, now, 1} end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 's', ARGV[1], 'n', 1, 'r', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {1, now, 0}
end
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if n >= limit then
  local first = redis.call('HGET', KEYS[1], 'r') ~= '1'
  redis.call('HSET', KEYS[1], 'r', 1)
  return {0, s, first and 1 or 0}
end
redis.call('HINCRBY', KEYS[1], 'n', 1)
return {1, s, 0}
";

/// Gives back one attempt if the window that started at ARGV[1] is still KEYS[1]'s.
const RELEASE: &str = r"
local s = redis.call('HGET', KEYS[1], 's')
if s and tonumber(s) == tonumber(ARGV[1]) then
  if redis.call('HINCRBY', KEYS[1], 'n', -1) < 0 then redis.call('HSET', KEYS[1], 'n', 0) end
end
return 0
";

/// Attempts in KEYS[1]'s window live at ARGV[1] (window ARGV[2] ms).
const FAILURES: &str = r"
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '-1')
local now = tonumber(ARGV[1])
if s < 0 or now < s or now - s >= tonumber(ARGV[2]) then return 0 end
return tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
";

/// How long a failure window's key is kept beyond its window, real time: a margin for clocks
/// that differ between nodes.
const FAILURE_TTL_MARGIN_MS: u64 = 60_000;

/// Counters in one Redis database, under one key prefix.
pub struct RedisCounters {
    connection: ConnectionManager,
    prefix: String,
    described: String,
    add: redis::Script,
    subtract: redis::Script,
    reserve: redis::Script,
    release: redis::Script,
    failures: redis::Script,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounters").field("at", &self.described).field("prefix", &self.prefix).finish()
    }
}

/// Why [`RedisCounters::new`] refused a URL.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

impl RedisCounters {
    /// Counters in the Redis at `url` (`redis://host:port/db`), every key starting with
    /// `prefix`. Connects lazily: a Redis that is down at start is an outage like any other (the
    /// node counts alone until it answers), not a reason to stay down. Each command, and each
    /// connection attempt, gives up after `timeout`.
    ///
    /// # Errors
    /// A URL that is not a Redis URL, or one for TLS or a Unix socket (not built in).
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, UrlError> {
        let client = redis::Client::open(url).map_err(|e| UrlError(format!("--redis-url: {e}")))?;
        let info = client.get_connection_info();
        let described = format!("redis://{}/{}", info.addr(), info.redis_settings().db());
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| UrlError(format!("--redis-url: {e}")))?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            described,
            add: redis::Script::new(ADD),
            subtract: redis::Script::new(SUBTRACT),
            reserve: redis::Script::new(RESERVE),
            release: redis::Script::new(RELEASE),
            failures: redis::Script::new(FAILURES),
        })
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }
}

fn failed(e: &redis::RedisError) -> CounterError {
    CounterError(format!("redis: {e}"))
}

/// A count as the service keeps it: negative ones (never written) read as 0, huge ones saturate.
fn count(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

#[async_trait]
impl CounterStore for RedisCounters {
    async fn add(&self, counters: &[WindowAdd], capped: bool) -> Result<WindowCounts, CounterError> {
        let mut call = self.add.prepare_invoke();
        call.arg(if capped { "1" } else { "0" });
        for c in counters {
            call.key(self.key(&c.key)).arg(c.by).arg(c.limit).arg(c.ttl_ms.max(1));
        }
        let out: Vec<i64> = call.invoke_async(&mut self.connection.clone()).await.map_err(|e| failed(&e))?;
        let (added, values) = out.split_first().ok_or_else(|| CounterError("redis: empty answer".into()))?;
        Ok(WindowCounts { added: *added == 1, values: values.iter().copied().map(count).collect() })
    }

    async fn subtract(&self, keys: &[String], by: u32) -> Result<(), CounterError> {
        let mut call = self.subtract.prepare_invoke();
        call.arg(by);
        for k in keys {
            call.key(self.key(k));
        }
        let _: i64 = call.invoke_async(&mut self.connection.clone()).await.map_err(|e| failed(&e))?;
        Ok(())
    }

    async fn reserve(
        &self,
        key: &str,
        now_ms: u64,
        window_ms: u64,
        limit: u32,
    ) -> Result<Reservation, CounterError> {
        let mut call = self.reserve.prepare_invoke();
        call.key(self.key(key))
            .arg(now_ms)
            .arg(window_ms)
            .arg(limit)
            .arg(window_ms.saturating_add(FAILURE_TTL_MARGIN_MS));
        let out: (i64, u64, i64) = call.invoke_async(&mut self.connection.clone()).await.map_err(|e| failed(&e))?;
        Ok(match out {
            (1, window_start, _) => Reservation::Reserved { window_start },
            (_, window_start, first) => Reservation::Refused { window_start, first: first == 1 },
        })
    }

    async fn release(&self, key: &str, window_start: u64) -> Result<(), CounterError> {
        let mut call = self.release.prepare_invoke();
        call.key(self.key(key)).arg(window_start);
        let _: i64 = call.invoke_async(&mut self.connection.clone()).await.map_err(|e| failed(&e))?;
        Ok(())
    }

    async fn failures(&self, key: &str, now_ms: u64, window_ms: u64) -> Result<u32, CounterError> {
        let mut call = self.failures.prepare_invoke();
        call.key(self.key(key)).arg(now_ms).arg(window_ms);
        let n: i64 = call.invoke_async(&mut self.connection.clone()).await.map_err(|e| failed(&e))?;
        Ok(count(n))
    }

    async fn forget(&self, key: &str) -> Result<(), CounterError> {
        let _: i64 = redis::cmd("DEL")
            .arg(self.key(key))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(|e| failed(&e))?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), CounterError> {
        let _: String = redis::cmd("PING").query_async(&mut self.connection.clone()).await.map_err(|e| failed(&e))?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.described.clone()
    }
}
