//! The SQLite backend: one database file, WAL journal, one writer.
//!
//! Every mutation runs in a `BEGIN IMMEDIATE` transaction on a pool of exactly one connection, so
//! writes (and with them audit appends) are serialised in this process and the audit record and
//! the change it describes commit together or not at all. Reads go through a separate read-only
//! pool, which WAL lets run beside the writer without blocking it.
//!
//! HMAC secrets are sealed with the store's [`SecretCipher`] before they reach SQL and opened after
//! they leave it; the database holds only ciphertext and the id of the master key that sealed it.

use crate::audit::chain_hash;
use crate::crypto::{SecretCipher, totp_seed_aad};
use crate::records::{
    AccountRecord, AccountStatus, AuditDraft, AuditRecord, JournalEntry, KeyRecord, NewAccount, SessionRecord,
    TotpAttempt, TwoFactorRecord, UsageDelta,
};
use crate::rows::AuditOrder;
use crate::rows::{
    ACCOUNT_COLUMNS, AUDIT_COLUMNS, Columns as _, EncodedKey, KEY_COLUMNS, SESSION_COLUMNS, TWO_FACTOR_COLUMNS,
    account_from_row, audit_from_row, chain_head, from_db_time, holds_text, journal_from_row, key_from_row,
    name_violation, next_failure_window, reserve_failure_window, restrictions_text, session_from_row, to_db_time,
    to_db_u64, two_factor_from_row, usage_count,
};
use crate::{Store, StoreError, StoreResult};
use async_trait::async_trait;
use keygate_auth::{AccountId, ApiKeyId};
use keygate_proto::UnixMillis;
use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Journal rows per INSERT statement (3 bound values each, far below both backends' limits).
const JOURNAL_ROWS_PER_STATEMENT: usize = 500;

/// How hard a commit works to reach the disk (DESIGN.md section 5, "Durable").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `synchronous=NORMAL`: a committed transaction survives the process being killed; the
    /// last commits may be lost on power failure. The default. On PostgreSQL: the server's own
    /// `synchronous_commit` setting.
    #[default]
    Normal,
    /// `synchronous=FULL`: every commit is synced to disk, so it also survives power loss. On
    /// PostgreSQL: `synchronous_commit=on` for keygate's sessions, whatever the server's default.
    Full,
}

/// How long a connection waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of the read pool.
const READERS: u32 = 4;

/// A [`Store`] on one SQLite database file.
pub struct SqliteStore {
    path: PathBuf,
    /// Exactly one connection: every mutation, in a transaction.
    writer: SqlitePool,
    /// Read-only connections for queries.
    reader: SqlitePool,
    cipher: Arc<SecretCipher>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cipher holds the master key: name it by its public id only.
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("master_key_id", &self.cipher.current_id())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
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
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE account_id = ? AND seq {cmp} ? ORDER BY seq {dir} LIMIT ?"
                );
                sqlx::query(&sql).bind(a.0).bind(bound).bind(i64::from(limit)).fetch_all(&self.reader).await?
            }
            None => {
                let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq {cmp} ? ORDER BY seq {dir} LIMIT ?");
                sqlx::query(&sql).bind(bound).bind(i64::from(limit)).fetch_all(&self.reader).await?
            }
        };
        rows.iter().map(audit_from_row).collect()
    }

    /// Opens (creating if missing) the database at `path` and brings its schema up to date.
    ///
    /// The parent directory must exist. The file is opened in WAL mode with foreign keys
    /// enforced and a 5 s busy timeout; `sync` chooses between `synchronous=NORMAL` and `FULL`.
    ///
    /// # Errors
    /// [`StoreError::Setup`] naming the file when it cannot be opened or migrated.
    pub async fn open(path: &Path, cipher: Arc<SecretCipher>, sync: SyncMode) -> StoreResult<Self> {
        let setup = |e: &dyn fmt::Display| StoreError::Setup(format!("cannot open database {}: {e}", path.display()));
        private_files(path).map_err(|e| setup(&e))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match sync {
                SyncMode::Normal => SqliteSynchronous::Normal,
                SyncMode::Full => SqliteSynchronous::Full,
            })
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer =
            SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await.map_err(|e| setup(&e))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Setup(format!("cannot migrate database {}: {e}", path.display())))?;
        // Opened only now: the file exists and is in WAL mode, which a read-only connection
        // cannot arrange by itself.
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.create_if_missing(false).read_only(true))
            .await
            .map_err(|e| setup(&e))?;
        Ok(Self { path: path.to_owned(), writer, reader, cipher })
    }

    /// Closes every connection, waiting for them to finish; the last one checkpoints the WAL
    /// into the database file. Later calls on this store fail.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        // IMMEDIATE takes the write lock up front, so a transaction that reads the chain head and
        // then writes can never fail half-way with SQLITE_BUSY when another process holds the
        // file (it waits up to the busy timeout instead).
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

