//! Usage counters and denial aggregates, kept in memory and flushed off the hot path.

use keygate_auth::{AccountId, ApiKeyId, Rejection};
use keygate_proto::UnixMillis;
use keygate_store::{AuditDraft, UsageDelta};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

/// Per-key request counts since the last flush.
#[derive(Debug, Default)]
pub struct UsageTracker {
    pending: Mutex<HashMap<ApiKeyId, Counted>>,
}

/// One key's requests since the last flush. The address stays an [`IpAddr`] until the flush:
/// recording runs on every verified request, formatting only once per key per flush.
#[derive(Debug, Clone, Copy)]
struct Counted {
    count: u64,
    last_used_at: UnixMillis,
    last_used_ip: IpAddr,
}

impl UsageTracker {
    /// Counts one verified request.
    pub fn record(&self, key: &ApiKeyId, at: UnixMillis, ip: IpAddr) {
        let mut map = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get_mut(key) {
            c.count += 1;
            if at >= c.last_used_at {
                c.last_used_at = at;
                c.last_used_ip = ip;
            }
        } else {
            map.insert(key.clone(), Counted { count: 1, last_used_at: at, last_used_ip: ip });
        }
    }

    /// Takes everything counted so far.
    pub fn drain(&self) -> Vec<UsageDelta> {
        let mut map = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        map.drain()
            .map(|(key_id, c)| UsageDelta {
                key_id,
                count: c.count,
                last_used_at: c.last_used_at,
                last_used_ip: c.last_used_ip.to_string(),
            })
            .collect()
    }

    /// Puts back deltas whose flush failed, so no count is lost.
    pub fn restore(&self, deltas: Vec<UsageDelta>) {
        let mut map = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for d in deltas {
            // The address was formatted by `drain` from an `IpAddr`, so it parses back.
            let ip = d.last_used_ip.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            let e = map.entry(d.key_id).or_insert(Counted { count: 0, last_used_at: d.last_used_at, last_used_ip: ip });
            e.count += d.count;
            if d.last_used_at > e.last_used_at {
                e.last_used_at = d.last_used_at;
                e.last_used_ip = ip;
            }
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
