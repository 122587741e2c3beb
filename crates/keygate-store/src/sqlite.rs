//! The SQLite backend: one database file, WAL journal, one writer.
//!
//! Every mutation runs in a `BEGIN IMMEDIATE` transaction on a pool of exactly one connection, so
//! writes (and with them audit appends) are serialised in this process and the audit record and
//! the change it describes commit together or not at all. Reads go through a separate read-only
//! pool, which WAL lets run beside the writer without blocking it. The statements are the ones
//! every backend runs ([`crate::sql`]); this module only opens the file and says how SQLite's
//! dialect differs.

use crate::crypto::SecretCipher;
use crate::dialect::SqliteDialect;
use crate::sql::SqlStore;
use crate::{StoreError, StoreResult};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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

/// A [`crate::Store`] on one SQLite database file.
pub type SqliteStore = SqlStore<SqliteDialect>;

/// How long a connection waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of the read pool.
const READERS: u32 = 4;

impl SqlStore<SqliteDialect> {
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
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .after_release(|conn, _| Box::pin(async move { still_usable(conn).await }))
            .connect_with(options.clone())
            .await
            .map_err(|e| setup(&e))?;
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
        Ok(Self { location: path.display().to_string(), writer, reader, cipher })
    }
}

/// Whether the writer connection may go back to the pool: only outside any transaction. A
/// failed `COMMIT` (the disk was full) lets SQLite roll the transaction back by itself while
/// sqlx still counts it open, and every later `BEGIN IMMEDIATE` on that connection then fails
/// ("non-zero transaction depth") long after the space is back: such a connection is closed
/// instead, and the pool opens a fresh one for the next write. The ping first lets the worker
/// finish a rollback the dropped transaction queued, so a normal early return is not mistaken
/// for a stuck transaction.
async fn still_usable(conn: &mut sqlx::sqlite::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::{Connection as _, TransactionManager as _};
    conn.ping().await?;
    Ok(sqlx::sqlite::SqliteTransactionManager::get_transaction_depth(conn) == 0)
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
    use crate::records::{AuditDraft, NewAccount};
    use crate::{AccountStore as _, AuditStore as _, KeyStore as _};
    use keygate_auth::ApiKeyId;
    use keygate_proto::UnixMillis;
    use sqlx::Row as _;
    use sqlx::sqlite::SqlitePool;
    use std::path::PathBuf;

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
        let key = crate::conformance::hmac_key(&mut e, acc.id, 2);
        let id = key.id.clone();
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
