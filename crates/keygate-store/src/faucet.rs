//! The sandbox faucet's counter: how many deposits an account's owner took from it in the
//! current window. A counted field with a row lock, so the limit holds across requests and
//! nodes without reading the audit log.

use crate::StoreResult;
use crate::dialect::Dialect;
use crate::records::FaucetGrant;
use crate::rows::{Columns as _, from_db_time, to_db_time};
use crate::sql::{SqlDb, SqlStore, count_u32, stmt};
use async_trait::async_trait;
use keygate_auth::AccountId;
use keygate_proto::UnixMillis;

/// The faucet's per-account counter.
#[async_trait]
pub trait FaucetStore: Send + Sync {
    /// Takes one grant for `account` at `at`, atomically: when the window that began `window_ms`
    /// or more before `at` is over, a new one starts at `at`; a window holding `limit` grants
    /// refuses. [`crate::StoreError::NotFound`] if the account does not exist.
    async fn take_faucet_grant(
        &self,
        account: AccountId,
        at: UnixMillis,
        window_ms: u64,
        limit: u32,
    ) -> StoreResult<FaucetGrant>;

    /// Gives back a grant taken in the window starting at `window_start` (its deposit failed);
    /// nothing if the window has changed since.
    async fn return_faucet_grant(&self, account: AccountId, window_start: UnixMillis) -> StoreResult<()>;

    /// The counter as stored: `(grants, window_start)`, or `(0, 0)` for an account that never
    /// took a grant. Only for showing the owner where they stand; the limit itself is decided by
    /// [`Self::take_faucet_grant`].
    async fn faucet_counter(&self, account: AccountId) -> StoreResult<(u32, UnixMillis)>;
}

/// The decision for a counter at `(grants, window_start)`: the counter to write, if any, and the
/// outcome.
fn decide(
    current: (u32, UnixMillis),
    at: UnixMillis,
    window_ms: u64,
    limit: u32,
) -> (Option<(u32, UnixMillis)>, FaucetGrant) {
    let (grants, start) = current;
    // A time before the window's start belongs to it too: a request that read its clock just
    // before another but took the row lock after it, or a node whose clock is a little behind,
    // must not start a fresh window (that reset the limit; outside review). Only the window's
    // end starts a new one.
    let in_window = at.0 < start.0.saturating_add(window_ms);
    match (in_window, grants >= limit) {
        (true, true) => (None, FaucetGrant::Refused { next_at: UnixMillis(start.0.saturating_add(window_ms)) }),
        (true, false) => {
            let grants = grants + 1;
            (Some((grants, start)), FaucetGrant::Granted { grants, window_start: start })
        }
        (false, _) if limit == 0 => (None, FaucetGrant::Refused { next_at: UnixMillis(u64::MAX) }),
        (false, _) => (Some((1, at)), FaucetGrant::Granted { grants: 1, window_start: at }),
    }
}

#[async_trait]
impl<D: Dialect> FaucetStore for SqlStore<D> {
    async fn take_faucet_grant(
        &self,
        account: AccountId,
        at: UnixMillis,
        window_ms: u64,
        limit: u32,
    ) -> StoreResult<FaucetGrant> {
        let what = "faucet counter";
        let mut tx = self.begin().await?;
        // The row exists before it is locked, so two first grants cannot both insert it.
        D::Db::run(
            &mut tx,
            stmt(
                "INSERT INTO faucet_grants (account_id, window_start, grants) VALUES ($1, 0, 0) \
                 ON CONFLICT (account_id) DO NOTHING",
            )
            .arg(account.0),
        )
        .await?;
        let sql = format!("SELECT window_start, grants FROM faucet_grants WHERE account_id = $1{}", D::FOR_UPDATE);
        let row = D::Db::optional(&mut tx, stmt(sql).arg(account.0))
            .await?
            .ok_or_else(|| crate::StoreError::NotFound(format!("account {account}")))?;
        let current = (count_u32(row.get("grants", what)?), from_db_time(row.get("window_start", what)?, what)?);
        let (write, outcome) = decide(current, at, window_ms, limit);
        if let Some((grants, start)) = write {
            D::Db::run(
                &mut tx,
                stmt("UPDATE faucet_grants SET window_start = $1, grants = $2 WHERE account_id = $3")
                    .arg(to_db_time(start, what)?)
                    .arg(i64::from(grants))
                    .arg(account.0),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn return_faucet_grant(&self, account: AccountId, window_start: UnixMillis) -> StoreResult<()> {
        self.write_one(
            stmt(
                "UPDATE faucet_grants SET grants = grants - 1 \
                 WHERE account_id = $1 AND grants > 0 AND window_start = $2",
            )
            .arg(account.0)
            .arg(to_db_time(window_start, "faucet counter")?),
        )
        .await?;
        Ok(())
    }

    async fn faucet_counter(&self, account: AccountId) -> StoreResult<(u32, UnixMillis)> {
        let what = "faucet counter";
        let row = self
            .read_optional(stmt("SELECT window_start, grants FROM faucet_grants WHERE account_id = $1").arg(account.0))
            .await?;
        match row {
            Some(row) => Ok((count_u32(row.get("grants", what)?), from_db_time(row.get("window_start", what)?, what)?)),
            None => Ok((0, UnixMillis(0))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::decide;
    use crate::records::FaucetGrant;
    use keygate_proto::UnixMillis;

    #[test]
    fn windows_count_up_to_the_limit_then_refuse_until_they_end() {
        let day = 86_400_000;
        let fresh = (0, UnixMillis(0));
        let (w, g) = decide(fresh, UnixMillis(day * 10), day, 2);
        assert_eq!(g, FaucetGrant::Granted { grants: 1, window_start: UnixMillis(day * 10) });
        let (w, g) = decide(w.unwrap(), UnixMillis(day * 10 + 5), day, 2);
        assert_eq!(g, FaucetGrant::Granted { grants: 2, window_start: UnixMillis(day * 10) });
        let (none, g) = decide(w.unwrap(), UnixMillis(day * 11 - 1), day, 2);
        assert_eq!((none, g), (None, FaucetGrant::Refused { next_at: UnixMillis(day * 11) }));
        let (_, g) = decide(w.unwrap(), UnixMillis(day * 11), day, 2);
        assert_eq!(g, FaucetGrant::Granted { grants: 1, window_start: UnixMillis(day * 11) });
        // A limit of 0 never grants; a time before the window's start counts in that window.
        assert!(matches!(decide(fresh, UnixMillis(day * 3), day, 0).1, FaucetGrant::Refused { .. }));
        let (_, g) = decide((2, UnixMillis(day * 10)), UnixMillis(day * 10 - 1), day, 2);
        assert_eq!(g, FaucetGrant::Refused { next_at: UnixMillis(day * 11) });
        let (_, g) = decide((1, UnixMillis(day * 10)), UnixMillis(day * 10 - 1), day, 2);
        assert_eq!(g, FaucetGrant::Granted { grants: 2, window_start: UnixMillis(day * 10) });
    }
}
