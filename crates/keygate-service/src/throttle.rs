//! Failure counters for password logins, sign-ups and login 2FA codes, per account name, per
//! client address and per login session.
//!
//! Decision (issue #6, revised for issue #13): the counters live in memory, in windows read from
//! the injected clock that start at a key's first attempt, unless the node was given shared
//! counters (`serve --redis-url`, see [`crate::counters`]): then every node counts in the same
//! place, so an attacker who spreads guesses over N nodes gets the budget of one, and each node
//! keeps its own count beside it to fall back on when the shared counters do not answer. A
//! password guess costs the attacker an argon2 hash on our side anyway, and a counter in the SQL
//! store would turn every failed guess into a database write an attacker could use to load the
//! store; so these are never in the SQL store. In memory alone, a restart forgets them. Every
//! failure is audited either way. TOTP failures per account, where guessing is cheap (10^6
//! codes), are counted in the SQL store as well and so hold across restarts and nodes (see
//! `totp.rs`).
//!
//! Memory is bounded: at most [`MAX_TRACKED`] keys per counter; when full, expired windows are
//! dropped, and a key that still finds no room is not counted (the other counter, and the audit
//! log, still see it). Refusing everyone instead would let an attacker who sprays addresses lock
//! every user out.

use crate::counters::{Reservation, SharedCounters};
use keygate_proto::UnixMillis;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Most keys one counter tracks at a time.
pub(crate) const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    failures: u32,
    /// A refusal in this window was already reported (audited), so a flood of refused attempts
    /// writes one audit record per window rather than one per attempt.
    refusal_reported: bool,
}

/// Counts attempts per key in fixed windows; refuses a key once it reached the limit, until its
/// window ends. Attempts are reserved before the work they guard and refunded on success, so
/// the count is of failures plus attempts in flight. With shared counters, they decide, and the
/// count in memory (this node's attempts) is kept beside them for when they do not answer.
#[derive(Debug)]
pub(crate) struct FailureCounter {
    limit: u32,
    window_ms: u64,
    windows: Mutex<HashMap<String, Window>>,
    /// The counters every node shares, and this counter's name among them.
    shared: Option<(SharedCounters, &'static str)>,
}

/// One attempt reserved by [`FailureCounter::try_consume`]: the window it was counted in here
/// (`None` when the table was full and nothing was counted) and in the shared counters (`None`
/// without them, or when they did not answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) struct Ticket {
    start: Option<u64>,
    shared_start: Option<u64>,
}

/// A refusal: how long until the window ends, and whether this is the first refusal of the
/// window (the one to audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub retry_after_ms: u64,
    pub first: bool,
}

impl FailureCounter {
    /// A counter allowing `limit` failures per `window_ms`.
    pub(crate) fn new(limit: u32, window_ms: u64) -> Self {
        Self { limit, window_ms, windows: Mutex::new(HashMap::new()), shared: None }
    }

    /// Counts in `shared` too, under `name` (unique per counter), when given.
    pub(crate) fn sharing(mut self, shared: Option<&SharedCounters>, name: &'static str) -> Self {
        self.shared = shared.map(|s| (s.clone(), name));
        self
    }

    fn shared_key(name: &str, key: &str) -> String {
        format!("t:{name}:{key}")
    }

    /// Reserves one attempt of `key` at `now`: in the shared counters when there are some and
    /// they answer (they decide, and the attempt is counted here too, uncapped, for a later
    /// outage), otherwise here alone, as [`FailureCounter::try_consume_here`] does.
    pub(crate) async fn try_consume(&self, key: &str, now: UnixMillis, limit: u32) -> Result<Ticket, Refusal> {
        if let Some((shared, name)) = &self.shared
            && let Some(r) = shared.reserve(&Self::shared_key(name, key), now.0, self.window_ms, limit).await
        {
            return match r {
                Reservation::Reserved { window_start } => {
                    let here =
                        self.try_consume_here(key, now, u32::MAX).unwrap_or(Ticket { start: None, shared_start: None });
                    Ok(Ticket { start: here.start, shared_start: Some(window_start) })
                }
                Reservation::Refused { window_start, first } => Err(Refusal {
                    retry_after_ms: window_start.saturating_add(self.window_ms).saturating_sub(now.0).max(1),
                    first,
                }),
            };
        }
        self.try_consume_here(key, now, limit)
    }

    fn live(&self, w: &Window, now: UnixMillis) -> bool {
        now.0 >= w.start && now.0 - w.start < self.window_ms
    }

