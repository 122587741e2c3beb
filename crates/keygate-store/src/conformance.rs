//! The store conformance suite: the behaviour every [`Store`] backend must show, written once.
//!
//! A backend provides a [`Harness`] (a fresh, empty backend per test, opened and reopened on
//! demand) and instantiates the whole suite with one line, as rustls runs one test suite per
//! crypto provider:
//!
//! ```text
//! keygate_store::store_conformance_suite!(keygate_store::conformance::SqliteHarness);
//! ```
//!
//! Each test is a public `async fn name<H: Harness>()`, so a backend can also call one directly.
//! The macro wraps each in a plain `#[test]` that drives it on a multi-threaded tokio runtime
//! built here, so the instantiating crate needs no tokio features of its own and concurrent tests
//! really run in parallel.
//!
//! A backend that needs something the machine may not have (a PostgreSQL server) says so in
//! [`Harness::available`]; each test then prints `NAME: skipped: REASON` and passes, so a run
//! without the server says plainly what it did not test rather than failing or pretending.

// A conformance test reports failure by panicking, like any test; `unwrap` on a store result is
// the clearest way to say "this call must succeed".
#![allow(clippy::unwrap_used)]

use crate::audit::{ChainError, chain_hash, verify_chain};
use crate::crypto::{MasterKey, SecretCipher};
use crate::postgres::{PgStore, describe};
use crate::records::{
    AccountRecord, AccountStatus, AuditDraft, AuditRecord, Change, FaucetGrant, KeyMaterial, KeyRecord, NewAccount,
    SessionRecord, TotpCounter, UsageDelta,
};
use crate::sqlite::{SqliteStore, SyncMode};
use crate::{Store, StoreError};
use async_trait::async_trait;
use keygate_auth::{
    AccountId, ApiKeyId, Entropy, EntropyError, HmacSecret, IpAllowlist, KeyStatus, Permission, Permissions, PublicKey,
    Restrictions, SessionToken, WithdrawLimit,
};
use keygate_proto::{Amount, AssetCode, Symbol, UnixMillis};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One backend under test.
#[async_trait]
pub trait Harness: Send + Sync + Sized + 'static {
    /// Whether the backend can be tested on this machine; `Err(reason)` makes every test print
    /// that it skipped and why, and pass. Only for what a developer may legitimately lack (an
    /// unset server URL): a backend that is configured but broken must fail in [`Harness::fresh`].
    ///
    /// # Errors
    /// The reason to print, e.g. `KEYGATE_TEST_POSTGRES_URL is not set`.
    fn available() -> Result<(), String> {
        Ok(())
    }

    /// Whether several processes can open this backend at once (PostgreSQL), so that one of
    /// them can hold the exchange writer's lock while another is refused it; SQLite's data
    /// directory admits one process.
    const SHARED: bool = false;

    /// A fresh, empty backend (new temp dir / new database).
    async fn fresh() -> Self;

    /// Opens (or reopens, after the previous handle was dropped) the store on this backend,
    /// with the master key [`TEST_MASTER_KEY`].
    async fn open(&self) -> Arc<dyn Store>;

    /// Opens the store on this backend with a cipher that knows only the master key `key`.
    async fn open_with_master_key(&self, key: [u8; 32]) -> Arc<dyn Store>;

    /// Every byte of stored data the backend can show (all files of the SQLite data dir incl.
    /// -wal/-shm; every value of every PostgreSQL table), for secret scanning.
    async fn dump(&self) -> Vec<u8>;
}

/// The master key [`Harness::open`] uses.
pub const TEST_MASTER_KEY: [u8; 32] = [0x42; 32];

/// Runs one conformance test to completion on a fresh multi-threaded runtime.
///
/// # Panics
/// When the test fails, or no runtime can be built.
#[doc(hidden)]
pub fn run(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the test")
        .block_on(test);
}

/// Runs one conformance test against `H`, or reports that it skipped when [`Harness::available`]
/// says the backend cannot be tested here.
///
/// # Panics
/// When the test fails, or no runtime can be built.
#[doc(hidden)]
pub fn run_or_skip<H: Harness>(name: &str, test: impl Future<Output = ()>) {
    match H::available() {
        Ok(()) => run(test),
        Err(reason) => {
            // Straight to the process's stderr: libtest captures `eprintln!` of a passing test
            // and shows it only with --nocapture, and a skip must be seen in every run.
            let _ = writeln!(std::io::stderr(), "{name}: skipped: {reason}");
        }
    }
}

/// Expands into one `#[test]` per conformance test, each against a fresh `$harness`.
///
/// ```text
/// keygate_store::store_conformance_suite!(keygate_store::conformance::SqliteHarness);
/// ```
#[macro_export]
macro_rules! store_conformance_suite {
    ($harness:ty) => {
        $crate::store_conformance_suite!(@tests $harness;
            accounts_are_found_by_name_and_id_and_listed_in_id_order,
            account_update_replaces_only_password_hash_and_status_and_is_audited,
            update_of_a_missing_account_is_not_found_and_not_audited,
            duplicate_account_name_is_a_conflict_and_leaves_no_trace,
            hmac_key_round_trips_with_an_identical_secret,
            ed25519_and_rsa_public_keys_round_trip,
            permissions_and_restrictions_round_trip_exactly,
            keys_are_listed_per_account_and_overall_in_creation_order,
            keys_page_by_id_covering_every_key_exactly_once,
            duplicate_key_id_is_a_conflict_and_keeps_the_original,
            key_for_an_unknown_account_is_not_found_and_leaves_no_trace,
            update_key_changes_only_mutable_fields_and_is_audited,
            update_of_a_missing_key_is_not_found_and_not_audited,
            a_revoked_key_is_never_updated_again,
            exchange_journal_appends_atomically_and_reads_back_in_order,
            exchange_snapshots_keep_the_latest,
            record_usage_accumulates_counts_keeps_the_latest_time_and_address_and_skips_unknown_keys,
            usage_counts_saturate_at_the_largest_storable_count,
            concurrent_usage_flushes_over_the_same_keys_all_count,
            every_mutation_appends_exactly_one_chained_audit_record,
            audit_records_filter_by_account_and_page_by_sequence,
            tampered_audit_records_fail_chain_verification,
            concurrent_writers_all_succeed_and_keep_one_intact_chain,
            hmac_secrets_are_never_stored_in_plain_text,
            everything_survives_a_restart,
            another_master_key_cannot_open_secrets_and_says_so,
            out_of_range_values_are_refused_without_a_trace,
            sessions_round_trip_rotate_once_and_delete_with_their_audit_records,
            purge_and_account_changes_end_the_right_sessions,
            two_factor_enrollment_confirmation_and_removal,
            enabling_two_factor_holds_withdrawals_and_account_updates_keep_the_hold,
            totp_steps_are_accepted_once_and_only_forward,
            recovery_codes_work_once_for_their_own_account,
            totp_failures_count_in_windows_and_are_audited,
            totp_attempt_reservations_are_atomic_and_refuse_past_the_limit,
            session_ids_totp_seeds_and_recovery_codes_are_never_stored_in_plain_text,
            every_cached_change_enters_the_feed_with_its_audit_record,
            journal_entries_and_their_audit_records_commit_together,
            faucet_grants_stop_at_the_limit_even_when_concurrent,
            an_invite_redeems_once_even_when_concurrent,
            expired_revoked_and_unknown_invites_are_refused,
            redeeming_an_invite_and_creating_the_account_commit_together,
            a_conditional_key_update_refuses_a_key_changed_meanwhile,
            single_use_signatures_are_recorded_with_their_batch_once,
            the_exchange_writer_takes_over_with_a_new_term_that_fences_the_old_one,
            account_key_policies_round_trip_and_come_due_in_order,
            a_key_warning_is_recorded_once_with_its_audit_record,
            webhook_endpoints_keep_sealed_secrets_and_deleting_one_ends_its_deliveries,
            events_are_ingested_once_from_the_audit_log,
            deliveries_are_leased_retried_and_dead_lettered,
            key_addresses_and_leak_reports_are_recorded_once,
            one_delivery_per_endpoint_is_in_flight_when_asked,
            apps_round_trip_and_keys_issued_to_them_are_marked_and_found,
            an_authorization_code_is_redeemed_once_even_when_concurrent,
            live_codes_are_ended_by_app_and_by_account_taken_ones_too,
            expired_codes_are_purged_and_live_ones_kept,
            app_developers_are_allowed_and_disallowed_with_audit_records,
        );
    };
    (@tests $harness:ty; $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::run_or_skip::<$harness>(
                    stringify!($name),
                    $crate::conformance::$name::<$harness>(),
                );
            }
        )+
    };
}

// ---------------------------------------------------------------------------------------------
// The SQLite harness
// ---------------------------------------------------------------------------------------------

/// A SQLite database in a fresh temporary directory, deleted afterwards unless the test failed
/// (then kept, and its path printed, for inspection).
#[derive(Debug)]
pub struct SqliteHarness {
    path: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl SqliteHarness {
    /// The data directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.path
    }
}

impl Drop for SqliteHarness {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            // Test output is the one place a failed test can point at its evidence.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("store conformance test failed; its database is kept in {}", kept.display());
            }
        }
    }
}

#[async_trait]
impl Harness for SqliteHarness {
    async fn fresh() -> Self {
        let dir = tempfile::Builder::new().prefix("keygate-store-").tempdir().expect("a temporary directory");
        Self { path: dir.path().to_owned(), dir: Some(dir) }
    }

    async fn open(&self) -> Arc<dyn Store> {
        self.open_with_master_key(TEST_MASTER_KEY).await
    }

    async fn open_with_master_key(&self, key: [u8; 32]) -> Arc<dyn Store> {
        let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes(key), Vec::new()));
        let store = SqliteStore::open(&self.path.join("keygate.db"), cipher, SyncMode::Normal).await;
        Arc::new(store.expect("the SQLite store opens"))
    }

    async fn dump(&self) -> Vec<u8> {
        // Every file, the -wal and -shm files included: a value written a moment ago sits in the
        // WAL until a checkpoint copies it into the main file. A store dropped just before may
        // still be checkpointing (connections close in the background), so the WAL is read
        // before the main file: a value is then in the WAL as read, or was already in the main
        // file before the WAL was read. A file that vanished meanwhile held nothing the main
        // file lacks.
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.path)
            .expect("the data directory is readable")
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort_by_key(|p| (!p.to_string_lossy().ends_with("-wal"), p.clone()));
        assert!(files.iter().any(|p| p.ends_with("keygate.db")), "no database file in {files:?}");
        let mut dump = Vec::new();
        for p in files {
            match std::fs::read(&p) {
                Ok(bytes) => dump.extend(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("cannot read {}: {e}", p.display()),
            }
        }
        dump
    }
}

// ---------------------------------------------------------------------------------------------
// The PostgreSQL harness
// ---------------------------------------------------------------------------------------------

/// The variable naming the PostgreSQL server the PostgreSQL conformance tests use, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`. The user must be allowed to create databases.
pub const PG_URL_ENV: &str = "KEYGATE_TEST_POSTGRES_URL";

/// Numbers the databases this process creates, so parallel tests never collide.
static PG_DATABASES: AtomicU64 = AtomicU64::new(0);

/// A fresh database `kg_test_<pid>_<counter>_<random>` on the server named by
/// [`PG_URL_ENV`], dropped afterwards unless the test failed (then kept, and its name printed,
/// for inspection). Needs PostgreSQL 13 or later (`DROP DATABASE ... WITH (FORCE)`).
pub struct PgHarness {
    /// The server, connected to its maintenance database (the URL's own).
    server: PgConnectOptions,
    /// The test database's name.
    name: String,
}

impl std::fmt::Debug for PgHarness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // By hand: the options' own Debug shows the password of the URL.
        f.debug_struct("PgHarness").field("server", &describe(&self.server)).field("name", &self.name).finish()
    }
}

impl PgHarness {
    /// The test database's name, for messages and for tests that look for it in output.
    #[must_use]
    pub fn database(&self) -> &str {
        &self.name
    }

    /// Connection options for the test database, for tests that connect beside the store (to
    /// tamper with rows, or open it with other settings).
    #[must_use]
    pub fn options(&self) -> PgConnectOptions {
        self.server.clone().database(&self.name)
    }

    /// Opens a [`PgStore`] (not behind `dyn Store`) on the test database, for tests of what only
    /// PostgreSQL has.
    pub async fn open_pg(&self, key: [u8; 32]) -> PgStore {
        let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes(key), Vec::new()));
        let store = PgStore::open_with(self.options(), cipher, SyncMode::Normal).await;
        store.unwrap_or_else(|e| panic!("the PostgreSQL store on {} opens: {e}", self.name))
    }
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        let server = describe(&self.server);
        if std::thread::panicking() {
            // Test output is the one place a failed test can point at its evidence.
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "store conformance test failed; its database {} is kept on {server} \
                     (drop it with: DROP DATABASE {} WITH (FORCE))",
                    self.name, self.name
                );
            }
            return;
        }
        // Drop runs inside the test's runtime, where nothing can be awaited; a thread of its own
        // with its own runtime does the async work. FORCE ends connections of stores dropped a
        // moment ago whose pools are still closing in the background.
        let options = self.server.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = PgConnection::connect_with(&options).await?;
                sqlx::query(&sql).execute(&mut conn).await?;
                conn.close().await
            })
            .map_err(|e| e.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("cannot drop test database {} on {server}: {e}", self.name),
            Err(_) => panic!("dropping test database {} on {server} panicked", self.name),
        }
    }
}

#[async_trait]
impl Harness for PgHarness {
    const SHARED: bool = true;

    fn available() -> Result<(), String> {
        // Only an unset variable skips; a set one that is empty, invalid or names a server that
        // does not answer fails every test, so a misconfigured CI job cannot pass silently.
        match std::env::var_os(PG_URL_ENV) {
            None => Err(format!("{PG_URL_ENV} is not set")),
            Some(_) => Ok(()),
        }
    }

    async fn fresh() -> Self {
        let url = std::env::var(PG_URL_ENV).unwrap_or_else(|e| panic!("{PG_URL_ENV}: {e}"));
        assert!(
            !url.trim().is_empty(),
            "{PG_URL_ENV} is set but empty: set it to a server such as \
             postgres://postgres@127.0.0.1:5432/postgres, or unset it to skip the PostgreSQL tests"
        );
        let server =
            PgConnectOptions::from_str(&url).unwrap_or_else(|e| panic!("{PG_URL_ENV} is not a PostgreSQL URL: {e}"));
        let mut random = [0u8; 4];
        getrandom::getrandom(&mut random).expect("system randomness");
        let name = format!(
            "kg_test_{}_{}_{}",
            std::process::id(),
            PG_DATABASES.fetch_add(1, Ordering::Relaxed),
            hex::encode(random)
        );
        let target = describe(&server);
        let mut conn = PgConnection::connect_with(&server)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the PostgreSQL server {target} named by {PG_URL_ENV}: {e}"));
        // template0 with an explicit encoding and locale: independent of what template1 holds
        // and of the cluster's default locale.
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name} on {target}: {e}"));
        conn.close().await.expect("closing the setup connection");
        Self { server, name }
    }

    async fn open(&self) -> Arc<dyn Store> {
        self.open_with_master_key(TEST_MASTER_KEY).await
    }

    async fn open_with_master_key(&self, key: [u8; 32]) -> Arc<dyn Store> {
        Arc::new(self.open_pg(key).await)
    }

    async fn dump(&self) -> Vec<u8> {
        // Every value of every column of every table a client can read: as text (where bytea
        // comes out hex-encoded, `\x6b67...`) and, for bytea columns, also as the raw bytes, so a
        // secret is found whether it was stored as text, as hex or as bytes. The server's files
        // (heap, WAL) are not visible to a client; they hold these same values, so a value absent
        // here was never sent to the server in the clear. (The SQLite harness reads the files.)
        let mut conn = PgConnection::connect_with(&self.options()).await.expect("a connection to the test database");
        let columns: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT c.table_schema::text, c.table_name::text, c.column_name::text, c.data_type::text \
             FROM information_schema.columns c \
             JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE t.table_type = 'BASE TABLE' AND c.table_schema NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY c.table_schema, c.table_name, c.ordinal_position",
        )
        .fetch_all(&mut conn)
        .await
        .expect("the list of columns");
        let tables: std::collections::BTreeSet<&str> = columns.iter().map(|c| c.1.as_str()).collect();
        for want in ["accounts", "api_keys", "audit_log"] {
            assert!(tables.contains(want), "table {want} not found among {tables:?}");
        }
        let quote = |ident: &str| format!("\"{}\"", ident.replace('"', "\"\""));
        let mut dump = Vec::new();
        for (schema, table, column, data_type) in &columns {
            let from = format!("{}.{}", quote(schema), quote(table));
            let texts: Vec<Option<String>> = sqlx::query_scalar(&format!("SELECT {}::text FROM {from}", quote(column)))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("cannot read {from}.{column}: {e}"));
            for t in texts.into_iter().flatten() {
                dump.extend(t.into_bytes());
                dump.push(b'\n');
            }
            if data_type == "bytea" {
                let raw: Vec<Option<Vec<u8>>> = sqlx::query_scalar(&format!("SELECT {} FROM {from}", quote(column)))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("cannot read {from}.{column}: {e}"));
                for b in raw.into_iter().flatten() {
                    dump.extend(b);
                    dump.push(b'\n');
                }
            }
        }
        conn.close().await.expect("closing the dump connection");
        dump
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// Deterministic entropy (xorshift64*) so generated ids and secrets repeat from run to run.
/// Never for anything but tests.
#[derive(Debug, Clone)]
pub struct TestEntropy(u64);

impl TestEntropy {
    /// A stream determined by `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
}

impl Entropy for TestEntropy {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
        for b in dest {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *b = (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8;
        }
        Ok(())
    }
}

/// A 2048-bit RSA public key, made once with `openssl genrsa 2048 | openssl rsa -pubout`.
pub const RSA_PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAodYfqKwjR1IGplN3bDgO
UKE8PC1pNOQ0FVXFiBa9Me8ePIIcMdMt6QPPyqCs7cuc8gfKyiRG6dolKFZLXqVe
O8YhpVeqyovHJ540C2pGTFSY5NzvP8GPMerh2YN+hmr38vy+wz4QhysjK+FMvYh8
wvf1XFA4UUEdSogyU0xRjHZa/QF83xX4kJ+MDTcSIaN4Hv50SAcyz2v54Nmq4tTv
cv+hD/CKg3ojqMnHqRzFu3jEhBiaVbJI4V9PtE/P6T5a38/mFprEzX5hqMcW5aOr
V0yqH/z47jVPxzAG+spEaMi3em6/HRMKRRVrgdOga4VsFTiNQDqRiNbdjcJ4xAci
kwIDAQAB
-----END PUBLIC KEY-----
";

