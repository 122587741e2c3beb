//! Key hygiene that runs by itself (issue #17): the deployment's key policies, an account's own
//! tighter ones, and the sweeper that applies them.
//!
//! Owners rarely review their keys; exchanges enforce it for them (OKX disables idle trade keys
//! without an IP allowlist after 14 days, Binance switches off trading on keys without one,
//! Bybit kills keys without an IP 7 days after a password change). The policies here:
//!
//! | policy | default | what happens |
//! |---|---|---|
//! | `unused_days` | 90 | a key not used (nor created or edited) for that many days is disabled |
//! | `unrestricted_idle_days` | 30 | the same, sooner, for trade and withdraw keys without an IP allowlist |
//! | `max_keys` | 100 | live (not revoked) keys per account |
//! | `withdraw_max_days` | 365 | withdraw keys expire within that many days of the change that set their expiry; a key given withdraw without an expiry gets the longest |
//! | `reconfirm_grace_hours` | 24 | after a password change, trade and withdraw keys the owner has not re-confirmed (with a step-up) within it are suspended |
//!
//! A deployment sets them (`serve` flags or a TOML file); an account may tighten each (a lower
//! number, or a policy the deployment leaves off) and never loosen one. Owners are warned 7 days
//! and 1 day before a key is disabled or expires: each warning is recorded once in the store with
//! its audit record (`key.expiring`), and the audit record is what notifications are made of.
//! The sweeper runs on one node: the exchange's writer (with several nodes), every minute by
//! default. Each change it makes is audited with the policy that caused it.

use crate::{Actor, Service, ServiceError, ServiceResult};
use keygate_auth::{AccountId, KeyStatus, Permission};
use keygate_proto::UnixMillis;
use keygate_store::{AccountPolicyRecord, AuditDraft, KeyRecord, Reconfirmation, StoreError};
use serde::{Deserialize, Serialize};

/// One day, ms.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// How many days before a policy acts the owner is warned: 7 and 1.
pub const WARN_DAYS: [u32; 2] = [7, 1];
/// Keys read per page while sweeping.
const SWEEP_PAGE: u32 = 1_000;

/// A deployment's key policies. `None` turns a policy off (an account may still turn it on for
/// itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPolicy {
    /// Disable a key unused for this many days.
    pub unused_days: Option<u32>,
    /// Disable trade and withdraw keys without an IP allowlist after this many idle days.
    pub unrestricted_idle_days: Option<u32>,
    /// At most this many live keys per account.
    pub max_keys: u32,
    /// Withdraw keys must expire within this many days.
    pub withdraw_max_days: Option<u32>,
    /// Hours the owner has to re-confirm trade and withdraw keys after a password change before
    /// they are suspended; 0 suspends them at once.
    pub reconfirm_grace_hours: u32,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            unused_days: Some(90),
            unrestricted_idle_days: Some(30),
            max_keys: 100,
            withdraw_max_days: Some(365),
            reconfirm_grace_hours: 24,
        }
    }
}

/// An account's own tightenings of the deployment's [`KeyPolicy`]: `None` keeps the
/// deployment's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountKeyPolicy {
    /// See [`KeyPolicy::unused_days`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unused_days: Option<u32>,
    /// See [`KeyPolicy::unrestricted_idle_days`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unrestricted_idle_days: Option<u32>,
    /// See [`KeyPolicy::max_keys`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u32>,
    /// See [`KeyPolicy::withdraw_max_days`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdraw_max_days: Option<u32>,
    /// See [`KeyPolicy::reconfirm_grace_hours`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconfirm_grace_hours: Option<u32>,
}

/// The tighter of a deployment's optional limit and an account's.
fn tighter(deployment: Option<u32>, account: Option<u32>) -> Option<u32> {
    match (deployment, account) {
        (Some(d), Some(a)) => Some(d.min(a)),
        (d, a) => d.or(a),
    }
}

