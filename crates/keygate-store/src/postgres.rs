//! The PostgreSQL backend: one database shared by every keygate node.
//!
//! Unlike SQLite, several processes on several machines write to the same database at once, so
//! nothing in this process can serialise the audit chain. Every mutation therefore runs in one
//! transaction (so a change and its audit record commit together or not at all) and, before it
//! reads the chain head, takes the transaction-scoped advisory lock [`AUDIT_CHAIN_LOCK`]. The lock
//! lives in the server, so it orders appends across all connections of all nodes; it is released
//! only after the commit is visible, so the next holder reads the head just written. Readers need
//! no lock: record `n + 1` is only ever inserted after record `n` committed, so any snapshot sees a
//! gap-free prefix of the chain.
//!
//! Rows are encoded and decoded by the code SQLite uses too (`src/rows.rs`); what differs here is
//! only the SQL. HMAC secrets are sealed with the store's [`SecretCipher`] before they reach SQL and
//! opened after they leave it; the database holds only ciphertext and the id of the master key
//! that sealed it.

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
use crate::sqlite::SyncMode;
use crate::{Store, StoreError, StoreResult};
use async_trait::async_trait;
use keygate_auth::{AccountId, ApiKeyId};
use keygate_proto::UnixMillis;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use std::fmt;
use std::str::FromStr as _;
use std::sync::Arc;

/// Journal rows per INSERT statement (3 bound values each, far below both backends' limits).
const JOURNAL_ROWS_PER_STATEMENT: usize = 500;

/// The advisory lock key that serialises audit-chain appends, taken with `pg_advisory_xact_lock`
/// inside each mutation's transaction. Advisory locks are scoped to one database, so keygate
/// databases on a shared server do not contend; the value ("kgaudit1" in ASCII) only has to differ
/// from any other advisory lock an application takes in the same database.
pub const AUDIT_CHAIN_LOCK: i64 = 0x6b67_6175_6469_7431;

/// Connections per store: enough for the service's concurrent readers and writers, few enough
/// that a handful of nodes stays well inside a default server's `max_connections` (100).
const MAX_CONNECTIONS: u32 = 8;

/// How long a statement waits for a lock (the audit chain's, a row's) before failing, as SQLite's
/// busy timeout: a node stuck inside a transaction makes the others fail visibly, not hang.
const LOCK_TIMEOUT: &str = "5s";

/// A [`Store`] on a PostgreSQL database.
pub struct PgStore {
    /// Where it is, without the password: `postgres://user@host:port/database`.
    target: String,
    pool: PgPool,
    cipher: Arc<SecretCipher>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the database password nor the master key: the target is built without the
        // former, and the cipher is named by its public id only.
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .field("master_key_id", &self.cipher.current_id())
            .finish_non_exhaustive()
    }
}

