//! The simulated market's runner: the market maker and the taker flow of
//! [`keygate_exchange::market_maker`], stepped at the service's clock on the exchange's writer.
//!
//! Every half second (and whenever a caller asks, [`Service::step_market`]) the market is brought
//! up to the clock's now: the market maker's walk is read at that time, its requote and the flow's
//! orders due since the previous step go to the engine as one batch, journal included. Everything
//! it decides is a function of the exchange's state and the time, so under a manual clock a test
//! that advances the clock and steps the market sees the same trades on every run.
//!
//! Only the writer's market trades: a node that stops being the writer drops its market's state,
//! and a node that becomes the writer starts one from the book as it finds it, at the same walk
//! (the walk is a function of time and the history in the journal). Pausing stops the steps on
//! this node; the walk's time goes on, so a resumed market quotes where the walk is then.

use crate::{Actor, Service, ServiceError, ServiceResult};
use keygate_exchange::{MarketMaker, MarketMakerConfig};
use keygate_store::AuditDraft;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The market's state on this node: shared by the background task and callers of
/// [`Service::step_market`], so that two steps never run at once.
#[derive(Debug, Default)]
pub(crate) struct MarketControl {
    paused: AtomicBool,
    /// Set once the market is started.
    config: std::sync::Mutex<Option<MarketMakerConfig>>,
    /// The market maker's state, while this node is the writer.
    maker: tokio::sync::Mutex<Option<MarketMaker>>,
}

impl MarketControl {
    fn config(&self) -> Option<MarketMakerConfig> {
        self.config.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// What `keygate market status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct MarketStatus {
    /// Whether a simulated market runs on this node.
    pub running: bool,
    /// Whether it is paused.
    pub paused: bool,
    /// Whether this node is the exchange's writer (only the writer's market trades).
    pub writer: bool,
    /// The walk's seed.
    pub seed: Option<u64>,
    /// Taker orders per second on each market (0: the flow is off).
    pub flow_per_second: Option<f64>,
    /// Days of history the market seeds a fresh sandbox with.
    pub history_days: Option<u32>,
    /// The first and last millisecond of the exchange's history, once seeded.
    pub history: Option<(u64, u64)>,
}

impl Service {
    /// Starts the simulated market (market maker, taker flow, history seeding as `config` says):
    /// a step every half second on the writer (see the module documentation).
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the service runs no exchange.
    pub fn start_market_maker(&self, config: MarketMakerConfig) -> ServiceResult<()> {
        self.engine()?;
        *self.inner.market.config.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(config);
        let service = self.clone();
        self.inner.background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = service.step_market().await {
                    tracing::debug!(error = %e, "simulated market step not taken; the next one retries");
                }
            }
        }));
        Ok(())
    }

    /// Brings the simulated market up to the clock's now, as one engine batch; returns how many
    /// commands it submitted (0 when paused, not the writer, or nothing was due).
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when no market runs; the engine's error when it refused the
    /// batch (the next step retries).
    pub async fn step_market(&self) -> ServiceResult<usize> {
        let engine = self.engine()?.clone();
        let Some(config) = self.inner.market.config() else {
            return Err(ServiceError::Internal("no simulated market runs on this node".into()));
        };
        let mut slot = self.inner.market.maker.lock().await;
        if !engine.is_writer() {
            *slot = None;
            return Ok(0);
        }
        if self.inner.market.paused.load(Ordering::Relaxed) {
            return Ok(0);
        }
        let now = self.now_ms();
        let mut submitted = 0;
        // Twice at most: a fresh sandbox's first tick only seeds the history, and the market
        // then quotes at once rather than a tick later.
        for _ in 0..2 {
            let maker = slot.take();
            let config = config.clone();
            let (maker, commands) = engine
                .query(move |ex| {
                    let mut maker = maker.unwrap_or_else(|| MarketMaker::new(config, ex));
                    let commands = maker.tick_at(ex, now);
                    (maker, commands)
                })
                .await?;
            *slot = Some(maker);
            let seeding = matches!(commands.as_slice(), [keygate_exchange::Command::SeedHistory(_)]);
            submitted += commands.len();
            if commands.is_empty() {
                break;
            }
            // One batch: a reader sees the old quotes or the new ones, never a book with a side
            // emptied by the cancel and not yet refilled.
            for e in engine.submit_all(commands).await?.into_iter().filter_map(Result::err) {
                // A taker order the book cannot fill, a quote refused: the market's own business.
                tracing::debug!(error = %e, "simulated market command refused");
            }
            if !seeding {
                break;
            }
        }
        Ok(submitted)
    }

    /// Pauses (`true`) or resumes the simulated market on this node, audited as `market.pause`
    /// or `market.resume`. Operators only.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for an owner; [`ServiceError::NotFound`] when no market runs
    /// on this node.
    pub async fn pause_market(&self, actor: &Actor, pause: bool) -> ServiceResult<MarketStatus> {
        if matches!(actor, Actor::Owner { .. }) {
            return Err(ServiceError::Forbidden("only the operator pauses the simulated market".into()));
        }
        if self.inner.market.config().is_none() {
            return Err(ServiceError::NotFound(
                "a simulated market on this server (start it with `keygate serve --market-maker` or `--demo`)".into(),
            ));
        }
        self.inner
            .store
            .append_audit(AuditDraft {
                at: self.now_ms(),
                actor: actor.label(),
                action: if pause { "market.pause" } else { "market.resume" }.into(),
                target: String::new(),
                account_id: None,
                source: actor.source(),
                details: serde_json::json!({}),
            })
            .await?;
        self.inner.market.paused.store(pause, Ordering::Relaxed);
        self.market_status().await
    }

    /// The simulated market on this node.
    ///
    /// # Errors
    /// The engine's error when the exchange cannot be read.
    pub async fn market_status(&self) -> ServiceResult<MarketStatus> {
        let config = self.inner.market.config();
        let engine = self.engine()?;
        let history = engine.query(|ex| ex.history().map(|h| (h.start(), h.end()))).await?;
        Ok(MarketStatus {
            running: config.is_some(),
            paused: self.inner.market.paused.load(Ordering::Relaxed),
            writer: engine.is_writer(),
            seed: config.as_ref().map(|c| c.seed),
            #[allow(clippy::cast_precision_loss)] // A rate of at most 100 a second.
            flow_per_second: config.as_ref().map(|c| c.flow.map_or(0.0, |f| f.rate_milli as f64 / 1000.0)),
            history_days: config.as_ref().and_then(|c| c.history_days),
            history,
        })
    }
}
