//! Where an owner stands with the sandbox faucet, for the wallet page: how many deposits the
//! current window has used and when it ends. The limit itself is decided where the faucet
//! deposits (`Service::faucet`, counted in the store); this only reads the counter.

use crate::funds::FAUCET_WINDOW_MS;
use crate::{Actor, Service, ServiceError, ServiceResult};
use keygate_proto::UnixMillis;

/// The owner's faucet window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaucetStatus {
    /// Deposits taken in the current window.
    pub used: u32,
    /// Deposits allowed per window (0: the faucet is off).
    pub limit: u32,
    /// When the current window ends, if one is running: from then on the faucet gives again.
    pub resets_at: Option<UnixMillis>,
}

impl FaucetStatus {
    /// True when the next request would be refused until `resets_at`.
    #[must_use]
    pub fn exhausted(&self) -> bool {
        self.used >= self.limit
    }
}

impl Service {
    /// The owner's faucet window at `per_day` deposits per window, so the page can hide the
    /// form at the limit and say when it gives again.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for anyone but an owner; store failures.
    pub async fn faucet_status(&self, actor: &Actor, per_day: u32) -> ServiceResult<FaucetStatus> {
        let Actor::Owner { account_id, .. } = actor else {
            return Err(ServiceError::Forbidden("the faucet is for owners".into()));
        };
        let (grants, start) = self.inner.store.faucet_counter(*account_id).await?;
        let now = self.now_ms();
        let end = UnixMillis(start.0.saturating_add(FAUCET_WINDOW_MS));
        // The same rule as the counter's: a window runs until its end (a time before its start
        // still belongs to it).
        let running = grants > 0 && now.0 < end.0;
        Ok(FaucetStatus { used: if running { grants } else { 0 }, limit: per_day, resets_at: running.then_some(end) })
    }
}
