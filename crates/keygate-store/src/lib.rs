//! Persistence behind traits: accounts, keys, the audit chain.
//!
//! The service layer talks to [`Store`] only; the backend (SQLite now, PostgreSQL later) is chosen
//! at run time by handing in a different `Arc<dyn Store>`, never by a Cargo feature or a branch
//! inside a query method. HMAC secrets are encrypted here, with the [`crypto::SecretCipher`] the
//! store is opened with, so no backend ever sees one in plain text. Every mutation takes the
//! [`AuditDraft`] that describes it and writes both in one transaction: a change is never
//! recorded without its audit record, nor the other way round.

pub mod audit;
pub mod crypto;
pub mod datadir;
mod error;
pub mod records;
pub mod sqlite;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::StoreError;
pub use records::{
    AccountRecord, AccountStatus, AuditDraft, AuditRecord, KeyMaterial, KeyRecord, NewAccount, UsageDelta,
};
pub use sqlite::{SqliteStore, SyncMode};

use async_trait::async_trait;
use keygate_auth::{AccountId, ApiKeyId};

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

    /// Replaces an account's mutable fields (password hash, status); [`StoreError::NotFound`]
    /// if it does not exist.
    async fn update_account(&self, account: &AccountRecord, audit: AuditDraft) -> StoreResult<()>;

    /// Inserts a new key; [`StoreError::Conflict`] if the id exists, [`StoreError::NotFound`] if
    /// the account does not.
    async fn insert_key(&self, key: &KeyRecord, audit: AuditDraft) -> StoreResult<()>;

    /// The key with `id`, secret decrypted, if any.
    async fn get_key(&self, id: &ApiKeyId) -> StoreResult<Option<KeyRecord>>;

    /// Keys of one account, or of all accounts when `account` is `None`, by creation time.
    async fn list_keys(&self, account: Option<AccountId>) -> StoreResult<Vec<KeyRecord>>;

    /// Replaces a key's mutable fields (label, permissions, restrictions, status, updated_*);
    /// its id, account, type, material and creation fields never change.
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

    /// Closes every connection and waits for it, so a process can hand its data to the next one
    /// cleanly (SQLite checkpoints its WAL on the last close). Later calls fail.
    async fn close(&self);
}
