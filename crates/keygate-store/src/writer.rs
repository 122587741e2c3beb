//! The exchange writer's lease: which node runs the exchange engine, under which term, and where
//! the other nodes send it their commands.
//!
//! On PostgreSQL the writer holds a session advisory lock on a connection of its own: the lock
//! lasts exactly as long as that connection, so a writer that dies (`kill -9`, a lost network)
//! lets the next node take over as soon as PostgreSQL notices. Taking over raises the lease row's
//! `term`, and every journal append checks the term in its own transaction
//! ([`crate::JournalStore::append_journal`]): a deposed writer that still believes it writes can
//! never append again, even before it learns that it lost the lock. On SQLite one process owns
//! the data (the data directory's lock), so it is always the writer; the term is kept all the same.

use crate::dialect::Dialect;
use crate::rows::{Columns as _, to_db_time};
use crate::sql::{SqlDb, SqlStore, stmt};
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use keygate_proto::UnixMillis;
use zeroize::Zeroizing;

/// The key of the writer's advisory lock on PostgreSQL ("kgwriter" in ASCII): it only has to
/// differ from any other advisory lock taken in the same database.
pub const WRITER_LOCK: i64 = 0x6b67_7772_6974_6572;

/// Who writes the exchange, as the lease row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterLease {
    /// Raised by each takeover; 0 before any writer ever took over.
    pub term: i64,
    /// The writer's node name.
    pub node: String,
    /// Where the other nodes reach the writer's internal channel (`http://host:port`); empty when
    /// it has none.
    pub endpoint: String,
    /// When it took over.
    pub since: UnixMillis,
}

/// Held by the writer for as long as it writes: on PostgreSQL the connection that holds the
/// advisory lock (dropping it closes the connection, which releases the lock); nothing on SQLite.
#[derive(Debug)]
pub struct WriterLock(pub(crate) LockInner);

#[derive(Debug)]
pub(crate) enum LockInner {
    /// One process owns the data: nobody else can take it.
    Exclusive,
    /// The connection that holds [`WRITER_LOCK`].
    Postgres(sqlx::postgres::PgConnection),
}

impl WriterLock {
    /// Whether the lock is still held: a round trip on its connection.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the connection is gone: the lock went with it.
    pub async fn check(&mut self) -> StoreResult<()> {
        match &mut self.0 {
            LockInner::Exclusive => Ok(()),
            LockInner::Postgres(conn) => {
                sqlx::query("SELECT 1").execute(conn).await?;
                Ok(())
            }
        }
    }

    /// On PostgreSQL, raises the term on the lock's own connection (so a claimer whose lock
    /// connection is ended meanwhile cannot raise it), and returns it; `None` elsewhere (the
    /// caller raises it in an ordinary transaction). The raise waits at most a second for the
    /// lease row: longer means a deposed writer's append still holds it (a writer paused in the
    /// middle of one), and since this node now holds the lock, that append can never be
    /// acknowledged usefully: its session is ended and the raise tried again.
    pub(crate) async fn raise_term(&mut self, node: &str, endpoint: &str, since: i64) -> StoreResult<Option<i64>> {
        let LockInner::Postgres(conn) = &mut self.0 else {
            return Ok(None);
        };
        let raise = format!(
            "UPDATE exchange_writer SET term = term + 1, node = $1, endpoint = $2, since = $3, renewed_at = {} \
             WHERE id = 1 RETURNING term",
            <crate::dialect::PostgresDialect as Dialect>::DB_NOW_MS
        );
        sqlx::query("SET lock_timeout = '1s'").execute(&mut *conn).await?;
        let first =
            sqlx::query_scalar::<_, i64>(&raise).bind(node).bind(endpoint).bind(since).fetch_one(&mut *conn).await;
        let term = match first {
            Ok(term) => term,
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03") => {
                tracing::warn!("a deposed exchange writer's append holds the lease row; ending it");
                end_deposed_appends(conn).await?;
                sqlx::query("SET lock_timeout = '10s'").execute(&mut *conn).await?;
                sqlx::query_scalar::<_, i64>(&raise).bind(node).bind(endpoint).bind(since).fetch_one(&mut *conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        sqlx::query("SET lock_timeout = 0").execute(&mut *conn).await?;
        Ok(Some(term))
    }

    /// Renews the lease of `term` on the lock's own connection, by the database's clock: the
    /// writer does this twice a second, and the other nodes depose a writer that stops
    /// ([`WriterElection::depose_stale_writer`]), so a writer that is paused or cut off rather
    /// than dead is replaced too.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the connection is gone (the lock went with it);
    /// [`StoreError::Fenced`] when another term has taken over.
    pub async fn renew(&mut self, term: i64) -> StoreResult<()> {
        match &mut self.0 {
            LockInner::Exclusive => Ok(()),
            LockInner::Postgres(conn) => {
                let done = sqlx::query(&format!(
                    "UPDATE exchange_writer SET renewed_at = {} WHERE id = 1 AND term = $1",
                    <crate::dialect::PostgresDialect as Dialect>::DB_NOW_MS
                ))
                .bind(term)
                .execute(conn)
                .await?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(StoreError::Fenced(format!("term {term} is no longer the exchange writer's")))
                }
            }
        }
    }
}

/// Ends the sessions whose journal appends hold the lease row shared (`FOR SHARE` takes a
/// `RowShareLock` on the table; nothing else does): called only when this session's node holds the
/// writer's lock or the writer's lease is stale, so they belong to a writer that can no longer
/// append anyway.
pub(crate) async fn end_deposed_appends(conn: &mut sqlx::postgres::PgConnection) -> StoreResult<u64> {
    let ended: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'relation' \
         AND relation = 'exchange_writer'::regclass AND mode = 'RowShareLock' AND granted AND pid <> pg_backend_pid()",
    )
    .fetch_all(conn)
    .await?;
    Ok(u64::try_from(ended.iter().filter(|(done,)| *done).count()).unwrap_or(u64::MAX))
}

