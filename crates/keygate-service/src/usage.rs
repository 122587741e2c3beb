//! Usage counters and denial aggregates, kept in memory and flushed off the hot path.

use keygate_auth::{AccountId, ApiKeyId, Rejection};
use keygate_proto::UnixMillis;
use keygate_store::{AuditDraft, UsageDelta};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Per-key request counts since the last flush, in a few independently locked shards. A thread
/// keeps to one shard (picked round-robin the first time it records), so request threads on
/// different cores do not take turns on one lock; `drain` merges the shards.
#[derive(Debug)]
pub struct UsageTracker {
    shards: Vec<Mutex<HashMap<ApiKeyId, Counted>>>,
}

impl Default for UsageTracker {
    fn default() -> Self {
        Self { shards: (0..USAGE_SHARDS).map(|_| Mutex::default()).collect() }
    }
}

/// Shards of the usage counters: more than the request threads of a small server.
const USAGE_SHARDS: usize = 8;

thread_local! {
    /// This thread's usage shard.
    static USAGE_SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % USAGE_SHARDS
    };
}

/// One key's requests since the last flush. The address stays an [`IpAddr`] until the flush:
/// recording runs on every verified request, formatting only once per key per flush.
#[derive(Debug, Clone)]
struct Counted {
    count: u64,
    last_used_at: UnixMillis,
    last_used_ip: IpAddr,
    /// The distinct addresses used since the last flush, with the first time each was seen, at
    /// most [`MAX_ADDRESSES_PER_FLUSH`] (for the "used from a new address" event, issue #17).
    addresses: Vec<(IpAddr, UnixMillis)>,
}

/// Distinct addresses remembered per key between two flushes; more are rare (a key used from
/// many addresses within a second) and wait for a later flush to be noticed.
const MAX_ADDRESSES_PER_FLUSH: usize = 8;

/// A key used from an address since the last flush (the first time in that interval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressUse {
    /// The key.
    pub key: ApiKeyId,
    /// The address.
    pub ip: IpAddr,
    /// The first use from it in the interval.
    pub at: UnixMillis,
}

impl UsageTracker {
    /// Counts one verified request.
    pub fn record(&self, key: &ApiKeyId, at: UnixMillis, ip: IpAddr) {
        let shard = USAGE_SHARD.with(|s| *s);
        let mut map = self.shards[shard].lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get_mut(key) {
            c.count += 1;
            // The common case, one address per key, costs one comparison.
            if c.last_used_ip != ip
                && c.addresses.len() < MAX_ADDRESSES_PER_FLUSH
                && !c.addresses.iter().any(|(a, _)| *a == ip)
            {
                c.addresses.push((ip, at));
            }
            if at >= c.last_used_at {
                c.last_used_at = at;
                c.last_used_ip = ip;
            }
        } else {
            map.insert(
                key.clone(),
                Counted { count: 1, last_used_at: at, last_used_ip: ip, addresses: vec![(ip, at)] },
            );
        }
    }

    /// Takes everything counted so far: one delta per key, and every (key, address) pair used.
    pub fn drain_with_addresses(&self) -> (Vec<UsageDelta>, Vec<AddressUse>) {
        let mut merged: HashMap<ApiKeyId, Counted> = HashMap::new();
        for shard in &self.shards {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(PoisonError::into_inner));
            for (key, c) in taken {
                merge(&mut merged, key, c);
            }
        }
        let mut uses = Vec::new();
        let deltas = merged
            .into_iter()
            .map(|(key_id, c)| {
                uses.extend(c.addresses.iter().map(|&(ip, at)| AddressUse { key: key_id.clone(), ip, at }));
                UsageDelta {
                    key_id,
                    count: c.count,
                    last_used_at: c.last_used_at,
                    last_used_ip: c.last_used_ip.to_string(),
                }
            })
            .collect();
        (deltas, uses)
    }

    /// Takes everything counted so far, one delta per key.
    pub fn drain(&self) -> Vec<UsageDelta> {
        self.drain_with_addresses().0
    }

    /// Puts back deltas whose flush failed, so no count is lost.
    pub fn restore(&self, deltas: Vec<UsageDelta>) {
        let mut map = self.shards[0].lock().unwrap_or_else(PoisonError::into_inner);
        for d in deltas {
            // The address was formatted by `drain` from an `IpAddr`, so it parses back.
            let ip = d.last_used_ip.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            // The addresses were handed on separately (see [`Self::drain_with_addresses`]).
            let c = Counted { count: d.count, last_used_at: d.last_used_at, last_used_ip: ip, addresses: Vec::new() };
            merge(&mut map, d.key_id, c);
        }
    }
}

/// Adds `c` to `key`'s counts in `map`, keeping the address of the latest use.
fn merge(map: &mut HashMap<ApiKeyId, Counted>, key: ApiKeyId, c: Counted) {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut e) => {
            let e = e.get_mut();
            e.count += c.count;
            for (ip, at) in c.addresses {
                if let Some((_, first)) = e.addresses.iter_mut().find(|(a, _)| *a == ip) {
                    *first = (*first).min(at);
                } else if e.addresses.len() < MAX_ADDRESSES_PER_FLUSH {
                    e.addresses.push((ip, at));
                }
            }
            if c.last_used_at > e.last_used_at {
                e.last_used_at = c.last_used_at;
                e.last_used_ip = c.last_used_ip;
            }
        }
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(c);
        }
    }
}

