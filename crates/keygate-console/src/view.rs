//! What the pages show of keys: formatted fields and risk flags.

use keygate_auth::{KeyStatus, Permission};
use keygate_proto::UnixMillis;
use keygate_service::{HoldKind, HoldView, KeyView};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// `2026-01-01 00:00 UTC`, or `never` for `None`.
pub(crate) fn when(at: Option<UnixMillis>) -> String {
    at.and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms.0) * 1_000_000).ok())
        .and_then(|t| t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC")).ok())
        .unwrap_or_else(|| "never".into())
}

/// `2026-01-01T00:00:00Z` (ISO 8601, UTC, as `<time datetime>` and the downloads write it), or
/// empty for `None`.
pub(crate) fn iso(at: Option<UnixMillis>) -> String {
    at.and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms.0) * 1_000_000).ok())
        .and_then(|t| {
            t.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).ok()
        })
        .unwrap_or_default()
}

/// A withdrawal hold (or lock) as the pages show it: what waits, why, since and until when, in
/// words, and how to undo the change that started it.
#[derive(Debug, Clone)]
pub(crate) struct HoldRow {
    /// What waits: "every withdrawal of the account", "withdrawals with key “bot” (kg_…)", ...
    pub what: String,
    /// Why, in words.
    pub why: String,
    /// When the change was made, or empty when unknown.
    pub since: String,
    /// When withdrawals may begin.
    pub until: String,
    /// The key, for key and address holds (links to revoke it).
    pub key_id: Option<String>,
    /// The address, for address holds (a form removes it).
    pub address: Option<String>,
    /// The hold covers the whole account (2FA turned on, or the lock): the undo is securing the
    /// account, not one change.
    pub account_wide: bool,
}

impl HoldRow {
    /// The row for `h`.
    pub(crate) fn new(h: &HoldView) -> Self {
        let key = || {
            let id = h.key.clone().unwrap_or_default();
            let prefix: String = id.chars().take(12).collect();
            format!("key “{}” ({prefix}…)", h.key_label.clone().unwrap_or_default())
        };
        let what = match h.kind {
            HoldKind::AccountLocked | HoldKind::TwoFactorEnabled => "every withdrawal of this account".to_owned(),
            HoldKind::WithdrawKey => format!("every withdrawal with {}", key()),
            HoldKind::NewAddress => {
                format!("withdrawals with {} to {}", key(), h.address.clone().unwrap_or_default())
            }
        };
        Self {
            what,
            why: h.kind.reason().to_owned(),
            since: h.since.map(|t| when(Some(t))).unwrap_or_default(),
            until: when(Some(h.until)),
            key_id: h.key.clone(),
            address: h.address.clone(),
            account_wide: matches!(h.kind, HoldKind::AccountLocked | HoldKind::TwoFactorEnabled),
        }
    }
}

/// A key row of the list and the edit page.
#[derive(Debug, Clone)]
pub(crate) struct KeyRow {
    /// The full API key id (for links and forms; it is not secret).
    pub id: String,
    /// The first characters, for the list.
    pub prefix: String,
    pub label: String,
    pub kind: String,
    pub permissions: String,
    pub trade: bool,
    pub withdraw: bool,
    pub ip_allowlist: Vec<String>,
    pub symbols: Vec<String>,
    pub withdraw_addresses: Vec<String>,
    pub withdraw_limit: String,
    pub expires: String,
    pub expires_input: String,
    pub created: String,
    /// When it was created, ISO 8601 (for `<time datetime>`).
    pub created_iso: String,
    /// Creation time, for sorting.
    pub created_ms: u64,
    pub last_used: String,
    /// When it was last used, ISO 8601, or empty.
    pub last_used_iso: String,
    /// Last use, for sorting.
    pub last_used_ms: Option<u64>,
    pub last_ip: String,
    pub use_count: u64,
    pub status: String,
    /// Why it is not active, in words (empty when nothing special made it so).
    pub status_reason: String,
    /// What a key policy will do next: "disabled if still unused" / "expires", with its time
    /// (ISO 8601 and UTC text); empty when nothing will.
    pub policy_note: String,
    pub policy_at: String,
    pub policy_at_iso: String,
    pub active: bool,
    pub revoked: bool,
    pub risks: Vec<&'static str>,
    /// The key can trade or withdraw and has an IP range wider than /16 (IPv4) or /48 (IPv6),
    /// which the owner confirmed: the edit form keeps the confirmation ticked.
    pub wide_confirmed: bool,
    /// The connected app holding the key (its client id), or empty (issue #15).
    pub app: String,
}