/// The Ed25519 public key of the signing key with seed `[7; 32]`.
fn ed25519_key() -> PublicKey {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    let vk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    PublicKey::parse_ed25519(&vk.to_public_key_pem(LineEnding::LF).unwrap()).unwrap()
}

fn rsa_key() -> PublicKey {
    PublicKey::parse_rsa(RSA_PUBLIC_KEY_PEM).unwrap()
}

fn hmac(e: &mut TestEntropy) -> KeyMaterial {
    KeyMaterial::Hmac(HmacSecret::generate(e).unwrap())
}

fn secret_of(k: &KeyRecord) -> &HmacSecret {
    match &k.material {
        KeyMaterial::Hmac(s) => s,
        KeyMaterial::Public(_) => panic!("{} is not an HMAC key", k.id),
    }
}

/// A plain active key of `account` with `material`, created at `at`.
fn key(e: &mut TestEntropy, account: AccountId, material: KeyMaterial, at: u64) -> KeyRecord {
    KeyRecord {
        id: ApiKeyId::generate(e).unwrap(),
        account_id: account,
        label: format!("key made at {at}"),
        material,
        permissions: Permissions::READ_ONLY,
        restrictions: Restrictions::default(),
        status: KeyStatus::Active,
        status_reason: None,
        created_at: UnixMillis(at),
        created_by: "owner".into(),
        updated_at: UnixMillis(at),
        updated_by: "owner".into(),
        last_used_at: None,
        last_used_ip: None,
        use_count: 0,
        withdrawal_holds: crate::WithdrawalHolds::default(),
        app_id: None,
    }
}

/// A plain active HMAC key of `account` with a fresh secret, created at `at` (also for each
/// backend's own tests).
pub fn hmac_key(e: &mut TestEntropy, account: AccountId, at: u64) -> KeyRecord {
    let material = hmac(e);
    key(e, account, material, at)
}

/// Restrictions with every field set, IPv4 and IPv6 included.
fn full_restrictions() -> Restrictions {
    Restrictions {
        ip_allowlist: IpAllowlist::parse(&["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]).unwrap(),
        expires_at: Some(UnixMillis(1_900_000_000_123)),
        symbols: vec![Symbol::parse("BTCUSDT").unwrap(), Symbol::parse("ETHBTC").unwrap()],
        withdraw_addresses: vec!["bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh".into(), "0xAbC123".into()],
        withdraw_limit_24h: Some(WithdrawLimit {
            asset: AssetCode::parse("BTC").unwrap(),
            amount: Amount::parse("0.5").unwrap(),
        }),
    }
}

fn draft(action: &str, target: &str, account: Option<AccountId>) -> AuditDraft {
    AuditDraft {
        at: UnixMillis(1_700_000_000_000),
        actor: "operator:cli".into(),
        action: action.into(),
        target: target.into(),
        account_id: account,
        source: Some("unix-socket".into()),
        details: serde_json::json!({ "action": action }),
    }
}

async fn new_account(store: &dyn Store, name: &str, at: u64) -> AccountRecord {
    let new = NewAccount {
        name: name.into(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${name}"),
        created_at: UnixMillis(at),
    };
    store.create_account(new, draft("account.create", &format!("account:{name}"), None)).await.unwrap()
}

async fn insert(store: &dyn Store, k: &KeyRecord) {
    store.insert_key(k, draft("key.create", k.id.as_str(), Some(k.account_id))).await.unwrap();
}

/// One request through key `k` at time 3 from 192.0.2.1.
fn one_use(k: &KeyRecord) -> UsageDelta {
    UsageDelta { key_id: k.id.clone(), count: 1, last_used_at: UnixMillis(3), last_used_ip: "192.0.2.1".into() }
}

/// The whole chain, read in small pages so paging is exercised too.
async fn whole_audit(store: &dyn Store) -> Vec<AuditRecord> {
    let mut all: Vec<AuditRecord> = Vec::new();
    loop {
        let after = all.last().map_or(0, |r| r.seq);
        let page = store.audit_records(after, 7, None).await.unwrap();
        if page.is_empty() {
            return all;
        }
        assert!(page.len() <= 7, "audit_records returned more than its limit");
        all.extend(page);
    }
}

async fn audit_len(store: &dyn Store) -> usize {
    whole_audit(store).await.len()
}

/// Asserts two key records are equal in every field, the secret or public key included.
#[track_caller]
fn assert_same_key(got: &KeyRecord, want: &KeyRecord) {
    let id = &want.id;
    assert_eq!(got.id, want.id);
    assert_eq!(got.account_id, want.account_id, "{id}: account");
    assert_eq!(got.label, want.label, "{id}: label");
    match (&got.material, &want.material) {
        (KeyMaterial::Hmac(a), KeyMaterial::Hmac(b)) => assert!(a.expose() == b.expose(), "{id}: HMAC secret differs"),
        (KeyMaterial::Public(a), KeyMaterial::Public(b)) => assert_eq!(a, b, "{id}: public key"),
        (a, b) => panic!("{id}: material {a:?} where {b:?} was stored"),
    }
    assert_eq!(got.material.key_type(), want.material.key_type(), "{id}: key type");
    assert_eq!(got.permissions, want.permissions, "{id}: permissions");
    assert_eq!(got.restrictions, want.restrictions, "{id}: restrictions");
    assert_eq!(got.status, want.status, "{id}: status");
    assert_eq!(got.status_reason, want.status_reason, "{id}: status_reason");
    assert_eq!(got.created_at, want.created_at, "{id}: created_at");
    assert_eq!(got.created_by, want.created_by, "{id}: created_by");
    assert_eq!(got.updated_at, want.updated_at, "{id}: updated_at");
    assert_eq!(got.updated_by, want.updated_by, "{id}: updated_by");
    assert_eq!(got.last_used_at, want.last_used_at, "{id}: last_used_at");
    assert_eq!(got.last_used_ip, want.last_used_ip, "{id}: last_used_ip");
    assert_eq!(got.use_count, want.use_count, "{id}: use_count");
    assert_eq!(got.withdrawal_holds, want.withdrawal_holds, "{id}: withdrawal_holds");
}

#[track_caller]
fn assert_same_keys(got: &[KeyRecord], want: &[KeyRecord]) {
    let ids = |ks: &[KeyRecord]| ks.iter().map(|k| k.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(want), "key list (ids, in order)");
    for (g, w) in got.iter().zip(want) {
        assert_same_key(g, w);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------------------------

/// Accounts come back by name, by id and in a list ordered by id; unknown ones are `None`.
pub async fn accounts_are_found_by_name_and_id_and_listed_in_id_order<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 2_000).await;
    assert_ne!(alice.id, bob.id);
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.status, AccountStatus::Active);
    assert_eq!(alice.created_at, UnixMillis(1_000));
    assert_eq!(store.account_by_name("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(store.account_by_name("bob").await.unwrap(), Some(bob.clone()));
    assert_eq!(store.account_by_id(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(store.account_by_id(bob.id).await.unwrap(), Some(bob.clone()));
    assert_eq!(store.account_by_name("carol").await.unwrap(), None);
    assert_eq!(store.account_by_id(AccountId(alice.id.0.max(bob.id.0) + 1000)).await.unwrap(), None);
    let mut want = vec![alice, bob];
    want.sort_by_key(|a| a.id);
    assert_eq!(store.list_accounts().await.unwrap(), want);
}

/// `update_account` replaces the password hash and status, leaves name and creation time, and
/// appends its audit record.
pub async fn account_update_replaces_only_password_hash_and_status_and_is_audited<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 2_000).await;
    let changed = AccountRecord {
        name: "mallory".into(),
        password_hash: "$argon2id$new".into(),
        status: AccountStatus::Disabled,
        created_at: UnixMillis(5),
        ..alice.clone()
    };
    let audit = draft("account.disable", "account:alice", Some(alice.id));
    store.update_account(&changed, audit.clone()).await.unwrap();
    let want =
        AccountRecord { password_hash: "$argon2id$new".into(), status: AccountStatus::Disabled, ..alice.clone() };
    assert_eq!(store.account_by_id(alice.id).await.unwrap(), Some(want.clone()));
    assert_eq!(store.account_by_name("alice").await.unwrap(), Some(want));
    assert_eq!(store.account_by_name("mallory").await.unwrap(), None);
    assert_eq!(store.account_by_id(bob.id).await.unwrap(), Some(bob), "another account changed");
    let chain = whole_audit(&*store).await;
    assert_eq!(chain.len(), 3);
    assert_eq!(chain[2].draft, audit);
}

/// Updating an account that does not exist is `NotFound` and appends nothing.
pub async fn update_of_a_missing_account_is_not_found_and_not_audited<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let ghost = AccountRecord { id: AccountId(alice.id.0 + 1000), name: "ghost".into(), ..alice };
    let err =
        store.update_account(&ghost, draft("account.disable", "account:ghost", Some(ghost.id))).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(audit_len(&*store).await, 1);
    assert_eq!(store.list_accounts().await.unwrap().len(), 1);
}

/// A second account with a taken name is a `Conflict`: no account, no audit record.
pub async fn duplicate_account_name_is_a_conflict_and_leaves_no_trace<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let again = NewAccount { name: "alice".into(), password_hash: "other".into(), created_at: UnixMillis(2_000) };
    let err = store.create_account(again, draft("account.create", "account:alice", None)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.list_accounts().await.unwrap(), vec![alice.clone()]);
    assert_eq!(store.account_by_name("alice").await.unwrap(), Some(alice));
    assert_eq!(audit_len(&*store).await, 1);
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// An HMAC key comes back with the very secret it was stored with; unknown ids are `None`.
pub async fn hmac_key_round_trips_with_an_identical_secret<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(1);
    let alice = new_account(&*store, "alice", 1_000).await;
    let k = hmac_key(&mut e, alice.id, 2_000);
    insert(&*store, &k).await;
    let got = store.get_key(&k.id).await.unwrap().expect("the key just inserted");
    assert_same_key(&got, &k);
    assert_same_keys(&store.list_keys(Some(alice.id)).await.unwrap(), std::slice::from_ref(&k));
    assert_same_keys(&store.list_keys(None).await.unwrap(), std::slice::from_ref(&k));
    let unknown = ApiKeyId::generate(&mut e).unwrap();
    assert!(store.get_key(&unknown).await.unwrap().is_none());
}

/// Ed25519 and RSA keys come back with their public keys and types.
pub async fn ed25519_and_rsa_public_keys_round_trip<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(2);
    let alice = new_account(&*store, "alice", 1_000).await;
    let ed = key(&mut e, alice.id, KeyMaterial::Public(ed25519_key()), 2_000);
    let rsa = key(&mut e, alice.id, KeyMaterial::Public(rsa_key()), 3_000);
    insert(&*store, &ed).await;
    insert(&*store, &rsa).await;
    assert_same_key(&store.get_key(&ed.id).await.unwrap().unwrap(), &ed);
    assert_same_key(&store.get_key(&rsa.id).await.unwrap().unwrap(), &rsa);
    assert_same_keys(&store.list_keys(None).await.unwrap(), &[ed, rsa]);
}

/// Every permission set and every restriction field (IPv4 and IPv6 ranges, expiry, symbols,
/// addresses, withdrawal limit) comes back exactly as stored.
pub async fn permissions_and_restrictions_round_trip_exactly<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(3);
    let alice = new_account(&*store, "alice", 1_000).await;
    let mut keys = Vec::new();
    for (i, perms) in [
        Permissions::READ_ONLY,
        Permissions::with(&[Permission::Trade]),
        Permissions::with(&[Permission::Withdraw]),
        Permissions::with(&[Permission::Trade, Permission::Withdraw]),
    ]
    .into_iter()
    .enumerate()
    {
        let at = 2_000 + i as u64;
        let mut k = if i % 2 == 0 {
            hmac_key(&mut e, alice.id, at)
        } else {
            key(&mut e, alice.id, KeyMaterial::Public(ed25519_key()), at)
        };
        k.permissions = perms;
        k.restrictions = if i == 0 { Restrictions::default() } else { full_restrictions() };
        k.label = format!("bot #{i}: ünïcödé, 'quotes' and \"more\"");
        k.status = [KeyStatus::Active, KeyStatus::Disabled, KeyStatus::Revoked, KeyStatus::Expired][i];
        k.created_by = ["owner", "operator", "system", "owner"][i].into();
        k.updated_at = UnixMillis(at + 10);
        k.updated_by = "system".into();
        k.last_used_at = (i > 1).then_some(UnixMillis(at + 5));
        k.last_used_ip = (i > 1).then(|| "2001:db8::7".to_owned());
        k.use_count = i as u64 * 1_000_000_007;
        insert(&*store, &k).await;
        keys.push(k);
    }
    for k in &keys {
        assert_same_key(&store.get_key(&k.id).await.unwrap().unwrap(), k);
    }
    assert_same_keys(&store.list_keys(Some(alice.id)).await.unwrap(), &keys);
}

/// `list_keys` returns one account's keys or all keys, oldest first, whatever the insertion
/// order; an account without keys has none.
pub async fn keys_are_listed_per_account_and_overall_in_creation_order<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(4);
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_000).await;
    let carol = new_account(&*store, "carol", 1_000).await;
    let a30 = hmac_key(&mut e, alice.id, 30_000);
    let a10 = key(&mut e, alice.id, KeyMaterial::Public(rsa_key()), 10_000);
    let b20 = hmac_key(&mut e, bob.id, 20_000);
    for k in [&a30, &b20, &a10] {
        insert(&*store, k).await;
    }
    assert_same_keys(&store.list_keys(Some(alice.id)).await.unwrap(), &[a10.clone(), a30.clone()]);
    assert_same_keys(&store.list_keys(Some(bob.id)).await.unwrap(), std::slice::from_ref(&b20));
    assert!(store.list_keys(Some(carol.id)).await.unwrap().is_empty());
    assert!(store.list_keys(Some(AccountId(carol.id.0 + 1000))).await.unwrap().is_empty());
    assert_same_keys(&store.list_keys(None).await.unwrap(), &[a10, b20, a30]);
}

/// `list_keys_page` walks every key of every account exactly once in pages of at most `limit`,
/// in one fixed order whatever the page size, each key as complete as `get_key` returns it; a
/// page after the last key is empty.
pub async fn keys_page_by_id_covering_every_key_exactly_once<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(41);
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_000).await;
    let mut all = Vec::new();
    for i in 0..11u64 {
        let owner = if i % 3 == 0 { bob.id } else { alice.id };
        let k = if i % 4 == 1 {
            key(&mut e, owner, KeyMaterial::Public(ed25519_key()), 2_000 + i)
        } else {
            hmac_key(&mut e, owner, 2_000 + i)
        };
        insert(&*store, &k).await;
        all.push(k);
    }
    assert!(store.list_keys_page(None, 0).await.unwrap().is_empty(), "a page of 0 is empty");
    let walk = |limit: u32| {
        let store = &store;
        async move {
            let mut seen: Vec<KeyRecord> = Vec::new();
            let mut pages = 0;
            loop {
                let page = store.list_keys_page(seen.last().map(|k| &k.id), limit).await.unwrap();
                assert!(page.len() <= limit as usize, "page of {} over the limit {limit}", page.len());
                if page.is_empty() {
                    break;
                }
                pages += 1;
                assert!(pages <= 100, "the walk does not end");
                seen.extend(page);
            }
            (seen, pages)
        }
    };
    let (one_page, pages) = walk(100).await;
    assert_eq!(pages, 1);
    assert_eq!(one_page.len(), all.len());
    for limit in [1u32, 3, 4, 11] {
        let (seen, pages) = walk(limit).await;
        assert_eq!(pages, all.len().div_ceil(limit as usize), "pages of {limit}");
        // The same order whatever the page size, and every key exactly once.
        assert_same_keys(&seen, &one_page);
    }
    for k in &all {
        let listed = one_page.iter().find(|s| s.id == k.id).expect("every stored key is listed");
        assert_same_key(listed, k);
    }
    // A cursor in the middle: what comes after it is exactly the rest of the walk.
    let mid = &one_page[4].id;
    assert_same_keys(&store.list_keys_page(Some(mid), 100).await.unwrap(), &one_page[5..]);
    let last = &one_page[one_page.len() - 1].id;
    assert!(store.list_keys_page(Some(last), 100).await.unwrap().is_empty());
}

/// Inserting a key id that exists is a `Conflict`; the stored key and the chain are unchanged.
pub async fn duplicate_key_id_is_a_conflict_and_keeps_the_original<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(5);
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_000).await;
    let k = hmac_key(&mut e, alice.id, 2_000);
    insert(&*store, &k).await;
    let before = audit_len(&*store).await;
    let mut impostor = hmac_key(&mut e, bob.id, 3_000);
    impostor.id = k.id.clone();
    let err = store.insert_key(&impostor, draft("key.create", k.id.as_str(), Some(bob.id))).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_same_key(&store.get_key(&k.id).await.unwrap().unwrap(), &k);
    assert!(store.list_keys(Some(bob.id)).await.unwrap().is_empty());
    assert_eq!(audit_len(&*store).await, before);
}

/// A key for an account that does not exist is `NotFound`: no key, no audit record.
pub async fn key_for_an_unknown_account_is_not_found_and_leaves_no_trace<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(6);
    let alice = new_account(&*store, "alice", 1_000).await;
    let ghost = AccountId(alice.id.0 + 1000);
    let k = hmac_key(&mut e, ghost, 2_000);
    let err = store.insert_key(&k, draft("key.create", k.id.as_str(), Some(ghost))).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(store.get_key(&k.id).await.unwrap().is_none());
    assert!(store.list_keys(None).await.unwrap().is_empty());
    assert_eq!(audit_len(&*store).await, 1);
}

