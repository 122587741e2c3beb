//! Persistence behind traits, one per aggregate: accounts, keys, sessions, second factors, the
//! audit chain, the exchange journal, the change feed other nodes listen to, the faucet's counter,
//! invite codes, owner notifications (webhook endpoints, events, deliveries), and connected apps
//! (registered OAuth clients and their authorization codes).
//!
//! The service layer talks to [`Store`], the union of those traits, only; the backend (SQLite in
//! the data directory, or a PostgreSQL database shared by several nodes) is chosen at run time by
//! handing in a different `Arc<dyn Store>` (see [`open`]), never by a Cargo feature or a branch
//! inside a query method. Each trait is implemented once, generic over sqlx ([`sql::SqlStore`]),
//! with a small [`sql::Dialect`] per backend for what really differs. HMAC secrets and TOTP seeds
//! are encrypted here, with the [`crypto::SecretCipher`] the store is opened with, so no backend
//! ever sees one in plain text. Every mutation takes the [`AuditDraft`] that describes it and
//! writes both (and, for changes other nodes must hear about, a change record) in one
//! transaction: a change is never recorded without its audit record, nor the other way round.
//! Both backends pass the same conformance suite.

mod accounts;
mod apps;
pub mod audit;
pub mod audit_log;
pub mod changes;
pub mod crypto;
pub mod datadir;
pub mod dialect;
mod error;
pub mod events;
mod faucet;
mod invites;
mod journal;
mod keys;
mod policies;
pub mod postgres;
pub mod records;
mod rows;
mod sessions;
pub mod sql;
pub mod sqlite;
mod two_factor;
pub mod writer;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use accounts::AccountStore;
pub use apps::{AppRecord, AppStatus, AppStore, CodeRecord};
pub use audit_log::AuditStore;
pub use changes::ChangeFeed;
pub use error::StoreError;
pub use events::EventStore;
pub use faucet::FaucetStore;
pub use invites::InviteStore;
pub use journal::JournalStore;
pub use keys::KeyStore;
pub use policies::{AccountPolicyRecord, PolicyStore, Reconfirmation};
pub use postgres::PgStore;
pub use records::{
    AccountRecord, AccountStatus, AddressHold, AuditDraft, AuditRecord, Change, ChangeRecord, FaucetGrant, HoldPeriod,
    InviteRecord, InviteRefusal, JournalEntry, KeyMaterial, KeyRecord, NewAccount, NewInvite, SessionRecord,
    TotpAttempt, TotpCounter, TwoFactorRecord, UsageDelta, WithdrawalHolds,
};
pub use sessions::SessionStore;
pub use sqlite::{SqliteStore, SyncMode};
pub use two_factor::TwoFactorStore;
pub use writer::{WriterClaim, WriterElection, WriterLease, WriterLock};

use async_trait::async_trait;
use crypto::SecretCipher;
use dialect::Dialect;
use sql::SqlStore;
use std::path::Path;
use std::sync::Arc;

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// The aggregate traits, for `use keygate_store::prelude::*` where a `dyn Store` is used.
pub mod prelude {
    pub use crate::{
        AccountStore as _, AppStore as _, AuditStore as _, ChangeFeed as _, EventStore as _, FaucetStore as _,
        InviteStore as _, JournalStore as _, KeyStore as _, PolicyStore as _, SessionStore as _, Store as _,
        TwoFactorStore as _, WriterElection as _,
    };
}

/// Everything keygate persists: every aggregate's trait, behind one object so backends are
/// values (`Arc<dyn Store>`).
#[async_trait]
pub trait Store:
    AccountStore
    + KeyStore
    + SessionStore
    + TwoFactorStore
    + AuditStore
    + JournalStore
    + ChangeFeed
    + FaucetStore
    + InviteStore
    + PolicyStore
    + AppStore
    + EventStore
    + WriterElection
    + std::fmt::Debug
    + Send
    + Sync
{
    /// Answers when the database does: one read on the read pool and one real write on the
    /// writer (a row rewritten and committed), so a readiness probe sees a store that cannot
    /// write (a full disk) as not ready, and ready again once it can.
    async fn ping(&self) -> StoreResult<()>;

    /// Closes every connection and waits for it, so a process can hand its data to the next one
    /// cleanly (SQLite checkpoints its WAL on the last close). Later calls fail.
    async fn close(&self);

    /// A key for `purpose` derived from the master key, which every node of a deployment holds:
    /// tokens the service signs (a browser's known-device token) then check on any node, with
    /// no other secret to distribute. Distinct purposes give independent keys.
    fn derived_key(&self, purpose: &[u8]) -> zeroize::Zeroizing<[u8; 32]>;
}

#[async_trait]
impl<D: Dialect> Store for SqlStore<D> {
    fn derived_key(&self, purpose: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
        self.cipher.derive(purpose)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read_optional(sql::stmt("SELECT 1 AS one")).await?;
        // A value that changes each time, so the write is never a no-op: the process's clock is
        // not needed, only difference.
        let nonce = i64::from(getrandom_u32()?);
        self.write_one(
            sql::stmt(
                "INSERT INTO store_probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )
            .arg(nonce),
        )
        .await?;
        Ok(())
    }

    async fn close(&self) {
        SqlStore::close(self).await;
    }
}

/// A random `u32`, for writes that must change something.
fn getrandom_u32() -> StoreResult<u32> {
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).map_err(|e| StoreError::Crypto(format!("no randomness: {e}")))?;
    Ok(u32::from_le_bytes(b))
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