impl KeyPolicy {
    /// What applies to an account with `own` tightenings.
    #[must_use]
    pub fn tightened(&self, own: &AccountKeyPolicy) -> Self {
        Self {
            unused_days: tighter(self.unused_days, own.unused_days),
            unrestricted_idle_days: tighter(self.unrestricted_idle_days, own.unrestricted_idle_days),
            max_keys: own.max_keys.map_or(self.max_keys, |a| a.min(self.max_keys)),
            withdraw_max_days: tighter(self.withdraw_max_days, own.withdraw_max_days),
            reconfirm_grace_hours: own
                .reconfirm_grace_hours
                .map_or(self.reconfirm_grace_hours, |a| a.min(self.reconfirm_grace_hours)),
        }
    }

    /// Refuses `own` when it would loosen any of this deployment's policies, or sets a number
    /// no policy can mean (0 days).
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] naming the first offending setting.
    pub fn check_tightening(&self, own: &AccountKeyPolicy) -> ServiceResult<()> {
        let looser = |name: &str, deployment: Option<u32>, account: Option<u32>| match (deployment, account) {
            (_, Some(0)) if name != "reconfirm_grace_hours" => {
                Err(ServiceError::Invalid(format!("{name} must be at least 1")))
            }
            (Some(d), Some(a)) if a > d => Err(ServiceError::Invalid(format!(
                "{name} {a} would loosen the deployment's policy ({d}); an account may only tighten it"
            ))),
            _ => Ok(()),
        };
        looser("unused_days", self.unused_days, own.unused_days)?;
        looser("unrestricted_idle_days", self.unrestricted_idle_days, own.unrestricted_idle_days)?;
        looser("max_keys", Some(self.max_keys), own.max_keys)?;
        looser("withdraw_max_days", self.withdraw_max_days, own.withdraw_max_days)?;
        looser("reconfirm_grace_hours", Some(self.reconfirm_grace_hours), own.reconfirm_grace_hours)
    }

    /// Reads a policy from TOML (`serve --key-policy FILE`); absent fields keep the defaults.
    ///
    /// # Errors
    /// A readable message for unknown fields or wrong types.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            unused_days: Option<toml_value::Days>,
            unrestricted_idle_days: Option<toml_value::Days>,
            max_keys: Option<u32>,
            withdraw_max_days: Option<toml_value::Days>,
            reconfirm_grace_hours: Option<u32>,
        }
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let d = Self::default();
        Ok(Self {
            unused_days: f.unused_days.map_or(d.unused_days, toml_value::Days::get),
            unrestricted_idle_days: f.unrestricted_idle_days.map_or(d.unrestricted_idle_days, toml_value::Days::get),
            max_keys: f.max_keys.unwrap_or(d.max_keys),
            withdraw_max_days: f.withdraw_max_days.map_or(d.withdraw_max_days, toml_value::Days::get),
            reconfirm_grace_hours: f.reconfirm_grace_hours.unwrap_or(d.reconfirm_grace_hours),
        })
    }
}

/// `days = 30` or `days = "off"` in the policy file.
mod toml_value {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Days {
        Number(u32),
        Word(Off),
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub(super) enum Off {
        Off,
    }

    impl Days {
        pub(super) fn get(self) -> Option<u32> {
            match self {
                Self::Number(n) => Some(n),
                Self::Word(Off::Off) => None,
            }
        }
    }
}

/// The next thing a policy will do to a key, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDeadline {
    /// `disable`, `expire` or `suspend`.
    pub action: String,
    /// The policy: `unused`, `unrestricted_idle`, `expiry` or `reconfirm`.
    pub policy: String,
    /// When, ms.
    pub at: UnixMillis,
}

/// When a key last had its owner's attention: created, edited (re-enabled, re-confirmed) or
/// used. Idle policies count from here.
#[must_use]
pub fn idle_since(key: &KeyRecord) -> UnixMillis {
    key.created_at.max(key.updated_at).max(key.last_used_at.unwrap_or(UnixMillis(0)))
}

