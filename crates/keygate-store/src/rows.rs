//! Turning records into column values and rows back into records, once for every backend.
//!
//! The backends differ in SQL (placeholders, locking, id assignment) but not in what a column
//! holds: both schemas use the same column names and the same encodings (times as signed 64-bit
//! milliseconds, permissions as their list text, restrictions and audit details as JSON text,
//! HMAC secrets sealed). Keeping the encoding and decoding here means the two cannot drift: a row
//! one backend writes reads back identically in the other, and corrupt values are reported the
//! same way by both.

use crate::crypto::{Sealed, SecretCipher, secret_aad, totp_seed_aad};
use crate::records::{
    AccountRecord, AccountStatus, AuditDraft, AuditRecord, Change, ChangeRecord, JournalEntry, KeyMaterial, KeyRecord,
    SessionRecord, TwoFactorRecord,
};
use crate::{StoreError, StoreResult};
use keygate_auth::{AccountId, ApiKeyId, HmacSecret, KeyStatus, KeyType, Permissions, PublicKey, Restrictions};
use keygate_proto::UnixMillis;
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::fmt;
use zeroize::Zeroizing;

/// The columns of `api_keys` that [`key_from_row`] reads, in both schemas.
pub(crate) const KEY_COLUMNS: &str = "id, account_id, label, key_type, public_key_pem, secret_ciphertext, \
     secret_master_key_id, permissions, restrictions, status, created_at, created_by, updated_at, updated_by, \
     last_used_at, last_used_ip, use_count, withdrawal_holds, status_reason, app_id";
/// The columns of `accounts` that [`account_from_row`] reads.
pub(crate) const ACCOUNT_COLUMNS: &str =
    "id, name, password_hash, status, created_at, withdrawals_locked_until, withdrawals_held_until";
/// The columns of `sessions` that [`session_from_row`] reads.
pub(crate) const SESSION_COLUMNS: &str =
    "id_hash, account_id, created_at, last_seen_at, two_factor_pending, stepped_up_until, source";
/// The columns of `two_factor` that [`two_factor_from_row`] reads.
pub(crate) const TWO_FACTOR_COLUMNS: &str = "account_id, seed_ciphertext, seed_master_key_id, enabled, created_at, \
     confirmed_at, last_step, failures, failure_window_start";
/// The columns of `audit_log` that [`audit_from_row`] reads.
pub(crate) const AUDIT_COLUMNS: &str = "seq, at, actor, action, target, account_id, source, details, prev_hash, hash";

/// Typed column access on a row of any backend, reporting a missing column or a value of the
/// wrong type as corruption of `what` (the record being read) rather than as a database error.
pub trait Columns {
    /// A non-null value of column `name`.
    fn get<T: Stored>(&self, name: &str, what: &str) -> StoreResult<T>;
}

/// The Rust types the stores read from columns: text, 64-bit integers, bytes, and nullable ones.
pub trait Stored: Sized {
    /// Decodes column `name` of `row`.
    fn read<R: Row>(row: &R, name: &str) -> Result<Self, sqlx::Error>
    where
        for<'n> &'n str: ColumnIndex<R>,
        for<'r> String: Decode<'r, R::Database>,
        String: Type<R::Database>,
        for<'r> i64: Decode<'r, R::Database>,
        i64: Type<R::Database>,
        for<'r> Vec<u8>: Decode<'r, R::Database>,
        Vec<u8>: Type<R::Database>;
}

macro_rules! stored {
    ($($t:ty),+) => {
        $(
            impl Stored for $t {
                fn read<R: Row>(row: &R, name: &str) -> Result<Self, sqlx::Error>
                where
                    for<'n> &'n str: ColumnIndex<R>,
                    for<'r> String: Decode<'r, R::Database>,
                    String: Type<R::Database>,
                    for<'r> i64: Decode<'r, R::Database>,
                    i64: Type<R::Database>,
                    for<'r> Vec<u8>: Decode<'r, R::Database>,
                    Vec<u8>: Type<R::Database>,
                {
                    row.try_get(name)
                }
            }
        )+
    };
}
stored!(String, Option<String>, i64, Option<i64>, Vec<u8>, Option<Vec<u8>>);

