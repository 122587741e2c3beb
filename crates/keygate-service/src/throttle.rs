//! In-memory failure counters for password logins, per account name and per client address.
//!
//! Decision (issue #6): login throttles live in memory, in fixed windows read from the injected
//! clock. A password guess costs the attacker an argon2 hash on our side anyway, and a counter
//! in the store would turn every failed guess into a database write an attacker could use to
//! load the store. The cost of that choice: a restart forgets the counters, and with several
//! nodes (PostgreSQL) each node counts separately, so an attacker spreading guesses over N nodes
//! gets N times the budget; put the nodes behind a balancer with client affinity, or add a
//! shared counter (the TOTP counter already is one, in the store) if that matters. Every failure
//! is audited either way. TOTP failures, where guessing is cheap (10^6 codes), are counted in the
//! store and so hold across restarts and nodes (see `totp.rs`).
//!
//! Memory is bounded: at most [`MAX_TRACKED`] keys per counter; when full, expired windows are
//! dropped, and a key that still finds no room is not counted (the other counter, and the audit
//! log, still see it). Refusing everyone instead would let an attacker who sprays addresses lock
//! every user out.

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
/// the count is of failures plus attempts in flight.
#[derive(Debug)]
pub(crate) struct FailureCounter {
    limit: u32,
    window_ms: u64,
    windows: Mutex<HashMap<String, Window>>,
}

/// One attempt reserved by [`FailureCounter::try_consume`]: the window it was counted in
/// (`None` when the table was full and nothing was counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) struct Ticket {
    start: Option<u64>,
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
        Self { limit, window_ms, windows: Mutex::new(HashMap::new()) }
    }

    fn live(&self, w: &Window, now: UnixMillis) -> bool {
        now.0 >= w.start && now.0 - w.start < self.window_ms
    }

    /// Reserves one attempt of `key` at `now` in one step under the lock: `Err` if the window
    /// already holds `limit` attempts or more (nothing counted), otherwise the attempt is
    /// counted before the caller does the work, so concurrent attempts can never all pass. Give
    /// it back with [`FailureCounter::refund`] if the attempt must not count (it succeeded).
    pub(crate) fn try_consume(&self, key: &str, now: UnixMillis, limit: u32) -> Result<Ticket, Refusal> {
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
            return Ok(Ticket { start: Some(w.start) });
        }
        if map.len() >= MAX_TRACKED {
            map.retain(|_, w| now.0 >= w.start && now.0 - w.start < self.window_ms);
            if map.len() >= MAX_TRACKED {
                return Ok(Ticket { start: None });
            }
        }
        if limit == 0 {
            return Err(Refusal { retry_after_ms: self.window_ms, first: true });
        }
        map.insert(key.to_owned(), Window { start: now.0, failures: 1, refusal_reported: false });
        Ok(Ticket { start: Some(now.0) })
    }

    /// [`FailureCounter::try_consume`] with this counter's own limit.
    pub(crate) fn consume(&self, key: &str, now: UnixMillis) -> Result<Ticket, Refusal> {
        self.try_consume(key, now, self.limit)
    }

    /// Gives back the attempt `ticket` reserved, if its window is still the current one.
    pub(crate) fn refund(&self, key: &str, ticket: Ticket) {
        let Some(start) = ticket.start else { return };
        let mut map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = map.get_mut(key)
            && w.start == start
        {
            w.failures = w.failures.saturating_sub(1);
        }
    }

    /// Attempts of `key` counted in the window live at `now`.
    pub(crate) fn count(&self, key: &str, now: UnixMillis) -> u32 {
        let map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key).filter(|w| self.live(w, now)).map_or(0, |w| w.failures)
    }

    /// Forgets `key`'s failures (after a successful login).
    pub(crate) fn clear(&self, key: &str) {
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

    #[test]
    fn reserves_up_to_the_limit_refuses_after_until_the_window_ends_and_reports_once() {
        let c = FailureCounter::new(2, 1000);
        let t = UnixMillis(10_000);
        let _ = c.consume("a", t).unwrap();
        let second = c.consume("a", t.plus_millis(10)).unwrap();
        assert_eq!(c.consume("a", t.plus_millis(100)), Err(Refusal { retry_after_ms: 900, first: true }));
        assert_eq!(c.consume("a", t.plus_millis(200)), Err(Refusal { retry_after_ms: 800, first: false }));
        assert_eq!(c.count("a", t.plus_millis(200)), 2, "refusals are not counted");
        c.refund("a", second);
        assert!(c.consume("a", t.plus_millis(300)).is_ok(), "a refund gives one attempt back");
        assert!(c.consume("b", t).is_ok(), "other keys are unaffected");
        assert!(c.try_consume("b", t, 1).is_err(), "a lower limit applies to the same count");
        let _ = c.consume("a", t.plus_millis(1000)).unwrap();
        assert_eq!(c.count("a", t.plus_millis(1001)), 1, "a new window starts from one attempt");
        c.refund("a", second);
        assert_eq!(c.count("a", t.plus_millis(1001)), 1, "a refund from an old window changes nothing");
        c.clear("a");
        assert_eq!(c.count("a", t.plus_millis(1002)), 0);
    }

    #[test]
    fn concurrent_reservations_never_pass_the_limit() {
        let c = std::sync::Arc::new(FailureCounter::new(5, 1000));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let c = std::sync::Arc::clone(&c);
                std::thread::spawn(move || (0..10).filter(|_| c.consume("k", UnixMillis(1)).is_ok()).count())
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
