//! Persistence behind traits: accounts, keys, the audit chain.
//!
//! The service layer talks to [`Store`] only; the backend (SQLite in the data directory, or a
//! PostgreSQL database shared by several nodes) is chosen at run time by handing in a different
//! `Arc<dyn Store>` (see [`open`]), never by a Cargo feature or a branch inside a query method.
//! HMAC secrets are encrypted here, with the [`crypto::SecretCipher`] the store is opened with, so
//! no backend ever sees one in plain text. Every mutation takes the [`AuditDraft`] that describes
//! it and writes both in one transaction: a change is never recorded without its audit record,
//! nor the other way round. Both backends pass the same conformance suite.

pub mod audit;
pub mod crypto;
pub mod datadir;
mod error;
pub mod postgres;
pub mod records;
mod rows;
pub mod sqlite;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::StoreError;
pub use postgres::PgStore;
pub use records::{
    AccountRecord, AccountStatus, AddressHold, AuditDraft, AuditRecord, HoldPeriod, JournalEntry, KeyMaterial,
    KeyRecord, NewAccount, SessionRecord, TotpAttempt, TwoFactorRecord, UsageDelta, WithdrawalHolds,
};
pub use sqlite::{SqliteStore, SyncMode};

use async_trait::async_trait;
use crypto::SecretCipher;
use keygate_auth::{AccountId, ApiKeyId};
use keygate_proto::UnixMillis;
use std::path::Path;
use std::sync::Arc;

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything keygate persists, behind one object-safe trait so backends are values.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Creates an account; [`StoreError::Conflict`] if the name is taken. The audit record gets
    /// the new account id when `audit.account_id` is `None`, so the owner sees their account's
    /// creation in their own audit view.
    async fn create_account(&self, new: NewAccount, audit: AuditDraft) -> StoreResult<AccountRecord>;

    /// The account with `name`, if any.
    async fn account_by_name(&self, name: &str) -> StoreResult<Option<AccountRecord>>;

    /// The account with `id`, if any.
    async fn account_by_id(&self, id: AccountId) -> StoreResult<Option<AccountRecord>>;

    /// All accounts, by id.
    async fn list_accounts(&self) -> StoreResult<Vec<AccountRecord>>;

    /// Replaces an account's mutable fields (password hash, status, withdrawal lock; never the
    /// withdrawal hold, which only [`Store::enable_two_factor`] sets); [`StoreError::NotFound`]
    /// if it does not exist.
    async fn update_account(&self, account: &AccountRecord, audit: AuditDraft) -> StoreResult<()>;

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
    /// status, updated_*);
    /// its id, account, type, material and creation fields never change. A revoked key is never
    /// updated again: [`StoreError::Conflict`], even for a writer that read it before the
    /// revocation (the guard is in the statement, so it holds across processes and nodes).
    async fn update_key(&self, key: &KeyRecord, audit: AuditDraft) -> StoreResult<()>;

    /// Adds usage counters and moves last-used time and address forward; unknown keys are
    /// skipped. Not audited: usage is bookkeeping, not a change.
    async fn record_usage(&self, deltas: &[UsageDelta]) -> StoreResult<()>;

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

    /// Appends exchange journal entries in one transaction: all or none. An entry whose `seq` is
    /// already taken is a [`StoreError::Conflict`] and nothing of the batch is written (two engines
    /// on one database would collide here rather than interleave).
    async fn append_journal(&self, entries: &[JournalEntry]) -> StoreResult<()>;

    /// Journal entries with `seq > after`, in order, at most `limit`.
    async fn journal_after(&self, after: i64, limit: u32) -> StoreResult<Vec<JournalEntry>>;

    /// Stores a snapshot of the exchange that includes every journal entry up to `seq`.
    async fn save_snapshot(&self, seq: i64, state: &[u8]) -> StoreResult<()>;

    /// The snapshot with the highest `seq`, if any.
    async fn latest_snapshot(&self) -> StoreResult<Option<(i64, Vec<u8>)>>;

    // ---- Console sessions (issue #6). Only SHA-256 hashes of session ids reach the store. ----

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

    /// In one transaction: replaces the account's mutable fields (as [`Store::update_account`]),
    /// deletes every session of the account, and inserts `new_session` if given. For password
    /// changes and 2FA resets, which must end every other login.
    async fn update_account_ending_sessions(
        &self,
        account: &AccountRecord,
        new_session: Option<&SessionRecord>,
        audit: AuditDraft,
    ) -> StoreResult<()>;

    // ---- TOTP 2FA and recovery codes (issue #6). Seeds sealed, codes hashed. ----

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
    async fn reserve_totp_attempt(
        &self,
        account: AccountId,
        at: UnixMillis,
        window_ms: u64,
        limit: u32,
    ) -> StoreResult<TotpAttempt>;

    /// Gives back one attempt reserved by [`Store::reserve_totp_attempt`] in the window starting
    /// at `window_start` (the code was good); nothing if the window has changed since.
    async fn release_totp_attempt(&self, account: AccountId, window_start: UnixMillis) -> StoreResult<()>;

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

    /// Closes every connection and waits for it, so a process can hand its data to the next one
    /// cleanly (SQLite checkpoints its WAL on the last close). Later calls fail.
    async fn close(&self);
}

