//! The API keys aggregate: material (HMAC secrets sealed), permissions, restrictions, holds,
//! status and usage.

use crate::audit_log::append;
use crate::dialect::Dialect;
use crate::records::{AuditDraft, Change, KeyMaterial, KeyRecord, UsageDelta};
use crate::rows::{
    EncodedKey, KEY_COLUMNS, holds_text, key_from_row, name_violation, restrictions_text, to_db_time, usage_count,
};
use crate::sql::{SqlDb, SqlStore, stmt};
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use keygate_auth::{AccountId, ApiKeyId};

/// API keys, each change with its audit record.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Inserts a new key; [`StoreError::Conflict`] if the id exists, [`StoreError::NotFound`] if
    /// the account does not.
    async fn insert_key(&self, key: &KeyRecord, audit: AuditDraft) -> StoreResult<()>;

    /// The key with `id`, secret decrypted, if any.
    async fn get_key(&self, id: &ApiKeyId) -> StoreResult<Option<KeyRecord>>;

    /// Keys of one account, or of all accounts when `account` is `None`, by creation time.
    async fn list_keys(&self, account: Option<AccountId>) -> StoreResult<Vec<KeyRecord>>;

    /// Up to `limit` keys of all accounts with ids after `after` (from the first when `None`),
    /// ordered by id in the database's own text order, secrets decrypted. Passing the last id of
    /// one page as `after` gives the next; an empty page is the end. Lets a caller read every key
    /// with bounded memory (the service's key-cache warm-up at start) instead of all at once:
    /// reading 1,000,000 keys in one `list_keys(None)` held 3.9 GB at its peak. Each page is one
    /// indexed range read (the primary key), so the whole walk costs about one full listing.
    async fn list_keys_page(&self, after: Option<&ApiKeyId>, limit: u32) -> StoreResult<Vec<KeyRecord>>;

    /// Replaces a key's mutable fields (label, permissions, restrictions, withdrawal holds,
    /// status, updated_*); its id, account, type, material and creation fields never change. A
    /// revoked key is never updated again: [`StoreError::Conflict`], even for a writer that read
    /// it before the revocation (the guard is in the statement, so it holds across processes and
    /// nodes).
    async fn update_key(&self, key: &KeyRecord, audit: AuditDraft) -> StoreResult<()>;

    /// [`KeyStore::update_key`] only if the stored key's mutable fields are still those of
    /// `expected` (the record the caller read and changed): a compare-and-swap, so that two
    /// nodes editing one key at once cannot silently undo each other's change (each node
    /// serialises only its own writes). [`StoreError::Stale`] when the key changed meanwhile
    /// (read again and retry); otherwise as [`KeyStore::update_key`].
    async fn update_key_if(&self, key: &KeyRecord, expected: &KeyRecord, audit: AuditDraft) -> StoreResult<()>;

    /// Adds usage counters and moves last-used time and address forward; unknown keys are
    /// skipped. Not audited: usage is bookkeeping, not a change.
    async fn record_usage(&self, deltas: &[UsageDelta]) -> StoreResult<()>;
}

#[async_trait]
impl<D: Dialect> KeyStore for SqlStore<D> {
    async fn insert_key(&self, key: &KeyRecord, audit: AuditDraft) -> StoreResult<()> {
        let what = key.id.as_str();
        let enc = EncodedKey::new(&self.cipher, key)?;
        let mut tx = self.begin().await?;
        D::Db::run(
            &mut tx,
            stmt(
                "INSERT INTO api_keys (id, account_id, label, key_type, public_key_pem, secret_ciphertext, \
                 secret_master_key_id, permissions, restrictions, status, created_at, created_by, updated_at, \
                 updated_by, last_used_at, last_used_ip, use_count, withdrawal_holds, status_reason, app_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
            )
            .arg(what)
            .arg(key.account_id.0)
            .arg(&key.label)
            .arg(key.material.key_type().as_str())
            .arg(enc.pem)
            .arg(enc.sealed.as_ref().map(|s| s.bytes.as_slice()))
            .arg(enc.sealed.as_ref().map(|s| s.master_key_id.as_str()))
            .arg(&enc.permissions)
            .arg(&enc.restrictions)
            .arg(key.status.as_str())
            .arg(enc.created_at)
            .arg(&key.created_by)
            .arg(enc.updated_at)
            .arg(&key.updated_by)
            .arg(enc.last_used_at)
            .arg(key.last_used_ip.as_deref())
            .arg(enc.use_count)
            .arg(&enc.holds)
            .arg(key.status_reason.as_deref())
            .arg(key.app_id.as_deref()),
        )
        .await
        .map_err(|e| name_violation(e, &format_args!("API key {what}"), &format_args!("account {}", key.account_id)))?;
        if let KeyMaterial::Hmac(secret) = &key.material {
            // Looked up when a scanner reports the secret leaked (issue #17).
            let digest = crate::events::secret_digest(secret.expose());
            D::Db::run(
                &mut tx,
                stmt("UPDATE api_keys SET secret_sha256 = $1 WHERE id = $2").arg(&digest[..]).arg(what),
            )
            .await?;
        }
        append::<D>(&mut tx, audit, Some(key_change(key))).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_key(&self, id: &ApiKeyId) -> StoreResult<Option<KeyRecord>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1");
        self.read_optional(stmt(sql).arg(id.as_str())).await?.map(|r| key_from_row(&self.cipher, &r)).transpose()
    }

