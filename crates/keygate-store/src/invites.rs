//! Single-use invite codes for `serve --signup invite` (issue #18).
//!
//! The operator makes a code; the store keeps only its SHA-256, with a note, an expiry and, once
//! used, the account it created. Redeeming a code and creating the account happen in one
//! transaction: the account with its audit record, the invite marked used and the redemption's
//! audit record are committed together, or none of them is. The code is taken with a
//! conditional `UPDATE` (unused, unrevoked, unexpired), so of two concurrent redemptions on any
//! backend exactly one finds it usable: SQLite runs one write transaction at a time, and on
//! PostgreSQL the second `UPDATE` waits for the first's row lock and then sees `used_at` set.

use crate::StoreResult;
use crate::audit_log::append;
use crate::dialect::Dialect;
use crate::records::{
    AccountRecord, AccountStatus, AuditDraft, Change, InviteRecord, InviteRefusal, NewAccount, NewInvite,
};
use crate::rows::{Columns, from_db_time, name_violation, to_db_time};
use crate::sql::{SqlDb, SqlStore, stmt};
use async_trait::async_trait;
use keygate_auth::AccountId;
use keygate_proto::UnixMillis;

/// The columns [`invite_from_row`] reads, from `invites i LEFT JOIN accounts a ON a.id = i.used_by`.
const INVITE_COLUMNS: &str = "i.id, i.note, i.created_at, i.created_by, i.expires_at, i.revoked_at, i.used_at, \
     i.used_by, a.name AS used_by_name";

/// Invite codes, each change with its audit record.
#[async_trait]
pub trait InviteStore: Send + Sync {
    /// Stores a new invite; its audit record's target becomes `invite:ID` (only the store knows
    /// the id). [`crate::StoreError::Conflict`] if an invite with the same code hash exists.
    async fn create_invite(&self, new: NewInvite, audit: AuditDraft) -> StoreResult<InviteRecord>;

    /// Every invite, oldest first.
    async fn list_invites(&self) -> StoreResult<Vec<InviteRecord>>;

    /// The invite whose code hashes to `code_hash`, if any: for refusing an unusable code before
    /// a password is hashed. Only [`Self::create_account_with_invite`] decides.
    async fn invite_by_code(&self, code_hash: &[u8; 32]) -> StoreResult<Option<InviteRecord>>;

    /// Revokes an unused invite at `at`, with its audit record (target `invite:ID`).
    /// [`crate::StoreError::NotFound`] for an unknown id, [`crate::StoreError::Conflict`] for
    /// one already used or revoked (nothing is written then).
    async fn revoke_invite(&self, id: i64, at: UnixMillis, audit: AuditDraft) -> StoreResult<InviteRecord>;

    /// Redeems the invite whose code hashes to `code_hash` and creates the account `new`, in one
    /// transaction: the account and `sign_up` (attributed to the new account, with its change
    /// record), the invite marked used by it at `new.created_at`, and `redeem` (attributed to the
    /// new account, target `invite:ID`). `Ok(Err(refusal))` when the code is unknown, used,
    /// revoked or expired at `new.created_at`; [`crate::StoreError::Conflict`] when the name is
    /// taken. On any refusal or error nothing is written: the invite stays usable.
    async fn create_account_with_invite(
        &self,
        code_hash: &[u8; 32],
        new: NewAccount,
        sign_up: AuditDraft,
        redeem: AuditDraft,
    ) -> StoreResult<Result<AccountRecord, InviteRefusal>>;
}

fn invite_from_row(row: &impl Columns) -> StoreResult<InviteRecord> {
    const WHAT: &str = "invite";
    let time = |name: &str| -> StoreResult<Option<UnixMillis>> {
        row.get::<Option<i64>>(name, WHAT)?.map(|t| from_db_time(t, WHAT)).transpose()
    };
    Ok(InviteRecord {
        id: row.get("id", WHAT)?,
        note: row.get("note", WHAT)?,
        created_at: from_db_time(row.get("created_at", WHAT)?, WHAT)?,
        created_by: row.get("created_by", WHAT)?,
        expires_at: from_db_time(row.get("expires_at", WHAT)?, WHAT)?,
        revoked_at: time("revoked_at")?,
        used_at: time("used_at")?,
        used_by: row.get::<Option<i64>>("used_by", WHAT)?.map(AccountId),
        used_by_name: row.get("used_by_name", WHAT)?,
    })
}

/// The invite `id` read inside the caller's transaction.
async fn invite_in<D: Dialect>(
    conn: &mut <D::Db as sqlx::Database>::Connection,
    id: i64,
) -> StoreResult<Option<InviteRecord>> {
    let sql =
        format!("SELECT {INVITE_COLUMNS} FROM invites i LEFT JOIN accounts a ON a.id = i.used_by WHERE i.id = $1");
    D::Db::optional(conn, stmt(sql).arg(id)).await?.as_ref().map(invite_from_row).transpose()
}