/// Appends `draft` to the chain inside the caller's write transaction.
async fn append(conn: &mut SqliteConnection, draft: AuditDraft) -> StoreResult<AuditRecord> {
    let last =
        sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *conn).await?;
    let (prev_seq, prev_hash) = chain_head(last.as_ref())?;
    let seq = prev_seq + 1;
    let hash = chain_hash(&prev_hash, seq, &draft);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, target, account_id, source, details, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(to_db_time(draft.at, "audit record")?)
    .bind(&draft.actor)
    .bind(&draft.action)
    .bind(&draft.target)
    .bind(draft.account_id.map(|a| a.0))
    .bind(draft.source.as_deref())
    .bind(draft.details.to_string())
    .bind(prev_hash.as_slice())
    .bind(hash.as_slice())
    .execute(&mut *conn)
    .await?;
    Ok(AuditRecord { seq, draft, prev_hash, hash })
}

/// Inserts a session row inside the caller's write transaction.
async fn insert_session_row(conn: &mut SqliteConnection, s: &SessionRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, account_id, created_at, last_seen_at, two_factor_pending, stepped_up_until, \
         source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(s.id_hash.as_slice())
    .bind(s.account_id.0)
    .bind(to_db_time(s.created_at, "session")?)
    .bind(to_db_time(s.last_seen_at, "session")?)
    .bind(i64::from(s.two_factor_pending))
    .bind(s.stepped_up_until.map(|t| to_db_time(t, "session")).transpose()?)
    .bind(s.source.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(|e| name_violation(e, &"session", &format_args!("account {}", s.account_id)))?;
    Ok(())
}

/// Replaces an account's mutable fields inside the caller's write transaction.
async fn update_account_row(conn: &mut SqliteConnection, account: &AccountRecord) -> StoreResult<()> {
    let until = account.withdrawals_locked_until.map(|t| to_db_time(t, "withdrawal lock")).transpose()?;
    let done =
        sqlx::query("UPDATE accounts SET password_hash = ?1, status = ?2, withdrawals_locked_until = ?3 WHERE id = ?4")
            .bind(&account.password_hash)
            .bind(account.status.as_str())
            .bind(until)
            .bind(account.id.0)
            .execute(&mut *conn)
            .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("account {}", account.id)));
    }
    Ok(())
}

/// Moves an account's withdrawal hold to `?1`, never earlier.
const HOLD_ACCOUNT_SQLITE: &str = "UPDATE accounts SET withdrawals_held_until = CASE WHEN withdrawals_held_until IS NULL \
     OR withdrawals_held_until < ?1 THEN ?1 ELSE withdrawals_held_until END WHERE id = ?2";

/// Reads (and, where the backend needs it, locks) an account's failure counter.
const LOCK_TWO_FACTOR_ROW: &str = "SELECT failures, failure_window_start FROM two_factor WHERE account_id = ?1";