/// The first deadline `policy` sets for `key`, if it is active and any applies.
#[must_use]
pub fn next_deadline(key: &KeyRecord, policy: &KeyPolicy) -> Option<PolicyDeadline> {
    if key.status != KeyStatus::Active {
        return None;
    }
    let idle = idle_since(key);
    let after_days = |days: u32| UnixMillis(idle.0.saturating_add(u64::from(days).saturating_mul(DAY_MS)));
    let moves_money = key.permissions.contains(Permission::Trade) || key.permissions.contains(Permission::Withdraw);
    let mut found: Vec<PolicyDeadline> = Vec::with_capacity(3);
    if let Some(at) = key.restrictions.expires_at {
        found.push(PolicyDeadline { action: "expire".into(), policy: "expiry".into(), at });
    }
    if let Some(days) = policy.unused_days {
        found.push(PolicyDeadline { action: "disable".into(), policy: "unused".into(), at: after_days(days) });
    }
    if let (Some(days), true, true) =
        (policy.unrestricted_idle_days, moves_money, key.restrictions.ip_allowlist.is_empty())
    {
        found.push(PolicyDeadline {
            action: "disable".into(),
            policy: "unrestricted_idle".into(),
            at: after_days(days),
        });
    }
    found.into_iter().min_by_key(|d| d.at)
}

/// Why a key is not active ([`crate::KeyView::status_reason`]), in words for its owner.
#[must_use]
pub fn reason_words(reason: &str) -> String {
    match reason {
        "2fa_disabled" => "suspended: 2FA was turned off".into(),
        "2fa_reset" => "suspended: 2FA was reset".into(),
        "password_changed" => "suspended: not re-confirmed after a password change".into(),
        "expired" => "past its expiry".into(),
        other => match other.strip_prefix("policy:") {
            Some(p) => format!("disabled by the key policy: {}", policy_words(p)),
            None => other.into(),
        },
    }
}

/// A policy of [`PolicyDeadline::policy`], in words.
#[must_use]
pub fn policy_words(policy: &str) -> String {
    match policy {
        "unused" => "unused too long".into(),
        "unrestricted_idle" => "idle trade or withdraw key without an IP allowlist".into(),
        "expiry" => "its expiry".into(),
        "reconfirm" => "not re-confirmed after a password change".into(),
        other => other.into(),
    }
}

/// What a sweep at `now` does to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepStep {
    /// Nothing yet.
    Nothing,
    /// Warn the owner (once per notice): `days` (7 or 1) or fewer are left.
    Warn {
        /// The deadline warned of.
        deadline: PolicyDeadline,
        /// 7 or 1.
        days: u32,
    },
    /// The deadline has passed: disable or expire the key now.
    Act(PolicyDeadline),
}

/// What a sweep at `now` does to `key` under `policy`.
#[must_use]
pub fn sweep_step(key: &KeyRecord, policy: &KeyPolicy, now: UnixMillis) -> SweepStep {
    let Some(deadline) = next_deadline(key, policy) else {
        return SweepStep::Nothing;
    };
    if now >= deadline.at {
        return SweepStep::Act(deadline);
    }
    let left = deadline.at.0 - now.0;
    // The nearest stage reached: with one day left, the 1-day warning (a sweeper that was down
    // for the 7-day one does not send it late).
    match WARN_DAYS.iter().rev().find(|d| left <= u64::from(**d) * DAY_MS) {
        Some(days) => SweepStep::Warn { deadline, days: *days },
        None => SweepStep::Nothing,
    }
}

/// The notice a warning is recorded under: the same deadline and stage warn once; a new
/// deadline (the key was used meanwhile) warns again.
fn notice(deadline: &PolicyDeadline, days: u32) -> String {
    format!("{}:{days}d:{}", deadline.policy, deadline.at.0)
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Warnings recorded (and so sent).
    pub warned: usize,
    /// Keys disabled by an idle policy.
    pub disabled: usize,
    /// Keys past their expiry, marked expired.
    pub expired: usize,
    /// Trade and withdraw keys suspended because they were not re-confirmed in time.
    pub suspended: usize,
}