#[async_trait]
impl<D: Dialect> InviteStore for SqlStore<D> {
    async fn create_invite(&self, new: NewInvite, mut audit: AuditDraft) -> StoreResult<InviteRecord> {
        let what = "invite";
        let created_at = to_db_time(new.created_at, what)?;
        let expires_at = to_db_time(new.expires_at, what)?;
        let mut tx = self.begin().await?;
        let row = D::Db::optional(
            &mut tx,
            stmt(
                "INSERT INTO invites (code_hash, note, created_at, created_by, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .arg(&new.code_hash[..])
            .arg(&new.note)
            .arg(created_at)
            .arg(&new.created_by)
            .arg(expires_at),
        )
        .await
        .map_err(|e| name_violation(e, &"an invite with this code exists", &"invite"))?;
        let id: i64 = match row {
            Some(r) => r.get("id", "new invite")?,
            None => return Err(crate::StoreError::Corrupt("INSERT ... RETURNING id returned no row".into())),
        };
        audit.target = format!("invite:{id}");
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(InviteRecord {
            id,
            note: new.note,
            created_at: new.created_at,
            created_by: new.created_by,
            expires_at: new.expires_at,
            revoked_at: None,
            used_at: None,
            used_by: None,
            used_by_name: None,
        })
    }

    async fn list_invites(&self) -> StoreResult<Vec<InviteRecord>> {
        let sql =
            format!("SELECT {INVITE_COLUMNS} FROM invites i LEFT JOIN accounts a ON a.id = i.used_by ORDER BY i.id");
        self.read_all(stmt(sql)).await?.iter().map(invite_from_row).collect()
    }

    async fn invite_by_code(&self, code_hash: &[u8; 32]) -> StoreResult<Option<InviteRecord>> {
        let sql = format!(
            "SELECT {INVITE_COLUMNS} FROM invites i LEFT JOIN accounts a ON a.id = i.used_by WHERE i.code_hash = $1"
        );
        self.read_optional(stmt(sql).arg(&code_hash[..])).await?.as_ref().map(invite_from_row).transpose()
    }

    async fn revoke_invite(&self, id: i64, at: UnixMillis, mut audit: AuditDraft) -> StoreResult<InviteRecord> {
        let when = to_db_time(at, "invite")?;
        let mut tx = self.begin().await?;
        let done = D::Db::run(
            &mut tx,
            stmt("UPDATE invites SET revoked_at = $1 WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL")
                .arg(when)
                .arg(id),
        )
        .await?;
        let Some(invite) = invite_in::<D>(&mut tx, id).await? else {
            return Err(crate::StoreError::NotFound(format!("invite {id}")));
        };
        if done == 0 {
            return Err(crate::StoreError::Conflict(match &invite.used_by_name {
                Some(name) => format!("invite {id} was already used by {name}"),
                None if invite.used_at.is_some() => format!("invite {id} was already used"),
                None => format!("invite {id} is already revoked"),
            }));
        }
        audit.target = format!("invite:{id}");
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(invite)
    }

    async fn create_account_with_invite(
        &self,
        code_hash: &[u8; 32],
        new: NewAccount,
        mut sign_up: AuditDraft,
        mut redeem: AuditDraft,
    ) -> StoreResult<Result<AccountRecord, InviteRefusal>> {
        let what = "invite";
        let at = to_db_time(new.created_at, what)?;
        let mut tx = self.begin().await?;
        // Taking the invite first: a concurrent redemption of the same code waits here (row lock)
        // and then finds it used.
        let taken = D::Db::optional(
            &mut tx,
            stmt(
                "UPDATE invites SET used_at = $1 \
                 WHERE code_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $3 RETURNING id",
            )
            .arg(at)
            .arg(&code_hash[..])
            .arg(at),
        )
        .await?;
        let invite_id: i64 = match taken {
            Some(row) => row.get("id", what)?,
            None => {
                let sql = format!(
                    "SELECT {INVITE_COLUMNS} FROM invites i LEFT JOIN accounts a ON a.id = i.used_by \
                     WHERE i.code_hash = $1"
                );
                let found = D::Db::optional(&mut tx, stmt(sql).arg(&code_hash[..])).await?;
                let refusal = match found.as_ref().map(invite_from_row).transpose()? {
                    None => InviteRefusal::Unknown,
                    // Not usable, so it names a reason; `Used` if it somehow does not.
                    Some(invite) => invite.refusal(new.created_at).unwrap_or(InviteRefusal::Used),
                };
                tx.rollback().await?;
                return Ok(Err(refusal));
            }
        };
        let status = AccountStatus::Active;
        let row = D::Db::optional(
            &mut tx,
            stmt("INSERT INTO accounts (name, password_hash, status, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
                .arg(&new.name)
                .arg(&new.password_hash)
                .arg(status.as_str())
                .arg(at),
        )
        .await
        .map_err(|e| name_violation(e, &format_args!("account name {:?} is taken", new.name), &"account"))?;
        let id = match row {
            Some(r) => AccountId(r.get("id", "new account")?),
            None => return Err(crate::StoreError::Corrupt("INSERT ... RETURNING id returned no row".into())),
        };
        D::Db::run(&mut tx, stmt("UPDATE invites SET used_by = $1 WHERE id = $2").arg(id.0).arg(invite_id)).await?;
        sign_up.account_id.get_or_insert(id);
        append::<D>(&mut tx, sign_up, Some(Change::Account(id))).await?;
        redeem.account_id.get_or_insert(id);
        redeem.target = format!("invite:{invite_id}");
        append::<D>(&mut tx, redeem, None).await?;
        tx.commit().await?;
        Ok(Ok(AccountRecord {
            id,
            name: new.name,
            password_hash: new.password_hash,
            status,
            created_at: new.created_at,
            withdrawals_locked_until: None,
            withdrawals_held_until: None,
        }))
    }
}
