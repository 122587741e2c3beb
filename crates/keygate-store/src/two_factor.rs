//! The second-factor aggregate: TOTP seeds (sealed), the last accepted step, the failure
//! counter, and recovery codes (hashed).

use crate::audit_log::{append, commit_if_applied};
use crate::crypto::totp_seed_aad;
use crate::dialect::Dialect;
use crate::records::{AuditDraft, Change, TotpAttempt, TotpCounter, TwoFactorRecord};
use crate::rows::{
    Columns as _, TWO_FACTOR_COLUMNS, from_db_time, name_violation, next_failure_window, reserve_failure_window,
    to_db_time, to_db_u64, two_factor_from_row,
};
use crate::sql::{SqlDb, SqlStore, count_u32, found, stmt};
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use keygate_auth::AccountId;
use keygate_proto::UnixMillis;
use sqlx::Database;

/// TOTP second factors and recovery codes, each change with its audit record.
#[async_trait]
pub trait TwoFactorStore: Send + Sync {
    /// The account's TOTP state (seed decrypted), if any.
    async fn two_factor(&self, account: AccountId) -> StoreResult<Option<TwoFactorRecord>>;

    /// Starts (or restarts) enrollment with a new seed, not yet enabled.
    /// [`StoreError::Conflict`] if 2FA is already enabled for the account.
    async fn begin_two_factor(
        &self,
        account: AccountId,
        seed: &[u8],
        at: UnixMillis,
        audit: AuditDraft,
    ) -> StoreResult<()>;

    /// Confirms a pending enrollment: enables 2FA, records `step` as used, replaces the
    /// account's recovery codes by `recovery_hashes` and, when `withdrawals_held_until` is given,
    /// moves the account's withdrawal hold to it (never earlier: the later of the two stays).
    /// [`StoreError::Conflict`] if there is no pending enrollment.
    async fn enable_two_factor(
        &self,
        account: AccountId,
        step: u64,
        recovery_hashes: &[[u8; 32]],
        at: UnixMillis,
        withdrawals_held_until: Option<UnixMillis>,
        audit: AuditDraft,
    ) -> StoreResult<()>;

    /// Removes the account's 2FA and recovery codes and sets its withdrawal lock.
    /// [`StoreError::NotFound`] if the account does not exist.
    async fn disable_two_factor(
        &self,
        account: AccountId,
        withdrawals_locked_until: Option<UnixMillis>,
        audit: AuditDraft,
    ) -> StoreResult<()>;

    /// Records `step` as the last accepted TOTP step and clears the failure counter, if and only
    /// if it is later than the last accepted one (atomically: two nodes cannot both accept one
    /// code). Returns whether it was accepted.
    async fn accept_totp_step(&self, account: AccountId, step: u64, audit: Option<AuditDraft>) -> StoreResult<bool>;

    /// Counts a failed code: a new window starts at `at` when the last began `window_ms` or more
    /// earlier. Returns the failures in the window and its start. Audited with `audit`.
    async fn record_totp_failure(
        &self,
        account: AccountId,
        at: UnixMillis,
        window_ms: u64,
        audit: AuditDraft,
    ) -> StoreResult<(u32, UnixMillis)>;

    /// Reserves one code check for `account` at `at`, atomically (one locked read-modify-write,
    /// so concurrent requests, on any node, cannot all read a count below the limit): when the
    /// window that began `window_ms` or more ago is over, a new one starts at `at`; when the
    /// window holds `limit` attempts or more, the attempt is [`TotpAttempt::Refused`] (the first
    /// refusal is counted once, so later ones write nothing); otherwise it is counted and
    /// [`TotpAttempt::Reserved`]. [`StoreError::NotFound`] if the account has no 2FA row.
    /// `counter` chooses which of the account's two counters the attempt counts against.
    async fn reserve_totp_attempt(
        &self,
        account: AccountId,
        counter: TotpCounter,
        at: UnixMillis,
        window_ms: u64,
        limit: u32,
    ) -> StoreResult<TotpAttempt>;

    /// Gives back one attempt reserved by [`TwoFactorStore::reserve_totp_attempt`] on `counter`
    /// in the window starting at `window_start` (the code was good); nothing if the window has
    /// changed since.
    async fn release_totp_attempt(
        &self,
        account: AccountId,
        counter: TotpCounter,
        window_start: UnixMillis,
    ) -> StoreResult<()>;

    /// Marks the unused recovery code with hash `code_hash` as used at `at`; false if there is
    /// no such unused code (atomically: a code works once).
    async fn use_recovery_code(
        &self,
        account: AccountId,
        code_hash: &[u8; 32],
        at: UnixMillis,
        audit: Option<AuditDraft>,
    ) -> StoreResult<bool>;

    /// Replaces all recovery codes of an account whose 2FA is enabled by `recovery_hashes`
    /// (used or not, the old ones stop working). [`StoreError::Conflict`] if 2FA is not enabled.
    async fn replace_recovery_codes(
        &self,
        account: AccountId,
        recovery_hashes: &[[u8; 32]],
        audit: AuditDraft,
    ) -> StoreResult<()>;