/// An account's key policies as its owner or an operator sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPolicyView {
    /// The account.
    pub account: String,
    /// The deployment's.
    pub deployment: KeyPolicy,
    /// The account's own tightenings.
    pub own: AccountKeyPolicy,
    /// What applies.
    pub effective: KeyPolicy,
    /// A pending re-confirmation: since, due, reason.
    pub reconfirm: Option<ReconfirmView>,
}

/// Trade and withdraw keys waiting to be re-confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconfirmView {
    /// The change that asked for it, ms.
    pub since: UnixMillis,
    /// When keys not re-confirmed are suspended, ms.
    pub due: UnixMillis,
    /// `password_changed`.
    pub reason: String,
}

impl Service {
    /// The deployment's key policies.
    #[must_use]
    pub fn deployment_key_policy(&self) -> &KeyPolicy {
        &self.inner.config.key_policy
    }

    async fn policy_row(&self, account: AccountId) -> ServiceResult<(AccountKeyPolicy, Option<AccountPolicyRecord>)> {
        let row = self.inner.store.account_policy(account).await?;
        let own = match &row {
            Some(r) => serde_json::from_str(&r.policy)
                .map_err(|e| ServiceError::Internal(format!("account #{account}'s key policy: {e}")))?,
            None => AccountKeyPolicy::default(),
        };
        Ok((own, row))
    }

    /// The first thing a policy will do to `key`: [`next_deadline`], or its suspension when a
    /// re-confirmation is pending for its account (`pending`) and the owner has not given it.
    pub(crate) async fn key_deadline(
        &self,
        key: &KeyRecord,
        policy: &KeyPolicy,
        pending: Option<&Reconfirmation>,
    ) -> ServiceResult<Option<PolicyDeadline>> {
        let next = next_deadline(key, policy);
        let moves_money = key.permissions.contains(Permission::Trade) || key.permissions.contains(Permission::Withdraw);
        let Some(r) = pending.filter(|_| key.status == KeyStatus::Active && moves_money) else {
            return Ok(next);
        };
        if self.reconfirmed_since(key, r.since).await? {
            return Ok(next);
        }
        let suspend = PolicyDeadline { action: "suspend".into(), policy: "reconfirm".into(), at: r.due };
        Ok(Some(match next {
            Some(n) if n.at < suspend.at => n,
            _ => suspend,
        }))
    }

    /// The account's pending re-confirmation, if any.
    pub(crate) async fn pending_reconfirmation(&self, account: AccountId) -> ServiceResult<Option<Reconfirmation>> {
        Ok(self.inner.store.account_policy(account).await?.and_then(|r| r.reconfirm))
    }

    /// The policies that apply to `account`.
    pub(crate) async fn effective_key_policy(&self, account: AccountId) -> ServiceResult<KeyPolicy> {
        let (own, _) = self.policy_row(account).await?;
        Ok(self.inner.config.key_policy.tightened(&own))
    }

    /// `account`'s key policies: the deployment's, its own, what applies, and any pending
    /// re-confirmation.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for an unknown or foreign account.
    pub async fn key_policy(&self, actor: &Actor, account: &str) -> ServiceResult<KeyPolicyView> {
        let rec = self.account_record(actor, account).await?;
        let (own, row) = self.policy_row(rec.id).await?;
        let deployment = self.inner.config.key_policy;
        Ok(KeyPolicyView {
            account: rec.name,
            deployment,
            effective: deployment.tightened(&own),
            own,
            reconfirm: row.and_then(|r| r.reconfirm).map(|r| ReconfirmView {
                since: r.since,
                due: r.due,
                reason: r.reason,
            }),
        })
    }