/// `update_key` writes label, permissions, restrictions, status and `updated_*`, and nothing
/// else: account, material, creation fields and usage keep their stored values.
pub async fn update_key_changes_only_mutable_fields_and_is_audited<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(7);
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_000).await;
    let original = hmac_key(&mut e, alice.id, 2_000);
    let other = key(&mut e, alice.id, KeyMaterial::Public(ed25519_key()), 2_500);
    insert(&*store, &original).await;
    insert(&*store, &other).await;
    store
        .record_usage(&[UsageDelta {
            key_id: original.id.clone(),
            count: 4,
            last_used_at: UnixMillis(2_100),
            last_used_ip: "192.0.2.1".into(),
        }])
        .await
        .unwrap();
    let stored = store.get_key(&original.id).await.unwrap().unwrap();

    let mut changed = hmac_key(&mut e, bob.id, 9_000);
    changed.id = original.id.clone();
    changed.label = "renamed".into();
    changed.permissions = Permissions::with(&[Permission::Trade]);
    changed.restrictions = full_restrictions();
    changed.status = KeyStatus::Disabled;
    changed.status_reason = Some("policy:unused".into());
    changed.created_by = "system".into();
    changed.updated_at = UnixMillis(3_000);
    changed.updated_by = "operator".into();
    changed.last_used_at = Some(UnixMillis(1));
    changed.last_used_ip = Some("198.51.100.1".into());
    changed.use_count = 999;
    changed.withdrawal_holds = crate::WithdrawalHolds {
        key: Some(crate::HoldPeriod { since: UnixMillis(3_000), until: UnixMillis(86_403_000) }),
        addresses: vec![crate::AddressHold {
            address: "bc1qnew".into(),
            period: crate::HoldPeriod { since: UnixMillis(3_000), until: UnixMillis(86_403_000) },
        }],
    };
    let audit = draft("key.update", original.id.as_str(), Some(alice.id));
    store.update_key(&changed, audit.clone()).await.unwrap();

    let want = KeyRecord {
        label: changed.label.clone(),
        permissions: changed.permissions,
        restrictions: changed.restrictions.clone(),
        withdrawal_holds: changed.withdrawal_holds.clone(),
        status: changed.status,
        status_reason: changed.status_reason.clone(),
        updated_at: changed.updated_at,
        updated_by: changed.updated_by.clone(),
        ..stored
    };
    assert_eq!(want.use_count, 4);
    assert_same_key(&store.get_key(&original.id).await.unwrap().unwrap(), &want);
    assert_same_key(&store.get_key(&other.id).await.unwrap().unwrap(), &other);
    assert!(store.list_keys(Some(bob.id)).await.unwrap().is_empty());
    let chain = whole_audit(&*store).await;
    assert_eq!(chain.len(), 5);
    assert_eq!(chain[4].draft, audit);
}

/// Updating a key that does not exist is `NotFound` and appends nothing.
pub async fn update_of_a_missing_key_is_not_found_and_not_audited<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(8);
    let alice = new_account(&*store, "alice", 1_000).await;
    let k = hmac_key(&mut e, alice.id, 2_000);
    let err = store.update_key(&k, draft("key.update", k.id.as_str(), Some(alice.id))).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(store.get_key(&k.id).await.unwrap().is_none());
    assert_eq!(audit_len(&*store).await, 1);
}

/// A revoked key is never updated again, even by a writer holding a copy read before the
/// revocation: the store refuses with a conflict and records nothing.
pub async fn a_revoked_key_is_never_updated_again<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(81);
    let alice = new_account(&*store, "alice", 1_000).await;
    let k = hmac_key(&mut e, alice.id, 2_000);
    insert(&*store, &k).await;
    let stale = k.clone();
    let mut revoked = k.clone();
    revoked.status = KeyStatus::Revoked;
    store.update_key(&revoked, draft("key.revoke", k.id.as_str(), Some(alice.id))).await.unwrap();
    let before = audit_len(&*store).await;
    let mut relabelled = stale;
    relabelled.label = "still here".into();
    let err = store.update_key(&relabelled, draft("key.edit", k.id.as_str(), Some(alice.id))).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let got = store.get_key(&k.id).await.unwrap().unwrap();
    assert_eq!(got.status, KeyStatus::Revoked);
    assert_ne!(got.label, "still here");
    assert_eq!(audit_len(&*store).await, before);
}

fn entry(seq: i64) -> crate::JournalEntry {
    crate::JournalEntry {
        seq,
        at: UnixMillis(1_000 + u64::try_from(seq).unwrap()),
        command: format!("cmd {seq}").into_bytes(),
    }
}

/// The exchange journal is appended in all-or-nothing batches, read back in order and in pages,
/// refuses a taken sequence number without writing any of its batch, and survives a restart.
pub async fn exchange_journal_appends_atomically_and_reads_back_in_order<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    assert!(store.journal_after(0, 10).await.unwrap().is_empty());
    store.append_journal(0, &[entry(1), entry(2), entry(3)], Vec::new(), &[]).await.unwrap();
    store.append_journal(0, &[entry(4), entry(5)], Vec::new(), &[]).await.unwrap();
    store.append_journal(0, &[], Vec::new(), &[]).await.unwrap();
    assert_eq!(store.journal_after(0, 2).await.unwrap(), vec![entry(1), entry(2)]);
    assert_eq!(store.journal_after(2, 100).await.unwrap(), vec![entry(3), entry(4), entry(5)]);
    let err = store.append_journal(0, &[entry(6), entry(5)], Vec::new(), &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store.journal_after(5, 10).await.unwrap().is_empty(), "entry 6 was not half-written");
    drop(store);
    let store = h.open().await;
    assert_eq!(store.journal_after(0, 100).await.unwrap().len(), 5);
}

/// A batch's audit records (deposits, withdrawals) commit with its journal entries or not at
/// all: a batch refused for a taken sequence number leaves no audit record behind.
pub async fn journal_entries_and_their_audit_records_commit_together<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let deposit = |n: u64| AuditDraft {
        details: serde_json::json!({ "deposit": n }),
        ..draft("exchange.deposit", "account:alice", Some(alice.id))
    };
    store.append_journal(0, &[entry(1), entry(2)], vec![deposit(1), deposit(2)], &[]).await.unwrap();
    let chain = whole_audit(&*store).await;
    assert_eq!(chain.iter().map(|r| r.draft.clone()).collect::<Vec<_>>()[1..], [deposit(1), deposit(2)]);
    let err = store.append_journal(0, &[entry(3), entry(2)], vec![deposit(3)], &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(whole_audit(&*store).await, chain, "a refused batch left an audit record");
    assert_eq!(store.journal_after(0, 10).await.unwrap(), vec![entry(1), entry(2)]);
    verify_chain([0; 32], 0, &chain).unwrap();
}

/// `update_key_if` writes only over the record the caller read: a key changed meanwhile (by
/// another node) is `Stale` and keeps the other change; revoked and missing keys answer as
/// `update_key` does; a write over the current record succeeds, with its audit record.
pub async fn a_conditional_key_update_refuses_a_key_changed_meanwhile<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(41);
    let alice = new_account(&*store, "alice", 1_000).await;
    let k = hmac_key(&mut e, alice.id, 2_000);
    insert(&*store, &k).await;
    let d = |a: &str| draft(a, k.id.as_str(), Some(alice.id));
    // Node B relabels; node A, which read `k` before, disables.
    let relabelled = KeyRecord { label: "b".into(), updated_at: UnixMillis(3_000), ..k.clone() };
    store.update_key_if(&relabelled, &k, d("key.edit")).await.unwrap();
    let disabled = KeyRecord { status: KeyStatus::Disabled, updated_at: UnixMillis(3_001), ..k.clone() };
    let before = audit_len(&*store).await;
    let err = store.update_key_if(&disabled, &k, d("key.edit")).await.unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err:?}");
    assert_eq!(audit_len(&*store).await, before, "a refused write leaves no audit record");
    assert_same_key(&store.get_key(&k.id).await.unwrap().unwrap(), &relabelled);
    // Read again, apply again: it goes through.
    let disabled = KeyRecord { status: KeyStatus::Disabled, updated_at: UnixMillis(3_002), ..relabelled.clone() };
    store.update_key_if(&disabled, &relabelled, d("key.edit")).await.unwrap();
    assert_same_key(&store.get_key(&k.id).await.unwrap().unwrap(), &disabled);
    let revoked = KeyRecord { status: KeyStatus::Revoked, updated_at: UnixMillis(3_003), ..disabled.clone() };
    store.update_key_if(&revoked, &disabled, d("key.revoke")).await.unwrap();
    let err = store.update_key_if(&disabled, &revoked, d("key.edit")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "revoked keys never change: {err:?}");
    let ghost = hmac_key(&mut e, alice.id, 2_000);
    let err = store.update_key_if(&ghost, &ghost, d("key.edit")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

/// Single-use signatures are recorded in their batch's transaction under a unique key: found
/// again by `signatures_used` (after a restart too), refused with the whole batch when recorded
/// already, and forgotten once old.
pub async fn single_use_signatures_are_recorded_with_their_batch_once<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    store.append_journal(0, &[entry(1)], Vec::new(), &[(a, UnixMillis(1_000)), (b, UnixMillis(5_000))]).await.unwrap();
    let mut used = store.signatures_used(&[a, b, c]).await.unwrap();
    used.sort_unstable();
    assert_eq!(used, vec![a, b]);
    let err = store.append_journal(0, &[entry(2)], Vec::new(), &[(c, UnixMillis(6_000)), (a, UnixMillis(6_000))]).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert!(store.journal_after(1, 10).await.unwrap().is_empty(), "the batch of a replayed signature is not written");
    assert!(store.signatures_used(&[c]).await.unwrap().is_empty());
    drop(store);
    let store = h.open().await;
    assert_eq!(store.signatures_used(&[b]).await.unwrap(), vec![b], "recorded durably");
    let mut recent = store.recent_signatures(UnixMillis(1_000)).await.unwrap();
    recent.sort_unstable();
    assert_eq!(recent, vec![(a, UnixMillis(1_000)), (b, UnixMillis(5_000))]);
    assert_eq!(store.recent_signatures(UnixMillis(1_001)).await.unwrap(), vec![(b, UnixMillis(5_000))]);
    assert_eq!(store.forget_signatures(UnixMillis(2_000)).await.unwrap(), 1);
    assert_eq!(store.signatures_used(&[a, b]).await.unwrap(), vec![b]);
    let many: Vec<[u8; 32]> = (0..700u32)
        .map(|i| {
            let mut x = [9u8; 32];
            x[..4].copy_from_slice(&i.to_be_bytes());
            x
        })
        .collect();
    assert!(store.signatures_used(&many).await.unwrap().is_empty(), "long lists are read in chunks");
}

/// Claiming the writer raises the term and records where the writer is; an append under any other
/// term is fenced and writes nothing. Where several processes share the backend, the lock admits
/// one writer at a time and passes to the next once the holder's connection is gone. Nodes that
/// share the master key derive the same channel key, and another master key gives another.
pub async fn the_exchange_writer_takes_over_with_a_new_term_that_fences_the_old_one<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    assert_eq!(store.current_writer().await.unwrap().term, 0);
    let first = store.claim_writer("a", "http://127.0.0.1:1", UnixMillis(1_000)).await.unwrap().expect("free");
    assert_eq!(first.term, 1);
    let lease = store.current_writer().await.unwrap();
    assert_eq!((lease.term, lease.node.as_str(), lease.endpoint.as_str()), (1, "a", "http://127.0.0.1:1"));
    assert_eq!(lease.since, UnixMillis(1_000));
    let err = store.append_journal(0, &[entry(1)], Vec::new(), &[([7; 32], UnixMillis(1))]).await;
    assert!(matches!(err, Err(StoreError::Fenced(_))), "{err:?}");
    assert!(store.journal_after(0, 10).await.unwrap().is_empty(), "a fenced append writes nothing");
    assert!(store.signatures_used(&[[7; 32]]).await.unwrap().is_empty());
    store.append_journal(1, &[entry(1)], Vec::new(), &[]).await.unwrap();
    let mut lock = first.lock;
    lock.check().await.unwrap();
    if H::SHARED {
        let other = h.open().await;
        assert!(other.claim_writer("b", "", UnixMillis(2_000)).await.unwrap().is_none(), "held by a");
        // A writer that renews is not deposed; one that stopped renewing for longer is, and its
        // lock goes with its connection.
        lock.renew(1).await.unwrap();
        assert!(!other.depose_stale_writer(60_000).await.unwrap(), "renewed just now");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        assert!(other.depose_stale_writer(10).await.unwrap(), "not renewed for 30 ms");
        assert!(lock.check().await.is_err(), "the deposed writer's lock connection is gone");
        assert!(lock.renew(1).await.is_err());
        // The server releases the lock when it notices the connection closed.
        let mut second = None;
        for _ in 0..100 {
            second = other.claim_writer("b", "http://127.0.0.1:2", UnixMillis(3_000)).await.unwrap();
            if second.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(second.expect("taken over once a's connection closed").term, 2);
    } else {
        drop(lock);
        assert_eq!(store.claim_writer("b", "http://127.0.0.1:2", UnixMillis(3_000)).await.unwrap().unwrap().term, 2);
        assert!(!store.depose_stale_writer(0).await.unwrap(), "one process: nobody to depose");
    }
    let err = store.append_journal(1, &[entry(2)], Vec::new(), &[]).await;
    assert!(matches!(err, Err(StoreError::Fenced(_))), "the deposed writer cannot append: {err:?}");
    store.append_journal(2, &[entry(2)], Vec::new(), &[]).await.unwrap();
    assert_eq!(store.journal_after(0, 10).await.unwrap().len(), 2);
    assert_eq!(store.current_writer().await.unwrap().node, "b");
    let same = h.open().await;
    assert_eq!(*same.channel_key(), *store.channel_key(), "same master key, same channel key");
    drop((store, same));
    let other_key = h.open_with_master_key([0x17; 32]).await;
    assert_ne!(*other_key.channel_key(), *h.open().await.channel_key());
}

// ---------------------------------------------------------------------------------------------
// The faucet counter
// ---------------------------------------------------------------------------------------------

/// The faucet counter grants up to its limit per window, refuses beyond it (even to many
/// concurrent requests, on any backend), starts over when the window ends, gives a grant back
/// only in its own window, and survives a restart.
pub async fn faucet_grants_stop_at_the_limit_even_when_concurrent<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let day = 86_400_000;
    let t0 = UnixMillis(1_767_225_600_000);
    assert_eq!(store.faucet_counter(alice.id).await.unwrap(), (0, UnixMillis(0)), "no grant yet");
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.take_faucet_grant(alice.id, t0, day, 3).await.unwrap() })
        })
        .collect();
    let mut granted = Vec::new();
    for t in tasks {
        if let FaucetGrant::Granted { grants, window_start } = t.await.unwrap() {
            assert_eq!(window_start, t0);
            granted.push(grants);
        }
    }
    granted.sort_unstable();
    assert_eq!(granted, [1, 2, 3], "exactly the limit is granted, each count once");
    assert_eq!(store.faucet_counter(alice.id).await.unwrap(), (3, t0), "the counter as the page shows it");
    let refused = store.take_faucet_grant(alice.id, UnixMillis(t0.0 + 10), day, 3).await.unwrap();
    assert_eq!(refused, FaucetGrant::Refused { next_at: UnixMillis(t0.0 + day) });
    // A grant given back (its deposit failed) can be taken again, in its own window only.
    store.return_faucet_grant(alice.id, UnixMillis(t0.0 + 1)).await.unwrap();
    assert!(matches!(store.take_faucet_grant(alice.id, t0, day, 3).await.unwrap(), FaucetGrant::Refused { .. }));
    store.return_faucet_grant(alice.id, t0).await.unwrap();
    assert_eq!(
        store.take_faucet_grant(alice.id, t0, day, 3).await.unwrap(),
        FaucetGrant::Granted { grants: 3, window_start: t0 }
    );
    drop(store);
    let store = h.open().await;
    assert!(matches!(store.take_faucet_grant(alice.id, t0, day, 3).await.unwrap(), FaucetGrant::Refused { .. }));
    let next = UnixMillis(t0.0 + day);
    assert_eq!(
        store.take_faucet_grant(alice.id, next, day, 3).await.unwrap(),
        FaucetGrant::Granted { grants: 1, window_start: next }
    );
    let err = store.take_faucet_grant(AccountId(alice.id.0 + 99), t0, day, 3).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Invite codes (issue #18: `serve --signup invite`)
// ---------------------------------------------------------------------------------------------

/// A code's hash, different per `n`.
fn code_hash(n: u8) -> [u8; 32] {
    [n; 32]
}

async fn new_invite(store: &dyn Store, n: u8, note: &str, expires_at: u64) -> crate::InviteRecord {
    let new = crate::NewInvite {
        code_hash: code_hash(n),
        note: note.into(),
        created_at: UnixMillis(1_000),
        created_by: "operator:cli".into(),
        expires_at: UnixMillis(expires_at),
    };
    store.create_invite(new, draft("invite.create", "", None)).await.unwrap()
}

fn sign_up_of(name: &str, at: u64) -> (NewAccount, AuditDraft, AuditDraft) {
    let new = NewAccount {
        name: name.into(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${name}"),
        created_at: UnixMillis(at),
    };
    (new, draft("account.sign_up", &format!("account:{name}"), None), draft("invite.redeem", "", None))
}

async fn redeem(store: &dyn Store, n: u8, name: &str, at: u64) -> Result<AccountRecord, crate::InviteRefusal> {
    let (new, sign_up, redeem) = sign_up_of(name, at);
    store.create_account_with_invite(&code_hash(n), new, sign_up, redeem).await.unwrap()
}

/// An invite redeems exactly once, even when many sign-ups present its code at the same time:
/// one account is created, the others are told it is used and leave no account and no audit
/// record; the invite then names its account, and the three audit records (create, sign-up,
/// redeem) are in the chain, the last two attributed to the new account.
pub async fn an_invite_redeems_once_even_when_concurrent<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let invite = new_invite(&*store, 1, "for alice", 10_000).await;
    assert_eq!(invite.refusal(UnixMillis(2_000)), None);
    let before = audit_len(&*store).await;
    let outcomes = futures_all((0..8).map(|i| {
        let store = Arc::clone(&store);
        async move { redeem(&*store, 1, &format!("user{i}"), 2_000).await }
    }))
    .await;
    let winners: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().filter(|o| o.is_err()).all(|o| *o == Err(crate::InviteRefusal::Used)), "{outcomes:?}");
    let winner = winners[0].clone();
    assert_eq!(store.list_accounts().await.unwrap(), std::slice::from_ref(&winner), "only the winner's account exists");
    let listed = store.list_invites().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, invite.id);
    assert_eq!(listed[0].note, "for alice");
    assert_eq!(listed[0].used_at, Some(UnixMillis(2_000)));
    assert_eq!(listed[0].used_by, Some(winner.id));
    assert_eq!(listed[0].used_by_name.as_deref(), Some(winner.name.as_str()));
    assert_eq!(store.invite_by_code(&code_hash(1)).await.unwrap().as_ref(), Some(&listed[0]));
    assert_eq!(store.invite_by_code(&code_hash(9)).await.unwrap(), None);
    let audit = whole_audit(&*store).await;
    assert_eq!(audit.len(), before + 2, "one sign-up and one redemption, nothing for the refused ones");
    let tail: Vec<_> = audit[before..].iter().map(|r| (r.draft.action.as_str(), r.draft.account_id)).collect();
    assert_eq!(tail, [("account.sign_up", Some(winner.id)), ("invite.redeem", Some(winner.id))]);
    assert_eq!(audit[before + 1].draft.target, format!("invite:{}", invite.id));
    assert_eq!(audit[before - 1].draft.action, "invite.create");
    assert_eq!(audit[before - 1].draft.target, format!("invite:{}", invite.id));
    // The account and the used invite survive a restart; the code stays spent.
    drop(store);
    let store = h.open().await;
    assert_eq!(redeem(&*store, 1, "late", 2_500).await, Err(crate::InviteRefusal::Used));
    assert_eq!(store.list_invites().await.unwrap()[0].used_by, Some(winner.id));
}

