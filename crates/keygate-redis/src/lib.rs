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
    /// A URL that is not a Redis URL, or one for TLS (`rediss://`: not built in).
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

    async fn reserve(&self, key: &str, now_ms: u64, window_ms: u64, limit: u32) -> Result<Reservation, CounterError> {
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

#[cfg(any(test, feature = "testing"))]
pub mod testing {
    //! For tests of several nodes sharing one Redis: the test Redis from the environment, a key
    //! prefix no other test uses, and a Redis server process of a test's own to stop for real.
    //!
    //! `KEYGATE_TEST_REDIS_URL` names the Redis (CI exports `redis://127.0.0.1:6379/0`). Unset,
    //! the Redis tests are skipped with a line on stderr; set, they must reach it or fail, so a
    //! misconfigured CI cannot pass silently (as `KEYGATE_TEST_POSTGRES_URL` does).

    use super::RedisCounters;
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// The variable naming the test Redis.
    pub const REDIS_URL_ENV: &str = "KEYGATE_TEST_REDIS_URL";

    static PREFIXES: AtomicU32 = AtomicU32::new(0);

    /// The test Redis's URL, or `None` (after saying on stderr that `test` is skipped) when
    /// [`REDIS_URL_ENV`] is unset.
    ///
    /// # Panics
    /// When the variable is set but empty.
    #[must_use]
    pub fn url_or_skip(test: &str) -> Option<String> {
        if let Ok(url) = std::env::var(REDIS_URL_ENV) {
            assert!(
                !url.trim().is_empty(),
                "{REDIS_URL_ENV} is set but empty: set it (redis://127.0.0.1:6379/0) or unset it to skip"
            );
            return Some(url);
        }
        // Straight to stderr: libtest hides what a passing test prints.
        let _ = writeln!(std::io::stderr(), "{test}: skipped: {REDIS_URL_ENV} is not set");
        None
    }

    /// A key prefix no other test (in this process or another) uses, so tests share one Redis
    /// without flushing anything.
    #[must_use]
    pub fn unique_prefix() -> String {
        let mut random = [0u8; 4];
        let _ = getrandom::getrandom(&mut random);
        format!(
            "kgtest:{}:{}:{}:",
            std::process::id(),
            PREFIXES.fetch_add(1, Ordering::Relaxed),
            u32::from_le_bytes(random)
        )
    }

    /// Counters at `url` under a fresh [`unique_prefix`], with the production timeout.
    ///
    /// # Panics
    /// When `url` is not a Redis URL.
    #[must_use]
    #[allow(clippy::expect_used)] // Test support: failing loudly is the point.
    pub fn counters(url: &str) -> RedisCounters {
        RedisCounters::new(url, &unique_prefix(), Duration::from_millis(250)).expect("a Redis URL")
    }

    /// A `redis-server` of the test's own on a free loopback port, without persistence; stopped
    /// (SIGKILL) by [`Self::kill`] or on drop.
    #[derive(Debug)]
    pub struct RedisProcess {
        child: std::process::Child,
        /// Its port on 127.0.0.1.
        pub port: u16,
        _dir: tempfile::TempDir,
    }

    impl RedisProcess {
        /// Starts one and waits until it answers.
        ///
        /// # Panics
        /// When `redis-server` is not installed or does not answer within 10 s.
        #[must_use]
        #[allow(clippy::expect_used, clippy::unwrap_used)] // Test support.
        pub fn start() -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            Self::start_on(port)
        }

        /// Starts one on `port` (again, after [`Self::kill`]) and waits until it answers.
        ///
        /// # Panics
        /// As [`Self::start`].
        #[must_use]
        #[allow(clippy::expect_used, clippy::unwrap_used)] // Test support.
        pub fn start_on(port: u16) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("redis-server must be installed for the Redis tests (apt-get install redis-server)");
            let mut p = Self { child, port, _dir: dir };
            for _ in 0..200 {
                if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                    let mut answer = [0u8; 7];
                    if s.write_all(b"PING\r\n").is_ok()
                        && std::io::Read::read_exact(&mut s, &mut answer).is_ok()
                        && &answer == b"+PONG\r\n"
                    {
                        return p;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            p.kill();
            panic!("redis-server on port {port} did not answer within 10 s");
        }

        /// `redis://127.0.0.1:<port>/0`.
        #[must_use]
        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/0", self.port)
        }

        /// Freezes it (SIGSTOP): connections stay open and nothing answers, as with a hung host.
        ///
        /// # Panics
        /// When `kill` cannot be run.
        #[allow(clippy::unwrap_used)] // Test support.
        pub fn pause(&self) {
            let pid = self.child.id().to_string();
            assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
        }

        /// Stops it at once (SIGKILL) and waits for it to be gone.
        pub fn kill(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for RedisProcess {
        fn drop(&mut self) {
            self.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The scripts against a real Redis (`KEYGATE_TEST_REDIS_URL`), each test under its own prefix.

    use super::testing::{RedisProcess, counters, url_or_skip};
    use super::*;

    fn window(key: &str, by: u32, limit: u32) -> WindowAdd {
        WindowAdd { key: key.to_owned(), by, limit, ttl_ms: 60_000 }
    }

    #[tokio::test]
    async fn window_adds_count_across_handles_and_a_capped_add_stops_at_the_limit() {
        let Some(url) = url_or_skip("window_adds_count_across_handles_and_a_capped_add_stops_at_the_limit") else {
            return;
        };
        let a = counters(&url);
        // A second connection under the same prefix: another node.
        let b = RedisCounters::new(&url, &a.prefix, Duration::from_millis(250)).unwrap();
        let got = a.add(&[window("w", 5, 10), window("r", 1, 100)], false).await.unwrap();
        assert_eq!(got, WindowCounts { added: true, values: vec![5, 1] });
        let got = b.add(&[window("w", 7, 10), window("r", 1, 100)], false).await.unwrap();
        assert_eq!(got, WindowCounts { added: true, values: vec![12, 2] }, "uncapped adds go past the limit");
        // Capped: both below their limits, so both count; then one is full, so neither does.
        assert_eq!(a.add(&[window("o1", 1, 2), window("o2", 1, 3)], true).await.unwrap().values, vec![1, 1]);
        assert_eq!(b.add(&[window("o1", 1, 2), window("o2", 1, 3)], true).await.unwrap().values, vec![2, 2]);
        let full = a.add(&[window("o1", 1, 2), window("o2", 1, 3)], true).await.unwrap();
        assert_eq!(full, WindowCounts { added: false, values: vec![2, 2] });
        // A refund brings one back, never below zero, and creates nothing.
        b.subtract(&["o1".to_owned(), "never".to_owned()], 1).await.unwrap();
        b.subtract(&["o2".to_owned()], 5).await.unwrap();
        assert_eq!(
            a.add(&[window("o1", 0, 2), window("o2", 0, 3), window("never", 0, 1)], false).await.unwrap().values,
            vec![1, 0, 0]
        );
        // Another prefix sees none of it.
        assert_eq!(counters(&url).add(&[window("w", 0, 10)], false).await.unwrap().values, vec![0]);
    }

    #[tokio::test]
    async fn failure_windows_start_at_the_first_attempt_refuse_at_the_limit_and_report_the_first_refusal_once() {
        let Some(url) = url_or_skip(
            "failure_windows_start_at_the_first_attempt_refuse_at_the_limit_and_report_the_first_refusal_once",
        ) else {
            return;
        };
        let a = counters(&url);
        let b = RedisCounters::new(&url, &a.prefix, Duration::from_millis(250)).unwrap();
        let t = 1_767_225_600_000;
        assert_eq!(a.reserve("k", t, 1_000, 2).await.unwrap(), Reservation::Reserved { window_start: t });
        assert_eq!(b.reserve("k", t + 10, 1_000, 2).await.unwrap(), Reservation::Reserved { window_start: t });
        assert_eq!(
            b.reserve("k", t + 20, 1_000, 2).await.unwrap(),
            Reservation::Refused { window_start: t, first: true }
        );
        assert_eq!(
            a.reserve("k", t + 30, 1_000, 2).await.unwrap(),
            Reservation::Refused { window_start: t, first: false }
        );
        assert_eq!(a.failures("k", t + 40, 1_000).await.unwrap(), 2, "refusals are not counted");
        a.release("k", t).await.unwrap();
        assert_eq!(b.failures("k", t + 40, 1_000).await.unwrap(), 1);
        a.release("k", t - 1).await.unwrap();
        assert_eq!(b.failures("k", t + 40, 1_000).await.unwrap(), 1, "a release from another window changes nothing");
        // The window ends by the callers' clock, not Redis's.
        assert_eq!(a.failures("k", t + 1_000, 1_000).await.unwrap(), 0);
        assert_eq!(
            a.reserve("k", t + 1_000, 1_000, 2).await.unwrap(),
            Reservation::Reserved { window_start: t + 1_000 }
        );
        b.forget("k").await.unwrap();
        assert_eq!(a.failures("k", t + 1_001, 1_000).await.unwrap(), 0);
        assert!(matches!(a.reserve("z", t, 1_000, 0).await.unwrap(), Reservation::Refused { first: true, .. }));
        a.ping().await.unwrap();
    }

    #[tokio::test]
    async fn a_stopped_redis_answers_with_an_error_not_a_hang_even_before_the_first_connection() {
        if url_or_skip("a_stopped_redis_answers_with_an_error_not_a_hang_even_before_the_first_connection").is_none() {
            return;
        }
        let mut redis = RedisProcess::start();
        let c = counters(&redis.url());
        c.ping().await.unwrap();
        redis.kill();
        let failed = tokio::time::timeout(Duration::from_secs(2), c.add(&[window("w", 1, 10)], false)).await;
        assert!(matches!(failed, Ok(Err(_))), "{failed:?}");
        // Never connected: the first call fails the same way (nothing failed at construction).
        let fresh = counters(&redis.url());
        let failed = tokio::time::timeout(Duration::from_secs(2), fresh.ping()).await;
        assert!(matches!(failed, Ok(Err(_))), "{failed:?}");
        assert!(c.describe().starts_with("redis://127.0.0.1:"), "{}", c.describe());
    }
}