impl<R: Row> Columns for R
where
    for<'n> &'n str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database>,
    String: Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database>,
    i64: Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database>,
    Vec<u8>: Type<R::Database>,
{
    fn get<T: Stored>(&self, name: &str, what: &str) -> StoreResult<T> {
        T::read(self, name).map_err(|e| StoreError::Corrupt(format!("{what}: column {name}: {e}")))
    }
}

/// A key's column values, ready to bind; computed before a transaction starts so a value that
/// cannot be stored is refused without touching the database.
pub(crate) struct EncodedKey<'k> {
    /// The PEM public key, for Ed25519 and RSA keys.
    pub pem: Option<&'k str>,
    /// The sealed secret, for HMAC keys.
    pub sealed: Option<Sealed>,
    /// The permission list text.
    pub permissions: String,
    /// The restrictions as JSON text.
    pub restrictions: String,
    /// The withdrawal holds as JSON text.
    pub holds: String,
    /// Creation time.
    pub created_at: i64,
    /// Last change time.
    pub updated_at: i64,
    /// Last use time.
    pub last_used_at: Option<i64>,
    /// Verified requests so far.
    pub use_count: i64,
}

impl<'k> EncodedKey<'k> {
    /// Encodes `key`, sealing an HMAC secret with `cipher` bound to the key id and account.
    pub(crate) fn new(cipher: &SecretCipher, key: &'k KeyRecord) -> StoreResult<Self> {
        let what = key.id.as_str();
        let (pem, sealed) = match &key.material {
            KeyMaterial::Hmac(secret) => {
                let sealed = cipher.seal(secret.expose().as_bytes(), &secret_aad(what, key.account_id.0))?;
                (None, Some(sealed))
            }
            KeyMaterial::Public(public) => (Some(public.pem()), None),
        };
        Ok(Self {
            pem,
            sealed,
            permissions: key.permissions.to_string(),
            restrictions: restrictions_text(key)?,
            holds: holds_text(key)?,
            created_at: to_db_time(key.created_at, what)?,
            updated_at: to_db_time(key.updated_at, what)?,
            last_used_at: key.last_used_at.map(|t| to_db_time(t, what)).transpose()?,
            use_count: i64::try_from(key.use_count)
                .map_err(|_| corrupt_key(what, &"use count beyond the storable range"))?,
        })
    }
}

/// The restrictions of `key` as stored: JSON text.
pub(crate) fn restrictions_text(key: &KeyRecord) -> StoreResult<String> {
    serde_json::to_string(&key.restrictions).map_err(|e| corrupt_key(key.id.as_str(), &e))
}

/// The withdrawal holds of `key` as stored: JSON text.
pub(crate) fn holds_text(key: &KeyRecord) -> StoreResult<String> {
    serde_json::to_string(&key.withdrawal_holds).map_err(|e| corrupt_key(key.id.as_str(), &e))
}

