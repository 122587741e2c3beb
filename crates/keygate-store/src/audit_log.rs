//! The audit log aggregate: appending to the hash chain, reading it back, and the change record
//! that commits with every audit record of a change other nodes must hear about.

use crate::StoreResult;
use crate::audit::chain_hash;
use crate::dialect::Dialect;
use crate::records::{AuditDraft, AuditRecord, Change};
use crate::rows::{AUDIT_COLUMNS, AuditOrder, audit_from_row, chain_head, to_db_time};
use crate::sql::{SqlDb, SqlStore, Tx, stmt};
use async_trait::async_trait;
use keygate_auth::AccountId;
use sqlx::Database;

/// The advisory lock key that serialises audit-chain appends on PostgreSQL, taken with
/// `pg_advisory_xact_lock` inside each mutation's transaction. Advisory locks are scoped to one
/// database, so keygate databases on a shared server do not contend; the value ("kgaudit1" in
/// ASCII) only has to differ from any other advisory lock an application takes in the same
/// database.
pub const AUDIT_CHAIN_LOCK: i64 = 0x6b67_6175_6469_7431;

/// The hash-chained record of everything done to accounts and keys.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an audit record to the chain on its own (for events that change no other state,
    /// such as aggregated denials or failed logins).
    async fn append_audit(&self, draft: AuditDraft) -> StoreResult<AuditRecord>;

    /// Audit records with `seq > after`, oldest first, at most `limit`; only those concerning
    /// `account` when given.
    async fn audit_records(&self, after: i64, limit: u32, account: Option<AccountId>) -> StoreResult<Vec<AuditRecord>>;

    /// Audit records with `seq < before`, newest first, at most `limit`; only those concerning
    /// `account` when given. Lets a view of the latest records read only those, not the whole
    /// history (the `(account_id, seq)` index serves it).
    async fn audit_records_newest(
        &self,
        before: i64,
        limit: u32,
        account: Option<AccountId>,
    ) -> StoreResult<Vec<AuditRecord>>;
}

/// Appends `draft` to the chain inside the caller's write transaction, with the change record
/// `change` when it describes one.
///
/// On PostgreSQL the chain lock is taken here, after the caller's own change, rather than when
/// the transaction begins: the change's row locks are then held while waiting for the chain lock,
/// but a holder of the chain lock only inserts into `audit_log` (and `changes`) and commits, so it
/// never waits for them; no cycle, no deadlock, and changes to different rows proceed in parallel
/// up to this point. Record `n + 1` is only ever inserted after record `n` committed, so readers
/// need no lock: any snapshot sees a gap-free prefix of the chain, and change records appear in
/// the order of their sequence numbers.
pub(crate) async fn append<D: Dialect>(
    conn: &mut <D::Db as Database>::Connection,
    draft: AuditDraft,
    change: Option<Change>,
) -> StoreResult<AuditRecord> {
    let at = to_db_time(draft.at, "audit record")?;
    if let Some(lock) = D::LOCK_AUDIT_CHAIN {
        D::Db::run(conn, stmt(lock).arg(AUDIT_CHAIN_LOCK)).await?;
    }
    let last = D::Db::optional(conn, stmt("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")).await?;
    let (prev_seq, prev_hash) = chain_head(last.as_ref())?;
    let seq = prev_seq + 1;
    let hash = chain_hash(&prev_hash, seq, &draft);
    let details = draft.details.to_string();
    D::Db::run(
        conn,
        stmt(
            "INSERT INTO audit_log (seq, at, actor, action, target, account_id, source, details, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .arg(seq)
        .arg(at)
        .arg(&draft.actor)
        .arg(&draft.action)
        .arg(&draft.target)
        .arg(draft.account_id.map(|a| a.0))
        .arg(draft.source.as_deref())
        .arg(&details)
        .arg(prev_hash.as_slice())
        .arg(hash.as_slice()),
    )
    .await?;
    if let Some(change) = change {
        let key = match &change {
            Change::Key { key, .. } => Some(key.as_str()),
            _ => None,
        };
        D::Db::run(
            conn,
            stmt("INSERT INTO changes (seq, at, kind, account_id, key_id) VALUES ($1, $2, $3, $4, $5)")
                .arg(seq)
                .arg(at)
                .arg(change.kind())
                .arg(change.account().0)
                .arg(key),
        )
        .await?;
        if let Some(notify) = D::NOTIFY_CHANGE {
            D::Db::run(conn, stmt(notify).arg(seq.to_string().as_str())).await?;
        }
    }
    Ok(AuditRecord { seq, draft, prev_hash, hash })
}

/// Commits a transaction whose guarded statement `applied` (or not): with `audit` (and
/// `change`) appended when it applied, with nothing more when it did not, so a refused attempt
/// leaves no record. Returns `applied`.
pub(crate) async fn commit_if_applied<D: Dialect>(
    mut tx: Tx<D>,
    applied: bool,
    audit: Option<AuditDraft>,
    change: Option<Change>,
) -> StoreResult<bool> {
    if applied && let Some(audit) = audit {
        append::<D>(&mut tx, audit, change).await?;
    }
    tx.commit().await?;
    Ok(applied)
}

impl<D: Dialect> SqlStore<D> {
    /// One page of the audit log, optionally one account's, in either direction.
    async fn audit_page(
        &self,
        bound: i64,
        limit: u32,
        account: Option<AccountId>,
        order: AuditOrder,
    ) -> StoreResult<Vec<AuditRecord>> {
        let (cmp, dir) = order.sql();
        let rows = match account {
            Some(a) => {
                let sql = format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE account_id = $1 AND seq {cmp} $2 ORDER BY seq {dir} LIMIT $3"
                );
                self.read_all(stmt(sql).arg(a.0).arg(bound).arg(i64::from(limit))).await?
            }
            None => {
                let sql =
                    format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq {cmp} $1 ORDER BY seq {dir} LIMIT $2");
                self.read_all(stmt(sql).arg(bound).arg(i64::from(limit))).await?
            }
        };
        rows.iter().map(audit_from_row).collect()
    }
}

#[async_trait]
impl<D: Dialect> AuditStore for SqlStore<D> {
    async fn append_audit(&self, draft: AuditDraft) -> StoreResult<AuditRecord> {
        let mut tx = self.begin().await?;
        let record = append::<D>(&mut tx, draft, None).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn audit_records(&self, after: i64, limit: u32, account: Option<AccountId>) -> StoreResult<Vec<AuditRecord>> {
        self.audit_page(after, limit, account, AuditOrder::OldestAfter).await
    }

    async fn audit_records_newest(
        &self,
        before: i64,
        limit: u32,
        account: Option<AccountId>,
    ) -> StoreResult<Vec<AuditRecord>> {
        self.audit_page(before, limit, account, AuditOrder::NewestBefore).await
    }
}