/// An expired, a revoked and an unknown code are refused and write nothing; revoking works once
/// and only on an unused invite, with its audit record.
pub async fn expired_revoked_and_unknown_invites_are_refused<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let soon = new_invite(&*store, 1, "expires", 5_000).await;
    let revoked = new_invite(&*store, 2, "revoked", 50_000).await;
    let before = audit_len(&*store).await;
    assert_eq!(redeem(&*store, 1, "alice", 5_000).await, Err(crate::InviteRefusal::Expired), "expiry is exclusive");
    assert_eq!(redeem(&*store, 1, "alice", 9_000).await, Err(crate::InviteRefusal::Expired));
    assert_eq!(redeem(&*store, 3, "alice", 2_000).await, Err(crate::InviteRefusal::Unknown));
    let r = store.revoke_invite(revoked.id, UnixMillis(3_000), draft("invite.revoke", "", None)).await.unwrap();
    assert_eq!(r.revoked_at, Some(UnixMillis(3_000)));
    assert_eq!(redeem(&*store, 2, "alice", 4_000).await, Err(crate::InviteRefusal::Revoked));
    let again = store.revoke_invite(revoked.id, UnixMillis(3_500), draft("invite.revoke", "", None)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let missing = store.revoke_invite(revoked.id + 100, UnixMillis(3_500), draft("invite.revoke", "", None)).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))), "{missing:?}");
    assert!(store.list_accounts().await.unwrap().is_empty(), "no refused code created an account");
    let audit = whole_audit(&*store).await;
    assert_eq!(audit.len(), before + 1, "only the revocation is audited");
    assert_eq!(audit[before].draft.action, "invite.revoke");
    assert_eq!(audit[before].draft.target, format!("invite:{}", revoked.id));
    let listed = store.list_invites().await.unwrap();
    assert_eq!(listed.iter().map(|i| i.id).collect::<Vec<_>>(), [soon.id, revoked.id]);
    assert_eq!(listed[0].used_at, None);
    assert_eq!(listed[1].revoked_at, Some(UnixMillis(3_000)));
    // A used invite cannot be revoked.
    let used = new_invite(&*store, 4, "used", 50_000).await;
    let bob = redeem(&*store, 4, "bob", 4_000).await.unwrap();
    let late = store.revoke_invite(used.id, UnixMillis(4_500), draft("invite.revoke", "", None)).await;
    assert!(matches!(&late, Err(StoreError::Conflict(m)) if m.contains("bob")), "{late:?}");
    assert_eq!(store.invite_by_code(&code_hash(4)).await.unwrap().unwrap().used_by, Some(bob.id));
}

/// Redeeming and creating the account are one transaction: when the account cannot be created
/// (its name is taken) the invite stays usable and no audit record is written; the same code
/// then creates an account under a free name.
pub async fn redeeming_an_invite_and_creating_the_account_commit_together<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    new_account(&*store, "alice", 1_000).await;
    let invite = new_invite(&*store, 7, "", 50_000).await;
    let before = audit_len(&*store).await;
    let (new, sign_up, redeem_draft) = sign_up_of("alice", 2_000);
    let err = store.create_account_with_invite(&code_hash(7), new, sign_up, redeem_draft).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let after = store.invite_by_code(&code_hash(7)).await.unwrap().unwrap();
    assert_eq!((after.used_at, after.used_by), (None, None), "the failed sign-up left the invite usable");
    assert_eq!(audit_len(&*store).await, before, "and wrote no audit record");
    assert_eq!(store.list_accounts().await.unwrap().len(), 1);
    let bob = redeem(&*store, 7, "bob", 3_000).await.unwrap();
    assert_eq!(store.account_by_name("bob").await.unwrap(), Some(bob.clone()));
    let listed = store.list_invites().await.unwrap();
    assert_eq!((listed[0].id, listed[0].used_by), (invite.id, Some(bob.id)));
    assert_eq!(audit_len(&*store).await, before + 2);
}

/// Snapshots: the latest one wins and survives a restart.
pub async fn exchange_snapshots_keep_the_latest<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    assert_eq!(store.latest_snapshot().await.unwrap(), None);
    store.save_snapshot(3, b"state at 3").await.unwrap();
    store.save_snapshot(5, b"state at 5").await.unwrap();
    assert_eq!(store.latest_snapshot().await.unwrap(), Some((5, b"state at 5".to_vec())));
    drop(store);
    let store = h.open().await;
    assert_eq!(store.latest_snapshot().await.unwrap(), Some((5, b"state at 5".to_vec())));
}

/// Usage counts add up across and within batches; last-used time and address move only forward
/// (an equal time takes the newer address); unknown keys are skipped; nothing is audited.
pub async fn record_usage_accumulates_counts_keeps_the_latest_time_and_address_and_skips_unknown_keys<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(9);
    let alice = new_account(&*store, "alice", 1_000).await;
    let k1 = hmac_key(&mut e, alice.id, 2_000);
    let k2 = key(&mut e, alice.id, KeyMaterial::Public(ed25519_key()), 2_000);
    let k3 = hmac_key(&mut e, alice.id, 2_000);
    for k in [&k1, &k2, &k3] {
        insert(&*store, k).await;
    }
    let unknown = ApiKeyId::generate(&mut e).unwrap();
    let d = |k: &ApiKeyId, count: u64, at: u64, ip: &str| UsageDelta {
        key_id: k.clone(),
        count,
        last_used_at: UnixMillis(at),
        last_used_ip: ip.into(),
    };
    let usage = async |k: &KeyRecord| {
        let got = store.get_key(&k.id).await.unwrap().unwrap();
        (got.use_count, got.last_used_at.map(|t| t.0), got.last_used_ip)
    };

    store.record_usage(&[]).await.unwrap();
    store
        .record_usage(&[
            d(&k1.id, 3, 10_000, "192.0.2.1"),
            d(&unknown, 5, 10_000, "192.0.2.99"),
            d(&k1.id, 2, 5_000, "192.0.2.2"),
            d(&k2.id, 1, 7_000, "2001:db8::1"),
        ])
        .await
        .unwrap();
    assert_eq!(usage(&k1).await, (5, Some(10_000), Some("192.0.2.1".into())));
    assert_eq!(usage(&k2).await, (1, Some(7_000), Some("2001:db8::1".into())));
    assert_eq!(usage(&k3).await, (0, None, None));

    store.record_usage(&[d(&k1.id, 1, 10_000, "192.0.2.3")]).await.unwrap();
    assert_eq!(usage(&k1).await, (6, Some(10_000), Some("192.0.2.3".into())));
    store.record_usage(&[d(&k1.id, 4, 9_000, "192.0.2.4")]).await.unwrap();
    assert_eq!(usage(&k1).await, (10, Some(10_000), Some("192.0.2.3".into())));
    store.record_usage(&[d(&k1.id, 1, 11_000, "192.0.2.5")]).await.unwrap();
    assert_eq!(usage(&k1).await, (11, Some(11_000), Some("192.0.2.5".into())));
    store.record_usage(&[d(&unknown, 1, 11_000, "192.0.2.5")]).await.unwrap();

    assert!(store.get_key(&unknown).await.unwrap().is_none());
    assert_eq!(audit_len(&*store).await, 4, "usage must not be audited");
}

/// A use count that would pass the largest storable count (`i64::MAX`) stays there: no error, no
/// wrap-around, whether it gets there in small steps or in one delta beyond the range.
pub async fn usage_counts_saturate_at_the_largest_storable_count<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(16);
    let alice = new_account(&*store, "alice", 1_000).await;
    let mut k = hmac_key(&mut e, alice.id, 2_000);
    k.use_count = i64::MAX as u64 - 2;
    insert(&*store, &k).await;
    let d = |count: u64, at: u64| UsageDelta {
        key_id: k.id.clone(),
        count,
        last_used_at: UnixMillis(at),
        last_used_ip: "192.0.2.1".into(),
    };
    let count = async || store.get_key(&k.id).await.unwrap().unwrap().use_count;
    store.record_usage(&[d(1, 3_000)]).await.unwrap();
    assert_eq!(count().await, i64::MAX as u64 - 1);
    store.record_usage(&[d(5, 3_001)]).await.unwrap();
    assert_eq!(count().await, i64::MAX as u64);
    store.record_usage(&[d(1, 3_002), d(u64::MAX, 3_003)]).await.unwrap();
    let got = store.get_key(&k.id).await.unwrap().unwrap();
    assert_eq!((got.use_count, got.last_used_at), (i64::MAX as u64, Some(UnixMillis(3_003))));
}

/// Usage flushes running at once over the same keys, listed in opposite orders, all succeed (no
/// deadlock between them) and every count is added exactly once.
pub async fn concurrent_usage_flushes_over_the_same_keys_all_count<H: Harness>() {
    const FLUSHES: u64 = 16;
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(17);
    let alice = new_account(&*store, "alice", 1_000).await;
    let mut keys = Vec::new();
    for i in 0..6 {
        let k = hmac_key(&mut e, alice.id, 2_000 + i);
        insert(&*store, &k).await;
        keys.push(k.id);
    }
    let mut flushes = Vec::new();
    for f in 0..FLUSHES {
        let store = Arc::clone(&store);
        let mut batch: Vec<UsageDelta> = keys
            .iter()
            .map(|id| UsageDelta {
                key_id: id.clone(),
                count: 1,
                last_used_at: UnixMillis(3_000 + f),
                last_used_ip: format!("192.0.2.{f}"),
            })
            .collect();
        if f % 2 == 1 {
            batch.reverse();
        }
        flushes.push(tokio::spawn(async move {
            for _ in 0..5 {
                store.record_usage(&batch).await.unwrap();
            }
        }));
    }
    for f in flushes {
        f.await.unwrap();
    }
    for id in &keys {
        let got = store.get_key(id).await.unwrap().unwrap();
        assert_eq!(got.use_count, FLUSHES * 5, "{id}");
        assert_eq!(got.last_used_at, Some(UnixMillis(3_000 + FLUSHES - 1)), "{id}");
        assert_eq!(got.last_used_ip, Some(format!("192.0.2.{}", FLUSHES - 1)), "{id}");
    }
}

// ---------------------------------------------------------------------------------------------
// The audit chain
// ---------------------------------------------------------------------------------------------

/// Each successful mutation appends one record, numbered from 1 without gaps, holding its draft
/// exactly (details JSON included), chained so that `verify_chain` accepts the whole log;
/// failed mutations and usage append nothing. `create_account` attributes its record to the new
/// account when the draft names none.
pub async fn every_mutation_appends_exactly_one_chained_audit_record<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(10);
    let mut want: Vec<AuditDraft> = Vec::new();

    let alice = new_account(&*store, "alice", 1_000).await;
    want.push(draft("account.create", "account:alice", Some(alice.id)));
    let mut explicit = draft("account.create", "account:bob", None);
    explicit.source = None;
    explicit.details = serde_json::json!({ "by": "signup" });
    let bob = store
        .create_account(
            NewAccount { name: "bob".into(), password_hash: "h".into(), created_at: UnixMillis(1) },
            explicit.clone(),
        )
        .await
        .unwrap();
    want.push(AuditDraft { account_id: Some(bob.id), ..explicit });

    let k = hmac_key(&mut e, alice.id, 2_000);
    insert(&*store, &k).await;
    want.push(draft("key.create", k.id.as_str(), Some(alice.id)));
    let dup = store.insert_key(&k, draft("key.create", k.id.as_str(), Some(alice.id))).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    let dup = store
        .create_account(
            NewAccount { name: "bob".into(), password_hash: "h".into(), created_at: UnixMillis(1) },
            draft("account.create", "account:bob", None),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");

    let revoked = KeyRecord { status: KeyStatus::Revoked, ..k.clone() };
    let d = draft("key.revoke", k.id.as_str(), Some(alice.id));
    store.update_key(&revoked, d.clone()).await.unwrap();
    want.push(d);
    let d = draft("account.disable", "account:bob", Some(bob.id));
    store.update_account(&AccountRecord { status: AccountStatus::Disabled, ..bob.clone() }, d.clone()).await.unwrap();
    want.push(d);
    store.record_usage(&[one_use(&k)]).await.unwrap();
    let details = serde_json::json!({
        "nested": { "b": [1, 2.5, -3, 1e-7], "a": "ünïcödé \"quoted\" \\ \u{1F511}" },
        "z": null,
        "big": u64::MAX,
        "neg": i64::MIN,
        "empty": {},
    });
    let denial = AuditDraft {
        at: UnixMillis(1_700_000_060_000),
        actor: format!("api:{}", k.id),
        action: "api.denied".into(),
        target: k.id.to_string(),
        account_id: None,
        source: Some("2001:db8::1".into()),
        details,
    };
    let appended = store.append_audit(denial.clone()).await.unwrap();
    want.push(denial);

    let chain = whole_audit(&*store).await;
    assert_eq!(chain.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=want.len() as i64).collect::<Vec<_>>());
    for (r, w) in chain.iter().zip(&want) {
        assert_eq!(&r.draft, w, "audit record {}", r.seq);
    }
    assert_eq!(chain.last(), Some(&appended), "append_audit returns the record as stored");
    assert_eq!(chain[0].prev_hash, [0; 32]);
    let last = chain.last().unwrap();
    assert_eq!(verify_chain([0; 32], 0, &chain), Ok((last.hash, last.seq)));
    assert_eq!(appended.hash, chain_hash(&appended.prev_hash, appended.seq, &appended.draft));
    // Paging: after and limit.
    let page = store.audit_records(2, 2, None).await.unwrap();
    assert_eq!(page, chain[2..4].to_vec());
    assert!(store.audit_records(last.seq, 10, None).await.unwrap().is_empty());
    assert!(store.audit_records(0, 0, None).await.unwrap().is_empty());
    assert_eq!(store.audit_records(-5, 1, None).await.unwrap(), chain[..1].to_vec());
}

/// With an account given, `audit_records` returns only that account's records, still in
/// sequence order and paged by `after`/`limit`.
pub async fn audit_records_filter_by_account_and_page_by_sequence<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(11);
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_000).await;
    for i in 0..3u64 {
        insert(&*store, &hmac_key(&mut e, alice.id, 2_000 + i)).await;
        insert(&*store, &key(&mut e, bob.id, KeyMaterial::Public(ed25519_key()), 2_000 + i)).await;
        store.append_audit(draft("login.failed", "account:nobody", None)).await.unwrap();
    }
    let chain = whole_audit(&*store).await;
    assert_eq!(chain.len(), 11);
    for acc in [alice.id, bob.id] {
        let want: Vec<AuditRecord> = chain.iter().filter(|r| r.draft.account_id == Some(acc)).cloned().collect();
        assert_eq!(want.len(), 4, "account.create and three key.create");
        assert_eq!(store.audit_records(0, 100, Some(acc)).await.unwrap(), want);
        assert_eq!(store.audit_records(0, 2, Some(acc)).await.unwrap(), want[..2].to_vec());
        assert_eq!(store.audit_records(want[1].seq, 100, Some(acc)).await.unwrap(), want[2..].to_vec());
        for r in &want {
            assert_eq!(r.hash, chain_hash(&r.prev_hash, r.seq, &r.draft), "record {} fits its own hash", r.seq);
        }
    }
    assert!(store.audit_records(0, 100, Some(AccountId(bob.id.0 + 1000))).await.unwrap().is_empty());
    // Newest first, paged backwards by sequence.
    for acc in [alice.id, bob.id] {
        let mut want: Vec<AuditRecord> = chain.iter().filter(|r| r.draft.account_id == Some(acc)).cloned().collect();
        want.reverse();
        assert_eq!(store.audit_records_newest(i64::MAX, 100, Some(acc)).await.unwrap(), want);
        assert_eq!(store.audit_records_newest(i64::MAX, 2, Some(acc)).await.unwrap(), want[..2].to_vec());
        assert_eq!(store.audit_records_newest(want[1].seq, 100, Some(acc)).await.unwrap(), want[2..].to_vec());
    }
    let mut newest = chain.clone();
    newest.reverse();
    assert_eq!(store.audit_records_newest(i64::MAX, 3, None).await.unwrap(), newest[..3].to_vec());
    assert!(store.audit_records_newest(1, 100, None).await.unwrap().is_empty());
}

/// Changing any field of a stored record, dropping, reordering or re-hashing one is caught by
/// `verify_chain` at the right sequence number.
pub async fn tampered_audit_records_fail_chain_verification<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    for i in 0..5 {
        store.append_audit(draft("login.failed", &format!("account:user{i}"), None)).await.unwrap();
    }
    let chain = whole_audit(&*store).await;
    assert_eq!(chain.len(), 5);
    assert!(verify_chain([0; 32], 0, &chain).is_ok());

    let tampered = |f: &dyn Fn(&mut Vec<AuditRecord>)| {
        let mut copy = chain.clone();
        f(&mut copy);
        verify_chain([0; 32], 0, &copy)
    };
    assert_eq!(
        tampered(&|c| c[2].draft.details = serde_json::json!({ "action": "nothing" })),
        Err(ChainError::BadHash(3))
    );
    assert_eq!(tampered(&|c| c[2].draft.actor = "owner:alice".into()), Err(ChainError::BadHash(3)));
    assert_eq!(tampered(&|c| c[2].draft.at = UnixMillis(c[2].draft.at.0 + 1)), Err(ChainError::BadHash(3)));
    assert_eq!(tampered(&|c| c[2].draft.account_id = Some(AccountId(1))), Err(ChainError::BadHash(3)));
    assert_eq!(tampered(&|c| c[1].hash[0] ^= 1), Err(ChainError::BadHash(2)));
    assert_eq!(tampered(&|c| drop(c.remove(2))), Err(ChainError::Gap { expected_after: 2, found: 4 }));
    assert_eq!(tampered(&|c| c.swap(1, 2)), Err(ChainError::Gap { expected_after: 1, found: 3 }));
    // Rewriting a record together with its own hash still breaks the next link.
    let rewritten = |c: &mut Vec<AuditRecord>| {
        c[2].draft.target = "account:someone-else".into();
        c[2].hash = chain_hash(&c[2].prev_hash, c[2].seq, &c[2].draft);
    };
    assert_eq!(tampered(&rewritten), Err(ChainError::BadHash(4)));
    // Continuing from a verified prefix checks the rest against it.
    assert_eq!(verify_chain(chain[1].hash, 2, &chain[2..]), Ok((chain[4].hash, 5)));
    assert_eq!(verify_chain(chain[0].hash, 2, &chain[2..]), Err(ChainError::BadHash(3)));
}

