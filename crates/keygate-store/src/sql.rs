//! The one SQL implementation of the store, generic over the backend.
//!
//! Every aggregate's trait is implemented once, for [`SqlStore<D>`], in the aggregate's own module
//! (`accounts.rs`, `keys.rs`, ...). What really differs between SQLite and PostgreSQL is small
//! and lives in a [`Dialect`]: how a write transaction begins, how a read that is followed by a
//! write locks its row, what breaks ties in insertion order, how appends to the audit chain are
//! serialised across processes, and how other nodes hear about a committed change. Both
//! backends take `$1, $2, ...` placeholders (SQLite reads `$NNN` as parameter `NNN`), `RETURNING`,
//! `ON CONFLICT` and `CASE`, so the statements themselves are shared.
//!
//! sqlx's generic API needs a long list of higher-ranked bounds (every bound value type must be
//! encodable for every lifetime, the connection must be an executor, ...). They are written once,
//! on the blanket implementation of [`SqlDb`]; code generic over a [`Dialect`] only ever sees
//! `D::Db: SqlDb`, and binds values through [`Stmt`], whose [`Arg`] covers the three column types
//! keygate stores (64-bit integers, text, bytes, each nullable).

use crate::crypto::SecretCipher;
use crate::dialect::Dialect;
use crate::rows::Columns;
use crate::{StoreError, StoreResult};
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

/// One value bound to a placeholder: the column types keygate stores.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// A 64-bit integer column (ids, times in milliseconds, counters, flags).
    Int(Option<i64>),
    /// A text column.
    Text(Option<&'a str>),
    /// A blob (`bytea`) column: sealed secrets, hashes, journal commands.
    Bytes(Option<&'a [u8]>),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}
impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Self::Text(Some(v))
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Self::Text(Some(v))
    }
}
impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Self::Text(v)
    }
}
impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Self::Bytes(Some(v))
    }
}
impl<'a> From<Option<&'a [u8]>> for Arg<'a> {
    fn from(v: Option<&'a [u8]>) -> Self {
        Self::Bytes(v)
    }
}

/// A statement and its bound values, run by [`SqlDb`]'s methods.
#[derive(Debug)]
pub struct Stmt<'a> {
    sql: Cow<'a, str>,
    args: Vec<Arg<'a>>,
}

/// A statement with no values bound yet.
pub(crate) fn stmt<'a>(sql: impl Into<Cow<'a, str>>) -> Stmt<'a> {
    Stmt { sql: sql.into(), args: Vec::new() }
}

impl<'a> Stmt<'a> {
    /// Binds the next placeholder.
    #[must_use]
    pub(crate) fn arg(mut self, v: impl Into<Arg<'a>>) -> Self {
        self.args.push(v.into());
        self
    }
}

/// How many rows a statement changed: sqlx has it on each backend's result type, not on a trait.
pub trait Affected {
    /// Rows inserted, updated or deleted.
    fn affected(&self) -> u64;
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// A sqlx database that runs keygate's statements: every bound that generic sqlx code needs,
/// stated once (see the module documentation).
pub trait SqlDb: Database<Row: Columns, QueryResult: Affected> {
    /// Runs `stmt` on `conn`; the rows it changed.
    fn run<'a>(conn: &'a mut Self::Connection, stmt: Stmt<'a>) -> impl Future<Output = StoreResult<u64>> + Send + 'a;
    /// The first row `stmt` returns, if any.
    fn optional<'a>(
        conn: &'a mut Self::Connection,
        stmt: Stmt<'a>,
    ) -> impl Future<Output = StoreResult<Option<Self::Row>>> + Send + 'a;
    /// Every row `stmt` returns.
    fn all<'a>(
        conn: &'a mut Self::Connection,
        stmt: Stmt<'a>,
    ) -> impl Future<Output = StoreResult<Vec<Self::Row>>> + Send + 'a;
}