/// Most distinct (key, reason, minute) groups held between flushes; beyond it denials are only
/// counted, so a flood of made-up key ids cannot exhaust memory.
const MAX_GROUPS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DenialGroup {
    key: Option<ApiKeyId>,
    account: Option<AccountId>,
    reason: &'static str,
    minute: UnixMillis,
}

#[derive(Debug, Default)]
struct DenialState {
    groups: HashMap<DenialGroup, (u64, IpAddr)>,
    overflow: u64,
    unwritten: Vec<AuditDraft>,
}

/// Denied requests, aggregated per key, reason and minute for the audit log.
#[derive(Debug, Default)]
pub struct DenialAggregator {
    state: Mutex<DenialState>,
}

impl DenialAggregator {
    /// Counts one denial.
    pub fn record(&self, rejection: &Rejection, at: UnixMillis, ip: IpAddr) {
        let group = DenialGroup {
            key: rejection.key.as_ref().map(|k| k.id.clone()),
            account: rejection.key.as_ref().map(|k| k.account_id),
            reason: rejection.denial.reason(),
            minute: at.minute_start(),
        };
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = st.groups.get_mut(&group) {
            entry.0 += 1;
            entry.1 = ip;
        } else if st.groups.len() < MAX_GROUPS {
            st.groups.insert(group, (1, ip));
        } else {
            st.overflow += 1;
        }
    }

    /// Puts back drafts that could not be written, to be retried by the next flush.
    pub fn restore(&self, drafts: impl Iterator<Item = AuditDraft>) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.unwritten.extend(drafts);
    }

    /// Audit drafts for every group whose minute has ended by `now` (all groups when `all`),
    /// after any put back by a failed flush.
    pub fn drain(&self, now: UnixMillis, all: bool) -> Vec<AuditDraft> {
        let current = now.minute_start();
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let closed: Vec<DenialGroup> = st.groups.keys().filter(|g| all || g.minute < current).cloned().collect();
        let mut out = std::mem::take(&mut st.unwritten);
        out.reserve(closed.len() + 1);
        for g in closed {
            if let Some((count, ip)) = st.groups.remove(&g) {
                out.push(AuditDraft {
                    at: now,
                    actor: "api".into(),
                    action: "api.denied".into(),
                    target: g.key.as_ref().map_or_else(|| "unknown-key".to_owned(), ToString::to_string),
                    account_id: g.account,
                    source: Some(ip.to_string()),
                    details: serde_json::json!({ "reason": g.reason, "count": count, "minute": g.minute.0 }),
                });
            }
        }
        if st.overflow > 0 && (all || st.groups.is_empty()) {
            out.push(AuditDraft {
                at: now,
                actor: "api".into(),
                action: "api.denied".into(),
                target: "overflow".into(),
                account_id: None,
                source: None,
                details: serde_json::json!({ "reason": "MANY_DISTINCT_DENIALS", "count": st.overflow }),
            });
            st.overflow = 0;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKeyId {
        ApiKeyId::generate(&mut crate::OsEntropy).unwrap_or_else(|e| panic!("entropy: {e:?}"))
    }

    #[test]
    fn counts_from_many_threads_drain_as_one_delta_per_key_with_the_latest_address() {
        let tracker = UsageTracker::default();
        let (a, b) = (key(), key());
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let (tracker, a, b) = (&tracker, &a, &b);
                s.spawn(move || {
                    for i in 0..1_000u64 {
                        tracker.record(a, UnixMillis(i), IpAddr::from([10, 0, 0, t]));
                    }
                    tracker.record(b, UnixMillis(5), IpAddr::from([10, 0, 1, t]));
                });
            }
        });
        tracker.record(&a, UnixMillis(2_000), IpAddr::from([192, 0, 2, 1]));
        let mut deltas = tracker.drain();
        deltas.sort_by_key(|d| d.count);
        assert_eq!(deltas.len(), 2);
        assert_eq!((&deltas[0].key_id, deltas[0].count), (&b, 4));
        assert_eq!((&deltas[1].key_id, deltas[1].count), (&a, 4_001));
        assert_eq!((deltas[1].last_used_at, deltas[1].last_used_ip.as_str()), (UnixMillis(2_000), "192.0.2.1"));
        assert!(tracker.drain().is_empty(), "a drain takes everything");
        // A failed flush puts the counts back, merged with what came since.
        tracker.record(&a, UnixMillis(3_000), IpAddr::from([192, 0, 2, 2]));
        tracker.restore(deltas);
        let again = tracker.drain();
        let a_again = again.iter().find(|d| d.key_id == a).map(|d| (d.count, d.last_used_ip.clone()));
        assert_eq!(a_again, Some((4_002, "192.0.2.2".to_owned())));
    }
}