    async fn list_keys(&self, account: Option<AccountId>) -> StoreResult<Vec<KeyRecord>> {
        // The insertion order breaks ties between keys created in the same millisecond.
        let order = D::INSERTION_ORDER;
        let rows = match account {
            Some(a) => {
                let sql =
                    format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, {order}");
                self.read_all(stmt(sql).arg(a.0)).await?
            }
            None => {
                self.read_all(stmt(format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, {order}"))).await?
            }
        };
        rows.iter().map(|r| key_from_row(&self.cipher, r)).collect()
    }

    async fn list_keys_page(&self, after: Option<&ApiKeyId>, limit: u32) -> StoreResult<Vec<KeyRecord>> {
        // The primary key's index serves both the range and the order: no sort, no full scan.
        let rows = match after {
            Some(id) => {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id > $1 ORDER BY id LIMIT $2");
                self.read_all(stmt(sql).arg(id.as_str()).arg(i64::from(limit))).await?
            }
            None => {
                let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id LIMIT $1");
                self.read_all(stmt(sql).arg(i64::from(limit))).await?
            }
        };
        rows.iter().map(|r| key_from_row(&self.cipher, r)).collect()
    }

    async fn update_key(&self, key: &KeyRecord, audit: AuditDraft) -> StoreResult<()> {
        self.write_key(key, None, audit).await
    }

    async fn update_key_if(&self, key: &KeyRecord, expected: &KeyRecord, audit: AuditDraft) -> StoreResult<()> {
        self.write_key(key, Some(expected), audit).await
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
            // Counts saturate rather than overflow: SQLite would silently turn an overflowing
            // integer into a float, PostgreSQL fail the whole batch with "bigint out of range".
            D::Db::run(
                &mut tx,
                stmt(
                    "UPDATE api_keys SET \
                       use_count = CASE WHEN use_count > 9223372036854775807 - $1 THEN 9223372036854775807 \
                                        ELSE use_count + $1 END, \
                       last_used_ip = CASE WHEN last_used_at IS NULL OR last_used_at <= $2 THEN $3 \
                                           ELSE last_used_ip END, \
                       last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at <= $2 THEN $2 \
                                           ELSE last_used_at END \
                     WHERE id = $4",
                )
                .arg(usage_count(d.count))
                .arg(at)
                .arg(&d.last_used_ip)
                .arg(d.key_id.as_str()),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Replaces a key's mutable fields, unless it is revoked, and, with `expected`, unless they
    /// are no longer `expected`'s.
    async fn write_key(&self, key: &KeyRecord, expected: Option<&KeyRecord>, audit: AuditDraft) -> StoreResult<()> {
        let what = key.id.as_str();
        let permissions = key.permissions.to_string();
        let restrictions = restrictions_text(key)?;
        let holds = holds_text(key)?;
        let updated_at = to_db_time(key.updated_at, what)?;
        let guard = expected
            .map(|e| {
                Ok::<_, StoreError>((
                    e.permissions.to_string(),
                    restrictions_text(e)?,
                    holds_text(e)?,
                    to_db_time(e.updated_at, what)?,
                ))
            })
            .transpose()?;
        let mut sql = String::from(
            "UPDATE api_keys SET label = $1, permissions = $2, restrictions = $3, withdrawal_holds = $4, \
             status = $5, updated_at = $6, updated_by = $7, status_reason = $8 WHERE id = $9 AND status <> 'revoked'",
        );
        if guard.is_some() {
            sql.push_str(
                " AND label = $10 AND permissions = $11 AND restrictions = $12 AND withdrawal_holds = $13 \
                 AND status = $14 AND updated_at = $15",
            );
        }
        let mut update = stmt(sql)
            .arg(&key.label)
            .arg(&permissions)
            .arg(&restrictions)
            .arg(&holds)
            .arg(key.status.as_str())
            .arg(updated_at)
            .arg(&key.updated_by)
            .arg(key.status_reason.as_deref().filter(|_| key.status != keygate_auth::KeyStatus::Active))
            .arg(what);
        if let (Some(e), Some((p, r, h, at))) = (expected, &guard) {
            update = update.arg(&e.label).arg(p).arg(r).arg(h).arg(e.status.as_str()).arg(*at);
        }
        let mut tx = self.begin().await?;
        let done = D::Db::run(&mut tx, update).await?;
        if done == 0 {
            // Tell "revoked" (never changes again, whatever a concurrent writer read before the
            // revocation committed) apart from "missing" and from "changed meanwhile".
            let row = D::Db::optional(&mut tx, stmt("SELECT status FROM api_keys WHERE id = $1").arg(what)).await?;
            let status: Option<String> = row.map(|r| crate::rows::Columns::get(&r, "status", what)).transpose()?;
            return Err(match status.as_deref() {
                None => StoreError::NotFound(format!("API key {what}")),
                Some("revoked") => {
                    StoreError::Conflict(format!("API key {what} is revoked; revoked keys never change"))
                }
                Some(_) => StoreError::Stale(format!("API key {what}")),
            });
        }
        append::<D>(&mut tx, audit, Some(key_change(key))).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The change record of a change to `key`.
fn key_change(key: &KeyRecord) -> Change {
    Change::Key { account: key.account_id, key: key.id.clone() }
}
