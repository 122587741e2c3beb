//! The change feed: what other nodes (and a restarted process) read to learn which cached
//! accounts, keys and second factors changed.
//!
//! Each record is written by [`crate::audit_log`] in the transaction of the change it describes,
//! numbered by that change's audit record, so a change is in the feed exactly when it committed.
//! On PostgreSQL the same transaction sends a `NOTIFY` on [`CHANGE_CHANNEL`] carrying the number;
//! a listener that lost its connection catches up with [`ChangeFeed::changes_after`].

use crate::StoreResult;
use crate::dialect::Dialect;
use crate::records::ChangeRecord;
use crate::rows::change_from_row;
use crate::sql::{SqlStore, stmt};
use async_trait::async_trait;

/// The PostgreSQL notification channel of the change feed; each payload is a change's `seq`.
pub const CHANGE_CHANNEL: &str = "keygate_changes";

/// Reading the change feed.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Changes with `seq > after`, oldest first, at most `limit`.
    async fn changes_after(&self, after: i64, limit: u32) -> StoreResult<Vec<ChangeRecord>>;

    /// The `seq` of the latest change, 0 when there is none: where a node that has just read
    /// everything it caches starts listening.
    async fn last_change(&self) -> StoreResult<i64>;

    /// A listener that hears each change as it commits, on backends that announce them
    /// (PostgreSQL); `None` where one process owns the data (SQLite).
    async fn listen(&self) -> StoreResult<Option<ChangeListener>>;
}

/// The PostgreSQL notification channel of the exchange journal; each payload is the last `seq`
/// of an appended batch.
pub const JOURNAL_CHANNEL: &str = "keygate_journal";

/// Hears announcements of the change feed or of the journal on a connection of its own (see
/// [`ChangeFeed::listen`] and [`crate::JournalStore::listen_journal`]).
#[derive(Debug)]
pub struct ChangeListener(pub(crate) sqlx::postgres::PgListener);

impl ChangeListener {
    /// The next announced change's `seq`; `None` when the connection was lost (announcements
    /// made meanwhile are lost with it: catch up with [`ChangeFeed::changes_after`]). The next
    /// call reconnects.
    ///
    /// # Errors
    /// [`crate::StoreError::Backend`] when reconnecting fails.
    pub async fn next(&mut self) -> StoreResult<Option<i64>> {
        loop {
            match self.0.try_recv().await? {
                // A payload that is not a number is not ours to act on; wait for the next.
                Some(note) => match note.payload().parse() {
                    Ok(seq) => return Ok(Some(seq)),
                    Err(_) => continue,
                },
                None => return Ok(None),
            }
        }
    }
}

#[async_trait]
impl<D: Dialect> ChangeFeed for SqlStore<D> {
    async fn changes_after(&self, after: i64, limit: u32) -> StoreResult<Vec<ChangeRecord>> {
        let rows = self
            .read_all(
                stmt("SELECT seq, at, kind, account_id, key_id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .arg(after)
                    .arg(i64::from(limit)),
            )
            .await?;
        rows.iter().map(change_from_row).collect()
    }

    async fn last_change(&self) -> StoreResult<i64> {
        let row = self.read_optional(stmt("SELECT seq FROM changes ORDER BY seq DESC LIMIT 1")).await?;
        row.map_or(Ok(0), |r| crate::rows::Columns::get(&r, "seq", "change row"))
    }

    async fn listen(&self) -> StoreResult<Option<ChangeListener>> {
        D::listen(&self.writer, CHANGE_CHANNEL).await
    }
}
