//! Following the change feed: how a node learns, within milliseconds, that another node created,
//! changed or revoked a key, and how it refuses to serve keys when it cannot tell.
//!
//! Every change to an account, key or second factor commits a change record with its audit
//! record (`keygate_store::changes`). On PostgreSQL the commit announces it; a listener task
//! wakes the follower, which reads every change after the last one it applied and reloads the
//! keys concerned from the store. Announcements can be lost with their connection, so the
//! follower also asks the store every [`POLL`] whether anything is newer, and applies changes by
//! their number, never by the announcement: nothing is skipped. Each successful look at the feed
//! confirms that the node was current at the time it began; a node whose last confirmation is
//! older than [`crate::ServiceConfig::max_staleness_ms`] is not current, and signed requests are
//! refused (`-1001`) rather than checked against a key that may have been revoked meanwhile.
//!
//! A SQLite store has one writer process (the data directory's lock), which updates its own
//! cache as it commits: there is nothing to follow, and the node is always current.

use crate::{Service, ServiceResult};
use keygate_store::{Change, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How often the follower looks at the feed when no announcement woke it.
pub const POLL: Duration = Duration::from_millis(250);

/// Changes read per store call while catching up.
const PAGE: u32 = 1_000;

/// Whether, and as of when, this node's caches are known to be current.
#[derive(Debug, Default)]
pub(crate) struct Currency {
    /// A follower runs (several nodes may write the store).
    follows: AtomicBool,
    /// When the last successful look at the feed began, ms.
    confirmed_at_ms: AtomicU64,
    /// The last change applied.
    cursor: AtomicU64,
}

impl Currency {
    fn confirm(&self, at_ms: u64) {
        self.confirmed_at_ms.fetch_max(at_ms, Ordering::Release);
    }
}

impl Service {
    /// Whether this node may check signatures against its key cache at `now_ms`: always on a
    /// store with one writer; with several, only while the change feed was read successfully
    /// within the last `max_staleness_ms`.
    #[must_use]
    pub fn is_current(&self, now_ms: u64) -> bool {
        let c = &self.inner.currency;
        !c.follows.load(Ordering::Acquire)
            || now_ms.saturating_sub(c.confirmed_at_ms.load(Ordering::Acquire)) <= self.inner.config.max_staleness_ms
    }

    /// The last change this node applied (0 before any), for operators and tests.
    #[must_use]
    pub fn change_cursor(&self) -> i64 {
        i64::try_from(self.inner.currency.cursor.load(Ordering::Acquire)).unwrap_or(i64::MAX)
    }

    /// Starts following the change feed from `cursor` (the last change before the key cache was
    /// loaded), when the store announces changes. Called by the assembly.
    pub(crate) async fn follow_changes(&self, cursor: i64) -> ServiceResult<()> {
        let Some(listener) = self.inner.store.listen().await? else {
            return Ok(());
        };
        let c = &self.inner.currency;
        c.cursor.store(u64::try_from(cursor).unwrap_or(0), Ordering::Release);
        c.confirm(self.now_ms().0);
        c.follows.store(true, Ordering::Release);
        let wake = Arc::new(Notify::new());
        self.inner.background.push(tokio::spawn(listen(Arc::clone(&self.inner.store), listener, Arc::clone(&wake))));
        let service = self.clone();
        self.inner.background.push(tokio::spawn(async move {
            loop {
                // Woken by an announcement, or after POLL whatever happened to them.
                let _ = tokio::time::timeout(POLL, wake.notified()).await;
                let started = service.now_ms().0;
                match service.catch_up().await {
                    Ok(()) => service.inner.currency.confirm(started),
                    Err(e) => tracing::warn!(error = %e, "reading the change feed failed; signed requests wait"),
                }
            }
        }));
        Ok(())
    }

    /// Applies every change after the cursor, in order.
    async fn catch_up(&self) -> ServiceResult<()> {
        loop {
            let cursor = self.change_cursor();
            let changes = self.inner.store.changes_after(cursor, PAGE).await?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                return Ok(());
            };
            for c in &changes {
                self.apply_change(&c.change).await?;
            }
            self.inner.currency.cursor.store(u64::try_from(last).unwrap_or(0), Ordering::Release);
        }
    }

    /// Reloads what `change` touched into the key cache. Holds the key-write lock, so a change
    /// this node is committing meanwhile is either read here or written over this read after it.
    async fn apply_change(&self, change: &Change) -> ServiceResult<()> {
        let _serial = self.inner.key_writes.lock().await;
        match change {
            Change::Key { key, .. } => match self.inner.store.get_key(key).await? {
                Some(record) => self.inner.cache.upsert(&record)?,
                None => self.inner.cache.remove(key.as_str()),
            },
            Change::Account(account) | Change::TwoFactor(account) => {
                for record in self.inner.store.list_keys(Some(*account)).await? {
                    self.inner.cache.upsert(&record)?;
                }
            }
            // Sessions are read from the store on every console request: nothing cached.
            Change::Session(_) => {}
        }
        Ok(())
    }
}

/// Wakes the follower at each announcement and when the listening connection is lost (the
/// announcements made meanwhile are lost with it); reconnects after a failure.
async fn listen(store: Arc<dyn Store>, mut listener: keygate_store::changes::ChangeListener, wake: Arc<Notify>) {
    loop {
        match listener.next().await {
            Ok(_) => wake.notify_one(),
            Err(e) => {
                tracing::warn!(error = %e, "the change feed's listening connection failed; reconnecting");
                wake.notify_one();
                loop {
                    tokio::time::sleep(POLL).await;
                    match store.listen().await {
                        Ok(Some(l)) => {
                            listener = l;
                            wake.notify_one();
                            break;
                        }
                        Ok(None) => return,
                        Err(e) => tracing::debug!(error = %e, "reconnecting to the change feed failed"),
                    }
                }
            }
        }
    }
}