#[async_trait]
impl Store for SqliteStore {
    /// Creates an account. When `audit.account_id` is `None` (the caller cannot know the id
    /// yet), the audit record is attributed to the new account.
    async fn create_account(&self, new: NewAccount, mut audit: AuditDraft) -> StoreResult<AccountRecord> {
        let mut tx = self.begin().await?;
        let created_at = to_db_time(new.created_at, "account")?;
        let status = AccountStatus::Active;
        let done = sqlx::query("INSERT INTO accounts (name, password_hash, status, created_at) VALUES (?, ?, ?, ?)")
            .bind(&new.name)
            .bind(&new.password_hash)
            .bind(status.as_str())
            .bind(created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| name_violation(e, &format_args!("account name {:?} is taken", new.name), &"account"))?;
        let id = AccountId(done.last_insert_rowid());
        audit.account_id.get_or_insert(id);
        append(&mut tx, audit).await?;
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
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?");
        let row = sqlx::query(&sql).bind(name).fetch_optional(&self.reader).await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn account_by_id(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?");
        let row = sqlx::query(&sql).bind(id.0).fetch_optional(&self.reader).await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id");
        sqlx::query(&sql).fetch_all(&self.reader).await?.iter().map(account_from_row).collect()
    }

    async fn update_account(&self, account: &AccountRecord, audit: AuditDraft) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        update_account_row(&mut tx, account).await?;
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_key(&self, key: &KeyRecord, audit: AuditDraft) -> StoreResult<()> {
        let what = key.id.as_str();
        let enc = EncodedKey::new(&self.cipher, key)?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, label, key_type, public_key_pem, secret_ciphertext, \
             secret_master_key_id, permissions, restrictions, status, created_at, created_by, updated_at, updated_by, \
             last_used_at, last_used_ip, use_count, withdrawal_holds) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(what)
        .bind(key.account_id.0)
        .bind(&key.label)
        .bind(key.material.key_type().as_str())
        .bind(enc.pem)
        .bind(enc.sealed.as_ref().map(|s| s.bytes.as_slice()))
        .bind(enc.sealed.as_ref().map(|s| s.master_key_id.as_str()))
        .bind(&enc.permissions)
        .bind(&enc.restrictions)
        .bind(key.status.as_str())
        .bind(enc.created_at)
        .bind(&key.created_by)
        .bind(enc.updated_at)
        .bind(&key.updated_by)
        .bind(enc.last_used_at)
        .bind(key.last_used_ip.as_deref())
        .bind(enc.use_count)
        .bind(&enc.holds)
        .execute(&mut *tx)
        .await
        .map_err(|e| name_violation(e, &format_args!("API key {what}"), &format_args!("account {}", key.account_id)))?;
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_key(&self, id: &ApiKeyId) -> StoreResult<Option<KeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.reader).await?;
        row.map(|r| key_from_row(&self.cipher, &r)).transpose()
    }

    async fn list_keys(&self, account: Option<AccountId>) -> StoreResult<Vec<KeyRecord>> {
        // rowid breaks ties between keys created in the same millisecond: insertion order.
        let rows = match account {
            Some(a) => {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = ? ORDER BY created_at, rowid");
                sqlx::query(&sql).bind(a.0).fetch_all(&self.reader).await?
            }
            None => {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, rowid");
                sqlx::query(&sql).fetch_all(&self.reader).await?
            }
        };
        rows.iter().map(|r| key_from_row(&self.cipher, r)).collect()
    }

    async fn list_keys_page(&self, after: Option<&ApiKeyId>, limit: u32) -> StoreResult<Vec<KeyRecord>> {
        // The primary key's index serves both the range and the order: no sort, no full scan.
        let rows = match after {
            Some(id) => {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id > ? ORDER BY id LIMIT ?");
                sqlx::query(&sql).bind(id.as_str()).bind(i64::from(limit)).fetch_all(&self.reader).await?
            }
            None => {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id LIMIT ?");
                sqlx::query(&sql).bind(i64::from(limit)).fetch_all(&self.reader).await?
            }
        };
        rows.iter().map(|r| key_from_row(&self.cipher, r)).collect()
    }

    async fn update_key(&self, key: &KeyRecord, audit: AuditDraft) -> StoreResult<()> {
        let what = key.id.as_str();
        let restrictions = restrictions_text(key)?;
        let holds = holds_text(key)?;
        let updated_at = to_db_time(key.updated_at, what)?;
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE api_keys SET label = ?, permissions = ?, restrictions = ?, withdrawal_holds = ?, status = ?, \
             updated_at = ?, updated_by = ? WHERE id = ? AND status <> 'revoked'",
        )
        .bind(&key.label)
        .bind(key.permissions.to_string())
        .bind(restrictions)
        .bind(holds)
        .bind(key.status.as_str())
        .bind(updated_at)
        .bind(&key.updated_by)
        .bind(what)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            // A revoked key never changes again, whatever a concurrent writer read before the
            // revocation committed: tell "revoked" apart from "missing".
            let exists =
                sqlx::query("SELECT 1 FROM api_keys WHERE id = ?").bind(what).fetch_optional(&mut *tx).await?.is_some();
            return Err(if exists {
                StoreError::Conflict(format!("API key {what} is revoked; revoked keys never change"))
            } else {
                StoreError::NotFound(format!("API key {what}"))
            });
        }
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_usage(&self, deltas: &[UsageDelta]) -> StoreResult<()> {
        if deltas.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for d in deltas {
            let what = d.key_id.as_str();
            // Counts saturate rather than overflow: SQLite would silently turn an overflowing
            // integer into a float.
            let count = usage_count(d.count);
            sqlx::query(
                "UPDATE api_keys SET \
                   use_count = CASE WHEN use_count > 9223372036854775807 - ?1 THEN 9223372036854775807 \
                                    ELSE use_count + ?1 END, \
                   last_used_ip = CASE WHEN last_used_at IS NULL OR last_used_at <= ?2 THEN ?3 ELSE last_used_ip END, \
                   last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at <= ?2 THEN ?2 ELSE last_used_at END \
                 WHERE id = ?4",
            )
            .bind(count)
            .bind(to_db_time(d.last_used_at, what)?)
            .bind(&d.last_used_ip)
            .bind(what)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn append_audit(&self, draft: AuditDraft) -> StoreResult<AuditRecord> {
        let mut tx = self.begin().await?;
        let record = append(&mut tx, draft).await?;
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

    async fn append_journal(&self, entries: &[JournalEntry]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries {
            rows.push((e.seq, to_db_time(e.at, "journal entry")?, &e.command));
        }
        let mut tx = self.begin().await?;
        // One statement per chunk, not one per entry: the engine waits on this write before it
        // answers anyone, so its round trips are the durable path's latency.
        for chunk in rows.chunks(JOURNAL_ROWS_PER_STATEMENT) {
            let mut insert =
                sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO exchange_journal (seq, at, command) ");
            insert.push_values(chunk, |mut row, (seq, at, command)| {
                row.push_bind(*seq).push_bind(*at).push_bind(command.as_slice());
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn journal_after(&self, after: i64, limit: u32) -> StoreResult<Vec<JournalEntry>> {
        let rows = sqlx::query("SELECT seq, at, command FROM exchange_journal WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(journal_from_row).collect()
    }

    async fn save_snapshot(&self, seq: i64, state: &[u8]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO exchange_snapshots (seq, state) VALUES (?, ?) ON CONFLICT (seq) DO UPDATE SET state = excluded.state")
            .bind(seq)
            .bind(state)
            .execute(&mut *tx)
            .await?;
        // Older snapshots are never read again.
        sqlx::query("DELETE FROM exchange_snapshots WHERE seq < ?").bind(seq).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_snapshot(&self) -> StoreResult<Option<(i64, Vec<u8>)>> {
        let row = sqlx::query("SELECT seq, state FROM exchange_snapshots ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.reader)
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((sqlx::Row::try_get(&r, "seq")?, sqlx::Row::try_get(&r, "state")?))),
        }
    }

    async fn insert_session(&self, session: &SessionRecord, audit: Option<AuditDraft>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        insert_session_row(&mut tx, session).await?;
        if let Some(audit) = audit {
            append(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id_hash: &[u8; 32]) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = ?1");
        let row = sqlx::query(&sql).bind(id_hash.as_slice()).fetch_optional(&self.reader).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, id_hash: &[u8; 32], last_seen_at: UnixMillis) -> StoreResult<()> {
        let at = to_db_time(last_seen_at, "session")?;
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE sessions SET last_seen_at = ?1 WHERE id_hash = ?2 AND last_seen_at < ?1")
            .bind(at)
            .bind(id_hash.as_slice())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_session(&self, old: &[u8; 32], new: &SessionRecord, audit: AuditDraft) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let gone =
            sqlx::query("DELETE FROM sessions WHERE id_hash = ?1").bind(old.as_slice()).execute(&mut *tx).await?;
        if gone.rows_affected() == 0 {
            return Err(StoreError::NotFound("session".into()));
        }
        insert_session_row(&mut tx, new).await?;
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &[u8; 32], audit: Option<AuditDraft>) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let gone =
            sqlx::query("DELETE FROM sessions WHERE id_hash = ?1").bind(id_hash.as_slice()).execute(&mut *tx).await?;
        let existed = gone.rows_affected() > 0;
        if existed && let Some(audit) = audit {
            append(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(existed)
    }

    async fn purge_sessions(&self, idle_before: UnixMillis, created_before: UnixMillis) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let gone = sqlx::query("DELETE FROM sessions WHERE last_seen_at < ?1 OR created_at < ?2")
            .bind(to_db_time(idle_before, "session purge")?)
            .bind(to_db_time(created_before, "session purge")?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone.rows_affected())
    }

    async fn update_account_ending_sessions(
        &self,
        account: &AccountRecord,
        new_session: Option<&SessionRecord>,
        audit: AuditDraft,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        update_account_row(&mut tx, account).await?;
        sqlx::query("DELETE FROM sessions WHERE account_id = ?1").bind(account.id.0).execute(&mut *tx).await?;
        if let Some(s) = new_session {
            insert_session_row(&mut tx, s).await?;
        }
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn two_factor(&self, account: AccountId) -> StoreResult<Option<TwoFactorRecord>> {
        let sql = format!("SELECT {TWO_FACTOR_COLUMNS} FROM two_factor WHERE account_id = ?1");
        let row = sqlx::query(&sql).bind(account.0).fetch_optional(&self.reader).await?;
        row.map(|r| two_factor_from_row(&self.cipher, &r)).transpose()
    }

    async fn begin_two_factor(
        &self,
        account: AccountId,
        seed: &[u8],
        at: UnixMillis,
        audit: AuditDraft,
    ) -> StoreResult<()> {
        let sealed = self.cipher.seal(seed, &totp_seed_aad(account.0))?;
        let at = to_db_time(at, "two-factor enrollment")?;
        let mut tx = self.begin().await?;
        // An enabled 2FA is never overwritten by a new enrollment: it must be disabled first.
        let done = sqlx::query(
            "INSERT INTO two_factor (account_id, seed_ciphertext, seed_master_key_id, enabled, created_at, \
             confirmed_at, last_step, failures, failure_window_start) VALUES (?1, ?2, ?3, 0, ?4, NULL, NULL, 0, NULL) \
             ON CONFLICT (account_id) DO UPDATE SET seed_ciphertext = excluded.seed_ciphertext, \
             seed_master_key_id = excluded.seed_master_key_id, created_at = excluded.created_at, \
             last_step = NULL WHERE two_factor.enabled = 0",
        )
        .bind(account.0)
        .bind(sealed.bytes.as_slice())
        .bind(sealed.master_key_id.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(|e| name_violation(e, &"two-factor state", &format_args!("account {account}")))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "two-factor authentication is already enabled for account {account}"
            )));
        }
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enable_two_factor(
        &self,
        account: AccountId,
        step: u64,
        recovery_hashes: &[[u8; 32]],
        at: UnixMillis,
        withdrawals_held_until: Option<UnixMillis>,
        audit: AuditDraft,
    ) -> StoreResult<()> {
        let step = to_db_u64(step, "TOTP step")?;
        let at = to_db_time(at, "two-factor confirmation")?;
        let held_until = withdrawals_held_until.map(|t| to_db_time(t, "withdrawal hold")).transpose()?;
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE two_factor SET enabled = 1, confirmed_at = ?1, last_step = ?2, failures = 0, \
             failure_window_start = NULL WHERE account_id = ?3 AND enabled = 0",
        )
        .bind(at)
        .bind(step)
        .bind(account.0)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("no pending two-factor enrollment for account {account}")));
        }
        if let Some(until) = held_until {
            sqlx::query(HOLD_ACCOUNT_SQLITE).bind(until).bind(account.0).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = ?1").bind(account.0).execute(&mut *tx).await?;
        for h in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (account_id, code_hash, used_at) VALUES (?1, ?2, NULL)")
                .bind(account.0)
                .bind(h.as_slice())
                .execute(&mut *tx)
                .await?;
        }
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn disable_two_factor(
        &self,
        account: AccountId,
        withdrawals_locked_until: Option<UnixMillis>,
        audit: AuditDraft,
    ) -> StoreResult<()> {
        let until = withdrawals_locked_until.map(|t| to_db_time(t, "withdrawal lock")).transpose()?;
        let mut tx = self.begin().await?;
        let done = sqlx::query("UPDATE accounts SET withdrawals_locked_until = ?1 WHERE id = ?2")
            .bind(until)
            .bind(account.0)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("account {account}")));
        }
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = ?1").bind(account.0).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM two_factor WHERE account_id = ?1").bind(account.0).execute(&mut *tx).await?;
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn accept_totp_step(&self, account: AccountId, step: u64, audit: Option<AuditDraft>) -> StoreResult<bool> {
        let step = to_db_u64(step, "TOTP step")?;
        let mut tx = self.begin().await?;
        // The guard is in the statement: two nodes accepting the same code at once cannot both
        // see their update applied.
        let done = sqlx::query(
            "UPDATE two_factor SET last_step = ?1, failures = 0, failure_window_start = NULL \
             WHERE account_id = ?2 AND (last_step IS NULL OR last_step < ?1)",
        )
        .bind(step)
        .bind(account.0)
        .execute(&mut *tx)
        .await?;
        let accepted = done.rows_affected() > 0;
        if accepted && let Some(audit) = audit {
            append(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(accepted)
    }

    async fn record_totp_failure(
        &self,
        account: AccountId,
        at: UnixMillis,
        window_ms: u64,
        audit: AuditDraft,
    ) -> StoreResult<(u32, UnixMillis)> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(LOCK_TWO_FACTOR_ROW).bind(account.0).fetch_optional(&mut *tx).await?;
        let what = "two-factor failure counter";
        let current = match &row {
            Some(r) => Some((
                u32::try_from(r.get::<i64>("failures", what)?).unwrap_or(u32::MAX),
                r.get::<Option<i64>>("failure_window_start", what)?.map(|t| from_db_time(t, what)).transpose()?,
            )),
            None => None,
        };
        let (failures, start) = next_failure_window(current, at, window_ms);
        if row.is_some() {
            sqlx::query("UPDATE two_factor SET failures = ?1, failure_window_start = ?2 WHERE account_id = ?3")
                .bind(i64::from(failures))
                .bind(to_db_time(start, what)?)
                .bind(account.0)
                .execute(&mut *tx)
                .await?;
        }
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok((failures, start))
    }

    async fn reserve_totp_attempt(
        &self,
        account: AccountId,
        at: UnixMillis,
        window_ms: u64,
        limit: u32,
    ) -> StoreResult<TotpAttempt> {
        let mut tx = self.begin().await?;
        let what = "two-factor failure counter";
        let row = sqlx::query(LOCK_TWO_FACTOR_ROW)
            .bind(account.0)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("two-factor state of account #{account}")))?;
        let current = (
            u32::try_from(row.get::<i64>("failures", what)?).unwrap_or(u32::MAX),
            row.get::<Option<i64>>("failure_window_start", what)?.map(|t| from_db_time(t, what)).transpose()?,
        );
        let (write, outcome) = reserve_failure_window(current, at, window_ms, limit);
        if let Some((failures, start)) = write {
            sqlx::query("UPDATE two_factor SET failures = ?1, failure_window_start = ?2 WHERE account_id = ?3")
                .bind(i64::from(failures))
                .bind(to_db_time(start, what)?)
                .bind(account.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn release_totp_attempt(&self, account: AccountId, window_start: UnixMillis) -> StoreResult<()> {
        let start = to_db_time(window_start, "two-factor failure counter")?;
        sqlx::query(
            "UPDATE two_factor SET failures = failures - 1 \
             WHERE account_id = ?1 AND failures > 0 AND failure_window_start = ?2",
        )
        .bind(account.0)
        .bind(start)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn use_recovery_code(
        &self,
        account: AccountId,
        code_hash: &[u8; 32],
        at: UnixMillis,
        audit: Option<AuditDraft>,
    ) -> StoreResult<bool> {
        let at = to_db_time(at, "recovery code")?;
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = ?1 WHERE account_id = ?2 AND code_hash = ?3 AND used_at IS NULL",
        )
        .bind(at)
        .bind(account.0)
        .bind(code_hash.as_slice())
        .execute(&mut *tx)
        .await?;
        let used = done.rows_affected() > 0;
        if used && let Some(audit) = audit {
            append(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(used)
    }

    async fn replace_recovery_codes(
        &self,
        account: AccountId,
        recovery_hashes: &[[u8; 32]],
        audit: AuditDraft,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let enabled = sqlx::query("SELECT 1 FROM two_factor WHERE account_id = ?1 AND enabled = 1")
            .bind(account.0)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !enabled {
            return Err(StoreError::Conflict(format!(
                "two-factor authentication is not enabled for account {account}"
            )));
        }
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = ?1").bind(account.0).execute(&mut *tx).await?;
        for h in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (account_id, code_hash, used_at) VALUES (?1, ?2, NULL)")
                .bind(account.0)
                .bind(h.as_slice())
                .execute(&mut *tx)
                .await?;
        }
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recovery_codes_left(&self, account: AccountId) -> StoreResult<u32> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE account_id = ?1 AND used_at IS NULL")
                .bind(account.0)
                .fetch_one(&self.reader)
                .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }
}

/// Creates the database file with mode 0600 before SQLite does (SQLite would follow the umask,
/// typically 0644), and narrows an existing database, `-wal` or `-shm` file that is open to other
/// users. SQLite gives the `-wal` and `-shm` files it creates the database file's mode, so all
/// three stay private to the account that runs keygate.
fn private_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = Path::new(&name);
        match std::fs::metadata(file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;
    use crate::crypto::MasterKey;
    use crate::records::KeyMaterial;
    use keygate_auth::{HmacSecret, KeyStatus, Permissions, Restrictions};
    use keygate_proto::UnixMillis;
    use sqlx::Row as _;

    #[tokio::test]
    async fn the_database_and_its_wal_and_shm_files_are_private_whatever_the_umask_allows() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        // An older keygate (or a copy) left a database readable by everyone.
        let old = dir.path().join("old.db");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        for path in [dir.path().join("k.db"), old] {
            let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([3; 32]), vec![]));
            let store = SqliteStore::open(&path, cipher, SyncMode::Normal).await.unwrap();
            let new = NewAccount { name: "alice".into(), password_hash: "h".into(), created_at: UnixMillis(1) };
            let draft = AuditDraft {
                at: UnixMillis(1),
                actor: "operator:test".into(),
                action: "account.create".into(),
                target: "t".into(),
                account_id: None,
                source: None,
                details: serde_json::json!({}),
            };
            store.create_account(new, draft).await.unwrap();
            for suffix in ["", "-wal", "-shm"] {
                let file = PathBuf::from(format!("{}{suffix}", path.display()));
                assert!(file.exists(), "{} exists while the store is open", file.display());
                assert_eq!(mode(&file), 0o600, "{}", file.display());
            }
            store.close().await;
        }
    }

    /// The SQLite-specific failure modes the backend-independent suite cannot reach: rows altered
    /// behind the store's back.
    async fn store_with_one_hmac_key() -> (tempfile::TempDir, SqliteStore, ApiKeyId) {
        let dir = tempfile::tempdir().unwrap();
        let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([3; 32]), vec![]));
        let store = SqliteStore::open(&dir.path().join("k.db"), cipher, SyncMode::Normal).await.unwrap();
        let draft = |action: &str| AuditDraft {
            at: UnixMillis(1),
            actor: "operator:test".into(),
            action: action.into(),
            target: "t".into(),
            account_id: None,
            source: None,
            details: serde_json::json!({}),
        };
        let new = NewAccount { name: "alice".into(), password_hash: "h".into(), created_at: UnixMillis(1) };
        let acc = store.create_account(new, draft("account.create")).await.unwrap();
        let mut e = crate::conformance::TestEntropy::new(5);
        let id = ApiKeyId::generate(&mut e).unwrap();
        let key = KeyRecord {
            id: id.clone(),
            account_id: acc.id,
            label: "bot".into(),
            material: KeyMaterial::Hmac(HmacSecret::generate(&mut e).unwrap()),
            permissions: Permissions::READ_ONLY,
            restrictions: Restrictions::default(),
            status: KeyStatus::Active,
            created_at: UnixMillis(2),
            created_by: "owner".into(),
            updated_at: UnixMillis(2),
            updated_by: "owner".into(),
            last_used_at: None,
            last_used_ip: None,
            use_count: 0,
            withdrawal_holds: crate::WithdrawalHolds::default(),
        };
        store.insert_key(&key, draft("key.create")).await.unwrap();
        (dir, store, id)
    }

    async fn tamper(store: &SqliteStore, sql: &str) {
        sqlx::query(sql).execute(&store.writer).await.unwrap();
    }

    #[tokio::test]
    async fn a_ciphertext_moved_to_another_account_fails_to_open() {
        let (_dir, store, id) = store_with_one_hmac_key().await;
        tamper(&store, "PRAGMA foreign_keys = OFF").await;
        tamper(&store, "UPDATE api_keys SET account_id = 99").await;
        let err = store.get_key(&id).await.unwrap_err();
        assert!(matches!(err, StoreError::Crypto(_)), "{err}");
    }

    #[tokio::test]
    async fn unreadable_stored_values_are_corrupt_and_name_the_key() {
        for sql in [
            "UPDATE api_keys SET restrictions = '{not json'",
            "UPDATE api_keys SET permissions = 'read,admin'",
            "UPDATE api_keys SET status = 'paused'",
            "UPDATE api_keys SET created_at = -5",
            "UPDATE api_keys SET use_count = 'many'",
            "UPDATE api_keys SET secret_master_key_id = NULL",
            "UPDATE api_keys SET key_type = 'ed25519', public_key_pem = 'not a key'",
        ] {
            let (_dir, store, id) = store_with_one_hmac_key().await;
            tamper(&store, "PRAGMA ignore_check_constraints = ON").await;
            tamper(&store, sql).await;
            let err = store.get_key(&id).await.unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(ref m) if m.contains(id.as_str())), "{sql}: {err}");
            let err = store.list_keys(None).await.unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{sql}: {err}");
        }
    }

    #[tokio::test]
    async fn a_truncated_audit_hash_is_corrupt_rather_than_a_panic() {
        let (_dir, store, _id) = store_with_one_hmac_key().await;
        tamper(&store, "DROP TRIGGER audit_log_no_update").await;
        tamper(&store, "UPDATE audit_log SET hash = x'0102' WHERE seq = 2").await;
        let err = store.audit_records(0, 10, None).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(ref m) if m.contains("audit record 2")), "{err}");
        let err =
            store.append_audit(store.audit_records(0, 1, None).await.unwrap()[0].draft.clone()).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }

    #[tokio::test]
    async fn the_audit_log_refuses_updates_and_deletes() {
        let (_dir, store, _id) = store_with_one_hmac_key().await;
        for sql in ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"] {
            let err = sqlx::query(sql).execute(&store.writer).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
        }
        assert_eq!(store.audit_records(0, 10, None).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn connections_use_wal_foreign_keys_and_the_chosen_sync_mode() {
        let dir = tempfile::tempdir().unwrap();
        for (mode, want) in [(SyncMode::Normal, 1), (SyncMode::Full, 2)] {
            let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([3; 32]), vec![]));
            let store = SqliteStore::open(&dir.path().join("s.db"), cipher, mode).await.unwrap();
            let pragma = async |pool: &SqlitePool, name: &str| -> String {
                let row = sqlx::query(&format!("PRAGMA {name}")).fetch_one(pool).await.unwrap();
                row.try_get::<String, _>(0).or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string())).unwrap()
            };
            for pool in [&store.writer, &store.reader] {
                assert_eq!(pragma(pool, "journal_mode").await, "wal");
                assert_eq!(pragma(pool, "foreign_keys").await, "1");
                assert_eq!(pragma(pool, "busy_timeout").await, "5000");
            }
            assert_eq!(pragma(&store.writer, "synchronous").await, want.to_string(), "{mode:?}");
            let err = sqlx::query("CREATE TABLE t (x)").execute(&store.reader).await.unwrap_err();
            assert!(err.to_string().contains("readonly"), "the read pool must not write: {err}");
            store.close().await;
        }
    }

    #[tokio::test]
    async fn debug_output_names_the_master_key_by_id_only() {
        let (_dir, store, _id) = store_with_one_hmac_key().await;
        let text = format!("{store:?}");
        assert!(text.contains("k.db") && text.contains(MasterKey::from_bytes([3; 32]).id()), "{text}");
        assert!(!text.contains(&hex::encode([3u8; 32])), "{text}");
    }
}
