//! What the key policies (issue #17) must remember between sweeps and across nodes: an
//! account's own, tighter policy, the re-confirmation a password change or 2FA reset asks of its
//! trade and withdraw keys, and which warnings were already sent about a key.
//!
//! Each change is written with its audit record in one transaction; the audit record is what
//! the owner's notifications are made from, so a warning recorded here is a warning sent.

use crate::StoreResult;
use crate::audit_log::append;
use crate::dialect::Dialect;
use crate::records::{AuditDraft, Change};
use crate::rows::{Columns, from_db_time, to_db_time};
use crate::sql::{SqlDb, SqlStore, stmt};
use async_trait::async_trait;
use keygate_auth::{AccountId, ApiKeyId};
use keygate_proto::UnixMillis;

/// Trade and withdraw keys an account must re-confirm: those not re-confirmed (edited by the
/// owner) since `since` are suspended at `due`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconfirmation {
    /// When the change that asks for it happened.
    pub since: UnixMillis,
    /// When unconfirmed keys are suspended.
    pub due: UnixMillis,
    /// Why: `password_changed` or `2fa_reset`.
    pub reason: String,
}

/// An account's policy row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountPolicyRecord {
    /// The account.
    pub account_id: AccountId,
    /// The account's own limits as JSON (the service's type; only ever tighter than the
    /// deployment's, which the service checks). `{}` for none.
    pub policy: String,
    /// A pending re-confirmation, if any.
    pub reconfirm: Option<Reconfirmation>,
    /// Last change.
    pub updated_at: UnixMillis,
}

/// Account policies, re-confirmations and sent warnings.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// The account's row, if it ever had one.
    async fn account_policy(&self, account: AccountId) -> StoreResult<Option<AccountPolicyRecord>>;

    /// Writes the account's row whole (created if missing), with its audit record, in one
    /// transaction.
    async fn put_account_policy(&self, record: &AccountPolicyRecord, audit: AuditDraft) -> StoreResult<()>;

    /// Rows whose re-confirmation is due at `now`, oldest first, at most `limit`.
    async fn reconfirmations_due(&self, now: UnixMillis, limit: u32) -> StoreResult<Vec<AccountPolicyRecord>>;

    /// Records that warning `notice` was sent about `key` at `at`, with its audit record, once:
    /// false (and nothing written) if it was recorded before, so two sweepers, or one sweeping
    /// again after a crash, warn once.
    async fn record_key_notice(
        &self,
        key: &ApiKeyId,
        notice: &str,
        at: UnixMillis,
        audit: AuditDraft,
    ) -> StoreResult<bool>;

    /// Whether `notice` was recorded for `key` (e.g. the owner's re-confirmation of it).
    async fn key_notice_recorded(&self, key: &ApiKeyId, notice: &str) -> StoreResult<bool>;
}

const WHAT: &str = "account key policy";
const COLUMNS: &str = "account_id, policy, reconfirm_since, reconfirm_due, reconfirm_reason, updated_at";

fn policy_from_row(row: &impl Columns) -> StoreResult<AccountPolicyRecord> {
    let time = |name: &str| -> StoreResult<Option<UnixMillis>> {
        row.get::<Option<i64>>(name, WHAT)?.map(|t| from_db_time(t, WHAT)).transpose()
    };
    let reason: Option<String> = row.get("reconfirm_reason", WHAT)?;
    let reconfirm = match (time("reconfirm_since")?, time("reconfirm_due")?, reason) {
        (Some(since), Some(due), Some(reason)) => Some(Reconfirmation { since, due, reason }),
        _ => None,
    };
    Ok(AccountPolicyRecord {
        account_id: AccountId(row.get("account_id", WHAT)?),
        policy: row.get("policy", WHAT)?,
        reconfirm,
        updated_at: from_db_time(row.get("updated_at", WHAT)?, WHAT)?,
    })
}

#[async_trait]
impl<D: Dialect> PolicyStore for SqlStore<D> {
    async fn account_policy(&self, account: AccountId) -> StoreResult<Option<AccountPolicyRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM account_key_policies WHERE account_id = $1");
        self.read_optional(stmt(sql).arg(account.0)).await?.map(|r| policy_from_row(&r)).transpose()
    }

    async fn put_account_policy(&self, record: &AccountPolicyRecord, audit: AuditDraft) -> StoreResult<()> {
        let r = record.reconfirm.as_ref();
        let since = r.map(|r| to_db_time(r.since, WHAT)).transpose()?;
        let due = r.map(|r| to_db_time(r.due, WHAT)).transpose()?;
        let mut tx = self.begin().await?;
        D::Db::run(
            &mut tx,
            stmt(
                "INSERT INTO account_key_policies \
                 (account_id, policy, reconfirm_since, reconfirm_due, reconfirm_reason, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy, \
                 reconfirm_since = excluded.reconfirm_since, reconfirm_due = excluded.reconfirm_due, \
                 reconfirm_reason = excluded.reconfirm_reason, updated_at = excluded.updated_at",
            )
            .arg(record.account_id.0)
            .arg(&record.policy)
            .arg(since)
            .arg(due)
            .arg(r.map(|r| r.reason.as_str()))
            .arg(to_db_time(record.updated_at, WHAT)?),
        )
        .await?;
        append::<D>(&mut tx, audit, Some(Change::Account(record.account_id))).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reconfirmations_due(&self, now: UnixMillis, limit: u32) -> StoreResult<Vec<AccountPolicyRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM account_key_policies WHERE reconfirm_due IS NOT NULL AND reconfirm_due <= $1 \
             ORDER BY reconfirm_due, account_id LIMIT $2"
        );
        let rows = self.read_all(stmt(sql).arg(to_db_time(now, WHAT)?).arg(i64::from(limit))).await?;
        rows.iter().map(policy_from_row).collect()
    }

    async fn record_key_notice(
        &self,
        key: &ApiKeyId,
        notice: &str,
        at: UnixMillis,
        audit: AuditDraft,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let inserted = D::Db::run(
            &mut tx,
            stmt(
                "INSERT INTO key_policy_notices (key_id, notice, at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id, notice) DO NOTHING",
            )
            .arg(key.as_str())
            .arg(notice)
            .arg(to_db_time(at, WHAT)?),
        )
        .await?;
        if inserted == 0 {
            return Ok(false);
        }
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn key_notice_recorded(&self, key: &ApiKeyId, notice: &str) -> StoreResult<bool> {
        let row = self
            .read_optional(
                stmt("SELECT 1 AS one FROM key_policy_notices WHERE key_id = $1 AND notice = $2")
                    .arg(key.as_str())
                    .arg(notice),
            )
            .await?;
        Ok(row.is_some())
    }
}
