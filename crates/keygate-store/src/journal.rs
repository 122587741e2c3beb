//! The exchange journal aggregate: every accepted command of the sandbox exchange, in order, and
//! the snapshots that shorten its replay.

use crate::StoreResult;
use crate::audit_log::append;
use crate::dialect::Dialect;
use crate::records::{AuditDraft, JournalEntry};
use crate::rows::{Columns as _, journal_from_row, to_db_time};
use crate::sql::{SqlDb, SqlStore, stmt};
use async_trait::async_trait;
use keygate_proto::UnixMillis;
use std::fmt::Write as _;

/// Journal rows per INSERT statement (3 bound values each, far below both backends' limits).
const JOURNAL_ROWS_PER_STATEMENT: usize = 500;

/// The exchange's journal and snapshots.
#[async_trait]
pub trait JournalStore: Send + Sync {
    /// Appends exchange journal entries and the audit records of the operations among them
    /// (deposits, withdrawals) in one transaction: all or none. An entry whose `seq` is already
    /// taken is a [`crate::StoreError::Conflict`] and nothing of the batch is written (two
    /// engines on one database would collide here rather than interleave).
    /// `signatures` are the single-use signatures of the batch's commands, recorded in the same
    /// transaction: one already recorded (another node took it since the caller checked) is a
    /// [`crate::StoreError::Conflict`] and nothing of the batch is written.
    /// `term` is the caller's writer term ([`crate::writer`]): when the lease row holds another,
    /// a newer writer took over and the append is [`crate::StoreError::Fenced`], nothing written.
    async fn append_journal(
        &self,
        term: i64,
        entries: &[JournalEntry],
        audit: Vec<AuditDraft>,
        signatures: &[([u8; 32], UnixMillis)],
    ) -> StoreResult<()>;

    /// A listener that hears each journal append as it commits, on backends that announce them
    /// (PostgreSQL), for the other nodes' read copies; `None` on SQLite.
    async fn listen_journal(&self) -> StoreResult<Option<crate::changes::ChangeListener>>;

    /// Which of `ids` are recorded single-use signatures (see [`JournalStore::append_journal`]).
    async fn signatures_used(&self, ids: &[[u8; 32]]) -> StoreResult<Vec<[u8; 32]>>;

    /// The single-use signatures recorded at or after `since`, with when: a node that takes over
    /// the exchange loads them once, then checks new ones in memory (it is the only writer).
    async fn recent_signatures(&self, since: UnixMillis) -> StoreResult<Vec<([u8; 32], UnixMillis)>>;

    /// Forgets single-use signatures recorded before `before` (their requests' windows are long
    /// over, so the time check refuses a replay of them anyway); how many.
    async fn forget_signatures(&self, before: UnixMillis) -> StoreResult<u64>;

    /// Journal entries with `seq > after`, in order, at most `limit`.
    async fn journal_after(&self, after: i64, limit: u32) -> StoreResult<Vec<JournalEntry>>;

    /// Stores a snapshot of the exchange that includes every journal entry up to `seq`.
    async fn save_snapshot(&self, seq: i64, state: &[u8]) -> StoreResult<()>;

    /// The snapshot with the highest `seq`, if any.
    async fn latest_snapshot(&self) -> StoreResult<Option<(i64, Vec<u8>)>>;
}

/// `head` followed by `rows` tuples of `width` placeholders, numbered in order:
/// `... VALUES ($1, $2, $3), ($4, $5, $6)` for width 3 and 2 rows.
fn multi_row_insert(head: &str, width: usize, rows: usize) -> String {
    let mut sql = String::from(head);
    for i in 0..rows {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        for j in 0..width {
            let sep = if j == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}${}", i * width + j + 1);
        }
        sql.push(')');
    }
    sql
}

/// `INSERT INTO exchange_journal ... VALUES ($1, $2, $3), ($4, $5, $6), ...` for `rows` rows.
fn insert_journal_sql(rows: usize) -> String {
    multi_row_insert("INSERT INTO exchange_journal (seq, at, command) VALUES ", 3, rows)
}

