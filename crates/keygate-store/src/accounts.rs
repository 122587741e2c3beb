//! The accounts aggregate: login names, password hashes, status and withdrawal locks.

use crate::StoreResult;
use crate::audit_log::append;
use crate::dialect::Dialect;
use crate::records::{AccountRecord, AccountStatus, AuditDraft, Change, NewAccount};
use crate::rows::{ACCOUNT_COLUMNS, Columns as _, account_from_row, name_violation, to_db_time};
use crate::sql::{SqlDb, SqlStore, found, stmt};
use async_trait::async_trait;
use keygate_auth::AccountId;
use sqlx::Database;

/// Accounts, each change with its audit record.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an account; [`crate::StoreError::Conflict`] if the name is taken. The audit record
    /// gets the new account id when `audit.account_id` is `None`, so the owner sees their
    /// account's creation in their own audit view.
    async fn create_account(&self, new: NewAccount, audit: AuditDraft) -> StoreResult<AccountRecord>;

    /// The account with `name`, if any.
    async fn account_by_name(&self, name: &str) -> StoreResult<Option<AccountRecord>>;

    /// The account with `id`, if any.
    async fn account_by_id(&self, id: AccountId) -> StoreResult<Option<AccountRecord>>;

    /// All accounts, by id.
    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>>;

    /// Replaces an account's mutable fields (password hash, status, withdrawal lock; never the
    /// withdrawal hold, which only [`crate::SessionStore::enable_two_factor`] sets);
    /// [`crate::StoreError::NotFound`] if it does not exist.
    async fn update_account(&self, account: &AccountRecord, audit: AuditDraft) -> StoreResult<()>;
}

/// Replaces an account's mutable fields inside the caller's write transaction.
pub(crate) async fn update_account_row<D: Dialect>(
    conn: &mut <D::Db as Database>::Connection,
    account: &AccountRecord,
) -> StoreResult<()> {
    let until = account.withdrawals_locked_until.map(|t| to_db_time(t, "withdrawal lock")).transpose()?;
    let done = D::Db::run(
        conn,
        stmt("UPDATE accounts SET password_hash = $1, status = $2, withdrawals_locked_until = $3 WHERE id = $4")
            .arg(&account.password_hash)
            .arg(account.status.as_str())
            .arg(until)
            .arg(account.id.0),
    )
    .await?;
    found(done, || format!("account {}", account.id))
}

#[async_trait]
impl<D: Dialect> AccountStore for SqlStore<D> {
    /// Creates an account. When `audit.account_id` is `None` (the caller cannot know the id
    /// yet), the audit record is attributed to the new account.
    async fn create_account(&self, new: NewAccount, mut audit: AuditDraft) -> StoreResult<AccountRecord> {
        let created_at = to_db_time(new.created_at, "account")?;
        let status = AccountStatus::Active;
        let mut tx = self.begin().await?;
        let row = D::Db::optional(
            &mut tx,
            stmt("INSERT INTO accounts (name, password_hash, status, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
                .arg(&new.name)
                .arg(&new.password_hash)
                .arg(status.as_str())
                .arg(created_at),
        )
        .await
        .map_err(|e| name_violation(e, &format_args!("account name {:?} is taken", new.name), &"account"))?;
        let id = match row {
            Some(r) => AccountId(r.get("id", "new account")?),
            None => return Err(crate::StoreError::Corrupt("INSERT ... RETURNING id returned no row".into())),
        };
        audit.account_id.get_or_insert(id);
        append::<D>(&mut tx, audit, Some(Change::Account(id))).await?;
        tx.commit().await?;
        Ok(AccountRecord {
            id,
            name: new.name,
            password_hash: new.password_hash,
            status,
            created_at: new.created_at,
            withdrawals_locked_until: None,
            withdrawals_held_until: None,
        })
    }

    async fn account_by_name(&self, name: &str) -> StoreResult<Option<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1");
        self.read_optional(stmt(sql).arg(name)).await?.as_ref().map(account_from_row).transpose()
    }

    async fn account_by_id(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        self.read_optional(stmt(sql).arg(id.0)).await?.as_ref().map(account_from_row).transpose()
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id");
        self.read_all(stmt(sql)).await?.iter().map(account_from_row).collect()
    }

    async fn update_account(&self, account: &AccountRecord, audit: AuditDraft) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        update_account_row::<D>(&mut tx, account).await?;
        append::<D>(&mut tx, audit, Some(Change::Account(account.id))).await?;
        tx.commit().await?;
        Ok(())
    }
}