/// Reads an `api_keys` row, opening an HMAC secret with `cipher`.
pub(crate) fn key_from_row(cipher: &SecretCipher, row: &impl Columns) -> StoreResult<KeyRecord> {
    let raw_id: String = row.get("id", "api key row")?;
    let id = ApiKeyId::parse(&raw_id).map_err(|e| corrupt_key(&raw_id, &e))?;
    let what = raw_id.as_str();
    let account_id = AccountId(row.get("account_id", what)?);
    let key_type = match row.get::<String>("key_type", what)?.as_str() {
        "hmac" => KeyType::Hmac,
        "ed25519" => KeyType::Ed25519,
        "rsa" => KeyType::Rsa,
        other => return Err(corrupt_key(what, &format_args!("unknown key type {other:?}"))),
    };
    let material = match key_type {
        KeyType::Hmac => {
            let bytes: Option<Vec<u8>> = row.get("secret_ciphertext", what)?;
            let master_key_id: Option<String> = row.get("secret_master_key_id", what)?;
            let (Some(bytes), Some(master_key_id)) = (bytes, master_key_id) else {
                return Err(corrupt_key(what, &"HMAC key without a sealed secret"));
            };
            let plain = cipher.open(&Sealed { master_key_id, bytes }, &secret_aad(what, account_id.0))?;
            let text = std::str::from_utf8(&plain).map_err(|_| corrupt_key(what, &"sealed secret is not text"))?;
            // The copy lives in a zeroizing wrapper until HmacSecret (zeroized on drop) takes
            // over its allocation; a rejected text is zeroized by HmacSecret's own drop.
            let mut text = Zeroizing::new(text.to_owned());
            let secret = HmacSecret::parse(std::mem::take(&mut *text)).map_err(|e| corrupt_key(what, &e))?;
            KeyMaterial::Hmac(secret)
        }
        KeyType::Ed25519 | KeyType::Rsa => {
            let pem: Option<String> = row.get("public_key_pem", what)?;
            let pem = pem.ok_or_else(|| corrupt_key(what, &"public key missing"))?;
            let key = PublicKey::from_stored(key_type, &pem).map_err(|e| corrupt_key(what, &e))?;
            KeyMaterial::Public(key)
        }
    };
    let permissions =
        Permissions::parse_list(&row.get::<String>("permissions", what)?).map_err(|e| corrupt_key(what, &e))?;
    let restrictions: Restrictions =
        serde_json::from_str(&row.get::<String>("restrictions", what)?).map_err(|e| corrupt_key(what, &e))?;
    let withdrawal_holds =
        serde_json::from_str(&row.get::<String>("withdrawal_holds", what)?).map_err(|e| corrupt_key(what, &e))?;
    let status = key_status(&row.get::<String>("status", what)?).ok_or_else(|| corrupt_key(what, &"unknown status"))?;
    let last_used_at = row.get::<Option<i64>>("last_used_at", what)?.map(|t| from_db_time(t, what)).transpose()?;
    let use_count = row.get::<i64>("use_count", what)?;
    let use_count = u64::try_from(use_count).map_err(|_| corrupt_key(what, &format_args!("use count {use_count}")))?;
    Ok(KeyRecord {
        id,
        account_id,
        label: row.get("label", what)?,
        material,
        permissions,
        restrictions,
        status,
        status_reason: row.get("status_reason", what)?,
        created_at: from_db_time(row.get("created_at", what)?, what)?,
        created_by: row.get("created_by", what)?,
        updated_at: from_db_time(row.get("updated_at", what)?, what)?,
        updated_by: row.get("updated_by", what)?,
        last_used_at,
        last_used_ip: row.get("last_used_ip", what)?,
        use_count,
        withdrawal_holds,
        app_id: row.get("app_id", what)?,
    })
}

/// Reads an `accounts` row.
pub(crate) fn account_from_row(row: &impl Columns) -> StoreResult<AccountRecord> {
    let id: i64 = row.get("id", "account row")?;
    let what = format!("account {id}");
    let status = match row.get::<String>("status", &what)?.as_str() {
        "active" => AccountStatus::Active,
        "disabled" => AccountStatus::Disabled,
        other => return Err(StoreError::Corrupt(format!("{what}: unknown status {other:?}"))),
    };
    Ok(AccountRecord {
        id: AccountId(id),
        name: row.get("name", &what)?,
        password_hash: row.get("password_hash", &what)?,
        status,
        created_at: from_db_time(row.get("created_at", &what)?, &what)?,
        withdrawals_locked_until: opt_time(row, "withdrawals_locked_until", &what)?,
        withdrawals_held_until: opt_time(row, "withdrawals_held_until", &what)?,
    })
}

fn opt_time(row: &impl Columns, name: &str, what: &str) -> StoreResult<Option<UnixMillis>> {
    row.get::<Option<i64>>(name, what)?.map(|t| from_db_time(t, what)).transpose()
}

fn flag(row: &impl Columns, name: &str, what: &str) -> StoreResult<bool> {
    match row.get::<i64>(name, what)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::Corrupt(format!("{what}: {name} is {other}, not 0 or 1"))),
    }
}

/// Reads a `sessions` row.
pub(crate) fn session_from_row(row: &impl Columns) -> StoreResult<SessionRecord> {
    const WHAT: &str = "session";
    Ok(SessionRecord {
        id_hash: hash32(row.get("id_hash", WHAT)?, WHAT)?,
        account_id: AccountId(row.get("account_id", WHAT)?),
        created_at: from_db_time(row.get("created_at", WHAT)?, WHAT)?,
        last_seen_at: from_db_time(row.get("last_seen_at", WHAT)?, WHAT)?,
        two_factor_pending: flag(row, "two_factor_pending", WHAT)?,
        stepped_up_until: opt_time(row, "stepped_up_until", WHAT)?,
        source: row.get("source", WHAT)?,
    })
}