    /// Sets `account`'s own tightenings (replacing the previous ones), audited as
    /// `account.key_policy`. Only tighter than the deployment's; an owner relaxing an earlier
    /// tightening of their own needs a step-up, as widening a key does.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for a loosening, [`ServiceError::StepUpRequired`],
    /// [`ServiceError::NotFound`].
    pub async fn set_key_policy(
        &self,
        actor: &Actor,
        account: &str,
        own: AccountKeyPolicy,
    ) -> ServiceResult<KeyPolicyView> {
        let rec = self.account_record(actor, account).await?;
        let deployment = self.inner.config.key_policy;
        deployment.check_tightening(&own)?;
        let (before, row) = self.policy_row(rec.id).await?;
        let now = self.now_ms();
        let was = deployment.tightened(&before);
        let will = deployment.tightened(&own);
        if will.tightened(&AccountKeyPolicy::from(was)) != will && !actor.stepped_up(now) {
            return Err(ServiceError::StepUpRequired("relaxing the account's key policy".into()));
        }
        let record = AccountPolicyRecord {
            account_id: rec.id,
            policy: serde_json::to_string(&own).map_err(|e| ServiceError::Internal(e.to_string()))?,
            reconfirm: row.and_then(|r| r.reconfirm),
            updated_at: now,
        };
        let audit = self.policy_audit(
            actor,
            &rec.name,
            rec.id,
            "account.key_policy",
            serde_json::json!({ "before": before, "after": own }),
        );
        self.inner.store.put_account_policy(&record, audit).await?;
        self.key_policy(actor, account).await
    }

    fn policy_audit(
        &self,
        actor: &Actor,
        name: &str,
        account: AccountId,
        action: &str,
        details: serde_json::Value,
    ) -> AuditDraft {
        AuditDraft {
            at: self.now_ms(),
            actor: actor.label(),
            action: action.into(),
            target: format!("account:{name}"),
            account_id: Some(account),
            source: actor.source(),
            details,
        }
    }

    /// After a password change: asks the owner to re-confirm the account's trade and withdraw
    /// keys within the grace period (or, with no grace, suspends them at once). Written before
    /// the change itself, so a crash in between leaves the safe side.
    pub(crate) async fn ask_reconfirmation(
        &self,
        actor: &Actor,
        account: AccountId,
        name: &str,
        reason: &str,
    ) -> ServiceResult<()> {
        let policy = self.effective_key_policy(account).await?;
        let keys = self.inner.store.list_keys(Some(account)).await?;
        let moving = keys.iter().any(|k| {
            k.status == KeyStatus::Active
                && (k.permissions.contains(Permission::Trade) || k.permissions.contains(Permission::Withdraw))
        });
        if !moving {
            return Ok(());
        }
        if policy.reconfirm_grace_hours == 0 {
            self.suspend_trading_keys(actor, account, reason, None).await?;
            return Ok(());
        }
        let now = self.now_ms();
        let due = now.plus_millis(u64::from(policy.reconfirm_grace_hours) * 3_600_000);
        let (own, _) = self.policy_row(account).await?;
        let record = AccountPolicyRecord {
            account_id: account,
            policy: serde_json::to_string(&own).map_err(|e| ServiceError::Internal(e.to_string()))?,
            reconfirm: Some(Reconfirmation { since: now, due, reason: reason.into() }),
            updated_at: now,
        };
        let audit = self.policy_audit(
            actor,
            name,
            account,
            "account.reconfirm_required",
            serde_json::json!({ "reason": reason, "due": due }),
        );
        self.inner.store.put_account_policy(&record, audit).await?;
        Ok(())
    }