    /// Unused recovery codes of the account.
    async fn recovery_codes_left(&self, account: AccountId) -> StoreResult<u32>;
}

/// What the failure counter is called in messages.
const COUNTER: &str = "two-factor failure counter";

/// Replaces the account's recovery codes inside the caller's transaction.
async fn put_recovery_codes<D: Dialect>(
    conn: &mut <D::Db as Database>::Connection,
    account: AccountId,
    recovery_hashes: &[[u8; 32]],
) -> StoreResult<()> {
    D::Db::run(conn, stmt("DELETE FROM recovery_codes WHERE account_id = $1").arg(account.0)).await?;
    for h in recovery_hashes {
        D::Db::run(
            conn,
            stmt("INSERT INTO recovery_codes (account_id, code_hash, used_at) VALUES ($1, $2, NULL)")
                .arg(account.0)
                .arg(h.as_slice()),
        )
        .await?;
    }
    Ok(())
}

/// Reads the account's failure counter inside the caller's transaction, locking its row where
/// the backend needs it; `None` when the account has no 2FA row.
async fn lock_failure_counter<D: Dialect>(
    conn: &mut <D::Db as Database>::Connection,
    account: AccountId,
    counter: TotpCounter,
) -> StoreResult<Option<(u32, Option<UnixMillis>)>> {
    let (failures, start) = counter.columns();
    let sql = format!(
        "SELECT {failures} AS failures, {start} AS window_start FROM two_factor WHERE account_id = $1{}",
        D::FOR_UPDATE
    );
    let Some(row) = D::Db::optional(conn, stmt(sql).arg(account.0)).await? else {
        return Ok(None);
    };
    let failures = count_u32(row.get("failures", COUNTER)?);
    let start = row.get::<Option<i64>>("window_start", COUNTER)?.map(|t| from_db_time(t, COUNTER)).transpose()?;
    Ok(Some((failures, start)))
}

/// Writes the account's failure counter inside the caller's transaction.
async fn write_failure_counter<D: Dialect>(
    conn: &mut <D::Db as Database>::Connection,
    account: AccountId,
    counter: TotpCounter,
    failures: u32,
    start: UnixMillis,
) -> StoreResult<()> {
    let (failures_col, start_col) = counter.columns();
    D::Db::run(
        conn,
        stmt(format!("UPDATE two_factor SET {failures_col} = $1, {start_col} = $2 WHERE account_id = $3"))
            .arg(i64::from(failures))
            .arg(to_db_time(start, COUNTER)?)
            .arg(account.0),
    )
    .await?;
    Ok(())
}