/// Twenty tasks creating accounts and keys and appending audit records at once all succeed,
/// while readers see a valid chain prefix throughout; the final chain holds exactly one record
/// per mutation and verifies.
pub async fn concurrent_writers_all_succeed_and_keep_one_intact_chain<H: Harness>() {
    const WRITERS: u64 = 20;
    let h = H::fresh().await;
    let store = h.open().await;
    let mut writers = Vec::new();
    for i in 0..WRITERS {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            let mut e = TestEntropy::new(100 + i);
            let acc = new_account(&*store, &format!("user{i}"), 1_000 + i).await;
            let k = if i % 2 == 0 {
                hmac_key(&mut e, acc.id, 2_000 + i)
            } else {
                key(&mut e, acc.id, KeyMaterial::Public(ed25519_key()), 2_000 + i)
            };
            insert(&*store, &k).await;
            store.append_audit(draft("login.ok", &format!("account:user{i}"), Some(acc.id))).await.unwrap();
            store
                .update_key(
                    &KeyRecord { label: "renamed".into(), ..k.clone() },
                    draft("key.update", k.id.as_str(), Some(acc.id)),
                )
                .await
                .unwrap();
            (acc, k)
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..3 {
        let store = Arc::clone(&store);
        readers.push(tokio::spawn(async move {
            for _ in 0..10 {
                let prefix = store.audit_records(0, u32::MAX, None).await.unwrap();
                verify_chain([0; 32], 0, &prefix).unwrap();
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut created = Vec::new();
    for w in writers {
        created.push(w.await.unwrap());
    }
    for r in readers {
        r.await.unwrap();
    }
    let chain = whole_audit(&*store).await;
    assert_eq!(chain.len() as u64, WRITERS * 4);
    assert!(verify_chain([0; 32], 0, &chain).is_ok());
    let accounts = store.list_accounts().await.unwrap();
    assert_eq!(accounts.len() as u64, WRITERS);
    let keys = store.list_keys(None).await.unwrap();
    assert_eq!(keys.len() as u64, WRITERS);
    for (acc, k) in &created {
        assert_eq!(store.account_by_id(acc.id).await.unwrap().as_ref(), Some(acc));
        assert_same_key(
            &store.get_key(&k.id).await.unwrap().unwrap(),
            &KeyRecord { label: "renamed".into(), ..k.clone() },
        );
        assert_eq!(chain.iter().filter(|r| r.draft.account_id == Some(acc.id)).count(), 4);
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets at rest, restarts, master keys
// ---------------------------------------------------------------------------------------------

/// After HMAC keys are stored, updated and used, no byte the backend holds contains a secret,
/// its random part or its hex form, while an Ed25519 public key stored beside them is found in
/// the same bytes (so the scan does see stored values). Checked while the store is open and again
/// after it is dropped.
pub async fn hmac_secrets_are_never_stored_in_plain_text<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(12);
    let alice = new_account(&*store, "alice", 1_000).await;
    let mut secrets = Vec::new();
    for i in 0..3 {
        let k = hmac_key(&mut e, alice.id, 2_000 + i);
        insert(&*store, &k).await;
        store
            .update_key(
                &KeyRecord { status: KeyStatus::Disabled, ..k.clone() },
                draft("key.disable", k.id.as_str(), None),
            )
            .await
            .unwrap();
        store
            .record_usage(&[UsageDelta {
                key_id: k.id.clone(),
                count: 1,
                last_used_at: UnixMillis(3_000),
                last_used_ip: "192.0.2.1".into(),
            }])
            .await
            .unwrap();
        secrets.push(secret_of(&k).clone());
    }
    let ed = key(&mut e, alice.id, KeyMaterial::Public(ed25519_key()), 4_000);
    insert(&*store, &ed).await;
    let pem = ed25519_key().pem().to_owned();

    let scan = |dump: &[u8], when: &str| {
        assert!(
            contains(dump, pem.as_bytes()),
            "{when}: the dump does not hold the stored Ed25519 public key: it sees nothing"
        );
        assert!(contains(dump, ed.id.as_str().as_bytes()), "{when}: the dump does not hold a stored key id");
        for s in &secrets {
            let text = s.expose();
            assert!(!contains(dump, text.as_bytes()), "{when}: an HMAC secret is stored in plain text");
            assert!(
                !contains(dump, &text.as_bytes()[4..]),
                "{when}: an HMAC secret's random part is stored in plain text"
            );
            assert!(!contains(dump, hex::encode(text).as_bytes()), "{when}: an HMAC secret is stored as hex");
            assert!(!contains(dump, hex::encode_upper(text).as_bytes()), "{when}: an HMAC secret is stored as hex");
        }
    };
    scan(&h.dump().await, "while open");
    drop(store);
    scan(&h.dump().await, "after closing");
}

/// Dropping the store and opening it again finds everything as it was: accounts, keys with
/// their decrypted secrets, usage, and an audit chain that continues where it stopped.
pub async fn everything_survives_a_restart<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(13);
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_100).await;
    store
        .update_account(
            &AccountRecord { status: AccountStatus::Disabled, ..bob.clone() },
            draft("account.disable", "account:bob", Some(bob.id)),
        )
        .await
        .unwrap();
    let mut hk = hmac_key(&mut e, alice.id, 2_000);
    hk.restrictions = full_restrictions();
    hk.permissions = Permissions::with(&[Permission::Trade, Permission::Withdraw]);
    let ek = key(&mut e, alice.id, KeyMaterial::Public(ed25519_key()), 2_100);
    let rk = key(&mut e, bob.id, KeyMaterial::Public(rsa_key()), 2_200);
    for k in [&hk, &ek, &rk] {
        insert(&*store, k).await;
    }
    store
        .update_key(
            &KeyRecord { status: KeyStatus::Revoked, ..rk.clone() },
            draft("key.revoke", rk.id.as_str(), Some(bob.id)),
        )
        .await
        .unwrap();
    store
        .record_usage(&[UsageDelta {
            key_id: hk.id.clone(),
            count: 42,
            last_used_at: UnixMillis(5_000),
            last_used_ip: "203.0.113.9".into(),
        }])
        .await
        .unwrap();
    store.append_audit(draft("api.denied", hk.id.as_str(), Some(alice.id))).await.unwrap();

    let accounts = store.list_accounts().await.unwrap();
    let keys = store.list_keys(None).await.unwrap();
    let chain = whole_audit(&*store).await;
    assert_eq!(keys[0].use_count, 42);
    drop(store);

    let store = h.open().await;
    assert_eq!(store.list_accounts().await.unwrap(), accounts);
    assert_same_keys(&store.list_keys(None).await.unwrap(), &keys);
    assert_same_key(&store.get_key(&hk.id).await.unwrap().unwrap(), &keys[0]);
    assert_eq!(whole_audit(&*store).await, chain);
    let next = store.append_audit(draft("login.ok", "account:alice", Some(alice.id))).await.unwrap();
    let last = chain.last().unwrap();
    assert_eq!((next.seq, next.prev_hash), (last.seq + 1, last.hash));
    assert!(verify_chain([0; 32], 0, &whole_audit(&*store).await).is_ok());
}

/// Opened with another master key, the store refuses to produce an HMAC key with a `Crypto`
/// error that leaks no secret, rather than panicking or returning garbage; public-key keys and
/// accounts stay readable, and the right master key opens everything again.
pub async fn another_master_key_cannot_open_secrets_and_says_so<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(14);
    let alice = new_account(&*store, "alice", 1_000).await;
    let hk = hmac_key(&mut e, alice.id, 2_000);
    let ek = key(&mut e, alice.id, KeyMaterial::Public(ed25519_key()), 2_100);
    insert(&*store, &hk).await;
    insert(&*store, &ek).await;
    drop(store);

    assert_ne!(TEST_MASTER_KEY, [9; 32]);
    let wrong = h.open_with_master_key([9; 32]).await;
    let err = wrong.get_key(&hk.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Crypto(_)), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains(&secret_of(&hk).expose()[4..]), "the error leaks the secret");
    // A listing cannot silently skip the key it cannot open.
    let listed = wrong.list_keys(None).await;
    assert!(matches!(listed, Err(StoreError::Crypto(_))), "{listed:?}");
    assert_same_key(&wrong.get_key(&ek.id).await.unwrap().unwrap(), &ek);
    assert_eq!(wrong.account_by_id(alice.id).await.unwrap().map(|a| a.name), Some("alice".into()));
    drop(wrong);

    let right = h.open().await;
    assert_same_key(&right.get_key(&hk.id).await.unwrap().unwrap(), &hk);
}

/// Times and counters beyond what the backend can store are refused with an error, never a
/// panic or a wrapped value, and the refused change leaves no record or audit entry.
pub async fn out_of_range_values_are_refused_without_a_trace<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(15);
    let alice = new_account(&*store, "alice", 1_000).await;

    let far = NewAccount { name: "far".into(), password_hash: "h".into(), created_at: UnixMillis(u64::MAX) };
    assert!(store.create_account(far, draft("account.create", "account:far", None)).await.is_err());
    let mut late = hmac_key(&mut e, alice.id, 2_000);
    late.created_at = UnixMillis(u64::MAX);
    assert!(store.insert_key(&late, draft("key.create", late.id.as_str(), Some(alice.id))).await.is_err());
    let mut busy = key(&mut e, alice.id, KeyMaterial::Public(ed25519_key()), 2_000);
    busy.use_count = u64::MAX;
    assert!(store.insert_key(&busy, draft("key.create", busy.id.as_str(), Some(alice.id))).await.is_err());
    let mut bad_draft = draft("login.failed", "account:alice", Some(alice.id));
    bad_draft.at = UnixMillis(u64::MAX);
    assert!(store.append_audit(bad_draft).await.is_err());

    assert_eq!(store.list_accounts().await.unwrap(), vec![alice]);
    assert!(store.list_keys(None).await.unwrap().is_empty());
    assert_eq!(audit_len(&*store).await, 1);
}

// ---------------------------------------------------------------------------------------------
// Sessions, TOTP state and recovery codes (issue #6)
// ---------------------------------------------------------------------------------------------

fn session(e: &mut TestEntropy, account: AccountId, created: u64, seen: u64) -> (SessionToken, SessionRecord) {
    let token = SessionToken::generate(e).unwrap();
    let rec = SessionRecord {
        id_hash: token.hash(),
        account_id: account,
        created_at: UnixMillis(created),
        last_seen_at: UnixMillis(seen),
        two_factor_pending: true,
        stepped_up_until: None,
        source: Some("192.0.2.7".into()),
    };
    (token, rec)
}

/// A session reads back as stored; its last-seen time only moves forward; rotation replaces
/// the old id by the new one with its audit record, and a second rotation from the old id is
/// `NotFound` and writes nothing; deletion reports whether there was anything to delete and is
/// audited only then.
pub async fn sessions_round_trip_rotate_once_and_delete_with_their_audit_records<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(21);
    let alice = new_account(&*store, "alice", 1_000).await;
    let (t1, s1) = session(&mut e, alice.id, 5_000, 5_000);
    store.insert_session(&s1, Some(draft("auth.login", "account:alice", Some(alice.id)))).await.unwrap();
    assert_eq!(store.session(&t1.hash()).await.unwrap(), Some(s1.clone()));
    assert_eq!(audit_len(&*store).await, 2);

    store.touch_session(&t1.hash(), UnixMillis(9_000)).await.unwrap();
    store.touch_session(&t1.hash(), UnixMillis(7_000)).await.unwrap();
    assert_eq!(store.session(&t1.hash()).await.unwrap().unwrap().last_seen_at, UnixMillis(9_000));

    let (t2, _) = session(&mut e, alice.id, 0, 0);
    let s2 = SessionRecord {
        id_hash: t2.hash(),
        two_factor_pending: false,
        stepped_up_until: Some(UnixMillis(99_000)),
        last_seen_at: UnixMillis(10_000),
        ..s1.clone()
    };
    store.rotate_session(&t1.hash(), &s2, draft("auth.step_up", "account:alice", Some(alice.id))).await.unwrap();
    assert_eq!(store.session(&t1.hash()).await.unwrap(), None, "the old id still works after rotation");
    assert_eq!(store.session(&t2.hash()).await.unwrap(), Some(s2.clone()));
    assert_eq!(audit_len(&*store).await, 3);

    let (t3, _) = session(&mut e, alice.id, 0, 0);
    let s3 = SessionRecord { id_hash: t3.hash(), ..s2.clone() };
    let err = store.rotate_session(&t1.hash(), &s3, draft("auth.step_up", "x", None)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.session(&t3.hash()).await.unwrap(), None, "a session forked from a dead id");
    assert_eq!(audit_len(&*store).await, 3);

    assert!(
        store.delete_session(&t2.hash(), Some(draft("auth.logout", "account:alice", Some(alice.id)))).await.unwrap()
    );
    assert!(!store.delete_session(&t2.hash(), Some(draft("auth.logout", "account:alice", None))).await.unwrap());
    assert_eq!(store.session(&t2.hash()).await.unwrap(), None);
    assert_eq!(audit_len(&*store).await, 4);

    let (_, orphan) = session(&mut e, AccountId(alice.id.0 + 1000), 1, 1);
    assert!(matches!(store.insert_session(&orphan, None).await, Err(StoreError::NotFound(_))));
}

/// Purging removes exactly the sessions idle or too old; a password change (or 2FA reset)
/// updates the account, ends every session of that account and no other, and inserts the
/// caller's new session, all with one audit record.
pub async fn purge_and_account_changes_end_the_right_sessions<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(22);
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_000).await;
    let (old, s_old) = session(&mut e, alice.id, 1_000, 90_000);
    let (idle, s_idle) = session(&mut e, alice.id, 50_000, 50_000);
    let (fresh, s_fresh) = session(&mut e, alice.id, 60_000, 95_000);
    let (bobs, s_bob) = session(&mut e, bob.id, 60_000, 95_000);
    for s in [&s_old, &s_idle, &s_fresh, &s_bob] {
        store.insert_session(s, None).await.unwrap();
    }
    assert_eq!(store.purge_sessions(UnixMillis(80_000), UnixMillis(10_000)).await.unwrap(), 2);
    assert_eq!(store.session(&old.hash()).await.unwrap(), None);
    assert_eq!(store.session(&idle.hash()).await.unwrap(), None);
    assert!(store.session(&fresh.hash()).await.unwrap().is_some());

    let (next, s_next) = session(&mut e, alice.id, 100_000, 100_000);
    let changed = AccountRecord {
        password_hash: "$argon2id$changed".into(),
        withdrawals_locked_until: Some(UnixMillis(186_400_000)),
        ..alice.clone()
    };
    let before = audit_len(&*store).await;
    store
        .update_account_ending_sessions(
            &changed,
            Some(&s_next),
            draft("account.password", "account:alice", Some(alice.id)),
        )
        .await
        .unwrap();
    assert_eq!(store.account_by_id(alice.id).await.unwrap(), Some(changed));
    assert_eq!(store.session(&fresh.hash()).await.unwrap(), None, "an old session survived a password change");
    assert_eq!(store.session(&next.hash()).await.unwrap(), Some(s_next));
    assert_eq!(store.session(&bobs.hash()).await.unwrap(), Some(s_bob), "another account's session ended");
    assert_eq!(audit_len(&*store).await, before + 1);

    let ghost = AccountRecord { id: AccountId(alice.id.0 + 1000), ..alice };
    let err = store.update_account_ending_sessions(&ghost, None, draft("account.password", "x", None)).await;
    assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
    assert!(store.session(&next.hash()).await.unwrap().is_some());
    assert_eq!(audit_len(&*store).await, before + 1);
}

/// Enrollment stores a seed that reads back identical but not enabled, and may restart with a
/// new seed; confirmation enables it, records the step and the recovery codes; an enabled 2FA
/// cannot be re-enrolled or confirmed again; removal deletes seed and codes and sets the
/// withdrawal lock; each change carries one audit record, refusals none.
pub async fn two_factor_enrollment_confirmation_and_removal<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let d = |a: &str| draft(a, "account:alice", Some(alice.id));
    assert!(store.two_factor(alice.id).await.unwrap().is_none());
    store.begin_two_factor(alice.id, &[1; 20], UnixMillis(2_000), d("totp.enroll")).await.unwrap();
    store.begin_two_factor(alice.id, &[2; 20], UnixMillis(3_000), d("totp.enroll")).await.unwrap();
    let tf = store.two_factor(alice.id).await.unwrap().unwrap();
    assert_eq!(
        (tf.seed.as_slice(), tf.enabled, tf.created_at, tf.last_step),
        (&[2u8; 20][..], false, UnixMillis(3_000), None)
    );
    let err =
        store.enable_two_factor(AccountId(alice.id.0 + 1000), 5, &[], UnixMillis(1), None, d("totp.confirm")).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");

    store
        .enable_two_factor(alice.id, 100, &[[7; 32], [8; 32]], UnixMillis(4_000), None, d("totp.confirm"))
        .await
        .unwrap();
    let tf = store.two_factor(alice.id).await.unwrap().unwrap();
    assert_eq!((tf.enabled, tf.confirmed_at, tf.last_step), (true, Some(UnixMillis(4_000)), Some(100)));
    assert_eq!(store.recovery_codes_left(alice.id).await.unwrap(), 2);
    let n = audit_len(&*store).await;
    let again = store.begin_two_factor(alice.id, &[3; 20], UnixMillis(5_000), d("totp.enroll")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let again = store.enable_two_factor(alice.id, 200, &[], UnixMillis(5_000), None, d("totp.confirm")).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(store.two_factor(alice.id).await.unwrap().unwrap().seed.as_slice(), &[2u8; 20]);
    assert_eq!(store.recovery_codes_left(alice.id).await.unwrap(), 2);
    assert_eq!(audit_len(&*store).await, n, "a refused change was audited");

    store.disable_two_factor(alice.id, Some(UnixMillis(90_000_000)), d("totp.disable")).await.unwrap();
    assert!(store.two_factor(alice.id).await.unwrap().is_none());
    assert_eq!(store.recovery_codes_left(alice.id).await.unwrap(), 0);
    let a = store.account_by_id(alice.id).await.unwrap().unwrap();
    assert_eq!(a.withdrawals_locked_until, Some(UnixMillis(90_000_000)));
    assert_eq!(audit_len(&*store).await, n + 1);
    let ghost = store.disable_two_factor(AccountId(alice.id.0 + 1000), None, d("totp.disable")).await;
    assert!(matches!(ghost, Err(StoreError::NotFound(_))), "{ghost:?}");
}