impl KeyRow {
    /// The row for `k` at `now`.
    pub(crate) fn new(k: &KeyView, now: UnixMillis) -> Self {
        let mut risks = Vec::new();
        let live = k.status != KeyStatus::Revoked;
        if live && k.ip_allowlist.is_empty() {
            risks.push("no IP restriction");
        }
        if k.status == KeyStatus::Active && k.permissions.contains(Permission::Withdraw) {
            risks.push("withdraw enabled");
        }
        let moves_money = k.permissions.contains(Permission::Trade) || k.permissions.contains(Permission::Withdraw);
        if live && moves_money && !keygate_service::keys::wide_ip_ranges(&k.ip_allowlist).is_empty() {
            risks.push("wide IP range (wider than /16 or /48)");
        }
        let quiet_since = k.last_used_at.unwrap_or(k.created_at);
        if live && now.0.saturating_sub(quiet_since.0) >= 30 * DAY_MS {
            risks.push("unused for 30+ days");
        }
        if live && k.expires_at.is_some_and(|e| e.0 > now.0 && e.0 - now.0 <= 7 * DAY_MS) {
            risks.push("expires soon");
        }
        Self {
            id: k.api_key.clone(),
            prefix: k.api_key.chars().take(12).collect(),
            label: k.label.clone(),
            kind: serde_json::to_value(k.key_type).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
            permissions: k.permissions.iter().map(Permission::as_str).collect::<Vec<_>>().join(", "),
            trade: k.permissions.contains(Permission::Trade),
            withdraw: k.permissions.contains(Permission::Withdraw),
            ip_allowlist: k.ip_allowlist.nets().iter().map(ToString::to_string).collect(),
            symbols: k.symbols.iter().map(ToString::to_string).collect(),
            withdraw_addresses: k.withdraw_addresses.clone(),
            withdraw_limit: k
                .withdraw_limit_24h
                .as_ref()
                .map(|l| format!("{} {}", l.amount, l.asset))
                .unwrap_or_default(),
            expires: when(k.expires_at),
            expires_input: crate::forms::expiry_text(k.expires_at),
            created: when(Some(k.created_at)),
            created_iso: iso(Some(k.created_at)),
            created_ms: k.created_at.0,
            last_used: when(k.last_used_at),
            last_used_iso: iso(k.last_used_at),
            last_used_ms: k.last_used_at.map(|t| t.0),
            last_ip: k.last_used_ip.clone().unwrap_or_else(|| "-".into()),
            use_count: k.use_count,
            status: k.status.as_str().to_owned(),
            status_reason: k.status_reason.as_deref().map(keygate_service::policy::reason_words).unwrap_or_default(),
            policy_note: k.policy_deadline.as_ref().map_or_else(String::new, |d| {
                match (d.action.as_str(), d.policy.as_str()) {
                    ("expire", _) => "expires".to_owned(),
                    ("suspend", _) => "suspended unless re-confirmed by".to_owned(),
                    (_, "unrestricted_idle") => "disabled (no IP allowlist) if not used by".to_owned(),
                    _ => "disabled if not used by".to_owned(),
                }
            }),
            policy_at: when(k.policy_deadline.as_ref().map(|d| d.at)),
            policy_at_iso: iso(k.policy_deadline.as_ref().map(|d| d.at)),
            active: k.status == KeyStatus::Active,
            revoked: k.status == KeyStatus::Revoked,
            wide_confirmed: moves_money && !keygate_service::keys::wide_ip_ranges(&k.ip_allowlist).is_empty(),
            app: k.app.clone().unwrap_or_default(),
            risks,
        }
    }