/// Reads a `two_factor` row, opening the seed with `cipher` (bound to the account).
pub(crate) fn two_factor_from_row(cipher: &SecretCipher, row: &impl Columns) -> StoreResult<TwoFactorRecord> {
    let account: i64 = row.get("account_id", "two-factor row")?;
    let what = format!("two-factor state of account {account}");
    let sealed =
        Sealed { master_key_id: row.get("seed_master_key_id", &what)?, bytes: row.get("seed_ciphertext", &what)? };
    let seed = cipher.open(&sealed, &totp_seed_aad(account))?;
    let last_step = row
        .get::<Option<i64>>("last_step", &what)?
        .map(|s| u64::try_from(s).map_err(|_| StoreError::Corrupt(format!("{what}: negative step"))))
        .transpose()?;
    let failures = u32::try_from(row.get::<i64>("failures", &what)?)
        .map_err(|_| StoreError::Corrupt(format!("{what}: failure count out of range")))?;
    Ok(TwoFactorRecord {
        account_id: AccountId(account),
        seed,
        enabled: flag(row, "enabled", &what)?,
        created_at: from_db_time(row.get("created_at", &what)?, &what)?,
        confirmed_at: opt_time(row, "confirmed_at", &what)?,
        last_step,
        failures,
        failure_window_start: opt_time(row, "failure_window_start", &what)?,
    })
}

/// A time step or count as stored (signed 64-bit), refusing what does not fit.
pub(crate) fn to_db_u64(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what}: {v} is beyond the storable range")))
}

/// The next failure window after a failure at `at`: `(failures, window start)`.
pub(crate) fn next_failure_window(
    current: Option<(u32, Option<UnixMillis>)>,
    at: UnixMillis,
    window_ms: u64,
) -> (u32, UnixMillis) {
    match current {
        Some((n, Some(start))) if at.0 >= start.0 && at.0 - start.0 < window_ms => (n.saturating_add(1), start),
        _ => (1, at),
    }
}

/// The decision of a TOTP attempt reservation given the row's `(failures, window start)`:
/// the new `(failures, window start)` to write, if any, and the outcome.
pub(crate) fn reserve_failure_window(
    current: (u32, Option<UnixMillis>),
    at: UnixMillis,
    window_ms: u64,
    limit: u32,
) -> (Option<(u32, UnixMillis)>, crate::records::TotpAttempt) {
    use crate::records::TotpAttempt;
    match current {
        (n, Some(start)) if at.0 >= start.0 && at.0 - start.0 < window_ms && n >= limit => {
            // Counted once past the limit, so only the first refusal writes (and is audited).
            let first = n == limit;
            (first.then(|| (n.saturating_add(1), start)), TotpAttempt::Refused { window_start: start, first })
        }
        _ => {
            let (failures, window_start) = next_failure_window(Some(current), at, window_ms);
            (Some((failures, window_start)), TotpAttempt::Reserved { failures, window_start })
        }
    }
}

/// Reads an `audit_log` row.
pub(crate) fn audit_from_row(row: &impl Columns) -> StoreResult<AuditRecord> {
    let seq: i64 = row.get("seq", "audit row")?;
    let what = format!("audit record {seq}");
    let details: String = row.get("details", &what)?;
    let details = serde_json::from_str(&details).map_err(|e| StoreError::Corrupt(format!("{what}: details: {e}")))?;
    Ok(AuditRecord {
        seq,
        draft: AuditDraft {
            at: from_db_time(row.get("at", &what)?, &what)?,
            actor: row.get("actor", &what)?,
            action: row.get("action", &what)?,
            target: row.get("target", &what)?,
            account_id: row.get::<Option<i64>>("account_id", &what)?.map(AccountId),
            source: row.get("source", &what)?,
            details,
        },
        prev_hash: hash32(row.get("prev_hash", &what)?, &what)?,
        hash: hash32(row.get("hash", &what)?, &what)?,
    })
}