/// A node that became the writer: the term its appends must carry, and the lock to keep.
#[derive(Debug)]
pub struct WriterClaim {
    /// The new term (the previous one plus one).
    pub term: i64,
    /// Keep it while writing; drop it to step down.
    pub lock: WriterLock,
}

/// Electing the exchange's single writer.
#[async_trait]
pub trait WriterElection: Send + Sync {
    /// Takes the writer's lock if nobody holds it and, if taken, raises the term and records
    /// `node` and `endpoint` as the writer's. `None` when another process holds the lock.
    ///
    /// The term is raised in a transaction that waits for any journal append in progress
    /// (appends hold the lease row shared), so once this returns the previous writer can append
    /// nothing more: everything it ever appended is in the journal for the new writer to read.
    async fn claim_writer(&self, node: &str, endpoint: &str, now: UnixMillis) -> StoreResult<Option<WriterClaim>>;

    /// The lease row as it stands.
    async fn current_writer(&self) -> StoreResult<WriterLease>;

    /// Ends the writer's lock when its lease was last renewed more than `stale_ms` ago by the
    /// database's clock (a paused or cut-off writer whose connection lingers), so the next
    /// [`WriterElection::claim_writer`] can take over; true if it did. Never on SQLite.
    async fn depose_stale_writer(&self, stale_ms: u64) -> StoreResult<bool>;

    /// The key nodes sign their internal calls with: derived from the master key, which every
    /// node of a deployment holds (it opens the same sealed secrets), so there is no other
    /// secret to distribute.
    fn channel_key(&self) -> Zeroizing<[u8; 32]>;
}

#[async_trait]
impl<D: Dialect> WriterElection for SqlStore<D> {
    async fn claim_writer(&self, node: &str, endpoint: &str, now: UnixMillis) -> StoreResult<Option<WriterClaim>> {
        let Some(mut lock) = D::take_writer_lock(&self.writer).await? else {
            return Ok(None);
        };
        if let Some(term) = lock.raise_term(node, endpoint, to_db_time(now, "writer lease")?).await? {
            return Ok(Some(WriterClaim { term, lock }));
        }
        let mut tx = self.begin().await?;
        let row = D::Db::optional(
            &mut tx,
            stmt(format!(
                "UPDATE exchange_writer SET term = term + 1, node = $1, endpoint = $2, since = $3, renewed_at = {} \
                 WHERE id = 1 RETURNING term",
                D::DB_NOW_MS
            ))
            .arg(node)
            .arg(endpoint)
            .arg(to_db_time(now, "writer lease")?),
        )
        .await?;
        tx.commit().await?;
        let term = row
            .ok_or_else(|| StoreError::Corrupt("the exchange writer's lease row is missing".into()))?
            .get("term", "writer lease")?;
        Ok(Some(WriterClaim { term, lock }))
    }

    async fn current_writer(&self) -> StoreResult<WriterLease> {
        let row = self
            .read_optional(stmt("SELECT term, node, endpoint, since FROM exchange_writer WHERE id = 1"))
            .await?
            .ok_or_else(|| StoreError::Corrupt("the exchange writer's lease row is missing".into()))?;
        let since: i64 = row.get("since", "writer lease")?;
        Ok(WriterLease {
            term: row.get("term", "writer lease")?,
            node: row.get("node", "writer lease")?,
            endpoint: row.get("endpoint", "writer lease")?,
            since: UnixMillis(u64::try_from(since).unwrap_or(0)),
        })
    }

    async fn depose_stale_writer(&self, stale_ms: u64) -> StoreResult<bool> {
        D::depose_stale_writer(&self.writer, i64::try_from(stale_ms).unwrap_or(i64::MAX)).await
    }

    fn channel_key(&self) -> Zeroizing<[u8; 32]> {
        self.cipher.derive(b"keygate/internal-channel/v1")
    }
}
