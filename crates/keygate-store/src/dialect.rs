//! What really differs between the backends, side by side: the statement that begins a write
//! transaction, row and chain locks, insertion order, and notifications. Everything else is one
//! implementation ([`crate::sql`]).

use crate::sql::SqlDb;

/// What differs between the backends, as constants: the statements are otherwise the same.
pub trait Dialect: Send + Sync + 'static + sealed::Sealed {
    /// The sqlx database.
    type Db: SqlDb;
    /// The store's name in `Debug` output (`SqliteStore`, `PgStore`).
    const NAME: &'static str;
    /// The statement that begins a write transaction. SQLite's `BEGIN IMMEDIATE` takes the write
    /// lock up front, so a transaction that reads the chain head and then writes never fails
    /// half-way with `SQLITE_BUSY`.
    const BEGIN: &'static str;
    /// Appended to a `SELECT` whose row the same transaction then updates: PostgreSQL's
    /// `FOR UPDATE` (concurrent transactions on other nodes wait for it); nothing on SQLite,
    /// whose write transactions are serialised by the database lock.
    const FOR_UPDATE: &'static str;
    /// The column that orders rows of `api_keys` by insertion (ties of `created_at`).
    const INSERTION_ORDER: &'static str;
    /// A statement taking `$1` (an `i64` lock key) that serialises audit appends across every
    /// connection of every process until the transaction ends, if the backend needs one.
    const LOCK_AUDIT_CHAIN: Option<&'static str>;
    /// A statement taking `$1` (a change's sequence number as text) that tells listeners on
    /// other connections about it when the transaction commits, if the backend can.
    const NOTIFY_CHANGE: Option<&'static str>;

    /// A statement taking `$1` (a journal entry's sequence number as text) that tells the other
    /// nodes' read copies of the exchange that the journal grew, when the transaction commits.
    const NOTIFY_JOURNAL: Option<&'static str>;
    /// Appended to a `SELECT` of a row the transaction only needs unchanged until it commits:
    /// PostgreSQL's `FOR SHARE` (a writer that wants to change it waits); nothing on SQLite.
    const FOR_SHARE: &'static str;
    /// Appended to a `SELECT` of queued rows a node is about to claim: PostgreSQL's
    /// `FOR UPDATE SKIP LOCKED` (nodes claiming at once take different rows instead of waiting
    /// for each other); nothing on SQLite, whose write transactions are serialised.
    const SKIP_LOCKED: &'static str;

    /// A connection of its own that hears the announcements made on `channel`, if the backend
    /// has them.
    fn listen(
        pool: &sqlx::Pool<Self::Db>,
        channel: &'static str,
    ) -> impl std::future::Future<Output = crate::StoreResult<Option<crate::changes::ChangeListener>>> + Send;

    /// An expression for the database's clock in ms since the epoch: the writer's lease is
    /// renewed and judged stale by it, so the nodes' own clocks never have to agree.
    const DB_NOW_MS: &'static str;

    /// Ends the connection that holds the exchange writer's lock when the lease has not been
    /// renewed for `stale_ms` by the database's clock; true if it did.
    fn depose_stale_writer(
        pool: &sqlx::Pool<Self::Db>,
        stale_ms: i64,
    ) -> impl std::future::Future<Output = crate::StoreResult<bool>> + Send;

    /// Takes the exchange writer's lock if it is free (see [`crate::writer`]).
    fn take_writer_lock(
        pool: &sqlx::Pool<Self::Db>,
    ) -> impl std::future::Future<Output = crate::StoreResult<Option<crate::writer::WriterLock>>> + Send;
}

mod sealed {
    /// Only this crate's dialects: the constants above are promises about its SQL.
    pub trait Sealed {}
    impl Sealed for super::SqliteDialect {}
    impl Sealed for super::PostgresDialect {}
}

/// SQLite's dialect: the database lock serialises writers, so no row or chain locks.
#[derive(Debug)]
pub struct SqliteDialect;

impl Dialect for SqliteDialect {
    type Db = sqlx::Sqlite;
    const NAME: &'static str = "SqliteStore";
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const FOR_UPDATE: &'static str = "";
    const INSERTION_ORDER: &'static str = "rowid";
    const LOCK_AUDIT_CHAIN: Option<&'static str> = None;
    const NOTIFY_CHANGE: Option<&'static str> = None;
    const NOTIFY_JOURNAL: Option<&'static str> = None;
    const FOR_SHARE: &'static str = "";
    const SKIP_LOCKED: &'static str = "";
    const DB_NOW_MS: &'static str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