/// Confirming 2FA with a hold moves the account's withdrawal hold forward, never back, in the
/// same transaction; account updates (password, status, lock) from a copy read before leave it
/// as it is, so no writer can clear a hold by writing back an older account.
pub async fn enabling_two_factor_holds_withdrawals_and_account_updates_keep_the_hold<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    assert_eq!(alice.withdrawals_held_until, None);
    let d = |a: &str| draft(a, "account:alice", Some(alice.id));
    store.begin_two_factor(alice.id, &[1; 20], UnixMillis(2_000), d("totp.enroll")).await.unwrap();
    store
        .enable_two_factor(alice.id, 1, &[], UnixMillis(3_000), Some(UnixMillis(90_000_000)), d("totp.confirm"))
        .await
        .unwrap();
    assert_eq!(
        store.account_by_id(alice.id).await.unwrap().unwrap().withdrawals_held_until,
        Some(UnixMillis(90_000_000))
    );

    // A copy read before the hold, written back with a new password: the hold stays.
    let stale = AccountRecord { password_hash: "$argon2id$new".into(), ..alice.clone() };
    store.update_account(&stale, d("account.password")).await.unwrap();
    store.update_account_ending_sessions(&stale, None, d("account.password")).await.unwrap();
    let a = store.account_by_id(alice.id).await.unwrap().unwrap();
    assert_eq!((a.password_hash.as_str(), a.withdrawals_held_until), ("$argon2id$new", Some(UnixMillis(90_000_000))));

    // Off and on again with an earlier end: the later end stays; without a hold, nothing moves.
    store.disable_two_factor(alice.id, None, d("totp.disable")).await.unwrap();
    store.begin_two_factor(alice.id, &[2; 20], UnixMillis(4_000), d("totp.enroll")).await.unwrap();
    store
        .enable_two_factor(alice.id, 2, &[], UnixMillis(5_000), Some(UnixMillis(80_000_000)), d("totp.confirm"))
        .await
        .unwrap();
    assert_eq!(
        store.account_by_id(alice.id).await.unwrap().unwrap().withdrawals_held_until,
        Some(UnixMillis(90_000_000))
    );
    store.disable_two_factor(alice.id, None, d("totp.disable")).await.unwrap();
    store.begin_two_factor(alice.id, &[3; 20], UnixMillis(6_000), d("totp.enroll")).await.unwrap();
    store
        .enable_two_factor(alice.id, 3, &[], UnixMillis(7_000), Some(UnixMillis(95_000_000)), d("totp.confirm"))
        .await
        .unwrap();
    assert_eq!(
        store.account_by_id(alice.id).await.unwrap().unwrap().withdrawals_held_until,
        Some(UnixMillis(95_000_000))
    );
    let bob = new_account(&*store, "bob", 1_000).await;
    let db = |a: &str| draft(a, "account:bob", Some(bob.id));
    store.begin_two_factor(bob.id, &[4; 20], UnixMillis(2_000), db("totp.enroll")).await.unwrap();
    store.enable_two_factor(bob.id, 1, &[], UnixMillis(3_000), None, db("totp.confirm")).await.unwrap();
    assert_eq!(store.account_by_id(bob.id).await.unwrap().unwrap().withdrawals_held_until, None);
}

/// A TOTP step is accepted only if later than the last accepted one, and of many concurrent
/// attempts with the same step exactly one wins; acceptance clears the failure counter.
pub async fn totp_steps_are_accepted_once_and_only_forward<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let d = |a: &str| draft(a, "account:alice", Some(alice.id));
    store.begin_two_factor(alice.id, &[1; 20], UnixMillis(2_000), d("totp.enroll")).await.unwrap();
    store.enable_two_factor(alice.id, 100, &[], UnixMillis(3_000), None, d("totp.confirm")).await.unwrap();
    assert!(!store.accept_totp_step(alice.id, 100, None).await.unwrap(), "the confirming code worked twice");
    assert!(!store.accept_totp_step(alice.id, 99, None).await.unwrap());
    let (n, _) = store.record_totp_failure(alice.id, UnixMillis(4_000), 300_000, d("totp.failed")).await.unwrap();
    assert_eq!(n, 1);
    let before = audit_len(&*store).await;
    assert!(store.accept_totp_step(alice.id, 101, Some(d("auth.step_up"))).await.unwrap());
    assert!(!store.accept_totp_step(alice.id, 101, Some(d("auth.step_up"))).await.unwrap());
    assert_eq!(audit_len(&*store).await, before + 1, "only the accepted step is audited");
    let tf = store.two_factor(alice.id).await.unwrap().unwrap();
    assert_eq!((tf.last_step, tf.failures, tf.failure_window_start), (Some(101), 0, None));

    let wins = futures_all((0..8).map(|_| {
        let store = Arc::clone(&store);
        async move { store.accept_totp_step(alice.id, 102, None).await.unwrap() }
    }))
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
}

/// Runs futures concurrently on the runtime's threads and collects their results in order.
async fn futures_all<T: Send + 'static>(
    futs: impl IntoIterator<Item = impl Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// A recovery code works once, for its own account only, even when tried concurrently; a new set
/// replaces the old one.
pub async fn recovery_codes_work_once_for_their_own_account<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_000).await;
    for (acc, code) in [(alice.id, [7u8; 32]), (bob.id, [9u8; 32])] {
        let d = draft("totp.enroll", "a", Some(acc));
        store.begin_two_factor(acc, &[1; 20], UnixMillis(2_000), d.clone()).await.unwrap();
        store.enable_two_factor(acc, 1, &[code, [acc.0 as u8; 32]], UnixMillis(3_000), None, d).await.unwrap();
    }
    let id = alice.id;
    let d = move || Some(draft("auth.recovery_code_used", "account:alice", Some(id)));
    assert!(
        !store.use_recovery_code(alice.id, &[9; 32], UnixMillis(4_000), d()).await.unwrap(),
        "bob's code worked for alice"
    );
    assert!(!store.use_recovery_code(alice.id, &[0; 32], UnixMillis(4_000), d()).await.unwrap());
    let before = audit_len(&*store).await;
    let wins = futures_all((0..6).map(|_| {
        let store = Arc::clone(&store);
        async move { store.use_recovery_code(alice.id, &[7; 32], UnixMillis(4_000), d()).await.unwrap() }
    }))
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    assert_eq!(audit_len(&*store).await, before + 1);
    assert_eq!(store.recovery_codes_left(alice.id).await.unwrap(), 1);
    assert_eq!(store.recovery_codes_left(bob.id).await.unwrap(), 2);

    // Regenerated codes replace all the old ones, used or not, with one audit record; without
    // 2FA there is nothing to replace.
    let before = audit_len(&*store).await;
    store.replace_recovery_codes(alice.id, &[[3; 32], [4; 32], [5; 32]], d().unwrap()).await.unwrap();
    assert_eq!(store.recovery_codes_left(alice.id).await.unwrap(), 3);
    assert!(!store.use_recovery_code(alice.id, &[alice.id.0 as u8; 32], UnixMillis(5_000), None).await.unwrap());
    assert!(store.use_recovery_code(alice.id, &[4; 32], UnixMillis(5_000), None).await.unwrap());
    assert_eq!(audit_len(&*store).await, before + 1);
    let carol = new_account(&*store, "carol", 1_000).await;
    let err = store.replace_recovery_codes(carol.id, &[[6; 32]], d().unwrap()).await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.recovery_codes_left(carol.id).await.unwrap(), 0);
}

/// Failures count within a window that starts at the first failure; after the window a new one
/// starts from one; every failure is audited.
pub async fn totp_failures_count_in_windows_and_are_audited<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let d = || draft("totp.failed", "account:alice", Some(alice.id));
    store.begin_two_factor(alice.id, &[1; 20], UnixMillis(2_000), d()).await.unwrap();
    let before = audit_len(&*store).await;
    let mut got = Vec::new();
    for at in [10_000, 20_000, 309_999, 310_000, 310_001] {
        got.push(store.record_totp_failure(alice.id, UnixMillis(at), 300_000, d()).await.unwrap());
    }
    let w = |n, s| (n, UnixMillis(s));
    assert_eq!(got, vec![w(1, 10_000), w(2, 10_000), w(3, 10_000), w(1, 310_000), w(2, 310_000)]);
    let tf = store.two_factor(alice.id).await.unwrap().unwrap();
    assert_eq!((tf.failures, tf.failure_window_start), (2, Some(UnixMillis(310_000))));
    assert_eq!(audit_len(&*store).await, before + 5);
}

/// Reservations count before the check: concurrent reservations never exceed the limit; only the
/// first refusal of a window writes; a release gives one back in the same window only; a new
/// window starts afresh; an account without 2FA is not found.
pub async fn totp_attempt_reservations_are_atomic_and_refuse_past_the_limit<H: Harness>() {
    use crate::records::TotpAttempt;
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_000).await;
    store
        .begin_two_factor(alice.id, &[1; 20], UnixMillis(2_000), draft("totp.enroll", "account:alice", Some(alice.id)))
        .await
        .unwrap();
    let got = futures_all((0..40).map(|_| {
        let store = Arc::clone(&store);
        async move {
            store
                .reserve_totp_attempt(alice.id, TotpCounter::Established, UnixMillis(10_000), 300_000, 5)
                .await
                .unwrap()
        }
    }))
    .await;
    let reserved = got.iter().filter(|a| matches!(a, TotpAttempt::Reserved { .. })).count();
    let first = got.iter().filter(|a| matches!(a, TotpAttempt::Refused { first: true, .. })).count();
    assert_eq!((reserved, first), (5, 1), "{got:?}");
    let tf = store.two_factor(alice.id).await.unwrap().unwrap();
    assert_eq!((tf.failures, tf.failure_window_start), (6, Some(UnixMillis(10_000))));

    // A release in another window changes nothing; in this one it gives one back.
    store.release_totp_attempt(alice.id, TotpCounter::Established, UnixMillis(9_999)).await.unwrap();
    assert_eq!(store.two_factor(alice.id).await.unwrap().unwrap().failures, 6);
    let before = audit_len(&*store).await;
    store.accept_totp_step(alice.id, 1, None).await.unwrap();
    let r =
        store.reserve_totp_attempt(alice.id, TotpCounter::Established, UnixMillis(11_000), 300_000, 5).await.unwrap();
    assert_eq!(r, TotpAttempt::Reserved { failures: 1, window_start: UnixMillis(11_000) });
    store.release_totp_attempt(alice.id, TotpCounter::Established, UnixMillis(11_000)).await.unwrap();
    assert_eq!(store.two_factor(alice.id).await.unwrap().unwrap().failures, 0);
    for _ in 0..5 {
        store.reserve_totp_attempt(alice.id, TotpCounter::Established, UnixMillis(12_000), 300_000, 5).await.unwrap();
    }
    let refused =
        store.reserve_totp_attempt(alice.id, TotpCounter::Established, UnixMillis(12_000), 300_000, 5).await.unwrap();
    assert_eq!(refused, TotpAttempt::Refused { window_start: UnixMillis(11_000), first: true });
    let again =
        store.reserve_totp_attempt(alice.id, TotpCounter::Established, UnixMillis(12_000), 300_000, 5).await.unwrap();
    assert_eq!(again, TotpAttempt::Refused { window_start: UnixMillis(11_000), first: false });
    let next =
        store.reserve_totp_attempt(alice.id, TotpCounter::Established, UnixMillis(311_000), 300_000, 5).await.unwrap();
    assert_eq!(next, TotpAttempt::Reserved { failures: 1, window_start: UnixMillis(311_000) });
    assert_eq!(audit_len(&*store).await, before, "reservations write no audit records");
    assert!(matches!(
        store.reserve_totp_attempt(bob.id, TotpCounter::Established, UnixMillis(10_000), 300_000, 5).await,
        Err(StoreError::NotFound(_))
    ));

    // Issue #18: the login counter is another counter. Filling it (whoever has the password can)
    // leaves the established sessions' counter as it was, and a release or an accepted code on
    // one does not touch the other.
    let established = store.two_factor(alice.id).await.unwrap().unwrap().failures;
    for _ in 0..50 {
        store.reserve_totp_attempt(alice.id, TotpCounter::Login, UnixMillis(311_000), 300_000, 50).await.unwrap();
    }
    let full = store.reserve_totp_attempt(alice.id, TotpCounter::Login, UnixMillis(311_001), 300_000, 50).await;
    assert!(matches!(full.unwrap(), TotpAttempt::Refused { first: true, .. }));
    assert_eq!(store.two_factor(alice.id).await.unwrap().unwrap().failures, established);
    let ok = store.reserve_totp_attempt(alice.id, TotpCounter::Established, UnixMillis(311_002), 300_000, 5).await;
    assert!(matches!(ok.unwrap(), TotpAttempt::Reserved { .. }), "the owner's counter is not the login's");
    store.accept_totp_step(alice.id, 99, None).await.unwrap();
    let still = store.reserve_totp_attempt(alice.id, TotpCounter::Login, UnixMillis(311_003), 300_000, 50).await;
    assert!(matches!(still.unwrap(), TotpAttempt::Refused { first: false, .. }), "an accepted code does not clear it");
}

/// After sessions, TOTP seeds and recovery codes are stored, no byte the backend holds contains
/// a session id, a seed (raw, hex or base32) or a recovery code, while their hashes are there
/// (so the scan does see stored values); the seed reads back intact after a restart. (That a
/// sealed seed does not open for another account is `crypto::tests`' business.)
pub async fn session_ids_totp_seeds_and_recovery_codes_are_never_stored_in_plain_text<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(23);
    let alice = new_account(&*store, "alice", 1_000).await;
    let (token, s) = session(&mut e, alice.id, 1_000, 1_000);
    store.insert_session(&s, None).await.unwrap();
    let mut seed = [0u8; 20];
    e.fill(&mut seed).unwrap();
    let code = keygate_auth::session::generate_recovery_code(&mut e).unwrap();
    let canonical = keygate_auth::session::normalize_recovery_code(&code).unwrap();
    let code_hash = keygate_auth::session::hash_recovery_code(&canonical);
    let d = draft("totp.enroll", "account:alice", Some(alice.id));
    store.begin_two_factor(alice.id, &seed, UnixMillis(2_000), d.clone()).await.unwrap();
    store.enable_two_factor(alice.id, 1, &[code_hash], UnixMillis(3_000), None, d).await.unwrap();
    let base32 = base32_encode(&seed);
    let scan = |dump: &[u8], when: &str| {
        assert!(contains(dump, &token.hash()), "{when}: the dump does not hold the session hash: it sees nothing");
        assert!(contains(dump, &code_hash), "{when}: the dump does not hold the recovery code hash");
        assert!(!contains(dump, token.expose().as_bytes()), "{when}: a session id is stored in plain text");
        assert!(!contains(dump, &token.expose().as_bytes()[7..]), "{when}: a session id's random part is stored");
        assert!(!contains(dump, &seed), "{when}: a TOTP seed is stored raw");
        assert!(!contains(dump, hex::encode(seed).as_bytes()), "{when}: a TOTP seed is stored as hex");
        assert!(!contains(dump, base32.as_bytes()), "{when}: a TOTP seed is stored as base32");
        assert!(!contains(dump, code.as_bytes()), "{when}: a recovery code is stored in plain text");
        assert!(!contains(dump, canonical.as_bytes()), "{when}: a recovery code is stored in plain text");
    };
    scan(&h.dump().await, "while open");
    drop(store);
    scan(&h.dump().await, "after closing");
    let store = h.open().await;
    assert_eq!(store.two_factor(alice.id).await.unwrap().unwrap().seed.as_slice(), &seed, "after a restart");
}