/// `postgres://user@host:port/database`: where a connection goes, safe to log (no password).
pub(crate) fn describe(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

impl PgStore {
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
                sqlx::query(&sql).bind(a.0).bind(bound).bind(i64::from(limit)).fetch_all(&self.pool).await?
            }
            None => {
                let sql =
                    format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq {cmp} $1 ORDER BY seq {dir} LIMIT $2");
                sqlx::query(&sql).bind(bound).bind(i64::from(limit)).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(audit_from_row).collect()
    }

    /// Connects to the database at `url` (`postgres://user[:password]@host[:port]/database`) and
    /// brings its schema up to date.
    ///
    /// The database must exist and use the UTF8 encoding. Schema migrations take their own
    /// advisory lock, so nodes starting together migrate once. `sync` mirrors SQLite's: `Full`
    /// sets `synchronous_commit=on` for keygate's sessions (each commit waits for the WAL flush,
    /// whatever the server's default); `Normal` keeps the server's setting. Lock waits are
    /// limited to 5 s unless the URL's `options` set `lock_timeout` itself.
    ///
    /// # Errors
    /// [`StoreError::Setup`] naming the server (never the password) when the URL is invalid or
    /// the database cannot be reached, has the wrong encoding or cannot be migrated.
    pub async fn open(url: &str, cipher: Arc<SecretCipher>, sync: SyncMode) -> StoreResult<Self> {
        // sqlx's parse errors name the part that is wrong, not the URL, so no password leaks.
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Setup(format!("invalid PostgreSQL database URL: {e}")))?;
        Self::open_with(options, cipher, sync).await
    }

    /// [`PgStore::open`] with parsed connection options (the test harness points them at a
    /// database of its own).
    pub(crate) async fn open_with(
        mut options: PgConnectOptions,
        cipher: Arc<SecretCipher>,
        sync: SyncMode,
    ) -> StoreResult<Self> {
        let target = describe(&options);
        let setup = |what: &str, e: &dyn fmt::Display| StoreError::Setup(format!("{what} {target}: {e}"));
        if options.get_application_name().is_none() {
            options = options.application_name("keygate");
        }
        if !options.get_options().is_some_and(|o| o.contains("lock_timeout")) {
            options = options.options([("lock_timeout", LOCK_TIMEOUT)]);
        }
        if sync == SyncMode::Full {
            options = options.options([("synchronous_commit", "on")]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|e| setup("cannot connect to PostgreSQL at", &e))?;
        let encoding: String = sqlx::query_scalar("SELECT current_setting('server_encoding')")
            .fetch_one(&pool)
            .await
            .map_err(|e| setup("cannot query PostgreSQL at", &e))?;
        if encoding != "UTF8" {
            pool.close().await;
            return Err(StoreError::Setup(format!(
                "PostgreSQL database {target} uses the {encoding} encoding; keygate needs UTF8 \
                 (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)"
            )));
        }
        if let Err(e) = sqlx::migrate!("./migrations/postgres").run(&pool).await {
            pool.close().await;
            return Err(setup("cannot migrate PostgreSQL database", &e));
        }
        Ok(Self { target, pool, cipher })
    }

    /// Closes every connection, waiting for them to finish. Later calls on this store fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Where the store is, without the password (`postgres://user@host:port/database`), for log
    /// lines and messages that must say which database a node uses.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.pool.begin().await?)
    }
}

/// Appends `draft` to the chain inside the caller's transaction, after taking the chain lock.
///
/// The lock is taken here, after the caller's own change, rather than when the transaction
/// begins: the change's row locks are then held while waiting for the chain lock, but a holder of
/// the chain lock only inserts into `audit_log` and commits, so it never waits for them; no cycle,
/// no deadlock, and changes to different rows proceed in parallel up to this point.
async fn append(conn: &mut PgConnection, draft: AuditDraft) -> StoreResult<AuditRecord> {
    let at = to_db_time(draft.at, "audit record")?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_CHAIN_LOCK).execute(&mut *conn).await?;
    let last =
        sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *conn).await?;
    let (prev_seq, prev_hash) = chain_head(last.as_ref())?;
    let seq = prev_seq
        .checked_add(1)
        .ok_or_else(|| StoreError::Corrupt(format!("audit chain head {prev_seq} has no successor")))?;
    let hash = chain_hash(&prev_hash, seq, &draft);
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, action, target, account_id, source, details, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(seq)
    .bind(at)
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
async fn insert_session_row(conn: &mut PgConnection, s: &SessionRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, account_id, created_at, last_seen_at, two_factor_pending, stepped_up_until, \
         source) VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