    /// Reserves one attempt of `key` at `now` in memory, in one step under the lock: `Err` if
    /// the window already holds `limit` attempts or more (nothing counted), otherwise the attempt
    /// is counted before the caller does the work, so concurrent attempts can never all pass.
    /// Give it back with [`FailureCounter::refund`] if the attempt must not count (it succeeded).
    fn try_consume_here(&self, key: &str, now: UnixMillis, limit: u32) -> Result<Ticket, Refusal> {
        let mut map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = map.get_mut(key) {
            if self.live(w, now) {
                if w.failures >= limit {
                    let first = !w.refusal_reported;
                    w.refusal_reported = true;
                    return Err(Refusal { retry_after_ms: w.start + self.window_ms - now.0, first });
                }
                w.failures = w.failures.saturating_add(1);
            } else {
                *w = Window { start: now.0, failures: 1, refusal_reported: false };
            }
            return Ok(Ticket { start: Some(w.start), shared_start: None });
        }
        if map.len() >= MAX_TRACKED {
            map.retain(|_, w| now.0 >= w.start && now.0 - w.start < self.window_ms);
            if map.len() >= MAX_TRACKED {
                return Ok(Ticket { start: None, shared_start: None });
            }
        }
        if limit == 0 {
            return Err(Refusal { retry_after_ms: self.window_ms, first: true });
        }
        map.insert(key.to_owned(), Window { start: now.0, failures: 1, refusal_reported: false });
        Ok(Ticket { start: Some(now.0), shared_start: None })
    }

    /// [`FailureCounter::try_consume`] with this counter's own limit.
    pub(crate) async fn consume(&self, key: &str, now: UnixMillis) -> Result<Ticket, Refusal> {
        self.try_consume(key, now, self.limit).await
    }

    /// Gives back the attempt `ticket` reserved, where its window is still the current one.
    pub(crate) async fn refund(&self, key: &str, ticket: Ticket) {
        if let (Some((shared, name)), Some(start)) = (&self.shared, ticket.shared_start) {
            shared.release(&Self::shared_key(name, key), start).await;
        }
        self.refund_here(key, ticket);
    }

    fn refund_here(&self, key: &str, ticket: Ticket) {
        let Some(start) = ticket.start else { return };
        let mut map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = map.get_mut(key)
            && w.start == start
        {
            w.failures = w.failures.saturating_sub(1);
        }
    }

    /// Attempts of `key` counted in the window live at `now` (by every node, with shared
    /// counters that answer).
    pub(crate) async fn count(&self, key: &str, now: UnixMillis) -> u32 {
        if let Some((shared, name)) = &self.shared
            && let Some(n) = shared.failures(&Self::shared_key(name, key), now.0, self.window_ms).await
        {
            return n;
        }
        self.count_here(key, now)
    }

    fn count_here(&self, key: &str, now: UnixMillis) -> u32 {
        let map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key).filter(|w| self.live(w, now)).map_or(0, |w| w.failures)
    }

    /// Forgets `key`'s failures (after a successful login).
    pub(crate) async fn clear(&self, key: &str) {
        if let Some((shared, name)) = &self.shared {
            shared.forget(&Self::shared_key(name, key)).await;
        }
        self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }
}

/// The throttle key of a client address: the address itself, or its /64 for IPv6 (one
/// subscriber usually holds a whole /64). Unparseable or missing sources share one key.
pub(crate) fn ip_key(source: Option<&str>) -> String {
    match source.and_then(|s| s.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => source.map_or_else(|| "-".to_owned(), |s| format!("other:{s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reserves_up_to_the_limit_refuses_after_until_the_window_ends_and_reports_once() {
        let c = FailureCounter::new(2, 1000);
        let t = UnixMillis(10_000);
        let _ = c.consume("a", t).await.unwrap();
        let second = c.consume("a", t.plus_millis(10)).await.unwrap();
        assert_eq!(c.consume("a", t.plus_millis(100)).await, Err(Refusal { retry_after_ms: 900, first: true }));
        assert_eq!(c.consume("a", t.plus_millis(200)).await, Err(Refusal { retry_after_ms: 800, first: false }));
        assert_eq!(c.count("a", t.plus_millis(200)).await, 2, "refusals are not counted");
        c.refund("a", second).await;
        assert!(c.consume("a", t.plus_millis(300)).await.is_ok(), "a refund gives one attempt back");
        assert!(c.consume("b", t).await.is_ok(), "other keys are unaffected");
        assert!(c.try_consume("b", t, 1).await.is_err(), "a lower limit applies to the same count");
        let _ = c.consume("a", t.plus_millis(1000)).await.unwrap();
        assert_eq!(c.count("a", t.plus_millis(1001)).await, 1, "a new window starts from one attempt");
        c.refund("a", second).await;
        assert_eq!(c.count("a", t.plus_millis(1001)).await, 1, "a refund from an old window changes nothing");
        c.clear("a").await;
        assert_eq!(c.count("a", t.plus_millis(1002)).await, 0);
    }

    #[test]
    fn concurrent_reservations_never_pass_the_limit() {
        let c = std::sync::Arc::new(FailureCounter::new(5, 1000));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let c = std::sync::Arc::clone(&c);
                std::thread::spawn(move || {
                    (0..10).filter(|_| c.try_consume_here("k", UnixMillis(1), 5).is_ok()).count()
                })
            })
            .collect();
        let passed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(passed, 5);
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        assert_eq!(ip_key(Some("2001:db8:1:2:aaaa::1")), ip_key(Some("2001:db8:1:2:bbbb::2")));
        assert_ne!(ip_key(Some("2001:db8:1:2::1")), ip_key(Some("2001:db8:1:3::1")));
        assert_eq!(ip_key(Some("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(ip_key(None), "-");
    }
}
