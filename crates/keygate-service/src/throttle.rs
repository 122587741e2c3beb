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

/// Counts failures per key in fixed windows; refuses a key once it reached the limit, until its
/// window ends.
#[derive(Debug)]
pub(crate) struct FailureCounter {
    limit: u32,
    window_ms: u64,
    windows: Mutex<HashMap<String, Window>>,
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

    /// `Err` if `key` has used up its failures in the current window at `now`.
    pub(crate) fn check(&self, key: &str, now: UnixMillis) -> Result<(), Refusal> {
        let mut map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get_mut(key) {
            Some(w) if self.live(w, now) && w.failures >= self.limit => {
                let first = !w.refusal_reported;
                w.refusal_reported = true;
                Err(Refusal { retry_after_ms: w.start + self.window_ms - now.0, first })
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure of `key` at `now`.
    pub(crate) fn fail(&self, key: &str, now: UnixMillis) {
        let mut map = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(w) = map.get_mut(key) {
            if self.live(w, now) {
                w.failures = w.failures.saturating_add(1);
            } else {
                *w = Window { start: now.0, failures: 1, refusal_reported: false };
            }
            return;
        }
        if map.len() >= MAX_TRACKED {
            map.retain(|_, w| now.0 >= w.start && now.0 - w.start < self.window_ms);
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        map.insert(key.to_owned(), Window { start: now.0, failures: 1, refusal_reported: false });
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
    fn refuses_after_the_limit_until_the_window_ends_and_reports_once() {
        let c = FailureCounter::new(2, 1000);
        let t = UnixMillis(10_000);
        c.fail("a", t);
        assert!(c.check("a", t).is_ok());
        c.fail("a", t.plus_millis(10));
        assert_eq!(c.check("a", t.plus_millis(100)), Err(Refusal { retry_after_ms: 900, first: true }));
        assert_eq!(c.check("a", t.plus_millis(200)), Err(Refusal { retry_after_ms: 800, first: false }));
        assert!(c.check("b", t).is_ok(), "other keys are unaffected");
        assert!(c.check("a", t.plus_millis(1000)).is_ok(), "the window passed");
        c.fail("a", t.plus_millis(1000));
        assert!(c.check("a", t.plus_millis(1001)).is_ok(), "a new window starts from one failure");
        c.clear("a");
        c.fail("a", t.plus_millis(1002));
        assert!(c.check("a", t.plus_millis(1003)).is_ok());
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        assert_eq!(ip_key(Some("2001:db8:1:2:aaaa::1")), ip_key(Some("2001:db8:1:2:bbbb::2")));
        assert_ne!(ip_key(Some("2001:db8:1:2::1")), ip_key(Some("2001:db8:1:3::1")));
        assert_eq!(ip_key(Some("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(ip_key(None), "-");
    }
}