    /// Flags a live key that trades or withdraws on an account without 2FA: whoever has the
    /// password alone controls it (operators may create such keys; owners cannot).
    pub(crate) fn flag_without_2fa(&mut self, two_factor_enabled: bool) {
        if !two_factor_enabled && self.active && (self.trade || self.withdraw) {
            self.risks.push("no 2FA on the account");
        }
    }

    /// One line summarising the restrictions.
    pub(crate) fn restrictions(&self) -> String {
        let mut parts = Vec::new();
        parts.push(if self.ip_allowlist.is_empty() {
            "any IP".to_owned()
        } else {
            format!("IP: {}", self.ip_allowlist.join(", "))
        });
        if !self.symbols.is_empty() {
            parts.push(format!("symbols: {}", self.symbols.join(", ")));
        }
        if !self.withdraw_addresses.is_empty() {
            parts.push(format!("withdraw to: {}", self.withdraw_addresses.join(", ")));
        }
        if !self.withdraw_limit.is_empty() {
            parts.push(format!("limit {}/24h", self.withdraw_limit));
        }
        if self.expires != "never" {
            parts.push(format!("expires {}", self.expires));
        }
        parts.join("; ")
    }
}

/// The list's order: the most recently used first, then keys never used, newest first.
pub(crate) fn sort_keys(rows: &mut [KeyRow]) {
    rows.sort_by_key(|r| (std::cmp::Reverse(r.last_used_ms), std::cmp::Reverse(r.created_ms), r.id.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_last_use_then_creation_newest_first() {
        let now = UnixMillis(40 * DAY_MS);
        let row = |id: &str, created: u64, used: Option<u64>| {
            let mut r = KeyRow::new(&key(serde_json::json!({ "created_at": created, "last_used_at": used })), now);
            r.id = id.to_owned();
            r
        };
        let mut rows = vec![
            row("old-unused", 1, None),
            row("used-long-ago", 2, Some(3)),
            row("new-unused", 9, None),
            row("used-recently", 1, Some(30)),
        ];
        sort_keys(&mut rows);
        let order: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(order, ["used-recently", "used-long-ago", "new-unused", "old-unused"]);
        assert_eq!(iso(Some(UnixMillis(1_767_225_600_000))), "2026-01-01T00:00:00Z");
    }

    fn key(extra: serde_json::Value) -> KeyView {
        let mut v = serde_json::json!({
            "api_key": "kg_exampleexampleexample", "account_id": 1, "account": "alice", "label": "l",
            "type": "hmac", "permissions": ["read"], "ip_allowlist": [], "expires_at": null, "symbols": [],
            "withdraw_addresses": [], "withdraw_limit_24h": null, "status": "active", "created_at": 0,
            "created_by": "owner", "updated_at": 0, "updated_by": "owner", "last_used_at": null,
            "last_used_ip": null, "use_count": 0, "public_key": null
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn risk_flags() {
        let now = UnixMillis(40 * DAY_MS);
        let quiet = KeyRow::new(&key(serde_json::json!({})), now);
        assert_eq!(quiet.risks, vec!["no IP restriction", "unused for 30+ days"]);
        let busy = KeyRow::new(
            &key(serde_json::json!({
                "ip_allowlist": ["203.0.113.0/24"], "permissions": ["read", "withdraw"],
                "last_used_at": 39 * DAY_MS, "expires_at": 42 * DAY_MS
            })),
            now,
        );
        assert_eq!(busy.risks, vec!["withdraw enabled", "expires soon"]);
        let revoked = KeyRow::new(&key(serde_json::json!({ "status": "revoked" })), now);
        assert!(revoked.risks.is_empty(), "a revoked key is no risk");
    }
}