/// RFC 4648 base32 without padding, as authenticator apps show a seed.
fn base32_encode(data: &[u8]) -> String {
    const A: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut acc, mut bits) = (String::new(), 0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(A[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(A[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The change feed
// ---------------------------------------------------------------------------------------------

/// Every change to what a node caches (accounts, keys, second factors, ended sessions) enters
/// the change feed numbered by its own audit record, in commit order; what changes nothing
/// cached (usage, logins, denials, refused changes) does not. `last_change` names the newest,
/// and `changes_after` pages like the audit log.
pub async fn every_cached_change_enters_the_feed_with_its_audit_record<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(31);
    assert_eq!(store.last_change().await.unwrap(), 0);
    assert!(store.changes_after(0, 10).await.unwrap().is_empty());

    let alice = new_account(&*store, "alice", 1_000).await;
    let d = |a: &str| draft(a, "account:alice", Some(alice.id));
    let k = hmac_key(&mut e, alice.id, 2_000);
    insert(&*store, &k).await;
    let dup = store.insert_key(&k, d("key.create")).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    store.record_usage(&[one_use(&k)]).await.unwrap();
    store.update_key(&KeyRecord { label: "renamed".into(), ..k.clone() }, d("key.update")).await.unwrap();
    store.append_audit(d("api.denied")).await.unwrap();
    let (t1, s1) = session(&mut e, alice.id, 5_000, 5_000);
    store.insert_session(&s1, Some(d("auth.login"))).await.unwrap();
    store.begin_two_factor(alice.id, &[1; 20], UnixMillis(6_000), d("totp.enroll")).await.unwrap();
    store.enable_two_factor(alice.id, 7, &[[9; 32]], UnixMillis(6_500), None, d("totp.enable")).await.unwrap();
    assert!(store.accept_totp_step(alice.id, 8, Some(d("auth.step_up"))).await.unwrap());
    store.replace_recovery_codes(alice.id, &[[8; 32]], d("totp.recovery_codes")).await.unwrap();
    assert!(store.delete_session(&t1.hash(), Some(d("auth.logout"))).await.unwrap());
    let changed = AccountRecord { password_hash: "new".into(), ..alice.clone() };
    store.update_account_ending_sessions(&changed, None, d("account.password")).await.unwrap();
    store.disable_two_factor(alice.id, None, d("totp.disable")).await.unwrap();
    store
        .update_account(&AccountRecord { status: AccountStatus::Disabled, ..changed }, d("account.disable"))
        .await
        .unwrap();

    let key = Change::Key { account: alice.id, key: k.id.clone() };
    let want = [
        ("account.create", Change::Account(alice.id)),
        ("key.create", key.clone()),
        ("key.update", key),
        ("totp.enroll", Change::TwoFactor(alice.id)),
        ("totp.enable", Change::TwoFactor(alice.id)),
        ("totp.recovery_codes", Change::TwoFactor(alice.id)),
        ("auth.logout", Change::Session(alice.id)),
        ("account.password", Change::Account(alice.id)),
        ("totp.disable", Change::TwoFactor(alice.id)),
        ("account.disable", Change::Account(alice.id)),
    ];
    let audit = whole_audit(&*store).await;
    let feed = store.changes_after(0, 100).await.unwrap();
    let got: Vec<(&str, Change)> = feed
        .iter()
        .map(|c| {
            let record = audit.iter().find(|r| r.seq == c.seq).expect("a change without its audit record");
            assert_eq!(c.at, record.draft.at, "change {} has its audit record's time", c.seq);
            (record.draft.action.as_str(), c.change.clone())
        })
        .collect();
    assert_eq!(got, want.to_vec());
    assert!(feed.windows(2).all(|w| w[0].seq < w[1].seq), "the feed is in sequence order");
    assert_eq!(store.last_change().await.unwrap(), feed.last().unwrap().seq);
    assert_eq!(store.changes_after(feed[2].seq, 3).await.unwrap(), feed[3..6].to_vec());
    assert!(store.changes_after(feed.last().unwrap().seq, 10).await.unwrap().is_empty());
}

// Key policies (issue #17)

/// An account's policy row is written whole with its audit record, read back exactly, and its
/// re-confirmation comes due at its time, oldest first; clearing it takes the row out of the due
/// list.
pub async fn account_key_policies_round_trip_and_come_due_in_order<H: Harness>() {
    use crate::{AccountPolicyRecord, Reconfirmation};
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_000).await;
    assert_eq!(store.account_policy(alice.id).await.unwrap(), None);
    let before = audit_len(&*store).await;
    let rec = |account, policy: &str, due: Option<u64>| AccountPolicyRecord {
        account_id: account,
        policy: policy.into(),
        reconfirm: due.map(|d| Reconfirmation {
            since: UnixMillis(5_000),
            due: UnixMillis(d),
            reason: "password_changed".into(),
        }),
        updated_at: UnixMillis(5_000),
    };
    let a = rec(alice.id, r#"{"unused_days":30}"#, Some(9_000));
    store.put_account_policy(&a, draft("account.key_policy", "account:alice", Some(alice.id))).await.unwrap();
    let b = rec(bob.id, "{}", Some(7_000));
    store.put_account_policy(&b, draft("account.reconfirm", "account:bob", Some(bob.id))).await.unwrap();
    assert_eq!(store.account_policy(alice.id).await.unwrap(), Some(a.clone()));
    assert_eq!(audit_len(&*store).await, before + 2);
    assert!(store.reconfirmations_due(UnixMillis(6_999), 10).await.unwrap().is_empty());
    let due = store.reconfirmations_due(UnixMillis(9_000), 10).await.unwrap();
    assert_eq!(due, vec![b.clone(), a.clone()], "oldest due first");
    assert_eq!(store.reconfirmations_due(UnixMillis(9_000), 1).await.unwrap(), vec![b.clone()]);
    // Written whole: the re-confirmation cleared, the policy kept.
    let cleared = AccountPolicyRecord { reconfirm: None, updated_at: UnixMillis(9_500), ..b.clone() };
    store.put_account_policy(&cleared, draft("key.reconfirm", "account:bob", Some(bob.id))).await.unwrap();
    assert_eq!(store.reconfirmations_due(UnixMillis(10_000), 10).await.unwrap(), vec![a]);
    assert_eq!(store.account_policy(bob.id).await.unwrap(), Some(cleared));
    assert!(verify_chain([0; 32], 0, &whole_audit(&*store).await).is_ok());
}

/// A warning about a key is recorded once: the second call (another sweeper, or a sweep again
/// after a crash) writes nothing, neither the notice nor its audit record; another notice of the
/// same key, or the same notice of another key, is recorded.
pub async fn a_key_warning_is_recorded_once_with_its_audit_record<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(171);
    let alice = new_account(&*store, "alice", 1_000).await;
    let k = hmac_key(&mut e, alice.id, 2_000);
    let k2 = hmac_key(&mut e, alice.id, 2_000);
    let d = || draft("key.expiring", k.id.as_str(), Some(alice.id));
    let before = audit_len(&*store).await;
    assert!(!store.key_notice_recorded(&k.id, "unused:7d:2000").await.unwrap());
    assert!(store.record_key_notice(&k.id, "unused:7d:2000", UnixMillis(3_000), d()).await.unwrap());
    assert!(!store.record_key_notice(&k.id, "unused:7d:2000", UnixMillis(3_001), d()).await.unwrap());
    assert!(store.key_notice_recorded(&k.id, "unused:7d:2000").await.unwrap());
    assert!(!store.key_notice_recorded(&k2.id, "unused:7d:2000").await.unwrap());
    assert_eq!(audit_len(&*store).await, before + 1);
    assert!(store.record_key_notice(&k.id, "unused:1d:2000", UnixMillis(3_002), d()).await.unwrap());
    assert!(store.record_key_notice(&k2.id, "unused:7d:2000", UnixMillis(3_003), d()).await.unwrap());
    assert_eq!(audit_len(&*store).await, before + 3);
    let chain = whole_audit(&*store).await;
    assert_eq!(chain.last().unwrap().draft.action, "key.expiring");
    assert!(verify_chain([0; 32], 0, &chain).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Owner notifications (issue #17)
// ---------------------------------------------------------------------------------------------

/// A mapper for the tests: `key.create` and `totp.disable` records become events;
/// `auth.login` records become an event only from an address new for the account.
fn test_mapper(r: &AuditRecord) -> Option<crate::events::NewEvent> {
    let account = r.draft.account_id?;
    let first_sighting = match r.draft.action.as_str() {
        "key.create" | "totp.disable" => None,
        "auth.login" => Some(crate::events::Sighting {
            scope: "login",
            subject: account.0.to_string(),
            address: r.draft.source.clone()?,
        }),
        _ => return None,
    };
    Some(crate::events::NewEvent {
        account_id: account,
        event_type: r.draft.action.clone(),
        payload: serde_json::json!({ "seq": r.seq }).to_string(),
        first_sighting,
    })
}

async fn new_endpoint(
    store: &dyn Store,
    account: AccountId,
    url: &str,
    secret: &[u8],
) -> crate::events::WebhookEndpointRecord {
    let new = crate::events::NewWebhookEndpoint {
        account_id: account,
        url: url.into(),
        description: "test".into(),
        secret: zeroize::Zeroizing::new(secret.to_vec()),
        created_at: UnixMillis(1_000),
    };
    store.create_webhook_endpoint(new, draft("webhook.create", "", Some(account))).await.unwrap()
}

fn login(account: AccountId, source: &str) -> AuditDraft {
    AuditDraft { source: Some(source.into()), ..draft("auth.login", "account:x", Some(account)) }
}

/// Endpoints are registered with their audit record and a sealed secret that never appears in
/// the stored data; listing shows only live ones of the account; a deleted endpoint's pending
/// deliveries become dead and it gets no new ones; the secret opens again after a restart.
pub async fn webhook_endpoints_keep_sealed_secrets_and_deleting_one_ends_its_deliveries<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1).await;
    let bob = new_account(&*store, "bob", 1).await;
    let secret = b"whsec-test-secret-0123456789-abcdefghij";
    let a1 = new_endpoint(&*store, alice.id, "https://a.example/1", secret).await;
    let a2 = new_endpoint(&*store, alice.id, "https://a.example/2", secret).await;
    let b1 = new_endpoint(&*store, bob.id, "https://b.example/1", secret).await;
    let audit = whole_audit(&*store).await;
    assert_eq!(audit.last().unwrap().draft.target, format!("webhook:{}", b1.id));
    assert_eq!(store.list_webhook_endpoints(Some(alice.id)).await.unwrap(), vec![a1.clone(), a2.clone()]);
    assert_eq!(store.list_webhook_endpoints(None).await.unwrap().len(), 3);
    assert!(!contains(&h.dump().await, secret), "a webhook secret is stored in plain text");
    let missing = crate::events::NewWebhookEndpoint {
        account_id: AccountId(999),
        url: "https://x.example".into(),
        description: String::new(),
        secret: zeroize::Zeroizing::new(vec![1; 32]),
        created_at: UnixMillis(1),
    };
    let before = audit_len(&*store).await;
    assert!(matches!(
        store.create_webhook_endpoint(missing, draft("webhook.create", "", None)).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(audit_len(&*store).await, before, "a refused endpoint leaves no audit record");

    store.append_audit(draft("key.create", "kg_1", Some(alice.id))).await.unwrap();
    let r = store.ingest_events(100, &test_mapper).await.unwrap();
    assert_eq!((r.events, r.deliveries), (1, 2), "{r:?}");
    store.delete_webhook_endpoint(a2.id, UnixMillis(5), draft("webhook.delete", "", Some(alice.id))).await.unwrap();
    assert!(matches!(
        store.delete_webhook_endpoint(a2.id, UnixMillis(5), draft("webhook.delete", "", None)).await,
        Err(StoreError::NotFound(_))
    ));
    let dead = store.webhook_deliveries(a2.id, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].status, crate::events::DeliveryStatus::Dead);
    assert_eq!(dead[0].last_error.as_deref(), Some("endpoint deleted"));
    assert_eq!(store.list_webhook_endpoints(Some(alice.id)).await.unwrap(), vec![a1.clone()]);
    assert_eq!(store.webhook_endpoint(a2.id).await.unwrap(), None);
    store.append_audit(draft("key.create", "kg_2", Some(alice.id))).await.unwrap();
    let r = store.ingest_events(100, &test_mapper).await.unwrap();
    assert_eq!((r.events, r.deliveries), (1, 1), "the deleted endpoint gets nothing new: {r:?}");
    drop(store);
    let store = h.open().await;
    let claimed =
        store.claim_deliveries(UnixMillis(u64::MAX / 4), UnixMillis(u64::MAX / 4 + 1), 10, false).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(claimed.iter().all(|c| c.endpoint_id == a1.id && c.secret.as_slice() == secret));
    assert!(!format!("{claimed:?}").contains("whsec-test"), "Debug shows the secret");
}

/// The worker's ingest reads the audit log once: each mapped record becomes one event (the
/// console's notice) with a delivery per active endpoint, due at the record's time; records the
/// mapper ignores are passed over; a second ingest finds nothing; a login event is stored only
/// for an address new to the account; concurrent ingests (several nodes) never store an event
/// twice.
pub async fn events_are_ingested_once_from_the_audit_log<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1).await;
    let bob = new_account(&*store, "bob", 1).await;
    let ep = new_endpoint(&*store, alice.id, "https://a.example/", b"0123456789abcdef0123456789").await;
    let paused = new_endpoint(&*store, alice.id, "https://a.example/paused", b"0123456789abcdef0123456789").await;
    store
        .set_webhook_endpoint_status(
            paused.id,
            crate::events::EndpointStatus::Disabled,
            draft("webhook.disable", "", None),
        )
        .await
        .unwrap();
    store.append_audit(draft("key.create", "kg_1", Some(alice.id))).await.unwrap();
    store.append_audit(draft("key.edit", "kg_1", Some(alice.id))).await.unwrap();
    store.append_audit(login(alice.id, "192.0.2.1")).await.unwrap();
    store.append_audit(login(alice.id, "192.0.2.1")).await.unwrap();
    store.append_audit(login(alice.id, "192.0.2.2")).await.unwrap();
    store.append_audit(login(bob.id, "192.0.2.1")).await.unwrap();
    store.append_audit(draft("totp.disable", "account:bob", Some(bob.id))).await.unwrap();
    let last = whole_audit(&*store).await.last().unwrap().seq;
    // Small pages: the cursor carries over.
    let mut total = crate::events::IngestReport::default();
    loop {
        let r = store.ingest_events(3, &test_mapper).await.unwrap();
        if r.read == 0 {
            assert_eq!(r.cursor, last);
            break;
        }
        total.events += r.events;
        total.deliveries += r.deliveries;
    }
    assert_eq!(total.events, 5, "key.create, two new login addresses of alice, bob's login, bob's totp.disable");
    assert_eq!(total.deliveries, 3, "alice's active endpoint only");
    let events = store.account_events(alice.id, i64::MAX, 10).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["auth.login", "auth.login", "key.create"], "newest first");
    assert!(events.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(store.account_events(alice.id, events[1].id, 10).await.unwrap(), events[2..].to_vec());
    assert_eq!(store.account_events(bob.id, i64::MAX, 10).await.unwrap().len(), 2);
    let deliveries = store.webhook_deliveries(ep.id, 10).await.unwrap();
    assert_eq!(deliveries.len(), 3);
    assert!(deliveries.iter().all(|d| d.status == crate::events::DeliveryStatus::Pending && d.attempts == 0));
    assert!(store.webhook_deliveries(paused.id, 10).await.unwrap().is_empty());
    // Nothing more, and a new record continues from the cursor after a restart.
    assert_eq!(store.ingest_events(100, &test_mapper).await.unwrap().events, 0);
    drop(store);
    let store = h.open().await;
    store.append_audit(login(alice.id, "192.0.2.2")).await.unwrap();
    store.append_audit(login(alice.id, "192.0.2.3")).await.unwrap();
    assert_eq!(store.ingest_events(100, &test_mapper).await.unwrap().events, 1, "only the new address");
    // Concurrent ingests, from several handles where the backend allows it.
    for i in 0..20 {
        store.append_audit(draft("key.create", &format!("kg_c{i}"), Some(alice.id))).await.unwrap();
    }
    let others: Vec<Arc<dyn Store>> =
        if H::SHARED { vec![h.open().await, h.open().await, Arc::clone(&store)] } else { vec![Arc::clone(&store); 3] };
    let reports = futures_all(others.into_iter().map(|s| async move {
        let mut n = 0;
        loop {
            let r = s.ingest_events(2, &test_mapper).await.unwrap();
            if r.read == 0 {
                return n;
            }
            n += r.events;
        }
    }))
    .await;
    assert_eq!(reports.iter().sum::<usize>(), 20, "{reports:?}");
    let events = store.account_events(alice.id, i64::MAX, 100).await.unwrap();
    assert_eq!(events.len(), 24);
    let mut seqs: Vec<i64> = events.iter().map(|e| e.audit_seq).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), 24, "no event twice");
    // Concurrent claims (several nodes' workers) hand each delivery to one of them.
    let pending = store.webhook_deliveries(ep.id, 100).await.unwrap().len();
    assert_eq!(pending, 24, "one delivery per event of the active endpoint");
    let claimers: Vec<Arc<dyn Store>> =
        if H::SHARED { vec![h.open().await, h.open().await, h.open().await] } else { vec![Arc::clone(&store); 3] };
    let claimed = futures_all(claimers.into_iter().map(|s| async move {
        let mut ids = Vec::new();
        loop {
            let batch = s
                .claim_deliveries(UnixMillis(u64::MAX / 4), UnixMillis(u64::MAX / 4 + 60_000), 3, false)
                .await
                .unwrap();
            if batch.is_empty() {
                return ids;
            }
            ids.extend(batch.iter().map(|d| d.id));
        }
    }))
    .await;
    let mut all: Vec<i64> = claimed.iter().flatten().copied().collect();
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((total, all.len()), (24, 24), "every delivery claimed once: {claimed:?}");
}

/// Deliveries are claimed under a lease: a claimed one is not handed out again until its lease
/// runs out or it is finished; a failed attempt waits for its retry time; one given up is dead
/// (the dead letter) until redelivered; a delivered one is never claimed again; a 410 answer
/// pauses the endpoint, whose deliveries then wait.
pub async fn deliveries_are_leased_retried_and_dead_lettered<H: Harness>() {
    use crate::events::{AttemptOutcome, DeliveryStatus, EndpointStatus};
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1).await;
    let ep = new_endpoint(&*store, alice.id, "https://a.example/", b"0123456789abcdef0123456789").await;
    for i in 0..3 {
        store.append_audit(draft("key.create", &format!("kg_{i}"), Some(alice.id))).await.unwrap();
    }
    store.ingest_events(100, &test_mapper).await.unwrap();
    let t0 = 1_700_000_000_000u64;
    let claim = |now: u64, n: u32| {
        let store = Arc::clone(&store);
        async move { store.claim_deliveries(UnixMillis(now), UnixMillis(now + 1_000), n, false).await.unwrap() }
    };
    assert!(claim(t0 - 1, 10).await.is_empty(), "not due before the change happened");
    let first = claim(t0, 2).await;
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].attempts, 0);
    let second = claim(t0, 10).await;
    assert_eq!(second.len(), 1, "the leased ones are not handed out twice");
    assert!(claim(t0 + 500, 10).await.is_empty());
    // Lease over without a result (a crash mid-send): handed out again.
    let again = claim(t0 + 1_000, 10).await;
    assert_eq!(again.len(), 3);
    let (a, b, c) = (again[0].id, again[1].id, again[2].id);
    store.finish_delivery(a, AttemptOutcome::Delivered { at: UnixMillis(t0 + 1_100), status: 204 }).await.unwrap();
    let failed = |at: u64, retry: Option<u64>, gone: bool| AttemptOutcome::Failed {
        at: UnixMillis(at),
        status: Some(if gone { 410 } else { 500 }),
        error: "HTTP 500".into(),
        retry_at: retry.map(UnixMillis),
        disable_endpoint: gone,
    };
    store.finish_delivery(b, failed(t0 + 1_100, Some(t0 + 5_000), false)).await.unwrap();
    store.finish_delivery(c, failed(t0 + 1_100, None, false)).await.unwrap();
    assert!(claim(t0 + 4_999, 10).await.is_empty(), "the retry waits for its time");
    let retried = claim(t0 + 5_000, 10).await;
    assert_eq!(retried.iter().map(|d| (d.id, d.attempts)).collect::<Vec<_>>(), [(b, 1)]);
    let listed = store.webhook_deliveries(ep.id, 10).await.unwrap();
    let by_id = |id| listed.iter().find(|d| d.id == id).unwrap().clone();
    assert_eq!(by_id(a).status, DeliveryStatus::Delivered);
    assert_eq!(by_id(a).delivered_at, Some(UnixMillis(t0 + 1_100)));
    assert_eq!(by_id(a).last_status, Some(204));
    assert_eq!(by_id(c).status, DeliveryStatus::Dead);
    assert_eq!((by_id(c).attempts, by_id(c).last_error.as_deref()), (1, Some("HTTP 500")));
    // Finishing a delivered one again changes nothing.
    store.finish_delivery(a, failed(t0 + 9_000, None, false)).await.unwrap();
    assert_eq!(
        store.webhook_deliveries(ep.id, 10).await.unwrap().iter().find(|d| d.id == a).unwrap().status,
        DeliveryStatus::Delivered
    );
    // Redelivery of the dead letter, audited; only dead ones.
    assert!(matches!(
        store.redeliver(ep.id, a, UnixMillis(t0), draft("webhook.redeliver", "", None)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.redeliver(ep.id, 9_999, UnixMillis(t0), draft("webhook.redeliver", "", None)).await,
        Err(StoreError::NotFound(_))
    ));
    let before = audit_len(&*store).await;
    assert!(
        matches!(
            store.redeliver(ep.id + 1, c, UnixMillis(t0), draft("webhook.redeliver", "", None)).await,
            Err(StoreError::NotFound(_))
        ),
        "a delivery is redelivered through its own endpoint only"
    );
    store.redeliver(ep.id, c, UnixMillis(t0 + 6_000), draft("webhook.redeliver", "", Some(alice.id))).await.unwrap();
    assert_eq!(audit_len(&*store).await, before + 1);
    // b's lease from the claim above runs to t0 + 6_000.
    let due = claim(t0 + 6_000, 10).await;
    assert_eq!(due.iter().map(|d| (d.id, d.attempts)).collect::<Vec<_>>(), [(b, 1), (c, 0)]);
    // A 410 pauses the endpoint: its pending deliveries wait until it is active again.
    store.finish_delivery(b, failed(t0 + 6_100, Some(t0 + 6_200), true)).await.unwrap();
    assert_eq!(store.webhook_endpoint(ep.id).await.unwrap().unwrap().status, EndpointStatus::Disabled);
    assert!(claim(t0 + 60_000, 10).await.is_empty(), "a paused endpoint gets nothing");
    store.set_webhook_endpoint_status(ep.id, EndpointStatus::Active, draft("webhook.enable", "", None)).await.unwrap();
    assert_eq!(claim(t0 + 60_000, 10).await.len(), 2);
}