    /// The owner re-confirms every active trade and withdraw key of `account` after a password
    /// change: each is marked re-confirmed now (audited `key.reconfirm`) and the pending
    /// re-confirmation ends. Needs a step-up. Returns how many keys.
    ///
    /// # Errors
    /// [`ServiceError::StepUpRequired`], [`ServiceError::NotFound`].
    pub async fn reconfirm_keys(&self, actor: &Actor, account: &str) -> ServiceResult<usize> {
        let rec = self.account_record(actor, account).await?;
        let now = self.now_ms();
        if !actor.stepped_up(now) {
            return Err(ServiceError::StepUpRequired("re-confirming the account's keys".into()));
        }
        let (own, row) = self.policy_row(rec.id).await?;
        let Some(pending) = row.as_ref().and_then(|r| r.reconfirm.clone()) else {
            return Ok(0);
        };
        let n = self.reconfirm_trading_keys(actor, rec.id, pending.since).await?;
        let record = AccountPolicyRecord {
            account_id: rec.id,
            policy: serde_json::to_string(&own).map_err(|e| ServiceError::Internal(e.to_string()))?,
            reconfirm: None,
            updated_at: now,
        };
        let audit =
            self.policy_audit(actor, &rec.name, rec.id, "account.reconfirmed", serde_json::json!({ "keys": n }));
        self.inner.store.put_account_policy(&record, audit).await?;
        Ok(n)
    }