#[async_trait]
impl<D: Dialect> JournalStore for SqlStore<D> {
    async fn append_journal(
        &self,
        term: i64,
        entries: &[JournalEntry],
        audit: Vec<AuditDraft>,
        signatures: &[([u8; 32], UnixMillis)],
    ) -> StoreResult<()> {
        if entries.is_empty() && audit.is_empty() && signatures.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries {
            rows.push((e.seq, to_db_time(e.at, "journal entry")?, e.command.as_slice()));
        }
        let mut tx = self.begin().await?;
        // Held shared until the commit: a node taking over (which raises the term) waits for this
        // append, and every append after that sees the new term.
        let lease =
            D::Db::optional(&mut tx, stmt(format!("SELECT term FROM exchange_writer WHERE id = 1{}", D::FOR_SHARE)))
                .await?;
        let current: i64 = match lease {
            Some(row) => row.get("term", "writer lease")?,
            None => return Err(crate::StoreError::Corrupt("the exchange writer's lease row is missing".into())),
        };
        if current != term {
            return Err(crate::StoreError::Fenced(format!(
                "this node writes as term {term}, but term {current} has taken over the exchange"
            )));
        }
        // One statement per chunk, not one per entry: the engine waits on this write before it
        // answers anyone, so its round trips are the durable path's latency.
        for chunk in rows.chunks(JOURNAL_ROWS_PER_STATEMENT) {
            let insert = chunk
                .iter()
                .fold(stmt(insert_journal_sql(chunk.len())), |s, &(seq, at, command)| s.arg(seq).arg(at).arg(command));
            D::Db::run(&mut tx, insert).await?;
        }
        let mut sig_rows = Vec::with_capacity(signatures.len());
        for (id, at) in signatures {
            sig_rows.push((id.as_slice(), to_db_time(*at, "single-use signature")?));
        }
        // One statement per chunk here too: every order carries a signature.
        for chunk in sig_rows.chunks(JOURNAL_ROWS_PER_STATEMENT) {
            let insert = chunk.iter().fold(
                stmt(multi_row_insert("INSERT INTO used_signatures (id, at) VALUES ", 2, chunk.len())),
                |s, &(id, at)| s.arg(id).arg(at),
            );
            D::Db::run(&mut tx, insert).await?;
        }
        for draft in audit {
            append::<D>(&mut tx, draft, None).await?;
        }
        if let (Some(notify), Some(last)) = (D::NOTIFY_JOURNAL, entries.last()) {
            D::Db::run(&mut tx, stmt(notify).arg(last.seq.to_string().as_str())).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn listen_journal(&self) -> StoreResult<Option<crate::changes::ChangeListener>> {
        D::listen(&self.writer, crate::changes::JOURNAL_CHANNEL).await
    }

    async fn signatures_used(&self, ids: &[[u8; 32]]) -> StoreResult<Vec<[u8; 32]>> {
        let mut used = Vec::new();
        for chunk in ids.chunks(JOURNAL_ROWS_PER_STATEMENT) {
            let list = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let query =
                chunk.iter().fold(stmt(format!("SELECT id FROM used_signatures WHERE id IN ({list})")), |q, id| {
                    q.arg(id.as_slice())
                });
            for row in self.read_all(query).await? {
                let id: Vec<u8> = row.get("id", "single-use signature")?;
                used.push(crate::rows::hash32(id, "single-use signature")?);
            }
        }
        Ok(used)
    }

    async fn recent_signatures(&self, since: UnixMillis) -> StoreResult<Vec<([u8; 32], UnixMillis)>> {
        let rows = self
            .read_all(
                stmt("SELECT id, at FROM used_signatures WHERE at >= $1")
                    .arg(to_db_time(since, "single-use signature")?),
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Vec<u8> = row.get("id", "single-use signature")?;
            let at: i64 = row.get("at", "single-use signature")?;
            out.push((crate::rows::hash32(id, "single-use signature")?, UnixMillis(u64::try_from(at).unwrap_or(0))));
        }
        Ok(out)
    }

    async fn forget_signatures(&self, before: UnixMillis) -> StoreResult<u64> {
        self.write_one(
            stmt("DELETE FROM used_signatures WHERE at < $1").arg(to_db_time(before, "single-use signature")?),
        )
        .await
    }

    async fn journal_after(&self, after: i64, limit: u32) -> StoreResult<Vec<JournalEntry>> {
        let rows = self
            .read_all(
                stmt("SELECT seq, at, command FROM exchange_journal WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .arg(after)
                    .arg(i64::from(limit)),
            )
            .await?;
        rows.iter().map(journal_from_row).collect()
    }

    async fn save_snapshot(&self, seq: i64, state: &[u8]) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        D::Db::run(
            &mut tx,
            stmt(
                "INSERT INTO exchange_snapshots (seq, state) VALUES ($1, $2) \
                 ON CONFLICT (seq) DO UPDATE SET state = excluded.state",
            )
            .arg(seq)
            .arg(state),
        )
        .await?;
        // Older snapshots are never read again.
        D::Db::run(&mut tx, stmt("DELETE FROM exchange_snapshots WHERE seq < $1").arg(seq)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn latest_snapshot(&self) -> StoreResult<Option<(i64, Vec<u8>)>> {
        let row =
            self.read_optional(stmt("SELECT seq, state FROM exchange_snapshots ORDER BY seq DESC LIMIT 1")).await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((r.get("seq", "snapshot")?, r.get("state", "snapshot")?))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::insert_journal_sql;

    #[test]
    fn the_multi_row_insert_numbers_its_placeholders_in_order() {
        assert_eq!(insert_journal_sql(1), "INSERT INTO exchange_journal (seq, at, command) VALUES ($1, $2, $3)");
        assert!(insert_journal_sql(2).ends_with("VALUES ($1, $2, $3), ($4, $5, $6)"));
        assert_eq!(super::multi_row_insert("V ", 2, 3), "V ($1, $2), ($3, $4), ($5, $6)");
    }
}