impl<DB> SqlDb for DB
where
    DB: Database<Row: Columns, QueryResult: Affected>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q [u8]>: Encode<'q, DB> + Type<DB>,
{
    async fn run<'a>(conn: &'a mut Self::Connection, stmt: Stmt<'a>) -> StoreResult<u64> {
        Ok(bind::<DB>(&stmt).execute(conn).await?.affected())
    }

    async fn optional<'a>(conn: &'a mut Self::Connection, stmt: Stmt<'a>) -> StoreResult<Option<Self::Row>> {
        Ok(bind::<DB>(&stmt).fetch_optional(conn).await?)
    }

    async fn all<'a>(conn: &'a mut Self::Connection, stmt: Stmt<'a>) -> StoreResult<Vec<Self::Row>> {
        Ok(bind::<DB>(&stmt).fetch_all(conn).await?)
    }
}

/// `stmt` as a sqlx query with its values bound.
fn bind<'q, DB>(stmt: &'q Stmt<'_>) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    for<'a> Option<i64>: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'a> Option<&'a [u8]>: Encode<'a, DB> + Type<DB>,
{
    stmt.args.iter().fold(sqlx::query::<DB>(&stmt.sql), |q, a| match *a {
        Arg::Int(v) => q.bind(v),
        Arg::Text(v) => q.bind(v),
        Arg::Bytes(v) => q.bind(v),
    })
}

/// A [`crate::Store`] on a SQL database: the one implementation of every aggregate trait.
pub struct SqlStore<D: Dialect> {
    /// Where the data is, safe to log: the SQLite file, or `postgres://user@host:port/db`.
    pub(crate) location: String,
    /// The pool mutations run on (SQLite: exactly one connection).
    pub(crate) writer: Pool<D::Db>,
    /// The pool reads run on (SQLite: read-only connections beside the writer; PostgreSQL: the
    /// writer's pool).
    pub(crate) reader: Pool<D::Db>,
    /// Seals secrets before they reach SQL and opens them after.
    pub(crate) cipher: Arc<SecretCipher>,
}

impl<D: Dialect> fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The cipher holds the master key: name it by its public id only. The location never
        // holds a password (see the dialects' `open`).
        f.debug_struct(D::NAME)
            .field("location", &self.location)
            .field("master_key_id", &self.cipher.current_id())
            .finish_non_exhaustive()
    }
}

/// A write transaction on `D`'s database.
pub(crate) type Tx<D> = sqlx::Transaction<'static, <D as Dialect>::Db>;

impl<D: Dialect> SqlStore<D> {
    /// Begins a write transaction with the dialect's statement.
    pub(crate) async fn begin(&self) -> StoreResult<Tx<D>> {
        Ok(self.writer.begin_with(D::BEGIN).await?)
    }

    /// The first row of a read, if any.
    pub(crate) async fn read_optional(&self, stmt: Stmt<'_>) -> StoreResult<Option<<D::Db as Database>::Row>> {
        let mut conn = self.reader.acquire().await?;
        D::Db::optional(&mut conn, stmt).await
    }

    /// Every row of a read.
    pub(crate) async fn read_all(&self, stmt: Stmt<'_>) -> StoreResult<Vec<<D::Db as Database>::Row>> {
        let mut conn = self.reader.acquire().await?;
        D::Db::all(&mut conn, stmt).await
    }

    /// Runs one statement in a transaction of its own.
    pub(crate) async fn write_one(&self, stmt: Stmt<'_>) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let n = D::Db::run(&mut tx, stmt).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Closes every connection, waiting for them to finish (SQLite checkpoints its WAL on the
    /// last close). Later calls on this store fail.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// A stored count as a `u32`; one out of range (only a corrupt row holds one) reads as the
/// largest, so a damaged failure counter locks rather than unlocks.
pub(crate) fn count_u32(n: i64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// [`StoreError::NotFound`] unless `affected` rows is at least one.
pub(crate) fn found(affected: u64, what: impl FnOnce() -> String) -> StoreResult<()> {
    if affected == 0 { Err(StoreError::NotFound(what())) } else { Ok(()) }
}
