//! The service's background work: writing usage counters, completing withdrawals (the simulated
//! market's steps are in [`crate::market`]). Each task is owned by the service that started it and stopped by
//! [`Service::shutdown`], so no caller has to remember which loops a running keygate has.

use crate::Service;
use crate::engine::Engine;
use keygate_exchange::Command;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The tasks a service runs besides answering calls.
#[derive(Debug, Default)]
pub(crate) struct Background {
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Background {
    pub(crate) fn push(&self, task: JoinHandle<()>) {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner).push(task);
    }

    /// Stops every task (each only sleeps between steps, and a step interrupted here is one
    /// the store never saw or committed whole).
    fn abort_all(&self) {
        for task in self.tasks.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            task.abort();
        }
    }
}

impl Service {
    /// Starts writing usage counters and denial aggregates every `every` (a failed write is
    /// retried on the next tick; [`Service::shutdown`] writes what is left).
    pub(crate) fn spawn_flusher(&self, every: Duration) {
        let service = self.clone();
        self.inner.background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = service.flush(false).await {
                    tracing::warn!(error = %e, "flushing usage counters failed; will retry");
                }
            }
        }));
    }

    /// Starts applying the key policies every `every` ([`Service::sweep_key_policies`]). With an
    /// exchange, only while this node writes it: with several nodes one sweeps, and a new writer
    /// takes over the sweeping with the exchange.
    pub(crate) fn spawn_policy_sweeper(&self, every: Duration, engine: Option<Engine>) {
        let service = self.clone();
        self.inner.background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if engine.as_ref().is_some_and(|e| !e.is_writer()) {
                    continue;
                }
                match service.sweep_key_policies().await {
                    Ok(r) if r != crate::policy::SweepReport::default() => {
                        tracing::info!(
                            warned = r.warned,
                            disabled = r.disabled,
                            expired = r.expired,
                            suspended = r.suspended,
                            "key policies applied"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "applying key policies failed; will retry"),
                }
            }
        }));
    }

    /// Starts moving withdrawals through their lifecycle: once a second, completes those whose
    /// processing delay has passed. Submitted only when one is due, so an idle exchange
    /// journals nothing.
    pub(crate) fn spawn_withdrawal_advancer(&self, engine: Engine) {
        let service = self.clone();
        self.inner.background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // The writer completes them; the other nodes see it in the journal.
                if !engine.is_writer() {
                    continue;
                }
                let now = service.now_ms();
                if engine.query(move |ex| ex.withdrawals_due(now)).await.unwrap_or(false)
                    && let Err(e) = engine.submit(Command::AdvanceWithdrawals, None).await
                {
                    tracing::warn!(error = %e, "completing withdrawals failed; will retry");
                }
            }
        }));
    }

    /// Stops the background tasks, writes the usage counters still in memory and closes the
    /// store, so the next process finds everything on disk (SQLite checkpoints its WAL).
    pub async fn shutdown(&self) {
        self.inner.background.abort_all();
        if let Err(e) = self.flush(true).await {
            tracing::error!(error = %e, "final flush of usage counters failed");
        }
        self.inner.store.close().await;
    }
}
