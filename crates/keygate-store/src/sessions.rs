//! The console sessions aggregate. Only SHA-256 hashes of session ids reach the store.

use crate::accounts::update_account_row;
use crate::audit_log::{append, commit_if_applied};
use crate::dialect::Dialect;
use crate::records::{AccountRecord, AuditDraft, Change, SessionRecord};
use crate::rows::{SESSION_COLUMNS, name_violation, session_from_row, to_db_time};
use crate::sql::{SqlDb, SqlStore, stmt};
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use keygate_proto::UnixMillis;
use sqlx::Database;

/// Console sessions, logins and logouts audited.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Inserts a new session, with its audit record (a login) when given.
    async fn insert_session(&self, session: &SessionRecord, audit: Option<AuditDraft>) -> StoreResult<()>;

    /// The session whose id hashes to `id_hash`, if any.
    async fn session(&self, id_hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>>;

    /// Moves a session's last-seen time forward (never back); unknown sessions are ignored.
    async fn touch_session(&self, id_hash: &[u8; 32], last_seen_at: UnixMillis) -> StoreResult<()>;

    /// Replaces session `old` by `new` in one transaction (id rotation at login and step-up).
    /// [`StoreError::NotFound`] if `old` is gone (logged out or rotated meanwhile): a session can
    /// never fork into two live ids.
    async fn rotate_session(&self, old: &[u8; 32], new: &SessionRecord, audit: AuditDraft) -> StoreResult<()>;

    /// Deletes a session, with its audit record (a logout) when given; true if it existed.
    async fn delete_session(&self, id_hash: &[u8; 32], audit: Option<AuditDraft>) -> StoreResult<bool>;

    /// Deletes sessions idle since before `idle_before` or created before `created_before`;
    /// returns how many. Expiry is not an audited action.
    async fn purge_sessions(&self, idle_before: UnixMillis, created_before: UnixMillis) -> StoreResult<u64>;

    /// In one transaction: replaces the account's mutable fields (as
    /// [`crate::AccountStore::update_account`]), deletes every session of the account, and
    /// inserts `new_session` if given. For password changes and 2FA resets, which must end every
    /// other login.
    async fn update_account_ending_sessions(
        &self,
        account: &AccountRecord,
        new_session: Option<&SessionRecord>,
        audit: AuditDraft,
    ) -> StoreResult<()>;
}

/// Inserts a session row inside the caller's write transaction.
async fn insert_session_row<D: Dialect>(
    conn: &mut <D::Db as Database>::Connection,
    s: &SessionRecord,
) -> StoreResult<()> {
    D::Db::run(
        conn,
        stmt(
            "INSERT INTO sessions (id_hash, account_id, created_at, last_seen_at, two_factor_pending, \
             stepped_up_until, source) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .arg(s.id_hash.as_slice())
        .arg(s.account_id.0)
        .arg(to_db_time(s.created_at, "session")?)
        .arg(to_db_time(s.last_seen_at, "session")?)
        .arg(i64::from(s.two_factor_pending))
        .arg(s.stepped_up_until.map(|t| to_db_time(t, "session")).transpose()?)
        .arg(s.source.as_deref()),
    )
    .await
    .map_err(|e| name_violation(e, &"session", &format_args!("account {}", s.account_id)))?;
    Ok(())
}

/// Deletes the session whose id hashes to `id_hash` inside the caller's transaction; whether it
/// existed.
async fn delete_session_row<D: Dialect>(
    conn: &mut <D::Db as Database>::Connection,
    id_hash: &[u8; 32],
) -> StoreResult<bool> {
    Ok(D::Db::run(conn, stmt("DELETE FROM sessions WHERE id_hash = $1").arg(id_hash.as_slice())).await? > 0)
}

#[async_trait]
impl<D: Dialect> SessionStore for SqlStore<D> {
    async fn insert_session(&self, session: &SessionRecord, audit: Option<AuditDraft>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_session_row::<D>(&mut tx, session).await?;
        commit_if_applied::<D>(tx, true, audit, None).await?;
        Ok(())
    }

    async fn session(&self, id_hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = $1");
        self.read_optional(stmt(sql).arg(id_hash.as_slice())).await?.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, id_hash: &[u8; 32], last_seen_at: UnixMillis) -> StoreResult<()> {
        let at = to_db_time(last_seen_at, "session")?;
        self.write_one(
            stmt("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2 AND last_seen_at < $1")
                .arg(at)
                .arg(id_hash.as_slice()),
        )
        .await?;
        Ok(())
    }

    async fn rotate_session(&self, old: &[u8; 32], new: &SessionRecord, audit: AuditDraft) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        if !delete_session_row::<D>(&mut tx, old).await? {
            return Err(StoreError::NotFound("session".into()));
        }
        insert_session_row::<D>(&mut tx, new).await?;
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &[u8; 32], audit: Option<AuditDraft>) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let existed = delete_session_row::<D>(&mut tx, id_hash).await?;
        let change = audit.as_ref().and_then(|a| a.account_id).map(Change::Session);
        commit_if_applied::<D>(tx, existed, audit, change).await
    }

    async fn purge_sessions(&self, idle_before: UnixMillis, created_before: UnixMillis) -> StoreResult<u64> {
        self.write_one(
            stmt("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
                .arg(to_db_time(idle_before, "session purge")?)
                .arg(to_db_time(created_before, "session purge")?),
        )
        .await
    }

    async fn update_account_ending_sessions(
        &self,
        account: &AccountRecord,
        new_session: Option<&SessionRecord>,
        audit: AuditDraft,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        update_account_row::<D>(&mut tx, account).await?;
        D::Db::run(&mut tx, stmt("DELETE FROM sessions WHERE account_id = $1").arg(account.id.0)).await?;
        if let Some(s) = new_session {
            insert_session_row::<D>(&mut tx, s).await?;
        }
        append::<D>(&mut tx, audit, Some(Change::Account(account.id))).await?;
        tx.commit().await?;
        Ok(())
    }
}