/// A key's addresses are recorded once each: the audit record of a sighting is appended only
/// the first time (also across concurrent flushes); a leak report's digest is accepted once.
pub async fn key_addresses_and_leak_reports_are_recorded_once<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1).await;
    let mut e = TestEntropy::new(17);
    let (ka, kb) = (ApiKeyId::generate(&mut e).unwrap(), ApiKeyId::generate(&mut e).unwrap());
    let sighting = |key: &ApiKeyId, address: &str| crate::events::KeySighting {
        key: key.clone(),
        address: address.into(),
        audit: draft("key.new_address", key.as_str(), Some(alice.id)),
    };
    let before = audit_len(&*store).await;
    let batch = vec![sighting(&ka, "192.0.2.1"), sighting(&ka, "192.0.2.2"), sighting(&kb, "192.0.2.1")];
    let counts = futures_all((0..4).map(|_| {
        let store = Arc::clone(&store);
        let batch = batch.clone();
        async move { store.record_key_addresses(&batch).await.unwrap() }
    }))
    .await;
    assert_eq!(counts.iter().sum::<usize>(), 3, "{counts:?}");
    assert_eq!(audit_len(&*store).await, before + 3);
    assert_eq!(store.record_key_addresses(&[sighting(&ka, "192.0.2.3")]).await.unwrap(), 1);
    assert_eq!(store.record_key_addresses(&[]).await.unwrap(), 0);
    let digest = [7u8; 32];
    assert!(store.record_leak_report(&digest, UnixMillis(1)).await.unwrap());
    assert!(!store.record_leak_report(&digest, UnixMillis(2)).await.unwrap(), "a replay");
    drop(store);
    let store = h.open().await;
    assert!(!store.record_leak_report(&digest, UnixMillis(3)).await.unwrap(), "a replay after a restart");
    assert!(store.record_leak_report(&[8u8; 32], UnixMillis(3)).await.unwrap());
    // A leaked HMAC secret finds its key by the secret's digest; nothing else does.
    let k = hmac_key(&mut e, alice.id, 5);
    insert(&*store, &k).await;
    let digest = crate::events::secret_digest(secret_of(&k).expose());
    assert_eq!(store.key_by_secret_digest(&digest).await.unwrap(), Some(k.id.clone()));
    assert_eq!(store.key_by_secret_digest(&crate::events::secret_digest(k.id.as_str())).await.unwrap(), None);
    assert_eq!(store.index_secret_digests(100).await.unwrap(), 0, "new keys are indexed when created");
}

/// With `one_per_endpoint`, a claim takes at most one delivery of each endpoint, and none of an
/// endpoint with one leased: a receiver that hangs holds back only its own deliveries.
pub async fn one_delivery_per_endpoint_is_in_flight_when_asked<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1).await;
    let bob = new_account(&*store, "bob", 1).await;
    let slow = new_endpoint(&*store, alice.id, "https://a.example/", b"0123456789abcdef0123456789").await;
    let other = new_endpoint(&*store, bob.id, "https://b.example/", b"0123456789abcdef0123456789").await;
    for i in 0..3 {
        store.append_audit(draft("key.create", &format!("kg_a{i}"), Some(alice.id))).await.unwrap();
    }
    store.ingest_events(100, &test_mapper).await.unwrap();
    let t = 1_700_000_000_000u64;
    let first = store.claim_deliveries(UnixMillis(t), UnixMillis(t + 10_000), 10, true).await.unwrap();
    assert_eq!(first.len(), 1, "one of the endpoint's three");
    assert!(store.claim_deliveries(UnixMillis(t), UnixMillis(t + 10_000), 10, true).await.unwrap().is_empty());
    store.append_audit(draft("key.create", "kg_b", Some(bob.id))).await.unwrap();
    store.ingest_events(100, &test_mapper).await.unwrap();
    let next = store.claim_deliveries(UnixMillis(t + 1), UnixMillis(t + 10_000), 10, true).await.unwrap();
    assert_eq!(next.iter().map(|d| d.endpoint_id).collect::<Vec<_>>(), vec![other.id], "bob's is not held up");
    // The leases run out: again one of the slow endpoint's (and bob's unfinished one).
    let later = store.claim_deliveries(UnixMillis(t + 10_000), UnixMillis(t + 20_000), 10, true).await.unwrap();
    assert_eq!(later.iter().filter(|d| d.endpoint_id == slow.id).count(), 1, "{later:?}");
    assert_eq!(later.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Connected apps (issue #15)
// ---------------------------------------------------------------------------------------------

/// An unused code of app `client_id` for `account`, issued at 5,000 ms, with hash `[hash; 32]`.
fn test_code(client_id: &str, hash: u8, account: AccountId, expires_at: u64) -> crate::CodeRecord {
    crate::CodeRecord {
        code_hash: [hash; 32],
        client_id: client_id.into(),
        account_id: account,
        redirect_uri: "https://tax.example/cb".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        grant_json: r#"{"permissions":["read"]}"#.into(),
        created_at: UnixMillis(5_000),
        expires_at: UnixMillis(expires_at),
        used_at: None,
        key_id: None,
    }
}

fn test_app(client_id: &str, at: u64) -> crate::AppRecord {
    crate::AppRecord {
        client_id: client_id.into(),
        name: "Tax Helper".into(),
        homepage: "https://tax.example".into(),
        publisher_domain: "tax.example".into(),
        redirect_uris: vec!["https://tax.example/cb".into(), "http://127.0.0.1:1/cb".into()],
        max_permissions: Permissions::with(&[Permission::Trade]),
        client_kind: keygate_auth::oauth::ClientKind::Confidential,
        secret_sha256: Some([7; 32]),
        verified: false,
        logo_url: None,
        status: crate::AppStatus::Active,
        registered_by_account: None,
        created_at: UnixMillis(at),
        created_by: "operator:cli".into(),
        updated_at: UnixMillis(at),
    }
}

/// An app is stored and read back whole, updates (verified, suspended) are audited, an unknown
/// app is not found, and a key issued to an app carries its client id and is listed under it.
pub async fn apps_round_trip_and_keys_issued_to_them_are_marked_and_found<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut e = TestEntropy::new(1501);
    let alice = new_account(&*store, "alice", 1_000).await;
    let before = audit_len(&*store).await;
    let app = test_app("kgapp_0123456789abcdef", 2_000);
    store.insert_app(&app, draft("app.register", &app.client_id, None)).await.unwrap();
    assert_eq!(store.get_app(&app.client_id).await.unwrap(), Some(app.clone()));
    assert_eq!(store.get_app("kgapp_nope").await.unwrap(), None);
    assert!(matches!(
        store.insert_app(&app, draft("app.register", &app.client_id, None)).await,
        Err(StoreError::Conflict(_))
    ));
    let changed = crate::AppRecord {
        verified: true,
        status: crate::AppStatus::Suspended,
        updated_at: UnixMillis(3_000),
        ..app.clone()
    };
    store.update_app(&changed, draft("app.suspend", &app.client_id, None)).await.unwrap();
    assert_eq!(store.list_apps().await.unwrap(), vec![changed.clone()]);
    let missing = crate::AppRecord { client_id: "kgapp_missing".into(), ..changed.clone() };
    assert!(matches!(store.update_app(&missing, draft("app.suspend", "x", None)).await, Err(StoreError::NotFound(_))));
    assert_eq!(audit_len(&*store).await, before + 2, "one audit record per successful change, none for refusals");

    let mut k = hmac_key(&mut e, alice.id, 4_000);
    k.app_id = Some(app.client_id.clone());
    store.insert_key(&k, draft("key.create", k.id.as_str(), Some(alice.id))).await.unwrap();
    let plain = hmac_key(&mut e, alice.id, 4_001);
    store.insert_key(&plain, draft("key.create", plain.id.as_str(), Some(alice.id))).await.unwrap();
    assert_eq!(store.get_key(&k.id).await.unwrap().unwrap().app_id.as_deref(), Some(app.client_id.as_str()));
    assert_eq!(store.get_key(&plain.id).await.unwrap().unwrap().app_id, None);
    assert_eq!(store.app_key_ids(&app.client_id).await.unwrap(), vec![k.id.clone()]);
    assert!(store.app_key_ids("kgapp_other").await.unwrap().is_empty());
    assert!(verify_chain([0; 32], 0, &whole_audit(&*store).await).is_ok());
}

/// A code is stored with its consent's audit record and redeemed exactly once, even by many
/// exchanges at the same moment; the winner's key id is kept with it for a later reuse to find.
pub async fn an_authorization_code_is_redeemed_once_even_when_concurrent<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let app = test_app("kgapp_0123456789abcdef", 2_000);
    store.insert_app(&app, draft("app.register", &app.client_id, None)).await.unwrap();
    let code = test_code(&app.client_id, 9, alice.id, 65_000);
    let before = audit_len(&*store).await;
    store.insert_code(&code, draft("app.consent", &app.client_id, Some(alice.id))).await.unwrap();
    assert_eq!(audit_len(&*store).await, before + 1);
    assert_eq!(store.get_code(&[9; 32]).await.unwrap(), Some(code.clone()));
    assert_eq!(store.get_code(&[8; 32]).await.unwrap(), None);
    let mut e = TestEntropy::new(1502);
    let ids: Vec<ApiKeyId> = (0..8).map(|_| ApiKeyId::generate(&mut e).unwrap()).collect();
    let shared = store.clone();
    let tasks = ids
        .iter()
        .cloned()
        .map(|id| {
            let s = shared.clone();
            tokio::spawn(async move { s.redeem_code(&[9; 32], UnixMillis(6_000), &id).await.unwrap().then_some(id) })
        })
        .collect::<Vec<_>>();
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(id) = t.await.unwrap() {
            winners.push(id);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one exchange takes the code");
    let used = store.get_code(&[9; 32]).await.unwrap().unwrap();
    assert_eq!(used.used_at, Some(UnixMillis(6_000)));
    assert_eq!(used.key_id.as_ref(), Some(&winners[0]));
    assert!(!store.redeem_code(&[9; 32], UnixMillis(7_000), &ids[0]).await.unwrap());
    assert!(!store.redeem_code(&[1; 32], UnixMillis(7_000), &ids[0]).await.unwrap(), "unknown code");
    assert_eq!(store.get_code(&[9; 32]).await.unwrap().unwrap().key_id.as_ref(), Some(&winners[0]));
}

/// Ending an app's codes (a disconnect: one account's; a suspension: everyone's) rewrites the
/// expiry of every live code, taken ones included, so that an exchange still in progress sees
/// its code ended; a taken code stays taken (a second exchange of it is still a reuse).
pub async fn live_codes_are_ended_by_app_and_by_account_taken_ones_too<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_000).await;
    let app = test_app("kgapp_0123456789abcdef", 2_000);
    store.insert_app(&app, draft("app.register", &app.client_id, None)).await.unwrap();
    let code = |hash: u8, account: AccountId| test_code(&app.client_id, hash, account, 65_000);
    for (hash, who) in [(1, alice.id), (2, alice.id), (3, bob.id)] {
        store.insert_code(&code(hash, who), draft("app.consent", &app.client_id, Some(who))).await.unwrap();
    }
    let id = ApiKeyId::generate(&mut TestEntropy::new(77)).unwrap();
    assert!(store.redeem_code(&[2; 32], UnixMillis(6_000), &id).await.unwrap());
    assert_eq!(store.expire_codes(&app.client_id, Some(alice.id), UnixMillis(7_000)).await.unwrap(), 2);
    assert_eq!(store.get_code(&[1; 32]).await.unwrap().unwrap().expires_at, UnixMillis(7_000));
    let taken = store.get_code(&[2; 32]).await.unwrap().unwrap();
    assert_eq!((taken.expires_at, taken.used_at, taken.key_id), (UnixMillis(7_000), Some(UnixMillis(6_000)), Some(id)));
    assert_eq!(store.get_code(&[3; 32]).await.unwrap().unwrap().expires_at, UnixMillis(65_000), "bob's: kept");
    // Ended codes are not ended again (their expiry stays when it was).
    assert_eq!(store.expire_codes(&app.client_id, None, UnixMillis(8_000)).await.unwrap(), 1);
    assert_eq!(store.get_code(&[3; 32]).await.unwrap().unwrap().expires_at, UnixMillis(8_000));
    assert_eq!(store.get_code(&[1; 32]).await.unwrap().unwrap().expires_at, UnixMillis(7_000));
    assert_eq!(store.expire_codes("kgapp_ffffffffffffffff", None, UnixMillis(9_000)).await.unwrap(), 0);
}

/// Housekeeping deletes the codes that expired before the given time, used or not, and nothing
/// else: a live code, and one that expires exactly then, are kept.
pub async fn expired_codes_are_purged_and_live_ones_kept<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let app = test_app("kgapp_0123456789abcdef", 2_000);
    store.insert_app(&app, draft("app.register", &app.client_id, None)).await.unwrap();
    let code = |hash: u8, expires_at: u64| test_code(&app.client_id, hash, alice.id, expires_at);
    for (hash, expires_at) in [(1, 10_000), (2, 20_000), (3, 30_000), (4, 40_000)] {
        store.insert_code(&code(hash, expires_at), draft("app.consent", &app.client_id, Some(alice.id))).await.unwrap();
    }
    let id = ApiKeyId::generate(&mut TestEntropy::new(78)).unwrap();
    assert!(store.redeem_code(&[2; 32], UnixMillis(6_000), &id).await.unwrap());
    let audit_before = audit_len(&*store).await;
    assert_eq!(store.purge_codes(UnixMillis(30_000)).await.unwrap(), 2, "the unused and the used expired code");
    assert_eq!(store.get_code(&[1; 32]).await.unwrap(), None);
    assert_eq!(store.get_code(&[2; 32]).await.unwrap(), None);
    assert_eq!(store.get_code(&[3; 32]).await.unwrap().unwrap().expires_at, UnixMillis(30_000), "expires then: kept");
    assert!(store.get_code(&[4; 32]).await.unwrap().is_some());
    assert_eq!(store.purge_codes(UnixMillis(30_000)).await.unwrap(), 0, "nothing left to purge");
    assert_eq!(audit_len(&*store).await, audit_before, "housekeeping writes no audit record");
}

/// The operator's list of accounts allowed to register apps: allowing twice is allowing, and
/// each change has its audit record.
pub async fn app_developers_are_allowed_and_disallowed_with_audit_records<H: Harness>() {
    let h = H::fresh().await;
    let store = h.open().await;
    let alice = new_account(&*store, "alice", 1_000).await;
    let bob = new_account(&*store, "bob", 1_000).await;
    let before = audit_len(&*store).await;
    assert!(!store.is_app_developer(alice.id).await.unwrap());
    let d = || draft("app.developer", "account:alice", Some(alice.id));
    store.set_app_developer(alice.id, true, UnixMillis(2_000), d()).await.unwrap();
    store.set_app_developer(alice.id, true, UnixMillis(2_001), d()).await.unwrap();
    assert!(store.is_app_developer(alice.id).await.unwrap());
    assert!(!store.is_app_developer(bob.id).await.unwrap());
    store.set_app_developer(alice.id, false, UnixMillis(2_002), d()).await.unwrap();
    assert!(!store.is_app_developer(alice.id).await.unwrap());
    assert_eq!(audit_len(&*store).await, before + 3);
    assert!(matches!(
        store.set_app_developer(AccountId(999_999), true, UnixMillis(2_003), d()).await,
        Err(StoreError::NotFound(_))
    ));
}

#[cfg(test)]
mod tests {
    /// Guards against a test written here but never run: every `pub async fn name<H: Harness>`
    /// must be listed in `store_conformance_suite!`.
    #[test]
    fn every_conformance_test_is_listed_in_the_suite_macro() {
        let src = include_str!("conformance.rs");
        let (head, body) = src.split_once("macro_rules! store_conformance_suite").unwrap();
        let listed = &body[..body.find("(@tests $harness:ty;").unwrap()];
        let tests: Vec<&str> = src
            .lines()
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .filter_map(|l| l.split_once("<H: Harness>()").map(|(name, _)| name))
            .collect();
        assert!(tests.len() >= 20, "found only {tests:?}");
        for t in tests {
            assert!(listed.contains(&format!("{t},")), "{t} is not in store_conformance_suite!");
        }
        assert!(!head.is_empty());
    }
}