/// Opens the store the configuration names: the PostgreSQL database at `database_url` when it is
/// a `postgres://` or `postgresql://` URL, the SQLite database at `sqlite_path` when there is no
/// URL. The one place the backend is chosen, so callers hold an `Arc<dyn Store>` and never ask
/// which one it is.
///
/// `sync` applies to both: SQLite's `synchronous` pragma, PostgreSQL's `synchronous_commit` (see
/// [`PgStore::open`]). `sqlite_path` is not touched when a URL is given.
///
/// # Errors
/// [`StoreError::Setup`] for a URL of any other scheme (the message names the scheme, never the
/// URL, which may hold a password), and whatever [`PgStore::open`] or [`SqliteStore::open`]
/// return.
pub async fn open(
    database_url: Option<&str>,
    sqlite_path: &Path,
    cipher: Arc<SecretCipher>,
    sync: SyncMode,
) -> StoreResult<Arc<dyn Store>> {
    let Some(url) = database_url else {
        return Ok(Arc::new(SqliteStore::open(sqlite_path, cipher, sync).await?));
    };
    match url_scheme(url) {
        Some(scheme) if scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql") => {
            Ok(Arc::new(PgStore::open(url, cipher, sync).await?))
        }
        Some(scheme) => Err(StoreError::Setup(format!(
            "unsupported database URL scheme {scheme:?}: use a postgres:// or postgresql:// URL, or no database \
             URL to keep the SQLite database in the data directory"
        ))),
        None => Err(StoreError::Setup(
            "the database URL is not a URL: expected postgres://user@host:port/database, or no database URL to \
             keep the SQLite database in the data directory"
                .into(),
        )),
    }
}

/// The scheme of `url` (before `://`), if it has a well-formed one (RFC 3986 section 3.1), so that
/// an error can name it without echoing anything after it.
fn url_scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once("://")?;
    let mut chars = scheme.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    well_formed.then_some(scheme)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;
    use crate::crypto::MasterKey;

    fn cipher() -> Arc<SecretCipher> {
        Arc::new(SecretCipher::new(MasterKey::from_bytes([1; 32]), vec![]))
    }

    #[tokio::test]
    async fn no_url_opens_sqlite_at_the_given_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let store = open(None, &path, cipher(), SyncMode::Normal).await.unwrap();
        assert!(format!("{store:?}").starts_with("SqliteStore"), "{store:?}");
        assert!(store.list_accounts().await.unwrap().is_empty());
        store.close().await;
        assert!(path.exists());
    }

    #[tokio::test]
    async fn other_schemes_are_refused_naming_the_scheme_but_not_the_url() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        for (url, named) in [
            ("mysql://root:hunter2@db/keygate", Some("\"mysql\"")),
            ("sqlite://hunter2.db", Some("\"sqlite\"")),
            ("postgres:hunter2@db", None),
            ("user:hunter2@db://x", None),
            ("", None),
        ] {
            let err = open(Some(url), &path, cipher(), SyncMode::Normal).await.unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, StoreError::Setup(_)), "{url}: {err:?}");
            assert!(!text.contains("hunter2"), "{url}: the message echoes the URL: {text}");
            if let Some(named) = named {
                assert!(text.contains(named), "{url}: {text}");
            }
            assert!(text.contains("postgres://"), "{url}: the message says what would work: {text}");
        }
        assert!(!path.exists(), "a refused URL must not fall back to SQLite");
    }

    #[tokio::test]
    async fn a_postgres_url_opens_postgres_whatever_the_scheme_spelling() {
        // A port that is not a number fails in PostgreSQL's URL parser, at once: the error shows
        // that the URL went to PostgreSQL (and not to SQLite, which would create the file).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        for url in ["postgres://u:hunter2@db:x/k", "postgresql://u:hunter2@db:x/k", "PostgreSQL://u:hunter2@db:x/k"] {
            let err = open(Some(url), &path, cipher(), SyncMode::Normal).await.unwrap_err();
            let text = err.to_string();
            assert!(text.contains("invalid PostgreSQL database URL"), "{url}: {text}");
            assert!(!text.contains("hunter2"), "{url}: {text}");
        }
        assert!(!path.exists());
    }
}