async fn update_account_row(conn: &mut PgConnection, account: &AccountRecord) -> StoreResult<()> {
    let until = account.withdrawals_locked_until.map(|t| to_db_time(t, "withdrawal lock")).transpose()?;
    let done =
        sqlx::query("UPDATE accounts SET password_hash = $1, status = $2, withdrawals_locked_until = $3 WHERE id = $4")
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

/// Reads (and, where the backend needs it, locks) an account's failure counter.
const LOCK_TWO_FACTOR_ROW: &str =
    "SELECT failures, failure_window_start FROM two_factor WHERE account_id = $1 FOR UPDATE";

#[async_trait]
impl Store for PgStore {
    /// Creates an account. When `audit.account_id` is `None` (the caller cannot know the id
    /// yet), the audit record is attributed to the new account.
    async fn create_account(&self, new: NewAccount, mut audit: AuditDraft) -> StoreResult<AccountRecord> {
        let created_at = to_db_time(new.created_at, "account")?;
        let status = AccountStatus::Active;
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (name, password_hash, status, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(&new.name)
        .bind(&new.password_hash)
        .bind(status.as_str())
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| name_violation(e, &format_args!("account name {:?} is taken", new.name), &"account"))?;
        let id = AccountId(id);
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
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1");
        let row = sqlx::query(&sql).bind(name).fetch_optional(&self.pool).await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn account_by_id(&self, id: AccountId) -> StoreResult<Option<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.0).fetch_optional(&self.pool).await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id");
        sqlx::query(&sql).fetch_all(&self.pool).await?.iter().map(account_from_row).collect()
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
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
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.map(|r| key_from_row(&self.cipher, &r)).transpose()
    }

    async fn list_keys(&self, account: Option<AccountId>) -> StoreResult<Vec<KeyRecord>> {
        // `inserted` breaks ties between keys created in the same millisecond: insertion order.
        let rows = match account {
            Some(a) => {
                let sql =
                    format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, inserted");
                sqlx::query(&sql).bind(a.0).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, inserted");
                sqlx::query(&sql).fetch_all(&self.pool).await?
            }
        };
        rows.iter().map(|r| key_from_row(&self.cipher, r)).collect()
    }

    async fn list_keys_page(&self, after: Option<&ApiKeyId>, limit: u32) -> StoreResult<Vec<KeyRecord>> {
        // The primary key's index serves both the range and the order: no sort, no full scan.
        let rows = match after {
            Some(id) => {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2");
                sqlx::query(&sql).bind(id.as_str()).bind(i64::from(limit)).fetch_all(&self.pool).await?
            }
            None => {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id LIMIT $1");
                sqlx::query(&sql).bind(i64::from(limit)).fetch_all(&self.pool).await?
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
            "UPDATE api_keys SET label = $1, permissions = $2, restrictions = $3, withdrawal_holds = $4, status = $5, \
             updated_at = $6, updated_by = $7 WHERE id = $8 AND status <> 'revoked'",
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
            let exists = sqlx::query("SELECT 1 FROM api_keys WHERE id = $1")
                .bind(what)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
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
        // Rows are locked in key-id order, so two nodes flushing overlapping batches at once wait
        // for each other instead of deadlocking. The sort is stable: deltas of one key keep their
        // order, and with it the rule that of two equal times the later delta's address wins.
        let mut batch = deltas
            .iter()
            .map(|d| Ok((d, to_db_time(d.last_used_at, d.key_id.as_str())?)))
            .collect::<StoreResult<Vec<_>>>()?;
        batch.sort_by(|(a, _), (b, _)| a.key_id.as_str().cmp(b.key_id.as_str()));
        let mut tx = self.begin().await?;
        for (d, at) in batch {
            // Counts saturate rather than overflow: PostgreSQL would fail the whole batch with
            // "bigint out of range".
            sqlx::query(
                "UPDATE api_keys SET \
                   use_count = CASE WHEN use_count > 9223372036854775807 - $1 THEN 9223372036854775807 \
                                    ELSE use_count + $1 END, \
                   last_used_ip = CASE WHEN last_used_at IS NULL OR last_used_at <= $2 THEN $3 ELSE last_used_ip END, \
                   last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at <= $2 THEN $2 ELSE last_used_at END \
                 WHERE id = $4",
            )
            .bind(usage_count(d.count))
            .bind(at)
            .bind(&d.last_used_ip)
            .bind(d.key_id.as_str())
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
                sqlx::QueryBuilder::<sqlx::Postgres>::new("INSERT INTO exchange_journal (seq, at, command) ");
            insert.push_values(chunk, |mut row, (seq, at, command)| {
                row.push_bind(*seq).push_bind(*at).push_bind(command.as_slice());
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn journal_after(&self, after: i64, limit: u32) -> StoreResult<Vec<JournalEntry>> {
        let rows = sqlx::query("SELECT seq, at, command FROM exchange_journal WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(journal_from_row).collect()
    }

    async fn save_snapshot(&self, seq: i64, state: &[u8]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO exchange_snapshots (seq, state) VALUES ($1, $2) ON CONFLICT (seq) DO UPDATE SET state = excluded.state")
            .bind(seq)
            .bind(state)
            .execute(&mut *tx)
            .await?;
        // Older snapshots are never read again.
        sqlx::query("DELETE FROM exchange_snapshots WHERE seq < $1").bind(seq).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_snapshot(&self) -> StoreResult<Option<(i64, Vec<u8>)>> {
        let row = sqlx::query("SELECT seq, state FROM exchange_snapshots ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
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
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id_hash = $1");
        let row = sqlx::query(&sql).bind(id_hash.as_slice()).fetch_optional(&self.pool).await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn touch_session(&self, id_hash: &[u8; 32], last_seen_at: UnixMillis) -> StoreResult<()> {
        let at = to_db_time(last_seen_at, "session")?;
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2 AND last_seen_at < $1")
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
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(old.as_slice()).execute(&mut *tx).await?;
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
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash.as_slice()).execute(&mut *tx).await?;
        let existed = gone.rows_affected() > 0;
        if existed && let Some(audit) = audit {
            append(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(existed)
    }

    async fn purge_sessions(&self, idle_before: UnixMillis, created_before: UnixMillis) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let gone = sqlx::query("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
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
        sqlx::query("DELETE FROM sessions WHERE account_id = $1").bind(account.id.0).execute(&mut *tx).await?;
        if let Some(s) = new_session {
            insert_session_row(&mut tx, s).await?;
        }
        append(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn two_factor(&self, account: AccountId) -> StoreResult<Option<TwoFactorRecord>> {
        let sql = format!("SELECT {TWO_FACTOR_COLUMNS} FROM two_factor WHERE account_id = $1");
        let row = sqlx::query(&sql).bind(account.0).fetch_optional(&self.pool).await?;
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
             confirmed_at, last_step, failures, failure_window_start) VALUES ($1, $2, $3, 0, $4, NULL, NULL, 0, NULL) \
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
            "UPDATE two_factor SET enabled = 1, confirmed_at = $1, last_step = $2, failures = 0, \
             failure_window_start = NULL WHERE account_id = $3 AND enabled = 0",
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
            sqlx::query(
                "UPDATE accounts SET withdrawals_held_until = GREATEST(COALESCE(withdrawals_held_until, 0), $1) \
                 WHERE id = $2",
            )
            .bind(until)
            .bind(account.0)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1").bind(account.0).execute(&mut *tx).await?;
        for h in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (account_id, code_hash, used_at) VALUES ($1, $2, NULL)")
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
        let done = sqlx::query("UPDATE accounts SET withdrawals_locked_until = $1 WHERE id = $2")
            .bind(until)
            .bind(account.0)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("account {account}")));
        }
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1").bind(account.0).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM two_factor WHERE account_id = $1").bind(account.0).execute(&mut *tx).await?;
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
            "UPDATE two_factor SET last_step = $1, failures = 0, failure_window_start = NULL \
             WHERE account_id = $2 AND (last_step IS NULL OR last_step < $1)",
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
            sqlx::query("UPDATE two_factor SET failures = $1, failure_window_start = $2 WHERE account_id = $3")
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
            sqlx::query("UPDATE two_factor SET failures = $1, failure_window_start = $2 WHERE account_id = $3")
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
             WHERE account_id = $1 AND failures > 0 AND failure_window_start = $2",
        )
        .bind(account.0)
        .bind(start)
        .execute(&self.pool)
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
            "UPDATE recovery_codes SET used_at = $1 WHERE account_id = $2 AND code_hash = $3 AND used_at IS NULL",
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
        let enabled = sqlx::query("SELECT 1 FROM two_factor WHERE account_id = $1 AND enabled = 1")
            .bind(account.0)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !enabled {
            return Err(StoreError::Conflict(format!(
                "two-factor authentication is not enabled for account {account}"
            )));
        }
        sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1").bind(account.0).execute(&mut *tx).await?;
        for h in recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (account_id, code_hash, used_at) VALUES ($1, $2, NULL)")
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
            sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL")
                .bind(account.0)
                .fetch_one(&self.pool)
                .await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn close(&self) {
        PgStore::close(self).await;
    }
}

#[cfg(test)]
mod tests {
    //! What only PostgreSQL has: several nodes on one database, server-side settings, the
    //! append-only trigger. Each test skips, like the conformance suite, when
    //! `KEYGATE_TEST_POSTGRES_URL` is not set.

    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;
    use crate::audit::verify_chain;
    use crate::conformance::{Harness as _, PgHarness, TEST_MASTER_KEY, TestEntropy, run_or_skip};
    use crate::crypto::MasterKey;
    use crate::records::KeyMaterial;
    use keygate_auth::{HmacSecret, KeyStatus, Permissions, Restrictions};
    use keygate_proto::UnixMillis;

    fn draft(action: &str, account: Option<AccountId>) -> AuditDraft {
        AuditDraft {
            at: UnixMillis(1),
            actor: "operator:test".into(),
            action: action.into(),
            target: "t".into(),
            account_id: account,
            source: None,
            details: serde_json::json!({}),
        }
    }

    fn hmac_key(e: &mut TestEntropy, account: AccountId) -> KeyRecord {
        KeyRecord {
            id: ApiKeyId::generate(e).unwrap(),
            account_id: account,
            label: "bot".into(),
            material: KeyMaterial::Hmac(HmacSecret::generate(e).unwrap()),
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
        }
    }

    #[test]
    fn two_nodes_on_one_database_append_to_one_intact_chain() {
        run_or_skip::<PgHarness>("two_nodes_on_one_database_append_to_one_intact_chain", async {
            const PER_NODE: usize = 40;
            let h = PgHarness::fresh().await;
            // Two stores with pools of their own stand for two keygate processes.
            let nodes = [Arc::new(h.open_pg(TEST_MASTER_KEY).await), Arc::new(h.open_pg(TEST_MASTER_KEY).await)];
            let mut tasks = Vec::new();
            for (n, node) in nodes.iter().enumerate() {
                for i in 0..PER_NODE {
                    let node = Arc::clone(node);
                    tasks.push(tokio::spawn(async move {
                        if i % 4 == 0 {
                            let new = NewAccount {
                                name: format!("n{n}u{i}"),
                                password_hash: "h".into(),
                                created_at: UnixMillis(1),
                            };
                            node.create_account(new, draft("account.create", None)).await.map(|_| ())
                        } else {
                            node.append_audit(draft("login.failed", None)).await.map(|_| ())
                        }
                    }));
                }
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            let chain = nodes[0].audit_records(0, u32::MAX, None).await.unwrap();
            assert_eq!(chain.len(), 2 * PER_NODE);
            verify_chain([0; 32], 0, &chain).unwrap();
            assert_eq!(nodes[1].audit_records(0, u32::MAX, None).await.unwrap(), chain);
            for node in &nodes {
                node.close().await;
            }
        });
    }

    #[test]
    fn the_audit_log_refuses_updates_deletes_and_truncation() {
        run_or_skip::<PgHarness>("the_audit_log_refuses_updates_deletes_and_truncation", async {
            let h = PgHarness::fresh().await;
            let store = h.open_pg(TEST_MASTER_KEY).await;
            store.append_audit(draft("login.failed", None)).await.unwrap();
            for sql in ["UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"] {
                let err = sqlx::query(sql).execute(&store.pool).await.unwrap_err();
                assert!(err.to_string().contains("append-only"), "{sql}: {err}");
            }
            assert_eq!(store.audit_records(0, 10, None).await.unwrap().len(), 1);
            store.close().await;
        });
    }

    #[test]
    fn sessions_carry_the_lock_timeout_the_sync_mode_and_a_name() {
        run_or_skip::<PgHarness>("sessions_carry_the_lock_timeout_the_sync_mode_and_a_name", async {
            let h = PgHarness::fresh().await;
            for (mode, want) in [(SyncMode::Normal, None), (SyncMode::Full, Some("on"))] {
                let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([3; 32]), vec![]));
                let store = PgStore::open_with(h.options(), cipher, mode).await.unwrap();
                let setting = async |name: &str| -> String {
                    sqlx::query_scalar("SELECT current_setting($1)").bind(name).fetch_one(&store.pool).await.unwrap()
                };
                assert_eq!(setting("lock_timeout").await, LOCK_TIMEOUT);
                assert_eq!(setting("application_name").await, "keygate");
                if let Some(want) = want {
                    assert_eq!(setting("synchronous_commit").await, want, "{mode:?}");
                }
                store.close().await;
            }
            // A lock_timeout in the URL's options wins over keygate's default.
            let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([3; 32]), vec![]));
            let options = h.options().options([("lock_timeout", "7s")]);
            let store = PgStore::open_with(options, cipher, SyncMode::Normal).await.unwrap();
            let got: String =
                sqlx::query_scalar("SELECT current_setting('lock_timeout')").fetch_one(&store.pool).await.unwrap();
            assert_eq!(got, "7s");
            store.close().await;
        });
    }

    #[test]
    fn debug_output_and_errors_name_the_server_but_not_the_password_or_master_key() {
        run_or_skip::<PgHarness>("debug_output_and_errors_name_the_server_but_not_the_password_or_master_key", async {
            let h = PgHarness::fresh().await;
            let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([3; 32]), vec![]));
            // The test server trusts its clients, so any password connects.
            let store = PgStore::open_with(h.options().password("hunter2"), Arc::clone(&cipher), SyncMode::Normal)
                .await
                .unwrap();
            let text = format!("{store:?}");
            assert!(text.contains(h.database()) && text.contains(cipher.current_id()), "{text}");
            assert!(!text.contains("hunter2") && !text.contains(&hex::encode([3u8; 32])), "{text}");
            assert_eq!(store.target(), describe(&h.options()));
            store.close().await;

            let missing = h.options().database(&format!("{}_missing", h.database())).password("hunter2");
            let err = PgStore::open_with(missing, cipher, SyncMode::Normal).await.unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, StoreError::Setup(_)), "{err:?}");
            assert!(text.contains("_missing") && !text.contains("hunter2"), "{text}");
        });
    }

    #[test]
    fn a_closed_store_fails_rather_than_reconnecting() {
        run_or_skip::<PgHarness>("a_closed_store_fails_rather_than_reconnecting", async {
            let h = PgHarness::fresh().await;
            let store = h.open().await;
            let mut e = TestEntropy::new(1);
            let acc = store
                .create_account(
                    NewAccount { name: "a".into(), password_hash: "h".into(), created_at: UnixMillis(1) },
                    draft("account.create", None),
                )
                .await
                .unwrap();
            store.insert_key(&hmac_key(&mut e, acc.id), draft("key.create", Some(acc.id))).await.unwrap();
            store.close().await;
            assert!(store.list_accounts().await.is_err());
            assert!(store.append_audit(draft("login.failed", None)).await.is_err());
        });
    }
}
