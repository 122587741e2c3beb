//! The PostgreSQL backend: one database shared by every keygate node.
//!
//! Unlike SQLite, several processes on several machines write to the same database at once, so
//! nothing in this process can serialise the audit chain. Every mutation therefore runs in one
//! transaction (so a change and its audit record commit together or not at all) and, before it
//! reads the chain head, takes the transaction-scoped advisory lock
//! [`crate::audit_log::AUDIT_CHAIN_LOCK`] (see [`crate::audit_log`] for why that order cannot
//! deadlock). Reads of a row that the same transaction then updates lock it (`FOR UPDATE`), and
//! every change record is announced with `NOTIFY` on [`crate::changes::CHANGE_CHANNEL`] when it
//! commits. The statements are the ones every backend runs ([`crate::sql`]); this module only
//! connects and says how PostgreSQL's dialect differs.

use crate::crypto::SecretCipher;
use crate::dialect::PostgresDialect;
use crate::sql::SqlStore;
use crate::sqlite::SyncMode;
use crate::{StoreError, StoreResult};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::fmt;
use std::str::FromStr as _;
use std::sync::Arc;

/// Connections per store: enough for the service's concurrent readers and writers, few enough
/// that a handful of nodes stays well inside a default server's `max_connections` (100).
const MAX_CONNECTIONS: u32 = 8;

/// How long a statement waits for a lock (the audit chain's, a row's) before failing, as SQLite's
/// busy timeout: a node stuck inside a transaction makes the others fail visibly, not hang.
const LOCK_TIMEOUT: &str = "5s";

/// A [`crate::Store`] on a PostgreSQL database.
pub type PgStore = SqlStore<PostgresDialect>;

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

impl SqlStore<PostgresDialect> {
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
        Ok(Self { location: target, writer: pool.clone(), reader: pool, cipher })
    }

    /// Where the store is, without the password (`postgres://user@host:port/database`), for log
    /// lines and messages that must say which database a node uses.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.location
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
    use crate::conformance::{Harness as _, PgHarness, TEST_MASTER_KEY, TestEntropy, hmac_key, run_or_skip};
    use crate::crypto::MasterKey;
    use crate::records::{AuditDraft, NewAccount};
    use crate::{AccountStore as _, AuditStore as _};
    use keygate_auth::AccountId;
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

    async fn new_account(store: &(impl crate::AccountStore + ?Sized)) -> crate::AccountRecord {
        let new = NewAccount { name: "a".into(), password_hash: "h".into(), created_at: UnixMillis(1) };
        store.create_account(new, draft("account.create", None)).await.unwrap()
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
                let err = sqlx::query(sql).execute(&store.writer).await.unwrap_err();
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
                    sqlx::query_scalar("SELECT current_setting($1)").bind(name).fetch_one(&store.writer).await.unwrap()
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
                sqlx::query_scalar("SELECT current_setting('lock_timeout')").fetch_one(&store.writer).await.unwrap();
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
            let acc = new_account(&*store).await;
            store.insert_key(&hmac_key(&mut e, acc.id, 2), draft("key.create", Some(acc.id))).await.unwrap();
            store.close().await;
            assert!(store.list_accounts().await.is_err());
            assert!(store.append_audit(draft("login.failed", None)).await.is_err());
        });
    }

    #[test]
    fn a_change_is_announced_on_the_change_channel_when_it_commits() {
        run_or_skip::<PgHarness>("a_change_is_announced_on_the_change_channel_when_it_commits", async {
            use crate::ChangeFeed as _;
            let h = PgHarness::fresh().await;
            let store = h.open_pg(TEST_MASTER_KEY).await;
            let mut listener = store.listen().await.unwrap().expect("PostgreSQL announces changes");
            // Audited but not a change: no notification.
            store.append_audit(draft("login.failed", None)).await.unwrap();
            let acc = new_account(&store).await;
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), listener.next()).await.unwrap();
            let seq = next.unwrap().expect("an announcement, not a lost connection");
            assert_eq!(seq, 2, "the account's audit record follows the failed login's");
            assert_eq!(store.last_change().await.unwrap(), seq);
            let feed = store.changes_after(0, 10).await.unwrap();
            assert_eq!(feed.len(), 1);
            assert_eq!(feed[0].change, crate::Change::Account(acc.id));
            // The listener holds a connection of the pool: closing the pool waits for it.
            drop(listener);
            store.close().await;
        });
    }
}