    /// One process writes a SQLite file at a time (the data directory's lock), and it updates
    /// its own caches: there is nobody to tell.
    async fn listen(
        _: &sqlx::Pool<sqlx::Sqlite>,
        _: &'static str,
    ) -> crate::StoreResult<Option<crate::changes::ChangeListener>> {
        Ok(None)
    }

    /// One process owns the data: there is never another writer to depose.
    async fn depose_stale_writer(_: &sqlx::Pool<sqlx::Sqlite>, _: i64) -> crate::StoreResult<bool> {
        Ok(false)
    }

    /// The data directory's lock already makes this process the only one: it is the writer.
    async fn take_writer_lock(_: &sqlx::Pool<sqlx::Sqlite>) -> crate::StoreResult<Option<crate::writer::WriterLock>> {
        Ok(Some(crate::writer::WriterLock(crate::writer::LockInner::Exclusive)))
    }
}

/// PostgreSQL's dialect: row locks, the audit chain's advisory lock, and notifications.
#[derive(Debug)]
pub struct PostgresDialect;

impl Dialect for PostgresDialect {
    type Db = sqlx::Postgres;
    const NAME: &'static str = "PgStore";
    const BEGIN: &'static str = "BEGIN";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const INSERTION_ORDER: &'static str = "inserted";
    const LOCK_AUDIT_CHAIN: Option<&'static str> = Some("SELECT pg_advisory_xact_lock($1)");
    const NOTIFY_CHANGE: Option<&'static str> = Some("SELECT pg_notify('keygate_changes', $1)");
    const NOTIFY_JOURNAL: Option<&'static str> = Some("SELECT pg_notify('keygate_journal', $1)");
    const FOR_SHARE: &'static str = " FOR SHARE";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const DB_NOW_MS: &'static str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

    async fn listen(
        pool: &sqlx::Pool<sqlx::Postgres>,
        channel: &'static str,
    ) -> crate::StoreResult<Option<crate::changes::ChangeListener>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(channel).await?;
        Ok(Some(crate::changes::ChangeListener(listener)))
    }

    /// `pg_terminate_backend` of the session that holds the writer's advisory lock (found in
    /// `pg_locks` by the lock's key, split as PostgreSQL shows a bigint key) when the lease row
    /// was last renewed more than `stale_ms` ago. The nodes' role needs the right to end that
    /// session (the same role, or `pg_signal_backend`).
    async fn depose_stale_writer(pool: &sqlx::Pool<sqlx::Postgres>, stale_ms: i64) -> crate::StoreResult<bool> {
        let key = crate::writer::WRITER_LOCK;
        let (hi, lo) = (key >> 32, key & 0xffff_ffff);
        let ended: Vec<(bool,)> = sqlx::query_as(&format!(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l, exchange_writer w \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 AND l.objid::bigint = $2 \
             AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND w.id = 1 AND w.renewed_at < {} - $3",
            Self::DB_NOW_MS
        ))
        .bind(hi)
        .bind(lo)
        .bind(stale_ms)
        .fetch_all(pool)
        .await?;
        let deposed = ended.iter().any(|(done,)| *done);
        if deposed {
            // A writer paused in the middle of an append holds the lease row too: its append must
            // not keep the next writer from raising the term.
            let mut conn = pool.acquire().await?;
            crate::writer::end_deposed_appends(&mut conn).await?;
        }
        Ok(deposed)
    }

    /// A session advisory lock on a connection opened for it alone (not from the pool, which
    /// would hand the connection, and the lock, to other work): it is held exactly as long as
    /// that connection lives.
    async fn take_writer_lock(
        pool: &sqlx::Pool<sqlx::Postgres>,
    ) -> crate::StoreResult<Option<crate::writer::WriterLock>> {
        use sqlx::Connection as _;
        let mut conn = sqlx::postgres::PgConnection::connect_with(&pool.connect_options()).await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(crate::writer::WRITER_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if taken {
            Ok(Some(crate::writer::WriterLock(crate::writer::LockInner::Postgres(conn))))
        } else {
            // Closing the connection politely; a failure here changes nothing.
            let _ = conn.close().await;
            Ok(None)
        }
    }
}