/// Reads an `exchange_journal` row.
pub(crate) fn journal_from_row(row: &impl Columns) -> StoreResult<JournalEntry> {
    let seq: i64 = row.get("seq", "journal row")?;
    let what = format!("journal entry {seq}");
    Ok(JournalEntry { seq, at: from_db_time(row.get("at", &what)?, &what)?, command: row.get("command", &what)? })
}

/// A change-feed row (`seq, at, kind, account_id, key_id`) back into its record.
pub(crate) fn change_from_row(row: &impl Columns) -> StoreResult<ChangeRecord> {
    let seq: i64 = row.get("seq", "change row")?;
    let what = format!("change {seq}");
    let account = AccountId(row.get("account_id", &what)?);
    let kind: String = row.get("kind", &what)?;
    let change = match kind.as_str() {
        "account" => Change::Account(account),
        "two_factor" => Change::TwoFactor(account),
        "session" => Change::Session(account),
        "key" => {
            let key: Option<String> = row.get("key_id", &what)?;
            let key = key.ok_or_else(|| StoreError::Corrupt(format!("{what}: a key change without a key id")))?;
            let key = ApiKeyId::parse(&key).map_err(|e| StoreError::Corrupt(format!("{what}: key id: {e}")))?;
            Change::Key { account, key }
        }
        other => return Err(StoreError::Corrupt(format!("{what}: unknown kind {other:?}"))),
    };
    Ok(ChangeRecord { seq, at: from_db_time(row.get("at", &what)?, &what)?, change })
}

/// The `(seq, hash)` of the last audit record, read from a row holding those two columns, or the
/// start of the chain (0, all zeros) when there is none.
pub(crate) fn chain_head(row: Option<&impl Columns>) -> StoreResult<(i64, [u8; 32])> {
    const WHAT: &str = "audit chain head";
    match row {
        Some(row) => Ok((row.get("seq", WHAT)?, hash32(row.get("hash", WHAT)?, WHAT)?)),
        None => Ok((0, [0u8; 32])),
    }
}

/// Reports a stored key value that cannot be read, naming the key.
pub(crate) fn corrupt_key(id: &str, why: &dyn fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("API key {id}: {why}"))
}

/// A time as stored: signed milliseconds, refusing what does not fit.
pub(crate) fn to_db_time(t: UnixMillis, what: &str) -> StoreResult<i64> {
    i64::try_from(t.0).map_err(|_| StoreError::Corrupt(format!("{what}: time {} ms is beyond the storable range", t.0)))
}

/// A stored time, refusing a negative one.
pub(crate) fn from_db_time(t: i64, what: &str) -> StoreResult<UnixMillis> {
    u64::try_from(t).map(UnixMillis).map_err(|_| StoreError::Corrupt(format!("{what}: stored time {t} is negative")))
}

/// A usage count to add, saturated at the largest storable count rather than wrapped.
pub(crate) fn usage_count(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn key_status(s: &str) -> Option<KeyStatus> {
    Some(match s {
        "active" => KeyStatus::Active,
        "disabled" => KeyStatus::Disabled,
        "revoked" => KeyStatus::Revoked,
        "expired" => KeyStatus::Expired,
        _ => return None,
    })
}

pub(crate) fn hash32(bytes: Vec<u8>, what: &str) -> StoreResult<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).map_err(|b| StoreError::Corrupt(format!("{what}: hash of {} bytes, not 32", b.len())))
}

/// Maps the error of a statement whose only unique constraint is `what`'s own and whose only
/// foreign key is `parent`, so the caller learns which value clashed.
pub(crate) fn name_violation(e: StoreError, what: &dyn fmt::Display, parent: &dyn fmt::Display) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::Conflict(what.to_string()),
        StoreError::NotFound(_) => StoreError::NotFound(parent.to_string()),
        other => other,
    }
}

/// Which way a page of the audit log is read: oldest first after a sequence number (catching up,
/// verifying the chain) or newest first before one (an activity page). One query shape serves
/// both backends' two `Store` methods.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AuditOrder {
    /// `seq > bound`, ascending.
    OldestAfter,
    /// `seq < bound`, descending.
    NewestBefore,
}

impl AuditOrder {
    /// The comparison against the bound and the ORDER BY direction.
    pub(crate) fn sql(self) -> (&'static str, &'static str) {
        match self {
            Self::OldestAfter => (">", "ASC"),
            Self::NewestBefore => ("<", "DESC"),
        }
    }
}