#[async_trait]
impl<D: Dialect> TwoFactorStore for SqlStore<D> {
    async fn two_factor(&self, account: AccountId) -> StoreResult<Option<TwoFactorRecord>> {
        let sql = format!("SELECT {TWO_FACTOR_COLUMNS} FROM two_factor WHERE account_id = $1");
        self.read_optional(stmt(sql).arg(account.0)).await?.map(|r| two_factor_from_row(&self.cipher, &r)).transpose()
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
        let done = D::Db::run(
            &mut tx,
            stmt(
                "INSERT INTO two_factor (account_id, seed_ciphertext, seed_master_key_id, enabled, created_at, \
                 confirmed_at, last_step, failures, failure_window_start) \
                 VALUES ($1, $2, $3, 0, $4, NULL, NULL, 0, NULL) \
                 ON CONFLICT (account_id) DO UPDATE SET seed_ciphertext = excluded.seed_ciphertext, \
                 seed_master_key_id = excluded.seed_master_key_id, created_at = excluded.created_at, \
                 last_step = NULL WHERE two_factor.enabled = 0",
            )
            .arg(account.0)
            .arg(sealed.bytes.as_slice())
            .arg(sealed.master_key_id.as_str())
            .arg(at),
        )
        .await
        .map_err(|e| name_violation(e, &"two-factor state", &format_args!("account {account}")))?;
        if done == 0 {
            return Err(StoreError::Conflict(format!(
                "two-factor authentication is already enabled for account {account}"
            )));
        }
        append::<D>(&mut tx, audit, Some(Change::TwoFactor(account))).await?;
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
        let done = D::Db::run(
            &mut tx,
            stmt(
                "UPDATE two_factor SET enabled = 1, confirmed_at = $1, last_step = $2, failures = 0, \
                 failure_window_start = NULL WHERE account_id = $3 AND enabled = 0",
            )
            .arg(at)
            .arg(step)
            .arg(account.0),
        )
        .await?;
        if done == 0 {
            return Err(StoreError::Conflict(format!("no pending two-factor enrollment for account {account}")));
        }
        if let Some(until) = held_until {
            // Moves the hold to `until`, never earlier.
            D::Db::run(
                &mut tx,
                stmt(
                    "UPDATE accounts SET withdrawals_held_until = CASE WHEN withdrawals_held_until IS NULL \
                     OR withdrawals_held_until < $1 THEN $1 ELSE withdrawals_held_until END WHERE id = $2",
                )
                .arg(until)
                .arg(account.0),
            )
            .await?;
        }
        put_recovery_codes::<D>(&mut tx, account, recovery_hashes).await?;
        append::<D>(&mut tx, audit, Some(Change::TwoFactor(account))).await?;
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
        let done = D::Db::run(
            &mut tx,
            stmt("UPDATE accounts SET withdrawals_locked_until = $1 WHERE id = $2").arg(until).arg(account.0),
        )
        .await?;
        found(done, || format!("account {account}"))?;
        put_recovery_codes::<D>(&mut tx, account, &[]).await?;
        D::Db::run(&mut tx, stmt("DELETE FROM two_factor WHERE account_id = $1").arg(account.0)).await?;
        append::<D>(&mut tx, audit, Some(Change::TwoFactor(account))).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn accept_totp_step(&self, account: AccountId, step: u64, audit: Option<AuditDraft>) -> StoreResult<bool> {
        let step = to_db_u64(step, "TOTP step")?;
        let mut tx = self.begin().await?;
        // The guard is in the statement: two nodes accepting the same code at once cannot both
        // see their update applied.
        let done = D::Db::run(
            &mut tx,
            stmt(
                "UPDATE two_factor SET last_step = $1, failures = 0, failure_window_start = NULL \
                 WHERE account_id = $2 AND (last_step IS NULL OR last_step < $1)",
            )
            .arg(step)
            .arg(account.0),
        )
        .await?;
        commit_if_applied::<D>(tx, done > 0, audit, None).await
    }

    async fn record_totp_failure(
        &self,
        account: AccountId,
        at: UnixMillis,
        window_ms: u64,
        audit: AuditDraft,
    ) -> StoreResult<(u32, UnixMillis)> {
        let mut tx = self.begin().await?;
        let current = lock_failure_counter::<D>(&mut tx, account, TotpCounter::Established).await?;
        let (failures, start) = next_failure_window(current, at, window_ms);
        if current.is_some() {
            write_failure_counter::<D>(&mut tx, account, TotpCounter::Established, failures, start).await?;
        }
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok((failures, start))
    }

    async fn reserve_totp_attempt(
        &self,
        account: AccountId,
        counter: TotpCounter,
        at: UnixMillis,
        window_ms: u64,
        limit: u32,
    ) -> StoreResult<TotpAttempt> {
        let mut tx = self.begin().await?;
        let current = lock_failure_counter::<D>(&mut tx, account, counter)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("two-factor state of account #{account}")))?;
        let (write, outcome) = reserve_failure_window(current, at, window_ms, limit);
        if let Some((failures, start)) = write {
            write_failure_counter::<D>(&mut tx, account, counter, failures, start).await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn release_totp_attempt(
        &self,
        account: AccountId,
        counter: TotpCounter,
        window_start: UnixMillis,
    ) -> StoreResult<()> {
        let start = to_db_time(window_start, COUNTER)?;
        let (failures, start_col) = counter.columns();
        self.write_one(
            stmt(format!(
                "UPDATE two_factor SET {failures} = {failures} - 1 \
                 WHERE account_id = $1 AND {failures} > 0 AND {start_col} = $2"
            ))
            .arg(account.0)
            .arg(start),
        )
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
        let done = D::Db::run(
            &mut tx,
            stmt("UPDATE recovery_codes SET used_at = $1 WHERE account_id = $2 AND code_hash = $3 AND used_at IS NULL")
                .arg(at)
                .arg(account.0)
                .arg(code_hash.as_slice()),
        )
        .await?;
        commit_if_applied::<D>(tx, done > 0, audit, None).await
    }

    async fn replace_recovery_codes(
        &self,
        account: AccountId,
        recovery_hashes: &[[u8; 32]],
        audit: AuditDraft,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let enabled = D::Db::optional(
            &mut tx,
            stmt("SELECT 1 FROM two_factor WHERE account_id = $1 AND enabled = 1").arg(account.0),
        )
        .await?;
        if enabled.is_none() {
            return Err(StoreError::Conflict(format!(
                "two-factor authentication is not enabled for account {account}"
            )));
        }
        put_recovery_codes::<D>(&mut tx, account, recovery_hashes).await?;
        append::<D>(&mut tx, audit, Some(Change::TwoFactor(account))).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn recovery_codes_left(&self, account: AccountId) -> StoreResult<u32> {
        let row = self
            .read_optional(
                stmt("SELECT COUNT(*) AS n FROM recovery_codes WHERE account_id = $1 AND used_at IS NULL")
                    .arg(account.0),
            )
            .await?;
        Ok(row.map(|r| r.get::<i64>("n", "recovery code count")).transpose()?.map_or(0, count_u32))
    }
}