    /// Applies the key policies once: suspends trade and withdraw keys whose re-confirmation
    /// came due, records the warnings due (7 days and 1 day ahead), disables idle keys and
    /// marks expired ones. Writes this node's usage counters first, so a key used a moment ago
    /// is not taken for idle. A key changed meanwhile by someone else is left for the next sweep.
    ///
    /// # Errors
    /// Storage errors; what was done before one stays done.
    pub async fn sweep_key_policies(&self) -> ServiceResult<SweepReport> {
        self.flush(false).await?;
        let mut report = SweepReport::default();
        let system = |policy: &str| Actor::System { policy: format!("key-policy:{policy}") };
        loop {
            let due = self.inner.store.reconfirmations_due(self.now_ms(), 100).await?;
            if due.is_empty() {
                break;
            }
            for row in due {
                let Some(r) = row.reconfirm.clone() else { continue };
                let actor = system("reconfirm");
                report.suspended += self.suspend_trading_keys(&actor, row.account_id, &r.reason, Some(r.since)).await?;
                let name = self.account_name(row.account_id).await?;
                let record = AccountPolicyRecord { reconfirm: None, updated_at: self.now_ms(), ..row };
                let audit = self.policy_audit(
                    &actor,
                    &name,
                    record.account_id,
                    "account.reconfirm_lapsed",
                    serde_json::json!({ "reason": r.reason, "due": r.due }),
                );
                self.inner.store.put_account_policy(&record, audit).await?;
            }
        }
        let mut policies: rustc_hash::FxHashMap<AccountId, KeyPolicy> = rustc_hash::FxHashMap::default();
        let mut after: Option<keygate_auth::ApiKeyId> = None;
        loop {
            let page = self.inner.store.list_keys_page(after.as_ref(), SWEEP_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for key in page {
                if key.status != KeyStatus::Active {
                    continue;
                }
                let policy = match policies.get(&key.account_id) {
                    Some(p) => *p,
                    None => {
                        let p = self.effective_key_policy(key.account_id).await?;
                        policies.insert(key.account_id, p);
                        p
                    }
                };
                match sweep_step(&key, &policy, self.now_ms()) {
                    SweepStep::Nothing => {}
                    SweepStep::Warn { deadline, days } => {
                        let details = serde_json::json!({
                            "label": key.label,
                            "policy": deadline.policy,
                            "action": deadline.action,
                            "at": deadline.at,
                            "days_left": days,
                        });
                        let audit = self.key_audit(&system(&deadline.policy), "key.expiring", &key, details);
                        let n = notice(&deadline, days);
                        if self.inner.store.record_key_notice(&key.id, &n, self.now_ms(), audit).await? {
                            report.warned += 1;
                        }
                    }
                    SweepStep::Act(deadline) => {
                        let expire = deadline.action == "expire";
                        if self.apply_policy(&key, &deadline).await? {
                            if expire {
                                report.expired += 1;
                            } else {
                                report.disabled += 1;
                            }
                        }
                    }
                }
            }
        }
        Ok(report)
    }

    /// Disables (or marks expired) `key` as `deadline` says, audited with the policy; false if
    /// the key changed meanwhile (the next sweep looks again).
    async fn apply_policy(&self, key: &KeyRecord, deadline: &PolicyDeadline) -> ServiceResult<bool> {
        let _writing = self.inner.key_writes.lock().await;
        let expire = deadline.action == "expire";
        let actor = Actor::System { policy: format!("key-policy:{}", deadline.policy) };
        let mut rec = key.clone();
        rec.status = if expire { KeyStatus::Expired } else { KeyStatus::Disabled };
        rec.status_reason = Some(if expire { "expired".into() } else { format!("policy:{}", deadline.policy) });
        rec.updated_at = self.now_ms();
        rec.updated_by = actor.kind().into();
        let action = if expire { "key.expire" } else { "key.policy_disable" };
        let details = serde_json::json!({
            "label": key.label,
            "policy": deadline.policy,
            "deadline": deadline.at,
            "idle_since": idle_since(key),
            "permissions": key.permissions,
        });
        let audit = self.key_audit(&actor, action, &rec, details);
        match self.inner.store.update_key_if(&rec, key, audit).await {
            Err(StoreError::Stale(_) | StoreError::Conflict(_)) => Ok(false),
            other => {
                other?;
                self.inner.cache.upsert(&rec)?;
                Ok(true)
            }
        }
    }
}

impl From<KeyPolicy> for AccountKeyPolicy {
    fn from(p: KeyPolicy) -> Self {
        Self {
            unused_days: p.unused_days,
            unrestricted_idle_days: p.unrestricted_idle_days,
            max_keys: Some(p.max_keys),
            withdraw_max_days: p.withdraw_max_days,
            reconfirm_grace_hours: Some(p.reconfirm_grace_hours),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_auth::{ApiKeyId, HmacSecret, IpAllowlist, Permissions, Restrictions};
    use keygate_store::KeyMaterial;

    fn key(perms: &[Permission], ip: bool, created: u64, used: Option<u64>) -> KeyRecord {
        let mut restrictions = Restrictions::default();
        if ip {
            restrictions.ip_allowlist = IpAllowlist::parse(&["203.0.113.0/24"]).unwrap_or_else(|_| unreachable!());
        }
        KeyRecord {
            id: ApiKeyId::generate(&mut crate::OsEntropy).unwrap_or_else(|_| unreachable!()),
            account_id: AccountId(1),
            label: "bot".into(),
            material: KeyMaterial::Hmac(HmacSecret::generate(&mut crate::OsEntropy).unwrap_or_else(|_| unreachable!())),
            permissions: Permissions::with(perms),
            restrictions,
            status: KeyStatus::Active,
            status_reason: None,
            created_at: UnixMillis(created),
            created_by: "owner".into(),
            updated_at: UnixMillis(created),
            updated_by: "owner".into(),
            last_used_at: used.map(UnixMillis),
            last_used_ip: None,
            use_count: 0,
            withdrawal_holds: keygate_store::WithdrawalHolds::default(),
            app_id: None,
        }
    }

    #[test]
    fn idle_trade_keys_without_an_ip_go_first_and_use_moves_every_deadline() {
        let p = KeyPolicy::default();
        let read = key(&[], false, 0, None);
        assert_eq!(
            next_deadline(&read, &p).unwrap(),
            PolicyDeadline { action: "disable".into(), policy: "unused".into(), at: UnixMillis(90 * DAY_MS) }
        );
        let trade = key(&[Permission::Trade], false, 0, Some(5 * DAY_MS));
        let d = next_deadline(&trade, &p).unwrap();
        assert_eq!((d.policy.as_str(), d.at), ("unrestricted_idle", UnixMillis(35 * DAY_MS)));
        let fenced = key(&[Permission::Trade], true, 0, Some(5 * DAY_MS));
        assert_eq!(next_deadline(&fenced, &p).unwrap().policy, "unused");
        // An explicit expiry sooner than any idle deadline comes first.
        let mut expiring = fenced.clone();
        expiring.restrictions.expires_at = Some(UnixMillis(10 * DAY_MS));
        assert_eq!(next_deadline(&expiring, &p).unwrap().action, "expire");
        // Policies off, key inactive: nothing.
        let off = KeyPolicy { unused_days: None, unrestricted_idle_days: None, ..p };
        assert_eq!(next_deadline(&trade, &off), None);
        let mut disabled = read.clone();
        disabled.status = KeyStatus::Disabled;
        assert_eq!(next_deadline(&disabled, &p), None);
    }

    #[test]
    fn warnings_come_7_days_and_1_day_ahead_then_the_policy_acts() {
        let p = KeyPolicy::default();
        let k = key(&[], false, 0, None);
        let at = |days_left: f64| UnixMillis(90 * DAY_MS - (days_left * DAY_MS as f64) as u64);
        assert_eq!(sweep_step(&k, &p, at(8.0)), SweepStep::Nothing);
        assert!(matches!(sweep_step(&k, &p, at(7.0)), SweepStep::Warn { days: 7, .. }));
        assert!(matches!(sweep_step(&k, &p, at(2.0)), SweepStep::Warn { days: 7, .. }));
        assert!(matches!(sweep_step(&k, &p, at(1.0)), SweepStep::Warn { days: 1, .. }));
        assert!(matches!(sweep_step(&k, &p, at(0.0)), SweepStep::Act(_)));
        let SweepStep::Warn { deadline, days } = sweep_step(&k, &p, at(3.0)) else { unreachable!() };
        assert_eq!(notice(&deadline, days), format!("unused:7d:{}", 90 * DAY_MS));
    }

    #[test]
    fn accounts_tighten_and_never_loosen() {
        let d = KeyPolicy::default();
        let own = AccountKeyPolicy { unused_days: Some(30), max_keys: Some(5), ..AccountKeyPolicy::default() };
        d.check_tightening(&own).unwrap();
        let t = d.tightened(&own);
        assert_eq!((t.unused_days, t.max_keys, t.unrestricted_idle_days), (Some(30), 5, Some(30)));
        for bad in [
            AccountKeyPolicy { unused_days: Some(91), ..AccountKeyPolicy::default() },
            AccountKeyPolicy { max_keys: Some(101), ..AccountKeyPolicy::default() },
            AccountKeyPolicy { reconfirm_grace_hours: Some(25), ..AccountKeyPolicy::default() },
            AccountKeyPolicy { unused_days: Some(0), ..AccountKeyPolicy::default() },
        ] {
            assert!(d.check_tightening(&bad).is_err(), "{bad:?}");
        }
        // A policy the deployment leaves off, an account may turn on.
        let off = KeyPolicy { unused_days: None, ..d };
        let own = AccountKeyPolicy { unused_days: Some(400), ..AccountKeyPolicy::default() };
        off.check_tightening(&own).unwrap();
        assert_eq!(off.tightened(&own).unused_days, Some(400));
    }

    #[test]
    fn the_policy_file_reads_numbers_and_off() {
        let p = KeyPolicy::from_toml("unused_days = 60\nunrestricted_idle_days = \"off\"\nmax_keys = 10\n").unwrap();
        assert_eq!(p.unused_days, Some(60));
        assert_eq!(p.unrestricted_idle_days, None);
        assert_eq!(p.max_keys, 10);
        assert_eq!(p.withdraw_max_days, Some(365));
        assert!(KeyPolicy::from_toml("unused = 3").unwrap_err().contains("unknown field"));
        assert!(KeyPolicy::from_toml("unused_days = \"never\"").is_err());
    }
}
